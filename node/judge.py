"""Judging *(policy)*: decode what arrived, get the engine's verdict, conclude (relay, remember, penalise).

Objects are decoded with their own decoders (chain/, consensus/) and judged by consensus.engine.Engine on the
worker thread (transfers by chain.admission in batches, signatures on the verification pool): node/ holds no
rule of its own. A decode failure or an invalid object is a protocol violation (disconnect + discourage); a
stale object costs one soft point only if it was pushed at us unasked — what we asked for is never penalised
(a race, not the sender's fault), and a stale *block* never (honest nodes push every block they accept). A
transfer refused for a nonce gap waits in a bounded orphan pool until its predecessor is admitted (relay from
several peers does not keep a sender's order). Orphan blocks (parent unknown) are parked by the engine and
their ancestry fetched by headers (node/sync.py). Announcing and request tracking live in node/gossip.py and
node/inventory.py; this module never sends a frame itself.

Block identity (PROTOCOL §3.6, §4.3): a block is remembered as rejected — by its header hash, with the reason,
in a bounded table — only when the engine found the *block* invalid (every intact copy fails the same rule). A
*corrupt copy* (its signature, payload, model bytes or txs do not match what the header hash binds) condemns
only the copy: its sender is penalised (an honest node relays only blocks it validated, so it never sends
one), nothing is remembered, and the block is asked for again from the peers that announced it
(``refetch``), so whatever copies arrive first, the genuine block is accepted and relayed.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from chain.admission import start_admission
from chain.block import Block, Header
from chain.crypto import tagged_hash
from chain.errors import DecodeError, PopError, RuleError, StorageFault
from chain.rejects import TX_VIOLATIONS as _TX_VIOLATIONS
from chain.state import LedgerParams
from chain.store import ChainStore
from chain.tx import Transfer, decode_many_trusted
from consensus.engine import BlockVerdict, EngineApi
from consensus.protocol.messages import AnchorNotice, Beacon, Entry
from consensus.protocol.rules import CorruptCopy
from consensus.protocol.tasks import MSG_TAG, TaskMessage, decode_task_message
from node.engine_api import block_outcome, is_stale_code
from node.limits import INVALID_BLOCK, INVALID_OBJECT, STALE_OBJECT, BoundedMap, BoundedSet
from node.mempool import Mempool
from node.metrics import Metrics
from node.peer import Peer
from node.wire import InvKind
from node.worker import EngineWorker

log = logging.getLogger("popchain.gossip")

RECENT_OBJECTS = 4096
TX_REJECTS = 50_000       # state-dependent tx rejects not refetched until the tip changes (Core: recentRejects)
TX_ORPHANS = 4096         # transfers waiting for their sender's previous nonce
ORPHAN_EXPIRY_S = 600.0
OFF_LOOP_DECODE_BYTES = 64 * 1024   # blocks at least this big are decoded off the event loop (5,000 txs: ~20 ms)
# tx reject codes an honest relay can never produce (others depend on state or pool policy: soft): chain.rejects
TX_VIOLATIONS = _TX_VIOLATIONS

Key = tuple[InvKind, bytes]


class SyncHooks(Protocol):
    def on_orphan(self, peer: Peer, prev_hash: bytes) -> bool: ...
    async def ask_headers(self, peer: Peer, from_hash: bytes | None = None) -> None: ...
    def block_arrived(self, h: bytes) -> None: ...


class ModelFetches(Protocol):
    async def offer(self, block: Block) -> bool | None: ...   # None: not asked for; False: a forged model


class JudgeHost(Protocol):
    """What judging needs from the node (node.node.Node provides it)."""

    mempool: Mempool
    worker: EngineWorker
    metrics: Metrics
    tip_cache: tuple[int, int, bytes]

    @property
    def engine(self) -> EngineApi: ...    # called on the worker thread only
    @property
    def store(self) -> ChainStore: ...    # idem
    @property
    def ledger_params(self) -> LedgerParams: ...
    @property
    def sync_hooks(self) -> SyncHooks: ...
    async def on_entry_accepted(self, entry: Entry) -> None: ...
    async def on_task_message(self, msg: TaskMessage) -> None: ...
    async def after_round_event(self) -> None: ...
    async def after_tip_change(self, old_tip: bytes, new_tip: Header | None = None) -> None: ...


def object_id(kind: InvKind, data: bytes, decoded: object | None = None) -> bytes:
    """Inventory id: txid for transfers, header hash for blocks, the message id for task messages,
    H("popchain/inv", kind, bytes) otherwise."""
    if kind == InvKind.TX and decoded is not None:
        return decoded.txid  # type: ignore[attr-defined]
    if kind == InvKind.BLOCK and decoded is not None:
        return decoded.hash  # type: ignore[attr-defined]
    if kind == InvKind.TASK:
        return tagged_hash(MSG_TAG, data)   # the message id (= TaskMessage.msg_hash): notices name it
    return tagged_hash("popchain/inv", bytes([int(kind)]), data)


class Arrival(NamedTuple):
    """An object that decoded and is new to us, waiting for its verdict."""
    peer: Peer | None
    kind: InvKind
    data: bytes
    decoded: Any
    key: Key
    solicited: bool        # we asked this peer for it (GETDATA): a stale answer is a race, not the peer's fault


class Judge:
    def __init__(self, host: JudgeHost, announce: Callable[[InvKind, bytes, Peer | None, bytes | None], None],
                 received: Callable[[Key, Peer | None], bool],
                 push_all: Callable[[InvKind, bytes, bytes, Peer | None], None] | None = None,
                 announce_txs: Callable[[Sequence[tuple[bytes, Peer | None]]], None] | None = None) -> None:
        self.host = host
        self.announce = announce          # relay an accepted object (gossip.Relay.announce)
        # relay accepted transfers, (txid, the peer it came from) (gossip.Relay.announce_txs)
        self.announce_txs = announce_txs or self._announce_each
        self.push_all = push_all          # push an object whole to every peer (gossip.Relay.push_all)
        self.received = received          # an object arrived: forget its request; True if we asked this peer
        # objects we accepted, for GETDATA: (kind, id) -> (bytes, round; 0 for transfers)
        self.recent: BoundedMap[Key, tuple[bytes, int]] = BoundedMap(RECENT_OBJECTS)
        # (kind, id) -> reject code: objects found invalid (for a block: the block, never one corrupt copy)
        self.rejected: BoundedMap[Key, str] = BoundedMap(20_000)
        self.refetch: Callable[[Key, Peer | None], None] = lambda key, exclude: None   # set by the relay
        self.tx_rejects: BoundedSet[bytes] = BoundedSet(TX_REJECTS)
        self.tx_orphans: OrderedDict[tuple[bytes, int], tuple[Peer | None, bytes, bool]] = OrderedDict()
        # blocks the engine parked as orphans (hash -> when); forgotten after ORPHAN_EXPIRY_S so they can be refetched
        self.parked: BoundedMap[bytes, float] = BoundedMap(256)
        self.parked_by: BoundedMap[bytes, Peer] = BoundedMap(256)   # who sent a parked copy (blamed if corrupt)
        self.known_blocks: BoundedSet[bytes] = BoundedSet(10_000)  # saves a worker hop per INV
        self.round_hint = 0   # highest round seen in a round object
        self.block_lock = asyncio.Lock()  # blocks connect one at a time, in arrival order
        self.model_fetches: ModelFetches | None = None   # a pruned node's fetches of old models (node.pruning)

    # ------------------------------------------------------------ bookkeeping

    def _announce_each(self, items: Sequence[tuple[bytes, Peer | None]]) -> None:
        for h, peer in items:
            self.announce(InvKind.TX, h, peer, None)

    def remember(self, kind: InvKind, h: bytes, data: bytes, round_: int) -> None:
        self.recent.put((kind, h), (data, round_))
        self.round_hint = max(self.round_hint, round_)

    def expire(self, now: float) -> None:
        for h, since in self.parked.items():
            if now - since > ORPHAN_EXPIRY_S:
                self.parked.pop(h)

    def tip_changed(self) -> None:
        """State moved: txs refused against the old tip may be valid now (Core resets recentRejects too)."""
        self.tx_rejects = BoundedSet(TX_REJECTS)

    def known_tx(self, txid: bytes) -> bool:
        return txid in self.host.mempool or txid in self.tx_rejects

    def known_cheap(self, key: Key) -> bool | None:
        """Do we have (or refuse) this object? None = only the store can tell (a block)."""
        kind, h = key
        if key in self.recent or key in self.rejected:
            return True
        if kind == InvKind.TX:
            return self.known_tx(h)
        if kind == InvKind.BLOCK:
            return True if h in self.parked or h in self.known_blocks else None
        return False

    # ------------------------------------------------------------ judging

    async def on_object(self, peer: Peer | None, kind: InvKind, data: bytes) -> tuple[bool, str]:
        """Judge one object from ``peer`` (None = our own API). Returns (accepted, reason). Never raises PopError."""
        if kind == InvKind.TX:
            [result] = await self.on_tx_batch([(peer, data)])
            return result
        decoded = None
        if kind == InvKind.BLOCK and len(data) >= OFF_LOOP_DECODE_BYTES:
            try:
                decoded = await asyncio.get_running_loop().run_in_executor(None, Block.decode, data)
            except (DecodeError, ValueError):
                decoded = None   # _arrive decodes it again and reports the error as always
        arrival = self._arrive(peer, kind, data, decoded=decoded)
        if not isinstance(arrival, Arrival):
            return arrival
        fetched = None if kind != InvKind.BLOCK or self.model_fetches is None else \
            await self.model_fetches.offer(arrival.decoded)
        if fetched is not None:   # an old block a pruned node asked for, for its model (node.pruning)
            if fetched:
                return True, "duplicate"
            if peer is not None:
                peer.offend(INVALID_BLOCK, f"block {arrival.key[1].hex()[:16]}: model bytes do not hash to the "
                                           "header's model_hash")
            self.host.metrics.inc("popchain_objects_rejected_total", kind="block", reason="bad-model-hash")
            return False, "bad-model-hash"
        try:
            ok, reason = await self._judge(kind, arrival.decoded, data, peer)
        except CorruptCopy as exc:
            return self._corrupt(arrival.peer, arrival.key, exc.code, exc.message)
        except StorageFault:   # our disk, not the sender's object: the node stops (node.node), nobody is blamed
            raise
        except RuleError as exc:
            ok, reason, detail = False, exc.code, exc.message
        except PopError as exc:
            ok, reason, detail = False, "invalid", str(exc)
        except Exception:  # a bug below us (engine, ml): log it, keep the peer and the node running
            log.exception("internal error judging %s %s", kind.name.lower(), arrival.key[1].hex()[:16])
            self.host.metrics.inc("popchain_internal_errors_total", kind=kind.name.lower())
            return False, "internal-error"
        else:
            detail = reason
        return await self._conclude(arrival, ok, reason, detail)

    async def on_tx_batch(self, batch: Sequence[tuple[Peer | None, bytes]],
                          solicited: Sequence[bool] | None = None,
                          txids: Sequence[bytes] | None = None) -> list[tuple[bool, str]]:
        """``on_object`` for many transfers at once: the same verdicts, with the signatures of the whole batch
        checked in one call on the verification pool (chain.admission) instead of one executor hop per tx.
        ``solicited[i]``: the relay asked batch[i]'s peer for it (None: work it out from the request table);
        ``txids[i]``: the txid of batch[i]'s bytes, if the caller computed it (chain.tx.txid_of_encoding)."""
        results: list[tuple[bool, str]] = []
        pending = [(p, d, solicited[i] if solicited is not None else None) for i, (p, d) in enumerate(batch)]
        first = True
        while pending:
            out, follow = await self._tx_round(pending, txids if first else None)
            if first:
                results = out
                first = False
            pending = follow   # orphans whose predecessor just got in
        return results

    async def _tx_round(self, batch: Sequence[tuple[Peer | None, bytes, bool | None]],
                        txids: Sequence[bytes] | None = None,
                        ) -> tuple[list[tuple[bool, str]], list[tuple[Peer | None, bytes, bool | None]]]:
        host = self.host
        results: list[tuple[bool, str] | None] = [None] * len(batch)
        fresh: list[tuple[int, Arrival]] = []
        in_batch: set[bytes] = set()
        # the whole batch decoded at once (chain.tx.decode_many_trusted: one canonical check for all); a tx it
        # does not take goes the checked way in _arrive, which says what is wrong
        decoded = decode_many_trusted([data for _, data, _ in batch])
        if txids is not None:   # the txid the relay took from these same bytes
            for tx, h in zip(decoded, txids, strict=True):
                if tx is not None:
                    tx.__dict__["_txid"] = h
        received = 0
        mempool, recent, tx_kind = host.mempool.ids(), self.recent.members(), InvKind.TX
        rejected = self.rejected.members()
        known_by: dict[Peer, list[bytes]] = {}   # ids each sender now knows we have: marked once per batch
        for i, (peer, data, asked) in enumerate(batch):
            tx = decoded[i]
            if tx is None:   # the checked decoder says what is wrong (and counts its own arrival)
                arrival = self._arrive(peer, tx_kind, data, asked)
            else:   # _arrive_tx inlined: this loop runs once per relayed transfer
                received += 1
                h = tx.txid
                key = (tx_kind, h)
                solicited = asked if asked is not None else self.received(key, peer)
                if peer is not None:
                    ids = known_by.get(peer)
                    if ids is None:
                        ids = known_by[peer] = []
                    ids.append(h)
                if key in recent:
                    results[i] = (True, "duplicate")
                    continue
                arrival = Arrival(peer, tx_kind, data, tx, key, solicited) if key not in rejected else \
                    self._refused_again(peer, key, solicited)
            if not isinstance(arrival, Arrival):
                results[i] = arrival
                continue
            h = arrival.key[1]
            if h in mempool or h in in_batch:
                results[i] = (True, "duplicate")
            else:
                in_batch.add(h)
                fresh.append((i, arrival))
        for peer, ids in known_by.items():
            peer.known.add_ids(ids)
        if received:   # one labelled-metric update per batch, not one per tx
            host.metrics.inc("popchain_objects_received_total", received, kind="tx")
        follow: list[tuple[Peer | None, bytes, bool | None]] = []
        accepted: list[tuple[bytes, Peer | None]] = []
        if fresh:
            params = host.ledger_params
            txs = [a.decoded for _, a in fresh]
            reader = host.store.tip_account_reader()
            # the field rules and sighashes here, the signatures on the verification pool, awaited without a
            # thread of our own parked on them (one thread hand-off per batch less than an executor call)
            admission = start_admission(txs, params)
            if admission.futures:
                await asyncio.gather(*map(asyncio.wrap_future, admission.futures))
            verdicts = admission.finish(reader, check_state=False)
            now = time.time()
            for (i, arrival), verdict in zip(fresh, verdicts, strict=True):
                error = verdict.error
                if error is None:
                    assert verdict.tx is not None and verdict.account is not None
                    try:   # chain.admission applied the field rules
                        evicted = host.mempool.add(verdict.tx, verdict.account, now, fields_checked=True)
                    except PopError as exc:
                        error = exc
                    else:
                        if evicted:
                            host.metrics.inc("popchain_mempool_evicted_total", len(evicted))
                        nxt = self.tx_orphans.pop((verdict.tx.sender, verdict.tx.nonce + 1), None)
                        if nxt is not None:
                            follow.append(nxt)
                if error is None:
                    results[i] = (True, "accepted")
                    accepted.append((arrival.key[1], arrival.peer))
                elif isinstance(error, RuleError) and error.code == "nonce-gap" and arrival.peer is not None:
                    self._hold_orphan(arrival)
                    results[i] = (False, "nonce-gap")
                elif isinstance(error, RuleError):
                    results[i] = await self._conclude(arrival, False, error.code, error.message)
                else:
                    results[i] = await self._conclude(arrival, False, "invalid", str(error))
            if accepted:    # one announcement for the batch: each peer's trickle queue is visited once
                self.announce_txs(accepted)
        return [r if r is not None else (False, "internal-error") for r in results], follow

    def _refused_again(self, peer: Peer | None, key: Key, solicited: bool) -> tuple[bool, str]:
        """The answer for a transfer we already found invalid (pushed unasked, it costs its sender a point)."""
        if peer is not None and not solicited:
            peer.offend(STALE_OBJECT, "tx already rejected")
        return False, "already-rejected"

    def _hold_orphan(self, arrival: Arrival) -> None:
        tx: Transfer = arrival.decoded
        self.tx_orphans[(tx.sender, tx.nonce)] = (arrival.peer, arrival.data, arrival.solicited)
        self.tx_orphans.move_to_end((tx.sender, tx.nonce))
        while len(self.tx_orphans) > TX_ORPHANS:
            self.tx_orphans.popitem(last=False)
        self.host.metrics.inc("popchain_tx_orphans_total")

    def _arrive(self, peer: Peer | None, kind: InvKind, data: bytes,
                asked: bool | None = None, decoded: Any = None) -> Arrival | tuple[bool, str]:
        """Decode (unless ``decoded`` is given: ``data`` decoded off the loop) and bookkeeping before judging:
        the Arrival to judge, or the final answer when there is nothing to judge (undecodable, already
        accepted, already rejected)."""
        try:
            decoded = decode_object(kind, data) if decoded is None else decoded
        except (DecodeError, ValueError) as exc:
            if peer is not None:
                peer.offend(INVALID_OBJECT, f"undecodable {kind.name.lower()}: {exc}")
            self.host.metrics.inc("popchain_objects_rejected_total", kind=kind.name.lower(), reason="bad-encoding")
            return False, f"bad-encoding: {exc}"
        h = object_id(kind, data, decoded)
        key = (kind, h)
        solicited = asked if asked is not None else self.received(key, peer)
        if peer is not None:
            peer.known.add(key)
        if key in self.recent:
            return True, "duplicate"
        if key in self.rejected:
            if peer is not None and not solicited:
                peer.offend(STALE_OBJECT, f"{kind.name.lower()} already rejected")
            return False, "already-rejected"
        self.host.metrics.inc("popchain_objects_received_total", kind=kind.name.lower())
        return Arrival(peer, kind, data, decoded, key, solicited)

    async def _conclude(self, arrival: Arrival, ok: bool, reason: str, detail: str) -> tuple[bool, str]:
        """After the verdict: relay what was accepted; for a rejection, metrics and the sender's penalty."""
        peer, kind, decoded, (_, h) = arrival.peer, arrival.kind, arrival.decoded, arrival.key
        if ok and kind == InvKind.BLOCK and peer is not None:  # it holds this block: /api/peers shows the height
            peer.best_height = max(peer.best_height, decoded.header.height)
        if ok:
            if reason != "duplicate":
                if kind not in (InvKind.BLOCK, InvKind.TX):
                    # round objects only: transfers are served from the mempool, and at 16k tx/s they would
                    # push every notice and beacon out of this table within a second
                    self.remember(kind, h, arrival.data, getattr(decoded, "round", 0))
                self.announce(kind, h, peer, None)
            return True, reason
        if reason in ("orphan", "duplicate"):
            if reason == "orphan" and peer is not None:
                self.parked.put(decoded.hash, time.monotonic())
                self.parked_by.put(decoded.hash, peer)
                sync = self.host.sync_hooks
                if not sync.on_orphan(peer, decoded.header.prev_hash):
                    await sync.ask_headers(peer)
            return reason == "duplicate", reason
        self.host.metrics.inc("popchain_objects_rejected_total", kind=kind.name.lower(), reason=reason)
        if kind != InvKind.TX and not is_stale_code(reason):
            self.rejected.put(arrival.key, reason)  # stale ones may become acceptable later: let them be refetched
        if kind == InvKind.TX and reason not in TX_VIOLATIONS:
            self.tx_rejects.add(h)
        if peer is not None:
            stale = is_stale_code(reason) or (kind == InvKind.TX and reason not in TX_VIOLATIONS)
            if kind == InvKind.BLOCK and not stale:
                peer.offend(INVALID_BLOCK, f"block {h.hex()[:16]}: {detail}")
            elif not stale:
                peer.offend(INVALID_OBJECT, f"{kind.name.lower()} {h.hex()[:16]}: {detail}")
            elif not arrival.solicited and kind != InvKind.BLOCK:
                # stale and pushed at us unasked; what we asked for being stale is a race, not the peer's fault
                peer.offend(STALE_OBJECT, f"{kind.name.lower()} {h.hex()[:16]}: {detail}")
        log.info("rejected %s %s: %s", kind.name.lower(), h.hex()[:16], detail)
        return False, reason

    def _corrupt(self, peer: Peer | None, key: Key, code: str, detail: str) -> tuple[bool, str]:
        """A corrupt copy of a block: blame its sender, remember nothing, fetch the block again elsewhere."""
        h = key[1]
        self.host.metrics.inc("popchain_corrupt_copies_total", code=code)
        if peer is not None:
            peer.offend(INVALID_BLOCK, f"corrupt copy of block {h.hex()[:16]}: {code}: {detail}")
        log.warning("corrupt copy of block %s from %s: %s: %s; fetching it again", h.hex()[:16],
                    getattr(peer, "key", "the api"), code, detail)
        self.refetch(key, peer)
        return False, code

    def _corrupt_parked(self, hashes: Sequence[bytes]) -> None:
        """Parked copies the engine found corrupt once their parent connected."""
        for h in hashes:
            self.parked.pop(h)
            self._corrupt(self.parked_by.pop(h), (InvKind.BLOCK, h), "corrupt-parked",
                          "a parked copy did not match its header hash")

    async def _judge(self, kind: InvKind, obj: Any, data: bytes, peer: Peer | None) -> tuple[bool, str]:
        host = self.host
        if kind == InvKind.TX:
            raise AssertionError("transfers are judged by on_tx_batch")
        if kind == InvKind.ENTRY:
            new = await host.worker.call(host.engine.add_entry, obj)
            if new:
                await host.on_entry_accepted(obj)
            return True, "accepted" if new else "duplicate"
        if kind == InvKind.ANCHOR:
            new = await host.worker.call(host.engine.add_anchor_notice, obj)
            await host.after_round_event()
            return True, "accepted" if new else "duplicate"
        if kind == InvKind.TASK:
            # a governance-signed task announcement/extension: stored for the keyholder, relayed (§3.13)
            new = await host.worker.call(host.engine.add_task_message, obj)
            if new:
                await host.on_task_message(obj)
            return True, "accepted" if new else "duplicate"
        if kind == InvKind.BEACON:
            try:
                new = await host.worker.call(host.engine.add_beacon, obj)
            except RuleError as exc:
                if exc.code == "equivocation":
                    host.metrics.inc("popchain_equivocations_total")
                    log.error("EQUIVOCATION: second beacon for round %d refused: %s", obj.round, exc.message)
                raise
            await host.after_round_event()
            return True, "accepted" if new else "duplicate"
        return await self._judge_block(obj, data, peer)

    async def _judge_block(self, block: Block, data: bytes, peer: Peer | None) -> tuple[bool, str]:
        host = self.host
        async with self.block_lock:
            old_tip = host.tip_cache[2]
            started = time.perf_counter()
            verdict, tip = await host.worker.call(_add_block, host.engine, block)
            outcome, code, detail = block_outcome(verdict)
            host.metrics.inc("popchain_block_validation_seconds_total", time.perf_counter() - started)
            host.metrics.observe("popchain_block_validation_duration_seconds", time.perf_counter() - started)
            if getattr(verdict, "scored", None) is not None:  # its model was scored against the champion
                host.metrics.observe("popchain_model_scoring_duration_seconds", time.perf_counter() - started)
            self._corrupt_parked(getattr(verdict, "refetch", ()))
            if outcome == "orphan":
                return False, "orphan"
            if outcome == "corrupt":
                raise CorruptCopy(code, detail)
            sync = host.sync_hooks
            if outcome == "known":
                self.known_blocks.add(block.hash)
                sync.block_arrived(block.hash)     # a requested block that came another way: not a stall
                return True, "duplicate"
            if outcome == "opened":
                # a listed entry opened correctly that does not crown: relay it so that the keyholder learns
                # the opening (the entrant keeps its bond, PROTOCOL §3.9); it changes no tip
                self.known_blocks.add(block.hash)
                if self.push_all is not None:
                    self.push_all(InvKind.BLOCK, block.hash, data, peer)
                sync.block_arrived(block.hash)
                log.info("block round %d %s opened, not crowned: %s", block.header.round, block.hash.hex()[:16],
                         detail)
                return True, "opened"
            if outcome in ("rejected", "stale"):
                raise RuleError(code, detail)
            self.known_blocks.add(block.hash)
            # relay first: validity is settled, peers should not wait for our bookkeeping. A plain block (issue 21:
            # valid, crowns nothing) travels as openings did: pushed whole to every peer, so that every keyholder
            # member learns it in its opening window whoever announces it first
            scored = getattr(verdict, "scored", None)
            if scored is not None and not scored.crowned and self.push_all is not None:
                self.push_all(InvKind.BLOCK, block.hash, data, peer)
            else:
                self.announce(InvKind.BLOCK, block.hash, peer, data)
            host.metrics.observe("popchain_relay_duration_seconds", time.perf_counter() - started, kind="block")
            host.metrics.inc("popchain_blocks_accepted_total")
            for h in getattr(verdict, "connected", ()):
                self.parked.pop(h)
                self.parked_by.pop(h)
                self.known_blocks.add(h)
                sync.block_arrived(h)
                self.announce(InvKind.BLOCK, h, None, None)
                log.info("block %s connected (it arrived before its parent)", h.hex()[:16])
            await host.after_tip_change(old_tip, tip)
            sync.block_arrived(block.hash)
            log.info("block %d round %d %s accepted (%s)", block.header.height, block.header.round,
                     block.hash.hex()[:16], outcome)
        return True, outcome


def _add_block(engine: EngineApi, block: Block) -> tuple[BlockVerdict, Header]:
    """On the worker thread: the verdict and the tip after it, in one hop."""
    verdict = engine.add_block(block)
    return verdict, engine.tip()


def decode_object(kind: InvKind, data: bytes) -> Any:
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
        case InvKind.TASK:
            return decode_task_message(data)
    raise DecodeError(f"unknown kind {kind}")
