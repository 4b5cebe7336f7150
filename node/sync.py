"""Headers-first sync *(policy)*: GETHEADERS with a block locator, then blocks fetched from the peers that named them.

Headers are only hints of what to fetch (validity comes from the engine when each block arrives with its beacon
in its payload), and a peer's headers may be lies: a block is requested only from a peer that announced it in
its headers (never from one that did not — an honest peer is never asked for what it does not have), so a peer
that announces what it cannot serve only ever stalls its own requests, and is penalised alone (PROTOCOL §4.4):

- *bounded*: each peer names at most WANTED_PER_PEER wanted blocks, has at most one GETHEADERS in flight (a
  HEADERS we did not ask for is ignored and scored as unsolicited), and has at most PER_PEER_INFLIGHT blocks in
  flight — PROBATION_INFLIGHT until it delivered one; blocks are fetched at most WINDOW above our tip, so what
  arrives early fits the engine's orphan pool;
- *hedged*: a block given to a peer that has not yet delivered one (on probation) is asked of another peer that
  announced it too, at once (or as soon as another peer's headers name it); and when the lowest missing block has been in flight longer than a few times the
  recent delivery time (``stuck_after``), it is asked of another announcer as well — a liar delays the tip by a
  fraction of a second, not by its timeout;
- *penalised*: a NOTFOUND for a block the peer announced, or a block it was asked for and has not delivered
  after STALL_S (even if another peer delivered it meanwhile), scores STALL and closes the connection; its
  address is then left out of block requests for SHUNNED_S (reconnecting does not help it). A block that arrived
  but waits for its parent is no longer "in flight": the peer that delivered it is never blamed for the wait.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Coroutine, Iterable
from typing import Any, Protocol

from chain.block import Header
from chain.errors import DecodeError
from node import wire
from node.limits import INVALID_OBJECT, STALL, UNSOLICITED, BoundedMap
from node.peer import Peer
from node.wire import InvKind

log = logging.getLogger("popchain.sync")

PER_PEER_INFLIGHT = 16
PROBATION_INFLIGHT = 2               # blocks in flight to a peer that has not delivered one yet
REFILL_AT = PER_PEER_INFLIGHT // 2   # top a peer up only once half its slots are free: fewer, fuller GETDATAs
WINDOW = 48                          # fetch at most this far above the lowest missing block (< engine orphans)
STALL_S = 10.0                       # a peer that delivers nothing it was asked for this long is cut
HEADERS_TIMEOUT_S = 10.0             # a GETHEADERS unanswered this long may be sent again
MAX_WANTED = 50_000
WANTED_PER_PEER = 10_000             # wanted blocks one peer's headers may add (its share of MAX_WANTED)
MAX_ANNOUNCERS = 4                   # peers remembered per wanted block
RECEIVED_TTL_S = 120.0               # a delivered block still not connected after this may be fetched again
SHUNNED_S = 600.0                    # an address that stalled gets no block requests for this long
STUCK_MIN_S, STUCK_MAX_S = 0.25, 5.0
WATCH_S = 0.1                        # how often ``watch`` looks for a stuck window
ZERO32 = bytes(32)


class SyncHost(Protocol):
    """What sync needs from the node (node.node.Node provides it)."""

    tip_cache: tuple[int, int, bytes]   # (height, round, hash) of our tip

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


def _address(peer: Peer) -> str:
    """What a shunned peer is remembered by: the address we dialled, or its IP and advertised port."""
    return peer.key


class Sync:
    def __init__(self, node: SyncHost, relay: BlockRequests) -> None:
        self.node = node
        self.relay = relay
        self.wanted: dict[bytes, int] = {}                      # block hash -> height, not yet connected
        self.by_height: dict[int, list[bytes]] = {}             # height -> wanted hashes (dispatch walks the window)
        self.announcers: dict[bytes, list[Peer]] = {}           # block hash -> peers whose headers named it
        self.named: dict[Peer, int] = {}                        # peer -> wanted blocks it announced first
        self.inflight: dict[bytes, tuple[Peer, float]] = {}     # block hash -> (peer, sent)
        self.hedged: dict[bytes, Peer] = {}                     # block hash -> second peer asked
        self.owed: dict[Peer, dict[bytes, float]] = {}          # what each peer was asked and has not delivered
        self.received: dict[bytes, float] = {}                  # delivered, waiting for its parent
        self.headers_pending: dict[Peer, float] = {}            # GETHEADERS in flight
        self.headers_asked: dict[Peer, float] = {}              # last full-locator request
        self.proven: set[Peer] = set()                          # delivered at least one block we asked for
        self.last_delivery: dict[Peer, float] = {}
        self.shunned: BoundedMap[str, float] = BoundedMap(4096)
        self.latency_s = 0.1                                    # EWMA of request -> delivery
        self.last_progress_log = 0.0

    # ------------------------------------------------------------ peers

    def peer_ready(self, peer: Peer) -> None:
        self.node.spawn(self.ask_headers(peer), "ask-headers")
        self.headers_pending[peer] = time.monotonic()   # now: its answer may overtake the task that sends it

    def peer_gone(self, peer: Peer) -> None:
        self.headers_asked.pop(peer, None)
        self.headers_pending.pop(peer, None)
        self.proven.discard(peer)
        self.last_delivery.pop(peer, None)
        self.named.pop(peer, None)
        self.owed.pop(peer, None)
        for h, (p, _) in list(self.inflight.items()):
            if p is peer:
                del self.inflight[h]
                self.relay.cancel_request((InvKind.BLOCK, h))
        for h, p in list(self.hedged.items()):
            if p is peer:
                del self.hedged[h]
        # what only this peer's headers named goes with it: headers are unchecked hints, and a peer feeding us
        # a fake chain must not keep the want list full after it is gone. If it was honest, the others name
        # the same blocks again when asked.
        for h in [h for h, ps in self.announcers.items() if peer in ps]:
            ps = self.announcers[h]
            ps.remove(peer)
            if not ps and h not in self.received:   # a delivered block waits for its parent regardless
                self._forget(h)
        self._dispatch()

    def _want(self, h: bytes, height: int, peer: Peer) -> None:
        self.wanted[h] = height
        self.by_height.setdefault(height, []).append(h)
        self.announcers[h] = [peer]
        self.named[peer] = self.named.get(peer, 0) + 1

    def _forget(self, h: bytes) -> int | None:
        """Drop ``h`` from every table; returns its height if it was wanted."""
        height = self.wanted.pop(h, None)
        ps = self.announcers.pop(h, None)
        if ps:   # the first announcer's count (a peer that left was removed from the lists first)
            left = self.named.get(ps[0], 0) - 1
            if left > 0:
                self.named[ps[0]] = left
            else:
                self.named.pop(ps[0], None)
        if height is not None:
            same = self.by_height.get(height)
            if same is not None:
                if h in same:
                    same.remove(h)
                if not same:
                    del self.by_height[height]
        self.inflight.pop(h, None)
        self.hedged.pop(h, None)
        self.received.pop(h, None)
        return height

    def _shun(self, peer: Peer, why: str) -> None:
        self.shunned.put(_address(peer), time.monotonic() + SHUNNED_S)
        if not peer.close_reason:
            peer.offend(STALL, why)
            peer.close(f"stall: {why}")

    def _is_shunned(self, peer: Peer, now: float) -> bool:
        until = self.shunned.get(_address(peer))
        return until is not None and until > now

    async def ask_headers(self, peer: Peer, from_hash: bytes | None = None) -> None:
        """GETHEADERS to ``peer`` — one in flight per peer; a full-locator request at most once a second."""
        now = time.monotonic()
        if now - self.headers_pending.get(peer, -1e9) < HEADERS_TIMEOUT_S and peer in self.headers_asked:
            return
        if from_hash is None and now - self.headers_asked.get(peer, -1e9) < 1.0:
            return
        self.headers_pending[peer] = now
        if from_hash is None:
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
        if start <= store.pruned_through():
            return []   # a pruned node names only blocks it can serve: their models are gone (an archive peer has them)
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
        if self.headers_pending.pop(peer, None) is None:
            peer.offend(UNSOLICITED, "HEADERS we did not ask for")   # ignored: only answers are taken
            return
        try:
            headers = [Header.decode(raw) for raw in msg.headers]
        except (DecodeError, ValueError) as exc:
            peer.offend(INVALID_OBJECT, f"undecodable header: {exc}")
            return
        for prev, cur in itertools.pairwise(headers):
            if cur.prev_hash != prev.hash or cur.height != prev.height + 1:
                peer.offend(INVALID_OBJECT, "headers do not form a chain")
                return
        if headers:
            peer.best_height = max(peer.best_height, headers[-1].height)
        now = time.monotonic()
        hedges: list[tuple[InvKind, bytes]] = []
        for header in headers:   # already wanted: this peer can serve it too
            ps = self.announcers.get(header.hash)
            if ps is not None and peer not in ps and len(ps) < MAX_ANNOUNCERS:
                ps.append(peer)
                # in flight to a peer on probation that had no second announcer when it was given out (its
                # headers came first): hedge it now, not only once the window is stuck
                held = self.inflight.get(header.hash)
                if held is not None and held[0] not in self.proven and header.hash not in self.hedged \
                        and not self._is_shunned(peer, now):
                    self.hedged[header.hash] = peer
                    self.owed.setdefault(peer, {}).setdefault(header.hash, now)
                    hedges.append((InvKind.BLOCK, header.hash))
        if hedges:
            peer.send(wire.GetData(tuple(hedges)))
        candidates = [h for h in headers if h.hash not in self.wanted and h.hash not in self.relay.parked]
        store = self.node.store
        have = await self.node.worker.call(lambda: [store.has_block(h.hash) for h in candidates])
        fresh = [h for h, known in zip(candidates, have, strict=True) if not known]
        added = 0
        for header in fresh:
            if len(self.wanted) >= MAX_WANTED or self.named.get(peer, 0) >= WANTED_PER_PEER:
                break
            self._want(header.hash, header.height, peer)
            added += 1
        if added:
            log.info("sync: %d new headers from %s up to height %d", added, peer.key, headers[-1].height)
        # continue only while this peer's headers bring something new and it has room in its share
        if len(headers) >= wire.MAX_HEADERS and added and self.named.get(peer, 0) < WANTED_PER_PEER:
            await self.ask_headers(peer, from_hash=headers[-1].hash)
        self._dispatch()

    def not_found(self, peer: Peer, items: Iterable[tuple[InvKind, bytes]]) -> None:
        """NOTFOUND for blocks we asked ``peer`` for: it announced them in its headers and cannot serve them."""
        owed = self.owed.get(peer, {})
        mine = [h for kind, h in items if kind == InvKind.BLOCK and h in owed]
        if mine:
            self._shun(peer, f"announced block {mine[0].hex()[:16]} but cannot serve it")

    # ------------------------------------------------------------ blocks

    def stuck_after(self) -> float:
        """How long the lowest missing block may be in flight before it is asked of another peer too."""
        return min(STUCK_MAX_S, max(STUCK_MIN_S, 4 * self.latency_s))

    def _dispatch(self) -> None:
        """Hand out wanted blocks of the window (WINDOW heights above our tip), lowest first, to peers that
        announced them and have free slots; one GETDATA per peer. Blocks with no such peer are skipped. A block
        given to a peer on probation is asked of a second announcer at once (the hedge)."""
        if not self.wanted:
            return
        now = time.monotonic()
        ready = [p for p in self.node.ready_peers() if not self._is_shunned(p, now)]
        if not ready:
            return
        load = {p: 0 for p in ready}
        for p, _ in self.inflight.values():
            if p in load:
                load[p] += 1
        for p in self.hedged.values():
            if p in load:
                load[p] += 1
        cap = {p: PER_PEER_INFLIGHT if p in self.proven else PROBATION_INFLIGHT for p in ready}
        batches: dict[Peer, list[tuple[InvKind, bytes]]] = {}
        tip = self.node.tip_cache[0]
        for height in range(tip + 1, tip + 1 + WINDOW):
            if all(load[p] >= cap[p] for p in ready):
                break   # every peer is busy: nothing more to hand out now
            for h in self.by_height.get(height, ()):
                if h in self.inflight or h in self.received:
                    continue
                candidates = [p for p in self.announcers.get(h, ()) if p in load and load[p] < cap[p]
                              and (p in batches or load[p] <= REFILL_AT or p not in self.proven)]
                if not candidates:
                    continue
                candidates.sort(key=lambda p: (p not in self.proven, load[p]))
                peer = candidates[0]
                load[peer] += 1
                self.inflight[h] = (peer, now)
                self.relay.cancel_request((InvKind.BLOCK, h))
                batches.setdefault(peer, []).append((InvKind.BLOCK, h))
                if peer not in self.proven and len(candidates) > 1:   # on probation: hedge at once
                    second = candidates[1]
                    load[second] += 1
                    self.hedged[h] = second
                    batches.setdefault(second, []).append((InvKind.BLOCK, h))
        for peer, items in batches.items():
            owed = self.owed.setdefault(peer, {})
            for _, h in items:
                owed.setdefault(h, now)
            self.relay.request(peer, items)

    def delivered(self, h: bytes, peer: Peer | None) -> None:
        """A block arrived from ``peer`` (before its verdict): it is no longer in flight, even if it must wait
        for its parent; a delivery from the peer we asked proves that peer and times the network."""
        if peer is None:
            return
        owed = self.owed.get(peer)
        sent = owed.pop(h, None) if owed is not None else None
        if sent is None:
            return
        now = time.monotonic()
        self.latency_s = 0.8 * self.latency_s + 0.2 * (now - sent)
        self.proven.add(peer)
        self.last_delivery[peer] = now
        if h in self.inflight or h in self.hedged:
            self.inflight.pop(h, None)
            self.hedged.pop(h, None)
            if h in self.wanted:
                self.received[h] = now

    def block_arrived(self, h: bytes) -> None:
        height = self._forget(h)
        if height is not None:
            now = time.monotonic()
            if not self.wanted or now - self.last_progress_log > 2.0:
                self.last_progress_log = now
                log.info("sync: connected height %d, %d blocks to go", height, len(self.wanted))
        self._dispatch()

    def on_orphan(self, peer: Peer, prev_hash: bytes) -> bool:
        """True if the orphan's ancestry is already being fetched (no new header request needed)."""
        return prev_hash in self.wanted

    # ------------------------------------------------------------ stalls

    def hedge(self) -> None:
        """The lowest missing block stuck with one peer: ask another announcer too (no blame yet)."""
        if not self.inflight:
            return
        now = time.monotonic()
        floor = self.node.tip_cache[0] + 1
        ready = set(self.node.ready_peers())
        for h, (peer, sent) in list(self.inflight.items()):
            if self.wanted.get(h) != floor or h in self.hedged or now - sent < self.stuck_after():
                continue
            others = [p for p in self.announcers.get(h, ()) if p is not peer and p in ready
                      and not self._is_shunned(p, now)]
            if others:
                other = min(others, key=lambda p: (p not in self.proven, p.queued_bytes))
                self.hedged[h] = other
                self.owed.setdefault(other, {}).setdefault(h, now)
                other.send(wire.GetData(((InvKind.BLOCK, h),)))

    async def watch(self) -> None:
        """Sync's own task: hedge a stuck window every WATCH_S (housekeeping's second is too coarse)."""
        while True:
            await asyncio.sleep(WATCH_S)
            self.hedge()

    async def check_stalls(self) -> None:
        now = time.monotonic()
        for peer, owed in list(self.owed.items()):
            late = [h for h, sent in owed.items() if now - sent > STALL_S]
            if late and not peer.close_reason:
                self._shun(peer, f"block {late[0].hex()[:16]} not delivered in {STALL_S:.0f} s")
        for h, since in list(self.received.items()):
            if now - since > RECEIVED_TTL_S:   # the engine dropped it as an orphan: fetch it again later
                del self.received[h]
        tip = self.node.tip_cache[0]
        for height in [x for x in self.by_height if x < tip]:   # another block took that height: not wanted
            for h in list(self.by_height.get(height, ())):
                if h not in self.inflight:
                    self._forget(h)
        # a block we wanted but that connected through another path (relay) is no longer wanted
        if self.wanted:
            idle = [h for h in self.wanted if h not in self.inflight]
            store = self.node.store
            known = await self.node.worker.call(lambda: [h for h in idle if store.has_block(h)])  # one hop
            for h in known:
                self.block_arrived(h)
            self._dispatch()
        else:   # nothing wanted: a peer ahead of us (a share that ran out, a missed announcement) is asked again
            tip = await self.node.worker.call(lambda: self.node.store.tip().height)
            ahead = [p for p in self.node.ready_peers() if p.best_height > tip and not self._is_shunned(p, now)]
            if ahead:
                await self.ask_headers(max(ahead, key=lambda p: p.best_height))
