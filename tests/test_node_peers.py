"""Peer policy (issue 10, *Why* — peers): discouragement is by IP, not by the port a peer advertises; one IP
cannot hold every inbound slot; half-sent upgrade requests are closed; ADDR counts only as the answer to our
GETADDR; the ban list is bounded; every known peer is re-dialled after it restarts. Attackers use their own
loopback addresses (127.0.0.x, x ≥ 2); honest nodes are on 127.0.0.1."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time

import aiohttp
import pytest

from node import wire
from node.datadir import MAX_BANS, PeerBook
from node.dialer import Dialer
from node.limits import ban_key
from node.tools.testing import InProcessNode, make_test_chain, node_config, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_test_chain(tmp_path_factory.mktemp("chain"), rounds=3)


def _hello(chain, listen_port: int, listen_host: str = "127.0.0.1") -> bytes:
    return wire.encode(wire.Hello(wire.PROTOCOL_VERSION, chain.genesis.chain_id, chain.genesis.hash, 0, 0,
                                  listen_host, listen_port, int.from_bytes(os.urandom(8), "big"), "peers-test"))


def _session(ip: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(ip, 0), force_close=True))


async def _frames_until_closed(ws) -> list:
    got = []
    async with asyncio.timeout(30):
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                got.append(wire.decode(msg.data))
    return got


async def _refusal(session, url: str) -> str | None:
    """The refusal reason if the node refused the upgrade, None if it let us in (connection closed again)."""
    try:
        ws = await session.ws_connect(url, max_msg_size=0)
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 503
        return exc.headers.get("X-Popchain-Refused") if exc.headers else "?"
    await ws.close()
    return None


def test_ban_key_is_the_ip_or_the_ipv6_64():
    assert ban_key("10.1.2.3") == "10.1.2.3"
    assert ban_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert ban_key("2001:db8:1:2::1") == ban_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert ban_key("2001:db8:1:3::1") != ban_key("2001:db8:1:2::1")


def test_ban_list_is_bounded_and_expired_bans_are_not_persisted(tmp_path):
    book = PeerBook()
    base = time.time() + 10_000
    for i in range(MAX_BANS + 500):
        book.ban(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", until=base + i)
    assert len(book.bans) == MAX_BANS
    assert "10.0.0.0" not in book.bans          # the soonest to expire went first
    data = book.to_json(now=base + MAX_BANS)    # as if MAX_BANS seconds later: bans up to then expired
    again = PeerBook.from_json(data)
    assert len(again.bans) == 499 and all(v > base + MAX_BANS for v in again.bans.values())
    (tmp_path / "peers.json").write_bytes(data)


def test_dialer_backs_off_exponentially_with_jitter():
    d = Dialer(rng=lambda: 0.5)                 # jitter factor exactly 1
    waits = [d.failed(("h", 1), now=0.0) for _ in range(10)]
    assert waits[:4] == [1.0, 2.0, 4.0, 8.0] and max(waits) == 60.0
    assert d.succeeded(("h", 1), now=0.0) == 0.5
    jittered = Dialer(rng=lambda: 0.0).failed(("h", 1), now=0.0), Dialer(rng=lambda: 0.999).failed(("h", 1), 0.0)
    assert jittered[0] == 0.5 and 1.49 < jittered[1] < 1.5


def test_bans_by_ip_per_ip_cap_header_timeout_and_unsolicited_addr(chain, tmp_path, monkeypatch):
    import node.node
    monkeypatch.setattr(node.node, "P2P_HEADER_TIMEOUT_S", 0.5)

    async def scenario():
        async with InProcessNode(node_config(tmp_path / "B", chain)) as b, \
                InProcessNode(node_config(tmp_path / "C", chain, peers=(b.p2p_addr,))) as c:
            await wait_for(lambda: _peers(b, 1), what="C connected to B")
            url = f"http://127.0.0.1:{b.node.p2p_port}/p2p"
            innocent_port = c.node.p2p_port

            # 1. an attacker advertising the innocent C's port sends garbage: *its* IP is discouraged, and it is
            #    told why before the connection closes
            async with _session("127.0.0.2") as s:
                ws = await s.ws_connect(url, max_msg_size=0)
                await ws.send_bytes(_hello(chain, innocent_port))
                await ws.send_bytes(wire.encode(wire.Object(wire.InvKind.BLOCK, b"\x00not a block")))
                got = await _frames_until_closed(ws)
                assert any(isinstance(m, wire.Reject) and m.reason.startswith("invalid-") for m in got), got
                # 2. then 254 reconnects advertising other ports: every one refused before the upgrade
                for port in range(41000, 41254):
                    assert await _refusal(s, url) == "discouraged", port
            bans = (await b.client.peers())["discouraged"]
            assert list(bans) == ["127.0.0.2"]
            assert not b.node.is_discouraged("127.0.0.1")
            # the innocent is still connected and may reconnect
            assert (await c.client.status())["peers"] == 1
            async with _session("127.0.0.1") as s:
                ws = await s.ws_connect(url, max_msg_size=0)
                await ws.send_bytes(_hello(chain, innocent_port + 1))
                await ws.close()

            # 3. one IP cannot take every inbound slot: the (cap+1)-th connection from it is refused while
            #    another IP still gets in
            cap = b.node.config.max_inbound_per_ip
            async with _session("127.0.0.3") as s3, _session("127.0.0.4") as s4:
                held = []
                for i in range(cap):
                    ws = await s3.ws_connect(url, max_msg_size=0)
                    await ws.send_bytes(_hello(chain, 42000 + i))
                    held.append(ws)
                assert await _refusal(s3, url) == "too-many-from-your-address"
                ws = await s4.ws_connect(url, max_msg_size=0)
                await ws.send_bytes(_hello(chain, 43000))
                # 4. unsolicited ADDR (we never sent this inbound peer GETADDR) is ignored
                await ws.send_bytes(wire.encode(wire.Addr((("127.0.0.9", 9999), ("127.0.0.10", 9998)))))
                await wait_for(lambda: _counter(b, "popchain_addr_ignored_total", 1), what="ADDR ignored")
                assert not any(a.startswith("127.0.0.9") or a.startswith("127.0.0.10") for a in b.node.book.addrs)
                await ws.close()
                for ws in held:
                    await ws.close()

            # 5. half-sent upgrade requests are closed by the header timeout
            conns = []
            for _ in range(20):
                reader, writer = await asyncio.open_connection("127.0.0.1", b.node.p2p_port,
                                                               local_addr=("127.0.0.5", 0))
                writer.write(b"GET /p2p HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")   # never finished
                conns.append((reader, writer))
            for reader, writer in conns:
                async with asyncio.timeout(30):
                    assert await reader.read() == b""     # EOF: the node closed it
                writer.close()
            assert b.node.metrics.get("popchain_peer_offences_total", reason="flood") == 0

    asyncio.run(scenario())


def test_known_peer_is_redialled_after_it_restarts(chain, tmp_path):
    """C knows B only from its address book (no --peer): after B restarts on its port, C dials it again."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()

    async def scenario():
        b_cfg = dataclasses.replace(node_config(tmp_path / "B", chain), port=port)
        async with InProcessNode(b_cfg) as b:
            # first run of C: --peer B, so B's address lands in C's book
            async with InProcessNode(node_config(tmp_path / "C", chain, peers=(b.p2p_addr,))) as c:
                await wait_for(lambda: _peers(c, 1))
            async with InProcessNode(node_config(tmp_path / "C", chain)) as c:   # book only
                await wait_for(lambda: _peers(c, 1), what="C dials B from its book")
                await b.stop()
                await wait_for(lambda: _peers(c, 0), what="C lost B")
                b2 = InProcessNode(b_cfg)
                await b2.__aenter__()
                try:
                    await wait_for(lambda: _peers(c, 1), timeout=90, what="C re-dials the restarted B")
                finally:
                    await b2.stop()

    asyncio.run(scenario())


async def _peers(node, n):
    return (await node.client.status())["peers"] == n


async def _counter(node, name, n):
    return node.node.metrics.get(name) >= n


def test_fake_headers_leave_with_their_peer(chain, tmp_path):
    """Headers are unchecked hints: a peer feeding a fake 500-header chain filled the want list for good (and
    every second cost one engine-worker hop per entry). Now its entries go when it does."""
    from chain.block import Header
    from chain.crypto import Keypair

    g = chain.genesis.header
    miner = Keypair.generate()
    headers, prev = [], g.hash
    for height in range(1, wire.MAX_HEADERS + 1):
        h = Header(1, chain.genesis.chain_id, height, prev, height, g.timestamp + height, miner.public, bytes(32),
                   bytes(32), bytes(32), os.urandom(32)).sign(miner)
        headers.append(h.encode())
        prev = h.hash

    async def scenario():
        async with InProcessNode(node_config(tmp_path / "S", chain)) as n:
            url = f"http://127.0.0.1:{n.node.p2p_port}/p2p"
            async with _session("127.0.0.6") as s:
                ws = await s.ws_connect(url, max_msg_size=0)
                await ws.send_bytes(_hello(chain, 44000))
                await ws.send_bytes(wire.encode(wire.Headers(tuple(headers))))
                await wait_for(lambda: _syncing(n, wire.MAX_HEADERS), what="fake headers wanted")
                await ws.close()
            await wait_for(lambda: _syncing(n, 0), what="want list emptied when the peer left")

    asyncio.run(scenario())


async def _syncing(node, n):
    return (await node.client.status())["syncing"] == n
