"""The LAN harness (issue 10 item 8): 6 node processes, each in its own network namespace with its own address,
links with 5–50 ms latency and 1 % loss through the user-space link proxies; the network is cut in two halves for
at least 3 rounds (until half A crowned a block half B lacks) and healed, once with the cross links stalled and
once with their connections reset; after each heal every node reaches one tip.
Skipped, with the reason printed, where namespaces cannot be made (not root, no iproute2)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from benchmarks.lan import run_lan, topology, unavailable
from benchmarks.netns.ns import PREFIX, _ip, list_ours, remove_stale

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_topology_halves_are_connected_and_joined():
    topo = topology(6)
    assert topo.cross and all((a in topo.half_a) != (b in topo.half_a) for a, b in topo.cross)
    for i in range(6):
        assert topo.degree(i) >= 2     # no node hangs on a single link
    assert all(a != b for a, b in topo.edges)


def test_partition_heals_to_one_tip(tmp_path):
    why = unavailable()
    if why:
        print(f"skipping the LAN harness: {why}")
        pytest.skip(why)
    result = run_lan(6, tmp_path, timeout_s=240)
    assert [ph.kind for ph in result.phases] == ["stall", "reset"], result.log
    for ph in result.phases:
        assert ph.diverged, f"{ph.kind}: the cut did not separate the halves (half B followed half A)"
        assert ph.converge_s is not None, f"{ph.kind}: no single tip after the heal: {result.log}"
    assert result.discouraged == 0
    assert not [name for name in list_ours() if name.startswith(f"{PREFIX}{os.getpid()}-")]


def test_stale_namespaces_of_a_killed_run_are_removed_with_what_runs_inside():
    """A harness killed with SIGKILL leaves its namespaces, and its nodes running in them: the next run's
    remove_stale() kills those processes (by pid) and deletes the namespaces; live runs' namespaces are kept."""
    why = unavailable()
    if why:
        print(f"skipping: {why}")
        pytest.skip(why)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()                                   # its pid is free now: a "killed run"
    stale, live = f"{PREFIX}{gone.pid}-n0", f"{PREFIX}{os.getpid()}-keep"
    _ip("netns", "add", stale)
    _ip("netns", "add", live)
    inside = subprocess.Popen(["ip", "netns", "exec", stale, sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        while not _ip("netns", "pids", stale, check=False).split():
            assert inside.poll() is None
            time.sleep(0.05)
        assert stale in remove_stale()
        assert inside.wait(timeout=30) != 0      # killed
        assert stale not in list_ours() and live in list_ours()
    finally:
        if inside.poll() is None:
            inside.kill()
            inside.wait()
        for name in (stale, live):
            _ip("netns", "del", name, check=False)


def test_config_json_peer_exchange_is_a_validated_boolean(tmp_path):
    """The LAN's nodes run with config.json {"peer_exchange": false} (a node told its peers' real addresses
    would dial them around the emulated links); before, the key was silently ignored."""
    import argparse
    import json

    from node.config import add_node_run_arguments, resolve
    from node.errors import NodeError
    parser = argparse.ArgumentParser()
    add_node_run_arguments(parser)
    args = parser.parse_args(["--datadir", str(tmp_path)])
    assert resolve(args, env={})[0].peer_exchange is True
    (tmp_path / "config.json").write_text(json.dumps({"peer_exchange": False}))
    assert resolve(args, env={})[0].peer_exchange is False
    (tmp_path / "config.json").write_text(json.dumps({"peer_exchange": "no"}))
    with pytest.raises(NodeError, match="peer_exchange"):
        resolve(args, env={})