"""Tasks on a committee chain: an exhausted chain is revived by a task whose keys its sponsor sealed to the
committee, and a task message without committee material is refused."""
from __future__ import annotations

import dataclasses

import pytest

from chain.errors import RuleError
from chain.store import ChainStore
from consensus.engine import Engine
from ml.task import synthetic
from tests.consensus_committee.harness import (
    MEMBERS,
    MINERS,
    T0,
    has_beacon,
    has_notice,
    seeded_rng,
)


def test_an_exhausted_committee_chain_is_revived_by_a_sealed_task(net):
    """Issue 11 x 24: after the genesis task's last round the committee sends an idle notice and waits; a task
    announcement whose shard keys its sponsor sealed to the committee (in the message: nothing to install
    anywhere) opens the next round, and t members reveal exactly the sponsor's key."""
    from consensus.protocol.release import seal_keys
    from consensus.protocol.tasks import initial_champion, make_task_announcement
    from ml.shards import package_task
    g = net.genesis
    t = T0
    for r in range(1, g.n_rounds + 1):
        t = net.run_until(has_notice(net, r), t)
        net.enter(r, now=t)
        t = net.run_until(has_beacon(net, r), t)
    closing = g.n_rounds + 1
    t = net.run_until(has_notice(net, closing), t)
    assert all(m.engine.notice(closing).idle for m in net.members) and all(m.done for m in net.members)
    data = synthetic(b"committee-second-task", n_samples=2 * 40 + 300, n_features=6, n_informative=3, n_classes=2)
    public, secret = package_task(data, 2, 40, n_train=300, seed=b"task-1", rng=seeded_rng())
    package = public.encode()
    ann = make_task_announcement(MEMBERS[:2], MINERS[0], g.chain_id, package, initial_champion(package),
                                 keyholder_material=seal_keys(g.committee.group_key, secret.keys))
    for m in net.members:
        assert m.engine.add_task_message(ann)
    t = net.run_until(has_notice(net, closing + 1), t)
    notice = net.members[0].engine.notice(closing + 1)
    assert (notice.task_id, notice.shard_index) == (1, 1) and [h for _, h in notice.activations] == [ann.msg_hash]
    assert notice.anchor_hash == net.members[0].engine.notice(closing).anchor_hash   # same anchor: no block
    # the sponsor (MINERS[0]) cannot enter its own task
    with pytest.raises(RuleError) as exc:
        net.enter(closing + 1, miners=MINERS[:1], now=t)
    assert exc.value.code == "sponsor-entry"
    net.enter(closing + 1, miners=MINERS[1:], now=t)
    t = net.run_until(has_beacon(net, closing + 1), t)
    beacon = net.members[1].engine.beacon(closing + 1)
    assert beacon.shard_key == secret.key(1) and (beacon.task_id, beacon.shard_index) == (1, 1)
    # a node that syncs these rounds before it holds the announcement cannot check the beacon's release yet; a
    # copy tampered on the way is stored first, and the proven one replaces it once the node can tell
    from consensus.protocol.release import Partial, Release
    good = Release.decode(beacon.release).partials
    tampered = dataclasses.replace(beacon, release=Release((dataclasses.replace(
        good[0], proof=(good[0].proof[0], (good[0].proof[1] + 1) % 2**252)), good[1])).encode())
    late = Engine(ChainStore.open(net.root / "late"), g)
    try:
        src = net.members[1].engine
        for q in range(1, closing + 2):
            notice, stored = src.notice(q), src.beacon(q)
            late.add_anchor_notice(notice)
            if q == closing + 1:
                assert late.add_beacon(tampered)      # stored unchecked: task 1's announcement is unknown here
                assert late.beacon(q).release == tampered.release
            elif stored is not None:
                late.add_beacon(stored)
        assert late.add_task_message(ann)
        assert not late.add_beacon(beacon)            # the same content: a duplicate, its proven release kept
        assert late.beacon(closing + 1).release == beacon.release
        assert isinstance(Partial.decode(Release.decode(late.beacon(closing + 1).release).partials[0].encode()),
                          Partial)
    finally:
        late.store.close()


def test_a_task_message_without_committee_material_is_refused(net):
    from chain.errors import RuleError
    from consensus.protocol.tasks import initial_champion, make_task_announcement
    from ml.shards import package_task
    data = synthetic(b"committee-third-task", n_samples=40 + 300, n_features=6, n_informative=3, n_classes=2)
    public, _ = package_task(data, 1, 40, n_train=300, seed=b"task-2", rng=seeded_rng())
    package = public.encode()
    ann = make_task_announcement(MEMBERS[:2], MINERS[0], net.genesis.chain_id, package, initial_champion(package))
    with pytest.raises(RuleError) as exc:
        net.members[0].engine.add_task_message(ann)
    assert exc.value.code == "bad-keyholder-material"
