"""Global budgets *(policy)*: every table and queue that peers fill is bounded for all peers together (PROTOCOL §4.5).

Each budget is a total, stated in entries, bytes or objects per second, split into equal *shares* over the peer
slots the node can hold (max_inbound + max_outbound + the --peer addresses + EVICTION_SLACK for a newcomer that
is evicting). A peer can use its share and no more: beyond it its messages are dropped (and scored as a flood),
its reads pause, or it is cut as a slow peer — while every other peer keeps its own share, whatever the
others do. The object rate adds one pool any peer may draw on beyond its share (first come, first served),
so the honest peers of a quiet network are not held to 1/40th of it; the pool is bounded too.

Does: the numbers (``Budgets``), the per-peer known-inventory filter (``KnownInventory``) and the object-rate
accounting (``ObjectBudget``). Does not: decide what a message is worth (node.gossip, node.judge) or whom to
evict (node.eviction).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from node.limits import TokenBucket

K = TypeVar("K", bound=Hashable)

EVICTION_SLACK = 2                 # a newcomer is admitted while the peer it evicts is still closing

KNOWN_TOTAL = 200_000              # ids remembered as known to some peer (≈ 100 B each: ≈ 20 MB), all peers
SEND_TOTAL_BYTES = 8 * 2**20       # bytes queued or being written to peers, all peers (GETDATA answers wait)
REQUESTS_TOTAL = 32_000            # ids requested and not yet answered (≈ 250 B each: ≈ 8 MB), all peers
ALTERNATES_TOTAL = 32_000          # requested ids with other announcers remembered, all peers
WAITING_TOTAL = 64_000             # transfer ids announced beyond the announcer's request share, waiting for it
                                   # to free (≈ 190 B per (announcer, id), measured: ≈ 12 MB), all peers
TRICKLE_TOTAL = 200_000            # ids waiting for their next announcement tick, all peers
TX_QUEUE_TOTAL = 8_192             # received transfers waiting for their verdict, all peers
OBJ_RESERVED_RATE = 30_000.0       # objects/s (ids in INV/GETDATA/NOTFOUND, unsolicited transfers), shared out
OBJ_POOL_RATE, OBJ_POOL_BURST = 30_000.0, 60_000.0     # ... plus this pool, first come first served
OBJ_PEER_RATE, OBJ_PEER_BURST = 50_000.0, 100_000.0    # one peer never exceeds this, pool or not
SERVE_WAIT_S = 0.02
MIN_SEND_SHARE = 192 * 1024        # a peer's send share is at least this (one frame more is always allowed)
SERVE_RESERVED_RATE = 32 * 2**20   # bytes/s of blocks served (GETDATA answers), shared out like the objects ...
SERVE_POOL_RATE = 64 * 2**20       # ... plus this pool (burst: one second of it)


@dataclass(frozen=True)
class Budgets:
    """The budgets of one node: totals split over ``slots`` peers (``for_slots``)."""

    slots: int

    @classmethod
    def for_slots(cls, max_inbound: int, max_outbound: int, persistent: int = 0) -> Budgets:
        return cls(max(1, max_inbound + max_outbound + persistent + EVICTION_SLACK))

    @property
    def known_per_peer(self) -> int:
        return max(1_000, KNOWN_TOTAL // self.slots)

    @property
    def send_share(self) -> int:
        """Bytes a peer's send queue may hold before what it asks of us waits (its backpressure)."""
        return max(MIN_SEND_SHARE, SEND_TOTAL_BYTES // self.slots)

    @property
    def requests_per_peer(self) -> int:
        return max(500, REQUESTS_TOTAL // self.slots)

    @property
    def waiting_per_peer(self) -> int:
        return max(1_000, WAITING_TOTAL // self.slots)

    @property
    def trickle_per_peer(self) -> int:
        return max(1_000, TRICKLE_TOTAL // self.slots)

    @property
    def tx_queue_per_peer(self) -> int:
        return max(64, TX_QUEUE_TOTAL // self.slots)

    @property
    def obj_reserved_rate(self) -> float:
        return OBJ_RESERVED_RATE / self.slots

    @property
    def serve_reserved_rate(self) -> float:
        return SERVE_RESERVED_RATE / self.slots


class SendBudget:
    """Bytes queued (or being written) for all peers together. A peer may queue a new GETDATA answer while its
    own queue is empty, or within its share while the total is within SEND_TOTAL_BYTES: peers that stop reading
    hold one frame each at most, and a peer that reads is always served its next frame."""

    __slots__ = ("cap", "queued")

    def __init__(self, cap: int = SEND_TOTAL_BYTES) -> None:
        self.cap = cap
        self.queued = 0


class KnownInventory(Generic[K]):
    """Ids a peer is known to have (it announced or sent them, or we did): two generations of plain sets, so
    membership and insertion stay C-speed; when the current generation reaches half the cap the older one is
    dropped. Remembers at least cap/2 and at most cap ids. Forgetting only costs a redundant announcement."""

    __slots__ = ("_cur", "_half", "_old")

    def __init__(self, cap: int) -> None:
        self._half = max(1, cap // 2)
        self._cur: set[K] = set()
        self._old: set[K] = set()

    def add(self, key: K) -> None:
        cur = self._cur
        cur.add(key)
        if len(cur) >= self._half:
            self._old, self._cur = cur, set()

    def __contains__(self, key: object) -> bool:
        return key in self._cur or key in self._old

    def add_many(self, keys: Iterable[K]) -> None:
        """``add`` for each of ``keys``, in order."""
        half = self._half
        keys = keys if isinstance(keys, list) else list(keys)
        if len(self._cur) + len(keys) < half:   # no generation change on the way: one C-level update
            self._cur.update(keys)
            return
        for key in keys:
            cur = self._cur
            cur.add(key)
            if len(cur) >= half:
                self._old, self._cur = cur, set()

    def add_unknown(self, keys: Iterable[K]) -> list[K]:
        """The keys not known yet (in order, each once), now added."""
        fresh: list[K] = []
        half = self._half
        cur, old = self._cur, self._old
        for key in keys:
            if key in cur or key in old:
                continue
            fresh.append(key)
            cur.add(key)
            if len(cur) >= half:
                self._old, self._cur = cur, set()
                cur, old = self._cur, self._old
        return fresh

    def __len__(self) -> int:
        return len(self._cur) + len(self._old)

    def discard(self, key: K) -> None:
        self._cur.discard(key)
        self._old.discard(key)


class PeerObjects:
    """One peer's rate state: its reserved object share and its own ceiling, and its reserved share of the block
    bytes we serve (see ObjectBudget)."""

    __slots__ = ("ceiling", "drops", "reserved", "serve")

    def __init__(self, reserved_rate: float, serve_rate: float, now: float) -> None:
        self.reserved = TokenBucket(reserved_rate, 2 * reserved_rate, now)
        self.ceiling = TokenBucket(OBJ_PEER_RATE, OBJ_PEER_BURST, now)
        self.serve = TokenBucket(serve_rate, serve_rate, now)
        self.drops = 0


class ObjectBudget:
    """Objects per second for all peers together: each peer's reserved share (OBJ_RESERVED_RATE / slots) plus
    one pool (OBJ_POOL_RATE) that any peer may draw on, each peer capped at OBJ_PEER_RATE. The total accepted
    from all peers is thus at most OBJ_RESERVED_RATE + OBJ_POOL_RATE per second (plus bursts), and a peer that
    stays within its reserved share is never refused, however hard the others flood."""

    def __init__(self, budgets: Budgets, now: float) -> None:
        self.budgets = budgets
        self.pool = TokenBucket(OBJ_POOL_RATE, OBJ_POOL_BURST, now)
        self.serve_pool = TokenBucket(SERVE_POOL_RATE, SERVE_POOL_RATE, now)

    def new_peer(self, now: float) -> PeerObjects:
        return PeerObjects(self.budgets.obj_reserved_rate, self.budgets.serve_reserved_rate, now)

    async def pace(self, peer: PeerObjects, nbytes: int) -> None:
        """Wait until ``nbytes`` of blocks may be served to ``peer``: its reserved share of SERVE_RESERVED_RATE,
        else the common SERVE_POOL_RATE (a block larger than what is left is served on credit, and the next one
        waits until the debt is paid). All peers together are served at most the two rates' sum (plus one
        block each): a peer asking for blocks over and over costs the node a bounded share of its CPU."""
        while True:
            now = time.monotonic()
            if peer.serve.take_debt(now, nbytes) or self.serve_pool.take_debt(now, nbytes):
                return
            await asyncio.sleep(SERVE_WAIT_S)

    def take(self, peer: PeerObjects, n: int, now: float) -> bool:
        """Charge ``n`` objects to ``peer``; False = over budget (the caller drops the message)."""
        if n <= 0:
            return True
        if not peer.ceiling.take(now, n):
            return False
        if peer.reserved.take(now, n) or self.pool.take(now, n):
            return True
        peer.ceiling.refund(n)
        return False
