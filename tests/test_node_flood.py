"""A hostile peer's INV flood (issue 10): 1,000 random ids per frame, inside the frame rate limit, against a real
node process. On 7fbb06b the node tried to fetch every id (one request-table entry each, no bound): 627 MB RSS
after 30 s, no offence recorded, API latency 370 ms. Now what the node asks one peer for is bounded by its share
of the global request budget (node.budgets), its memory stays bounded and it keeps serving its API. Not timed:
the flood is a fixed number of frames, and a PING/PONG after it proves the node has read them all. (Floods from
31 peers on 4 IPs: tests/test_node_hostile.py.)"""
from __future__ import annotations

import asyncio
import os

import pytest

from benchmarks._nodeproc import NodeProc, metric_sum
from benchmarks.hostile import Conn, Stats, frame_maker
from node import wire
from node.budgets import Budgets
from node.tools.client import NodeClient
from node.tools.testing import make_test_chain, peer_session

pytestmark = pytest.mark.timeout(240)

FRAMES = 300                 # 300,000 random ids; inside the burst of the frame limit (2,000 frames)
MAX_GROWTH_MB = 64.0


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_test_chain(tmp_path_factory.mktemp("chain"), rounds=3)


def test_flood_frames_are_canonical_wire_frames(chain):
    for kind in ("inv", "getdata", "addr", "tx"):
        frame = frame_maker(kind, chain.genesis, [os.urandom(32)])()
        assert wire.encode(wire.decode(frame)) == frame


def test_inv_flood_is_bounded_and_node_keeps_serving(chain, tmp_path):
    async def scenario():
        node = NodeProc(tmp_path / "victim", genesis=chain.genesis_path).start()
        try:
            await node.ready()
            stats = Stats("inv")
            make = frame_maker("inv", chain.genesis, [])
            async with peer_session("127.0.0.2") as session, NodeClient(node.api_url) as api:
                conn = Conn(session, f"http://{node.p2p_addr[0]}:{node.p2p_addr[1]}/p2p", chain.genesis, stats)
                assert await conn.open()
                rss_before = node.rss_mb()
                for _ in range(FRAMES):
                    if not await conn.send(make()):
                        break
                if conn.alive:
                    assert conn.ws is not None
                    await conn.ws.send_bytes(wire.encode(wire.Ping(7)))   # answered after every frame before it
                    async with asyncio.timeout(180):
                        while conn.alive and 7 not in conn.pongs:
                            await asyncio.sleep(0.05)
                growth = node.rss_mb() - rss_before
                status = await api.status()
                metrics = (await api._request("GET", "/metrics", raw=True)).decode()
                await conn.close()
            assert status["chain_id"] == chain.genesis.chain_id      # still serving its API
            share = Budgets.for_slots(32, 8).requests_per_peer
            assert "popchain_requests_inflight" in metrics
            assert metric_sum(metrics, "popchain_requests_inflight") <= share
            announced = FRAMES * wire.MAX_INV_ITEMS
            assert stats.getdata_ids <= announced // 4, f"node asked the flooder for {stats.getdata_ids} ids"
            assert growth <= MAX_GROWTH_MB, f"RSS grew {growth:.0f} MB under {FRAMES} INV frames"
            assert node.alive()
        finally:
            node.stop()

    asyncio.run(scenario())
