"""Inventory tracking *(policy)*: what we will announce to each peer (trickled), and what we asked whom for.

Bookkeeping only — no judging, no penalties, no I/O: node/gossip.py decides what an object is worth and sends
the frames this module computes. Every table is bounded per peer and in total (PROTOCOL §4.3, §4.5; the numbers:
node.budgets), so an INV flood of unknown ids costs its sender only its own slots:

- ``Trickle``: ids accepted since the last tick, per peer (≤ its share); flushed every TRICKLE_S as INV frames of
  up to wire.MAX_INV_ITEMS ids (one frame carries many ids: the peer's frame budget sees ~10 INV/s).
- ``RequestTracker``: one GETDATA in flight per id (≤ ``per_peer`` per peer — its share of ``total`` — and ≤
  ``total`` in all, so the shares of the flooders never use up an honest peer's), up to MAX_ALTERNATES other
  announcers remembered per id (≤ ``total_alternates`` ids), so a peer that announces and then does not deliver
  (NOTFOUND, REQUEST_TIMEOUT_S, disconnect) only delays the object until the next announcer is asked.
  Transfers announced while their announcer's request share is used up are not dropped: they *wait*
  (≤ ``per_peer_waiting`` per peer, ≤ ``total_waiting`` in all), in announcement order per announcer, and are
  requested from it as its share frees (``next_requests``), or from another announcer of the same id if it
  fails — as Bitcoin Core's TxRequestTracker keeps every announcement (up to 5,000 per peer) and requests it
  later instead of forgetting it. Before, an id dropped at a full share was never asked for again (issue 23:
  under CPU load two relaying nodes both dropped the same ids of the same INV and lost them for good).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, KeysView
from dataclasses import dataclass
from typing import Generic, TypeVar

from node.wire import MAX_INV_ITEMS, InvKind

Key = tuple[InvKind, bytes]
P = TypeVar("P", bound=Hashable)   # a peer (node.peer.Peer in the node; anything hashable in tests)

TRICKLE_S = 0.1                # announcement batching interval (PROTOCOL §4.3)
ANNOUNCE_PER_TICK = MAX_INV_ITEMS   # transfer ids announced to one peer per tick: one INV; the rest wait their turn
MAX_TRICKLE = 50_000           # ids waiting for one peer's next tick, unless its share (node.budgets) is lower
REQUEST_TIMEOUT_S = 15.0       # a request not answered by then goes to the next announcer
PER_PEER_INFLIGHT = 8_000      # ids requested from one peer, unless its share is lower (honest 16k tx/s: ~3,200)
PER_PEER_BLOCKS = 16           # of which blocks (random block ids in an INV cost a store lookup each)
TOTAL_INFLIGHT = 64_000
MAX_ALTERNATES = 2             # other announcers remembered per id
TOTAL_ALTERNATES = 32_000      # ids with alternates
PER_PEER_WAITING = 8_000       # transfer ids one peer announced beyond its request share, waiting to be asked
TOTAL_WAITING = 64_000         # ... all peers (each (announcer, id) pair counts once)


class Trickle(Generic[P]):
    """Per-peer queues of ids to announce at the next tick (insertion order; oldest dropped beyond the cap)."""

    def __init__(self, cap: int = MAX_TRICKLE) -> None:
        self.cap = min(cap, MAX_TRICKLE)
        self._queues: dict[P, OrderedDict[Key, None]] = {}
        self.dropped = 0

    def add(self, peer: P, key: Key) -> None:
        q = self._queues.get(peer)
        if q is None:
            q = self._queues[peer] = OrderedDict()
        q[key] = None
        if len(q) > self.cap:   # beyond its share the oldest id goes unannounced to this peer (it may still fetch it)
            q.popitem(last=False)
            self.dropped += 1

    def add_many(self, peer: P, keys: list[Key]) -> None:
        """``add`` for several ids (a batch of accepted transfers): the queue is looked up and trimmed once."""
        if not keys:
            return
        q = self._queues.get(peer)
        if q is None:
            q = self._queues[peer] = OrderedDict()
        q.update(dict.fromkeys(keys))
        while len(q) > self.cap:
            q.popitem(last=False)
            self.dropped += 1

    def pending(self, peer: P) -> int:
        q = self._queues.get(peer)
        return len(q) if q else 0

    def take(self, limit: int | None = None) -> list[tuple[P, list[tuple[Key, ...]]]]:
        """What is queued, as (peer, INV-sized chunks): everything, or with ``limit`` each peer's oldest
        ``limit`` ids, the rest kept in order for the next tick (the sender's pacing, PROTOCOL §4.3)."""
        out = []
        for peer, q in list(self._queues.items()):
            if limit is None or len(q) <= limit:
                keys = list(q)
                del self._queues[peer]
            else:
                keys = [q.popitem(last=False)[0] for _ in range(limit)]
            if keys:
                out.append((peer, [tuple(keys[i:i + MAX_INV_ITEMS]) for i in range(0, len(keys), MAX_INV_ITEMS)]))
        return out

    def peer_gone(self, peer: P) -> None:
        self._queues.pop(peer, None)


@dataclass(slots=True)
class _Request(Generic[P]):
    peer: P
    sent: float


class RequestTracker(Generic[P]):
    """Who we asked for what. Ids are requested in announcement order; insertion order is send order, so
    expiry pops from the front."""

    def __init__(self, per_peer: int = PER_PEER_INFLIGHT, per_peer_blocks: int = PER_PEER_BLOCKS,
                 total: int = TOTAL_INFLIGHT, timeout_s: float = REQUEST_TIMEOUT_S,
                 total_alternates: int = TOTAL_ALTERNATES, per_peer_waiting: int = PER_PEER_WAITING,
                 total_waiting: int = TOTAL_WAITING) -> None:
        self.per_peer = min(per_peer, PER_PEER_INFLIGHT)
        self.per_peer_waiting = min(per_peer_waiting, PER_PEER_WAITING)
        self.total_waiting = total_waiting
        self.per_peer_blocks = per_peer_blocks
        self.total = total
        self.total_alternates = total_alternates
        self.timeout_s = timeout_s
        self._inflight: OrderedDict[Key, _Request[P]] = OrderedDict()
        self._count: dict[P, int] = {}
        self._blocks: dict[P, int] = {}
        self._alternates: dict[Key, list[P]] = {}
        # transfers announced beyond the announcer's share, by 32-byte id (all are transfers: no (kind, id) tuple
        # kept alive per entry): id -> its waiting announcer (a list only when there are several), and per
        # announcer its ids in announcement order; _freed: announcers whose share freed since next_requests
        self._waiting: dict[bytes, P | list[P]] = {}
        self._queues: dict[P, OrderedDict[bytes, None]] = {}
        self._waiting_total = 0
        self._freed: set[P] = set()
        self.dropped = 0   # announcements ignored at a bound (metrics)

    def __contains__(self, key: object) -> bool:
        return key in self._inflight

    def __len__(self) -> int:
        return len(self._inflight)

    def in_flight(self) -> KeysView[Key]:
        """A live read-only view of the ids in flight, for membership tests in hot loops."""
        return self._inflight.keys()

    def received_many(self, keys: Iterable[Key]) -> list[P | None]:
        """``received`` for each of ``keys`` (transfers that arrived in one frame), in order."""
        out: list[P | None] = []
        inflight, alternates, waiting = self._inflight, self._alternates, self._waiting
        for key in keys:
            alternates.pop(key, None)
            if key[1] in waiting and key[0] == InvKind.TX:
                self._unwait(key)
            out.append(self._remove(key) if key in inflight else None)
        return out

    def alternates(self) -> int:
        return len(self._alternates)

    def waiting(self) -> int:
        """(announcer, id) pairs waiting for their announcer's share to free."""
        return self._waiting_total

    def is_waiting(self, key: Key) -> bool:
        return key[0] == InvKind.TX and key[1] in self._waiting

    def has_freed(self) -> bool:
        """Some announcer with waiting ids got room since the last ``next_requests``."""
        return bool(self._freed)

    def inflight_from(self, peer: P) -> int:
        return self._count.get(peer, 0)

    def asked(self, key: Key) -> P | None:
        req = self._inflight.get(key)
        return req.peer if req is not None else None

    def alternates_of(self, key: Key) -> list[P]:
        return list(self._alternates.get(key, ()))

    def room(self, peer: P, kind: InvKind) -> bool:
        if len(self._inflight) >= self.total or self._count.get(peer, 0) >= self.per_peer:
            return False
        return kind != InvKind.BLOCK or self._blocks.get(peer, 0) < self.per_peer_blocks

    def announced(self, peer: P, key: Key, now: float) -> bool:
        """``peer`` announced ``key`` (which we lack). True = request it from this peer now (recorded as in
        flight); False = already asked elsewhere (this peer kept as an alternate if there is room) or at a bound."""
        req = self._inflight.get(key)
        if req is not None:
            if req.peer != peer:
                alts = self._alternates.get(key)
                if alts is None:
                    if len(self._alternates) < self.total_alternates:
                        self._alternates[key] = [peer]
                elif len(alts) < MAX_ALTERNATES and peer not in alts:
                    alts.append(peer)
            return False
        if not self.room(peer, key[0]):
            self.dropped += 1
            return False
        self._add(key, peer, now)
        return True

    def request_many(self, peer: P, keys: list[Key], now: float) -> int:
        """``announced`` for distinct transfer ids that are neither in flight nor held, in bulk: records requests
        to ``peer`` for as many as its share and the total allow, from the front, and returns that count (the
        rest are the caller's to ``wait_many``). One bound check and one shared request record per batch."""
        count = self._count.get(peer, 0)
        room = min(self.per_peer - count, self.total - len(self._inflight), len(keys))
        if room <= 0:
            return 0
        req = _Request(peer, now)   # never mutated: one record serves every id of the batch
        self._inflight.update(dict.fromkeys(keys[:room], req) if room < len(keys) else dict.fromkeys(keys, req))
        self._count[peer] = count + room
        return room

    def also_announced(self, peer: P, keys: Iterable[Key]) -> None:
        """``announced`` for ids already in flight (asked of someone): ``peer`` is kept as an alternate source
        of each, within MAX_ALTERNATES per id and ``total_alternates`` ids."""
        inflight, table = self._inflight, self._alternates
        for key in keys:
            req = inflight.get(key)
            if req is None or req.peer == peer:
                continue
            alts = table.get(key)
            if alts is None:
                if len(table) < self.total_alternates:
                    table[key] = [peer]
            elif len(alts) < MAX_ALTERNATES and peer not in alts:
                alts.append(peer)

    def force(self, peer: P, key: Key, now: float) -> None:
        """Record a request sync decided on (it picks the peer and has its own per-peer bound)."""
        self._remove(key)
        self._add(key, peer, now)

    def refetch(self, peer: P, key: Key, now: float, alternates: Iterable[P]) -> None:
        """Ask ``peer`` again for ``key`` (a corrupt copy of it arrived), the others queued behind it."""
        self.force(peer, key, now)
        alts = [p for p in alternates if p != peer][:MAX_ALTERNATES]
        if alts and (key in self._alternates or len(self._alternates) < self.total_alternates):
            self._alternates[key] = alts

    def _add(self, key: Key, peer: P, now: float) -> None:
        self._inflight[key] = _Request(peer, now)
        self._count[peer] = self._count.get(peer, 0) + 1
        if key[0] == InvKind.BLOCK:
            self._blocks[peer] = self._blocks.get(peer, 0) + 1

    def _remove(self, key: Key) -> P | None:
        req = self._inflight.pop(key, None)
        if req is None:
            return None
        for table in (self._count, self._blocks) if key[0] == InvKind.BLOCK else (self._count,):
            left = table.get(req.peer, 0) - 1
            if left > 0:
                table[req.peer] = left
            else:
                table.pop(req.peer, None)
        if req.peer in self._queues:
            self._freed.add(req.peer)
        return req.peer

    def received(self, key: Key) -> P | None:
        """The object arrived (from anyone): forget the request, its alternates and its waiting announcers.
        Returns whom we had asked."""
        self._alternates.pop(key, None)
        if key[1] in self._waiting and key[0] == InvKind.TX:
            self._unwait(key)
        return self._remove(key)

    def cancel(self, key: Key) -> None:
        self.received(key)

    # ------------------------------------------------------------ waiting announcements (transfers)

    def wait(self, peer: P, key: Key) -> bool:
        """``peer`` announced ``key`` (which we lack) while it had no room: remember it as an announcer, to ask it
        when its share frees. False = at a bound (its share of the waiting table, or the total): dropped."""
        h = key[1]
        q = self._queues.get(peer)
        if q is not None and h in q:
            return True
        if self._waiting_total >= self.total_waiting or (q is not None and len(q) >= self.per_peer_waiting):
            self.dropped += 1
            return False
        if q is None:
            q = self._queues[peer] = OrderedDict()
        q[h] = None
        announcers = self._waiting.get(h)
        if announcers is None:
            self._waiting[h] = peer
        elif isinstance(announcers, list):
            announcers.append(peer)
        else:
            self._waiting[h] = [announcers, peer]
        self._waiting_total += 1
        return True

    def _announcers(self, h: bytes) -> list[P]:
        found = self._waiting.get(h)
        return [] if found is None else list(found) if isinstance(found, list) else [found]

    def _drop_announcer(self, h: bytes, peer: P) -> None:
        """``peer`` no longer waits for ``h`` (its queue entry is the caller's)."""
        found = self._waiting.get(h)
        if isinstance(found, list):
            found.remove(peer)
            if len(found) == 1:
                self._waiting[h] = found[0]
        elif found is not None:
            del self._waiting[h]

    def wait_many(self, peer: P, keys: Iterable[Key]) -> list[Key]:
        """``wait`` for several ids of one announcer; returns those now waiting (or already waiting)."""
        return [key for key in keys if self.wait(peer, key)]

    def _unwait(self, key: Key) -> None:
        h = key[1]
        peers = self._announcers(h)
        self._waiting.pop(h, None)
        for peer in peers:
            q = self._queues.get(peer)
            if q is not None and h in q:
                del q[h]
                self._waiting_total -= 1
                if not q:
                    del self._queues[peer]

    def next_requests(self, now: float, alive: set[P], wanted: Callable[[Key], bool],
                      everyone: bool = False) -> dict[P, list[Key]]:
        """The waiting ids to request now: each announcer whose share freed (``everyone``: each announcer with
        waiting ids) gets its oldest waiting ids while it has room. An id already asked of another peer makes
        this announcer an alternate; an id no longer ``wanted`` (we hold or refuse it) is forgotten."""
        out: dict[P, list[Key]] = {}
        peers = list(self._queues) if everyone else [p for p in self._freed if p in self._queues]
        self._freed.clear()
        for peer in peers:
            if peer not in alive:
                continue
            q = self._queues[peer]
            while q and self.room(peer, InvKind.TX):
                h, _ = q.popitem(last=False)
                self._waiting_total -= 1
                self._drop_announcer(h, peer)
                key = (InvKind.TX, h)
                if key in self._inflight:
                    self.announced(peer, key, now)   # an alternate source, if there is room
                elif not wanted(key):
                    self._unwait(key)
                else:
                    self._add(key, peer, now)
                    out.setdefault(peer, []).append(key)
            if not q:
                del self._queues[peer]
        return out

    def failed(self, peer: P, keys: Iterable[Key], now: float, alive: set[P]) -> dict[P, list[Key]]:
        """``peer`` answered NOTFOUND for ``keys`` (only ids we asked *it* for count). Returns the re-requests to
        send: each id goes to its next announcer still in ``alive``."""
        out: dict[P, list[Key]] = {}
        for key in keys:
            req = self._inflight.get(key)
            if req is None or req.peer != peer:
                continue
            self._remove(key)
            self._retry(key, now, alive, out)
        return out

    def _retry(self, key: Key, now: float, alive: set[P], out: dict[P, list[Key]]) -> None:
        alts = self._alternates.pop(key, None) or []
        while alts:
            nxt = alts.pop(0)
            if nxt not in alive:
                continue
            if self.room(nxt, key[0]):
                self._add(key, nxt, now)
                if alts:
                    self._alternates[key] = alts
                out.setdefault(nxt, []).append(key)
                return
            if key[0] == InvKind.TX and self.wait(nxt, key):   # asked when its share frees
                return

    def expire(self, now: float, alive: set[P]) -> dict[P, list[Key]]:
        """Requests older than the timeout are given up; their ids go to the next announcer (as ``failed``)."""
        out: dict[P, list[Key]] = {}
        expired = []
        for key, req in self._inflight.items():   # oldest first
            if now - req.sent <= self.timeout_s:
                break
            expired.append(key)
        for key in expired:
            self._remove(key)
            self._retry(key, now, alive, out)
        return out

    def peer_gone(self, peer: P, now: float, alive: set[P]) -> dict[P, list[Key]]:
        """A peer left: its requests go to the next announcers; it is no longer anyone's alternate."""
        out: dict[P, list[Key]] = {}
        q = self._queues.pop(peer, None)
        if q is not None:
            self._waiting_total -= len(q)
            for h in q:
                self._drop_announcer(h, peer)
        self._freed.discard(peer)
        if self._count.get(peer):
            for key in [k for k, r in self._inflight.items() if r.peer == peer]:
                self._remove(key)
                self._retry(key, now, alive, out)
        self._freed.discard(peer)
        return out
