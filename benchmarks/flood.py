"""Floods from many peers: 31 hostile peers from 4 IPs against a real node process; figures
``flood_rss_growth_mb`` and ``flood_api_p99_ms``.

The victim holds a chain of real-size blocks (0.4–1 MB models: benchmarks/_bigchain.py). For each class — INV,
GETDATA (the real blocks, requested over and over by peers that never read), ADDR, TX (see
benchmarks/hostile.py) — four attacker processes, one per source address (four fresh 127.0.x.y addresses per
class: 8 + 8 + 8 + 7 connections, up to the per-IP cap), flood at ``FRAMES_PER_S`` frames/s per connection for ``seconds``, all at
once. Meanwhile this process samples the node's VmRSS (/proc) ten times a second, asks ``/api/status`` every
PROBE_S (a failure or a time-out counts as PROBE_TIMEOUT_S), and keeps one honest peer (127.0.0.30) that asks
for a real block every second and counts the answers.

Figures, each beside its same-run baseline:
- ``flood_rss_growth_mb``: the worst class's peak RSS minus the RSS before the first flood (memory a class
  leaves behind counts against the next); baseline: the growth over the same time with 31 *idle* peers from the
  same addresses. Goal ≤ 64 MB.
- ``flood_api_p99_ms``: the 99th percentile of the API probes during all floods; baseline: the same during the
  idle phase. Goal ≤ 1,000 ms.
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

from benchmarks._attack import collect, spawn_hostile
from benchmarks._bigchain import build_big_chain
from benchmarks._nodeproc import NodeProc, metric_sum
from node import wire
from node.tools.client import NodeClient
from node.tools.testing import make_test_chain, peer_session
from node.wire import InvKind

FRAMES_PER_S = 100
GOAL_MB = 64.0
GOAL_P99_MS = 1000.0
CLASSES = ("inv", "getdata", "addr", "tx")
PEERS_PER_IP = (8, 8, 8, 7)   # 31 peers from 4 IPs (up to the per-IP cap of 8)


def sources(phase: int) -> list[tuple[str, int]]:
    """The 4 source addresses of a phase (nodes discourage by IP: each class gets addresses of its own, so that
    the bans one class earns do not spare the node the next class)."""
    return [(f"127.0.{10 + phase}.{10 + k}", n) for k, n in enumerate(PEERS_PER_IP)]
HONEST_IP = "127.0.0.30"
PROBE_S = 0.1
PROBE_TIMEOUT_S = 10.0


@dataclass
class Phase:
    kind: str
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    api_ms: list[float] = field(default_factory=list)
    honest_asked: int = 0
    honest_served: int = 0
    attackers: list[dict[str, Any]] = field(default_factory=list)

    def total(self, key: str) -> int:
        return sum(int(a.get(key, 0)) for a in self.attackers)


async def probe_api(url: str, phase: Phase, stop: asyncio.Event) -> None:
    async with NodeClient(url, timeout_s=PROBE_TIMEOUT_S) as api:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                await api.status()
                phase.api_ms.append((time.perf_counter() - t) * 1000)
            except Exception:  # noqa: BLE001 -- a failed probe counts as the time-out
                phase.api_ms.append(PROBE_TIMEOUT_S * 1000)
            await asyncio.sleep(PROBE_S)


async def sample_rss(node: NodeProc, phase: Phase, stop: asyncio.Event) -> None:
    while not stop.is_set():
        phase.rss_peak_mb = max(phase.rss_peak_mb, node.rss_mb())
        await asyncio.sleep(0.1)


async def honest_peer(p2p_url: str, genesis_path: Path, block: bytes, phase: Phase, stop: asyncio.Event) -> None:
    """An honest peer that asks for a real block every second (reconnecting if dropped): is it still served?"""
    from benchmarks.hostile import hello
    from consensus.protocol.genesis import load_genesis
    genesis = load_genesis(genesis_path.read_bytes())
    async with peer_session(HONEST_IP) as session:
        while not stop.is_set():
            try:
                ws = await session.ws_connect(p2p_url, autoping=False, max_msg_size=wire.MAX_FRAME, compress=0)
                await ws.send_bytes(hello(genesis, 0))
                while not stop.is_set():
                    phase.honest_asked += 1
                    await ws.send_bytes(wire.encode(wire.GetData(((InvKind.BLOCK, block),))))
                    deadline = time.monotonic() + PROBE_TIMEOUT_S
                    while time.monotonic() < deadline:
                        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                        if msg.type != aiohttp.WSMsgType.BINARY:
                            raise ConnectionError("closed")
                        m = wire.decode(msg.data)
                        if isinstance(m, wire.Ping):
                            await ws.send_bytes(wire.encode(wire.Pong(m.nonce)))
                        elif isinstance(m, wire.Object) and m.kind == InvKind.BLOCK:
                            phase.honest_served += 1
                            break
                    await asyncio.sleep(1.0)
            except (TimeoutError, aiohttp.ClientError, OSError, ConnectionError, ValueError):
                await asyncio.sleep(0.5)


async def run_phase(node: NodeProc, genesis_path: Path, kind: str, seconds: float, blocks: list[bytes],
                    baseline_rss: float, phase_no: int = 0) -> Phase:
    phase = Phase(kind, rss_start_mb=baseline_rss, rss_peak_mb=node.rss_mb())
    url = f"http://{node.p2p_addr[0]}:{node.p2p_addr[1]}/p2p"
    stop = asyncio.Event()
    side = [asyncio.create_task(probe_api(node.api_url, phase, stop)), asyncio.create_task(sample_rss(node, phase, stop)),
            asyncio.create_task(honest_peer(url, genesis_path, blocks[-1], phase, stop))]
    if kind == "idle":
        procs = [await spawn_hostile("hold", "--url", url, "--genesis", str(genesis_path), "--source", ip,
                               "--peers", str(n), "--seconds", str(seconds)) for ip, n in sources(phase_no)]
    else:
        procs = [await spawn_hostile("flood", "--url", url, "--genesis", str(genesis_path), "--source", ip,
                               "--peers", str(n), "--seconds", str(seconds), "--kind", kind,
                               "--rate", str(FRAMES_PER_S), "--blocks", ",".join(b.hex() for b in blocks))
                 for ip, n in sources(phase_no)]
    try:
        phase.attackers = await collect(procs, seconds + 30)
        await asyncio.sleep(1.0)   # what the node still has to chew on counts too
    finally:
        stop.set()
        for t in side:
            t.cancel()
        await asyncio.gather(*side, return_exceptions=True)
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
    return phase


async def settle(node: NodeProc, timeout: float = 30.0) -> None:
    """Wait (bounded) until the node answers its API quickly again, so one class's backlog is not the next's."""
    async with NodeClient(node.api_url, timeout_s=timeout) as api:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                await api.status()
            except Exception:  # noqa: BLE001, S110 -- still busy
                pass
            if time.perf_counter() - t < 0.05:
                return
            await asyncio.sleep(0.2)


async def run_floods(tmp: Path, seconds: float, n_blocks: int,
                     classes: tuple[str, ...] = CLASSES) -> tuple[Phase, list[Phase], dict[str, object]]:
    chain = make_test_chain(tmp / "chain", rounds=4 * n_blocks + 8)
    blocks = await asyncio.to_thread(build_big_chain, tmp / "victim", chain, n_blocks)
    node = NodeProc(tmp / "victim", genesis=None).start()
    try:
        await node.ready()
        await asyncio.sleep(2.0)   # start-up allocations settle
        idle = await run_phase(node, chain.genesis_path, "idle", seconds, blocks, node.rss_mb())
        idle_growth = max(0.0, idle.rss_peak_mb - idle.rss_start_mb)
        baseline_rss = node.rss_mb()
        phases = []
        for k, kind in enumerate(classes, start=1):
            await settle(node)
            phases.append(await run_phase(node, chain.genesis_path, kind, seconds, blocks, baseline_rss, k))
        async with NodeClient(node.api_url) as api:
            peers = await api.peers()
            metrics = (await api._request("GET", "/metrics", raw=True)).decode()
        after: dict[str, object] = {
            "alive": node.alive(), "discouraged": len(peers["discouraged"]), "idle_growth_mb": idle_growth,
            "offences": metric_sum(metrics, "popchain_peer_offences_total"), "rss_end_mb": node.rss_mb(),
            "evictions": metric_sum(metrics, "popchain_evictions_total")}
        return idle, phases, after
    finally:
        await asyncio.to_thread(node.stop)


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def run(quick: bool = False) -> list[dict[str, Any]]:
    seconds = 3.0 if quick else 20.0
    n_blocks = 3 if quick else 6
    with tempfile.TemporaryDirectory(prefix="popchain-bench-flood-") as tmp:
        idle, phases, after = asyncio.run(run_floods(Path(tmp), seconds, n_blocks))
    growth = {p.kind: max(0.0, p.rss_peak_mb - p.rss_start_mb) for p in phases}
    worst = max(growth, key=lambda k: growth[k])
    api_p99 = p99([ms for p in phases for ms in p.api_ms])
    idle_p99 = p99(idle.api_ms)
    idle_growth = float(after["idle_growth_mb"])  # type: ignore[arg-type]
    detail = "; ".join(f"{p.kind} +{growth[p.kind]:.0f} MB, api p99 {p99(p.api_ms):.0f} ms, {p.total('frames_sent')} "
                       f"frames, {p.total('connections')} conn, {p.total('refused')} refused, honest served "
                       f"{p.honest_served}/{p.honest_asked}" for p in phases)
    how = (f"31 peers from 4 IPs, {seconds:.0f} s per class at {FRAMES_PER_S} frames/s each, {n_blocks} blocks of "
           f"0.4-1 MB; {detail}; node alive {after['alive']}, offences {after['offences']:.0f}, evictions "
           f"{after['evictions']:.0f}")
    return [{"name": "flood_rss_growth_mb", "value": growth[worst], "unit": "MB", "baseline": idle_growth,
             "ratio": growth[worst] / GOAL_MB,
             "goal": f"<= {GOAL_MB:.0f} MB (ratio = value / goal; baseline = 31 idle peers); worst {worst}; {how}"},
            {"name": "flood_api_p99_ms", "value": api_p99, "unit": "ms", "baseline": idle_p99,
             "ratio": api_p99 / GOAL_P99_MS,
             "goal": f"<= {GOAL_P99_MS:.0f} ms during the floods (ratio = value / goal; baseline = idle peers)"}]


if __name__ == "__main__":
    from benchmarks.harness import format_table
    print(format_table(run(quick="--quick" in sys.argv)))
