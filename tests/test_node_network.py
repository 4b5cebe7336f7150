"""Real nodes on 127.0.0.1 (port 0, temp datadirs): a line of four with a keyholder and two scripted miners,
a transfer across the line, a late joiner syncing to the tip, and a keyholder restarted mid-round."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from chain.address import address_of, encode_address
from chain.tx import make_transfer
from node.tools.testing import InProcessNode, ScriptedMiner, make_test_chain, node_config, wait_for

_node_config = node_config

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_test_chain(tmp_path_factory.mktemp("chain"), rounds=40, entry_window_s=1, opening_window_s=1)


async def _tips(nodes):
    out = []
    for n in nodes:
        st = await n.client.status()
        out.append((st["height"], st["tip"], st["state_root"]))
    return out


async def _same_tip(nodes, min_height=0):
    tips = await _tips(nodes)
    return len(set(tips)) == 1 and tips[0][0] >= min_height and tips


def test_line_of_four_transfer_and_late_joiner(chain, tmp_path):
    def node_config(*args, **kw):
        return _node_config(*args, peer_exchange=False, **kw)

    async def scenario():
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(InProcessNode(node_config(tmp_path / "A", chain, keyholder=True)))
            b = await stack.enter_async_context(InProcessNode(node_config(tmp_path / "B", chain, peers=(a.p2p_addr,))))
            c = await stack.enter_async_context(InProcessNode(node_config(tmp_path / "C", chain, peers=(b.p2p_addr,))))
            d = await stack.enter_async_context(InProcessNode(node_config(tmp_path / "D", chain, peers=(c.p2p_addr,))))
            line = [a, b, c, d]
            # the line really is a line: A and D are not connected to each other
            assert len((await a.client.peers())["peers"]) == 1
            miners = [ScriptedMiner(b.client, chain.miners[0], chain.genesis, family="linear", seed=1),
                      ScriptedMiner(d.client, chain.miners[1], chain.genesis, family="mlp", seed=2)]
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(m.run()) for m in miners]
                try:
                    await wait_for(lambda: _same_tip(line, min_height=2), timeout=120, what="height 2 everywhere")
                    # a transfer sent to D's API is confirmed on A
                    user, dest = chain.users[0], chain.users[1]
                    acct = await d.client.account(encode_address(address_of(user.public)))
                    tx = make_transfer(user, chain.genesis.chain_id, address_of(dest.public), 12_345, 2_000,
                                       acct["next_nonce"])
                    await d.client.send_tx(tx.encode())

                    async def confirmed_on_a():
                        try:
                            info = await a.client.tx(tx.txid.hex())
                        except Exception:
                            return False
                        return info["status"] == "confirmed" and info

                    info = await wait_for(confirmed_on_a, timeout=150, what="transfer confirmed on A")
                    assert info["tx"]["amount"] == 12_345
                    tips = await wait_for(lambda: _same_tip(line, min_height=5), timeout=150, what="height 5")
                    # a fifth node started after >= 5 blocks syncs to the tip (from C only)
                    e = await stack.enter_async_context(
                        InProcessNode(node_config(tmp_path / "E", chain, peers=(c.p2p_addr,))))
                    await wait_for(lambda: _same_tip(line + [e], min_height=tips[0][0]), timeout=120,
                                   what="late joiner at the tip")
                    st = await e.client.status()
                    assert st["champion"]["hash"] == (await a.client.status())["champion"]["hash"]
                    metrics = await (await e.client._session.get(e.api_url + "/metrics")).text()
                    assert "popchain_height" in metrics and "popchain_peers 1.0" in metrics
                finally:
                    for t in tasks:
                        t.cancel()
            balance = (await a.client.account(
                encode_address(address_of(dest.public))))["balance"]
            assert balance >= 10**9 + 12_345

    asyncio.run(scenario())


def test_keyholder_restart_mid_round_never_reveals_twice(chain, tmp_path):
    async def scenario():
        kh_dir = tmp_path / "K"
        async with InProcessNode(node_config(tmp_path / "P", chain)) as peer:
            kh = InProcessNode(node_config(kh_dir, chain, keyholder=True, peers=(peer.p2p_addr,)))
            await kh.__aenter__()
            try:
                # wait until round 2's beacon is out, then stop in the opening window of round 2
                await wait_for(lambda: _round_revealed(peer, 2), timeout=60)
                beacon_before = (await peer.client.round(2))["beacon"]
            finally:
                await kh.stop()
            kh2 = InProcessNode(node_config(kh_dir, chain, keyholder=True, peers=(peer.p2p_addr,)))
            await kh2.__aenter__()
            try:
                await wait_for(lambda: _round_revealed(peer, 3), timeout=60)
                for node in (kh2, peer):
                    assert (await node.client.round(2))["beacon"] == beacon_before
                    assert (await node.client.status())["equivocations"] == []
                published = kh2.node.keyholder.published
                # after the restart the journaled beacon of round 2 may be re-sent (same bytes), never re-signed
                assert published.count(("beacon", 3)) == 1
            finally:
                await kh2.stop()

    asyncio.run(scenario())


async def _round_revealed(node, r):
    info = await node.client.round(r)
    return info.get("beacon") is not None
