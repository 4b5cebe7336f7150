"""Engine: consensus state on top of chain.store.ChainStore — beacons, notices, entries, fork choice, finality.

State (PROTOCOL §3.8): the *final anchor* F and the *current round* R (the last round whose anchor notice or
beacon has been applied). The tip is F or the best valid block of round R on F. Keyholder-signed anchor
statements (notices and beacons) move F forward, in round order; a block of round R never reorganises past
F. Synchronous and NOT thread-safe: node/ serialises every call on one worker thread.

What it does NOT do: validate a block itself (``validate_block``), keep task messages (the TaskBook), answer task
queries (the TaskQueries mixin), sign anything, or know a clock.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from chain.block import Block, Header, model_hash
from chain.encoding import pack, unpack
from chain.errors import RuleError, StoreError, need
from chain.store import ChainStore
from chain.tx import Transfer
from consensus._meta import (
    K_STATE,
    P_BEACON,
    P_CHAMP,
    P_CMODEL,
    P_NOTICE,
    P_OPENING,
    u32,
)
from consensus.engine._accountability import CommitteeAccountability
from consensus.engine._entries import EntryRules, RoundMemory
from consensus.engine._evidence import EvidenceBook
from consensus.engine._index import ChainIndex
from consensus.engine._lineage import (
    ensure_indexed,
    index_extra,
    record_at,
    round_winner,
    rounds_above,
    unindex_extra,
)
from consensus.engine._taskbook import TaskBook
from consensus.engine._tasks import TaskQueries
from consensus.engine._validity import (
    OrphanBlock,
    ScoringCache,
    check_ledger_release,
    check_round_release,
    parent_payload,
    validate_block,
)
from consensus.mining import Template, build_template, template_timestamp
from consensus.protocol.genesis import Genesis
from consensus.protocol.messages import AnchorNotice, Beacon, RoundPayload
from consensus.protocol.registry import ChampionRecord, minted_reward
from consensus.protocol.rules import (
    CorruptCopy,
    ScoredBlock,
    check_copy,
    fork_key,
    moves_for,
    parent_moves,
    plain_slot,
)
from consensus.protocol.tasks import TaskAnnouncement, decode_task_message

__all__ = ["BlockVerdict", "Engine", "RoundInfo"]

MAX_ORPHANS = 64
MAX_ORPHAN_BYTES = 64 * 2**20   # all parked orphans together: parked blocks of peers cannot hold the node's memory


def _terms(st: AnchorNotice | Beacon) -> tuple:
    """What a notice and the beacon of its round must agree on: settlement and schedule."""
    return (st.settlement, st.task_id, st.shard_index, st.activations)


@dataclass(frozen=True)
class BlockVerdict:
    """status: tip-changed | accepted (valid, not best: a crowning or a plain block, ``scored.crowned``) | known | stale (round already final) | orphan
    (``missing`` = parent to fetch) | rejected (``code``: the block
    is invalid — every intact copy of it) | corrupt (``code``: THIS COPY carries bytes its header hash does not
    bind and they are wrong; nothing is known about the block: fetch it again, blame the sender).
    ``connected`` lists orphans that got connected, ``refetch`` parked copies found corrupt on connecting."""
    status: str
    block_hash: bytes
    code: str | None = None
    message: str = ""
    missing: bytes | None = None
    scored: ScoredBlock | None = None
    connected: tuple[bytes, ...] = ()
    refetch: tuple[bytes, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status in ("tip-changed", "accepted", "known")


@dataclass(frozen=True)
class RoundInfo:
    round: int
    status: str                 # future | open | revealed | crowned | plain | void | idle (no task had shards left)
    anchor: bytes | None
    notice: AnchorNotice | None
    beacon: Beacon | None
    winner: ChampionRecord | None
    entries_seen: int


class Opening(NamedTuple):
    """A listed block this node saw opened correctly in its round (§3.9): its miner, its model and the round
    test's record (b, c, bar: the payload's, which validation recomputed) — None in records kept before the
    figures were (read-only: the explorer's entrant tables; the keyholder's settlement uses miner and model)."""
    miner: bytes
    model_hash: bytes
    b: int | None = None
    c: int | None = None
    bar: int | None = None


class Engine(EntryRules, EvidenceBook, TaskQueries, CommitteeAccountability):
    """One node's consensus state over its chain store (see the module docstring); node/ sees it as EngineApi."""

    def __init__(self, store: ChainStore, genesis: Genesis, *, tie_secret: bytes | None = None) -> None:
        self.store = store
        self.genesis = genesis
        self.cache = ScoringCache()
        self.book = TaskBook(store, genesis)
        self.index = ChainIndex(store)
        self._tie_secret = tie_secret or os.urandom(32)   # breaks stake ties in the bounded entry table
        self._refetch: list[bytes] = []                   # parked copies found corrupt while connecting
        self._statements: dict[tuple[bytes, int], AnchorNotice | Beacon] = {}   # decoded, by (prefix, round)
        if not store.is_initialised():
            store.init_genesis(genesis.block, genesis.allocations, genesis.ledger_params)
        if store.genesis().hash != genesis.hash:
            raise StoreError("the datadir holds a different chain (genesis hash differs)")
        if store.meta_get(K_STATE) is None:
            g = genesis.header
            record = ChampionRecord(g.hash, 0, 0, g.miner, g.model_hash, 0, 0, 0, 0)
            store.meta_write({K_STATE: pack([g.hash, 0]), P_CHAMP + u32(0): record.encode(),
                              P_CMODEL + g.model_hash: u32(0)})
        final, self._round = unpack(need(store.meta_get(K_STATE), "consensus state"), max_size=128)
        self._final = need(store.get_header(final), f"header of the final anchor {final.hex()}")
        self._anchors: dict[int, bytes] = {}      # round -> anchor stated by a notice/beacon not yet applied
        self._candidates: dict[bytes, ScoredBlock] = {}
        self._orphans: dict[bytes, Block] = {}
        self._rounds: dict[int, RoundMemory] = {}
        ensure_indexed(store)
        for prefix in (P_BEACON, P_NOTICE):     # statements above the current round: read newest first, stop there
            for r, value in rounds_above(store, prefix, self._round):
                obj = (Beacon if prefix == P_BEACON else AnchorNotice).decode(value)
                self._anchors.setdefault(r, obj.anchor_hash)
        tip = store.tip()
        if tip.hash != self._final.hash:  # restart in the opening window: the tip is our best candidate
            block = need(store.get_block(tip.hash), f"tip block {tip.hash.hex()}")
            p = RoundPayload.decode(block.payload)
            self._candidates[tip.hash] = ScoredBlock(block, p.b, p.c, p.bar, tuple(store.get_moves(tip.hash)),
                                                     p.beacon.task_id, self.book.registry_at(tip),
                                                     slot=plain_slot(p.beacon, tip.miner),
                                                     reward=store.ledger_params_of(tip.hash).block_reward)

    # ------------------------------------------------------------ queries

    def tip(self) -> Header:
        return self.store.tip()

    def final_hash(self) -> bytes:
        return self._final.hash

    def final_header(self) -> Header:
        return self._final

    def current_round(self) -> int:
        return self._round

    def round_task(self, r: int) -> tuple[int, int] | None:
        """(task id, task-local shard index) round r serves, from its notice or beacon; None if unknown or
        idle (an idle round serves nothing)."""
        st: AnchorNotice | Beacon | None = self.beacon(r) or self.notice(r)
        return None if st is None else st.served

    def beacon(self, r: int) -> Beacon | None:
        hit = self._statements.get((P_BEACON, r))
        if hit is None:
            raw = self.store.meta_get(P_BEACON + u32(r))
            hit = None if raw is None else self._remember((P_BEACON, r), Beacon.decode(raw))
        assert hit is None or isinstance(hit, Beacon)
        return hit

    def notice(self, r: int) -> AnchorNotice | None:
        hit = self._statements.get((P_NOTICE, r))
        if hit is None:
            raw = self.store.meta_get(P_NOTICE + u32(r))
            hit = None if raw is None else self._remember((P_NOTICE, r), AnchorNotice.decode(raw))
        assert hit is None or isinstance(hit, AnchorNotice)
        return hit

    def _remember(self, key: tuple[bytes, int], stmt: AnchorNotice | Beacon) -> AnchorNotice | Beacon:
        """Decoded statements by round: a round's stored notice or beacon never changes (the first one stays,
        §3.4), and an entry check asks for them several times (a notice with a full settlement is ~86 KB)."""
        self._statements[key] = stmt
        while len(self._statements) > 16:
            self._statements.pop(next(iter(self._statements)))
        return stmt

    def statement_bytes(self, r: int) -> tuple[bytes | None, bytes | None]:
        """(notice bytes, beacon bytes) of round r exactly as stored (None: not held), for peers that sync
        rounds: void and idle rounds are in no block."""
        return self.store.meta_get(P_NOTICE + u32(r)), self.store.meta_get(P_BEACON + u32(r))

    def candidates(self) -> list[ScoredBlock]:
        """Valid blocks of the current round, best first."""
        return sorted(self._candidates.values(), key=fork_key, reverse=True)

    def round_info(self, r: int) -> RoundInfo:
        beacon, notice = self.beacon(r), self.notice(r)
        anchor = beacon.anchor_hash if beacon else notice.anchor_hash if notice else None
        winner = round_winner(self.store, r)
        if r > self._round:
            status = "future"
        elif r == self._round:
            status = "revealed" if beacon else "idle" if notice is not None and notice.idle else "open"
        elif winner:
            status = "crowned"
        else:                       # a plain block (§3.6 step 9) anchors round r + 1, or nothing does (void)
            nxt: AnchorNotice | Beacon | None = self.notice(r + 1) or self.beacon(r + 1)
            anchor_header = self.store.get_header(nxt.anchor_hash) if nxt is not None else None
            status = ("plain" if anchor_header is not None and anchor_header.round == r
                      else "idle" if notice is not None and notice.idle else "void")
        mem = self._rounds.get(r)
        return RoundInfo(r, status, anchor, notice, beacon, winner, len(mem.entries) if mem else 0)

    # ------------------------------------------------------------ openings

    def openings(self, r: int) -> dict[bytes, Opening]:
        """header hash -> Opening (miner, model hash, b, c, bar) of every listed round-r block this node saw
        opened (§3.9)."""
        out = {}
        for key, value in self.store.meta_items(P_OPENING + u32(r)):
            fields = unpack(value, max_size=256)
            out[key[len(P_OPENING) + 4:]] = Opening(*fields[:5])
        return out

    def _record_opening(self, block: Block, payload: RoundPayload) -> None:
        h = block.header
        key = P_OPENING + u32(h.round) + h.hash
        if self.store.meta_get(key) is None:
            self.store.meta_put(key, pack([h.miner, h.model_hash, payload.b, payload.c, payload.bar]))

    # ------------------------------------------------------------ notices and beacons

    def _check_statement(self, r: int, anchor: bytes, encoded: bytes, tag: bytes) -> None:
        """A notice/beacon for round r must agree with every stored statement of round r."""
        for prefix in (P_NOTICE, P_BEACON):
            raw = self.store.meta_get(prefix + u32(r))
            if raw is None:
                continue
            other = (Beacon if prefix == P_BEACON else AnchorNotice).decode(raw)
            if other.anchor_hash != anchor:
                self._record_equivocation(r, raw, encoded, tag)
                raise RuleError("equivocation", f"keyholder signed two anchors for round {r}")

    def add_anchor_notice(self, notice: AnchorNotice) -> bool:
        g = self.genesis
        if notice.chain_id != g.chain_id:
            raise RuleError("bad-notice", f"notice for round {notice.round} on chain {notice.chain_id!r}")
        if not notice.verify(g.keyholders, g.threshold):
            raise RuleError("bad-notice-sig", "anchor notice lacks the keyholder signatures")
        key = P_NOTICE + u32(notice.round)
        raw = self.store.meta_get(key)
        encoded = notice.encode()
        if raw is not None:
            if AnchorNotice.decode(raw).unsigned_fields() == notice.unsigned_fields():
                return False
            self._record_equivocation(notice.round, raw, encoded, notice.sighash)
            raise RuleError("equivocation", f"a different anchor notice for round {notice.round} exists")
        self._check_statement(notice.round, notice.anchor_hash, encoded, notice.sighash)
        beacon = self.beacon(notice.round)
        if beacon is not None and _terms(notice) != _terms(beacon):
            self._record_equivocation(notice.round, beacon.encode(), encoded, notice.sighash)
            raise RuleError("equivocation", f"notice {notice.round} settles or schedules otherwise than its beacon")
        self._check_schedule(notice)
        self.store.meta_put(key, encoded)
        if notice.round > self._round:
            self._anchors.setdefault(notice.round, notice.anchor_hash)
            self._advance()
        return True

    def add_beacon(self, beacon: Beacon) -> bool:
        """True if new. RuleError("equivocation") (and evidence kept) for a second, different beacon."""
        g = self.genesis
        if beacon.chain_id != g.chain_id:
            raise RuleError("bad-beacon", f"beacon for round {beacon.round} on chain {beacon.chain_id!r}")
        if not 1 <= len(beacon.listed) <= g.params.max_entries:
            # a round with no entries reveals nothing (its shard is kept for when miners come, §3.10)
            raise RuleError("bad-beacon", f"{len(beacon.listed)} entries, need 1 to max_entries")
        if not beacon.verify(g.keyholders, g.threshold):
            raise RuleError("bad-beacon-sig", "beacon lacks the keyholder signatures")
        key = P_BEACON + u32(beacon.round)
        raw = self.store.meta_get(key)
        encoded = beacon.encode()
        if raw is not None:
            stored = Beacon.decode(raw)
            if stored.sighash == beacon.sighash:
                if stored.release != beacon.release:
                    self._keep_the_proven_release(key, stored, beacon)
                return False
            self._record_equivocation(beacon.round, raw, encoded, beacon.sighash)
            raise RuleError("equivocation", f"a different beacon for round {beacon.round} was seen first")
        self._check_statement(beacon.round, beacon.anchor_hash, encoded, beacon.sighash)
        notice = self.notice(beacon.round)
        if notice is not None and _terms(notice) != _terms(beacon):
            self._record_equivocation(beacon.round, notice.encode(), encoded, beacon.sighash)
            raise RuleError("equivocation", f"beacon {beacon.round} settles or schedules otherwise than its notice")
        self._check_schedule(beacon)
        self._check_release(beacon)
        self.store.meta_put(key, encoded)
        if beacon.round > self._round:
            self._anchors.setdefault(beacon.round, beacon.anchor_hash)
            self._advance()
        return True

    def _check_schedule(self, st: AnchorNotice | Beacon) -> None:
        """A statement on the final anchor must name the (task, shard) the schedule gives its round (§3.13).
        Checked when this node holds every task message it activates; otherwise the blocks check it (their
        payload carries the messages), so a syncing node is not stalled by gossip order."""
        if st.anchor_hash != self._final.hash or st.round <= max(self._round, self._final.round):
            return
        try:
            adv = self.book.advance(self.book.registry_at(self._final), self._final, st.round, st.activations)
        except RuleError as err:
            if err.code == "missing-activation":
                return
            raise RuleError("bad-schedule", f"round {st.round}: {err.code}: {err.message}") from None
        if adv.served != st.served:
            raise RuleError("bad-schedule", f"round {st.round} serves {adv.served}, the statement says {st.served}")

    def _keep_the_proven_release(self, key: bytes, stored: Beacon, other: Beacon) -> None:
        """The same beacon with another release (it is outside the signed content): if the stored copy's release
        fails where this one holds — a copy stored before this node could check it, tampered on the way — keep
        this one, so that round sync never serves a release that fails."""
        try:
            self._check_release(stored)
            return                          # the stored release holds (or cannot be judged here yet)
        except RuleError:
            pass
        try:
            self._check_release(other)
        except RuleError:
            return
        self.store.meta_put(key, other.encode())
        self._statements.pop((P_BEACON, other.round), None)     # the decoded cache held the tampered copy

    def _check_release(self, beacon: Beacon) -> None:
        """A committee beacon's released shares (§3.4, §3.14), checked when this node holds the round's anchor
        and task messages; otherwise the blocks of the round check them (their payload carries both)."""
        g = self.genesis
        if g.committee is None:
            if beacon.release:
                raise RuleError("bad-beacon", "a single keyholder's beacon carries no released shares")
            return
        if beacon.idle:             # a ledger round (issue 21): the threshold VRF of its (round, anchor)
            check_ledger_release(g, beacon)
            return
        anchor = self.store.get_header(beacon.anchor_hash)
        if anchor is None:
            return
        try:
            adv = self.book.advance(self.book.registry_at(anchor), anchor, beacon.round, beacon.activations)
            task = adv.before.tasks[beacon.task_id]
            self.book.package_of(task)
        except (RuleError, IndexError):
            return
        if adv.served is None:
            return
        check_round_release(g, self.book, beacon, task)

    # ------------------------------------------------------------ finality

    def _state_extra(self, final: bytes, r: int) -> dict[bytes, bytes | None]:
        return {K_STATE: pack([final, r])}

    def _advance(self) -> None:
        """Apply pending anchor statements in round order while their anchors are known (§3.8)."""
        while self._anchors:
            r = min(self._anchors)
            if r <= self._round:
                del self._anchors[r]
                continue
            anchor = self._anchors[r]
            tip = self.store.tip()
            if anchor == self._final.hash:                  # rounds since R were void
                if tip.hash != self._final.hash:
                    self.store.disconnect_tip(extra={**self._unchampion(tip), **self._state_extra(anchor, r)})
                else:
                    self.store.meta_write(self._state_extra(anchor, r))
            elif anchor in self._candidates:                # the keyholder's pick among our candidates
                if tip.hash != anchor:
                    self._switch_to(self._candidates[anchor], state=(anchor, r))
                else:
                    self.store.meta_write(self._state_extra(anchor, r))
            else:
                return                                      # anchor unknown: wait for that block
            del self._anchors[r]
            self._final, self._round = self.store.tip(), r
            self._candidates.clear()
            self._retry_orphans()

    # ------------------------------------------------------------ blocks

    def _champion_extra(self, s: ScoredBlock) -> dict[bytes, bytes | None]:
        h = s.block.header
        extra: dict[bytes, bytes | None] = {}
        if s.crowned:               # a plain block records no champion (§3.6 step 9)
            rec = ChampionRecord(h.hash, h.height, h.round, h.miner, h.model_hash, s.b, s.c, s.bar, s.task_id)
            extra[P_CHAMP + u32(h.height)] = rec.encode()
            extra.update(index_extra(rec))   # the champion lineage's indexes, same batch (consensus.engine._lineage)
        initial: list[bytes] = []
        if s.registry is not None:   # the task registry after it, and the task messages it activated (§3.13)
            extra.update(self.book.registry_extra(h.height, s.registry))
            extra.update(self.book.message_extra(s.messages))
            for m in s.messages:      # an initial champion counts as a champion for duplicate-model
                if isinstance(m, TaskAnnouncement):
                    self.store.put_model(m.champion)
                    initial.append(model_hash(m.champion))
        # champions, models recorded opened, first listings, unbond requests (consensus.engine._index)
        beacon = RoundPayload.decode(s.block.payload).beacon
        extra.update(self.index.connect_extra(s.block, beacon, tuple(initial), crowned=s.crowned))
        return extra

    def _unchampion(self, tip: Header) -> dict[bytes, bytes | None]:
        block = need(self.store.get_block(tip.hash), f"tip block {tip.hash.hex()}")
        initial = tuple(model_hash(m.champion) for m in self._activated(block) if isinstance(m, TaskAnnouncement))
        extra: dict[bytes, bytes | None] = {P_CHAMP + u32(tip.height): None,
                                            **self.book.registry_extra(tip.height, None),
                                            **self.index.disconnect_extra(block, initial)}
        rec = record_at(self.store, tip.height)
        if rec is not None:              # the champion lineage's index keys go with the record (same batch)
            extra.update(unindex_extra(rec))
        return extra

    @staticmethod
    def _activated(block: Block) -> list[object]:
        if not block.payload:
            return []
        return [decode_task_message(raw) for raw in RoundPayload.decode(block.payload).activations]

    def _switch_to(self, s: ScoredBlock, state: tuple[bytes, int] | None = None) -> None:
        """Make ``s`` (a candidate of the current round, child of F) the tip."""
        tip = self.store.tip()
        if tip.hash != self._final.hash:
            self.store.disconnect_tip(extra=self._unchampion(tip))
        extra = self._champion_extra(s)
        if state is not None:
            extra.update(self._state_extra(*state))
        ledger = self.genesis.ledger_params
        if s.reward is not None:
            ledger = dataclasses.replace(ledger, block_reward=s.reward)
        self.store.connect_block(s.block, ledger, extra=extra, moves=s.moves)

    def add_block(self, block: Block) -> BlockVerdict:
        """Validate ``block`` and apply fork choice; never raises RuleError (the verdict carries the code). A
        copy whose unbound bytes are wrong gets ``corrupt`` and changes nothing here: the block's genuine copy
        is judged on its own when it comes (PROTOCOL §3.6: identity). ``refetch`` names parked copies that
        connecting this block found corrupt."""
        verdict = self._add_block(block)
        if self._refetch:
            verdict = dataclasses.replace(verdict, refetch=tuple(self._refetch))
            self._refetch = []
        return verdict

    def _add_block(self, block: Block) -> BlockVerdict:
        h = block.header
        if h.hash in self._candidates or h.hash == self._final.hash or (
                self.store.is_main_chain(h.hash)):
            return BlockVerdict("known", h.hash)
        try:
            payload = check_copy(block, self.genesis)    # the copy rules that need no chain state
            self.add_beacon(payload.beacon)  # may move finality forward (a syncing node learns anchors here)
        except CorruptCopy as err:
            return BlockVerdict("corrupt", h.hash, err.code, err.message)
        except RuleError as err:
            if err.code == "equivocation":   # a second keyholder-signed beacon: not this round's block
                return BlockVerdict("corrupt", h.hash, err.code, err.message)
            return BlockVerdict("rejected", h.hash, err.code, err.message)
        if h.round < self._round or (h.round == self._round and h.prev_hash != self._final.hash
                                     and self.store.get_header(h.prev_hash) is not None):
            return BlockVerdict("stale", h.hash, "stale-round", f"round {h.round} is final")
        if h.round > self._round or h.prev_hash != self._final.hash:
            return self._park(block)
        try:
            scored = validate_block(block, genesis=self.genesis, store=self.store, beacon=self.beacon(h.round),
                                    index=self.index, cache=self.cache, book=self.book)
        except OrphanBlock:
            return self._park(block)
        except CorruptCopy as err:
            return BlockVerdict("corrupt", h.hash, err.code, err.message)
        except RuleError as err:
            return BlockVerdict("rejected", h.hash, err.code, err.message)
        self._record_opening(block, payload)
        self._candidates[h.hash] = scored
        best = max(self._candidates.values(), key=fork_key)
        status = "accepted"
        if best.hash == h.hash:
            self._switch_to(scored)
            status = "tip-changed"
        connected = self._advance_and_collect()
        return BlockVerdict(status, h.hash, scored=scored, connected=connected)

    def parked_blocks(self) -> list[Block]:
        """Parked blocks of the current round on the final anchor: a block parked because its round's shard blob
        was not here yet (_validity.BlobPending, PROTOCOL §3.15) is judged again once the blob arrived."""
        return [b for b in self._orphans.values()
                if b.header.prev_hash == self._final.hash and b.header.round == self._round]

    def _park(self, block: Block) -> BlockVerdict:
        """Keep an orphan (an intact copy so far: check_copy passed) until its parent or anchor arrives; the
        first copy of a header hash stays (a later one is judged against it only if it turns out corrupt). The
        parked blocks are bounded in number and in bytes together; the oldest go first."""
        if block.hash not in self._orphans:
            size = _parked_size(block)
            held = sum(map(_parked_size, self._orphans.values()))
            while self._orphans and (len(self._orphans) >= MAX_ORPHANS or held + size > MAX_ORPHAN_BYTES):
                held -= _parked_size(self._orphans.pop(next(iter(self._orphans))))
            self._orphans[block.hash] = block
        return BlockVerdict("orphan", block.hash, missing=block.header.prev_hash)

    def _advance_and_collect(self) -> tuple[bytes, ...]:
        before = set(self._orphans)
        self._advance()
        return tuple(h for h in before if h not in self._orphans and h not in self._refetch)

    def _retry_orphans(self) -> None:
        ready = [b for b in self._orphans.values()
                 if b.header.prev_hash == self._final.hash and b.header.round == self._round]
        for block in ready:
            self._orphans.pop(block.hash, None)
            if self._add_block(block).status == "corrupt":
                self._refetch.append(block.hash)
        stale = [hsh for hsh, b in self._orphans.items() if b.header.round < self._round]
        for hsh in stale:
            del self._orphans[hsh]

    # ------------------------------------------------------------ templates for miners

    def build_template(self, miner_pubkey: bytes, txs: Iterable[Transfer], timestamp: int) -> Template:
        """A template for the open round: the notice's settlement and a timestamp every beacon accepts."""
        r = self.entry_round()
        notice = self.notice(r)
        if r == 0 or notice is None or notice.anchor_hash != self._final.hash:
            raise RuleError("no-open-round", "no round is open for entries")
        parent = self._final
        opened_ms = notice.entry_deadline_ms - self.genesis.params.entry_window_s * 1000
        ts = template_timestamp(self.genesis, parent, opened_ms, timestamp)
        try:
            adv = self.book.advance(self.book.registry_at(parent), parent, r, notice.activations)
        except RuleError as err:
            raise RuleError("no-open-round", f"round {r} is not ready here: {err.message}") from None
        task_id, index = notice.served or (0, 0)     # (0, 0): a ledger round, plain blocks only
        releases = self.releases(notice.settlement.last)
        moves = (parent_moves(self.genesis, parent, parent_payload(self.store, parent), self.book.registry_at(parent),
                              self.store.ledger_params_of(parent.hash).block_reward)
                 + moves_for(self.genesis, notice, releases) + adv.moves)
        reward = (minted_reward(adv.before, task_id, self.genesis.params.block_reward) if notice.served
                  else self.genesis.params.block_reward)
        tpl = build_template(self.store, self.genesis, parent, r, miner_pubkey, txs, ts, moves, reward=reward)
        champion = adv.before.tasks[task_id].champion.model_hash if notice.served else bytes(32)
        return dataclasses.replace(tpl, task_id=task_id, shard_index=index, stake=self.stake(miner_pubkey),
                                   champion_model_hash=champion)


def _parked_size(block: Block) -> int:
    """Bytes a parked orphan holds, near enough: its model and payload, and its transfers."""
    return len(block.model) + len(block.payload) + 200 * len(block.txs)
