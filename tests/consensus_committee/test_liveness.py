"""A committee chain goes on while t members run: a 2-of-3 round reveals the sponsor's key, a dead leader fails
over, n − t members may stop, one member alone opens nothing, members whose reveal times differ still agree,
and a round with more candidates than listing slots reveals."""
from __future__ import annotations

import pytest

from consensus.keyholder import failover_ms
from consensus.protocol.committee import (
    leader,
)
from consensus.protocol.genesis import GenesisParams, create_committee_genesis, load_genesis
from consensus.protocol.settlement import miner_funding
from ml.task import synthetic
from tests.consensus_committee.harness import (
    MINERS,
    SPONSOR,
    T0,
    Net,
    has_beacon,
    has_notice,
    seeded_rng,
)


def test_two_of_three_round_reveals_the_genesis_key(net):
    t = net.run_until(has_notice(net, 1), T0)
    net.enter(1, now=t)
    t = net.run_until(has_beacon(net, 1), t)
    beacon = net.members[0].engine.beacon(1)
    assert beacon.shard_key == net.secret.key(1)
    assert len(beacon.signatures) >= 2 and beacon.verify(net.genesis.keyholders, 2)
    assert len(beacon.listed) == len(MINERS)
    # nobody entered a block: void, the next notice anchors on genesis again
    net.run_until(has_notice(net, 2), t)
    assert net.members[1].engine.notice(2).anchor_hash == net.genesis.hash


def test_dead_leader_fails_over_and_reuses_cosigned_content(net):
    g = net.genesis
    t = net.run_until(has_notice(net, 1), T0)
    net.enter(1, now=t)
    # kill round 1's beacon leader of attempt 0 before it reveals
    dead = [m.me for m in net.members].index(leader(g.keyholders, 1, 0))
    net.up[dead] = False
    t_beacon = net.run_until(has_beacon(net, 1), t)
    window = g.params.entry_window_s
    # the next leader takes over one failover timeout after the reveal was due
    assert t_beacon - t <= window + failover_ms(window) / 1000 + 0.5
    assert net.members[(dead + 1) % 3].engine.beacon(1).shard_key == net.secret.key(1)


def test_chain_goes_on_with_n_minus_t_members_stopped(net):
    net.up[0] = False
    t = T0
    for r in (1, 2, 3):
        t = net.run_until(has_notice(net, r), t)
        net.enter(r, now=t)
        t = net.run_until(has_beacon(net, r), t)
    assert net.members[1].engine.beacon(3).shard_key == net.secret.key(3)


def test_one_member_alone_cannot_open_a_round(net):
    net.up[0] = net.up[1] = False
    with pytest.raises(AssertionError):
        net.run_until(has_notice(net, 1), T0, limit=10)


def test_members_whose_reveal_times_differ_still_agree(net):
    """Regression: a member that joined after round 1's empty window reveals at once when entries come (its
    attempt count is large), one that saw the window run out empty reveals W after the first entry (small):
    each used to look only at its own pending proposal, or not reach the other's, and the round wedged."""
    late = 2
    net.up[late] = False
    t = net.run_until(has_notice(net, 1), T0)          # members 0 and 1 see the window run out empty
    net.members[late].engine.add_anchor_notice(net.members[0].engine.notice(1))   # the late one just joined
    net.up[late] = True
    other = next(i for i in (0, 1) if net.members[i].me != leader(net.genesis.keyholders, 1, 0))
    for i in (0, 1):
        if i != other:
            net.up[i] = False
    t += 5
    net.enter(1, now=t)
    net.run_until(has_beacon(net, 1), t)
    assert net.members[late].engine.beacon(1).shard_key == net.secret.key(1)


def test_a_round_with_more_candidates_than_listing_slots_reveals(chain, tmp_path):
    """Three entrants, E = 2 listing slots: the members release on the draft listing every candidate and sign the
    beacon that keeps two (issue 18's slot values); the assembled beacon carries the release of that draft
    (issue 24), so the round reveals instead of waiting for shares of a draft nobody released on."""
    g0, secret, files = chain
    data = synthetic(b"committee-unit-tests-seed", n_samples=6 * 40 + 300, n_features=6, n_informative=3, n_classes=2)
    params = GenesisParams(entry_window_s=2, opening_window_s=2, max_entries=2)
    key = g0.committee
    assert key is not None
    genesis = create_committee_genesis(data, committee=key, sponsor=SPONSOR.public, rng=seeded_rng(), chain_id="popchain-e2",
                                       rounds=6, shard_size=40, params=params, timestamp=int(T0) - 100, n_train=300,
                                       seed=b"split",
                                       allocations=[a for m in MINERS for a in miner_funding(m.public, 10**9, 10**8)])
    net = Net((load_genesis(genesis.encode()), secret, files), tmp_path)
    try:
        t = net.run_until(has_notice(net, 1), T0)
        net.enter(1, now=t)
        t = net.run_until(has_beacon(net, 1), t)
        beacon = net.members[0].engine.beacon(1)
        assert beacon.shard_key == secret.key(1) and len(beacon.listed) == 2 and beacon.release
    finally:
        net.close()
