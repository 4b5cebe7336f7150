"""Paced announcements (PROTOCOL §4.3): a relay hands thousands of transfers to a peer at a pace the peer can
hold. Before, a node greeting a new peer announced its whole mempool in one tick; the peer holds at most its
request share plus its waiting share of one announcer's ids (761 + 1,523 with the default slots) and dropped
the rest for good: of 4,500 pooled transfers a fresh peer got about 2,300."""
from __future__ import annotations

import asyncio

import pytest

from chain.address import address_of
from chain.crypto import Keypair
from chain.tx import make_transfer
from node.tools.testing import InProcessNode, make_test_chain, node_config, wait_for

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
SENDERS = 45
PER_SENDER = 100          # the mempool's per-sender cap: 4,500 txs, ~2x what a peer holds from one announcer


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_test_chain(tmp_path_factory.mktemp("chain"), rounds=3, n_users=SENDERS)


def test_a_new_peer_gets_a_whole_mempool_announced_at_once(chain, tmp_path):
    cid = chain.genesis.chain_id
    sink = address_of(Keypair.generate().public)
    txs = [make_transfer(user, cid, sink, 1_000 + n, 1_000 + n, n).encode()
           for user in chain.users for n in range(PER_SENDER)]
    total = len(txs)

    async def scenario():
        async with InProcessNode(node_config(tmp_path / "A", chain)) as a:
            assert a.client is not None
            for i in range(0, total, 900):   # each sender's nonces in order within a batch
                res = await a.client.send_txs(txs[i:i + 900])
                assert res["accepted"] == len(txs[i:i + 900])
            # B connects to a node with 4,500 pooled transfers: A greets it with all of them at once
            async with InProcessNode(node_config(tmp_path / "B", chain, peers=(a.p2p_addr,))) as b:
                await wait_for(lambda: _mempool(b, total), timeout=60, what="A's whole mempool in B's")
                assert set(b.node.mempool.txids()) == set(a.node.mempool.txids())
                assert b.node.relay.requests.dropped == 0   # nothing announced was dropped at a bound

    asyncio.run(scenario())


async def _mempool(node, n):
    return (await node.client.status())["mempool"] == n
