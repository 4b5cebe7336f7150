"""One settlement (PROTOCOL §3.9) whoever saw an opening: a member that missed an opening converges once t others
signed the next notice, a member asks for the openings a proposal settles that it never saw, and (hypothesis)
members settle alike whichever of them saw it and whichever stops."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.encoding import pack
from consensus._meta import P_OPENING, u32
from consensus.keyholder import Fetch
from tests.consensus_committee.harness import (
    MEMBERS,
    MINERS,
    T0,
    Net,
    has_beacon,
    has_notice,
)


def test_a_member_that_missed_an_opening_converges_once_t_others_signed_the_next_notice(net):
    """Settlement divergence (red team, docs/ATTACKS.md finding 3): member 0's node saw miner 0's round-1 entry
    open, members 1 and 2 never did. Members 1 + 2 sign notice 2 without it; then member 2 stops. Member 0 must
    still co-sign notice 3 (the next void round's settlement repeats round 1): it takes round 1's records from
    the signed notice 2, not from its own view. Before the fix it refused every later notice of the anchor
    ("settlement differs from this member's view of the openings") and the chain halted with members 0 + 1."""
    t = net.run_until(has_notice(net, 1), T0)
    net.enter(1, now=t)
    t = net.run_until(has_beacon(net, 1), t)
    m0 = net.members[0]
    header_hash, miner, model_hash, _ = next(x for x in m0.engine.beacon(1).listed if x[1] == MINERS[0].public)
    # member 0's engine recorded the opening (what its node does when the listed block arrives: §3.9)
    m0.store.meta_put(P_OPENING + u32(1) + header_hash, pack([miner, model_hash, 10, 5, 7]))
    assert header_hash in m0.engine.openings(1)
    # member 0 alone would settle miner 0 as opened: it refuses 1 + 2's notice, and asks for the block
    t = net.run_until(has_notice(net, 2), t)
    notice2 = net.members[1].engine.notice(2)
    assert (1, miner, model_hash, 0) in notice2.settlement.records
    assert m0.engine.notice(2) == notice2
    fetched = [o for src, o in net.outs if src == 0 and isinstance(o, Fetch)]
    assert not fetched      # it holds more than the proposal, not less: nothing to ask for
    net.enter(2, now=t)
    t = net.run_until(has_beacon(net, 2), t)
    net.up[2] = False
    t = net.run_until(has_notice(net, 3), t)          # members 0 + 1 alone: member 0 must co-sign
    notice3 = m0.engine.notice(3)
    assert notice3.anchor_hash == net.genesis.hash  # round 2 void too: round 1 settled again
    assert [x for x in notice3.settlement.records if x[0] == 1] == [x for x in notice2.settlement.records
                                                                    if x[0] == 1]
    assert {s for s, _ in notice3.signatures} == {MEMBERS[0].public, MEMBERS[1].public}


def test_a_member_asks_for_openings_a_proposal_settles_that_it_never_saw(net):
    """The other side: members 1 and 2 saw miner 0's round-1 entry open, member 0 did not. Member 0 refuses
    their notice (it cannot check the opening without the block) and emits a Fetch naming that block, which
    its node asks the peers for; 1 + 2 still finalise."""
    t = net.run_until(has_notice(net, 1), T0)
    net.enter(1, now=t)
    t = net.run_until(has_beacon(net, 1), t)
    header_hash, miner, model_hash, _ = next(x for x in net.members[1].engine.beacon(1).listed
                                             if x[1] == MINERS[0].public)
    for m in net.members[1:]:
        m.store.meta_put(P_OPENING + u32(1) + header_hash, pack([miner, model_hash, 10, 5, 7]))
    net.run_until(has_notice(net, 2), t)
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
        t = net.run_until(has_notice(net, 1), T0)
        net.enter(1, now=t)
        t = net.run_until(has_beacon(net, 1), t)
        header_hash, miner, model_hash, _ = next(x for x in net.members[0].engine.beacon(1).listed
                                                 if x[1] == MINERS[0].public)
        for i in saw:
            net.members[i].store.meta_put(P_OPENING + u32(1) + header_hash, pack([miner, model_hash, 10, 5, 7]))
        t = net.run_until(has_notice(net, 2), t)
        round1 = [x for x in net.members[0].engine.notice(2).settlement.records if x[0] == 1]
        net.enter(2, now=t)
        t = net.run_until(has_beacon(net, 2), t)
        net.up[stopped] = False
        net.run_until(has_notice(net, 3), t)
        notices = {m.engine.notice(3) for m in net.live()}
        assert len(notices) == 1
        assert [x for x in notices.pop().settlement.records if x[0] == 1] == round1
    finally:
        net.close()
