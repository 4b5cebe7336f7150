"""What the explorer needs from a node (a typed Protocol) and the adapter that provides it from a Node.

The explorer's routes see only ``ExplorerDeps``: existence checks and id resolution for the 404 pages, the
leaderboard (every task, or one), the task list and a task's competition page, a miner's record, the last round
that can have a page, the round phase timeline, the event bus, and per-task figures for the metrics. Engine and
store reads run on the node's worker thread; scoring on an executor (node.explorer.scoring), cached, a failure
included. Nothing here writes.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from node.api_lookup import MIN_PREFIX, full_id, is_hex
from node.events import EventBus, StatePublisher
from node.explorer.boards import (
    bayes_limits,
    board_json,
    board_keys,
    miner_json,
    read_board,
    task_list_json,
    task_page_json,
)
from node.explorer.scoring import AccuracyBook
from node.rounds_index import RoundIndex

log = logging.getLogger("popchain.explorer")

TX_SCAN_BLOCKS = 2000       # the API's own confirmed-tx search depth (no tx index)
TASK_PAGE_ROUNDS = 20       # rounds per competition page


@dataclass(frozen=True)
class TaskFigures:
    """Per-task figures for the metrics (node.metrics.Metrics.set_task_figures)."""
    task_id: int
    champion_accuracy: float | None     # the task's standing champion on its latest revealed shard
    crowned: int
    void: int
    plain: int
    bounty_left: int
    shards_left: int


class ExplorerDeps(Protocol):
    bus: EventBus
    publisher: StatePublisher
    chain_id: str

    async def block_exists(self, ref: int | bytes) -> bool: ...
    async def tx_exists(self, txid: bytes) -> bool: ...
    async def resolve(self, kind: str, text: str) -> tuple[bytes | None, str]: ...
    async def last_round(self) -> int: ...
    async def task_exists(self, task_id: int) -> bool: ...
    async def leaderboard(self, task_id: int | None = None) -> dict[str, Any]: ...
    async def tasks(self) -> dict[str, Any]: ...
    async def task_page(self, task_id: int, before: int | None) -> dict[str, Any]: ...
    async def miner(self, account_id: bytes, task_id: int | None = None) -> dict[str, Any]: ...
    async def task_figures(self) -> list[TaskFigures]: ...


class NodeExplorerDeps:
    """ExplorerDeps over a running Node (reads its worker, store, engine, mempool, bus)."""

    def __init__(self, node: Any, rounds: RoundIndex | None = None) -> None:
        self._node = node
        self.bus: EventBus = node.events
        self.publisher: StatePublisher = node.publisher
        self.chain_id: str = node.genesis.chain_id
        self.rounds = rounds if rounds is not None else RoundIndex(node.engine, node.store)
        self.book = AccuracyBook(node.genesis, node.engine, node.store, node.worker.call)

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

    async def resolve(self, kind: str, text: str) -> tuple[bytes | None, str]:
        """(the full id a block hash / txid / model hash or its unique prefix names, None and why not)."""
        text = text.lower()
        full = full_id(text)
        if full is not None:
            return full, ""
        if not is_hex(text) or len(text) < MIN_PREFIX:
            return None, f"{text[:70]} is neither an id nor a prefix of at least {MIN_PREFIX} hex digits"
        store = self._node.store
        loop = asyncio.get_running_loop()
        matches = await loop.run_in_executor(None, store.ids_with_prefix, kind, text, 8)
        if kind == "tx":
            matches += [t.txid for t in self._node.mempool.txs() if t.txid.hex().startswith(text)]
        matches = sorted(set(matches))
        if len(matches) > 1:
            return None, (f"the prefix {text} is ambiguous: " + ", ".join(m.hex()[:len(text) + 4] for m in matches)
                          + " — give more digits")
        return (matches[0], "") if matches else (None, "")

    async def last_round(self) -> int:
        """The last round with a page — the same bound as ``/api/rounds/{r}``: every genesis round, and any round
        up to the next one after the current (tasks and extensions schedule rounds beyond genesis)."""
        return max(self._node.genesis.n_rounds, int(await self._call(self._node.engine.current_round)) + 1)

    async def task_exists(self, task_id: int) -> bool:
        return bool(await self._call(lambda: self._node.engine.task(task_id) is not None))

    async def leaderboard(self, task_id: int | None = None) -> dict[str, Any]:
        data = await self._call(read_board, self._node.engine, self.rounds, task_id)
        await self.book.ensure(board_keys(data))
        limits = await bayes_limits(self._call, self._node.engine, data, self.book)
        return board_json(self.chain_id, data, self.book, task_id, limits)

    async def tasks(self) -> dict[str, Any]:
        return dict(await self._call(task_list_json, self._node.engine, self.rounds, self._node.genesis.params))

    async def task_page(self, task_id: int, before: int | None) -> dict[str, Any]:
        engine, params = self._node.engine, self._node.genesis.params
        page = await self._call(task_page_json, engine, self.rounds, params, task_id, before, TASK_PAGE_ROUNDS)
        board = await self.leaderboard(task_id)
        page["chart"] = board["rounds"]
        page["lineage"] = board["lineage"]
        return page

    async def miner(self, account_id: bytes, task_id: int | None = None) -> dict[str, Any]:
        node = self._node
        return dict(await self._call(miner_json, node.engine, node.store, node.genesis.params.block_reward,
                                     account_id, task_id))

    async def task_figures(self) -> list[TaskFigures]:
        """Per-task figures for /metrics: the standing champion's accuracy on the task's latest revealed shard,
        final rounds crowned / void / plain, bounty left, shards left."""
        board = await self.leaderboard(None)
        latest: dict[int, float] = {}
        for row in board["rounds"]:
            if row["accuracy"] and row["task_id"] is not None:
                latest[row["task_id"]] = row["accuracy"]["correct"] / row["accuracy"]["n"]
        data = await self.tasks()
        return [TaskFigures(t["task_id"], latest.get(t["task_id"]), t["rounds"]["crowned"], t["rounds"]["void"],
                            t["rounds"]["plain"], t["bounty_left"], t["shards_left"]) for t in data["tasks"]]
