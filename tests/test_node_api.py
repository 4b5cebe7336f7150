"""The HTTP API: JSON errors with proper statuses, read endpoints, the template, cookie auth on writes."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from chain.address import address_of, encode_address
from chain.tx import make_transfer
from node.tools.client import ApiCallError, NodeClient
from node.tools.testing import InProcessNode, make_test_chain, node_config, template_from_json, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_test_chain(tmp_path_factory.mktemp("chain"), rounds=10)


def test_read_endpoints_and_errors(chain, tmp_path):
    async def scenario():
        async with InProcessNode(node_config(tmp_path / "A", chain, keyholder=True)) as a:
            c = a.client
            st = await c.status()
            assert st["chain_id"] == chain.genesis.chain_id and st["height"] == 0
            genesis_block = await c.block(0)
            assert genesis_block["hash"] == chain.genesis.hash.hex()
            assert (await c.block(chain.genesis.hash.hex()))["header"]["height"] == 0
            for path, status in (("/api/blocks/999", 404), ("/api/blocks/zz", 400), ("/api/txs/00", 400),
                                 ("/api/rounds/0", 404), ("/api/models/" + "00" * 32, 404), ("/api/nope", 404),
                                 ("/api/accounts/pop1bogus", 400), ("/api/template?miner=12", 400)):
                with pytest.raises(ApiCallError) as err:
                    await c.get(path)
                assert err.value.status == status, path
            async with aiohttp.ClientSession() as s:
                async with s.post(a.api_url + "/api/txs", data=b"not json") as resp:
                    body = await resp.json()
                    assert resp.status == 400 and set(body["error"]) == {"code", "message"}
            champion = await c.champion()
            model = await c.model(champion["champion"]["model_hash"])
            assert model == chain.genesis.block.model
            task = await c.task()
            assert task["rounds"] == chain.genesis.n_rounds
            await wait_for(lambda: _open_round(c), timeout=30)
            tpl = template_from_json(await c.template(chain.miners[0].public))
            assert tpl.prev_hash == chain.genesis.hash and tpl.round >= 1
            assert (await c.round("current"))["round"] >= 1
            user, dest = chain.users
            acct = await c.account(encode_address(address_of(user.public)))
            tx = make_transfer(user, chain.genesis.chain_id, address_of(dest.public), 7, 1_000, acct["nonce"])
            res = await c.send_tx(tx.encode())
            assert res["id"] == tx.txid.hex()
            assert (await c.tx(tx.txid.hex()))["status"] == "pending"
            assert (await c.mempool())["size"] == 1
            with pytest.raises(ApiCallError) as err:  # same nonce, same fee: refused with a stable code
                await c.send_tx(make_transfer(user, chain.genesis.chain_id, address_of(dest.public), 8, 1_000,
                                              acct["nonce"]).encode())
            assert err.value.status == 422
            metrics = await (await c._session.get(a.api_url + "/metrics")).text()
            assert "popchain_mempool_txs 1.0" in metrics

    asyncio.run(scenario())


async def _open_round(c):
    return (await c.status())["open_round"] >= 1


def test_api_listen_requires_cookie_for_writes(chain, tmp_path):
    async def scenario():
        cfg = node_config(tmp_path / "A", chain, api_listen="127.0.0.1")
        async with InProcessNode(cfg) as a:
            with pytest.raises(ApiCallError) as err:
                await a.client.send_tx(b"\x00")
            assert err.value.status == 401
            assert (await a.client.status())["height"] == 0  # reads stay open
            async with NodeClient(a.api_url, datadir=tmp_path / "A") as authed:
                with pytest.raises(ApiCallError) as err:
                    await authed.send_tx(b"\x00")
                assert err.value.status == 422  # past auth, refused as a bad tx

    asyncio.run(scenario())
