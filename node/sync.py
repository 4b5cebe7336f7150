"""Headers-first sync *(policy)*: GETHEADERS with a block locator, then blocks fetched from several peers.

Headers are only hints of what to fetch (validity comes from the engine when each block arrives with its
beacon in its payload). Up to PER_PEER_INFLIGHT blocks are in flight per peer; a peer that does not deliver a
requested block within STALL_S is dropped and its requests go to another peer. Blocks arriving out of order
wait in the orphan pool until their parent connects.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Coroutine, Iterable
from typing import Any, Protocol

from chain.block import Header
from chain.errors import DecodeError
from node import wire
from node.limits import INVALID_OBJECT, STALL
from node.peer import Peer
from node.wire import InvKind

log = logging.getLogger("popchain.sync")

PER_PEER_INFLIGHT = 16
REFILL_AT = PER_PEER_INFLIGHT // 2   # top a peer up only once half its slots are free: fewer, fuller GETDATAs
STALL_S = 20.0
HEADERS_RETRY_S = 10.0
MAX_WANTED = 50_000
ZERO32 = bytes(32)


class SyncHost(Protocol):
    """What sync needs from the node (node.node.Node provides it)."""

    @property
    def worker(self) -> Any: ...      # node.worker.EngineWorker
    @property
    def store(self) -> Any: ...       # chain.store.ChainStore (on the worker thread only)
    def ready_peers(self) -> list[Peer]: ...
    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> Any: ...


class BlockRequests(Protocol):
    """The relay's request table, as sync uses it (node.gossip.Relay provides it)."""

    @property
    def parked(self) -> Any: ...      # orphan block hashes the engine holds
    def request(self, peer: Peer, items: Iterable[tuple[InvKind, bytes]]) -> None: ...
    def cancel_request(self, key: tuple[InvKind, bytes]) -> None: ...


class Sync:
    def __init__(self, node: SyncHost, relay: BlockRequests) -> None:
        self.node = node
        self.relay = relay
        self.wanted: dict[bytes, int] = {}                      # block hash -> height, not yet connected
        self.source: dict[bytes, Peer] = {}                     # block hash -> the peer whose headers named it
        self.inflight: dict[bytes, tuple[Peer, float]] = {}     # block hash -> (peer, sent)
        self.headers_asked: dict[Peer, float] = {}
        self.last_progress_log = 0.0

    # ------------------------------------------------------------ peers

    def peer_ready(self, peer: Peer) -> None:
        self.node.spawn(self.ask_headers(peer), "ask-headers")

    def peer_gone(self, peer: Peer) -> None:
        self.headers_asked.pop(peer, None)
        for h, (p, _) in list(self.inflight.items()):
            if p is peer:
                del self.inflight[h]
                self.relay.cancel_request((InvKind.BLOCK, h))
        # what only this peer's headers named goes with it: headers are unchecked hints, and a peer feeding us
        # a fake chain must not keep the want list (MAX_WANTED) full after it is gone. If it was honest, the
        # others name the same blocks again when asked.
        dropped = [h for h, p in self.source.items() if p is peer and h not in self.inflight]
        for h in dropped:
            self.wanted.pop(h, None)
            del self.source[h]
        if dropped:
            for other in self.node.ready_peers()[:2]:
                if other is not peer:
                    self.node.spawn(self.ask_headers(other), "ask-headers")
        self._dispatch()

    async def ask_headers(self, peer: Peer, from_hash: bytes | None = None) -> None:
        now = time.monotonic()
        if from_hash is None and now - self.headers_asked.get(peer, -1e9) < 1.0:
            return  # at most one full locator request per peer per second
        self.headers_asked[peer] = now
        locator = (from_hash,) if from_hash is not None else await self.node.worker.call(self._locator)
        peer.send(wire.GetHeaders(tuple(locator), ZERO32))

    def _locator(self) -> tuple[bytes, ...]:
        store = self.node.store
        height = store.tip().height
        out: list[bytes] = []
        step = 1
        while height > 0 and len(out) < wire.MAX_LOCATOR - 1:
            out.append(store.block_hash_at(height))
            if len(out) >= 8:
                step *= 2
            height -= step
        out.append(store.block_hash_at(0))
        return tuple(out)

    def _headers_after(self, locator: tuple[bytes, ...]) -> list[bytes]:
        store = self.node.store
        start = 1
        for h in locator:
            if store.has_block(h) and store.is_main_chain(h):
                start = store.get_header(h).height + 1
                break
        tip = store.tip().height
        last = min(tip, start + wire.MAX_HEADERS - 1)
        return [store.get_header(height).encode() for height in range(start, last + 1)]

    # ------------------------------------------------------------ messages

    async def handle(self, peer: Peer, msg: wire.Message) -> None:
        if isinstance(msg, wire.GetHeaders):
            headers = await self.node.worker.call(self._headers_after, msg.locator)
            peer.send(wire.Headers(tuple(headers)))
            return
        assert isinstance(msg, wire.Headers)
        try:
            headers = [Header.decode(raw) for raw in msg.headers]
        except (DecodeError, ValueError) as exc:
            peer.offend(INVALID_OBJECT, f"undecodable header: {exc}")
            return
        for prev, cur in zip(headers, headers[1:]):
            if cur.prev_hash != prev.hash or cur.height != prev.height + 1:
                peer.offend(INVALID_OBJECT, "headers do not form a chain")
                return
        candidates = [h for h in headers if h.hash not in self.wanted and h.hash not in self.relay.parked]
        store = self.node.store
        have = await self.node.worker.call(lambda: [store.has_block(h.hash) for h in candidates])
        fresh = [h for h, known in zip(candidates, have) if not known]
        if headers:
            peer.best_height = max(peer.best_height, headers[-1].height)
        for header in fresh:
            if len(self.wanted) < MAX_WANTED:
                self.wanted[header.hash] = header.height
                self.source[header.hash] = peer
        if fresh:
            log.info("sync: %d new headers from %s up to height %d", len(fresh), peer.key, headers[-1].height)
        if len(headers) >= wire.MAX_HEADERS:
            await self.ask_headers(peer, from_hash=headers[-1].hash)
        self._dispatch(prefer=peer)

    # ------------------------------------------------------------ blocks

    def _dispatch(self, prefer: Peer | None = None) -> None:
        """Hand out wanted blocks, lowest height first, to peers with free slots; one GETDATA per peer."""
        peers = self.node.ready_peers()
        if not peers or not self.wanted:
            return
        load = {p: 0 for p in peers}
        for p, _ in self.inflight.values():
            if p in load:
                load[p] += 1
        now = time.monotonic()
        batches: dict[Peer, list[tuple[InvKind, bytes]]] = {}
        for h, height in self.wanted.items():  # insertion order = ascending height (headers come in order)
            if h in self.inflight:
                continue
            candidates = [p for p in peers if load[p] < PER_PEER_INFLIGHT and p.best_height >= height
                          and (p in batches or load[p] <= REFILL_AT)]
            if not candidates:
                break
            peer = min(candidates, key=lambda p: (load[p], p is not prefer))
            load[peer] += 1
            self.inflight[h] = (peer, now)
            self.relay.cancel_request((InvKind.BLOCK, h))
            batches.setdefault(peer, []).append((InvKind.BLOCK, h))
        for peer, items in batches.items():
            self.relay.request(peer, items)

    def block_arrived(self, h: bytes) -> None:
        height = self.wanted.pop(h, None)
        self.source.pop(h, None)
        self.inflight.pop(h, None)
        if height is not None:
            now = time.monotonic()
            if not self.wanted or now - self.last_progress_log > 2.0:
                self.last_progress_log = now
                log.info("sync: connected height %d, %d blocks to go", height, len(self.wanted))
        self._dispatch()

    def on_orphan(self, peer: Peer, prev_hash: bytes) -> bool:
        """True if the orphan's ancestry is already being fetched (no new header request needed)."""
        return prev_hash in self.wanted

    async def check_stalls(self) -> None:
        now = time.monotonic()
        for h, (peer, sent) in list(self.inflight.items()):
            if now - sent > STALL_S:
                del self.inflight[h]
                self.relay.cancel_request((InvKind.BLOCK, h))
                if not peer.close_reason:
                    peer.offend(STALL, f"block {h.hex()[:16]} not delivered in {STALL_S:.0f} s")
                    peer.close("stalled block download")
        # a block we wanted but that connected through another path (relay) is no longer wanted
        if self.wanted:
            idle = [h for h in self.wanted if h not in self.inflight]
            store = self.node.store
            known = await self.node.worker.call(lambda: [h for h in idle if store.has_block(h)])  # one hop
            for h in known:
                self.block_arrived(h)
            self._dispatch()
