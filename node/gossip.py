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
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from chain.admission import TxVerdict, admit_txs
from chain.block import Block
from chain.crypto import tagged_hash
from chain.errors import DecodeError, PopError, RuleError
from chain.tx import Transfer
from consensus.messages import AnchorNotice, Beacon, Entry
from node import wire
from node.engine_api import block_outcome, is_stale_code
from node.limits import INVALID_BLOCK, INVALID_OBJECT, STALE_OBJECT, BoundedMap, BoundedSet
from node.peer import Peer
from node.wire import InvKind

log = logging.getLogger("popchain.gossip")

RECENT_OBJECTS = 4096
REQUEST_TIMEOUT_S = 30.0
MAX_GETDATA_PER_MSG = 256
PUSH_BLOCK_PEERS = 3
BLOCK_QUEUE = 8           # blocks received but not judged yet (backpressure on the peers' readers)
TX_QUEUE = 4096           # transfers received but not judged yet
TX_BATCH = 256            # transfers judged per batch (one signature batch on the verification pool)
ORPHAN_EXPIRY_S = 600.0
GREET_ROUNDS = 2          # round objects of the last rounds announced to a new peer
# tx reject codes an honest relay can never produce (others depend on state or pool policy: soft)
TX_VIOLATIONS = frozenset({"bad-tx-sig", "bad-chain-id", "bad-version", "bad-amount", "bad-encoding"})


def object_id(kind: InvKind, data: bytes, decoded: object | None = None) -> bytes:
    """Inventory id: txid for transfers, header hash for blocks, H("popchain/inv", kind, bytes) otherwise."""
    if kind == InvKind.TX and decoded is not None:
        return decoded.txid  # type: ignore[attr-defined]
    if kind == InvKind.BLOCK and decoded is not None:
        return decoded.hash  # type: ignore[attr-defined]
    return tagged_hash("popchain/inv", bytes([int(kind)]), data)


class Arrival(NamedTuple):
    """An object that decoded and is new to us, waiting for its verdict."""
    peer: Peer | None
    kind: InvKind
    data: bytes
    decoded: Any
    key: tuple[InvKind, bytes]
    solicited: bool        # we asked for it (GETDATA): a stale answer is a race, not the peer's fault


class Relay:
    def __init__(self, node) -> None:
        self.node = node
        # objects we accepted, for GETDATA: (kind, id) -> (bytes, round; 0 for transfers)
        self.recent: BoundedMap[tuple[InvKind, bytes], tuple[bytes, int]] = BoundedMap(RECENT_OBJECTS)
        self.inflight: dict[tuple[InvKind, bytes], tuple[Peer, float]] = {}
        self.rejected: BoundedSet[tuple[InvKind, bytes]] = BoundedSet(20_000)
        # blocks the engine parked as orphans (hash -> when); forgotten after ORPHAN_EXPIRY_S so they can be refetched
        self.parked: BoundedMap[bytes, float] = BoundedMap(256)
        self.known_blocks: BoundedSet[bytes] = BoundedSet(10_000)  # saves a worker hop per INV
        self.round_hint = 0   # highest round seen in a round object
        self.block_lock = asyncio.Lock()  # blocks connect one at a time, in arrival order
        self.block_queue: asyncio.Queue[tuple[Peer, bytes]] = asyncio.Queue(BLOCK_QUEUE)
        self.tx_queue: asyncio.Queue[tuple[Peer, bytes]] = asyncio.Queue(TX_QUEUE)

    # ------------------------------------------------------------ bookkeeping

    def remember(self, kind: InvKind, h: bytes, data: bytes, round_: int) -> None:
        self.recent.put((kind, h), (data, round_))
        self.round_hint = max(self.round_hint, round_)

    def expire(self, now: float) -> None:
        for h, since in self.parked.items():
            if now - since > ORPHAN_EXPIRY_S:
                self.parked.pop(h)
        for key, (peer, t) in list(self.inflight.items()):
            if now - t > REQUEST_TIMEOUT_S:
                del self.inflight[key]

    def peer_gone(self, peer: Peer) -> None:
        for key, (p, _) in list(self.inflight.items()):
            if p is peer:
                del self.inflight[key]

    def greet(self, peer: Peer) -> None:
        """Tell a new peer about the round objects and pending txs we hold (it fetches what it lacks)."""
        items = [k for k, (_, r) in self.recent.items()
                 if k[0] in (InvKind.ENTRY, InvKind.ANCHOR, InvKind.BEACON) and r + GREET_ROUNDS > self.round_hint]
        items += [(InvKind.TX, txid) for txid in self.node.mempool.txids()]
        for i in range(0, len(items), wire.MAX_INV_ITEMS):
            chunk = items[i:i + wire.MAX_INV_ITEMS]
            for key in chunk:
                peer.known.add(key)
            peer.send(wire.Inv(tuple(chunk)))

    def announce(self, kind: InvKind, h: bytes, exclude: Peer | None = None, data: bytes | None = None) -> None:
        """INV to every peer that does not know the object; a validated block (``data``) is pushed whole to up
        to PUSH_BLOCK_PEERS of them instead, saving the GETDATA round trip per hop (cf. BIP152 high-bandwidth)."""
        key = (kind, h)
        pushed = 0
        for peer in self.node.ready_peers():
            if peer is not exclude and key not in peer.known:
                peer.known.add(key)
                if data is not None and pushed < PUSH_BLOCK_PEERS:
                    pushed += 1
                    peer.send(wire.Object(kind, data))
                else:
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
            if h in self.parked or h in self.known_blocks:
                return True
            return await self.node.worker.call(self.node.store.has_block, h)
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
        elif isinstance(msg, wire.Object) and msg.kind == InvKind.BLOCK:
            if self.block_queue.empty() and not self.block_lock.locked():
                await self.on_object(peer, msg.kind, msg.data)  # idle: judge at once (one task switch less)
            else:
                # busy: queue it for the block task, so this peer's reader keeps receiving while the engine scores
                await self.block_queue.put((peer, msg.data))
        elif isinstance(msg, wire.Object) and msg.kind == InvKind.TX:
            # judged in batches by the tx task: this peer's reader moves on at once (backpressure when full)
            await self.tx_queue.put((peer, msg.data))
        elif isinstance(msg, wire.Object):
            await self.on_object(peer, msg.kind, msg.data)

    async def run_tx_queue(self) -> None:
        """The node's tx task: judges peers' transfers in batches of what has arrived (up to TX_BATCH), in
        arrival order, so a sender's nonce sequence reaches the mempool in order."""
        while True:
            batch = [await self.tx_queue.get()]
            while len(batch) < TX_BATCH and not self.tx_queue.empty():
                batch.append(self.tx_queue.get_nowait())
            try:
                await self.on_tx_batch(batch)
            except Exception:  # a bug below us: log it and keep judging (on_object's rule)
                log.exception("internal error judging a batch of %d txs", len(batch))
                self.node.metrics.inc("popchain_internal_errors_total", kind="tx")

    async def run_block_queue(self) -> None:
        """The node's block task: judges peers' blocks one by one, in arrival order."""
        while True:
            peer, data = await self.block_queue.get()
            await self.on_object(peer, InvKind.BLOCK, data)

    async def _serve(self, peer: Peer, items: Iterable[tuple[InvKind, bytes]]) -> None:
        missing = []
        items = list(items)
        wanted_blocks = [h for kind, h in items if kind == InvKind.BLOCK]
        blocks = await self.node.worker.call(_encoded_blocks, self.node.store, wanted_blocks) if wanted_blocks else {}
        for kind, h in items:
            item = self.recent.get((kind, h))
            data = item[0] if item is not None else None
            if data is None and kind == InvKind.TX:
                tx = self.node.mempool.get(h)
                data = tx.encode() if tx else None
            if data is None and kind == InvKind.BLOCK:
                data = blocks.get(h)
            if data is None:
                missing.append((kind, h))
                continue
            peer.known.add((kind, h))
            peer.send(wire.Object(kind, data))
        if missing:
            peer.send(wire.NotFound(tuple(missing)))

    async def on_object(self, peer: Peer | None, kind: InvKind, data: bytes) -> tuple[bool, str]:
        """Judge one object from ``peer`` (None = our own API). Returns (accepted, reason). Never raises PopError."""
        if kind == InvKind.TX:
            [result] = await self.on_tx_batch([(peer, data)])
            return result
        arrival = self._arrive(peer, kind, data)
        if not isinstance(arrival, Arrival):
            return arrival
        try:
            ok, reason = await self._judge(kind, arrival.decoded, data, peer)
        except RuleError as exc:
            ok, reason, detail = False, exc.code, exc.message
        except PopError as exc:
            ok, reason, detail = False, "invalid", str(exc)
        except Exception:  # a bug below us (engine, ml): log it, keep the peer and the node running
            log.exception("internal error judging %s %s", kind.name.lower(), arrival.key[1].hex()[:16])
            self.node.metrics.inc("popchain_internal_errors_total", kind=kind.name.lower())
            return False, "internal-error"
        else:
            detail = reason
        return await self._conclude(arrival, ok, reason, detail)

    async def on_tx_batch(self, batch: Sequence[tuple[Peer | None, bytes]]) -> list[tuple[bool, str]]:
        """``on_object`` for many transfers at once: the same verdicts, with the signatures of the whole batch
        checked in one call on the verification pool (chain.admission) instead of one executor hop per tx."""
        node = self.node
        results: list[tuple[bool, str] | None] = [None] * len(batch)
        fresh: list[tuple[int, Arrival]] = []
        in_batch: set[bytes] = set()
        for i, (peer, data) in enumerate(batch):
            arrival = self._arrive(peer, InvKind.TX, data)
            if not isinstance(arrival, Arrival):
                results[i] = arrival
            elif arrival.decoded.txid in node.mempool or arrival.decoded.txid in in_batch:
                results[i] = (True, "duplicate")
            else:
                in_batch.add(arrival.decoded.txid)
                fresh.append((i, arrival))
        if fresh:
            params = node.genesis.ledger_params
            txs = [a.decoded for _, a in fresh]

            def admit() -> list[TxVerdict]:
                return admit_txs(txs, params, node.store.tip_account_reader(), check_state=False)
            verdicts = await asyncio.get_running_loop().run_in_executor(None, admit)
            now = time.time()
            for (i, arrival), verdict in zip(fresh, verdicts, strict=True):
                error = verdict.error
                if error is None:
                    assert verdict.tx is not None and verdict.account is not None
                    try:
                        evicted = node.mempool.add(verdict.tx, verdict.account, now)
                    except PopError as exc:
                        error = exc
                    else:
                        if evicted:
                            node.metrics.inc("popchain_mempool_evicted_total", len(evicted))
                if error is None:
                    results[i] = await self._conclude(arrival, True, "accepted", "accepted")
                elif isinstance(error, RuleError):
                    results[i] = await self._conclude(arrival, False, error.code, error.message)
                else:
                    results[i] = await self._conclude(arrival, False, "invalid", str(error))
        return [r if r is not None else (False, "internal-error") for r in results]

    def _arrive(self, peer: Peer | None, kind: InvKind, data: bytes) -> Arrival | tuple[bool, str]:
        """Decode and bookkeeping before judging: the Arrival to judge, or the final answer when there is
        nothing to judge (undecodable, already accepted, already rejected)."""
        try:
            decoded = decode_object(kind, data)
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
        if key in self.recent:
            return True, "duplicate"
        if key in self.rejected:
            if peer is not None:
                peer.offend(STALE_OBJECT, f"{kind.name.lower()} already rejected")
            return False, "already-rejected"
        self.node.metrics.inc("popchain_objects_received_total", kind=kind.name.lower())
        return Arrival(peer, kind, data, decoded, key, solicited is not None)

    async def _conclude(self, arrival: Arrival, ok: bool, reason: str, detail: str) -> tuple[bool, str]:
        """After the verdict: relay what was accepted; for a rejection, metrics and the sender's penalty."""
        peer, kind, decoded, (_, h) = arrival.peer, arrival.kind, arrival.decoded, arrival.key
        if ok and kind == InvKind.BLOCK and peer is not None:  # it holds this block: /api/peers shows the height
            peer.best_height = max(peer.best_height, decoded.header.height)
        if ok:
            if reason != "duplicate":
                if kind != InvKind.BLOCK:
                    self.remember(kind, h, arrival.data, getattr(decoded, "round", 0))
                self.announce(kind, h, exclude=peer)
            return True, reason
        if reason in ("orphan", "duplicate"):
            if reason == "orphan" and peer is not None:
                self.parked.put(decoded.hash, time.monotonic())
                if not self.node.sync.on_orphan(peer, decoded.header.prev_hash):
                    await self.node.sync.ask_headers(peer)
            return reason == "duplicate", reason
        self.node.metrics.inc("popchain_objects_rejected_total", kind=kind.name.lower(), reason=reason)
        if kind != InvKind.TX and not is_stale_code(reason):
            self.rejected.add(arrival.key)  # stale ones may become acceptable elsewhere/later: let them be refetched
        if peer is not None:
            stale = is_stale_code(reason) or (kind == InvKind.TX and reason not in TX_VIOLATIONS)
            if kind == InvKind.BLOCK and not stale:
                peer.offend(INVALID_BLOCK, f"block {h.hex()[:16]}: {detail}")
            elif not stale:
                peer.offend(INVALID_OBJECT, f"{kind.name.lower()} {h.hex()[:16]}: {detail}")
            elif not arrival.solicited:
                # stale and pushed at us unasked; what we asked for being stale is a race, not the peer's fault
                peer.offend(STALE_OBJECT, f"{kind.name.lower()} {h.hex()[:16]}: {detail}")
        log.info("rejected %s %s: %s", kind.name.lower(), h.hex()[:16], detail)
        return False, reason

    async def _judge(self, kind: InvKind, obj, data: bytes, peer: Peer | None) -> tuple[bool, str]:
        node = self.node
        if kind == InvKind.TX:
            raise AssertionError("transfers are judged by on_tx_batch")
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
                    node.metrics.inc("popchain_equivocations_total")
                    log.error("EQUIVOCATION: second beacon for round %d refused: %s", obj.round, exc.message)
                raise
            await node.after_round_event()
            return True, "accepted" if new else "duplicate"
        return await self._judge_block(obj, data, peer)

    async def _judge_block(self, block: Block, data: bytes, peer: Peer | None) -> tuple[bool, str]:
        node = self.node
        async with self.block_lock:
            old_tip = node.tip_cache[2]
            started = time.perf_counter()
            verdict, tip = await node.worker.call(_add_block, node.engine, block)
            outcome, code, detail = block_outcome(verdict)
            node.metrics.inc("popchain_block_validation_seconds_total", time.perf_counter() - started)
            node.metrics.observe("popchain_block_validation_duration_seconds", time.perf_counter() - started)
            if getattr(verdict, "scored", None) is not None:  # its model was scored against the champion
                node.metrics.observe("popchain_model_scoring_duration_seconds", time.perf_counter() - started)
            if outcome == "orphan":
                return False, "orphan"
            if outcome == "known":
                self.known_blocks.add(block.hash)
                return True, "duplicate"
            if outcome in ("rejected", "stale"):
                raise RuleError(code, detail)
            self.known_blocks.add(block.hash)
            # relay first: validity is settled, peers should not wait for our bookkeeping
            self.announce(InvKind.BLOCK, block.hash, exclude=peer, data=data)
            node.metrics.observe("popchain_relay_duration_seconds", time.perf_counter() - started, kind="block")
            node.metrics.inc("popchain_blocks_accepted_total")
            for h in getattr(verdict, "connected", ()):
                self.parked.pop(h)
                self.known_blocks.add(h)
                node.sync.block_arrived(h)
                self.announce(InvKind.BLOCK, h)
            await node.after_tip_change(old_tip, tip)
            node.sync.block_arrived(block.hash)
            log.info("block %d round %d %s accepted (%s)", block.header.height, block.header.round,
                     block.hash.hex()[:16], outcome)
        return True, outcome


def _encoded_blocks(store, hashes: list[bytes]) -> dict[bytes, bytes]:
    out = {}
    for h in hashes:
        block = store.get_block(h)
        if block is not None:
            out[h] = block.encode()
    return out


def _add_block(engine, block: Block):
    """On the worker thread: the verdict and the tip after it, in one hop."""
    verdict = engine.add_block(block)
    return verdict, engine.tip()


def decode_object(kind: InvKind, data: bytes):
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
