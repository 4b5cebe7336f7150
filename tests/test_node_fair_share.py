"""Fair shares of what one host can take (issue 19, *Why* 6), against real node processes:

- one IP holding every SSE stream slot made ``/api/events`` answer 503 to everyone (e466b38): now an IP holds at
  most its share and a client from another IP still gets a stream;
- a host's made-up listen ports were relayed in ADDR answers, so one IP filled most of a newcomer's address
  book (e466b38): now ADDR carries only addresses the node dialled and completed a handshake with.
"""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from benchmarks._attack import status, until
from benchmarks._nodeproc import NodeProc
from benchmarks.hostile import hello
from node import wire
from node.events import MAX_SUBSCRIBERS
from node.tools.testing import make_test_chain, peer_session

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_test_chain(tmp_path_factory.mktemp("chain"), rounds=4)


def test_one_ip_cannot_take_every_event_stream(chain, tmp_path):
    async def scenario() -> tuple[int, int, str]:
        node = NodeProc(tmp_path / "N", genesis=chain.genesis_path).start()
        try:
            await node.ready()
            url = f"{node.api_url}/api/events"
            async with peer_session("127.0.0.60") as greedy, peer_session("127.0.0.61") as other:
                held = []
                for _ in range(MAX_SUBSCRIBERS):
                    try:
                        held.append(await greedy.get(url, timeout=aiohttp.ClientTimeout(total=None, connect=10)))
                    except aiohttp.ClientError:
                        break
                greedy_ok = sum(r.status == 200 for r in held)
                resp = await other.get(url, timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=30))
                first = (await resp.content.readuntil(b"\n\n")).decode() if resp.status == 200 else ""
                code = resp.status
                resp.close()
                for r in held:
                    r.close()
                return greedy_ok, code, first
        finally:
            await asyncio.to_thread(node.stop)
    greedy_ok, code, first = asyncio.run(scenario())
    assert code == 200 and "event: hello" in first, (code, greedy_ok)
    assert greedy_ok < MAX_SUBSCRIBERS


def test_addr_answers_carry_only_addresses_the_node_reached_itself(chain, tmp_path):
    fake_ports = list(range(30101, 30109))

    async def scenario() -> tuple[set[tuple[str, int]], tuple[str, int]]:
        honest = NodeProc(tmp_path / "H", genesis=chain.genesis_path).start()
        victim = None
        try:
            await honest.ready()
            victim = NodeProc(tmp_path / "V", genesis=chain.genesis_path, peers=[honest.p2p_addr]).start()
            await victim.ready()
            assert await until(lambda: _peers(victim, 1), 60) is not None
            url = f"http://{victim.p2p_addr[0]}:{victim.p2p_addr[1]}/p2p"
            async with peer_session("127.0.0.62") as liar, peer_session("127.0.0.63") as newcomer:
                held = []
                for port in fake_ports:   # one host, eight made-up listen ports
                    ws = await liar.ws_connect(url, autoping=False, max_msg_size=wire.MAX_FRAME)
                    await ws.send_bytes(hello(chain.genesis, port, host="127.0.0.62"))
                    held.append(ws)
                assert await until(lambda: _peers(victim, 1 + len(fake_ports)), 60) is not None
                ws = await newcomer.ws_connect(url, autoping=False, max_msg_size=wire.MAX_FRAME)
                await ws.send_bytes(hello(chain.genesis, 0))
                await ws.send_bytes(wire.encode(wire.GetAddr()))
                addrs: set[tuple[str, int]] = set()
                async with asyncio.timeout(30):
                    while True:
                        msg = await ws.receive()
                        m = wire.decode(msg.data)
                        if isinstance(m, wire.Addr):
                            addrs = set(m.addrs)
                            break
                for w in held + [ws]:
                    await w.close()
            return addrs, honest.p2p_addr
        finally:
            if victim is not None:
                await asyncio.to_thread(victim.stop)
            await asyncio.to_thread(honest.stop)
    addrs, honest_addr = asyncio.run(scenario())
    assert not {a for a in addrs if a[0] == "127.0.0.62"}, f"unverified addresses relayed: {sorted(addrs)}"
    assert honest_addr in addrs, f"the address the node dialled itself is missing: {sorted(addrs)}"


async def _peers(node: NodeProc, n: int) -> bool:
    return int((await status(node))["peers"]) >= n
