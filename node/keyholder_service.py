"""Keyholder service: runs consensus.keyholder.Keyholder on the node's clock and publishes what it signs.

The Keyholder decides (pure, journaled in the store before it returns a beacon); this service only supplies
``now``, feeds it the entries gossip accepted, and broadcasts its anchor notices and beacons. All Keyholder
calls run on the engine worker thread. After a restart the Keyholder re-sends its journaled messages (identical
bytes), never a second beacon for a round.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from chain.errors import PopError
from consensus.keyholder import Action, Done, Keyholder, RoundClosed
from consensus.protocol.messages import AnchorNotice, Beacon, Entry
from consensus.protocol.tasks import TaskExtension, decode_task_message
from ml.shards import PublicTask, SecretTask
from node.judge import object_id
from node.metrics import Metrics
from node.wire import InvKind
from node.worker import EngineWorker

log = logging.getLogger("popchain.keyholder")

MAX_SLEEP_S = 0.5


class KeyholderHost(Protocol):
    """What the keyholder service needs from the node (node.node.Node provides it)."""

    @property
    def worker(self) -> EngineWorker: ...
    @property
    def metrics(self) -> Metrics: ...
    async def after_round_event(self) -> None: ...


# publish(kind, id, bytes, round): remember the object for GETDATA and announce it (node.gossip.Relay.publish)
Publish = Callable[[InvKind, bytes, bytes, int], None]


class KeyholderService:
    def __init__(self, node: KeyholderHost, make_keyholder: Callable[[], Keyholder], publish: Publish) -> None:
        self.node = node
        self.publish = publish
        self.make_keyholder = make_keyholder    # run on the worker thread (consensus.keyholder.load_keyholder)
        self.keyholder: Keyholder | None = None
        self.published: list[tuple[str, int]] = []   # (kind, round), for tests and logs
        self.published_at: dict[tuple[str, int], float] = {}   # first publication time (benchmarks)
        self.done_logged = False
        self.waiting_logged = False
        self._wake = asyncio.Event()   # set by an accepted entry: a waiting round may start its window

    async def open(self) -> None:
        self.keyholder = await self.node.worker.call(self.make_keyholder)

    def wake(self) -> None:
        """Something changed that may let the keyholder act now (an entry, a task message)."""
        self._wake.set()

    async def add_task_secret(self, task_message: bytes, secret: bytes) -> None:
        """Hand the keyholder the shard keys of a task message (its package's, or its extension batch's):
        checked against the message's commitments first (a wrong file is refused, not journaled)."""
        assert self.keyholder is not None, "start() first"
        msg = decode_task_message(task_message)
        st = SecretTask.decode(secret)

        def add() -> None:
            n = len(msg.commitments) if isinstance(msg, TaskExtension) else PublicTask.decode(msg.package).n_rounds
            assert self.keyholder is not None
            self.keyholder.add_task_secret(msg.msg_hash, st, n_shards=n)
        await self.node.worker.call(add)
        self._wake.set()

    def close(self) -> None:
        pass  # the journal lives in the store, which the node closes

    async def on_entry(self, entry: Entry) -> None:
        assert self.keyholder is not None, "start() first"
        try:
            accepted = await self.node.worker.call(self.keyholder.on_entry, entry)
        except PopError as exc:
            log.info("entry of round %d refused by the keyholder: %s", entry.round, exc)
            return
        if accepted:
            log.info("round %d: entry %s accepted", entry.round, entry.header_hash.hex()[:16])
            self._wake.set()
            self.waiting_logged = False

    async def run(self) -> None:
        node = self.node
        kh = self.keyholder
        assert kh is not None, "start() first"
        while True:
            actions = await node.worker.call(kh.step, time.time())
            for action in actions:
                await self._publish(action)
            deadline = await node.worker.call(kh.next_deadline)
            if deadline is None:   # done, or a round waiting for its first entry (its shard stays hidden)
                if not kh.done and not self.waiting_logged:
                    self.waiting_logged = True
                    log.info("keyholder: no entries yet; the round waits (its shard stays hidden)")
                self._wake.clear()
                try:
                    async with asyncio.timeout(MAX_SLEEP_S):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            await asyncio.sleep(min(MAX_SLEEP_S, max(0.0, deadline - time.time()) + 0.005))

    async def _publish(self, action: Action) -> None:
        node = self.node
        if isinstance(action, (AnchorNotice, Beacon)):
            kind = InvKind.ANCHOR if isinstance(action, AnchorNotice) else InvKind.BEACON
            data = action.encode()
            h = object_id(kind, data)
            self.publish(kind, h, data, action.round)
            self.published.append((kind.name.lower(), action.round))
            self.published_at.setdefault((kind.name.lower(), action.round), time.perf_counter())
            log.info("keyholder: published %s for round %d", kind.name.lower(), action.round)
            if isinstance(action, AnchorNotice) and not action.idle:
                self.done_logged = False   # a task message revived the chain: log the next exhaustion again
            await node.after_round_event()
        elif isinstance(action, RoundClosed):
            outcome = "void" if action.winner is None else "crowned" if action.crowned else "plain"
            log.info("keyholder: round %d closed: %s", action.round,
                     f"{outcome} {action.winner.hex()[:16]}" if action.winner else outcome)
            node.metrics.inc("popchain_rounds_closed_total", outcome=outcome)
        elif isinstance(action, Done) and not self.done_logged:
            self.done_logged = True
            log.info("keyholder: every task is exhausted after round %d: nothing is open until a task is "
                     "announced or extended", action.round)
