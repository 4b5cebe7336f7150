"""The keyholder's round state machine (PROTOCOL §3.10), driven by an explicit ``now`` (seconds): no clock.

open round r (anchor notice on the engine's tip, carrying the bond settlement of the rounds since that anchor)
→ after W, and only once at least one entry was accepted (a round with no entries waits: its shard is not
revealed; if the first entry comes after W, the window runs W more from then): beacon r (journal "round r
revealed" + exact beacon bytes, synced, BEFORE returning it) → after O: close r (the engine's tip is the best
valid block by fork choice, or the anchor itself: void) → open r+1 on it. Round r serves the (task, shard) the
schedule gives (consensus.protocol.registry, §3.13); the notice activates the task messages gossiped since (those the
keyholder holds the shard keys of: ``add_task_secret``). When every task is exhausted the next notice is *idle*
(it finalises the last round and opens nothing: the closing notice); the keyholder then waits, and an
announcement or extension lets it open the next round with a notice that activates it. When more than E entries arrive it keeps the E with
the largest stake at the anchor (ties: lower header hash), not the first E. The journal lives in the store's meta keys, so a restarted
keyholder resumes where it was and re-sends (never re-signs) its beacon.

One Keyholder process holds every key it signs with (≥ threshold); a committee of several processes is
``Member``'s. The rules both apply to entries, settlement and reveal time are ``KeyholderBase``'s.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from chain.block import Header
from chain.crypto import Keypair
from chain.encoding import pack, unpack
from chain.errors import RuleError
from consensus._meta import P_KH_ENTRY, P_KH_OPEN, P_KH_REVEAL, P_KH_SECRET, P_WAIT, u32
from consensus.engine import Engine, activation_budget
from consensus.keyholder._base import KeyholderBase
from consensus.protocol.messages import (
    MAX_ACTIVATIONS,
    MAX_NOTICE_SIZE,
    AnchorNotice,
    Beacon,
    Entry,
    make_anchor_notice,
    make_beacon,
)
from ml.shards import SecretTask

__all__ = ["Action", "Done", "Keyholder", "RoundClosed"]


@dataclass(frozen=True)
class RoundClosed:
    round: int
    winner: bytes | None        # header hash of the round's block (crowning or plain), None if void
    anchor: bytes               # anchor of the next round
    crowned: bool = False       # the block crowned (False with a winner: a plain block, issue 21)


@dataclass(frozen=True)
class Done:
    round: int                  # the last round (no shards left)


Action = AnchorNotice | Beacon | RoundClosed | Done


class Keyholder(KeyholderBase):
    """The single keyholder: one process holding at least the genesis threshold of signing keys and every shard
    key (see the module docstring)."""

    def __init__(self, engine: Engine, secret: SecretTask | bytes, keypairs: Sequence[Keypair], *,
                 tie_secret: bytes | None = None) -> None:
        super().__init__(engine, tie_secret=tie_secret)
        self.secret = SecretTask.decode(secret) if isinstance(secret, bytes) else secret
        self.keypairs = tuple(keypairs)
        mine = {kp.public for kp in self.keypairs} & set(self.genesis.keyholders)
        if len(mine) < self.genesis.threshold:
            raise ValueError(f"keyholder holds {len(mine)} genesis keys, threshold is {self.genesis.threshold}")
        if len(self.secret.keys) != self.genesis.n_rounds:
            raise ValueError("secret package does not match the genesis task (round count differs)")
        self._resent = False
        self._secrets: dict[bytes, SecretTask] = {self.genesis.hash: self.secret}

    # ------------------------------------------------------------ task secrets (§3.13)

    def add_task_secret(self, msg_hash: bytes, secret: SecretTask | bytes, *, n_shards: int | None = None) -> None:
        """Keep the shard keys of an announcement's package or an extension's batch (journaled, synced): the
        keyholder activates only task messages whose keys it holds, so it can always reveal what it opens.
        ``n_shards``: the message's shard count, checked against the keys (ValueError)."""
        st = SecretTask.decode(secret) if isinstance(secret, bytes) else secret
        if n_shards is not None and len(st.keys) != n_shards:
            raise ValueError(f"the secret holds {len(st.keys)} shard keys, the task message has {n_shards} shards")
        self.store.meta_put(P_KH_SECRET + msg_hash, st.encode())
        self._secrets[msg_hash] = st

    def has_secret(self, msg_hash: bytes) -> bool:
        return self._secret(msg_hash) is not None

    def _secret(self, msg_hash: bytes) -> SecretTask | None:
        hit = self._secrets.get(msg_hash)
        if hit is None:
            raw = self.store.meta_get(P_KH_SECRET + msg_hash)
            if raw is not None:
                hit = self._secrets[msg_hash] = SecretTask.decode(raw)
        return hit

    def _key(self, anchor, notice: AnchorNotice) -> bytes:
        """Shard key of the (task, shard) the notice's round serves."""
        adv = self.engine.book.advance(self.engine.book.registry_at(anchor), anchor, notice.round, notice.activations)
        task_id, index = notice.served  # type: ignore[misc]
        _, msg_hash, first = adv.before.tasks[task_id].batch_of(index)
        secret = self._secret(msg_hash)
        if secret is None:
            raise ValueError(f"no shard keys for task {task_id} batch {msg_hash.hex()[:16]}")
        return secret.key(index - first + 1)

    def _activations(self, anchor: Header, r: int) -> tuple[list[tuple[int, bytes]], tuple[int, int] | None]:
        """(activations since the anchor for notice r, the (task, shard) round r then serves): those the previous
        round's notice carried on the same anchor, plus every pending task message that applies in order and
        whose shard keys this keyholder holds."""
        book = self.engine.book
        reg = book.registry_at(anchor)
        prev = self.engine.notice(r - 1) if r > 1 else None
        acts = list(prev.activations) if prev is not None and prev.anchor_hash == anchor.hash else []
        adv = book.advance(reg, anchor, r, acts)
        budget = activation_budget(self.genesis.params.max_block_bytes)
        budget -= sum(len(self.engine.activation_bytes_of(h)) for _, h in acts)
        for msg in self.engine.pending_task_messages():
            if len(acts) >= MAX_ACTIVATIONS or not self.has_secret(msg.msg_hash):
                continue
            if len(msg.encode()) > budget:
                continue   # the round's blocks could not carry it: a later round's (same anchor) will
            budget -= len(msg.encode())
            if any(h == msg.msg_hash for _, h in acts):
                continue
            try:
                adv = book.advance(reg, anchor, r, [*acts, (r, msg.msg_hash)])
            except RuleError:
                continue   # does not apply (yet): e.g. an extension whose predecessor is not activated
            acts.append((r, msg.msg_hash))
        return acts, adv.served

    def activatable(self) -> bool:
        """True if a pending task message could be activated (an exhausted chain can then go on)."""
        return any(self.has_secret(m.msg_hash) for m in self.engine.pending_task_messages())

    # ------------------------------------------------------------ journal

    def _opened(self) -> tuple[int, int, AnchorNotice] | None:
        """(round, opened_ms, notice) of the last opened round."""
        items = self.store.meta_before(P_KH_OPEN)     # the newest key alone (flat cost: no scan of the journal)
        if not items:
            return None
        key, value = items[0]
        opened_ms, notice = unpack(value, max_size=MAX_NOTICE_SIZE + 64)
        return int.from_bytes(key[-4:], "big"), opened_ms, AnchorNotice.decode(notice)

    def _revealed(self, r: int) -> tuple[int, Beacon] | None:
        raw = self.store.meta_get(P_KH_REVEAL + u32(r))
        if raw is None:
            return None
        at_ms, beacon = unpack(raw, max_size=1 << 20)
        return at_ms, Beacon.decode(beacon)

    def accepted_entries(self, r: int) -> list[Entry]:
        return [Entry.decode(v) for _, v in self.store.meta_items(P_KH_ENTRY + u32(r))]

    def _entry_key(self, r: int, miner: bytes) -> bytes:
        return P_KH_ENTRY + u32(r) + miner

    @property
    def done(self) -> bool:
        """Every task is exhausted: the last notice was idle (the keyholder waits for a task message)."""
        opened = self._opened()
        return opened is not None and opened[2].idle

    # ------------------------------------------------------------ entries

    def on_entry(self, entry: Entry) -> bool:
        """Accept an entry for the open round: engine rule, a bond account covering this bond and the ones
        the key still owes, one per miner; the journal keeps the MAX_CANDIDATES largest stakes. True if
        accepted now (journaled, synced)."""
        opened = self._opened()
        if opened is None or entry.round != opened[0] or self._revealed(entry.round) is not None:
            return False
        return self._keep_entry(entry, entry.encode())

    # ------------------------------------------------------------ the state machine

    def _open(self, r: int, now_ms: int) -> AnchorNotice:
        anchor = self.engine.tip()
        # never before 1 s after the anchor's reveal (keyholder time; a miner's timestamp plays no part): every
        # block of the round still has a valid timestamp (§3.6 step 4, §3.7)
        opened_ms = max(now_ms, self.open_floor_ms(anchor))
        deadline = opened_ms + self.genesis.params.entry_window_s * 1000
        acts, served = self._activations(anchor, r)
        task_id, index = served if served is not None else (0, 0)
        notice = make_anchor_notice(self.keypairs, self.genesis.chain_id, r, anchor.hash, anchor.height, deadline,
                                    settlement=self.settlement(anchor, r), task_id=task_id, shard_index=index,
                                    activations=acts)
        self.store.meta_put(P_KH_OPEN + u32(r), pack([opened_ms, notice.encode()]))
        self.engine.add_anchor_notice(notice)
        return notice

    def _reveal(self, r: int, notice: AnchorNotice, opened_ms: int, now_ms: int) -> Beacon:
        anchor = self.store.get_header(notice.anchor_hash)
        # a ledger round (idle notice, issue 21) reveals no shard: its key is fresh randomness that only ranks
        # the entries (slot values) and the plain blocks, unknown to everyone when they entered
        key = os.urandom(32) if notice.idle else self._key(anchor, notice)
        # the listing: the E largest stakes, ties by the slot value of this key (nobody knew it when entering)
        listed = self.listing(self.accepted_entries(r), key)
        beacon = make_beacon(self.keypairs, self.genesis.chain_id, r, notice.anchor_hash, listed, key,
                             opened_ms=opened_ms, time_ms=max(now_ms, opened_ms), settlement=notice.settlement,
                             task_id=notice.task_id, shard_index=notice.shard_index, activations=notice.activations)
        # journal first (synced): a crash after this line re-sends these exact bytes, never a new beacon
        self.store.meta_put(P_KH_REVEAL + u32(r), pack([now_ms, beacon.encode()]))
        self.engine.add_beacon(beacon)
        return beacon

    @staticmethod
    def _apply(add, message) -> None:
        try:
            add(message)   # a crash may have hit between the journal write and the engine update
        except RuleError:
            pass           # already superseded locally: the journal is the truth, re-sending is enough

    def step(self, now: float) -> list[Action]:
        """Advance by the clock; returns what to publish (notices, beacons) and what happened."""
        now_ms = int(now * 1000)
        params = self.genesis.params
        actions: list[Action] = []
        opened = self._opened()
        if not self._resent and opened is not None:
            # after a restart: re-announce the current round (identical bytes; peers ignore duplicates)
            self._resent = True
            actions.append(opened[2])
            self._apply(self.engine.add_anchor_notice, opened[2])
            revealed = self._revealed(opened[0])
            if revealed is not None:
                actions.append(revealed[1])
                self._apply(self.engine.add_beacon, revealed[1])
        self._resent = True
        if opened is None:
            actions.append(self._open(1, now_ms))
            return actions
        r, opened_ms, notice = opened
        revealed = self._revealed(r)
        if notice.idle and revealed is None and not self.accepted_entries(r):
            # exhausted: the idle notice finalised round r-1; a task message with keys lets round r+1 open.
            # Until then round r is a LEDGER round (issue 21): staked miners may enter for plain blocks
            tip = self.engine.tip()
            if self.activatable() and tip.hash == notice.anchor_hash and self._activations(tip, r + 1)[1]:
                return actions + [self._open(r + 1, now_ms)]
            self._reveal_at(r, opened_ms, now_ms)     # journals the empty window: the round waits for entries
            return actions + [Done(r - 1)] if not actions else actions
        if revealed is None:
            reveal_at = self._reveal_at(r, opened_ms, now_ms)
            if reveal_at is not None and now_ms >= reveal_at:
                actions.append(self._reveal(r, notice, opened_ms, now_ms))
            return actions
        revealed_ms, beacon = revealed
        if now_ms < revealed_ms + params.opening_window_s * 1000:
            return actions
        tip = self.engine.tip()
        winner = tip.hash if tip.hash != beacon.anchor_hash else None
        next_notice = self._open(r + 1, now_ms)
        crowned = winner is not None and self.engine.champion_at(tip.height) is not None
        actions += [RoundClosed(r, winner, next_notice.anchor_hash, crowned), next_notice]
        if next_notice.idle:
            actions.append(Done(r))
        return actions

    def waiting(self) -> bool:
        """True while the open round has no entry after its window (nothing is revealed)."""
        opened = self._opened()
        if opened is None or self._revealed(opened[0]) is not None:
            return False
        return self.store.meta_get(P_WAIT + u32(opened[0])) is not None and not self.accepted_entries(opened[0])

    def next_deadline(self) -> float | None:
        """When step() next has something to do (seconds), or None when done or waiting for a first entry
        (``done`` tells which); lets the node sleep exactly."""
        opened = self._opened()
        if opened is None:
            return 0.0
        r, opened_ms, notice = opened
        revealed = self._revealed(r)
        if notice.idle and revealed is None and not self.accepted_entries(r):
            return None       # a ledger round nobody entered: woken by an entry or a task message
        if revealed is None:
            window = self.genesis.params.entry_window_s * 1000
            raw = self.store.meta_get(P_WAIT + u32(r))
            if raw is None:
                return (opened_ms + window) / 1000
            (first_ms,) = unpack(raw, max_size=32)
            return (first_ms + window) / 1000 if first_ms else None   # None: waiting for a first entry
        return (revealed[0] + self.genesis.params.opening_window_s * 1000) / 1000
