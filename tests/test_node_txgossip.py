"""Transfers pushed by a peer are judged in batches: a burst keeps each sender's nonce order, reaches the
mempool and the next peer, and a bad signature inside a burst is still a protocol violation."""
from __future__ import annotations

import asyncio
import dataclasses
import os

import aiohttp
import pytest

from chain.address import address_of, encode_address
from chain.crypto import Keypair
from chain.tx import make_transfer
from node import wire
from node.tools.testing import InProcessNode, make_test_chain, node_config, wait_for

pytestmark = pytest.mark.timeout(180)
PER_SENDER = 60


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    # no keyholder in this test: rounds never open, so no block takes the txs out of the mempools
    return make_test_chain(tmp_path_factory.mktemp("chain"), rounds=3, n_users=3)


def _hello(chain, listen_port: int) -> bytes:
    return wire.encode(wire.Hello(wire.PROTOCOL_VERSION, chain.genesis.chain_id, chain.genesis.hash, 0, 0,
                                  "127.0.0.1", listen_port, int.from_bytes(os.urandom(8), "big"), "pusher"))


def test_tx_burst_keeps_nonce_order_and_bad_signature_is_punished(chain, tmp_path):
    cid = chain.genesis.chain_id
    sink = address_of(Keypair.generate().public)
    # interleaved nonce sequences of three senders, in nonce order per sender: the order a wallet sends them
    burst = [make_transfer(user, cid, sink, 1_000 + n, 1_000 + n, n)
             for n in range(PER_SENDER) for user in chain.users]
    forged = dataclasses.replace(make_transfer(chain.miners[0], cid, sink, 5, 1_000, 0), signature=bytes(64))

    async def scenario():
        async with InProcessNode(node_config(tmp_path / "B", chain)) as b, \
                InProcessNode(node_config(tmp_path / "C", chain, peers=(b.p2p_addr,))) as c:
            await wait_for(lambda: _peers(b, 1))
            url = f"http://127.0.0.1:{b.node.p2p_port}/p2p"
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(url, max_msg_size=0)
                await ws.send_bytes(_hello(chain, 41001))
                for tx in burst + burst[:10]:   # the repeats are duplicates, not offences
                    await ws.send_bytes(wire.encode(wire.Object(wire.InvKind.TX, tx.encode())))
                await wait_for(lambda: _mempool(b, len(burst)), what="burst admitted on B")
                await wait_for(lambda: _mempool(c, len(burst)), what="burst relayed to C")
                assert not ws.closed

                bad = await session.ws_connect(url, max_msg_size=0)
                await bad.send_bytes(_hello(chain, 41002))
                await bad.send_bytes(wire.encode(wire.Object(wire.InvKind.TX, forged.encode())))
                async with asyncio.timeout(30):
                    async for _ in bad:
                        pass   # until the node closes it
                await ws.close()

            for node in (b, c):
                for user in chain.users:
                    account = await node.client.account(encode_address(address_of(user.public)))
                    assert account["next_nonce"] == PER_SENDER
            peers = await b.client.peers()
            assert "127.0.0.1:41002" in peers["discouraged"]
            assert "127.0.0.1:41001" not in peers["discouraged"]
            assert forged.txid.hex() not in {t["txid"] for t in (await b.client.mempool())["txs"]}

    asyncio.run(scenario())


async def _peers(node, n):
    return (await node.client.status())["peers"] == n


async def _mempool(node, n):
    return (await node.client.status())["mempool"] == n
