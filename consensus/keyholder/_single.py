"""The keyholder's round state machine (PROTOCOL §3.10), driven by an explicit ``now`` (seconds): no clock.

open round r (anchor notice on the engine's tip, carrying the bond settlement of the rounds since that anchor)
→ after W, and only once at least one entry was accepted (a round with no entries waits: its shard is not
revealed; if the first entry comes after W, the window runs W more from then): beacon r (journal "round r
revealed" + exact beacon bytes, synced, BEFORE returning it) → after O: close r (the engine's tip is the best
valid block by fork choice, or the anchor itself: void) → open r+1 on it. Round r serves the (task, shard) the
schedule gives (consensus.registry, §3.13); the notice activates the task messages gossiped since (those the
keyholder holds the shard keys of: ``add_task_secret``). When every task is exhausted the next notice is *idle*
(it finalises the last round and opens nothing: the closing notice); the keyholder then waits, and an
announcement or extension lets it open the next round with a notice that activates it. When more than E entries arrive it keeps the E with
the largest stake at the anchor (ties: lower header hash), not the first E. The journal lives in the store's meta keys, so a restarted
keyholder resumes where it was and re-sends (never re-signs) its beacon.

One Keyholder process holds every key it signs with (≥ threshold); multi-party signing is out of scope.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chain.crypto import Keypair
from chain.encoding import check_bytes, check_int, check_list, check_list_max, pack, unpack
from chain.errors import DecodeError, RuleError
from consensus.engine import Engine
from consensus.genesis import Genesis
from consensus.member import MAX_FILE_SIZE, MEMBER_VERSION, check_member, decode_member
from consensus.messages import (
    MAX_ACTIVATIONS,
    MAX_KEYHOLDERS,
    MAX_SETTLE,
    AnchorNotice,
    Beacon,
    Entry,
    Forfeits,
    make_anchor_notice,
    make_beacon,
)
from consensus.taskbook import activation_budget
from ml.shards import SecretTask

P_OPEN = b"k/open/"          # + u32 round -> pack([opened_ms, notice bytes])
P_ENTRY = b"k/entry/"        # + u32 round + miner -> entry bytes (accepted, first come)
P_REVEAL = b"k/revealed/"    # + u32 round -> pack([revealed_ms, beacon bytes])
P_WAIT = b"k/wait/"          # + u32 round -> pack([ms]): the window ran out empty; then when the first entry came
P_SECRET = b"k/tsecret/"     # + task message id -> ml SecretTask bytes (the shard keys of that batch)
KEYFILE_VERSION = 1


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def keyholder_file(secret_package: bytes, keypairs: Sequence[Keypair]) -> bytes:
    """The keyholder's secret file: the shard keys (ml SecretTask bytes) and the signing seeds."""
    return pack([KEYFILE_VERSION, secret_package, [kp.seed for kp in keypairs]])


def load_keyholder_file(data: bytes, genesis: Genesis | None = None) -> tuple[SecretTask, tuple[Keypair, ...]]:
    """(shard keys, signing keys) of a keyholder file: a version-1 single-keyholder file, or a version-2
    committee member file (consensus.member) of a 1-of-1 committee, whose one share of each key IS the key.
    A member of a larger committee raises ValueError (it needs the committee protocol). With ``genesis`` a
    member file is checked against it (RuleError("bad-key-share"))."""
    f = unpack(data, max_size=MAX_FILE_SIZE)
    if isinstance(f, list) and f and f[0] == MEMBER_VERSION:
        member = decode_member(f)
        if genesis is not None:
            check_member(member, genesis)
        return member.whole_keys(), (member.keypair,)
    f = check_list(f, 3, "keyholder file")
    check_int(f[0], KEYFILE_VERSION, KEYFILE_VERSION, "keyholder file version")
    if type(f[1]) is not bytes:
        raise DecodeError("keyholder file: secret package must be bytes")
    seeds = check_list_max(f[2], MAX_KEYHOLDERS, "keyholder file seeds")
    return SecretTask.decode(f[1]), tuple(Keypair.from_seed(check_bytes(s, 32, "seed")) for s in seeds)


Rank = tuple[int, int]


def admit_ranked(listed: Sequence[Rank], new: Rank, capacity: int) -> tuple[bool, int | None]:
    """(admit, index to evict) for a newcomer of rank ``new`` against the ``listed`` ranks (distinct, larger
    is better). Applied entry by entry in any arrival order, the survivors are exactly the ``capacity`` largest
    ranks: the listing does not depend on who came first (§3.3)."""
    if len(listed) < capacity:
        return True, None
    worst = min(range(len(listed)), key=listed.__getitem__)
    if new <= listed[worst]:
        return False, None
    return True, worst


@dataclass(frozen=True)
class RoundClosed:
    round: int
    winner: bytes | None        # header hash of the crowned block, None if void
    anchor: bytes               # anchor of the next round


@dataclass(frozen=True)
class Done:
    round: int                  # the last round (no shards left)


Action = AnchorNotice | Beacon | RoundClosed | Done


class Keyholder:
    def __init__(self, engine: Engine, secret: SecretTask | bytes, keypairs: Sequence[Keypair]) -> None:
        self.engine = engine
        self.store = engine.store
        self.genesis = engine.genesis
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
        self.store.meta_put(P_SECRET + msg_hash, st.encode())
        self._secrets[msg_hash] = st

    def has_secret(self, msg_hash: bytes) -> bool:
        return self._secret(msg_hash) is not None

    def _secret(self, msg_hash: bytes) -> SecretTask | None:
        hit = self._secrets.get(msg_hash)
        if hit is None:
            raw = self.store.meta_get(P_SECRET + msg_hash)
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

    def _activations(self, anchor, r: int) -> tuple[list[tuple[int, bytes]], tuple[int, int] | None]:
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
        items = self.store.meta_items(P_OPEN)
        if not items:
            return None
        key, value = items[-1]
        opened_ms, notice = unpack(value, max_size=1 << 16)
        return int.from_bytes(key[-4:], "big"), opened_ms, AnchorNotice.decode(notice)

    def _revealed(self, r: int) -> tuple[int, Beacon] | None:
        raw = self.store.meta_get(P_REVEAL + _u32(r))
        if raw is None:
            return None
        at_ms, beacon = unpack(raw, max_size=1 << 20)
        return at_ms, Beacon.decode(beacon)

    def accepted_entries(self, r: int) -> list[Entry]:
        return [Entry.decode(v) for _, v in self.store.meta_items(P_ENTRY + _u32(r))]

    @property
    def done(self) -> bool:
        """Every task is exhausted: the last notice was idle (the keyholder waits for a task message)."""
        opened = self._opened()
        return opened is not None and opened[2].idle

    # ------------------------------------------------------------ entries

    def _rank(self, entry: Entry) -> tuple[int, int]:
        """Larger is kept: stake at the anchor, then the lower header hash."""
        return (self.engine.stake(entry.miner), -int.from_bytes(entry.header_hash, "big"))

    def on_entry(self, entry: Entry) -> bool:
        """Accept an entry for the open round: engine rule, a balance covering this bond and the ones the
        round's notice already charges the key, one per miner; beyond E, the E largest stakes are kept. True
        if accepted now (journaled, synced)."""
        opened = self._opened()
        if opened is None or entry.round != opened[0] or self._revealed(entry.round) is not None:
            return False
        self.engine.check_entry(entry)
        key = P_ENTRY + _u32(entry.round) + entry.miner
        if self.store.meta_get(key) is not None:
            return False
        bond = self.genesis.params.entry_bond
        owed = dict(opened[2].forfeits).get(entry.miner, 0)
        if self.engine.stake(entry.miner) < bond * (1 + owed):
            raise RuleError("insufficient-stake", f"balance does not cover this bond and {owed} forfeited ones")
        accepted = self.accepted_entries(entry.round)
        admit, evict = admit_ranked([self._rank(e) for e in accepted], self._rank(entry),
                                    self.genesis.params.max_entries)
        if not admit:
            return False
        changes: dict[bytes, bytes | None] = {key: entry.encode()}
        if evict is not None:
            changes[P_ENTRY + _u32(entry.round) + accepted[evict].miner] = None
        self.store.meta_write(changes)
        return True

    def settlement(self, anchor_round: int, r: int) -> tuple[list[bytes], Forfeits]:
        """(models opened, (miner, k) forfeits) over rounds anchor_round … r−1: every listed entry the
        engine saw opened records its model; every other one forfeits a bond (§3.9). Capped at MAX_SETTLE
        each (lowest first), which takes a void streak of MAX_SETTLE / E rounds to reach."""
        opened: set[bytes] = set()
        owed: dict[bytes, int] = {}
        for q in range(max(1, anchor_round), r):
            beacon = self.engine.beacon(q)
            if beacon is None:
                continue
            seen = self.engine.openings(q)
            for header_hash, miner in beacon.listed:
                if header_hash in seen:
                    opened.add(seen[header_hash][1])
                else:
                    owed[miner] = owed.get(miner, 0) + 1
        return sorted(opened)[:MAX_SETTLE], tuple(sorted(owed.items()))[:MAX_SETTLE]

    # ------------------------------------------------------------ the state machine

    def _open(self, r: int, now_ms: int) -> AnchorNotice:
        anchor = self.engine.tip()
        # never before the anchor's timestamp: every block of the round then has a valid timestamp (§3.6 step 4)
        opened_ms = max(now_ms, anchor.timestamp * 1000)
        deadline = opened_ms + self.genesis.params.entry_window_s * 1000
        models, forfeits = self.settlement(anchor.round, r)
        acts, served = self._activations(anchor, r)
        task_id, index = served if served is not None else (0, 0)
        notice = make_anchor_notice(self.keypairs, self.genesis.chain_id, r, anchor.hash, anchor.height, deadline,
                                    opened=models, forfeits=forfeits, task_id=task_id, shard_index=index,
                                    activations=acts)
        self.store.meta_put(P_OPEN + _u32(r), pack([opened_ms, notice.encode()]))
        self.engine.add_anchor_notice(notice)
        return notice

    def _reveal(self, r: int, notice: AnchorNotice, opened_ms: int, now_ms: int) -> Beacon:
        entries = [(e.header_hash, e.miner) for e in self.accepted_entries(r)]
        anchor = self.store.get_header(notice.anchor_hash)
        beacon = make_beacon(self.keypairs, self.genesis.chain_id, r, notice.anchor_hash, entries,
                             self._key(anchor, notice), opened_ms=opened_ms, time_ms=max(now_ms, opened_ms),
                             opened=notice.opened, forfeits=notice.forfeits, task_id=notice.task_id,
                             shard_index=notice.shard_index, activations=notice.activations)
        # journal first (synced): a crash after this line re-sends these exact bytes, never a new beacon
        self.store.meta_put(P_REVEAL + _u32(r), pack([now_ms, beacon.encode()]))
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
        if notice.idle:
            # exhausted: the idle notice finalised round r-1; a task message with keys lets round r+1 open
            tip = self.engine.tip()
            if self.activatable() and tip.hash == notice.anchor_hash and self._activations(tip, r + 1)[1]:
                return actions + [self._open(r + 1, now_ms)]
            return actions + [Done(r - 1)] if not actions else actions
        revealed = self._revealed(r)
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
        actions += [RoundClosed(r, winner, next_notice.anchor_hash), next_notice]
        if next_notice.idle:
            actions.append(Done(r))
        return actions

    def _reveal_at(self, r: int, opened_ms: int, now_ms: int) -> int | None:
        """When round r may reveal (ms), or None while it has no entry. A window that ran out empty is
        journaled; the first step that then sees an entry starts W again, so others can still enter."""
        window = self.genesis.params.entry_window_s * 1000
        if now_ms < opened_ms + window:
            return opened_ms + window
        raw = self.store.meta_get(P_WAIT + _u32(r))
        has_entries = bool(self.accepted_entries(r))
        if raw is None:
            if has_entries:
                return opened_ms + window
            self.store.meta_put(P_WAIT + _u32(r), pack([0]))
            return None
        (first_ms,) = unpack(raw, max_size=32)
        if not has_entries:
            return None
        if first_ms == 0:
            first_ms = now_ms
            self.store.meta_put(P_WAIT + _u32(r), pack([first_ms]))
        return first_ms + window

    def waiting(self) -> bool:
        """True while the open round has no entry after its window (nothing is revealed)."""
        opened = self._opened()
        if opened is None or opened[2].idle or self._revealed(opened[0]) is not None:
            return False
        return self.store.meta_get(P_WAIT + _u32(opened[0])) is not None and not self.accepted_entries(opened[0])

    def next_deadline(self) -> float | None:
        """When step() next has something to do (seconds), or None when done or waiting for a first entry
        (``done`` tells which); lets the node sleep exactly."""
        opened = self._opened()
        if opened is None:
            return 0.0
        r, opened_ms, notice = opened
        if notice.idle:
            return None
        revealed = self._revealed(r)
        if revealed is None:
            window = self.genesis.params.entry_window_s * 1000
            raw = self.store.meta_get(P_WAIT + _u32(r))
            if raw is None:
                return (opened_ms + window) / 1000
            (first_ms,) = unpack(raw, max_size=32)
            return (first_ms + window) / 1000 if first_ms else None   # None: waiting for a first entry
        return (revealed[0] + self.genesis.params.opening_window_s * 1000) / 1000
