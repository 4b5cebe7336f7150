"""Resource exhaustion: does the node keep running and serving under a socket flood at `ulimit -n 1024`?
Figure ``fd_exhaustion_survived``.

A real node runs with RLIMIT_NOFILE 1024 (soft and hard: `ulimit -n 1024`, set in the child). An attacker
process (benchmarks/hostile.py ``slowloris``) keeps SLOWLORIS_CONNS connections open to its p2p and API ports from
four addresses — half a request line each, reopened as soon as the node closes one — for ``seconds``. Meanwhile
this process asks ``/api/status`` every PROBE_S on a new connection (each within PROBE_TIMEOUT_S), completes a
peer handshake with the node from another address every HANDSHAKE_S, and samples the node's open descriptors. A
trial survives when the node is still running at the end, every API probe was answered, at least half of the
handshakes and the last one got through, and its descriptors stayed below the limit. The figure is the share of trials survived; baseline: trials run.
"""
from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._attack import spawn_hostile, status, stop_now
from benchmarks._nodeproc import NodeProc
from benchmarks.hostile import hello
from consensus.protocol.genesis import Genesis, load_genesis
from node import wire
from node.tools.testing import make_test_chain, peer_session

NOFILE = 1024
SLOWLORIS_CONNS = 1500
PROBE_S = 0.5
PROBE_TIMEOUT_S = 10.0
HANDSHAKE_S = 2.0
HONEST_IP = "127.0.0.31"


@dataclass
class Trial:
    probes: int = 0
    probe_failures: int = 0
    handshakes: int = 0
    handshake_failures: int = 0
    last_handshake_ok: bool = False
    max_fds: int = 0
    alive: bool = False
    attacker: dict[str, Any] = field(default_factory=dict[str, Any])

    @property
    def survived(self) -> bool:
        return (self.alive and self.probes > 0 and self.probe_failures == 0 and self.last_handshake_ok
                and self.handshakes >= self.handshake_failures and self.max_fds < NOFILE)


async def api_answers(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """GET /api/status on a new connection (a client arriving now, not one connected before the flood)."""
    try:
        async with asyncio.timeout(timeout), aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True)) as session, \
                session.get(f"{url}/api/status") as resp:
            return resp.status == 200 and "height" in await resp.json()
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return False


async def _probe(node: NodeProc, trial: Trial, stop: asyncio.Event) -> None:
    while not stop.is_set():
        trial.probes += 1
        trial.probe_failures += not await api_answers(node.api_url)
        await asyncio.sleep(PROBE_S)


async def handshake(url: str, genesis: Genesis, source: str = HONEST_IP, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Open a peer connection to ``url`` and complete the HELLO exchange (then leave)."""
    try:
        async with asyncio.timeout(timeout), peer_session(source) as session:
            ws = await session.ws_connect(url, autoping=False, max_msg_size=wire.MAX_FRAME, compress=0)
            await ws.send_bytes(hello(genesis, 0))
            msg = await ws.receive()
            ok = msg.type == aiohttp.WSMsgType.BINARY and isinstance(wire.decode(msg.data), wire.Hello)
            await ws.close()
            return ok
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return False


async def _handshakes(node: NodeProc, genesis: Genesis, trial: Trial, stop: asyncio.Event) -> None:
    url = f"http://{node.p2p_addr[0]}:{node.p2p_addr[1]}/p2p"
    while not stop.is_set():
        ok = await handshake(url, genesis)
        trial.handshakes += ok
        trial.handshake_failures += not ok
        trial.last_handshake_ok = ok
        await asyncio.sleep(HANDSHAKE_S)


async def _fds(node: NodeProc, trial: Trial, stop: asyncio.Event) -> None:
    while not stop.is_set():
        trial.max_fds = max(trial.max_fds, node.open_fds())
        await asyncio.sleep(0.2)


async def one_trial(tmp: Path, genesis_path: Path, seconds: float, name: str) -> Trial:
    genesis = load_genesis(genesis_path.read_bytes())
    node = NodeProc(tmp / name, genesis=genesis_path, nofile=NOFILE).start()
    trial = Trial()
    try:
        await node.ready()
        stop = asyncio.Event()
        attacker = await spawn_hostile("slowloris", "--ports", f"{node.ports['p2p']},{node.ports['api']}",
                                       "--conns", str(SLOWLORIS_CONNS), "--seconds", str(seconds + 5))
        await asyncio.sleep(2.0)    # the flood builds up before we judge
        side = [asyncio.create_task(f(node, trial, stop)) for f in (_probe, _fds)]
        side.append(asyncio.create_task(_handshakes(node, genesis, trial, stop)))
        started = time.monotonic()
        while time.monotonic() - started < seconds and node.alive():
            await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*side, return_exceptions=True)
        trial.alive = node.alive()
        [trial.attacker] = await stop_now([attacker])
        if trial.alive:
            await status(node)     # and it still serves once the flood is over
    except Exception:  # noqa: BLE001 -- a node that cannot answer any more fails the trial
        trial.alive = False
    finally:
        await asyncio.to_thread(node.stop)
    return trial


async def run_trials(tmp: Path, trials: int, seconds: float) -> list[Trial]:
    chain = make_test_chain(tmp / "chain", rounds=4)
    return [await one_trial(tmp, chain.genesis_path, seconds, f"node{k}") for k in range(trials)]


def run(quick: bool = False) -> list[dict[str, Any]]:
    trials = 1 if quick else 3
    seconds = 10.0 if quick else 30.0
    with tempfile.TemporaryDirectory(prefix="popchain-bench-fd-") as tmp:
        results = asyncio.run(run_trials(Path(tmp), trials, seconds))
    survived = sum(t.survived for t in results)
    detail = "; ".join(f"alive {t.alive}, api {t.probes - t.probe_failures}/{t.probes}, handshakes "
                       f"{t.handshakes}/{t.handshakes + t.handshake_failures}, max fds {t.max_fds}, attacker "
                       f"{t.attacker.get('connections', 0)} conns" for t in results)
    return [{"name": "fd_exhaustion_survived", "value": float(survived), "unit": "trials", "baseline": float(trials),
             "ratio": survived / trials,
             "goal": f"all ({trials} trials of {seconds:.0f} s at ulimit -n {NOFILE}, slowloris "
                     f"{SLOWLORIS_CONNS} conns on p2p + API from 4 IPs): {detail}"}]


if __name__ == "__main__":
    from benchmarks.harness import format_table
    print(format_table(run(quick="--quick" in sys.argv)))
