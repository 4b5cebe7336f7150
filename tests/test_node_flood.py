"""A hostile peer's INV flood (issue 10): 1,000 random ids per frame, inside the frame rate limit, against a real
node process. On 7fbb06b the node tried to fetch every id (one request-table entry each, no bound): 627 MB RSS
after 30 s, no offence recorded, API latency 370 ms. Now what the node asks one peer for is bounded, its memory
stays bounded and it keeps serving its API. Not timed: the flood is a fixed number of frames, and a PING/PONG
after it proves the node has read them all."""
from __future__ import annotations

import asyncio

import pytest

from benchmarks._nodeproc import NodeProc, metric_sum
from benchmarks.flood import FloodStats, HostilePeer, frame_maker
from node import wire
from node.inventory import PER_PEER_INFLIGHT
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
        frame = frame_maker(kind, chain, [40000])()
        assert wire.encode(wire.decode(frame)) == frame


def test_inv_flood_is_bounded_and_node_keeps_serving(chain, tmp_path):
    async def scenario():
        node = NodeProc(tmp_path / "victim", genesis=chain.genesis_path).start()
        try:
            await node.ready()
            stats = FloodStats("inv")
            make = frame_maker("inv", chain, [])
            async with peer_session("127.0.0.2") as session, NodeClient(node.api_url) as api:
                peer = HostilePeer(session, f"http://{node.p2p_addr[0]}:{node.p2p_addr[1]}/p2p", chain, stats)
                assert await peer.connect()
                rss_before = node.rss_mb()
                for _ in range(FRAMES):
                    if not await peer.send(make()):
                        break
                if peer.open:
                    await peer.barrier(timeout=180)
                growth = node.rss_mb() - rss_before
                status = await api.status()
                metrics = (await api._request("GET", "/metrics", raw=True)).decode()
                await peer.close()
            assert status["chain_id"] == chain.genesis.chain_id      # still serving its API
            # the request table holds at most one peer's slots (requests expire after REQUEST_TIMEOUT_S and free
            # slots, so on a slow host more than PER_PEER_INFLIGHT may be asked in all — but never most of them)
            assert "popchain_requests_inflight" in metrics
            assert metric_sum(metrics, "popchain_requests_inflight") <= PER_PEER_INFLIGHT
            announced = FRAMES * wire.MAX_INV_ITEMS
            assert stats.getdata_ids <= announced // 4, f"node asked the flooder for {stats.getdata_ids} ids"
            assert growth <= MAX_GROWTH_MB, f"RSS grew {growth:.0f} MB under {FRAMES} INV frames"
            assert node.alive()
        finally:
            node.stop()

    asyncio.run(scenario())
