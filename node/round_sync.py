"""Round sync *(policy, PROTOCOL §4.4)*: a node that joins late fetches every round's anchor notice and beacon
from its peers — void and idle rounds included, which no block carries — and the task messages they hold, so
that its engine knows every revealed shard key (``GET /api/shards`` is the same on every node) and every task.

On a peer's handshake: INV of the task messages we store (the peer fetches what it lacks, GETDATA served from
the engine), and a walk GETROUNDS(first, WALK) → ROUNDS from the first round whose beacon we lack, batch after
batch until the peer answers with nothing, one batch in flight per peer. Statements are judged like gossiped ones (node.judge), marked
as requested, so a stale answer is never penalised. Bounded: ≤ MAX_ROUNDS_ITEMS statements per frame, one walk
per peer; serving is charged to the asker's object budget and paced by its send queue, like GETDATA.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from consensus.engine import EngineApi
from node import wire
from node.judge import object_id
from node.limits import INVALID_OBJECT
from node.peer import Peer
from node.wire import InvKind
from node.worker import EngineWorker

log = logging.getLogger("popchain.sync")

WALK = wire.MAX_ROUNDS_ITEMS // 2     # rounds per GETROUNDS
MAX_TASK_INV = 1000


class RoundSyncHost(Protocol):
    @property
    def worker(self) -> EngineWorker: ...
    @property
    def engine(self) -> EngineApi: ...
    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> Any: ...


class Judging(Protocol):
    requests: Any                      # node.inventory.RequestTracker
    def charge(self, peer: Peer, n: int) -> bool: ...
    async def on_object(self, peer: Peer | None, kind: InvKind, data: bytes) -> tuple[bool, str]: ...


class RoundSync:
    def __init__(self, node: RoundSyncHost, relay: Judging) -> None:
        self.node = node
        self.relay = relay
        self.walking: dict[Peer, int] = {}      # peer -> the first round of the batch in flight

    # ------------------------------------------------------------ peers

    def peer_ready(self, peer: Peer) -> None:
        self.node.spawn(self._greet(peer), "round-sync")

    def peer_gone(self, peer: Peer) -> None:
        self.walking.pop(peer, None)

    async def _greet(self, peer: Peer) -> None:
        ids, first = await self.node.worker.call(self._local_state)
        if ids:
            for key in ids:
                peer.known.add(key)
            peer.send(wire.Inv(tuple(ids)))
        self._ask(peer, first)

    def _local_state(self) -> tuple[list[tuple[InvKind, bytes]], int]:
        """(the task messages we store, the first round whose beacon we lack — idle rounds have none)."""
        engine = self.node.engine
        ids = [(InvKind.TASK, h) for h in engine.task_message_ids()][:MAX_TASK_INV]
        return ids, engine.first_missing_round()     # a stored cursor: no walk from round 1 per handshake

    def _ask(self, peer: Peer, first: int) -> None:
        self.walking[peer] = first
        peer.send(wire.GetRounds(first, WALK))

    # ------------------------------------------------------------ messages

    async def handle(self, peer: Peer, msg: wire.Message) -> None:
        if isinstance(msg, wire.GetRounds):
            if not self.relay.charge(peer, msg.count * 2):
                return
            await peer.writable()     # like GETDATA: its own reading speed paces what it may ask of us
            items = await self.node.worker.call(self._statements, msg.first, msg.count)
            peer.send(wire.Rounds(tuple(items)))
            return
        assert isinstance(msg, wire.Rounds)
        first = self.walking.pop(peer, None)
        if first is None:
            peer.offend(INVALID_OBJECT, "ROUNDS we did not ask for")
            return
        now = time.monotonic()
        for kind, data in msg.items:
            self.relay.requests.force(peer, (kind, object_id(kind, data)), now)   # asked for: never penalised
            await self.relay.on_object(peer, kind, data)
        if msg.items:    # walk on until the peer has nothing more (void and idle rounds have no block)
            self._ask(peer, first + WALK)
            log.debug("sync: round statements %d..%d from %s", first, first + WALK - 1, peer.key)

    def _statements(self, first: int, count: int) -> list[tuple[InvKind, bytes]]:
        engine = self.node.engine
        out: list[tuple[InvKind, bytes]] = []
        for r in range(first, min(first + count, 2**32)):
            notice, beacon = engine.statement_bytes(r)
            for raw, kind in ((notice, InvKind.ANCHOR), (beacon, InvKind.BEACON)):
                if raw is not None and len(out) < wire.MAX_ROUNDS_ITEMS:
                    out.append((kind, raw))
        return out
