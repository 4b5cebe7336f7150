"""Property tests of the task schedule and the bounty ledger (PROTOCOL §3.13), pure: consensus.protocol.registry folded
the way a live node does (round by round) and the way a syncing node does (from each block's anchor, with the
activations its beacon lists), plus a hypothesis state machine for total supply under escrow, payouts,
refunds, forfeits and transfers, applying moves with chain.state.apply_moves (the ledger's own code)."""
from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from chain.address import address_of
from chain.state import BURN_ACCOUNT, apply_moves
from consensus.protocol.registry import ChampionRecord, Registry, advance, genesis_registry, payout_move
from consensus.protocol.tasks import ANNOUNCE, EXTEND, TaskAnnouncement, TaskExtension, escrow_account

GENESIS = hashlib.sha256(b"genesis").digest()
CHAMP0 = ChampionRecord(GENESIS, 0, 0, bytes(32), b"m" * 32, 0, 0, 0, 0)
KEYS = [hashlib.sha256(b"key%d" % i).digest() for i in range(4)]


def announcement(i: int, bounty: int = 0, per: int = 0, sponsor: bytes = KEYS[0]) -> TaskAnnouncement:
    return TaskAnnouncement(ANNOUNCE, 1, "popchain-x", b"package-%d" % i, b"champion-%d" % i, bounty, per, sponsor)


def extension(task_id: int, seq: int, n: int, i: int) -> TaskExtension:
    return TaskExtension(EXTEND, 1, "popchain-x", task_id, seq, tuple(hashlib.sha256(b"c%d-%d" % (i, k)).digest()
                                                                         for k in range(n)),
                         tuple(b"x" * 120 for _ in range(n)))


class Book:
    """Messages and their shard counts (what consensus.engine.TaskBook provides from the store)."""

    def __init__(self) -> None:
        self.msgs: dict = {}
        self.counts: dict[bytes, int] = {}

    def add(self, msg, n: int) -> bytes:
        self.msgs[msg.msg_hash] = msg
        self.counts[msg.msg_hash] = n
        return msg.msg_hash

    def fold(self, reg: Registry, anchor_round: int, r: int, acts):
        return advance(reg, anchor_round, r, acts, self.msgs, lambda m: self.counts[m.msg_hash],
                       lambda m: b"h" * 32, 0)


# a chain history: per round, the task messages activated at it (announcement shard counts / extensions of
# an existing task) and whether the round's block is crowned
round_st = st.tuples(st.lists(st.one_of(st.tuples(st.just("a"), st.integers(1, 4)),
                                        st.tuples(st.just("e"), st.integers(0, 5), st.integers(1, 3))),
                              max_size=2), st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5), st.lists(round_st, min_size=1, max_size=30))
def test_schedule_from_blocks_agrees_with_the_live_fold_and_uses_every_shard_once(n0, history):
    book = Book()
    live = genesis_registry(GENESIS, n0, CHAMP0)
    anchor_reg, anchor_round, acts_since = live, 0, []
    served_log: list = []
    n_ann = 0
    for q, (events, crowned) in enumerate(history, start=1):
        # the keyholder lists what applies, in order (an extension of an unknown task or with a stale seq is not
        # activated: the keyholder skips it, exactly as Keyholder._activations does)
        for ev in events:
            if ev[0] == "a":
                n_ann += 1
                msg, n = announcement(n_ann), ev[1]
            else:
                t = live.task(ev[1])
                if t is None:
                    continue
                msg, n = extension(t.task_id, t.extensions + 1, ev[2], q * 10 + ev[2]), ev[2]
            h = book.add(msg, n)
            live, _ = live.activate(msg, round=q, height=0, n_shards=n, champion_hash=b"h" * 32)
            acts_since.append((q, h))
        served = live.schedule()
        # a syncing node: re-derive round q's (task, shard) from the anchor and the beacon's activations alone
        adv = book.fold(anchor_reg, anchor_round, q, acts_since)
        assert adv.served == served
        assert (served is None) == all(t.shards_left == 0 for t in live.tasks)
        if served is not None:
            served_log.append(served)
            live = live.consume(served)
        if crowned and served is not None:
            after = adv.before.consume(served)
            # the block's registry equals the live one (up to refund flags, which only blocks apply)
            assert [(t.task_id, t.shards_used, t.batches) for t in after.tasks] == \
                   [(t.task_id, t.shards_used, t.batches) for t in live.tasks]
            anchor_reg, anchor_round, acts_since = after, q, []
    # every shard served at most once, in order per task; round-robin: no task served twice in a row while
    # another had shards left
    assert len(served_log) == len(set(served_log))
    for t in live.tasks:
        mine = [s for tid, s in served_log if tid == t.task_id]
        assert mine == list(range(1, len(mine) + 1))
        assert len(mine) == t.shards_used <= t.shards_total


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=2, max_size=5), st.integers(1, 40))
def test_round_robin_is_fair(counts, rounds):
    """With every task still holding shards, k consecutive rounds serve k distinct tasks (k ≤ #tasks)."""
    book = Book()
    reg = genesis_registry(GENESIS, 100, CHAMP0)
    for i, _ in enumerate(counts):
        msg = announcement(i + 1)
        book.add(msg, 100)
        reg, _ = reg.activate(msg, round=1, height=0, n_shards=100)
    n = len(reg.tasks)
    served = []
    for _ in range(min(rounds, 99)):
        s = reg.schedule()
        served.append(s[0])
        reg = reg.consume(s)
    for i in range(len(served) - n + 1):
        assert len(set(served[i:i + n])) == n


# ---------------------------------------------------------------- supply state machine

REWARD = 50
ALLOC = {address_of(k): 1_000 for k in KEYS}


class Ledger(RuleBasedStateMachine):
    """Random announcements (bounty, per-crowning, sponsor), extensions, void and crowned rounds, transfers and
    forfeits; blocks apply exactly the moves the rules compute (forfeits, escrow, refunds, payout)."""

    def __init__(self) -> None:
        super().__init__()
        self.book = Book()
        self.bal: dict[bytes, int] = dict(ALLOC)
        self.reg = genesis_registry(GENESIS, 3, CHAMP0)     # registry at the anchor
        self.anchor_round, self.acts, self.round, self.blocks, self.n_ann = 0, [], 0, 0, 0
        self.pending_reg = self.reg                         # the keyholder's view (for what applies)

    def _apply(self, moves) -> None:
        state = {a: b << 64 for a, b in self.bal.items()}
        err = apply_moves(state, lambda a: 0, moves)
        assert err is None
        self.bal = {a: w >> 64 for a, w in state.items()}

    @rule(bounty=st.integers(0, 3000), per=st.integers(0, 500), sponsor=st.sampled_from(KEYS),
          n=st.integers(1, 3))
    def announce(self, bounty, per, sponsor, n):
        self.n_ann += 1
        msg = announcement(self.n_ann, bounty, per, sponsor)
        self.book.add(msg, n)
        self.acts.append((self.round + 1, msg.msg_hash))

    @rule(task=st.integers(0, 6), n=st.integers(1, 2))
    def extend(self, task, n):
        adv = self.book.fold(self.reg, self.anchor_round, self.round + 1, self.acts)
        t = adv.before.task(task)
        if t is None:
            return
        seq = t.extensions + 1   # the fold to round + 1 already applied every listed activation
        msg = extension(task, seq, n, self.n_ann * 100 + len(self.acts))
        self.book.add(msg, n)
        self.acts.append((self.round + 1, msg.msg_hash))

    @rule(crowned=st.booleans(), miner=st.sampled_from(KEYS), forfeit=st.integers(0, 300),
          pay=st.tuples(st.sampled_from(KEYS), st.sampled_from(KEYS), st.integers(1, 400)))
    def play_round(self, crowned, miner, forfeit, pay):
        self.round += 1
        adv = self.book.fold(self.reg, self.anchor_round, self.round, self.acts)
        if adv.served is None or not crowned:
            return                                   # void or idle: no block, no moves
        task_id, _ = adv.served
        moves = ((address_of(miner), BURN_ACCOUNT, forfeit),) + adv.moves + payout_move(adv.before, task_id, miner)
        self._apply(moves)
        src, dst, amount = pay                       # a transfer inside the block (after the moves)
        if self.bal.get(address_of(src), 0) >= amount:
            self.bal[address_of(src)] -= amount
            self.bal[address_of(dst)] = self.bal.get(address_of(dst), 0) + amount
        self.bal[address_of(miner)] = self.bal.get(address_of(miner), 0) + REWARD
        self.blocks += 1
        self.reg = adv.before.consume(adv.served)
        self.anchor_round, self.acts = self.round, []

    @invariant()
    def supply_is_allocations_plus_rewards(self):
        assert sum(self.bal.values()) == sum(ALLOC.values()) + REWARD * self.blocks
        assert all(b >= 0 for b in self.bal.values())

    @invariant()
    def a_refunded_task_holds_nothing(self):
        for t in self.reg.tasks:
            if t.settled and t.task_id:
                assert self.bal.get(escrow_account(t.task_id), 0) == 0


TestLedger = Ledger.TestCase
TestLedger.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


# ---------------------------------------------------------------- statement encodings with a schedule

acts_st = st.lists(st.tuples(st.integers(1, 50), st.binary(min_size=32, max_size=32)), max_size=5,
                   unique_by=lambda a: a[1]).map(lambda xs: sorted(xs, key=lambda a: a[0]))


@settings(max_examples=150, deadline=None)
@given(st.integers(50, 60), st.integers(0, 2**16 - 1), st.integers(1, 2**32 - 1), acts_st)
def test_notice_and_beacon_roundtrip_with_a_schedule(r, task_id, shard, acts):
    from chain.crypto import Keypair
    from consensus.protocol.messages import AnchorNotice, Beacon, make_anchor_notice, make_beacon
    kp = Keypair.from_seed(bytes(32))
    n = make_anchor_notice([kp], "popchain-x", r, bytes(32), 0, 5, task_id=task_id, shard_index=shard,
                           activations=acts)
    b = make_beacon([kp], "popchain-x", r, bytes(32), [(bytes(32), kp.public, bytes(32), bytes(32))], bytes(32), task_id=task_id,
                    shard_index=shard, activations=acts)
    assert AnchorNotice.decode(n.encode()) == n and Beacon.decode(b.encode()) == b
    assert (n.served, n.activations) == (b.served, b.activations) and n.verify([kp.public], 1)
    idle = make_anchor_notice([kp], "popchain-x", r, bytes(32), 0, 5, shard_index=0)
    assert idle.idle and idle.served is None


def test_malformed_schedules_do_not_decode():
    import pytest

    from chain.crypto import Keypair
    from chain.errors import DecodeError
    from consensus.protocol.messages import make_anchor_notice, make_beacon
    kp = Keypair.from_seed(bytes(32))
    h = bytes(32)
    for kw in (dict(shard_index=0, task_id=3),                       # idle names task 0
               dict(activations=[(9, h)]),                           # activated after its own round (r = 5)
               dict(activations=[(3, h), (2, bytes([1]) * 32)]),     # rounds out of order
               dict(activations=[(2, h), (3, h)])):                  # a message listed twice
        with pytest.raises(DecodeError):
            make_anchor_notice([kp], "popchain-x", 5, h, 0, 5, **kw)
    with pytest.raises(DecodeError):                                 # a ledger round's beacon names task 0
        make_beacon([kp], "popchain-x", 5, h, [(h, kp.public, h, h)], h, shard_index=0, task_id=2)
    ledger = make_beacon([kp], "popchain-x", 5, h, [(h, kp.public, h, h)], h, shard_index=0)   # issue 21
    assert ledger.idle and ledger.served is None
