"""LAN in network namespaces: nodes as separate processes, each in its own namespace with its own address, links
with 5–50 ms latency and 1 % loss, a partition in two halves for a few rounds, then healed. Needs root.

Layout (benchmarks/netns/ns.py): a hub namespace with a bridge, node i in namespace ``poplan<pid>-n<i>`` at
10.77.x.y (node_addr), joined to the bridge by a veth pair; nothing exists outside these namespaces. Node i runs
``ip netns exec NS python -m node run --listen 10.77.x.y --api-listen 10.77.x.y`` with peer exchange off (the
topology is fixed: a node told its peers' real addresses would dial them around the emulated links) and dials
each of its links through the link proxy of its namespace (benchmarks/netns/proxy.py) at 127.77.x.y:9444, which
forwards to the peer's real address with the link's delay and loss. The two halves are rings with chords, joined
by a few cross links; node 0 (half A) is the keyholder; one scripted miner mines on node 0, another on the first
node of half B. The driver (miners, status polling) runs on a thread inside the hub namespace.

Scenario: all links up → wait for every node to hold every link → warm-up until 2 blocks are crowned and all
nodes share the tip → cut for PARTITION_ROUNDS rounds of the keyholder (and until half A crowned a block half B
lacks) → heal → measure; twice: first the cross links *stall* (SIGUSR1 to the proxies: TCP holds the data), then
their connections are *reset* (SIGHUP: the nodes must re-dial after the heal). Figure ``netns_converge_s``: the
worse of the two, from the heal until one tip everywhere, also in rounds (round
boundaries the keyholder passed meanwhile; goal ≤ 3). Baseline: 3 × the round period measured in the same run
(ratio ≤ 1 meets the goal). ``python -m benchmarks.lan [--quick] [--nodes N]``.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._nodeproc import ROOT, NodeProc, stop_all
from benchmarks.netns.ns import HUB_ADDR, Lan, links_crossing, node_addr, run_in_namespace, unavailable
from node.tools.client import NodeClient
from node.tools.testing import ScriptedMiner, TestChain, make_test_chain, wait_for

P2P_PORT, API_PORT = 9444, 9445
DELAY_MS = (5, 50)
LOSS = 0.01
PARTITION_ROUNDS = 3
WARMUP_BLOCKS = 2
CUTS = ("stall", "reset")
CUT_SIGNALS = {"stall": signal.SIGUSR1, "reset": signal.SIGHUP}

__all__ = ["HUB_ADDR", "run", "run_lan", "LanResult", "topology", "unavailable"]


def proxy_addr(j: int) -> str:
    """Where node j is reached from inside another node's namespace (the link proxy listens there)."""
    return f"127.77.{j // 250}.{j % 250 + 1}"


@dataclass(frozen=True)
class Topology:
    n: int
    edges: tuple[tuple[int, int], ...]   # (dialer, target)
    half_a: frozenset[int]

    def degree(self, i: int) -> int:
        return sum(i in e for e in self.edges)

    @property
    def cross(self) -> set[tuple[int, int]]:
        return links_crossing(self.edges, set(self.half_a))


def topology(n: int) -> Topology:
    """Two halves, each a ring with chords, and about three cross links between them."""
    if n < 4:
        raise ValueError("the LAN needs at least 4 nodes (two halves of two)")
    h = n // 2
    edges: set[tuple[int, int]] = set()
    for group in (list(range(h)), list(range(h, n))):
        for k in range(1, len(group)):
            edges.add((group[k], group[k - 1]))
        if len(group) >= 3:
            edges.add((group[-1], group[0]))
        for k in range(3, len(group), 3):
            edges.add((group[k], group[k - 3]))
    for k in range(0, h, max(1, h // 3)):
        edges.add((h + k, k))
    return Topology(n, tuple(sorted(edges)), frozenset(range(h)))


@dataclass
class Phase:
    """One cut and heal."""
    kind: str                       # "stall" or "reset" (benchmarks/netns/proxy.py)
    converge_s: float | None = None
    converge_rounds: int | None = None
    diverged: bool = False          # during the cut, half B's tip differed from half A's (the cut was real)
    cut_rounds: int = 0


@dataclass
class LanResult:
    n: int
    phases: list[Phase] = field(default_factory=list)
    round_period_s: float = 0.0
    heights: list[int] = field(default_factory=list)
    last_round: int = 0
    discouraged: int = 0
    setup_s: float = 0.0
    log: list[str] = field(default_factory=list)


def _link_delay_ms(seed: int, a: int, b: int) -> float:
    return random.Random(f"{seed}/{min(a, b)}/{max(a, b)}").uniform(*DELAY_MS)


def _proxy_spec(topo: Topology, i: int, seed: int) -> dict:
    cross = topo.cross
    return {"links": [{"listen": [proxy_addr(j), P2P_PORT], "to": [node_addr(j), P2P_PORT],
                       "delay_ms": _link_delay_ms(seed, i, j), "loss": LOSS, "cross": (i, j) in cross,
                       "seed": seed * 1_000_003 + i * 1000 + j}
                      for a, j in topo.edges if a == i]}


async def _statuses(clients: list[NodeClient]) -> list[dict]:
    return list(await asyncio.gather(*(c.status() for c in clients)))


async def _drive(topo: Topology, chain: TestChain, nodes: list[NodeProc], proxies: list[subprocess.Popen],
                 result: LanResult, timeout_s: float, cuts: tuple[str, ...], warmup_blocks: int) -> None:
    """On the hub namespace's thread: wait for the mesh, mine, cut, heal, measure."""
    clients = [NodeClient(f"http://{node_addr(i)}:{API_PORT}", datadir=n.datadir, timeout_s=30)
               for i, n in enumerate(nodes)]
    h = min(set(range(topo.n)) - topo.half_a)
    tasks: list[asyncio.Task] = []
    mesh_t0 = time.perf_counter()
    try:
        async def meshed() -> bool:
            return all(s["peers"] >= topo.degree(i) for i, s in enumerate(await _statuses(clients)))
        await wait_for(meshed, timeout=timeout_s, interval=0.2, what="every link up")
        result.log.append(f"mesh up after {time.perf_counter() - mesh_t0:.1f} s (setup {result.setup_s:.1f} s)")
        # two families in half A so that most rounds crown someone (a candidate must beat the champion)
        miners = [ScriptedMiner(clients[0], chain.miners[0], chain.genesis, family="mlp", seed=1, poll_s=0.05),
                  ScriptedMiner(clients[1], chain.miners[1], chain.genesis, family="linear", seed=2, poll_s=0.05),
                  ScriptedMiner(clients[h], chain.miners[2], chain.genesis, family="linear", seed=3, poll_s=0.05)]
        tasks = [asyncio.create_task(m.run()) for m in miners]
        rounds_seen: list[tuple[float, int]] = []

        async def poll() -> list[dict]:
            sts = await _statuses(clients)
            result.heights = [st["height"] for st in sts]
            result.last_round = sts[0]["round"]
            if not rounds_seen or sts[0]["round"] != rounds_seen[-1][1]:
                rounds_seen.append((time.perf_counter(), sts[0]["round"]))
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            return sts
        start_height = (await poll())[0]["height"]

        async def warm() -> bool:
            sts = await poll()
            return sts[0]["height"] >= start_height + warmup_blocks and len({s["tip"] for s in sts}) == 1
        await wait_for(warm, timeout=timeout_s, interval=0.1, what="warm-up blocks on every node")
        result.log.append(f"warm: height {(await poll())[0]['height']}")
        for kind in cuts:
            phase = await _partition(kind, topo, clients, proxies, poll, result, timeout_s)
            result.phases.append(phase)
            if phase.converge_s is None:
                break
        result.heights = [s["height"] for s in await _statuses(clients)]
        spans = [(t1 - t0) / (r1 - r0) for (t0, r0), (t1, r1) in zip(rounds_seen, rounds_seen[1:]) if r1 > r0]
        result.round_period_s = statistics.median(spans) if spans else 0.0
        peers = await asyncio.gather(*(c.peers() for c in clients))
        result.discouraged = sum(len(p["discouraged"]) for p in peers)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in clients:
            await c.close()


async def _partition(kind: str, topo: Topology, clients: list[NodeClient], proxies: list[subprocess.Popen],
                     poll: Callable[[], Awaitable[list[dict]]], result: LanResult, timeout_s: float) -> Phase:
    """Cut the cross links (``kind``) for at least PARTITION_ROUNDS rounds and until half A crowned a block
    half B cannot have; heal; measure until one tip everywhere."""
    phase = Phase(kind)
    for p in proxies:
        p.send_signal(CUT_SIGNALS[kind])
    sts = await poll()
    cut_round, cut_height = sts[0]["round"], sts[0]["height"]
    result.log.append(f"{kind}: cut at round {cut_round}, height {cut_height}")

    last: list[dict] = []

    async def cut_long_enough() -> bool:
        sts = await poll()
        last[:] = sts
        # the keyholder's node holds a tip no node of half B has
        phase.diverged = phase.diverged or sts[0]["tip"] not in {s["tip"] for i, s in enumerate(sts)
                                                                  if i not in topo.half_a}
        return (sts[0]["round"] >= cut_round + PARTITION_ROUNDS and sts[0]["height"] > cut_height
                and phase.diverged)
    await wait_for(cut_long_enough, timeout=timeout_s, interval=0.1, what="partition rounds")
    for p in proxies:
        p.send_signal(signal.SIGUSR2)
    healed_at = time.perf_counter()
    heal_round = last[0]["round"]
    phase.cut_rounds = heal_round - cut_round
    result.log.append(f"{kind}: cut at round {cut_round}, healed at {heal_round}; heights before the heal "
                      f"{[s['height'] for s in last]}; diverged {phase.diverged}")

    async def one_tip() -> list[dict] | None:
        sts = await poll()
        return sts if len({s["tip"] for s in sts}) == 1 else None
    try:
        sts = await wait_for(one_tip, timeout=timeout_s, interval=0.05, what="one tip everywhere")
        phase.converge_s = time.perf_counter() - healed_at
        phase.converge_rounds = sts[0]["round"] - heal_round
        result.log.append(f"{kind}: one tip after {phase.converge_s:.2f} s, {phase.converge_rounds} rounds")
    except TimeoutError:
        result.log.append(f"{kind}: no single tip within {timeout_s:.0f} s")
    return phase


def run_lan(n: int, work: Path, *, seed: int = 7, timeout_s: float = 300.0,
            cuts: tuple[str, ...] = CUTS, warmup_blocks: int = WARMUP_BLOCKS, rounds: int = 80) -> LanResult:
    """Build the LAN, run the scenario, tear everything down (always). Raises RuntimeError if unavailable."""
    why = unavailable()
    if why:
        raise RuntimeError(f"LAN harness unavailable: {why}")
    topo = topology(n)
    result = LanResult(n)
    started = time.perf_counter()
    chain = make_test_chain(work / "chain", rounds=rounds, entry_window_s=1, opening_window_s=2, n_miners=3)
    lan = Lan(n)
    nodes: list[NodeProc] = []
    proxies: list[subprocess.Popen] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        lan.create()
        for i in range(n):
            spec = _proxy_spec(topo, i, seed)
            if not spec["links"]:
                continue
            path = work / f"proxy{i}.json"
            path.write_text(json.dumps(spec))
            proxies.append(subprocess.Popen([*lan.exec_prefix(i), sys.executable, "-m", "benchmarks.netns.proxy",
                                             str(path)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True))
        for p in proxies:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a link proxy did not start")
        for i in range(n):
            datadir = work / f"n{i}"
            datadir.mkdir(parents=True)
            (datadir / "config.json").write_text(json.dumps({"peer_exchange": False}))
            peers = [(proxy_addr(j), P2P_PORT) for a, j in topo.edges if a == i]
            nodes.append(NodeProc(datadir, genesis=chain.genesis_path, peers=peers,
                                  keyholder=chain.keyholder_path if i == 0 else None, listen=node_addr(i),
                                  port=P2P_PORT, api_port=API_PORT, api_listen=node_addr(i),
                                  prefix=lan.exec_prefix(i), log_level="INFO").start())

        async def all_ready() -> None:
            await asyncio.gather(*(nd.ready(timeout=timeout_s) for nd in nodes))
        asyncio.run(all_ready())
        result.setup_s = time.perf_counter() - started
        try:
            run_in_namespace(lan.hub, lambda: asyncio.run(_drive(topo, chain, nodes, proxies, result, timeout_s, cuts,
                                                                   warmup_blocks)))
        except TimeoutError:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s; so far: {'; '.join(result.log)}; last seen: "
                               f"round {result.last_round}, heights {result.heights}") from None
        return result
    finally:
        stop_all(nodes)
        for p in proxies:
            if p.poll() is None:
                p.terminate()
        for p in proxies:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        lan.cleanup()


def run(quick: bool = False, nodes: int | None = None) -> list[dict]:
    n = nodes or (4 if quick else 16)
    cuts = ("reset",) if quick else CUTS   # quick: the harder cut only (the nodes must re-dial)
    why = unavailable()
    if why:   # reported, not hidden: the figure says why it has no value here
        return [{"name": "netns_converge_s", "value": float("nan"), "unit": "s", "baseline": None, "ratio": None,
                 "goal": f"<= 3 rounds; not measured: {why}"}]
    with tempfile.TemporaryDirectory(prefix="popchain-bench-lan-") as tmp:
        r = run_lan(n, Path(tmp), cuts=cuts, warmup_blocks=1 if quick else WARMUP_BLOCKS, rounds=40 if quick else 80)
    if os.environ.get("POPCHAIN_LAN_LOG"):
        print("\n".join(r.log), file=sys.stderr)
    done = [ph for ph in r.phases if ph.converge_s is not None]
    worst = max(r.phases, key=lambda ph: ph.converge_s if ph.converge_s is not None else float("inf"))
    value = worst.converge_s if worst.converge_s is not None and len(done) == len(cuts) else float("inf")
    budget = 3 * r.round_period_s if r.round_period_s else float("nan")
    phases = "; ".join(f"{ph.kind} cut ({ph.cut_rounds} rounds, diverged {ph.diverged}): "
                       + (f"{ph.converge_s:.2f} s = {ph.converge_rounds} rounds" if ph.converge_s is not None
                          else "never one tip") for ph in r.phases)
    return [{"name": "netns_converge_s", "value": value, "unit": "s", "baseline": budget,
             "ratio": value / budget if r.round_period_s else None,
             "goal": f"<= 3 rounds (baseline 3 x the round period measured, {r.round_period_s:.2f} s); worst of: "
                     f"{phases}; {n} nodes in namespaces, {DELAY_MS[0]}-{DELAY_MS[1]} ms links, {LOSS:.0%} loss; "
                     f"discouraged {r.discouraged}"}]

if __name__ == "__main__":
    from benchmarks.harness import format_table
    args = sys.argv[1:]
    count = int(args[args.index("--nodes") + 1]) if "--nodes" in args else None
    print(format_table(run(quick="--quick" in args, nodes=count)))
