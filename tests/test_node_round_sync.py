"""Real nodes on 127.0.0.1: a late joiner learns the shard keys of void rounds (which no block carries) by round
sync (GETROUNDS/ROUNDS, PROTOCOL §4.4), so it lists the same revealed shards as the node it joined (issue 11:
one listed 45 revealed shards where the original nodes listed 62)."""
from __future__ import annotations

import asyncio
import os

import pytest

from consensus.miner import seal
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
