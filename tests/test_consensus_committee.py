"""The keyholder committee's pure state machine (consensus.keyholder.Member): three members on real engines
(LevelDB in tmp dirs, real Ed25519), messages delivered by the test, an explicit clock. Attackers first: a dead
leader, n − t members stopped, a leader dropping an entry, a member signing two notices, and a byzantine
leader proposing many contents (hypothesis): at most one content ever gathers t signatures."""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.crypto import Keypair
from chain.encoding import pack
from chain.store import ChainStore
from consensus._meta import P_OPENING, u32
from consensus.engine import Engine
from consensus.keyholder import Fetch, Member, Refusal, failover_ms, load_member, member_file
from consensus.protocol.committee import (
    CommitteeMsg,
    Evidence,
    Kind,
    StatementBook,
    check_msg,
    leader,
    make_msg,
    notice_body,
    verify_evidence,
)
from consensus.protocol.genesis import GenesisParams, create_committee_genesis, create_genesis, load_genesis
from consensus.protocol.messages import AnchorNotice, Beacon, make_entry
from consensus.protocol.settlement import miner_funding
from ml.shards import SecretTask
from ml.task import synthetic

T0 = 1_900_000_000.0


def kp(label: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(b"committee-test/" + label.encode()).digest())


MEMBERS = sorted((kp(f"m{i}") for i in range(3)), key=lambda k: k.public)
MINERS = [kp(f"miner{i}") for i in range(3)]


@pytest.fixture(scope="module")
def chain():
    data = synthetic(b"committee-unit-tests-seed", n_samples=6 * 40 + 300, n_features=6, n_informative=3, n_classes=2)
    params = GenesisParams(entry_window_s=2, opening_window_s=2)
    kw = {"chain_id": "popchain-committee", "rounds": 6, "shard_size": 40,
              "allocations": [a for m in MINERS for a in miner_funding(m.public, 10**9, 10**8)], "params": params,
              "timestamp": int(T0) - 100, "n_train": 300, "seed": b"split"}
    # the same task twice (same rng): the whole keys to compare with, and the dealt committee chain
    _, secret = create_genesis(data, keyholder_pubkeys=[m.public for m in MEMBERS], threshold=2,
                               rng=_rng(), **kw)
    genesis, dealing = create_committee_genesis(data, keyholder_pubkeys=[m.public for m in MEMBERS],
                                                threshold=2, rng=_rng(), **kw)
    files = [member_file(genesis.hash, i + 1, k, 3, 2, [dealing.batches[i]]) for i, k in enumerate(MEMBERS)]
    return load_genesis(genesis.encode()), SecretTask.decode(secret), files


def _rng():
    counter = itertools.count()
    return lambda n: hashlib.shake_256(b"committee-rng" + next(counter).to_bytes(8, "big")).digest(n)


class Net:
    """Members on their own engines; ``up`` decides who steps and who receives."""

    def __init__(self, chain, root: Path) -> None:
        genesis, self.secret, files = chain
        self.genesis = genesis
        self.files = files
        self.members: list[Member] = []
        for i, k in enumerate(MEMBERS):
            engine = Engine(ChainStore.open(root / f"m{i}"), genesis)
            member = load_member(files[i], engine, root / f"d{i}")   # share files of later tasks: d{i}/key-shares
            assert member is not None and member.index == i
            self.members.append(member)
        self.root = root
        self.up = [True] * len(self.members)
        self.outs: list = []

    def close(self) -> None:
        for m in self.members:
            m.store.close()

    def deliver(self, src: int, out) -> None:
        self.outs.append((src, out))
        for j, m in enumerate(self.members):
            if j == src or not self.up[j]:
                continue
            if isinstance(out, CommitteeMsg):
                m.on_message(out)
            elif isinstance(out, AnchorNotice):
                m.engine.add_anchor_notice(out)
            elif isinstance(out, Beacon):
                m.engine.add_beacon(out)

    def step(self, now: float, rounds: int = 8) -> None:
        for _ in range(rounds):
            moved = False
            for i, m in enumerate(self.members):
                if self.up[i]:
                    for out in m.step(now):
                        moved = True
                        self.deliver(i, out)
            if not moved:
                return

    def enter(self, r: int, miners=MINERS, now: float = T0) -> None:
        anchor = next(m for i, m in enumerate(self.members) if self.up[i]).engine.final_hash()
        for k, miner in enumerate(miners):
            entry = make_entry(miner, self.genesis.chain_id, r, anchor, hashlib.sha256(bytes([r, k])).digest(),
                               hashlib.sha256(bytes([r, k, 1])).digest(), hashlib.sha256(bytes([r, k, 2])).digest())
            for i, m in enumerate(self.members):
                if self.up[i]:
                    m.engine.add_entry(entry)
                    m.on_entry(entry, now)

    def run_until(self, pred, start: float, limit: float = 60.0, dt: float = 0.1) -> float:
        now = start
        while now < start + limit:
            self.step(now)
            if pred():
                return now
            now += dt
        raise AssertionError("condition not reached")

    def live(self) -> list[Member]:
        return [m for i, m in enumerate(self.members) if self.up[i]]


@pytest.fixture
def net(chain, tmp_path):
    n = Net(chain, tmp_path)
    yield n
    n.close()


def _beacon(net: Net, r: int):
    return lambda: all(m.engine.beacon(r) is not None for m in net.live())


def _notice(net: Net, r: int):
    return lambda: all(m.engine.notice(r) is not None for m in net.live())


def test_two_of_three_round_reveals_the_genesis_key(net):
    t = net.run_until(_notice(net, 1), T0)
    net.enter(1, now=t)
    t = net.run_until(_beacon(net, 1), t)
    beacon = net.members[0].engine.beacon(1)
    assert beacon.shard_key == net.secret.key(1)
    assert len(beacon.signatures) >= 2 and beacon.verify(net.genesis.keyholders, 2)
    assert len(beacon.listed) == len(MINERS)
    # nobody entered a block: void, the next notice anchors on genesis again
    net.run_until(_notice(net, 2), t)
    assert net.members[1].engine.notice(2).anchor_hash == net.genesis.hash


def test_dead_leader_fails_over_and_reuses_cosigned_content(net):
    g = net.genesis
    t = net.run_until(_notice(net, 1), T0)
    net.enter(1, now=t)
    # kill round 1's beacon leader of attempt 0 before it reveals
    dead = [m.me for m in net.members].index(leader(g.keyholders, 1, 0))
    net.up[dead] = False
    t_beacon = net.run_until(_beacon(net, 1), t)
    window = g.params.entry_window_s
    # the next leader takes over one failover timeout after the reveal was due
    assert t_beacon - t <= window + failover_ms(window) / 1000 + 0.5
    assert net.members[(dead + 1) % 3].engine.beacon(1).shard_key == net.secret.key(1)


def test_chain_goes_on_with_n_minus_t_members_stopped(net):
    net.up[0] = False
    t = T0
    for r in (1, 2, 3):
        t = net.run_until(_notice(net, r), t)
        net.enter(r, now=t)
        t = net.run_until(_beacon(net, r), t)
    assert net.members[1].engine.beacon(3).shard_key == net.secret.key(3)


def test_one_member_alone_cannot_open_a_round(net):
    net.up[0] = net.up[1] = False
    with pytest.raises(AssertionError):
        net.run_until(_notice(net, 1), T0, limit=10)


def _hostile_draft(net: Net, r: int, listed_miners, attacker: int, attempt: int, now: float):
    m = net.members[attacker]
    notice = m.engine.notice(r)
    entries = [x for x in m.entries(r) if x.miner in listed_miners]
    draft = Beacon(3, net.genesis.chain_id, r, notice.anchor_hash, notice.entry_deadline_ms - 2000,
                   int(now * 1000), tuple(sorted(x.listing for x in entries)), bytes(32),
                   notice.settlement, notice.task_id, notice.shard_index, notice.activations)
    return make_msg(m.keypair, net.genesis.chain_id, Kind.PROPOSE_BEACON, r, attempt,
                    pack([draft.encode(), [x.encode() for x in entries]]))


def test_a_draft_dropping_a_valid_entry_is_refused_with_evidence(net):
    g = net.genesis
    t = net.run_until(_notice(net, 1), T0)
    net.enter(1, now=t)
    bad = [m.me for m in net.members].index(leader(g.keyholders, 1, 0))
    net.up[bad] = False      # the attacker does not run the honest code: it sends its own proposal
    net.step(t)              # the round waited for entries: its window runs W from the first one
    t += g.params.entry_window_s + 0.05
    msg = _hostile_draft(net, 1, {MINERS[0].public, MINERS[1].public}, bad, 0, t)
    net.deliver(bad, msg)
    net.step(t)
    refusals = [o for _, o in net.outs if isinstance(o, Refusal) and o.code == "dropped-entry"]
    evidence = [o for _, o in net.outs if isinstance(o, Evidence) and o.what == "dropped-entry"]
    assert {net.members.index(m) for m in net.live()} == {i for i, o in net.outs if isinstance(o, Refusal)
                                                            and o.code == "dropped-entry"}
    assert refusals and evidence and all(e.signer == net.members[bad].me for e in evidence)
    assert not any(isinstance(o, CommitteeMsg) and o.kind == Kind.RELEASE for _, o in net.outs)
    # the honest majority then reveals under the next leader, listing every entry
    net.run_until(_beacon(net, 1), t)
    assert len(net.live()[0].engine.beacon(1).listed) == len(MINERS)


def test_conflicting_signatures_leave_verifiable_evidence(net, chain):
    g = net.genesis
    liar = net.members[0]
    base = AnchorNotice(3, g.chain_id, 1, g.hash, 0, int(T0 * 1000) + 2000)
    other = replace(base, entry_deadline_ms=base.entry_deadline_ms + 1)
    a, b = (make_msg(liar.keypair, g.chain_id, Kind.SIGN_NOTICE, 1, 0,
                     pack([notice_body(n), liar.keypair.sign(n.sighash)])) for n in (base, other))
    book = StatementBook()
    assert book.observe(a, check_msg(a, g.chain_id, g.keyholders)) is None
    # the same content again (a later attempt re-signs it) is no evidence
    again = make_msg(liar.keypair, g.chain_id, Kind.SIGN_NOTICE, 1, 1, a.body)
    assert book.observe(again, check_msg(again, g.chain_id, g.keyholders)) is None
    ev = book.observe(b, check_msg(b, g.chain_id, g.keyholders))
    assert ev is not None and ev.signer == liar.me and verify_evidence(ev, g.chain_id, g.keyholders)
    assert Evidence.decode(ev.encode()) == ev
    assert liar.engine.add_committee_evidence(ev) and not liar.engine.add_committee_evidence(ev)
    assert liar.engine.committee_evidence() == [ev]
    # a forged "evidence" (second message not the liar's) does not verify
    forged = replace(ev, second=make_msg(net.members[1].keypair, g.chain_id, Kind.SIGN_NOTICE, 1, 0, b.body).encode())
    assert not verify_evidence(forged, g.chain_id, g.keyholders)


def test_restarted_members_never_sign_twice(net, chain, tmp_path):
    t = net.run_until(_notice(net, 1), T0)
    net.enter(1, now=t)
    t = net.run_until(_beacon(net, 1), t)
    # every member restarts in turn (a new Member on the same store: its journal survives)
    for i in range(3):
        old = net.members[i]
        net.members[i] = load_member(net.files[i], old.engine)
        t = net.run_until(_notice(net, 2 + i), t)
        net.enter(2 + i, now=t)
        t = net.run_until(_beacon(net, 2 + i), t)
    book = StatementBook()
    for _, o in net.outs:
        if isinstance(o, CommitteeMsg):
            assert book.observe(o, check_msg(o, net.genesis.chain_id, net.genesis.keyholders)) is None


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 3)), min_size=1, max_size=12))
def test_a_byzantine_leader_cannot_get_two_notices_signed_by_honest_members(chain, tmp_path_factory, order):
    """The liar (member 0) proposes up to four notice contents, each to some honest member at some attempt;
    honest members co-sign at most one content each, so with t = 2 > n / 2 the honest signatures never make
    two quorums: two contents can reach t only with the liar's own signature on both, which is evidence."""
    net = Net(chain, tmp_path_factory.mktemp("byz"))
    try:
        g = net.genesis
        liar = net.members[0]
        net.up[0] = False
        # content 0 is the notice every honest member computes (open time = genesis time); 1-3 are variants
        due = g.timestamp * 1000 + g.params.entry_window_s * 1000
        contents = [AnchorNotice(3, g.chain_id, 1, g.hash, 0, due + k) for k in range(4)]
        honest_sigs: dict[bytes, set[bytes]] = {}
        attempts = itertools.count()
        for k, target, _ in order:
            a = next(a for a in attempts if leader(g.keyholders, 1, a) == liar.me)
            msg = make_msg(liar.keypair, g.chain_id, Kind.PROPOSE_NOTICE, 1, a, pack([notice_body(contents[k]), []]))
            m = net.members[1 + target]
            m.on_message(msg)
            for out in m.step(T0 + 0.5):
                if isinstance(out, CommitteeMsg) and out.kind == Kind.SIGN_NOTICE:
                    honest_sigs.setdefault(check_msg(out, g.chain_id, g.keyholders).notice.sighash,
                                           set()).add(out.signer)
        per_member: dict[bytes, set[bytes]] = {}
        for content, signers in honest_sigs.items():
            for s in signers:
                per_member.setdefault(s, set()).add(content)
        assert all(len(c) == 1 for c in per_member.values())
        with_liar = [len(s) + 1 for s in honest_sigs.values()]
        assert sum(n >= 2 for n in with_liar) <= 2   # two quorums need the liar twice: evidence (tested above)
        assert sum(len(s) >= 2 for s in honest_sigs.values()) <= 1
        assert set(honest_sigs) <= {contents[0].sighash}   # deterministic content: only the honest notice
    finally:
        net.close()


def test_released_shares_are_checked_and_t_of_them_give_the_key(net):
    from chain.errors import RuleError
    from consensus.protocol.shares import KeyShare
    m0, m1 = net.members[0], net.members[1]
    s0, s1 = m0.shares.share_for(2), m1.shares.share_for(2)
    m0.shares.check_share(1, 2, s1)
    assert m0.shares.combine(2, {0: s0, 1: s1}) == net.secret.key(2)
    bad = KeyShare.decode(s1)
    for forged in (replace(bad, value=(bad.value + 1) % 2**255), replace(bad, member=1)):
        with pytest.raises(RuleError) as exc:
            m0.shares.check_share(1, 2, forged.encode())
        assert exc.value.code == "bad-key-share"
    with pytest.raises(RuleError):
        m0.shares.check_share(1, 3, s1)            # round 2's share offered for round 3


def test_members_whose_reveal_times_differ_still_agree(net):
    """Regression: a member that joined after round 1's empty window reveals at once when entries come (its
    attempt count is large), one that saw the window run out empty reveals W after the first entry (small):
    each used to look only at its own pending proposal, or not reach the other's, and the round wedged."""
    late = 2
    net.up[late] = False
    t = net.run_until(_notice(net, 1), T0)          # members 0 and 1 see the window run out empty
    net.members[late].engine.add_anchor_notice(net.members[0].engine.notice(1))   # the late one just joined
    net.up[late] = True
    other = next(i for i in (0, 1) if net.members[i].me != leader(net.genesis.keyholders, 1, 0))
    for i in (0, 1):
        if i != other:
            net.up[i] = False
    t += 5
    net.enter(1, now=t)
    net.run_until(_beacon(net, 1), t)
    assert net.members[late].engine.beacon(1).shard_key == net.secret.key(1)


def test_two_fully_signed_beacons_name_the_members_that_signed_both(net):
    """With t = 2 > n / 2 two different beacons of a round both reach t only if some member signed both: the
    engine keeps the first, refuses the second as equivocation, and /api/status names the double signers."""
    from consensus.protocol.messages import make_beacon
    from node.api import _signed_both
    g = net.genesis
    a, b, c = MEMBERS
    x = make_beacon([a, b], g.chain_id, 1, g.hash, [(bytes(32), MINERS[0].public, bytes(32), bytes(32))],
                    net.secret.key(1))
    y = make_beacon([b, c], g.chain_id, 1, g.hash, [(bytes(31) + b"\x01", MINERS[0].public, bytes(32), bytes(32))],
                    net.secret.key(1))
    e = net.members[0].engine
    e.add_anchor_notice(_signed_notice(g))
    assert e.add_beacon(x)
    with pytest.raises(Exception) as exc:
        e.add_beacon(y)
    assert getattr(exc.value, "code", "") == "equivocation"
    (_, kept, refused), = e.equivocations()
    assert _signed_both(kept, refused) == [b.public.hex()]


def _signed_notice(g):
    from consensus.protocol.messages import make_anchor_notice
    return make_anchor_notice(MEMBERS[:2], g.chain_id, 1, g.hash, 0, 10**12)


def test_an_exhausted_committee_chain_is_revived_by_a_dealt_task(net):
    """Issue 11 x 12: after the genesis task's last round the committee sends an idle notice and waits; a task
    announcement whose shard keys the sponsor dealt to the committee (material in the message, one share file
    per member) opens the next round, and t members that installed their share file reveal its key. A member
    without the share file co-signs nothing that activates the task (it could not help reveal it)."""
    from consensus.keyholder import deal_batch, install_share_file, load_member_file
    from consensus.protocol.tasks import initial_champion, make_task_announcement
    from ml.shards import package_task
    g = net.genesis
    t = T0
    for r in range(1, g.n_rounds + 1):
        t = net.run_until(_notice(net, r), t)
        net.enter(r, now=t)
        t = net.run_until(_beacon(net, r), t)
    closing = g.n_rounds + 1
    t = net.run_until(_notice(net, closing), t)
    assert all(m.engine.notice(closing).idle for m in net.members) and all(m.done for m in net.members)
    # the sponsor (a miner here) makes a 2-round task and deals its keys to the genesis committee
    data = synthetic(b"committee-second-task", n_samples=2 * 40 + 300, n_features=6, n_informative=3, n_classes=2)
    public, secret = package_task(data, 2, 40, n_train=300, seed=b"task-1", rng=_rng())
    material, share_files = deal_batch(g, secret.keys, public.commitments, rng=_rng())
    package = public.encode()
    ann = make_task_announcement(MEMBERS[:2], MINERS[0], g.chain_id, package, initial_champion(package),
                                 keyholder_material=material)
    for i in (0, 1):      # member 2 never installs its share file
        install_share_file(load_member_file(net.files[i]), share_files[i], net.root / f"d{i}")
    for m in net.members:
        assert m.engine.add_task_message(ann)
    t = net.run_until(_notice(net, closing + 1), t)
    notice = net.members[0].engine.notice(closing + 1)
    assert (notice.task_id, notice.shard_index) == (1, 1) and [h for _, h in notice.activations] == [ann.msg_hash]
    assert notice.anchor_hash == net.members[0].engine.notice(closing).anchor_hash   # same anchor: no block
    net.enter(closing + 1, now=t)
    t = net.run_until(_beacon(net, closing + 1), t)
    beacon = net.members[1].engine.beacon(closing + 1)
    assert beacon.shard_key == secret.key(1) and (beacon.task_id, beacon.shard_index) == (1, 1)
    # member 2 released nothing for the new task's round (it has no share) and said why
    assert not any(src == 2 and isinstance(o, CommitteeMsg) and o.kind == Kind.RELEASE and o.round == closing + 1
                   for src, o in net.outs)
    refusals = [o for src, o in net.outs if src == 2 and isinstance(o, Refusal) and o.round == closing + 1]
    assert any("share" in x.reason for x in refusals), refusals


def test_a_task_message_without_committee_material_is_refused(net):
    from chain.errors import RuleError
    from consensus.protocol.tasks import initial_champion, make_task_announcement
    from ml.shards import package_task
    data = synthetic(b"committee-third-task", n_samples=40 + 300, n_features=6, n_informative=3, n_classes=2)
    public, _ = package_task(data, 1, 40, n_train=300, seed=b"task-2", rng=_rng())
    package = public.encode()
    ann = make_task_announcement(MEMBERS[:2], MINERS[0], net.genesis.chain_id, package, initial_champion(package))
    with pytest.raises(RuleError) as exc:
        net.members[0].engine.add_task_message(ann)
    assert exc.value.code == "bad-keyholder-material"


def test_a_member_that_missed_an_opening_converges_once_t_others_signed_the_next_notice(net):
    """Settlement divergence (red team, docs/ATTACKS.md finding 3): member 0's node saw miner 0's round-1 entry
    open, members 1 and 2 never did. Members 1 + 2 sign notice 2 without it; then member 2 stops. Member 0 must
    still co-sign notice 3 (the next void round's settlement repeats round 1): it takes round 1's records from
    the signed notice 2, not from its own view. Before the fix it refused every later notice of the anchor
    ("settlement differs from this member's view of the openings") and the chain halted with members 0 + 1."""
    t = net.run_until(_notice(net, 1), T0)
    net.enter(1, now=t)
    t = net.run_until(_beacon(net, 1), t)
    m0 = net.members[0]
    header_hash, miner, model_hash, _ = next(x for x in m0.engine.beacon(1).listed if x[1] == MINERS[0].public)
    # member 0's engine recorded the opening (what its node does when the listed block arrives: §3.9)
    m0.store.meta_put(P_OPENING + u32(1) + header_hash, pack([miner, model_hash, 10, 5, 7]))
    assert header_hash in m0.engine.openings(1)
    # member 0 alone would settle miner 0 as opened: it refuses 1 + 2's notice, and asks for the block
    t = net.run_until(_notice(net, 2), t)
    notice2 = net.members[1].engine.notice(2)
    assert (1, miner, model_hash, 0) in notice2.settlement.records
    assert m0.engine.notice(2) == notice2
    fetched = [o for src, o in net.outs if src == 0 and isinstance(o, Fetch)]
    assert not fetched      # it holds more than the proposal, not less: nothing to ask for
    net.enter(2, now=t)
    t = net.run_until(_beacon(net, 2), t)
    net.up[2] = False
    t = net.run_until(_notice(net, 3), t)          # members 0 + 1 alone: member 0 must co-sign
    notice3 = m0.engine.notice(3)
    assert notice3.anchor_hash == net.genesis.hash  # round 2 void too: round 1 settled again
    assert [x for x in notice3.settlement.records if x[0] == 1] == [x for x in notice2.settlement.records
                                                                    if x[0] == 1]
    assert {s for s, _ in notice3.signatures} == {MEMBERS[0].public, MEMBERS[1].public}


def test_a_member_asks_for_openings_a_proposal_settles_that_it_never_saw(net):
    """The other side: members 1 and 2 saw miner 0's round-1 entry open, member 0 did not. Member 0 refuses
    their notice (it cannot check the opening without the block) and emits a Fetch naming that block, which
    its node asks the peers for; 1 + 2 still finalise."""
    t = net.run_until(_notice(net, 1), T0)
    net.enter(1, now=t)
    t = net.run_until(_beacon(net, 1), t)
    header_hash, miner, model_hash, _ = next(x for x in net.members[1].engine.beacon(1).listed
                                             if x[1] == MINERS[0].public)
    for m in net.members[1:]:
        m.store.meta_put(P_OPENING + u32(1) + header_hash, pack([miner, model_hash, 10, 5, 7]))
    net.run_until(_notice(net, 2), t)
    assert (1, miner, model_hash, 1) in net.members[0].engine.notice(2).settlement.records
    fetched = [o for src, o in net.outs if src == 0 and isinstance(o, Fetch)]
    assert fetched and all(f.round == 2 and f.blocks == (header_hash,) for f in fetched), fetched


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(saw=st.sets(st.integers(0, 2)), stopped=st.integers(0, 2))
def test_members_settle_alike_whoever_saw_an_opening(chain, tmp_path_factory, saw, stopped):
    """Property (one settlement, PROTOCOL §3.9): whichever members saw miner 0's round-1 opening, and whichever
    member stops after notice 2, the two others sign notice 3, and every settlement repeats notice 2's records
    of round 1."""
    net = Net(chain, tmp_path_factory.mktemp("views"))
    try:
        t = net.run_until(_notice(net, 1), T0)
        net.enter(1, now=t)
        t = net.run_until(_beacon(net, 1), t)
        header_hash, miner, model_hash, _ = next(x for x in net.members[0].engine.beacon(1).listed
                                                 if x[1] == MINERS[0].public)
        for i in saw:
            net.members[i].store.meta_put(P_OPENING + u32(1) + header_hash, pack([miner, model_hash, 10, 5, 7]))
        t = net.run_until(_notice(net, 2), t)
        round1 = [x for x in net.members[0].engine.notice(2).settlement.records if x[0] == 1]
        net.enter(2, now=t)
        t = net.run_until(_beacon(net, 2), t)
        net.up[stopped] = False
        net.run_until(_notice(net, 3), t)
        notices = {m.engine.notice(3) for m in net.live()}
        assert len(notices) == 1
        assert [x for x in notices.pop().settlement.records if x[0] == 1] == round1
    finally:
        net.close()
