"""Gossip *(policy)*: announce by hash (INV), fetch (GETDATA), validate through the engine, relay what validated.

Per-peer known-inventory sets mean nothing is announced to a peer that already has it. Objects are decoded with
their own decoders (chain/, consensus/) and judged by consensus.engine.Engine on the worker thread: node/ holds
no rule of its own. A decode failure or an invalid block is a protocol violation (disconnect + discourage); a
stale object (a race, e.g. an entry for a round that just closed) costs one soft point. Orphan blocks (parent
unknown) are held in a bounded, expiring pool and their ancestors fetched by headers.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from chain.address import address_of
from chain.block import Block
from chain.crypto import tagged_hash
from chain.errors import DecodeError, PopError, RuleError
from chain.state import check_tx_stateless
from chain.tx import Transfer
from consensus.messages import AnchorNotice, Beacon, Entry
from node import wire
from node.engine_api import block_outcome, is_stale_code
from node.limits import INVALID_BLOCK, INVALID_OBJECT, STALE_OBJECT, UNSOLICITED, BoundedMap, BoundedSet
from node.peer import Peer
from node.wire import InvKind

log = logging.getLogger("popchain.gossip")

RECENT_OBJECTS = 4096
REQUEST_TIMEOUT_S = 30.0
MAX_GETDATA_PER_MSG = 256


def object_id(kind: InvKind, data: bytes, decoded: object | None = None) -> bytes:
    """Inventory id: txid for transfers, header hash for blocks, H("popchain/inv", kind, bytes) otherwise."""
    if kind == InvKind.TX and decoded is not None:
        return decoded.txid  # type: ignore[attr-defined]
    if kind == InvKind.BLOCK and decoded is not None:
        return decoded.hash  # type: ignore[attr-defined]
    return tagged_hash("popchain/inv", bytes([int(kind)]), data)


class Relay:
    def __init__(self, node) -> None:
        self.node = node
        self.recent: BoundedMap[tuple[InvKind, bytes], bytes] = BoundedMap(RECENT_OBJECTS)
        self.inflight: dict[tuple[InvKind, bytes], tuple[Peer, float]] = {}
        self.rejected: BoundedSet[tuple[InvKind, bytes]] = BoundedSet(20_000)
        self.parked: BoundedSet[bytes] = BoundedSet(256)   # blocks the engine holds as orphans
        self.block_lock = asyncio.Lock()  # blocks connect one at a time, in arrival order

    # ------------------------------------------------------------ bookkeeping

    def expire(self, now: float) -> None:
        for key, (peer, t) in list(self.inflight.items()):
            if now - t > REQUEST_TIMEOUT_S:
                del self.inflight[key]

    def peer_gone(self, peer: Peer) -> None:
        for key, (p, _) in list(self.inflight.items()):
            if p is peer:
                del self.inflight[key]

    def greet(self, peer: Peer) -> None:
        """Tell a new peer about the round objects and pending txs we hold (it fetches what it lacks)."""
        items = [k for k, _ in self.recent.items() if k[0] != InvKind.BLOCK]
        items += [(InvKind.TX, txid) for txid in self.node.mempool.txids()]
        for i in range(0, len(items), wire.MAX_INV_ITEMS):
            chunk = items[i:i + wire.MAX_INV_ITEMS]
            for key in chunk:
                peer.known.add(key)
            peer.send(wire.Inv(tuple(chunk)))

    def announce(self, kind: InvKind, h: bytes, exclude: Peer | None = None) -> None:
        key = (kind, h)
        for peer in self.node.ready_peers():
            if peer is not exclude and key not in peer.known:
                peer.known.add(key)
                peer.send(wire.Inv((key,)))

    def request(self, peer: Peer, items: Iterable[tuple[InvKind, bytes]]) -> None:
        now = time.monotonic()
        wanted = []
        for key in items:
            if key in self.inflight:
                continue
            self.inflight[key] = (peer, now)
            wanted.append(key)
        for i in range(0, len(wanted), MAX_GETDATA_PER_MSG):
            peer.send(wire.GetData(tuple(wanted[i:i + MAX_GETDATA_PER_MSG])))

    async def have(self, kind: InvKind, h: bytes) -> bool:
        key = (kind, h)
        if key in self.recent or key in self.rejected:
            return True
        if kind == InvKind.TX:
            return h in self.node.mempool
        if kind == InvKind.BLOCK:
            return h in self.parked or await self.node.worker.call(self.node.store.has_block, h)
        return False

    # ------------------------------------------------------------ messages

    async def handle(self, peer: Peer, msg: wire.Message) -> None:
        if isinstance(msg, wire.Inv):
            wanted = []
            for key in msg.items:
                peer.known.add(key)
                if key not in self.inflight and not await self.have(*key):
                    wanted.append(key)
            if wanted:
                self.request(peer, wanted)
        elif isinstance(msg, wire.GetData):
            await self._serve(peer, msg.items)
        elif isinstance(msg, wire.NotFound):
            for key in msg.items:
                if self.inflight.get(key, (None,))[0] is peer:
                    del self.inflight[key]
        elif isinstance(msg, wire.Object):
            await self.on_object(peer, msg.kind, msg.data)

    async def _serve(self, peer: Peer, items: Iterable[tuple[InvKind, bytes]]) -> None:
        missing = []
        for kind, h in items:
            data = self.recent.get((kind, h))
            if data is None and kind == InvKind.TX:
                tx = self.node.mempool.get(h)
                data = tx.encode() if tx else None
            if data is None and kind == InvKind.BLOCK:
                block = await self.node.worker.call(self.node.store.get_block, h)
                data = block.encode() if block is not None else None
            if data is None:
                missing.append((kind, h))
                continue
            peer.known.add((kind, h))
            peer.send(wire.Object(kind, data))
        if missing:
            peer.send(wire.NotFound(tuple(missing)))

    async def on_object(self, peer: Peer | None, kind: InvKind, data: bytes) -> tuple[bool, str]:
        """Judge one object from ``peer`` (None = our own API). Returns (accepted, reason). Never raises PopError."""
        try:
            decoded = _decode(kind, data)
        except (DecodeError, ValueError) as exc:
            if peer is not None:
                peer.offend(INVALID_OBJECT, f"undecodable {kind.name.lower()}: {exc}")
            self.node.metrics.inc("popchain_objects_rejected_total", kind=kind.name.lower(), reason="bad-encoding")
            return False, f"bad-encoding: {exc}"
        h = object_id(kind, data, decoded)
        key = (kind, h)
        solicited = self.inflight.pop(key, None)
        if peer is not None:
            peer.known.add(key)
            if solicited is None and kind == InvKind.BLOCK and peer.score < 50:
                pass  # blocks may be pushed; policy could tighten this later
        if key in self.recent:
            return True, "duplicate"
        if key in self.rejected:
            if peer is not None:
                peer.offend(STALE_OBJECT, f"{kind.name.lower()} already rejected")
            return False, "already-rejected"
        self.node.metrics.inc("popchain_objects_received_total", kind=kind.name.lower())
        try:
            ok, reason = await self._judge(kind, decoded, data)
        except RuleError as exc:
            ok, reason = False, exc.code
            detail = exc.message
        except PopError as exc:
            ok, reason, detail = False, "invalid", str(exc)
        else:
            detail = reason
        if ok:
            if reason != "duplicate":
                self.recent.put(key, data) if kind != InvKind.BLOCK else None
                self.announce(kind, h, exclude=peer)
            return True, reason
        if reason in ("orphan", "duplicate"):
            if reason == "orphan" and peer is not None:
                self.parked.add(decoded.hash)
                if not self.node.sync.on_orphan(peer, decoded.header.prev_hash):
                    await self.node.sync.ask_headers(peer)
            return reason == "duplicate", reason
        self.node.metrics.inc("popchain_objects_rejected_total", kind=kind.name.lower(), reason=reason)
        if kind != InvKind.TX:
            self.rejected.add(key)
        if peer is not None:
            if kind == InvKind.BLOCK and not is_stale_code(reason):
                peer.offend(INVALID_BLOCK, f"block {h.hex()[:16]}: {detail}")
            elif kind in (InvKind.ENTRY, InvKind.ANCHOR, InvKind.BEACON) and not is_stale_code(reason):
                peer.offend(INVALID_OBJECT, f"{kind.name.lower()} {h.hex()[:16]}: {detail}")
            else:
                peer.offend(STALE_OBJECT, f"{kind.name.lower()} {h.hex()[:16]}: {detail}")
        log.info("rejected %s %s: %s", kind.name.lower(), h.hex()[:16], detail)
        return False, reason

    async def _judge(self, kind: InvKind, obj, data: bytes) -> tuple[bool, str]:
        node = self.node
        if kind == InvKind.TX:
            return await self._judge_tx(obj)
        if kind == InvKind.ENTRY:
            new = await node.worker.call(node.engine.add_entry, obj)
            if new and node.keyholder is not None:
                await node.keyholder.on_entry(obj)
            return True, "accepted" if new else "duplicate"
        if kind == InvKind.ANCHOR:
            new = await node.worker.call(node.engine.add_anchor_notice, obj)
            await node.after_round_event()
            return True, "accepted" if new else "duplicate"
        if kind == InvKind.BEACON:
            try:
                new = await node.worker.call(node.engine.add_beacon, obj)
            except RuleError as exc:
                if exc.code == "equivocation":
                    node.equivocations.append(f"round {obj.round}: {exc.message}")
                    node.metrics.inc("popchain_equivocations_total")
                    log.error("EQUIVOCATION: second beacon for round %d refused: %s", obj.round, exc.message)
                raise
            await node.after_round_event()
            return True, "accepted" if new else "duplicate"
        return await self._judge_block(obj, data)

    async def _judge_tx(self, tx: Transfer) -> tuple[bool, str]:
        node = self.node
        if tx.txid in node.mempool:
            return True, "duplicate"
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, check_tx_stateless, tx, node.genesis.ledger_params)
        account = await node.worker.call(node.store.get_account, address_of(tx.sender))
        evicted = node.mempool.add(tx, account, time.time())
        if evicted:
            node.metrics.inc("popchain_mempool_evicted_total", len(evicted))
        return True, "accepted"

    async def _judge_block(self, block: Block, data: bytes) -> tuple[bool, str]:
        node = self.node
        async with self.block_lock:
            if await node.worker.call(node.store.has_block, block.hash):
                return True, "duplicate"
            old_tip = node.tip_cache[2]
            started = time.perf_counter()
            try:
                verdict = await node.worker.call(node.engine.add_block, block)
            except RuleError as exc:
                if exc.code == "orphan":
                    return False, "orphan"
                raise
            outcome, code, detail = block_outcome(verdict)
            node.metrics.inc("popchain_block_validation_seconds_total", time.perf_counter() - started)
            if outcome == "orphan":
                return False, "orphan"
            if outcome == "known":
                return True, "duplicate"
            if outcome in ("rejected", "stale"):
                raise RuleError(code, detail)
            for h in getattr(verdict, "connected", ()):
                self.parked.discard(h)
                node.sync.block_arrived(h)
                self.announce(InvKind.BLOCK, h)
            node.metrics.inc("popchain_blocks_accepted_total")
            await node.after_tip_change(old_tip)
            node.sync.block_arrived(block.hash)
            log.info("block %d round %d %s accepted (%s)", block.header.height, block.header.round,
                     block.hash.hex()[:16], outcome)
        return True, outcome


def _decode(kind: InvKind, data: bytes):
    match kind:
        case InvKind.TX:
            return Transfer.decode(data)
        case InvKind.ENTRY:
            return Entry.decode(data)
        case InvKind.ANCHOR:
            return AnchorNotice.decode(data)
        case InvKind.BEACON:
            return Beacon.decode(data)
        case InvKind.BLOCK:
            return Block.decode(data)
    raise DecodeError(f"unknown kind {kind}")
