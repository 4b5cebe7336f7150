"""The API's storage-backed and bounded parts: batch submission, bounded JSON bodies, the tx and address
indexes, and the defects of issue 14 that live in node/api.py. One in-process node per scenario."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiohttp
import pytest

from chain.address import address_of, encode_address
from chain.tx import make_transfer
from node.api import MAX_BATCH_TXS
from node.api_body import MAX_JSON_DEPTH, MAX_TX_BODY, json_depth_ok
from node.tools.testing import InProcessNode, make_test_chain, node_config

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parent.parent


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
        node = InProcessNode(node_config(tmp_path / "A", chain))
        node.node.health = lambda: {"ok": True, "tasks": {"blocks": "running"}}  # the supervisor's seam
        async with node as a:
            assert (await a.client.status())["health"] == {"ok": True, "tasks": {"blocks": "running"}}
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


# --------------------------------------------------------------------------- one confirmed block, two nodes


async def _mine_one_block(c, chain, model: bytes, txs) -> dict:
    """Round 1 on the keyholder's node: the txs in, miner 0 enters, opens after the beacon (crowned)."""
    from consensus.mining import open_block, seal
    from consensus.protocol.messages import Beacon
    from node.tools.testing import template_from_json, wait_for

    async def open_round():
        return (await c.status())["open_round"] >= 1
    await wait_for(open_round, timeout=30)
    res = await c.send_txs([t.encode() for t in txs])
    assert res["accepted"] == len(txs), res
    tpl = template_from_json(await c.template(chain.miners[0].public))
    assert {t.txid for t in tpl.txs} == {t.txid for t in txs}
    block, entry = seal(tpl, model, chain.miners[0], bytes(32))
    await c.send_entry(entry.encode())

    async def beacon():
        return (await c.round(tpl.round)).get("beacon")
    b = Beacon.decode(bytes.fromhex(await wait_for(beacon, timeout=30)))
    champion = await c.model(tpl.champion_model_hash.hex())
    opened = open_block(block, b, genesis=chain.genesis, champion_bytes=champion)
    res = await c.send_opening(opened.encode())
    assert res["status"] == "tip-changed", res
    return {"hash": opened.hash.hex()}


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cli", *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_indexes_history_and_api_defects(tmp_path):
    from chain.address import decode_address
    from chain.wallet import Wallet
    from ml.model import encode_model
    from ml.training import train_candidate
    from node.tools.client import ApiCallError
    from node.tools.testing import wait_for

    chain = make_test_chain(tmp_path / "chain", rounds=5, entry_window_s=4, opening_window_s=30)
    g = chain.genesis
    model = encode_model(train_candidate("mlp", g.task.training, (), seed=11, caps=g.model_caps))
    (tmp_path / "pw").write_text("pw\n")
    wallet = Wallet.create(tmp_path / "w.popkeys", "pw", opslimit=1, memlimit=8192)
    mine = wallet.new_key("mine")
    user, other = chain.users
    sent = [make_transfer(user, g.chain_id, address_of(other.public), 11, 1_000, 0),
            make_transfer(user, g.chain_id, decode_address(mine.address), 777, 1_000, 1)]

    async def scenario():
        async with InProcessNode(node_config(tmp_path / "A", chain, keyholder=True)) as a, \
                InProcessNode(node_config(tmp_path / "B", chain, peers=(a.p2p_addr,))) as b:
            c = a.client
            block = await _mine_one_block(c, chain, model, sent)
            # the tx index answers (no block scan), with the position in the block
            info = await c.tx(sent[1].txid.hex())
            assert (info["status"], info["height"], info["block"], info["position"]) == \
                ("confirmed", 1, block["hash"], 1)
            # an address's history, both directions, paged newest first
            addr_user = encode_address(address_of(user.public))
            page1 = await c.account_txs(addr_user, limit=1)
            assert [t["tx"]["txid"] for t in page1["txs"]] == [sent[1].txid.hex()] and page1["next"] == "1:1"
            page2 = await c.account_txs(addr_user, limit=1, before=page1["next"])
            assert [t["tx"]["txid"] for t in page2["txs"]] == [sent[0].txid.hex()]
            assert (await c.account_txs(addr_user, limit=1, before=page2["next"]))["txs"] == []
            got = await c.account_txs(mine.address)
            assert [(t["direction"], t["tx"]["amount"]) for t in got["txs"]] == [("received", 777)]
            for bad in ("?limit=0", "?limit=501", "?before=x", "?before=1:"):
                with pytest.raises(ApiCallError) as err:
                    await c.get(f"/api/accounts/{addr_user}/txs{bad}")
                assert err.value.status == 400, bad
            # a confirmed transfer submitted again is not "accepted, duplicate"
            with pytest.raises(ApiCallError) as err:
                await c.send_tx(sent[0].encode())
            assert (err.value.status, err.value.code) == (409, "already-confirmed")
            [v] = (await c.send_txs([sent[0].encode()]))["results"]
            assert not v["accepted"] and v["status"] == "confirmed" and v["height"] == 1
            # 64 hex digits are a hash, never a height; a round must be a number
            for path, status in (("/api/blocks/" + "0" * 64, 404), ("/api/blocks/" + "1" * 64, 404),
                                 ("/api/rounds/abc", 400), ("/api/rounds/0", 404), ("/api/blocks/1", 200)):
                if status == 200:
                    assert (await c.get(path))["hash"] == block["hash"]
                    continue
                with pytest.raises(ApiCallError) as err:
                    await c.get(path)
                assert err.value.status == status, path

            # the peer list shows the height a peer has since shown us, not the one of its handshake
            async def b_synced():
                return (await b.client.status())["height"] == 1
            await wait_for(b_synced, timeout=30)
            peers = (await b.client.peers())["peers"]
            assert [p["height"] for p in peers] == [1]
            # `wallet history` reads the index (it used to crash with KeyError 'from'); a real process, run
            # without blocking this loop (the nodes live on it)
            wallet_args = ["--wallet", str(tmp_path / "w.popkeys"), "--password-file", str(tmp_path / "pw")]
            code, out, err = await _cli("wallet", "history", "--node", a.api_url, *wallet_args, "--json")
            assert code == 0, err
            rows = json.loads(out)
            assert [(r["direction"], r["tx"]["txid"]) for r in rows] == [("received", sent[1].txid.hex())]
            code, out, err = await _cli("wallet", "history", "--node", a.api_url, *wallet_args)
            assert code == 0 and "777" in out and addr_user in out, err

    asyncio.run(scenario())


def _depth(v) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    return 0


def test_depth_check_agrees_with_the_parser_property():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    leaves = st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6)
    values = st.recursive(leaves, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
        st.text(alphabet='[]{}"\\k', max_size=3), kids, max_size=3), max_leaves=60)

    @settings(max_examples=200, deadline=None)
    @given(values, st.integers(1, 8))
    def check(value, limit):
        assert json_depth_ok(json.dumps(value).encode(), limit) == (_depth(value) <= limit)
    check()
