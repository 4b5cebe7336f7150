"""Real nodes on 127.0.0.1: a late joiner learns the shard keys of void rounds (which no block carries) by round
sync (GETROUNDS/ROUNDS, PROTOCOL §4.4), so it lists the same revealed shards as the node it joined (issue 11:
one listed 45 revealed shards where the original nodes listed 62)."""
from __future__ import annotations

import asyncio
import os

import pytest

from consensus.mining import seal
from node.tools.testing import InProcessNode, make_test_chain, node_config, template_from_json, wait_for

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
VOID_ROUNDS = 4


async def _enter_without_opening(client, keypair, r: int) -> None:
    """Enter round r with a sealed block and never open it: the round is revealed, then void."""
    from chain.block import model_hash
    tpl = template_from_json(await client.template(keypair.public))
    assert tpl.round == r
    block, entry = seal(tpl, os.urandom(64), keypair, os.urandom(32))
    assert model_hash(block.model)
    await client.send_entry(entry.encode())


def test_late_joiner_lists_the_shard_keys_of_void_rounds(tmp_path):
    chain = make_test_chain(tmp_path / "chain", rounds=VOID_ROUNDS + 2, entry_window_s=1, opening_window_s=1)

    async def main():
        async with InProcessNode(node_config(tmp_path / "a", chain, keyholder=True)) as a:
            for r in range(1, VOID_ROUNDS + 1):
                async def open_r(r=r):
                    return (await a.client.status())["open_round"] == r
                await wait_for(open_r, what=f"round {r} open")
                await _enter_without_opening(a.client, chain.miners[r % len(chain.miners)], r)

            async def revealed_on_a():
                keys = (await a.client.task())["revealed"]
                return len(keys) >= VOID_ROUNDS and keys
            keys_a = await wait_for(revealed_on_a, what="void rounds revealed on the first node")
            async with InProcessNode(node_config(tmp_path / "b", chain, peers=(a.p2p_addr,))) as b:
                async def same():
                    return (await b.client.task())["revealed"] == keys_a
                await wait_for(same, timeout=60, what="the late joiner lists the same revealed shards")
                status = await b.client.status()
                assert status["height"] == 0          # no block was ever made: every key came by round sync
    asyncio.run(main())


def test_an_announcement_submitted_to_a_node_revives_the_exhausted_chain_everywhere(tmp_path):
    """Node.submit_task_message on the keyholder's node (with the task's shard keys): gossiped as a TASK object,
    activated by the next notice; the other node learns the task and the open round serves it."""
    from consensus.protocol.tasks import initial_champion, make_task_announcement
    from ml.shards import package_task
    from ml.task import synthetic
    from node.tools.testing import seeded_keypair
    chain = make_test_chain(tmp_path / "chain", rounds=1, entry_window_s=1, opening_window_s=1)
    ds = synthetic(b"popchain-node-task-1-seed", n_samples=2 * 100 + 1500, n_features=12, n_informative=6, n_classes=3)
    public, secret = package_task(ds, 2, 100, n_train=1500, seed=b"node-task-1")
    package = public.encode()
    ann = make_task_announcement([seeded_keypair("keyholder")], chain.miners[1], chain.genesis.chain_id, package,
                                 initial_champion(package), bounty=1000, per_crowning=100)

    async def main():
        async with InProcessNode(node_config(tmp_path / "a", chain, keyholder=True)) as a, \
                InProcessNode(node_config(tmp_path / "b", chain, peers=(a.p2p_addr,))) as b:
            async def open_1():
                return (await a.client.status())["open_round"] == 1
            await wait_for(open_1, what="round 1 open")
            await _enter_without_opening(a.client, chain.miners[0], 1)

            async def exhausted():
                return await a.node.worker.call(lambda: a.node.keyholder.keyholder.done)
            await wait_for(exhausted, what="every task exhausted")
            assert (await b.client.status())["open_round"] == 0
            ok, reason = await b.node.submit_task_message(ann.encode())     # no keyholder on b: store + gossip
            assert ok, reason
            ok, reason = await a.node.submit_task_message(ann.encode(), secret.encode())
            assert ok and reason in ("accepted", "duplicate"), reason

            async def serving_task_1():
                eng = b.node.engine
                r = await b.node.worker.call(eng.open_round)
                task = await b.node.worker.call(eng.round_task, r) if r else None
                return task == (1, 1) and r
            r = await wait_for(serving_task_1, timeout=60, what="the next round serves the new task on b")
            info = await b.node.worker.call(b.node.engine.task, 1)
            assert info is not None and info.shards_total == 2 and info.bounty_per_crowning == 100
            assert r == 3    # round 2 was the idle closing notice
    asyncio.run(main())
