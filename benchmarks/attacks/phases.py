"""Attack phases on a LiveNet, shared by the live figures (benchmarks.attacks.live_figures) and the tests
(tests/test_attack_live.py): start the attacker process, let it act on the honest miners' blocks, stop it, and
read what the honest nodes did (benchmarks.attacks.observe). Each returns an outcome with the raw evidence
(per block, per node, per penalty line) so that a failing test or a figure can say exactly what happened.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.attacks import observe
from benchmarks.attacks.livenet import ATTACKER_ADDRESSES, MEMBERS, LiveNet, Proc
from benchmarks.attacks.protocol import Listing, listings, stamp_stall_ms, stolen
from consensus.protocol.messages import AnchorNotice, Beacon
from node.tools.client import ApiCallError, NodeClient

HONEST = ("H", "R", "V", "M1", "M2", "M3")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def on_main_chain(net: LiveNet, names: Sequence[str], blocks: Sequence[str]) -> dict[str, set[str]]:
    """node -> short ids (16 hex) of ``blocks`` on its main chain (API)."""
    out: dict[str, set[str]] = {}
    for name in names:
        found: set[str] = set()
        async with NodeClient(net.api(name)) as c:
            for b in blocks:
                try:
                    if (await c.block(b)).get("main_chain"):
                        found.add(b[:16])
                except (ApiCallError, OSError):
                    pass
        out[name] = found
    return out


@dataclass
class RaceOutcome:
    raced: list[dict[str, Any]]                                   # the racer's records (block, round, kind per victim)
    censored: list[observe.Censorship]                  # (block, node) refused by an honest node
    penalties: list[tuple[str, float, str, str, int, str]]   # honest penalties in the phase
    genuine: int = 0
    seconds: float = 0.0
    halted: bool = False                                # the committee stopped finalising rounds meanwhile
    refusals: dict[str, list[str]] = field(default_factory=dict)   # member -> why it would not co-sign (halted)

    @property
    def censored_blocks(self) -> int:
        return len({c.block for c in self.censored})

    @property
    def penalty_points(self) -> int:
        return sum(p[4] for p in self.penalties)

    def explain(self) -> str:
        lines = [(f"{len(self.raced)} blocks raced, {self.censored_blocks} censored, {self.penalty_points} "
                  "honest penalty points")]
        kinds = {rec["block"][:16]: rec["sent"] for rec in self.raced}
        for c in self.censored[:24]:
            lines.append(f"  {c.node} refused {c.block[:16]} (copy sent: {kinds.get(c.block[:16], {}).get(c.node)}): "
                         f"{c.refused or 'never accepted the genuine block'}")
        for node, _, peer, reason, pts, detail in self.penalties[:12]:
            lines.append(f"  {node} penalised honest {peer} {reason} +{pts}: {detail}")
        if self.halted:
            lines.append("  the committee stopped finalising rounds:")
            lines += [f"    {m} refused: {'; '.join(rs)}" for m, rs in self.refusals.items()]
        return "\n".join(lines)


async def watch(net: LiveNet, proc: Proc, max_rounds: int, stall_s: float) -> tuple[int, bool]:
    """Wait while ``proc`` runs and H is within ``max_rounds`` rounds of its start; (round at the start, halted):
    halted = H's round did not move for ``stall_s`` (many round times: the committee stopped finalising)."""
    async with NodeClient(net.api("H")) as c:
        r0 = last = (await c.status())["round"]
        moved = time.time()
        while proc.alive() and last <= r0 + max_rounds:
            await asyncio.sleep(0.2)
            cur = (await c.status())["round"]
            if cur != last:
                last, moved = cur, time.time()
            elif time.time() - moved > stall_s:
                return r0, True
    return r0, False


async def race(net: LiveNet, victims: Sequence[str], blocks: int, tag: str, *, max_rounds: int = 12,
               linger_s: float = 0.0, stall_s: float = 30.0) -> RaceOutcome:
    """The tamper racer hears H and races ``victims`` until it has raced ``blocks`` round blocks (or
    ``max_rounds`` rounds went by, or the chain halted); then the honest nodes' verdicts on those genuine blocks
    and the penalties they gave honest peers meanwhile."""
    out = net.root / f"racer-{tag}.jsonl"
    started = time.time()
    racer = net.attacker("racer", "--source", net.p2p("H"), *[a for v in victims for a in ("--victim", net.p2p(v))],
                         "--out", str(out), "--max", str(blocks))
    try:
        _, halted = await watch(net, racer, max_rounds, stall_s)
    finally:
        racer.stop()
    raced = read_jsonl(out)
    if raced and not halted:   # let the round of the last raced block close everywhere
        try:
            await net.until_round(max(r["round"] for r in raced) + 1, timeout=stall_s)
        except TimeoutError:
            halted = True
    await asyncio.sleep(linger_s + 1.0)
    ended = time.time()
    blocks_raced = [r["block"] for r in raced]
    names = [n for n in HONEST if n != "H"]
    views = [observe.NodeView.of(n, observe.read_log(net.root / n)) for n in names]
    chains = await on_main_chain(net, [*names, "H"], blocks_raced)
    censored = observe.censored(blocks_raced, views, chains, winners=chains["H"])
    all_views = views + [observe.NodeView.of("H", observe.read_log(net.root / "H"))]
    penalties = observe.honest_penalties(all_views, ATTACKER_ADDRESSES, started, ended)
    return RaceOutcome(raced, censored, penalties, len(blocks_raced), ended - started, halted,
                       await refusals(net) if halted else {})


async def quiet(net: LiveNet, rounds: int) -> RaceOutcome:
    """The same network with no attacker for ``rounds`` rounds: the same-run baseline of the race figures."""
    started = time.time()
    r0 = (await net.status())["round"]
    await net.until_round(r0 + rounds + 1)
    await asyncio.sleep(1.0)
    ended = time.time()
    h = observe.NodeView.of("H", observe.read_log(net.root / "H"))
    genuine = observe.genuine_blocks(h, started, ended - 1.0)
    names = [n for n in HONEST if n != "H"]
    views = [observe.NodeView.of(n, observe.read_log(net.root / n)) for n in names]
    censored = observe.censored(genuine, views, {})
    penalties = observe.honest_penalties(views + [h], ATTACKER_ADDRESSES, started, ended)
    return RaceOutcome([], censored, penalties, len(genuine), ended - started, False, {})


@dataclass
class ThiefOutcome:
    journal: list[dict[str, Any]]
    crowned: list[tuple[int, bytes, bytes]]            # (round, miner, model hash) crowned during the phase
    thefts: list[tuple[int, bytes, Listing]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def attempts(self) -> list[dict[str, Any]]:
        return [j for j in self.journal if j["kind"] == "steal"]

    def explain(self) -> str:
        lines = [f"{len(self.attempts)} steal attempts, {len(self.crowned)} crownings, {len(self.thefts)} stolen"]
        for j in self.attempts:
            lines.append(f"  round {j['round']}: re-entered {j['source']} model {j['model_hash'][:16]} of "
                         f"{j['from_miner'][:16]} (round {j['from_round']}) -> {j['status']}")
        for r, thief, first in self.thefts:
            lines.append(f"  round {r}: {thief.hex()[:16]} crowned with model {first.model_hash.hex()[:16]} first "
                         f"listed by {first.miner.hex()[:16]} in round {first.round}")
        return "\n".join(lines)


async def beacons(net: LiveNet, rounds: Sequence[int], node: str = "H") -> dict[int, Beacon]:
    out = {}
    async with NodeClient(net.api(node)) as c:
        for r in rounds:
            info = await c.round(r)
            if info.get("beacon"):
                out[r] = Beacon.decode(bytes.fromhex(info["beacon"]))
    return out


async def crowned_since(net: LiveNet, first_round: int, node: str = "H") -> list[tuple[int, bytes, bytes]]:
    async with NodeClient(net.api(node)) as c:
        history = (await c.champion())["history"]
    return [(h["round"], bytes.fromhex(h["miner"]), bytes.fromhex(h["model_hash"])) for h in history
            if h["round"] >= first_round and h["height"] > 0]


async def steal(net: LiveNet, victim_miner: int, thief_miner: int, attempts: int, tag: str, *,
                max_rounds: int = 12) -> ThiefOutcome:
    """The eclipse gateway + thief process between V2 (with its own honest miner) and H; until ``attempts``
    steal attempts are done. Then: crownings of model bytes first listed by another key."""
    await net.start_v2()
    out = net.root / f"thief-{tag}.jsonl"
    started = time.time()
    first_round = (await net.status())["round"]
    thief = net.attacker("thief", "--victim-node", net.p2p("V2"), "--upstream", net.p2p("H"), "--api", net.api("H"),
                         "--key-seed", net.chain.miners[thief_miner].seed.hex(), "--out", str(out),
                         "--max", str(attempts))
    victim = net.miner(f"victim-{tag}", "V2", victim_miner)
    try:
        async with NodeClient(net.api("H")) as c:
            while thief.alive() and (await c.status())["round"] <= first_round + max_rounds:
                await asyncio.sleep(0.2)
    finally:
        thief.stop()
        victim.stop()
    journal = read_jsonl(out)
    last = max([j["round"] for j in journal if j["kind"] == "steal"] + [first_round])
    await net.until_round(last + 1)
    crowned = await crowned_since(net, first_round)
    seen = [j for j in journal if j["kind"] == "seen"]
    bcs = await beacons(net, sorted({j["round"] for j in seen}))
    lst = listings([Listing(j["round"], bytes.fromhex(j["block"]), bytes.fromhex(j["miner"]),
                            bytes.fromhex(j["model_hash"])) for j in seen], bcs)
    return ThiefOutcome(journal, crowned, stolen(crowned, lst), time.time() - started)


async def stamp_stalls(net: LiveNet, first_round: int, last_round: int, node: str = "H") -> list[tuple[int, float]]:
    """(round, seconds) by which round r + 1 opened later than round r's reveal + O, for crowned rounds."""
    params = net.chain.genesis.params
    out = []
    async with NodeClient(net.api(node)) as c:
        for r in range(first_round, last_round + 1):
            info, nxt = await c.round(r), await c.round(r + 1)
            if info.get("status") != "crowned" or not info.get("beacon") or not nxt.get("notice"):
                continue
            beacon = Beacon.decode(bytes.fromhex(info["beacon"]))
            notice = AnchorNotice.decode(bytes.fromhex(nxt["notice"]))
            out.append((r, stamp_stall_ms(beacon, notice, params) / 1000))
    return out


@dataclass
class WithholdOutcome:
    announced: list[dict[str, Any]]                 # the withholder's records (block, round, announcing connections)
    censored: list[observe.Censorship]
    rounds: list[tuple[int, str]]         # (round, crowned | void) while it ran
    attacker_offences: int                # penalties honest nodes gave the withholder (it sends nothing invalid)
    seconds: float = 0.0

    @property
    def censored_blocks(self) -> int:
        return len({c.block for c in self.censored})

    @property
    def void(self) -> int:
        return sum(1 for _, s in self.rounds if s == "void")

    def explain(self) -> str:
        lines = [(f"{len(self.announced)} blocks announced and withheld, {self.censored_blocks} censored, "
                 f"{self.void}/{len(self.rounds)} rounds void, withholder penalised {self.attacker_offences} times")]
        lines += [f"  {c.node} never accepted {c.block[:16]}" for c in self.censored[:24]]
        return "\n".join(lines)


async def refusals(net: LiveNet) -> dict[str, list[str]]:
    """member -> its last two refusals (why it would not co-sign a proposal)."""
    out = {}
    for m in MEMBERS:
        st = await net.status(m)
        out[m] = [f"round {x['round']} {x['kind']}: {x['reason']}" for x in st["committee"]["refusals"][-2:]]
    return out


async def round_statuses(net: LiveNet, first: int, last: int, node: str = "H") -> list[tuple[int, str]]:
    async with NodeClient(net.api(node)) as c:
        return [(r, (await c.round(r))["status"]) for r in range(first, last + 1)]


async def withhold(net: LiveNet, victims: Sequence[str], valid_blocks: int, tag: str, *,
                   hog: Sequence[str] = ("R",), hog_connections: int = 20, max_rounds: int = 12) -> WithholdOutcome:
    """The withholder hears H, announces each genuine block first to ``victims`` and never delivers, holding
    ``hog_connections`` idle connections to each of ``hog`` (their whole-block pushes go to it); until it has
    announced ``valid_blocks`` blocks H found valid (openings that do not crown are pushed to every peer, so
    only those can be withheld), or ``max_rounds`` rounds went by."""
    out = net.root / f"withholder-{tag}.jsonl"
    started = time.time()
    proc = net.attacker("withholder", "--source", net.p2p("H"),
                        *[a for v in victims for a in ("--victim", net.p2p(v))],
                        *[a for h in hog for a in ("--hog", net.p2p(h))], "--hog-connections", str(hog_connections),
                        "--out", str(out))
    try:
        async with asyncio.timeout(120):   # its connections are up before the rounds it is judged on
            while not out.with_suffix(".ready").exists():
                await asyncio.sleep(0.2)
        r0 = (await net.status())["round"] + 1
        await net.until_round(r0)
        while (await net.status())["round"] <= r0 + max_rounds:
            h = observe.NodeView.of("H", observe.read_log(net.root / "H"))
            done = [a for a in read_jsonl(out) if a["round"] >= r0 and a["block"][:16] in h.valid]
            if len(done) >= valid_blocks:
                break
            await asyncio.sleep(0.5)
        last = (await net.status())["round"]
        await net.until_round(last + 1)
    finally:
        proc.stop()
    await asyncio.sleep(1.0)
    ended = time.time()
    announced = [a for a in read_jsonl(out) if r0 <= a["round"] <= last]
    names = [n for n in HONEST if n != "H"]
    views = [observe.NodeView.of(n, observe.read_log(net.root / n)) for n in names]
    blocks = [a["block"] for a in announced]
    chains = await on_main_chain(net, [*names, "H"], blocks)
    censored = [c for c in observe.censored(blocks, views, chains, winners=chains["H"]) if c.node in victims]
    offences = sum(1 for v in views for (t, peer, *_rest) in v.offences
                   if started <= t <= ended and observe.is_attacker(peer, ATTACKER_ADDRESSES))
    statuses = await round_statuses(net, r0, last)
    return WithholdOutcome(announced, censored, statuses, offences, ended - started)


@dataclass
class SplitOutcome:
    raced: list[dict[str, Any]]
    stuck_at: int                     # H's round when the racer had raced its blocks
    rounds_after: int                 # rounds the committee finalised after that, within the cap
    seconds: float                    # until 2 more rounds were final (the cap if they never were)
    refusals: dict[str, list[str]]    # member -> its last refusals (why it would not co-sign)

    @property
    def recovered(self) -> bool:
        return self.rounds_after >= 2

    def explain(self) -> str:
        lines = [(f"racer raced {[(r['block'][:16], {k: v for k, v in r['sent'].items() if v}) for r in self.raced]}; "
                 f"from round {self.stuck_at} the committee finalised {self.rounds_after} rounds in "
                 f"{self.seconds:.0f} s")]
        lines += [f"  {m} refused: {'; '.join(rs)}" for m, rs in self.refusals.items()]
        return "\n".join(lines)


async def split(net: LiveNet, tag: str, *, cap_s: float = 60.0) -> SplitOutcome:
    """The racer with ``--rotate`` on the three members until it raced two blocks of one round to two different
    members (one kept from each: the round's winner and an opening, or two openings). Then: does the committee
    still finalise rounds?"""
    out = net.root / f"split-{tag}.jsonl"
    racer = net.attacker("racer", "--source", net.p2p("H"), *[a for v in MEMBERS for a in ("--victim", net.p2p(v))],
                         "--rotate", "--out", str(out))
    r0 = (await net.status())["round"]
    try:
        async with NodeClient(net.api("H")) as c:
            while racer.alive() and (await c.status())["round"] <= r0 + 12:
                rounds = [r["round"] for r in read_jsonl(out)]
                if any(rounds.count(r) >= 2 for r in rounds):
                    break
                await asyncio.sleep(0.1)
    finally:
        racer.stop()
    raced = read_jsonl(out)
    stuck_at = max([r["round"] for r in raced] + [r0])
    started = time.time()
    reached = stuck_at
    async with NodeClient(net.api("H")) as c:
        while time.time() - started < cap_s:
            reached = (await c.status())["round"]
            if reached >= stuck_at + 2:
                break
            await asyncio.sleep(0.5)
    seconds = time.time() - started
    return SplitOutcome(raced, stuck_at, reached - stuck_at, seconds, await refusals(net))


@dataclass
class PoisonOutcome:
    served: list[dict[str, Any]]                # the poisoner's records: corrupt copies it answered the victim with
    target: int                       # H's height when the honest node came
    reached: int                      # the victim's height at the end
    seconds: float                    # from the honest node's start until the victim reached ``target``
    honest_penalties: list[str]       # penalty lines the victim gave honest peers

    @property
    def recovered(self) -> bool:
        return self.reached >= self.target

    def explain(self) -> str:
        return (f"poisoner served {len(self.served)} corrupt block(s) {[r['height'] for r in self.served]}; "
                f"victim at height {self.reached} of {self.target} {self.seconds:.0f} s after an honest node "
                f"with the chain connected; honest penalties: {self.honest_penalties}")


async def poison_sync(net: LiveNet, tag: str, *, cap_s: float = 60.0) -> PoisonOutcome:
    """The sync poisoner: a fresh node V3 whose only peer is the poisoner (which answers its block requests with
    corrupt copies of H's blocks); then a fresh honest node V4 that syncs from R and dials V3. Does V3 catch up
    with the chain once an honest peer holds it (before issue 18: never, it answered ``already-rejected``)?"""
    out = net.root / f"poison-{tag}.jsonl"
    await net.start_fresh("V3")
    poisoner = net.attacker("syncpoison", "--source", net.p2p("H"), "--victim", net.p2p("V3"), "--out", str(out))
    try:
        started = time.time()
        while poisoner.alive() and not read_jsonl(out) and time.time() - started < cap_s:
            await asyncio.sleep(0.2)
        since = time.time()
        target = (await net.status())["height"]
        await net.start_fresh("V4", ("R", "V3"))
        reached = 0
        async with NodeClient(net.api("V3")) as c:
            while time.time() - since < cap_s:
                reached = (await c.status())["height"]
                if reached >= target:
                    break
                await asyncio.sleep(0.5)
        seconds = time.time() - since
    finally:
        poisoner.stop()
    view = observe.NodeView.of("V3", observe.read_log(net.root / "V3"))
    honest = [f"{peer} {reason}: {detail}" for (_, _, peer, reason, _, detail)
              in observe.honest_penalties([view], ATTACKER_ADDRESSES, since, time.time())]
    return PoisonOutcome(read_jsonl(out), target, reached, seconds, honest)
