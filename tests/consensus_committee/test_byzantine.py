"""Byzantine members leave evidence: a leader's draft that drops a valid entry is refused, two signatures on two
contents are verifiable evidence, restarted members never sign twice, a byzantine leader never gets two notices
signed by honest members (hypothesis), and two fully signed beacons name the members that signed both."""
from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.encoding import pack
from consensus.keyholder import Refusal, load_member
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
from consensus.protocol.messages import AnchorNotice, Beacon
from tests.consensus_committee.harness import (
    MEMBERS,
    MINERS,
    T0,
    Net,
    has_beacon,
    has_notice,
)


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
    t = net.run_until(has_notice(net, 1), T0)
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
    net.run_until(has_beacon(net, 1), t)
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
    t = net.run_until(has_notice(net, 1), T0)
    net.enter(1, now=t)
    t = net.run_until(has_beacon(net, 1), t)
    # every member restarts in turn (a new Member on the same store: its journal survives)
    for i in range(3):
        old = net.members[i]
        net.members[i] = load_member(net.files[i], old.engine)
        t = net.run_until(has_notice(net, 2 + i), t)
        net.enter(2 + i, now=t)
        t = net.run_until(has_beacon(net, 2 + i), t)
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


def test_two_fully_signed_beacons_name_the_members_that_signed_both(net):
    """With t = 2 > n / 2 two different beacons of a round both reach t only if some member signed both: the
    engine keeps the first, refuses the second as equivocation, and /api/status names the double signers."""
    from consensus.protocol.messages import make_beacon
    from node.api import _signed_both
    g = net.genesis
    a, b, c = MEMBERS
    e = net.members[0].engine
    e.add_anchor_notice(_signed_notice(g))
    release = _release(net, 1)
    x = replace(make_beacon([a, b], g.chain_id, 1, g.hash, [(bytes(32), MINERS[0].public, bytes(32), bytes(32))],
                            net.secret.key(1)),
                release=release)
    y = make_beacon([b, c], g.chain_id, 1, g.hash, [(bytes(31) + b"\x01", MINERS[0].public, bytes(32), bytes(32))],
                    net.secret.key(1))
    assert e.add_beacon(x)
    with pytest.raises(Exception) as exc:
        e.add_beacon(y)
    assert getattr(exc.value, "code", "") == "equivocation"
    (_, kept, refused), = e.equivocations()
    assert _signed_both(kept, refused) == [b.public.hex()]


def _release(net: Net, r: int) -> bytes:
    """The release t members make for round r (its notice must be known to member 0)."""
    from consensus.protocol.release import make_partial
    src = net.members[0].shares
    point, _ = src.locate(r)
    shares = {i: make_partial(src.committee, net.genesis.hash, m.shares.secret.member, m.shares.secret.share,
                              point).encode() for i, m in enumerate(net.members[:2])}
    return src.release(r, shares)


def _signed_notice(g):
    from consensus.protocol.messages import make_anchor_notice
    return make_anchor_notice(MEMBERS[:2], g.chain_id, 1, g.hash, 0, 10**12)
