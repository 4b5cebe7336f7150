"""The explorer's competition views, built from the engine (on its worker thread) and the accuracy book:
the leaderboard (every task's champion curve and lineage, or one task's), the task list, a task's competition
page (its facts, its curve, every round with every entrant) and a miner's or account's record per task.

Does: shape JSON for the pages; decide which champion stood on each round (the round's task's champion after the
round) so that a chart spanning a task switch compares like with like. Does not: score (node.explorer.scoring),
hold state beyond what it is handed, or write anything.
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from chain.address import address_of, encode_address
from chain.errors import PopError
from chain.state import Account
from chain.tx import Transfer
from consensus.engine import EngineApi
from node.api_rounds import task_rounds_json
from node.api_tasks import champion_json, find_task, status_fields, task_json, task_rows
from node.explorer.scoring import AccuracyBook
from node.rounds_index import RoundIndex

BOARD_ROUNDS = 500          # most recent rounds a leaderboard charts and scores
LINEAGE_ROWS = 500          # newest champion records a leaderboard lists
MINER_ROWS = 1000           # newest crowned blocks a miner's page counts and lists


@dataclass(frozen=True)
class BoardRound:
    round: int
    task_id: int | None
    shard_index: int | None
    status: str
    champion: bytes | None      # model hash of the round's task's champion after the round (None: no shard)


@dataclass
class BoardData:
    """What the engine thread reads for a leaderboard (scored afterwards)."""
    current: int
    rounds: list[BoardRound]
    lineage: list[Any]           # ChampionRecords, height order (initial champions of tasks first, round 0)
    tasks: list[Any]             # node.api_tasks.TaskRow
    counts: dict[int, dict[str, int]]


def read_board(engine: EngineApi, index: RoundIndex, task_id: int | None, last: int = BOARD_ROUNDS) -> BoardData:
    """Engine thread: the rounds (all tasks, or ``task_id``'s) and lineage a leaderboard shows."""
    rows = task_rows(engine)
    current = engine.current_round()
    wanted = [t.task_id for t in rows] if task_id is None else [find_task(rows, task_id).task_id]
    # the newest last + 1 records of each task: at most ``last`` fall in the charted rounds, so the one standing
    # before the first charted round is among them (or the task's initial champion, which starts its lineage)
    lineages = {k: engine.champion_history(k, limit=last + 1) for k in wanted}
    # the champion of a task after round r: its latest record with round <= r (its initial one before any)
    rounds: list[int] = sorted({r for k in wanted for r in index.rounds_of(k, None, last)})[-last:]
    out = []
    pointer = {k: 0 for k in wanted}
    standing: dict[int, bytes] = {}
    for r in rounds:                        # ascending: walk each task's lineage along
        row = index.row(r)
        champ = None
        k = row.task_id
        if k is not None and k in lineages:
            lineage, i = lineages[k], pointer[k]
            while i < len(lineage) and lineage[i].round <= r:     # the current round's leader counts for it
                standing[k] = lineage[i].model_hash
                i += 1
            pointer[k] = i
            champ = standing.get(k) if engine.beacon(r) is not None else None
        out.append(BoardRound(r, k, row.shard_index, row.status, champ))
    records = [rec for k in wanted for rec in lineages[k]]
    records.sort(key=lambda rec: (rec.height, rec.task_id))
    return BoardData(current, out, records[-LINEAGE_ROWS:], [t for t in rows if t.task_id in wanted],
                     {k: index.counts(k) for k in wanted})


def board_keys(data: BoardData) -> list[tuple[int, bytes]]:
    """The (round, model) accuracies a leaderboard needs: each round's standing champion and each crowned
    record on its own round."""
    keys = {(b.round, b.champion) for b in data.rounds if b.champion is not None}
    keys |= {(rec.round, rec.model_hash) for rec in data.lineage if rec.round > 0}
    return sorted(keys)


def board_json(chain_id: str, data: BoardData, book: AccuracyBook, task_id: int | None,
               limits: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    def acc(r: int, mh: bytes | None) -> dict[str, int] | None:
        a = book.get(r, mh) if mh is not None else None
        return a.to_json() if a is not None else None
    lineage = []
    for rec in data.lineage:
        item = champion_json(rec)
        item["accuracy"] = acc(rec.round, rec.model_hash) if rec.round else None
        item["initial"] = rec.round == 0
        lineage.append(item)
    return {"chain_id": chain_id, "current_round": data.current, "task": task_id,
            "rounds_scheduled": sum(t.shards_total for t in data.tasks),
            "tasks": [{"task_id": t.task_id, "name": t.name, "status": t.status, "counts": data.counts[t.task_id],
                       "bayes": (limits or {}).get(t.task_id)} for t in data.tasks],
            "lineage": lineage,
            "rounds": [{"round": b.round, "task_id": b.task_id, "shard_index": b.shard_index, "status": b.status,
                        "champion_model_hash": b.champion.hex() if b.champion else None,
                        "accuracy": acc(b.round, b.champion)} for b in data.rounds]}


def task_list_json(engine: EngineApi, index: RoundIndex, params: Any) -> dict[str, Any]:
    """Engine thread: every task with its counts (the /tasks page)."""
    rows = task_rows(engine)
    return {**status_fields(rows, None),
            "tasks": [task_json(t, index.counts(t.task_id), params) for t in rows]}


def task_page_json(engine: EngineApi, index: RoundIndex, params: Any, task_id: int, before: int | None,
                   limit: int) -> dict[str, Any]:
    """Engine thread: a task's competition page without its accuracies (the caller adds the chart)."""
    row = find_task(task_rows(engine), task_id)
    page = task_rounds_json(engine, index, task_id, before, limit)
    return {"task": task_json(row, index.counts(task_id), params), **page}



class MinerStore(Protocol):
    """The store reads a miner page needs (chain.store.ChainStore)."""

    def get_txs(self, block_hash: bytes) -> tuple[Transfer, ...] | None: ...
    def get_account(self, account: bytes) -> Account: ...

def miner_json(engine: EngineApi, store: MinerStore, reward: int, account_id: bytes, task_id: int | None) -> dict[str, Any]:
    """Engine thread: a miner's (or any account's) crowned models (its newest MINER_ROWS) — all, or one task's —
    with wins per task,    rewards (block rewards, fees of its blocks, bounty payouts) and the tasks it sponsors."""
    rows = task_rows(engine)
    per_task = {t.task_id: t for t in rows}
    wins = [rec for rec in engine.miner_champions(account_id, limit=MINER_ROWS) if any(rec.miner)]
    by_task: dict[int, int] = {}
    for rec in wins:
        by_task[rec.task_id] = by_task.get(rec.task_id, 0) + 1
    shown = [rec for rec in wins if task_id is None or rec.task_id == task_id]
    fees = bounty = 0
    for rec in shown:
        txs = store.get_txs(rec.hash)      # the transfers alone: a model is ~98 % of a block's bytes
        if txs is not None:
            fees += sum(tx.fee for tx in txs)
        t = per_task.get(rec.task_id)
        if t is not None and t.sponsor is not None:
            bounty += t.bounty_per_crowning
    sponsored = [task_json(t) for t in rows if t.sponsor is not None and address_of(t.sponsor) == account_id]
    return {"address": encode_address(account_id), "balance": store.get_account(account_id).balance,
            "task": task_id, "wins": len(shown), "wins_by_task": {str(k): v for k, v in sorted(by_task.items())},
            "rewards": reward * len(shown) + fees + bounty, "block_rewards": reward * len(shown), "fees": fees,
            "bounty": bounty, "crowned": [champion_json(rec) for rec in sorted(shown, key=lambda x: -x.height)],
            "sponsored": sponsored,
            "tasks": [{"task_id": t.task_id, "name": t.name} for t in rows]}


async def bayes_limits(call: Callable[..., Awaitable[Any]], engine: EngineApi, data: BoardData,
                       book: AccuracyBook) -> dict[int, dict[str, Any]]:
    """Issue 21: per generated task of the board, the Bayes-optimal accuracy of its latest revealed shard's
    concept (ml.bayes: the generator knows it) and the champion's gap to it on that shard, in pp. Engine reads
    on its thread, the limit computed in the default executor (memoised by concept: a stationary task once)."""
    from ml.bayes import shard_bayes_accuracy

    def plan() -> dict[int, tuple[BoardRound, Any, int, bytes]]:
        out = {}
        for t in data.tasks:
            last = next((b for b in reversed(data.rounds) if b.task_id == t.task_id and b.champion is not None
                         and b.status != "revealed"), None)
            beacon = engine.beacon(last.round) if last is not None else None
            if last is None or beacon is None:
                continue
            package = engine.task_package(t.task_id)
            if package.generated:
                out[t.task_id] = (last, package, beacon.shard_index, beacon.shard_key)
        return out
    limits: dict[int, dict[str, Any]] = {}
    loop = asyncio.get_running_loop()
    for task_id, (b, package, index, key) in (await call(plan)).items():
        try:
            limit = await loop.run_in_executor(None, functools.partial(shard_bayes_accuracy, package, index, key,
                                                                       rows=100_000))
        except PopError:
            continue
        a = book.get(b.round, b.champion) if b.champion is not None else None
        limits[task_id] = {"round": b.round, "bayes_accuracy": round(limit, 4),
                           "champion_accuracy": round(a.value, 4) if a is not None else None,
                           "gap_pp": round((limit - a.value) * 100, 2) if a is not None else None}
    return limits
