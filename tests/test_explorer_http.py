"""The explorer over plain HTTP against a live 2-node network (processes) with a scripted miner: pages and their
content types, friendly 404 pages for unknown ids (never a traceback), search, the leaderboard's figures against
an independent scoring of each champion on its revealed shard, miner rewards, the live event stream of a real
node, and the prometheus metrics."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from chain.address import address_of, encode_address
from chain.tx import make_transfer
from ml.model import decode_model
from ml.score import score
from ml.shards import open_shard
from node.tools.events_client import follow
from node.tools.testing import wait_for
from tests.explorer_net import ExplorerNet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    n = ExplorerNet(tmp_path_factory.mktemp("explorer-http")).start()
    try:
        async def crowned_and_void(ca, cb):
            async def ready():
                lb = await ca.get("/api/explorer/leaderboard")
                statuses = {r["status"] for r in lb["rounds"]}
                return (await ca.status())["height"] >= 2 and "crowned" in statuses
            await wait_for(ready, timeout=180, interval=0.3, what="two crowned rounds")
        n.run(crowned_and_void, timeout=200)
        yield n
    finally:
        n.stop()


async def _get(session, url, **kw):
    async with session.get(url, allow_redirects=False, **kw) as resp:
        return resp.status, resp.headers, await resp.text()


def test_pages_static_and_404s(net):
    async def scenario(ca, cb):
        st = await ca.status()
        tip = st["tip"]
        user = encode_address(address_of(net.chain.users[0].public))
        async with aiohttp.ClientSession() as s:
            for url in (net.urls[0], net.urls[1]):
                for path in ("/", "/leaderboard", "/peers", "/block/0", f"/block/{tip}", "/round/1",
                             f"/account/{user}", f"/miner/{user}"):
                    status, headers, text = await _get(s, url + path)
                    assert status == 200, path
                    assert headers["Content-Type"].startswith("text/html"), path
                    assert "script-src 'self'" in headers["Content-Security-Policy"]
                    assert 'src="/static/app.js"' in text
            for name in ("app.js", "ui.js", "live.js", "chart.js", "views_chain.js", "views_compete.js"):
                status, headers, text = await _get(s, net.urls[0] + "/static/" + name)
                assert status == 200 and "javascript" in headers["Content-Type"] and "innerHTML" not in text
            status, headers, _ = await _get(s, net.urls[0] + "/static/style.css")
            assert status == 200 and headers["Content-Type"].startswith("text/css")
            unknown = ["/block/999999", "/block/" + "ab" * 32, "/block/<script>alert(1)</script>",
                       "/tx/" + "cd" * 32, "/tx/nothex", "/round/0", f"/round/{net.chain.genesis.n_rounds + 1}",
                       "/round/99999999999999999999", "/account/pop1bogus", "/miner/xyz", "/no/such/page",
                       "/static/nope.js", "/search?q=nothing-here", "/search?q=999999"]
            for path in unknown:
                status, headers, text = await _get(s, net.urls[0] + path)
                assert status == 404, path
                assert headers["Content-Type"].startswith("text/html"), path
                assert "Not found" in text and "Traceback" not in text, path
                assert "<script>alert" not in text, path  # the id is escaped into the page
            status, headers, text = await _get(s, net.urls[0] + "/api/nope")
            assert status == 404 and headers["Content-Type"].startswith("application/json")
    net.run(scenario)


def test_search_finds_height_hash_txid_address(net):
    async def scenario(ca, cb):
        user, dest = net.chain.users
        acct = await ca.account(encode_address(address_of(user.public)))
        tx = make_transfer(user, net.chain.genesis.chain_id, address_of(dest.public), 5, 1_000, acct["next_nonce"])
        await ca.send_tx(tx.encode())
        st = await ca.status()
        address = encode_address(address_of(dest.public))
        async with aiohttp.ClientSession() as s:
            for q, target in ((str(st["height"]), f"/block/{st['height']}"), (st["tip"], f"/block/{st['tip']}"),
                              (st["tip"].upper(), f"/block/{st['tip']}"), (tx.txid.hex(), f"/tx/{tx.txid.hex()}"),
                              (address, f"/account/{address}")):
                status, headers, _ = await _get(s, net.urls[0] + "/search", params={"q": q})
                assert status == 302 and headers["Location"] == target, q
                status, _, _ = await _get(s, net.urls[0] + target)
                assert status == 200, target
            status, _, body = await _get(s, net.urls[0] + "/api/explorer/search", params={"q": tx.txid.hex()})
            assert status == 200 and f"/tx/{tx.txid.hex()}" in body
    net.run(scenario)


def test_leaderboard_figures_match_the_chain(net):
    async def scenario(ca, cb):
        async def consistent():  # the two reads agree unless a block lands between them: read again
            champ = await ca.champion()
            lb = await ca.get("/api/explorer/leaderboard")
            return (lb, champ) if lb["lineage"][-1]["hash"] == champ["champion"]["hash"] else None
        lb, champ = await wait_for(consistent, timeout=60)
        g = net.chain.genesis
        assert [(r["hash"], r["b"], r["c"]) for r in lb["lineage"]] == \
            [(r["hash"], r["b"], r["c"]) for r in sorted(champ["history"], key=lambda x: x["height"])]
        assert lb["lineage"][-1]["hash"] == champ["champion"]["hash"]
        task = await ca.task()
        keys = {k["round"]: bytes.fromhex(k["shard_key"]) for k in task["revealed"]}
        checked = 0
        for rec in lb["lineage"][1:]:
            model = decode_model(await ca.model(rec["model_hash"]), g.task.spec, g.model_caps)
            shard = open_shard(g.task, rec["round"], keys[rec["round"]])
            expected = score(model, shard.X, shard.y)
            assert rec["accuracy"] == {"correct": expected.n_correct, "n": expected.n}
            checked += 1
        assert checked >= 1
        by_round = {r["round"]: r for r in lb["rounds"]}
        for rec in lb["lineage"][1:]:
            assert by_round[rec["round"]]["status"] in ("crowned", "revealed")  # revealed: leading, not final
            assert by_round[rec["round"]]["accuracy"] == rec["accuracy"]
        for r in lb["rounds"]:
            if r["status"] in ("crowned", "void"):  # final: never changes
                assert (await ca.round(r["round"]))["status"] == r["status"]
        # a miner's wins and rewards are its crowned blocks' rewards and fees
        miner = encode_address(address_of(net.chain.miners[0].public))
        m = await ca.get(f"/api/explorer/miners/{miner}")
        wins = [r for r in champ["history"] if r.get("miner_address") == miner and r["height"] > 0]
        assert m["wins"] == len(wins) >= 1
        fees = 0
        for r in wins:
            fees += sum(t["fee"] for t in (await ca.block(r["height"]))["txs"])
        assert m["rewards"] == len(wins) * g.params.block_reward + fees
    net.run(scenario)


def test_event_stream_of_a_live_node(net):
    async def scenario(ca, cb):
        seen: list[dict] = []
        kinds: set[str] = set()
        stream = follow(net.urls[1])
        try:
            async for ev in stream:
                seen.append(ev)
                kinds.add(ev["kind"])
                if {"tip", "round", "beacon", "verdict"} <= kinds and len(seen) > 6:
                    break
        finally:
            await stream.aclose()
        assert seen[0]["kind"] == "hello" and "height" in seen[0]
        ids = [e["id"] for e in seen[1:]]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        tips = [e for e in seen if e["kind"] == "tip"]
        st = await cb.status()
        assert tips[-1]["height"] <= st["height"]
        block = await cb.block(tips[-1]["height"])
        assert block["hash"] == tips[-1]["tip"] or tips[-1]["height"] < st["height"]
        verdicts = [e for e in seen if e["kind"] == "verdict"]
        for v in verdicts:
            assert (await cb.round(v["round"]))["status"] == v["outcome"]
        # resume: Last-Event-ID replays exactly what came after it, from the ring
        mid = ids[len(ids) // 2]
        replayed = []
        stream = follow(net.urls[1], last_id=mid)
        try:
            async for ev in stream:
                if ev["kind"] == "hello":
                    continue
                replayed.append(ev["id"])
                if ev["id"] >= ids[-1]:
                    break
        finally:
            await stream.aclose()
        assert replayed[: len(ids) - ids.index(mid) - 1] == ids[ids.index(mid) + 1:]
    net.run(scenario, timeout=120)


def test_prometheus_metrics(net):
    async def scenario(ca, cb):
        async with aiohttp.ClientSession() as s:
            status, headers, text = await _get(s, net.urls[1] + "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        for name in ("popchain_height", "popchain_peers 1.0", "popchain_blocks_accepted_total",
                     "popchain_block_validation_duration_seconds_bucket",
                     "popchain_model_scoring_duration_seconds_count", "popchain_relay_duration_seconds_count",
                     "popchain_round_duration_seconds_count", "# TYPE popchain_block_validation_duration_seconds "
                     "histogram"):
            assert name in text, name
        assert "_created" not in text
    net.run(scenario)


def test_registries_are_per_node_in_process(tmp_path):
    """Two in-process nodes keep their own registries (prometheus_client's global one would mix them)."""
    from node.tools.testing import InProcessNode, make_test_chain, node_config

    chain = make_test_chain(tmp_path / "chain", rounds=4)

    async def scenario():
        async with InProcessNode(node_config(tmp_path / "A", chain)) as a, \
                InProcessNode(node_config(tmp_path / "B", chain)) as b:
            a.node.metrics.inc("popchain_objects_received_total", kind="tx")
            a.node.metrics.observe("popchain_relay_duration_seconds", 0.01, kind="block")
            assert a.node.metrics.get("popchain_objects_received_total", kind="tx") == 1
            assert b.node.metrics.get("popchain_objects_received_total", kind="tx") == 0
            assert a.node.metrics.count("popchain_relay_duration_seconds", kind="block") == 1
            assert b.node.metrics.count("popchain_relay_duration_seconds", kind="block") == 0
            text = await (await a.client._session.get(a.api_url + "/metrics")).text()
            assert 'popchain_objects_received_total{kind="tx"} 1.0' in text
    asyncio.run(scenario())
