"""The API's storage-backed and bounded parts: batch submission, bounded JSON bodies, the tx and address
indexes, and the defects of issue 14 that live in node/api.py. One in-process node per scenario."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from chain.address import address_of
from chain.tx import make_transfer
from node.api import MAX_BATCH_TXS
from node.api_body import MAX_JSON_DEPTH, MAX_TX_BODY, json_depth_ok
from node.tools.testing import InProcessNode, make_test_chain, node_config

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_test_chain(tmp_path_factory.mktemp("chain"), rounds=10)


async def _post(url: str, data: bytes) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/api/txs", data=data, headers={"Content-Type": "application/json"}) as resp:
            return resp.status, await resp.json()


def test_batch_submission_keeps_order_and_single_path_codes(chain, tmp_path):
    async def scenario():
        async with InProcessNode(node_config(tmp_path / "A", chain)) as a:
            c = a.client
            user, dest = chain.users
            cid, to = chain.genesis.chain_id, address_of(dest.public)
            good = [make_transfer(user, cid, to, 5 + i, 1_000, i) for i in range(3)]
            bad_sig = bytearray(make_transfer(user, cid, to, 9, 1_000, 3).encode())
            bad_sig[-1] ^= 1
            low_fee = make_transfer(dest, cid, to, 1, 0, 0)
            batch = [good[0].encode(), b"\x01\x02", good[1].encode(), bytes(bad_sig), good[2].encode(),
                     low_fee.encode(), good[0].encode()]
            res = await c.send_txs(batch)
            r = res["results"]
            assert len(r) == len(batch) and res["accepted"] == 4
            assert [x["accepted"] for x in r] == [True, False, True, False, True, False, True]
            assert [x["id"] for x in (r[0], r[2], r[4])] == [t.txid.hex() for t in good]
            assert r[1]["error"]["code"] == "bad-encoding" and r[1]["id"] is None
            assert r[3]["error"]["status"] == 422
            assert r[5]["error"]["code"] == "fee-too-low"
            assert r[6]["status"] == "duplicate"
            # the single path answers the same code as an HTTP error
            single = await _post(a.api_url, json.dumps({"tx": low_fee.encode().hex()}).encode())
            assert single[0] == 422 and single[1]["error"]["code"] == r[5]["error"]["code"]
            assert (await c.mempool())["size"] == 3
            # one bad hex string is a per-item verdict, not a failed batch
            status, body = await _post(a.api_url, json.dumps({"txs": ["zz", good[1].encode().hex()]}).encode())
            assert status == 200 and body["results"][0]["error"]["code"] == "bad-request"
            assert body["results"][1]["status"] == "duplicate"
            for payload, code in (({"txs": []}, 400), ({"txs": "ab"}, 400), ({"txs": [1]}, 200),
                                  ({"txs": ["00"] * (MAX_BATCH_TXS + 1)}, 413)):
                status, body = await _post(a.api_url, json.dumps(payload).encode())
                assert status == code, payload

    asyncio.run(scenario())


def test_hostile_bodies_get_one_line_errors(chain, tmp_path):
    async def scenario():
        async with InProcessNode(node_config(tmp_path / "A", chain)) as a:
            deep = b"[" * 100_000 + b"]" * 100_000  # used to be a RecursionError and a 500
            status, body = await _post(a.api_url, b'{"txs": ' + deep + b"}")
            assert status == 400 and "deeper" in body["error"]["message"]
            status, body = await _post(a.api_url, b'{"tx": "' + b"0" * MAX_TX_BODY + b'"}')
            assert status == 413 and body["error"]["code"] == "body-too-large"
            for raw in (b"[1]", b"nul", b'{"tx": "00"'):
                status, body = await _post(a.api_url, raw)
                assert status == 400 and set(body["error"]) == {"code", "message"}
            assert (await a.client.status())["height"] == 0  # still serving

    asyncio.run(scenario())


def test_depth_check_ignores_brackets_in_strings():
    assert json_depth_ok(b'{"a": "' + b"[" * 1000 + b'"}')
    assert json_depth_ok(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    assert not json_depth_ok(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert json_depth_ok(b"[[]]" * 1000)  # many siblings, shallow
    assert json_depth_ok(b'["\\"[[[[", 1]')  # an escaped quote does not end the string
