"""Before finality a better block of the same round replaces the tip: the transfers of the replaced block go
back to the mempool (and are confirmed again later). Deterministic: both blocks carry the same model, so they
score the same and fork choice falls to the lower header hash, which the test arranges."""
from __future__ import annotations

import asyncio
import os

import pytest

from chain.address import address_of, encode_address
from chain.tx import make_transfer
from consensus.mining import open_block, seal
from consensus.protocol.messages import Beacon
from ml.model import encode_model
from ml.training import train_candidate
from node.tools.testing import InProcessNode, make_test_chain, node_config, template_from_json, wait_for

pytestmark = pytest.mark.timeout(180)


def test_reorg_before_finality_returns_txs_to_mempool(tmp_path):
    # a long entry window and opening window give the test time to act inside round 1
    chain = make_test_chain(tmp_path / "chain", rounds=5, entry_window_s=4, opening_window_s=30)
    g = chain.genesis
    model = encode_model(train_candidate("mlp", g.task.training, (), seed=11, caps=g.model_caps))

    async def scenario():
        async with InProcessNode(node_config(tmp_path / "A", chain, keyholder=True)) as a:
            c = a.client
            await wait_for(lambda: _open(c), timeout=30)
            miner_a, miner_b = chain.miners
            tpl_b = template_from_json(await c.template(miner_b.public))   # before the tx: no txs
            user, dest = chain.users
            acct = await c.account(encode_address(address_of(user.public)))
            tx = make_transfer(user, g.chain_id, address_of(dest.public), 4_321, 1_000, acct["nonce"])
            await c.send_tx(tx.encode())
            tpl_a = template_from_json(await c.template(miner_a.public))   # carries the tx
            assert [t.txid for t in tpl_a.txs] == [tx.txid] and not tpl_b.txs
            block_b, entry_b = seal(tpl_b, model, miner_b, os.urandom(32))
            while True:  # the tx block must lose the tie-break: give it the higher header hash
                block_a, entry_a = seal(tpl_a, model, miner_a, os.urandom(32))
                if block_a.hash > block_b.hash:
                    break
            await c.send_entry(entry_a.encode())
            await c.send_entry(entry_b.encode())
            raw = await wait_for(lambda: _beacon(c, tpl_a.round), timeout=30)
            beacon = Beacon.decode(bytes.fromhex(raw))
            assert {block_a.hash, block_b.hash} <= set(beacon.entries)
            champion = await c.model(tpl_a.champion_model_hash.hex())
            opened = [open_block(b, beacon, genesis=g, champion_bytes=champion) for b in (block_a, block_b)]
            res = await c.send_opening(opened[0].encode())
            assert res["status"] == "tip-changed", res
            assert (await c.tx(tx.txid.hex()))["status"] == "confirmed"
            assert (await c.mempool())["size"] == 0
            res = await c.send_opening(opened[1].encode())
            assert res["status"] == "tip-changed", res       # same scores, lower hash: the better block
            assert (await c.status())["tip"] == block_b.hash.hex()
            info = await c.tx(tx.txid.hex())
            assert info["status"] == "pending"                # returned to the mempool by the reorg
            assert (await c.account(encode_address(address_of(dest.public))))["balance"] == 10**9

    asyncio.run(scenario())


async def _open(c):
    return (await c.status())["open_round"] >= 1


async def _beacon(c, r):
    return (await c.round(r)).get("beacon")
