"""Every round of the chain at a glance, for the API, the explorer and the metrics: which (task, shard) it
served, what became of it (crowned / plain / void / idle, or the live phase of the current round), its
main-chain block, and every entrant of a round with its b, c, bar and verdict.

Does: keep a compact in-memory index of the *final* rounds (they never change: finality moves forward only,
PROTOCOL §3.8), extended incrementally from the engine on each refresh — O(new rounds) per call, one pass over
history at the first call after a start — so that per-task round lists, counts and per-request views never
scan from genesis. The current round is always read fresh. Does not: write anything, or decide anything
(it reads the engine's statements, champion records and recorded openings).

Threading: every method runs on the node's engine worker thread (it calls the engine and the store), like the
engine itself; the index is not locked.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any, Protocol

from chain.address import address_of, encode_address
from chain.block import Header
from consensus.engine import EngineApi
from consensus.protocol.registry import ChampionRecord

# final-round outcomes (the current round shows its live phase instead: open, revealed)
CROWNED, PLAIN, VOID, IDLE = "crowned", "plain", "void", "idle"
_CODES = (CROWNED, PLAIN, VOID, IDLE)
# an entrant's verdict: its block crowned / was kept as a plain block (issue 21) / opened and lost / never opened;
# in the current round also leading (the tip, not final yet), opened (scored, not leading), not opened yet
VERDICTS = ("crowned", "plain", "lost", "not opened", "leading", "opened", "not opened yet")


class Headers(Protocol):
    """The chain store's main-chain reads the index needs (chain.store.ChainStore; lock-free)."""

    def get_header(self, h: bytes | int) -> Header | None: ...
    def block_hash_at(self, height: int) -> bytes | None: ...


def champion_at(engine: EngineApi, height: int) -> ChampionRecord | None:
    """The champion record of the main-chain block at ``height`` (None: no crowned block there)."""
    return engine.champion_at(height)


@dataclass(frozen=True)
class RoundRow:
    round: int
    status: str                     # crowned | plain | void | idle | open | revealed | future | not-started
    task_id: int | None             # None: the round served nothing (idle) or is not scheduled yet
    shard_index: int | None
    height: int | None              # the round's main-chain block (None: none)
    block_hash: bytes | None
    final: bool


@dataclass(frozen=True)
class Entrant:
    header_hash: bytes
    miner: bytes
    verdict: str
    model_hash: bytes | None = None
    b: int | None = None
    c: int | None = None
    bar: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"header_hash": self.header_hash.hex(), "miner": self.miner.hex(),
                "miner_address": encode_address(address_of(self.miner)), "verdict": self.verdict,
                "model_hash": self.model_hash.hex() if self.model_hash else None, "b": self.b, "c": self.c,
                "bar": self.bar}


class RoundIndex:
    """Final rounds 1..n in parallel arrays (a few bytes a round), heights indexed up to the final block."""

    def __init__(self, engine: EngineApi, store: Headers) -> None:
        self.engine = engine
        self.store = store
        self._task = array("i")         # round r at r-1; -1: served nothing
        self._shard = array("i")
        self._status = array("b")       # index into _CODES
        self._height = array("i")       # -1: no block
        self._by_task: dict[int, array] = {}     # task -> its final rounds, ascending
        self._round_block: dict[int, int] = {}    # round -> height, for heights not yet folded into _height
        self._heights_done = 0                    # main-chain heights 1.._heights_done are in _round_block
        self._counts: dict[int, dict[str, int]] = {}  # task -> final rounds by outcome, kept as rounds fold in

    # ------------------------------------------------------------ maintenance

    def refresh(self) -> None:
        """Fold the rounds that became final since the last call into the index."""
        engine, store = self.engine, self.store
        final = engine.final_header()
        for h in range(self._heights_done + 1, final.height + 1):
            header = store.get_header(h)
            if header is not None:
                self._round_block[header.round] = h
            self._heights_done = h
        last_final = engine.current_round() - 1
        for r in range(len(self._task) + 1, last_final + 1):
            served = engine.round_task(r)
            notice = engine.notice(r)
            height = self._round_block.pop(r, -1)
            if height >= 0:   # a ledger round (idle notice) with a block is plain too (issue 21)
                code = _CODES.index(CROWNED if champion_at(engine, height) is not None else PLAIN)
            elif notice is not None and notice.idle:
                code = _CODES.index(IDLE)
            else:
                code = _CODES.index(VOID)
            task = served[0] if served else -1
            self._task.append(task)
            self._shard.append(served[1] if served else 0)
            self._status.append(code)
            self._height.append(height)
            if task >= 0:
                self._by_task.setdefault(task, array("i")).append(r)
                counts = self._counts.setdefault(task, {CROWNED: 0, PLAIN: 0, VOID: 0})
                if _CODES[code] in counts:
                    counts[_CODES[code]] += 1

    # ------------------------------------------------------------ reads

    def final_rounds(self) -> int:
        return len(self._task)

    def row(self, r: int) -> RoundRow:
        """Round ``r`` (final rounds from the index; the current and future ones read fresh)."""
        self.refresh()
        if 1 <= r <= len(self._task):
            task, height = self._task[r - 1], self._height[r - 1]
            block = self.store.block_hash_at(height) if height >= 0 else None
            return RoundRow(r, _CODES[self._status[r - 1]], task if task >= 0 else None,
                            self._shard[r - 1] if task >= 0 else None, height if height >= 0 else None, block,
                            True)
        engine = self.engine
        current = engine.current_round()
        if r < 1 or r > current:
            return RoundRow(r, "future" if r > current else "not-started", None, None, None, None, False)
        notice = engine.notice(r)
        # the current round's live phase, as Engine.round_info says it (without reading the whole lineage)
        status = "revealed" if engine.beacon(r) else IDLE if notice is not None and notice.idle else "open"
        served = None if status == IDLE else engine.round_task(r)
        tip = engine.tip()
        leader = tip if tip.round == r and tip.height > engine.final_header().height else None
        return RoundRow(r, status, served[0] if served else None, served[1] if served else None,
                        leader.height if leader else None, leader.hash if leader else None, False)

    def rounds_of(self, task_id: int, before: int | None = None, limit: int = 20) -> list[int]:
        """The rounds that served ``task_id``, newest first (the current one included), below ``before``."""
        self.refresh()
        out: list[int] = []
        current = self.engine.current_round()
        served = self.engine.round_task(current) if current > len(self._task) else None
        if served is not None and served[0] == task_id and (before is None or current < before):
            out.append(current)
        rounds = self._by_task.get(task_id, array("i"))
        i = len(rounds) if before is None else bisect_left(rounds, before)
        while i > 0 and len(out) < limit:
            i -= 1
            out.append(rounds[i])
        return out

    def first_rounds_of(self, task_id: int, n: int) -> list[int]:
        """The first ``n`` final rounds that served ``task_id``, oldest first."""
        self.refresh()
        return list(self._by_task.get(task_id, array("i"))[:n])

    def counts(self, task_id: int) -> dict[str, int]:
        """How many final rounds of ``task_id`` were crowned / plain / void (kept as rounds fold in)."""
        self.refresh()
        return dict(self._counts.get(task_id, {CROWNED: 0, PLAIN: 0, VOID: 0}))

    def record_of_model(self, model_hash: bytes) -> ChampionRecord | None:
        """The champion record of a crowned model of the main chain (the current round's leader included): the
        engine's model index, by key (no table here: a year of models would hold hundreds of MB)."""
        return self.engine.champion_of_model(model_hash)

    def tasks_seen(self) -> list[int]:
        self.refresh()
        return sorted(self._by_task)

    def entrants(self, r: int) -> list[Entrant]:
        """Every entrant the round's beacon listed (ascending header hash), with its opening's b, c and bar
        as this node recorded them and its verdict. A node that synced the round later knows the winner's
        figures (its block) but not the losers' (their blocks are not on the chain): those show no b and c."""
        engine = self.engine
        beacon = engine.beacon(r)
        if beacon is None:
            return []
        row = self.row(r)
        openings = engine.openings(r)
        record = champion_at(engine, row.height) if row.height is not None else None
        tip_candidates = {s.hash: s for s in engine.candidates()} if not row.final else {}
        out = []
        for header_hash, miner, listed_model, _ in beacon.listed:
            seen = openings.get(header_hash)
            # an entry names its model hash (PROTOCOL §3.3): known even for a listing that never opened
            model, b, c, bar = (seen.model_hash, seen.b, seen.c, seen.bar) if seen is not None else (
                listed_model, None, None, None)
            if header_hash == row.block_hash and row.block_hash is not None:
                if record is not None:
                    model, b, c, bar = record.model_hash, record.b, record.c, record.bar
                verdict = ("crowned" if record is not None else "plain") if row.final else "leading"
            elif header_hash in tip_candidates:
                s = tip_candidates[header_hash]
                b, c, bar, verdict = s.b, s.c, s.bar, "opened"
            elif seen is not None:
                verdict = "lost" if row.final else "opened"
            else:
                verdict = "not opened" if row.final else "not opened yet"
            out.append(Entrant(header_hash, miner, verdict, model, b, c, bar))
        return out
