"""A node process killed with SIGKILL and restarted on the same datadir resumes and catches up; LAN discovery
finds a peer (multicast pinned to the loopback interface, TTL 0)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from node.tools.client import NodeClient
from node.tools.testing import InProcessNode, ScriptedMiner, make_test_chain, node_config, wait_for

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_test_chain(tmp_path_factory.mktemp("chain"), rounds=40, entry_window_s=1, opening_window_s=1)


def _start(datadir: Path, genesis: Path | None, peer: tuple[str, int],
           keyholder: Path | None = None) -> subprocess.Popen:
    (datadir / "ports.json").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "node", "run", "--datadir", str(datadir), "--peer", f"{peer[0]}:{peer[1]}",
           "--port", "0", "--api-port", "0"]
    if genesis is not None:
        cmd += ["--genesis", str(genesis)]
    if keyholder is not None:
        cmd += ["--keyholder", str(keyholder)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _ports(datadir: Path, proc: subprocess.Popen) -> dict:
    async def ready():
        assert proc.poll() is None, "node process exited"
        try:
            ports = json.loads((datadir / "ports.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return ports if ports.get("pid") == proc.pid else None
    return await wait_for(ready, timeout=60)


async def _height(client: NodeClient) -> int:
    return (await client.status())["height"]


def test_sigkill_and_restart_resumes_and_catches_up(chain, tmp_path):
    async def scenario():
        datadir = tmp_path / "S"
        datadir.mkdir()
        async with InProcessNode(node_config(tmp_path / "A", chain, keyholder=True)) as a:
            miner = ScriptedMiner(a.client, chain.miners[0], chain.genesis, family="linear", seed=3)
            miner2 = ScriptedMiner(a.client, chain.miners[1], chain.genesis, family="mlp", seed=4)
            procs = []
            try:
                async with asyncio.TaskGroup() as tg:
                    tasks = [tg.create_task(miner.run()), tg.create_task(miner2.run())]
                    try:
                        proc = _start(datadir, chain.genesis_path, a.p2p_addr)
                        procs.append(proc)
                        ports = await _ports(datadir, proc)
                        async with NodeClient(f"http://127.0.0.1:{ports['api']}") as s:
                            await wait_for(lambda: _caught_up(a.client, s, 1), timeout=120)
                        height_at_kill = await _height(a.client)
                        proc.send_signal(signal.SIGKILL)
                        proc.wait()
                        await wait_for(lambda: _grown(a.client, height_at_kill + 1), timeout=120)
                        # restart without --genesis: the datadir remembers its chain
                        proc = _start(datadir, None, a.p2p_addr)
                        procs.append(proc)
                        ports = await _ports(datadir, proc)
                        async with NodeClient(f"http://127.0.0.1:{ports['api']}") as s:
                            assert await _height(s) >= height_at_kill  # resumed, not re-synced from genesis
                            await wait_for(lambda: _caught_up(a.client, s, height_at_kill + 1), timeout=120)
                        # SIGTERM shuts down cleanly (exit code 0, lock released)
                        proc.send_signal(signal.SIGTERM)
                        assert proc.wait(timeout=30) == 0
                    finally:
                        for t in tasks:
                            t.cancel()
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait()

    asyncio.run(scenario())


async def _grown(client, height):
    return await _height(client) >= height


async def _caught_up(a, s, min_height):
    sa, ss = await a.status(), await s.status()
    return sa["height"] >= min_height and (sa["tip"], sa["state_root"]) == (ss["tip"], ss["state_root"])


def test_lan_discovery_on_loopback(chain, tmp_path):
    """Two nodes with --discover and no --peer find each other; multicast never leaves 127.0.0.1."""
    from node.config import NodeConfig
    from node.discovery import make_socket
    port = 20000 + os.getpid() % 20000
    try:
        make_socket(NodeConfig.discovery_group, port, "127.0.0.1").close()
    except OSError as exc:
        pytest.skip(f"multicast on the loopback interface is not available here: {exc}")

    async def scenario():
        cfg = dict(discover=True, discovery_interface="127.0.0.1", discovery_port=port, discovery_interval_s=0.2)
        async with InProcessNode(node_config(tmp_path / "X", chain, **cfg)) as x, \
                InProcessNode(node_config(tmp_path / "Y", chain, **cfg)) as y:
            await wait_for(lambda: _peers_at_least(x, 1), timeout=30)
            await wait_for(lambda: _peers_at_least(y, 1), timeout=30)
            assert x.node.p2p_port != y.node.p2p_port

    asyncio.run(scenario())


async def _peers_at_least(node, n):
    return (await node.client.status())["peers"] >= n


def test_keyholder_sigkilled_mid_round_never_reveals_twice(chain, tmp_path):
    """SIGKILL the keyholder process in a round's opening window; the restarted keyholder re-sends (never
    re-signs) its beacon: the peer never sees a second, different beacon (it would record an equivocation)."""
    async def scenario():
        kh_dir = tmp_path / "K"
        kh_dir.mkdir()
        async with InProcessNode(node_config(tmp_path / "P", chain)) as p:
            procs = []
            try:
                proc = _start(kh_dir, chain.genesis_path, p.p2p_addr, keyholder=chain.keyholder_path)
                procs.append(proc)
                await _ports(kh_dir, proc)
                await wait_for(lambda: _revealed(p, 2), timeout=60)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                beacon2 = (await p.client.round(2))["beacon"]
                proc = _start(kh_dir, None, p.p2p_addr, keyholder=chain.keyholder_path)
                procs.append(proc)
                ports = await _ports(kh_dir, proc)
                await wait_for(lambda: _revealed(p, 4), timeout=60)
                async with NodeClient(f"http://127.0.0.1:{ports['api']}") as k:
                    for node in (k, p.client):
                        assert (await node.round(2))["beacon"] == beacon2
                        assert (await node.status())["equivocations"] == []
            finally:
                for q in procs:
                    if q.poll() is None:
                        q.kill()
                        q.wait()

    asyncio.run(scenario())


async def _revealed(node, r):
    return (await node.client.round(r)).get("beacon") is not None
