"""Two node processes that `--peer` each other (as keyholders do when each is given the others' addresses, README
step 3) keep ONE connection: the second one is refused as a duplicate at most once, not once per backoff period
for the nodes' whole life (issue 20 item 12: 46–48 "duplicate connection" lines in 25 minutes). PROTOCOL §4.6."""
from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pytest

from node.tools.testing import make_test_chain
from tests.test_cli_e2e import ROOT, _get_json, background, ports_of

pytestmark = pytest.mark.slow
WINDOW_S = 20.0   # without the rule a refused dial came back after 4–12 s (or 0.5 s): 2+ refusals in the window


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_mutual_peers_keep_one_connection(tmp_path: Path) -> None:
    chain = make_test_chain(tmp_path / "chain", rounds=2)
    pa, pb = _free_port(), _free_port()
    args = {name: ["-m", "cli", "node", "run", "--datadir", str(tmp_path / name), "--genesis", str(chain.genesis_path),
                   "--port", str(port), "--api-port", "0", "--peer", f"127.0.0.1:{other}"]
            for name, port, other in (("a", pa, pb), ("b", pb, pa))}
    with contextlib.ExitStack() as stack:
        procs = {n: stack.enter_context(background(a, ROOT, tmp_path / f"{n}.out")) for n, a in args.items()}
        urls = {n: f"http://127.0.0.1:{ports_of(tmp_path / n, p)['api']}" for n, p in procs.items()}
        deadline = time.monotonic() + 60    # a liveness bound on connecting, not a timed assertion
        while not all(_get_json(f"{u}/api/peers")["peers"] for u in urls.values()):
            assert time.monotonic() < deadline, "the two nodes never connected"
            time.sleep(0.2)
        time.sleep(WINDOW_S)
        for name, url in urls.items():
            assert len(_get_json(f"{url}/api/peers")["peers"]) == 1, name
        logs = {n: (tmp_path / n / "node.log").read_text(errors="replace") for n in args}
    refusals = sum(log.count("duplicate connection") for log in logs.values())
    assert refusals <= 2, (refusals, logs)     # at most the first crossing dial, seen from each side
