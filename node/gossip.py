"""Gossip *(policy)*: announce by hash (INV), fetch (GETDATA), hand what arrives to the judge, relay what it accepted.

Transfers are announced in trickled batches (node/inventory.py: one INV of all new ids per peer every
TRICKLE_S) and a GETDATA for transfers is answered with TXS frames of up to 1000 transfers, so a node relaying
at its full admission rate sends each peer tens of frames per second, not thousands. Blocks and round objects
are announced at once (a handful per round). Object budget (ids in INV/GETDATA/NOTFOUND — charged by node.peer
before the frame is decoded — and transfers pushed unasked): each peer's reserved share plus a pool for all
(node.budgets.ObjectBudget); what we asked a peer for is never charged. Over the budget a message is dropped,
and every FLOOD_DROPS_PER_OFFENCE drops score a flood offence (node.peer).

Every table here is a share of a global budget (node.budgets): requests in flight and trickle queues per peer,
the transfers a peer has waiting for their verdict (its reader pauses beyond its share), and what we queue
for it: GETDATA answers are loaded and queued one object at a time while the peer is within its send share,
and an accepted block is encoded once and pushed whole only to peers with room (INV to the others).
Verdicts and penalties: node/judge.py.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Protocol

from chain.tx import txid_of_encoding
from node import wire
from node.budgets import (
    ALTERNATES_TOTAL,
    REQUESTS_TOTAL,
    TX_QUEUE_TOTAL,
    WAITING_TOTAL,
    Budgets,
    ObjectBudget,
    PeerObjects,
)
from node.inventory import ANNOUNCE_PER_TICK, MAX_ALTERNATES, TRICKLE_S, RequestTracker, Trickle
from node.judge import Judge, JudgeHost, Key, decode_object, object_id
from node.limits import FLOOD, BoundedMap, BoundedSet
from node.peer import Peer
from node.wire import InvKind

__all__ = ["Relay", "RelayHost", "decode_object", "object_id"]

log = logging.getLogger("popchain.gossip")

PUSH_BLOCK_PEERS = 3
BLOCK_QUEUE = 8           # blocks received but not judged yet (backpressure on the peers' readers)
TX_QUEUE = TX_QUEUE_TOTAL  # transfers received but not judged yet, all peers (each has its share: node.budgets)
TX_BATCH = 1024           # transfers judged per batch (one signature batch on the verification pool)
GREET_ROUNDS = 2          # round objects of the last rounds announced to a new peer
PENDING_GETDATA = 3       # GETDATA messages one peer may have waiting for their answers (beyond: dropped)
FLOOD_DROPS_PER_OFFENCE = 100


class RelayHost(JudgeHost, Protocol):
    """What gossip needs from the node, on top of what judging needs."""

    def ready_peers(self) -> list[Peer]: ...
    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None] | None: ...


class Relay:
    def __init__(self, host: RelayHost, budgets: Budgets | None = None) -> None:
        self.host = host
        budgets = budgets if budgets is not None else Budgets.for_slots(32, 8)
        self.shares = budgets
        self.requests: RequestTracker[Peer] = RequestTracker(
            per_peer=budgets.requests_per_peer, total=REQUESTS_TOTAL, total_alternates=ALTERNATES_TOTAL,
            per_peer_waiting=budgets.waiting_per_peer, total_waiting=WAITING_TOTAL)
        # a peer's queue holds at least a whole mempool: paced announcements (flush) must not drop accepted ids
        self.trickle: Trickle[Peer] = Trickle(max(budgets.trickle_per_peer, host.mempool.max_txs))
        self.judge = Judge(host, self.announce, self._received, self.push_all, self.announce_txs)
        self.judge.refetch = self.refetch
        # block -> the other peers that announced it when a copy arrived: asked first if that copy was corrupt
        self._block_sources: BoundedMap[bytes, list[Peer]] = BoundedMap(256)
        self._hedged: BoundedSet[tuple[bytes, Peer]] = BoundedSet(1024)   # (block, outbound peer) asked in parallel
        self.objects = ObjectBudget(budgets, time.monotonic())
        self.budgets: dict[Peer, PeerObjects] = {}
        self.block_queue: asyncio.Queue[tuple[Peer, bytes]] = asyncio.Queue(BLOCK_QUEUE)
        # transfers received and not judged yet (≤ TX_QUEUE, each peer ≤ its share), in arrival order; the tx task
        # sleeps on _tx_ready while it is empty
        self.tx_queue: deque[tuple[Peer, bytes, bool, bytes]] = deque()
        self._tx_ready = asyncio.Event()
        self.queued_txs: set[bytes] = set()   # txids in tx_queue (bounded by it): not requested again meanwhile
        self.tx_waiting: dict[Peer, int] = {}  # transfers each peer has in tx_queue (≤ its share)
        # sync's hooks (node.sync): a block arrived from a peer (before its verdict); a peer had none of these
        self.on_block_delivered: Callable[[bytes, Peer | None], None] = lambda h, peer: None
        self.on_not_found: Callable[[Peer, Sequence[Key]], None] = lambda peer, keys: None
        self._tx_drained = asyncio.Event()    # set (and replaced) after each judged batch
        # GETDATA messages waiting for their answers, per peer (≤ PENDING_GETDATA), served by one task per peer:
        # the peer's reader keeps reading meanwhile, so one that asks faster than it reads is dropped and
        # scored, instead of parking its requests in our receive buffers
        self.getdata: dict[Peer, asyncio.Queue[tuple[bytes, bytes] | None]] = {}

    # ------------------------------------------------------------ facade kept for the node and the API

    @property
    def parked(self) -> Any:
        return self.judge.parked

    def remember(self, kind: InvKind, h: bytes, data: bytes, round_: int) -> None:
        self.judge.remember(kind, h, data, round_)

    def publish(self, kind: InvKind, h: bytes, data: bytes, round_: int) -> None:
        """An object we made (the keyholder's notices and beacons): keep it for GETDATA and announce it."""
        self.judge.remember(kind, h, data, round_)
        self.announce(kind, h)

    async def on_object(self, peer: Peer | None, kind: InvKind, data: bytes) -> tuple[bool, str]:
        result = await self.judge.on_object(peer, kind, data)
        if result[0] and peer is not None:
            if kind == InvKind.BLOCK and result[1] != "duplicate":
                peer.last_block_at = time.monotonic()   # useful work: node.eviction protects it
            if kind in (InvKind.ANCHOR, InvKind.BEACON):
                await self._fetch_activations(peer, kind, data)
        return result

    async def _fetch_activations(self, peer: Peer, kind: InvKind, data: bytes) -> None:
        """A statement activating task messages we lack: ask its sender for them (≤ 64, PROTOCOL §3.13), so
        that templates and the task views work before a block carries them."""
        st = decode_object(kind, data)
        ids = [h for _, h in st.activations]
        if not ids:
            return
        engine = self.host.engine
        missing = await self.host.worker.call(lambda: [h for h in ids if engine.task_message(h) is None])
        keys = [(InvKind.TASK, h) for h in missing if (InvKind.TASK, h) not in self.requests]
        if keys:
            self.request(peer, keys)

    async def on_tx_batch(self, batch: Sequence[tuple[Peer | None, bytes]]) -> list[tuple[bool, str]]:
        return await self.judge.on_tx_batch(batch)

    def tip_changed(self) -> None:
        self.judge.tip_changed()

    # ------------------------------------------------------------ bookkeeping

    def _alive(self) -> set[Peer]:
        return set(self.host.ready_peers())

    def _received(self, key: Key, peer: Peer | None) -> bool:
        if key[0] == InvKind.BLOCK:
            asked = self.requests.asked(key)
            others = [p for p in (asked, *self.requests.alternates_of(key)) if p is not None and p is not peer]
            if others:
                self._block_sources.put(key[1], others)
            self.on_block_delivered(key[1], peer)
        return self.requests.received(key) is peer and peer is not None

    def _hedge(self, key: Key, peer: Peer) -> bool:
        """A block in flight from an inbound peer is also asked of an outbound peer that announces it (once per
        pair): a peer that announces blocks first from many inbound connections and never delivers cannot hold
        a block back past the opening window (PROTOCOL §4.3). Untracked: its answer is judged like any copy."""
        asked = self.requests.asked(key)
        if asked is None or not asked.inbound or (key[1], peer) in self._hedged:
            return False
        self._hedged.add((key[1], peer))
        self.host.metrics.inc("popchain_block_hedged_requests_total")
        return True

    def refetch(self, key: Key, exclude: Peer | None) -> None:
        """Ask for a block again after a corrupt copy of it (PROTOCOL §4.3): first the peers that announced it,
        then those that know it, then any; one in flight and up to MAX_ALTERNATES behind it. Bounded: one
        request per corrupt copy, and a corrupt copy's sender is banned."""
        alive = [p for p in self.host.ready_peers() if p is not exclude]
        if not alive:
            return
        first = [p for p in self._block_sources.pop(key[1]) or [] if p in alive]
        known = [p for p in alive if key in p.known and p not in first]
        order = first + known + [p for p in alive if p not in first and p not in known]
        self.requests.refetch(order[0], key, time.monotonic(), order[1:1 + MAX_ALTERNATES])
        self.host.metrics.inc("popchain_block_refetch_total")
        self._send_requests({order[0]: [key]})

    def _send_requests(self, plan: dict[Peer, list[Key]]) -> None:
        for peer, keys in plan.items():
            for i in range(0, len(keys), wire.MAX_INV_ITEMS):
                peer.send(wire.GetData(tuple(keys[i:i + wire.MAX_INV_ITEMS])))

    def _wanted(self, key: Key) -> bool:
        """A waiting transfer id is still worth asking for (we neither hold, refuse nor queue it)."""
        return not self.judge.known_cheap(key) and key[1] not in self.queued_txs

    def _request_waiting(self, everyone: bool = False) -> None:
        """Ask for the waiting transfer ids whose announcers have room again (node.inventory)."""
        if everyone or self.requests.has_freed():
            self._send_requests(self.requests.next_requests(time.monotonic(), self._alive(), self._wanted, everyone))

    def expire(self, now: float) -> None:
        self.judge.expire(now)
        self._send_requests(self.requests.expire(now, self._alive()))
        self._request_waiting(everyone=True)   # also ids waiting on the total bound, not on their announcer

    def peer_gone(self, peer: Peer) -> None:
        self.trickle.peer_gone(peer)
        self.budgets.pop(peer, None)
        pending = self.getdata.pop(peer, None)
        if pending is not None:
            while not pending.empty():
                pending.get_nowait()
            pending.put_nowait(None)   # ends its serving task
        self._send_requests(self.requests.peer_gone(peer, time.monotonic(), self._alive() - {peer}))
        self._request_waiting()

    async def _pace(self, peer: Peer, nbytes: int) -> None:
        state = self.budgets.get(peer)
        if state is None:
            state = self.budgets[peer] = self.objects.new_peer(time.monotonic())
        await self.objects.pace(state, nbytes)

    def try_charge(self, peer: Peer, n: int) -> bool:
        """Take ``n`` from the object budget (the peer's share, then the common pool); False = drop the message.
        The caller counts the drop (node.peer does, for the inventory frames it charges before decoding)."""
        if n <= 0:
            return True
        now = time.monotonic()
        state = self.budgets.get(peer)
        if state is None:
            if peer.close_reason:
                return False
            state = self.budgets[peer] = self.objects.new_peer(now)
        if self.objects.take(state, n, now):
            return True
        self.host.metrics.inc("popchain_budget_drops_total")
        return False

    def charge(self, peer: Peer, n: int) -> bool:
        """``try_charge``, counting a refusal towards the flood offence (every FLOOD_DROPS_PER_OFFENCE drops)."""
        if self.try_charge(peer, n):
            return True
        self._count_drop(peer, "messages over the object budget dropped")
        return False

    def _count_drop(self, peer: Peer, what: str, weight: int = 1) -> None:
        state = self.budgets.get(peer)
        if state is None:
            state = self.budgets[peer] = self.objects.new_peer(time.monotonic())
        before = state.drops
        state.drops += weight
        self.host.metrics.inc("popchain_budget_drops_total")
        if state.drops // FLOOD_DROPS_PER_OFFENCE > before // FLOOD_DROPS_PER_OFFENCE:
            peer.offend(FLOOD, f"{state.drops} {what}")

    def greet(self, peer: Peer) -> None:
        """Tell a new peer about the round objects and pending txs we hold (it fetches what it lacks)."""
        items = [k for k, (_, r) in self.judge.recent.items()
                 if k[0] in (InvKind.ENTRY, InvKind.ANCHOR, InvKind.BEACON) and r + GREET_ROUNDS > self.judge.round_hint]
        for i in range(0, len(items), wire.MAX_INV_ITEMS):
            chunk = items[i:i + wire.MAX_INV_ITEMS]
            for key in chunk:
                peer.known.add(key)
            peer.send(wire.Inv(tuple(chunk)))
        for txid in self.host.mempool.txids():
            key = (InvKind.TX, txid)
            peer.known.add(key)
            self.trickle.add(peer, key)

    def announce(self, kind: InvKind, h: bytes, exclude: Peer | None = None, data: bytes | None = None) -> None:
        """Tell every peer that does not know the object. Transfers go into each peer's trickle queue; a
        validated block (``data``) is pushed whole to up to PUSH_BLOCK_PEERS peers (saving the GETDATA round
        trip per hop, cf. BIP152 high-bandwidth), INV at once to the others; round objects INV at once."""
        key = (kind, h)
        pushed = 0
        frame: bytes | None = None   # encoded once: every peer's queue holds the same bytes
        inv: bytes | None = None
        # the store keeps its tip header in memory (set by the worker before a verdict returns): an attribute read
        tip = self.host.store.tip() if kind == InvKind.BLOCK else None
        height = tip.height if tip is not None and tip.hash == h else None
        # outbound peers (we chose them) get the whole-block pushes first: inbound connections an attacker holds
        # in numbers cannot take the push slots (PROTOCOL §4.3)
        for peer in sorted(self.host.ready_peers(), key=lambda p: p.inbound):
            if peer is exclude or key in peer.known:
                continue
            peer.known.add(key)
            if height is not None:   # our new tip goes to it (whole or by INV): /api/peers shows that height
                peer.best_height = max(peer.best_height, height)
            if kind == InvKind.TX:
                self.trickle.add(peer, key)
            elif data is not None and pushed < PUSH_BLOCK_PEERS and peer.is_writable:
                pushed += 1
                frame = frame or wire.encode(wire.Object(kind, data))
                peer.send_frame(frame)
            else:   # peers without room for a whole block get its id and fetch it when they have
                inv = inv or wire.encode(wire.Inv((key,)))
                peer.send_frame(inv)

    def announce_txs(self, items: Sequence[tuple[bytes, Peer | None]]) -> None:
        """``announce`` for a batch of accepted transfers, (txid, the peer it came from): one pass over the peers,
        each peer's known set filtered and its trickle queue updated once for the whole batch."""
        tx = InvKind.TX
        for peer in self.host.ready_peers():
            fresh = peer.known.add_unknown_ids([h for h, source in items if source is not peer])
            if fresh:
                self.trickle.add_many(peer, [(tx, h) for h in fresh])

    def push_all(self, kind: InvKind, h: bytes, data: bytes, exclude: Peer | None = None) -> None:
        """Push an object whole to every peer that does not know it (opened losers: no store serves them)."""
        key = (kind, h)
        frame: bytes | None = None
        for peer in self.host.ready_peers():
            if peer is not exclude and key not in peer.known:
                peer.known.add(key)
                frame = frame or wire.encode(wire.Object(kind, data))
                peer.send_frame(frame)

    async def run_trickle(self) -> None:
        """The node's announcement task: every TRICKLE_S, one INV (per 1000 ids) per peer of what is new."""
        while True:
            await asyncio.sleep(TRICKLE_S)
            self.flush()

    def flush(self) -> None:
        """One tick's announcements: to each peer at most ANNOUNCE_PER_TICK transfer ids (one INV), oldest first;
        the rest stay queued for the next ticks. A receiver holds at least 1,761 ids announced by one peer (its
        request share plus its waiting share, PROTOCOL §4.3), so a relay that accepted thousands of transfers
        at once hands them over at a pace its peers can hold instead of overflowing their tables."""
        for peer, chunks in self.trickle.take(ANNOUNCE_PER_TICK):
            for chunk in chunks:
                peer.send(wire.Inv(chunk))

    def request(self, peer: Peer, items: Iterable[Key]) -> None:
        """GETDATA on sync's behalf (sync picked the peer and bounds its own requests)."""
        now = time.monotonic()
        keys = list(items)
        for key in keys:
            self.requests.force(peer, key, now)
        self._send_requests({peer: keys} if keys else {})

    def cancel_request(self, key: Key) -> None:
        self.requests.cancel(key)

    # ------------------------------------------------------------ messages

    async def handle(self, peer: Peer, msg: wire.Message) -> None:
        # INV/GETDATA/NOTFOUND were charged to the object budget before they were decoded (node.peer)
        if isinstance(msg, wire.Inv):
            await self._on_inv(peer, msg.items)
        elif isinstance(msg, wire.GetData):
            self._queue_getdata(peer, msg.items)
        elif isinstance(msg, wire.NotFound):
            self.on_not_found(peer, msg.items)
            self._send_requests(self.requests.failed(peer, msg.items, time.monotonic(), self._alive()))
            self._request_waiting()
        elif isinstance(msg, wire.Txs):
            await self._on_txs(peer, msg.txs)
        elif isinstance(msg, wire.Object) and msg.kind == InvKind.TX:
            await self._on_txs(peer, (msg.data,))
        elif isinstance(msg, wire.Object) and msg.kind == InvKind.BLOCK:
            if self.block_queue.empty() and not self.judge.block_lock.locked():
                await self.on_object(peer, msg.kind, msg.data)  # idle: judge at once (one task switch less)
            else:
                # busy: queue it for the block task, so this peer's reader keeps receiving while the engine scores
                await self.block_queue.put((peer, msg.data))
        elif isinstance(msg, wire.Object):
            await self.on_object(peer, msg.kind, msg.data)

    def _on_inv_txs(self, peer: Peer, keys: list[Key], now: float) -> list[Key]:
        """The transfer ids of an INV, in bulk (PROTOCOL §4.5): ids in flight make ``peer`` an alternate source,
        ids we hold, refuse or have queued are only marked known, and the rest — each once — are requested from
        ``peer`` while its share lasts and wait for it beyond. Returns the ids to request now. Only ids that exist
        for us join the peer's known set, as in ``_on_inv``."""
        requests, judge = self.requests, self.judge
        # live views: membership tests without a Python call per id (two INV ids arrive per relayed transfer)
        asked, mempool, tx_rejects = requests.in_flight(), self.host.mempool.ids(), judge.tx_rejects.members()
        recent, rejected, queued = judge.recent.members(), judge.rejected.members(), self.queued_txs
        in_flight: list[Key] = []
        new: dict[Key, None] = {}   # insertion-ordered, each id once (a hostile INV may repeat one)
        known: list[bytes] = []
        for key in keys:
            h = key[1]
            if key in asked:
                in_flight.append(key)
            elif h in mempool or h in queued or h in tx_rejects or key in recent or key in rejected:
                known.append(h)
            else:
                new[key] = None
        if in_flight:
            requests.also_announced(peer, in_flight)
            known += [h for _, h in in_flight]
        wanted = list(new)
        taken = requests.request_many(peer, wanted, now) if wanted else 0
        if taken < len(wanted):   # beyond its request share the ids wait for it to free (node.inventory)
            waiting = requests.wait_many(peer, wanted[taken:])
            del wanted[taken:]
            known += [h for _, h in waiting]
        known += [h for _, h in wanted]
        peer.known.add_ids(known)
        return wanted

    async def _on_inv(self, peer: Peer, items: Sequence[Key]) -> None:
        now = time.monotonic()
        tx = InvKind.TX
        tx_keys = [key for key in items if key[0] is tx]
        wanted: list[Key] = self._on_inv_txs(peer, tx_keys, now) if tx_keys else []
        if len(tx_keys) < len(items):
            await self._on_inv_objects(peer, [key for key in items if key[0] is not tx], wanted, now)
        elif wanted:
            self._send_requests({peer: wanted})

    async def _on_inv_objects(self, peer: Peer, items: Sequence[Key], wanted: list[Key], now: float) -> None:
        """The ids of an INV other than transfers (blocks, round objects, task messages), one by one; sends the
        GETDATA for these and ``wanted``."""
        ask_store: list[Key] = []
        had: list[bytes] = []     # blocks it announced that we hold: they tell us its height (/api/peers)
        # only ids that exist for us (held, wanted, asked for) join the peer's known set: ids dropped at a bound
        # cost nothing to remember, so a flood of made-up ids cannot fill the table
        tx_room = self.requests.room(peer, InvKind.TX)
        for key in items:
            if key in self.requests:
                peer.known.add(key)
                self.requests.announced(peer, key, now)   # kept as an alternate source
                if key[0] == InvKind.BLOCK and not peer.inbound and self._hedge(key, peer):
                    wanted.append(key)
                continue
            if not tx_room and key[0] == InvKind.TX:   # its request share is used up: the id waits for it to free
                if self.judge.known_tx(key[1]) or key[1] in self.queued_txs or self.requests.wait(peer, key):
                    peer.known.add(key)
                continue
            known = self.judge.known_cheap(key)
            if known is None:   # a block: only the store knows; bounded by the peer's block slots first
                if self.requests.room(peer, InvKind.BLOCK) and len(ask_store) < 16:
                    ask_store.append(key)
                continue
            if known and key[0] == InvKind.BLOCK and len(had) < 16:
                had.append(key[1])
            if known or (key[0] == InvKind.TX and key[1] in self.queued_txs):
                peer.known.add(key)
                continue
            if self.requests.announced(peer, key, now):
                peer.known.add(key)
                wanted.append(key)
            elif key[0] == InvKind.TX:   # no room (in flight elsewhere was handled above): it waits
                tx_room = False
                if self.requests.wait(peer, key):
                    peer.known.add(key)
        if ask_store:
            store = self.host.store
            have = await self.host.worker.call(lambda: [store.has_block(h) for _, h in ask_store])
            for key, known in zip(ask_store, have, strict=True):
                if known:
                    peer.known.add(key)
                    self.judge.known_blocks.add(key[1])
                    had.append(key[1])
                elif self.requests.announced(peer, key, time.monotonic()):
                    peer.known.add(key)
                    wanted.append(key)
        if had:
            store = self.host.store
            heights = await self.host.worker.call(lambda: [h.height for h in map(store.get_header, had) if h])
            peer.best_height = max([peer.best_height, *heights])
        self._send_requests({peer: wanted} if wanted else {})

    async def _on_txs(self, peer: Peer, raws: Sequence[bytes]) -> None:
        """Transfers arrived: forget their requests now (so nobody else is asked), queue them for the tx task."""
        tx = InvKind.TX
        txids = [txid_of_encoding(raw) for raw in raws]
        asked = [p is peer for p in self.requests.received_many([(tx, h) for h in txids])]
        self._request_waiting()   # the shares these answers freed go to ids announced meanwhile
        unsolicited = len(asked) - sum(asked)
        items = list(zip(raws, txids, asked, strict=True))
        if unsolicited and not self.charge(peer, unsolicited):
            items = [it for it in items if it[2]]
        share = self.shares.tx_queue_per_peer
        queue, queued, waiting = self.tx_queue, self.queued_txs, self.tx_waiting
        i = 0
        while i < len(items):
            if peer.close_reason:
                return
            # as many as fit in its share and in the queue, at once; then its reader pauses for verdicts
            room = min(share - waiting.get(peer, 0), TX_QUEUE - len(queue), len(items) - i)
            if room <= 0:
                self._tx_ready.set()
                await self._tx_drained.wait()
                if peer.close_reason:
                    return
                continue
            part = items[i:i + room]
            i += room
            queue.extend([(peer, raw, was_asked, txid) for raw, txid, was_asked in part])
            queued.update([txid for _, txid, _ in part])
            waiting[peer] = waiting.get(peer, 0) + room
        self._tx_ready.set()

    async def run_tx_queue(self) -> None:
        """The node's tx task: judges peers' transfers in batches of what has arrived (up to TX_BATCH), in
        arrival order, so a sender's nonce sequence reaches the mempool in order."""
        queue = self.tx_queue
        while True:
            while not queue:
                self._tx_ready.clear()
                await self._tx_ready.wait()
            n = min(TX_BATCH, len(queue))
            batch = [queue.popleft() for _ in range(n)]
            try:
                results = await self.judge.on_tx_batch([(p, d) for p, d, _, _ in batch], [s for _, _, s, _ in batch],
                                                       [h for *_, h in batch])
                now = time.monotonic()
                for (peer, *_), (ok, reason) in zip(batch, results, strict=True):
                    if ok and reason == "accepted":
                        peer.last_tx_at = now   # useful work: node.eviction protects it
            except Exception:  # a bug below us: log it and keep judging (on_object's rule)
                log.exception("internal error judging a batch of %d txs", len(batch))
                self.host.metrics.inc("popchain_internal_errors_total", kind="tx")
            finally:
                self.queued_txs.difference_update([txid for *_, txid in batch])
                waiting = self.tx_waiting
                for peer, *_ in batch:
                    left = waiting.get(peer, 0) - 1
                    if left > 0:
                        waiting[peer] = left
                    else:
                        waiting.pop(peer, None)
                drained, self._tx_drained = self._tx_drained, asyncio.Event()
                drained.set()

    async def run_block_queue(self) -> None:
        """The node's block task: judges peers' blocks one by one, in arrival order."""
        while True:
            peer, data = await self.block_queue.get()
            await self.on_object(peer, InvKind.BLOCK, data)

    def _queue_getdata(self, peer: Peer, items: tuple[Key, ...]) -> None:
        pending = self.getdata.get(peer)
        if pending is None:
            if peer.close_reason:
                return
            pending = self.getdata[peer] = asyncio.Queue(PENDING_GETDATA)
            self.host.spawn(self._serving(peer, pending), f"serve-{peer.key}")
        try:   # kept compact while it waits (kinds, ids): 33 bytes an item instead of two objects
            pending.put_nowait((bytes(k for k, _ in items), b"".join(h for _, h in items)))
        except asyncio.QueueFull:   # it asks faster than it reads what we send: weighs as 10 dropped messages
            self._count_drop(peer, "messages dropped (GETDATA asked faster than read)", weight=10)

    async def _serving(self, peer: Peer, pending: asyncio.Queue[tuple[bytes, bytes] | None]) -> None:
        """One peer's GETDATA answers, in order, while it is connected."""
        while not peer.close_reason:
            compact = await pending.get()
            if compact is None:
                return
            kinds, ids = compact
            await self._serve(peer, [(InvKind(k), ids[32 * i:32 * i + 32]) for i, k in enumerate(kinds)])

    async def _serve(self, peer: Peer, items: Iterable[Key]) -> None:
        """Answer a GETDATA: objects one at a time, each queued only once the peer is within its send share (its
        own reading speed paces what it may ask of us; a peer that stops reading is cut: node.peer.writable),
        blocks read from the store one by one — never the whole request's blocks in memory at once."""
        missing: list[Key] = []
        txs: list[bytes] = []
        served: list[bytes] = []   # blocks sent (the first 16): they tell us its height
        mempool = self.host.mempool
        store = self.host.store
        items = list(items)
        if items and all(kind is InvKind.TX for kind, _ in items):   # transfers only: in bulk
            recent = self.judge.recent
            found = mempool.encodings([h for _, h in items])
            sent: list[bytes] = []
            for (kind, h), data in zip(items, found, strict=True):
                if data is None:
                    item = recent.get((kind, h))
                    data = item[0] if item is not None else None
                if data is None:
                    missing.append((kind, h))
                else:
                    txs.append(data)
                    sent.append(h)
            peer.known.add_ids(sent)
            items = []
        for kind, h in items:
            if peer.close_reason:
                return
            item = self.judge.recent.get((kind, h))
            data = item[0] if item is not None else None
            if data is None and kind == InvKind.TX:
                tx = mempool.get(h)
                data = tx.encode() if tx else None
            if data is None and kind == InvKind.BLOCK:
                await peer.writable()
                data = await self.host.worker.call(store.block_encoding, h)
                if data is not None:
                    await self._pace(peer, len(data))
                    if len(served) < 16:
                        served.append(h)
            if data is None and kind == InvKind.TASK:   # task messages live in the engine's store (§3.13)
                msg = await self.host.worker.call(self.host.engine.task_message, h)
                data = msg.encode() if msg is not None else None
            if data is None:
                missing.append((kind, h))
                continue
            peer.known.add((kind, h))
            if kind == InvKind.TX:
                txs.append(data)
            else:
                await peer.writable()
                peer.send(wire.Object(kind, data))
        for i in range(0, len(txs), wire.MAX_TXS_ITEMS):
            await peer.writable()
            peer.send(wire.Txs(tuple(txs[i:i + wire.MAX_TXS_ITEMS])))
        if missing:
            await peer.writable()   # a NOTFOUND of 1,000 ids is 36 KB: paced like the objects
            peer.send(wire.NotFound(tuple(missing)))
        if served:   # it holds them now: /api/peers shows the height (a peer never announces a block back to us)
            heights = await self.host.worker.call(lambda: [hd.height for hd in map(store.get_header, served) if hd])
            peer.best_height = max([peer.best_height, *heights])
