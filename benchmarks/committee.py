"""Keyholder-committee figures (PROTOCOL §3.10), real node processes on loopback, W = O = 1 s:

- committee_round_latency_s: seconds per round (beacon r → beacon r+1 as seen by a plain node; an entrant enters
  every round at once, no blocks: void rounds) with a 2-of-3 committee, three member processes; baseline: the
  same chain shape with a single keyholder process, same run. The committee adds the notice and beacon message
  rounds (propose → co-sign → release → sign). Goal ≤ baseline + 0.5 s. (Named apart from benchmarks.network's
  ``round_latency_s``, the crowned-block latency of one round, which predates committees.)
- keyholder_failover_s: SIGKILL the round's beacon leader right after its round opened → that round's beacon is
  out at the plain node, under the next leader. Goal ≤ 2 × the entry window W; baseline: W (the round's own
  window, which the failover adds to).
"""
from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._nodeproc import NodeProc, stop_all
from node.tools.client import NodeClient
from node.tools.committee_kit import CommitteeChain, Entrant, beacon_leader, kill, make_committee_chain


async def _network(root: Path, chain: CommitteeChain) -> tuple[NodeProc, list[NodeProc]]:
    a = NodeProc(root / "A", genesis=chain.genesis_path)
    await a.start().ready()
    members: list[NodeProc] = []
    for i, path in enumerate(chain.member_paths):
        m = NodeProc(root / f"M{i + 1}", genesis=chain.genesis_path, keyholder=path,
                     peers=[a.p2p_addr] + [x.p2p_addr for x in members])
        await m.start().ready()
        members.append(m)
    return a, members


async def _beacon_times(ent: Entrant, rounds: int) -> list[float]:
    """perf_counter times at which beacons of consecutive rounds appear at the plain node."""
    seen: dict[int, float] = {}
    start = None

    async def pred(status):
        nonlocal start
        r = status["round"]
        if status["round_phase"] != "open" and r not in seen:
            seen[r] = time.perf_counter()
            if start is None:
                start = r
        return start is not None and len(seen) >= rounds + 1
    await ent.until(pred, timeout=60 + 10 * rounds, poll=0.01)
    return [seen[r] for r in sorted(seen)]


async def _latency(root: Path, chain: CommitteeChain, rounds: int) -> tuple[float, list[NodeProc], NodeProc]:
    a, members = await _network(root, chain)
    async with NodeClient(a.api_url) as c:
        times = await _beacon_times(Entrant(c, chain), rounds)
    return statistics.median(b - x for x, b in zip(times, times[1:])), members, a


async def _failover(root: Path, chain: CommitteeChain, a: NodeProc, members: list[NodeProc], trials: int) -> list[float]:
    out = []
    async with NodeClient(a.api_url) as c:
        ent = Entrant(c, chain)
        for _ in range(trials):
            async def fresh_open(status):
                r = status["open_round"]
                return r if r and status["round_phase"] == "open" and r in ent.entered else None
            r = await ent.until(fresh_open)
            i = beacon_leader(chain, r)
            t0 = time.perf_counter()
            kill(members[i])

            async def revealed(status, r=r):
                return status["round"] > r or (status["round"] == r and status["round_phase"] != "open")
            await ent.until(revealed, timeout=60, poll=0.01)
            out.append(time.perf_counter() - t0)
            peers = [a.p2p_addr] + [m.p2p_addr for j, m in enumerate(members) if j != i and m.alive()]
            members[i] = NodeProc(members[i].datadir, genesis=chain.genesis_path, keyholder=chain.member_paths[i],
                                  peers=peers)
            await members[i].start().ready()
            now = (await c.status())["round"]
            await ent.until(lambda s, now=now: _after(s, now + 1), timeout=60)
    return out


async def _after(status, r: int) -> bool:
    return status["round"] >= r and status["round_phase"] != "open"


async def _all(quick: bool) -> list[dict]:
    rounds, trials = (3, 1) if quick else (10, 3)
    with tempfile.TemporaryDirectory(prefix="popchain-bench-committee-") as tmp:
        root = Path(tmp)
        single = make_committee_chain(root / "single", n=1, t=1, rounds=60, chain_id="popchain-bench-single")
        base, ms, a = await _latency(root / "s", single, rounds)
        stop_all([a, *ms])
        committee = make_committee_chain(root / "committee", n=3, t=2, rounds=60, chain_id="popchain-bench-cmt")
        value, members, a = await _latency(root / "c", committee, rounds)
        try:
            fails = await _failover(root / "c", committee, a, members, trials)
        finally:
            stop_all([a, *members])
    window = committee.genesis.params.entry_window_s
    fail = statistics.median(fails)
    return [
        {"name": "committee_round_latency_s", "value": value, "unit": "s/round", "baseline": base,
         "ratio": value / base, "goal": f"<= single keyholder ({base:.2f} s/round, same run) + 0.5 s; "
                                        f"W = O = 1 s; n={rounds}"},
        {"name": "keyholder_failover_s", "value": fail, "unit": "s", "baseline": float(window),
         "ratio": fail / window, "goal": f"<= 2 x entry window (W = {window} s); kill → beacon; n={len(fails)}"},
    ]


def run(quick: bool = False) -> list[dict]:
    return asyncio.run(_all(quick))
