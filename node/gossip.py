"""Gossip *(policy)*: announce by hash (INV), fetch (GETDATA), hand what arrives to the judge, relay what it accepted.

Transfers are announced in trickled batches (node/inventory.py: one INV of all new ids per peer every
TRICKLE_S) and a GETDATA for transfers is answered with TXS frames of up to 1000 transfers, so a node relaying
at its full admission rate sends each peer tens of frames per second, not thousands. Blocks and round objects
are announced at once (a handful per round). Per-peer object budget (ids in INV/GETDATA/NOTFOUND, transfers
pushed unasked): OBJ_RATE per second, burst OBJ_BURST; what we asked a peer for is never charged. Over the
budget a message is dropped, and every FLOOD_DROPS_PER_OFFENCE drops score a flood offence (node.peer).
Verdicts and penalties: node/judge.py.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from chain.tx import txid_of_encoding
from node import wire
from node.inventory import TRICKLE_S, RequestTracker, Trickle
from node.judge import Judge, JudgeHost, Key, decode_object, object_id
from node.limits import FLOOD, TokenBucket
from node.peer import Peer
from node.wire import InvKind

__all__ = ["Relay", "RelayHost", "decode_object", "object_id"]

log = logging.getLogger("popchain.gossip")

PUSH_BLOCK_PEERS = 3
BLOCK_QUEUE = 8           # blocks received but not judged yet (backpressure on the peers' readers)
TX_QUEUE = 8192           # transfers received but not judged yet
TX_BATCH = 1024           # transfers judged per batch (one signature batch on the verification pool)
GREET_ROUNDS = 2          # round objects of the last rounds announced to a new peer
# Object budget per peer. An honest node relaying at 16k tx/s (chain.admission's in-process rate) sends a peer
# at most 16k announced ids/s plus 16k requested ids/s: 32k/s < OBJ_RATE; the burst covers a full mempool greet.
OBJ_RATE, OBJ_BURST = 50_000.0, 100_000.0
FLOOD_DROPS_PER_OFFENCE = 100


class RelayHost(JudgeHost, Protocol):
    """What gossip needs from the node, on top of what judging needs."""

    def ready_peers(self) -> list[Peer]: ...


class Relay:
    def __init__(self, host: RelayHost) -> None:
        self.host = host
        self.requests: RequestTracker[Peer] = RequestTracker()
        self.trickle: Trickle[Peer] = Trickle()
        self.judge = Judge(host, self.announce, self._received, self.push_all)
        self.budgets: dict[Peer, TokenBucket] = {}
        self.budget_drops: dict[Peer, int] = {}
        self.block_queue: asyncio.Queue[tuple[Peer, bytes]] = asyncio.Queue(BLOCK_QUEUE)
        self.tx_queue: asyncio.Queue[tuple[Peer, bytes, bool, bytes]] = asyncio.Queue(TX_QUEUE)
        self.queued_txs: set[bytes] = set()   # txids in tx_queue (bounded by it): not requested again meanwhile

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
        if result[0] and peer is not None and kind in (InvKind.ANCHOR, InvKind.BEACON):
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
        return self.requests.received(key) is peer and peer is not None

    def _send_requests(self, plan: dict[Peer, list[Key]]) -> None:
        for peer, keys in plan.items():
            for i in range(0, len(keys), wire.MAX_INV_ITEMS):
                peer.send(wire.GetData(tuple(keys[i:i + wire.MAX_INV_ITEMS])))

    def expire(self, now: float) -> None:
        self.judge.expire(now)
        self._send_requests(self.requests.expire(now, self._alive()))

    def peer_gone(self, peer: Peer) -> None:
        self.trickle.peer_gone(peer)
        self.budgets.pop(peer, None)
        self.budget_drops.pop(peer, None)
        self._send_requests(self.requests.peer_gone(peer, time.monotonic(), self._alive() - {peer}))

    def charge(self, peer: Peer, n: int) -> bool:
        """Take ``n`` from the peer's object budget; False = drop the message (a flood offence every 100 drops)."""
        if n <= 0:
            return True
        now = time.monotonic()
        bucket = self.budgets.get(peer)
        if bucket is None:
            bucket = self.budgets[peer] = TokenBucket(OBJ_RATE, OBJ_BURST, now)
        if bucket.take(now, n):
            return True
        drops = self.budget_drops.get(peer, 0) + 1
        self.budget_drops[peer] = drops
        self.host.metrics.inc("popchain_budget_drops_total")
        if drops % FLOOD_DROPS_PER_OFFENCE == 0:
            peer.offend(FLOOD, f"{drops} messages over the object budget dropped")
        return False

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
        # the store keeps its tip header in memory (set by the worker before a verdict returns): an attribute read
        tip = self.host.store.tip() if kind == InvKind.BLOCK else None
        height = tip.height if tip is not None and tip.hash == h else None
        for peer in self.host.ready_peers():
            if peer is exclude or key in peer.known:
                continue
            peer.known.add(key)
            if height is not None:   # our new tip goes to it (whole or by INV): /api/peers shows that height
                peer.best_height = max(peer.best_height, height)
            if kind == InvKind.TX:
                self.trickle.add(peer, key)
            elif data is not None and pushed < PUSH_BLOCK_PEERS:
                pushed += 1
                peer.send(wire.Object(kind, data))
            else:
                peer.send(wire.Inv((key,)))

    def push_all(self, kind: InvKind, h: bytes, data: bytes, exclude: Peer | None = None) -> None:
        """Push an object whole to every peer that does not know it (opened losers: no store serves them)."""
        key = (kind, h)
        for peer in self.host.ready_peers():
            if peer is not exclude and key not in peer.known:
                peer.known.add(key)
                peer.send(wire.Object(kind, data))

    async def run_trickle(self) -> None:
        """The node's announcement task: every TRICKLE_S, one INV (per 1000 ids) per peer of what is new."""
        while True:
            await asyncio.sleep(TRICKLE_S)
            self.flush()

    def flush(self) -> None:
        for peer, chunks in self.trickle.take():
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
        if isinstance(msg, wire.Inv):
            if self.charge(peer, len(msg.items)):
                await self._on_inv(peer, msg.items)
        elif isinstance(msg, wire.GetData):
            if self.charge(peer, len(msg.items)):
                await peer.writable()   # its own reading speed paces what it may ask of us
                await self._serve(peer, msg.items)
        elif isinstance(msg, wire.NotFound):
            if self.charge(peer, len(msg.items)):
                self._send_requests(self.requests.failed(peer, msg.items, time.monotonic(), self._alive()))
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

    async def _on_inv(self, peer: Peer, items: Sequence[Key]) -> None:
        now = time.monotonic()
        wanted: list[Key] = []
        ask_store: list[Key] = []
        had: list[bytes] = []     # blocks it announced that we hold: they tell us its height (/api/peers)
        for key in items:
            peer.known.add(key)
            if key in self.requests:
                self.requests.announced(peer, key, now)   # kept as an alternate source
                continue
            known = self.judge.known_cheap(key)
            if known is None:   # a block: only the store knows; bounded by the peer's block slots first
                if self.requests.room(peer, InvKind.BLOCK) and len(ask_store) < 16:
                    ask_store.append(key)
                continue
            if known and key[0] == InvKind.BLOCK and len(had) < 16:
                had.append(key[1])
            if known or (key[0] == InvKind.TX and key[1] in self.queued_txs):
                continue
            if self.requests.announced(peer, key, now):
                wanted.append(key)
        if ask_store:
            store = self.host.store
            have = await self.host.worker.call(lambda: [store.has_block(h) for _, h in ask_store])
            for key, known in zip(ask_store, have):
                if known:
                    self.judge.known_blocks.add(key[1])
                    had.append(key[1])
                elif self.requests.announced(peer, key, time.monotonic()):
                    wanted.append(key)
        if had:
            store = self.host.store
            heights = await self.host.worker.call(lambda: [h.height for h in map(store.get_header, had) if h])
            peer.best_height = max([peer.best_height, *heights])
        self._send_requests({peer: wanted} if wanted else {})

    async def _on_txs(self, peer: Peer, raws: Sequence[bytes]) -> None:
        """Transfers arrived: forget their requests now (so nobody else is asked), queue them for the tx task."""
        unsolicited = 0
        items = []
        for raw in raws:
            txid = txid_of_encoding(raw)
            asked = self.requests.received((InvKind.TX, txid)) is peer
            unsolicited += not asked
            items.append((raw, txid, asked))
        if unsolicited and not self.charge(peer, unsolicited):
            items = [it for it in items if it[2]]
        for raw, txid, asked in items:
            self.queued_txs.add(txid)
            await self.tx_queue.put((peer, raw, asked, txid))

    async def run_tx_queue(self) -> None:
        """The node's tx task: judges peers' transfers in batches of what has arrived (up to TX_BATCH), in
        arrival order, so a sender's nonce sequence reaches the mempool in order."""
        while True:
            batch = [await self.tx_queue.get()]
            while len(batch) < TX_BATCH and not self.tx_queue.empty():
                batch.append(self.tx_queue.get_nowait())
            try:
                await self.judge.on_tx_batch([(p, d) for p, d, _, _ in batch], [s for _, _, s, _ in batch])
            except Exception:  # a bug below us: log it and keep judging (on_object's rule)
                log.exception("internal error judging a batch of %d txs", len(batch))
                self.host.metrics.inc("popchain_internal_errors_total", kind="tx")
            finally:
                for *_, txid in batch:
                    self.queued_txs.discard(txid)

    async def run_block_queue(self) -> None:
        """The node's block task: judges peers' blocks one by one, in arrival order."""
        while True:
            peer, data = await self.block_queue.get()
            await self.on_object(peer, InvKind.BLOCK, data)

    async def _serve(self, peer: Peer, items: Iterable[Key]) -> None:
        missing: list[Key] = []
        txs: list[bytes] = []
        items = list(items)
        wanted_blocks = [h for kind, h in items if kind == InvKind.BLOCK]
        blocks = await self.host.worker.call(_encoded_blocks, self.host.store, wanted_blocks) if wanted_blocks else {}
        mempool = self.host.mempool
        for kind, h in items:
            item = self.judge.recent.get((kind, h))
            data = item[0] if item is not None else None
            if data is None and kind == InvKind.TX:
                tx = mempool.get(h)
                data = tx.encode() if tx else None
            if data is None and kind == InvKind.BLOCK:
                data = blocks.get(h)
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
                peer.send(wire.Object(kind, data))
        for i in range(0, len(txs), wire.MAX_TXS_ITEMS):
            peer.send(wire.Txs(tuple(txs[i:i + wire.MAX_TXS_ITEMS])))
        if missing:
            peer.send(wire.NotFound(tuple(missing)))
        sent = [h for h in wanted_blocks if (InvKind.BLOCK, h) not in missing][:16]
        if sent:   # it holds them now: /api/peers shows the height (a peer never announces a block back to us)
            store = self.host.store
            heights = await self.host.worker.call(lambda: [hd.height for hd in map(store.get_header, sent) if hd])
            peer.best_height = max([peer.best_height, *heights])


def _encoded_blocks(store: Any, hashes: list[bytes]) -> dict[bytes, bytes]:
    out = {}
    for h in hashes:
        block = store.get_block(h)
        if block is not None:
            out[h] = block.encode()
    return out

