"""Hostile peers: garbage, oversize frames, a wrong genesis, an invalid block and a flood are disconnected and
discouraged; the honest peer keeps being served and the invalid block is never relayed."""
from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest

from chain.block import Block, Header
from chain.crypto import Keypair
from node import wire
from node.tools.testing import InProcessNode, make_test_chain, node_config, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_test_chain(tmp_path_factory.mktemp("chain"), rounds=10)


def _hello(chain, listen_port: int, genesis_hash: bytes | None = None) -> bytes:
    return wire.encode(wire.Hello(wire.PROTOCOL_VERSION, chain.genesis.chain_id, genesis_hash or chain.genesis.hash,
                                  0, 0, "127.0.0.1", listen_port, int.from_bytes(os.urandom(8), "big"), "hostile"))


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> list:
    """Read until the node closes the connection; returns what it sent."""
    got = []
    async with asyncio.timeout(30):
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                got.append(wire.decode(msg.data))
    return got


def _invalid_block(chain) -> Block:
    g = chain.genesis.header
    miner = Keypair.generate()
    header = Header(1, chain.genesis.chain_id, 1, g.hash, 1, g.timestamp + 1, miner.public, bytes(32), bytes(32),
                    bytes(32), os.urandom(32)).sign(miner)
    return Block(header, (), b"not a model", b"not a payload")


def test_hostile_peers_are_dropped_honest_peers_served(chain, tmp_path):
    async def scenario():
        async with InProcessNode(node_config(tmp_path / "B2", chain, keyholder=True)) as b, \
                InProcessNode(node_config(tmp_path / "C2", chain, peers=(b.p2p_addr,))) as c:
            await wait_for(lambda: _peer_count(b, 1))
            url = f"http://127.0.0.1:{b.node.p2p_port}/p2p"
            async with aiohttp.ClientSession() as session:
                # 1. garbage before the handshake
                ws = await session.ws_connect(url)
                await ws.send_bytes(b"\xff\x00garbage")
                await _closed(ws)
                # 2. oversize frame after the handshake (a PING far over its 16-byte cap)
                ws = await session.ws_connect(url, max_msg_size=0)
                await ws.send_bytes(_hello(chain, 40001))
                await ws.send_bytes(bytes([wire.MsgType.PING]) + b"\x91\xc4\xff" + b"\x00" * 255)
                await _closed(ws)
                # 2b. a frame over the websocket limit itself
                ws = await session.ws_connect(url, max_msg_size=0)
                await ws.send_bytes(_hello(chain, 40002))
                await _send(ws, b"\x0c" + b"\x00" * (wire.MAX_FRAME + 10))
                await _closed(ws)
                # 3. wrong genesis: refused with a reason
                ws = await session.ws_connect(url, max_msg_size=0)
                await ws.send_bytes(_hello(chain, 40003, genesis_hash=bytes(32)))
                got = await _closed(ws)
                assert any(isinstance(m, wire.Reject) and "wrong chain" in m.reason for m in got)
                # 4. an invalid block
                bad = _invalid_block(chain)
                ws = await session.ws_connect(url, max_msg_size=0)
                await ws.send_bytes(_hello(chain, 40004))
                await ws.send_bytes(wire.encode(wire.Object(wire.InvKind.BLOCK, bad.encode())))
                await _closed(ws)
                # 5. a flood of cheap frames: throttled, then dropped
                ws = await session.ws_connect(url, max_msg_size=0)
                await ws.send_bytes(_hello(chain, 40005))
                frame = wire.encode(wire.NotFound(()))
                try:
                    for _ in range(20_000):
                        await ws.send_bytes(frame)
                        if ws.closed:
                            break
                except (ConnectionError, aiohttp.ClientError):
                    pass
                await _closed(ws)
                # the discouraged listen addresses are refused when they come back
                ws = await session.ws_connect(url, max_msg_size=0)
                await ws.send_bytes(_hello(chain, 40004))
                await _closed(ws)

            peers = await b.client.peers()
            discouraged = peers["discouraged"]
            for port in (40001, 40002, 40003, 40004, 40005):
                assert f"127.0.0.1:{port}" in discouraged, (port, discouraged)
            # the honest peer is still connected and served; the invalid block went nowhere
            assert [p["address"] for p in peers["peers"]] == [f"127.0.0.1:{c.node.p2p_port}"]
            assert (await c.client.status())["peers"] == 1
            for node in (b, c):
                try:
                    await node.client.block(bad.hash.hex())
                    raise AssertionError("invalid block stored")
                except Exception as exc:
                    assert "404" in str(exc)
            assert c.node.metrics.get("popchain_objects_received_total", kind="block") == 0
            assert b.node.metrics.get("popchain_peer_offences_total", reason="invalid-block") == 1
            assert b.node.metrics.get("popchain_peer_offences_total", reason="flood") >= 1
            # honest gossip still flows both ways: C learns B's round objects
            await wait_for(lambda: _has_round(c, 1), timeout=30)

    asyncio.run(scenario())


async def _send(ws, data: bytes) -> None:
    try:
        await ws.send_bytes(data)
    except (ConnectionError, aiohttp.ClientError):
        pass  # the node may close before we finish writing


async def _peer_count(node, n):
    return (await node.client.status())["peers"] == n


async def _has_round(node, r):
    return (await node.client.status())["round"] >= r


def test_silent_peer_is_dropped_after_the_handshake_timeout(chain, tmp_path, monkeypatch):
    import node.peer
    monkeypatch.setattr(node.peer, "HANDSHAKE_TIMEOUT_S", 0.3)

    async def scenario():
        async with InProcessNode(node_config(tmp_path / "B", chain)) as b:
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(f"http://127.0.0.1:{b.node.p2p_port}/p2p", max_msg_size=0)
                got = await _closed(ws)  # we never send HELLO: the node gives up on us
                assert [type(m) for m in got] == [wire.Hello]
            assert (await b.client.status())["peers"] == 0

    asyncio.run(scenario())
