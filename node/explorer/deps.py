"""What the explorer needs from a node (a typed Protocol) and the adapter that provides it from a Node.

The explorer's routes see only ``ExplorerDeps``: existence checks for the 404 pages, the leaderboard with each
champion's accuracy on its round's shard, a miner's wins and rewards, the round phase timeline, the event bus.
Engine and store reads run on the node's worker thread; scoring (accuracy on a revealed shard, with the same
code the consensus rules score with) runs on the default executor and is cached, since a revealed round's
figures never change. Nothing here writes.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from chain.address import address_of, encode_address
from consensus.engine import ScoringCache
from node.engine_api import to_json
from node.events import EventBus, StatePublisher

log = logging.getLogger("popchain.explorer")

TX_SCAN_BLOCKS = 2000       # the API's own confirmed-tx search depth (no tx index)
LEADERBOARD_ROUNDS = 500    # most recent rounds the leaderboard scores and charts
ACCURACY_CACHE = 4096


class ExplorerDeps(Protocol):
    bus: EventBus
    publisher: StatePublisher
    n_rounds: int
    chain_id: str

    async def block_exists(self, ref: int | bytes) -> bool: ...
    async def tx_exists(self, txid: bytes) -> bool: ...
    async def leaderboard(self) -> dict[str, Any]: ...
    async def miner(self, account_id: bytes) -> dict[str, Any]: ...


@dataclass(frozen=True)
class _RoundRow:
    round: int
    status: str
    champion_model: bytes       # the champion after this round (crowned winner or the one that held)
    shard_key: bytes | None


class NodeExplorerDeps:
    """ExplorerDeps over a running Node (reads its worker, store, engine, mempool, bus)."""

    def __init__(self, node) -> None:
        self._node = node
        self.bus: EventBus = node.events
        self.publisher: StatePublisher = node.publisher
        self.n_rounds: int = node.genesis.n_rounds
        self.chain_id: str = node.genesis.chain_id
        self._scoring = ScoringCache(max_items=4)
        self._accuracy: OrderedDict[tuple[int, bytes], tuple[int, int] | None] = OrderedDict()
        self._score_lock = asyncio.Lock()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return self._node.worker.call(fn, *args)

    async def block_exists(self, ref: int | bytes) -> bool:
        store = self._node.store
        if isinstance(ref, int):
            return bool(await self._call(lambda: store.block_hash_at(ref) is not None))
        return bool(await self._call(store.has_block, ref))

    async def tx_exists(self, txid: bytes) -> bool:
        if self._node.mempool.get(txid) is not None:
            return True
        store = self._node.store
        if hasattr(store, "find_tx"):  # the store's tx index: any depth, lock-free
            return await asyncio.get_running_loop().run_in_executor(None, store.find_tx, txid) is not None

        def find() -> bool:  # no index: the API's own bounded scan of recent blocks
            tip = store.tip().height
            for height in range(tip, max(0, tip - TX_SCAN_BLOCKS), -1):
                block = store.get_block(height)
                if block is not None and any(tx.txid == txid for tx in block.txs):
                    return True
            return False
        return bool(await self._call(find))

    def _read_rounds(self) -> tuple[list, list[_RoundRow], int, dict[bytes, bytes]]:
        """Worker thread: champion lineage, per-round rows for the recent rounds, and their models' bytes."""
        engine, store = self._node.engine, self._node.store
        history = engine.champion_history()
        current = engine.current_round()
        crowned = {rec.round: rec for rec in history if rec.height > 0}
        lineage_sorted = sorted(history, key=lambda rec: rec.height)
        rows: list[_RoundRow] = []
        champ = lineage_sorted[0].model_hash if lineage_sorted else b""
        by_round = iter(sorted(crowned.items()))
        pending = next(by_round, None)
        first = max(1, current - LEADERBOARD_ROUNDS + 1)
        for r in range(1, current + 1):
            while pending is not None and pending[0] <= r:
                champ = pending[1].model_hash
                pending = next(by_round, None)
            if r < first:
                continue
            beacon = engine.beacon(r)
            status = engine.round_info(r).status if r == current else ("crowned" if r in crowned else "void")
            # the champion after round r; for the current round, the leading candidate (tip) once revealed
            rows.append(_RoundRow(r, status, champ if beacon else b"", beacon.shard_key if beacon else None))
        models = {}
        for row in rows:
            if row.champion_model and row.shard_key and (row.round, row.champion_model) not in self._accuracy:
                data = store.get_model(row.champion_model)
                if data is not None:
                    models[row.champion_model] = data
        return history, rows, current, models

    def _score(self, jobs: list[tuple[int, bytes, bytes, bytes]]) -> dict[tuple[int, bytes], tuple[int, int] | None]:
        """Executor thread: (correct, n) of each model on its round's revealed shard."""
        genesis = self._node.genesis
        out: dict[tuple[int, bytes], tuple[int, int] | None] = {}
        for r, mh, key, data in jobs:
            try:
                # genesis-task rounds only (issue 11: per-task leaderboards are the explorer's next step); a
                # round of another task fails its commitment check here and is skipped
                correct = self._scoring.champion_correct(genesis, data, genesis.task, r, key)
                out[(r, mh)] = (int(correct.sum()), int(correct.shape[0]))
            except Exception:  # explorer figures never break a page; consensus scored these already
                log.warning("explorer: cannot score model %s on round %d", mh.hex()[:16], r, exc_info=True)
        return out

    async def leaderboard(self) -> dict[str, Any]:
        history, rows, current, models = await self._call(self._read_rounds)
        jobs = [(row.round, row.champion_model, row.shard_key, models[row.champion_model]) for row in rows
                if row.shard_key and row.champion_model in models]
        if jobs:
            async with self._score_lock:  # one scoring batch at a time; the cache serves the rest
                scored = await asyncio.get_running_loop().run_in_executor(None, self._score, jobs)
            for k, v in scored.items():
                self._accuracy[k] = v
                while len(self._accuracy) > ACCURACY_CACHE:
                    self._accuracy.popitem(last=False)

        def acc(r: int, mh: bytes) -> dict[str, int] | None:
            v = self._accuracy.get((r, mh))
            return {"correct": v[0], "n": v[1]} if v else None
        lineage = []
        for rec in sorted(history, key=lambda x: x.height):
            item = _record_json(rec)
            item["accuracy"] = acc(rec.round, rec.model_hash) if rec.round else None
            lineage.append(item)
        return {"chain_id": self.chain_id, "rounds_total": self.n_rounds, "current_round": current,
                "lineage": lineage,
                "rounds": [{"round": row.round, "status": row.status,
                            "champion_model_hash": row.champion_model.hex() or None,
                            "accuracy": acc(row.round, row.champion_model)} for row in rows]}

    async def miner(self, account_id: bytes) -> dict[str, Any]:
        node = self._node
        engine, store, reward = node.engine, node.store, node.genesis.params.block_reward

        def read() -> tuple[list, int, int]:
            wins = [rec for rec in engine.champion_history() if rec.height > 0 and any(rec.miner)
                    and address_of(rec.miner) == account_id]
            fees = 0
            for rec in wins:
                block = store.get_block(rec.height)
                if block is not None and block.hash == rec.hash:
                    fees += sum(tx.fee for tx in block.txs)
            acc = store.get_account(account_id)
            return wins, fees, acc.balance
        wins, fees, balance = await self._call(read)
        return {"address": encode_address(account_id), "balance": balance, "wins": len(wins),
                "rewards": reward * len(wins) + fees, "block_rewards": reward * len(wins), "fees": fees,
                "crowned": [_record_json(rec) for rec in sorted(wins, key=lambda x: -x.height)]}


def _record_json(rec) -> dict[str, Any]:
    out = to_json(rec)
    out["miner_address"] = encode_address(address_of(rec.miner)) if any(rec.miner) else None
    return out
