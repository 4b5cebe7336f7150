"""Threshold release: every member's released share is checked against its proof and t of them give the key; a
member releasing a corrupted share is refused and named, and a beacon carrying that share is refused."""
from __future__ import annotations

import dataclasses

import pytest

from chain.errors import RuleError
from chain.store import ChainStore
from consensus.engine import Engine
from consensus.keyholder import Refusal
from consensus.protocol.committee import (
    CommitteeMsg,
    Evidence,
    Kind,
)
from tests.consensus_committee.harness import (
    T0,
    has_beacon,
    has_notice,
)


def test_released_shares_are_checked_and_t_of_them_give_the_key(net):
    from chain.errors import RuleError
    from consensus.protocol.release import Partial
    t = net.run_until(has_notice(net, 1), T0)
    net.enter(1, now=t)
    m0, m1 = net.members[0], net.members[1]
    s0, s1 = m0.shares.share_for(1), m1.shares.share_for(1)
    m0.shares.check_share(1, 1, s1)
    assert m0.shares.combine(1, {0: s0, 1: s1}) == net.secret.key(1)     # the sponsor's key, from the committee
    bad = Partial.decode(s1)
    for forged in (dataclasses.replace(bad, value=Partial.decode(s0).value), dataclasses.replace(bad, member=1),
                   dataclasses.replace(bad, proof=(bad.proof[0], (bad.proof[1] + 1) % 2**252))):
        with pytest.raises(RuleError) as exc:
            m0.shares.check_share(1, 1, forged.encode())
        assert exc.value.code == "bad-key-share"
    with pytest.raises(RuleError, match="bad-key-share"):
        m0.shares.check_share(1, 1, s1[:-3])


def test_a_member_releasing_a_corrupted_share_is_refused_and_named(net):
    """A member (running the honest code but corrupting its share on the wire) co-signs the draft with a share
    that fails its proof: the others refuse the share, name the member (a Refusal and Evidence "bad-share" that
    carries its own signed RELEASE), and t honest members still reveal the right key; a beacon carrying the bad
    share is refused by the engine with ``bad-key-share``."""
    from consensus.protocol.release import Partial, Release
    g = net.genesis
    liar = net.members[2]
    honest_share_for = liar.shares.share_for

    def corrupted(r: int) -> bytes:
        p = Partial.decode(honest_share_for(r))
        return dataclasses.replace(p, proof=(p.proof[0], (p.proof[1] + 1) % 2**252)).encode()
    liar.shares.share_for = corrupted        # type: ignore[method-assign]
    t = net.run_until(has_notice(net, 1), T0)
    net.enter(1, now=t)
    net.run_until(has_beacon(net, 1), t)
    named = [o for _, o in net.outs if isinstance(o, Evidence) and o.what == "bad-share"]
    assert any(isinstance(o, CommitteeMsg) and o.kind == Kind.RELEASE and o.signer == liar.me for _, o in net.outs)
    assert named and all(e.signer == liar.me for e in named)
    msg = CommitteeMsg.decode(named[0].first)
    assert msg.signer == liar.me and msg.kind == Kind.RELEASE
    assert any(isinstance(o, Refusal) and o.code == "bad-key-share" and o.proposer == liar.me for _, o in net.outs)
    beacon = net.members[0].engine.beacon(1)
    assert beacon.shard_key == net.secret.key(1)
    assert liar.me not in {net.genesis.keyholders[p.member - 1] for p in Release.decode(beacon.release).partials}
    # the same beacon with the liar's share in its release: every node refuses it, naming the liar
    good = Release.decode(beacon.release).partials
    liar_part = Partial.decode(corrupted(1))
    forged = dataclasses.replace(beacon, release=Release.of([good[0], liar_part], 2).encode())
    fresh = Engine(ChainStore.open(net.root / "fresh"), g)
    try:
        fresh.add_anchor_notice(net.members[0].engine.notice(1))
        with pytest.raises(RuleError) as exc:
            fresh.add_beacon(forged)
        assert exc.value.code == "bad-key-share" and f"member {liar_part.member}" in exc.value.message
        assert fresh.add_beacon(beacon)
    finally:
        fresh.store.close()
