"""Issue 21 on a keyholder committee (t = 2 of n = 3): ledger rounds on a closed chain, in-process.

Three ``Member`` state machines on real engines (LevelDB in tmp dirs, real Ed25519 and group arithmetic, the
DKG committee of tests.test_consensus_committee), messages delivered by the test, an explicit clock. After the
genesis task's last round the committee's idle notice opens a LEDGER round (PROTOCOL §3.13): staked miners'
entries are revealed by a beacon whose key is the committee's threshold VRF output of the round's ledger point
(round, anchor), proven by t released shares that every node checks — so no member chooses the key that ranks
the round's entries and plain blocks. t members suffice, a restarted member never signs two contents, and a
beacon whose key is not the VRF output is refused even when t keyholders signed it.

Old code: a committee member never drafted a beacon for an idle round, so a closed committee chain offered no
ledger round (``Engine.ledger_round`` was 0) and its entries were refused (``wrong-round``).
"""
from __future__ import annotations

import os
from dataclasses import replace

import pytest

from chain.errors import RuleError
from chain.store import ChainStore
from consensus.engine import Engine
from consensus.keyholder import load_member
from consensus.protocol.committee import CommitteeMsg, Kind, StatementBook, check_msg, leader
from consensus.protocol.messages import make_beacon
from consensus.protocol.release import check_release, ledger_point
from tests.test_consensus_committee import (
    MEMBERS,
    T0,
    Net,
    _beacon,
    _notice,
    chain,  # noqa: F401  (the module-scoped chain fixture)
)


@pytest.fixture
def closed(chain, tmp_path):  # noqa: F811  (the imported fixture)
    """The net with every genesis round played (void: nobody opened a block), at its closing notice."""
    net = Net(chain, tmp_path)
    g = net.genesis
    t = T0
    for r in range(1, g.n_rounds + 1):
        t = net.run_until(_notice(net, r), t)
        net.enter(r, now=t)
        t = net.run_until(_beacon(net, r), t)
    t = net.run_until(_notice(net, g.n_rounds + 1), t)
    yield net, t
    net.close()


def _ledger_round(net: Net, r: int, t: float) -> float:
    assert all(m.engine.notice(r).idle for m in net.live())
    assert all(m.engine.ledger_round() == r for m in net.live())
    net.enter(r, now=t)
    return net.run_until(_beacon(net, r), t)


def test_a_closed_committee_chain_reveals_ledger_rounds_with_the_threshold_vrf_key(closed):
    net, t = closed
    g = net.genesis
    first = g.n_rounds + 1
    for r in (first, first + 1):        # ledger rounds follow one another as long as miners enter
        t = net.run_until(_notice(net, r), t)
        t = _ledger_round(net, r, t)
        beacon = net.members[0].engine.beacon(r)
        assert beacon.idle and len(beacon.listed) == 3 and beacon.verify(g.keyholders, 2)
        assert {m.engine.beacon(r).sighash for m in net.members} == {beacon.sighash}
        # the key is the unique VRF output of the round's ledger point: anyone re-derives it from the release
        assert g.committee is not None
        check_release(g.committee, g.hash, ledger_point(g.hash, r, beacon.anchor_hash), beacon.release, None,
                      beacon.shard_key)
    # nobody entered the next ledger round: it waits (nothing revealed), and every member says so
    t = net.run_until(_notice(net, first + 2), t)
    net.run_until(lambda: True, t + 30)
    assert all(m.engine.beacon(first + 2) is None and m.done for m in net.members)


def test_t_members_suffice(closed):
    net, t = closed
    r = net.genesis.n_rounds + 1
    net.up[2] = False                   # n − t members down: the ledger round still reveals
    _ledger_round(net, r, t)
    assert net.members[0].engine.beacon(r).verify(net.genesis.keyholders, 2)


def test_restarted_members_never_sign_twice_in_ledger_rounds(closed):
    net, t = closed
    r = net.genesis.n_rounds + 1
    for i in range(3):                  # each member restarted in turn (its journal survives), mid-round too
        net.members[i] = load_member(net.files[i], net.members[i].engine)
        t = net.run_until(_notice(net, r + i), t)
        net.enter(r + i, now=t)
        net.step(t + 2.5)               # past the window: the round is being drafted and released
        net.members[(i + 1) % 3] = load_member(net.files[(i + 1) % 3], net.members[(i + 1) % 3].engine)
        t = _ledger_round_after_entries(net, r + i, t)
    book = StatementBook()
    for _, o in net.outs:
        if isinstance(o, CommitteeMsg):
            assert book.observe(o, check_msg(o, net.genesis.chain_id, net.genesis.keyholders)) is None


def _ledger_round_after_entries(net: Net, r: int, t: float) -> float:
    return net.run_until(_beacon(net, r), t)


def test_a_ledger_beacon_whose_key_is_not_the_vrf_output_is_refused(closed, tmp_path):
    """Even t keyholders together cannot pick a ledger round's key (to rank their own miners' plain blocks
    first): a beacon they sign with another key, with or without the honest release, is refused by a node."""
    net, t = closed
    g = net.genesis
    r = g.n_rounds + 1
    net.enter(r, now=t)
    t = net.run_until(_beacon(net, r), t)
    honest = net.members[0].engine.beacon(r)
    ground = make_beacon(MEMBERS[:2], g.chain_id, r, honest.anchor_hash, honest.listed, os.urandom(32),
                         opened_ms=honest.opened_ms, time_ms=honest.time_ms, settlement=honest.settlement,
                         task_id=0, shard_index=0, activations=honest.activations)
    node = Engine(ChainStore.open(tmp_path / "node"), g)     # a node that has not seen round r's beacon
    try:
        for forged in (replace(ground, release=honest.release), ground):
            with pytest.raises(RuleError) as exc:
                node.add_beacon(forged)
            assert exc.value.code == "bad-key-share"
        assert node.add_beacon(honest)
    finally:
        node.store.close()


def test_a_task_announced_during_an_entered_ledger_round_revives_the_chain_without_equivocation(closed):
    """Entries reached the members of ledger round R and its leader proposed a draft when a task announcement
    (sealed to the committee) arrives: the members open notice R+1 activating the task (ledger round R stays
    void: nothing was released), every member signs the same notice, and no member signs two contents."""
    from consensus.protocol.release import seal_keys
    from consensus.protocol.tasks import initial_champion, make_task_announcement
    from ml.shards import package_task
    from ml.task import synthetic
    from tests.test_consensus_committee import MINERS, _rng
    net, t = closed
    g = net.genesis
    assert g.committee is not None
    r = g.n_rounds + 1
    net.enter(r, now=t)
    # past the reveal time only the beacon leader runs: it proposes a draft nobody can co-sign yet
    lead = [m.me for m in net.members].index(leader(g.keyholders, r, 0))
    net.up = [i == lead for i in range(3)]
    net.step(t + g.params.entry_window_s + 0.6)
    assert any(isinstance(o, CommitteeMsg) and o.kind == Kind.PROPOSE_BEACON for _, o in net.outs)
    assert all(m.engine.beacon(r) is None for m in net.members)
    net.up = [True] * 3
    data = synthetic(b"committee-ledger-task", n_samples=2 * 40 + 300, n_features=6, n_informative=3, n_classes=2)
    public, secret = package_task(data, 2, 40, n_train=300, seed=b"task-1", rng=_rng())
    package = public.encode()
    ann = make_task_announcement(MEMBERS[:2], MINERS[0], g.chain_id, package, initial_champion(package),
                                 keyholder_material=seal_keys(g.committee.group_key, secret.keys))
    for m in net.members:
        assert m.engine.add_task_message(ann)
    t = net.run_until(_notice(net, r + 1), t + g.params.entry_window_s + 0.7)
    notice = net.members[0].engine.notice(r + 1)
    assert (notice.task_id, notice.shard_index) == (1, 1)
    assert {m.engine.notice(r + 1).sighash for m in net.members} == {notice.sighash}
    assert notice.anchor_hash == net.members[0].engine.notice(r).anchor_hash and all(
        m.engine.beacon(r) is None for m in net.members)
    book = StatementBook()
    for _, o in net.outs:
        if isinstance(o, CommitteeMsg):
            assert book.observe(o, check_msg(o, g.chain_id, g.keyholders)) is None
