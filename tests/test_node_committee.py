"""A 2-of-3 keyholder committee as real processes (three ``node run --keyholder keyholder-i.secret`` members and a
plain node A that the entrant and the hostile peer talk to), one network for the module: the round's leader
killed mid-round → the round completes under the next leader; one member (n − t) stopped → the chain goes on;
a forged leader proposal dropping an entry and conflicting co-signatures → refused, evidence stored and
reported; every member restarted in turn → no member ever signs two contents for a round."""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace

import aiohttp
import pytest

from benchmarks._nodeproc import NodeProc, stop_all
from chain.encoding import pack
from consensus.protocol.committee import Kind, make_msg, notice_body
from consensus.protocol.messages import AnchorNotice, Beacon, make_entry
from node import wire
from node.tools.client import NodeClient
from node.tools.committee_kit import Entrant, beacon_leader, kill, make_committee_chain

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


class Net:
    def __init__(self, root) -> None:
        self.root = root
        self.chain = make_committee_chain(root / "chain", rounds=40)
        self.a = NodeProc(root / "A", genesis=self.chain.genesis_path, log_level="INFO")
        self.members: list[NodeProc] = []
        self.impersonated: str | None = None

    async def start(self) -> None:
        await self.a.start().ready()
        for i in range(3):
            self.members.append(self._member(i))
            await self.members[i].start().ready()

    def _member(self, i: int) -> NodeProc:
        peers = [self.a.p2p_addr] + [m.p2p_addr for m in self.members[:i] if m.alive() and m.ports]
        return NodeProc(self.root / f"M{i + 1}", genesis=self.chain.genesis_path, peers=peers,
                        keyholder=self.chain.member_paths[i], log_level="INFO")

    async def restart(self, i: int) -> None:
        old = self.members[i]
        peers = [self.a.p2p_addr] + [m.p2p_addr for j, m in enumerate(self.members) if j != i and m.alive()]
        self.members[i] = NodeProc(old.datadir, genesis=self.chain.genesis_path, peers=peers,
                                   keyholder=self.chain.member_paths[i], log_level="INFO")
        await self.members[i].start().ready()

    def stop(self) -> None:
        stop_all([self.a, *self.members])


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    n = Net(tmp_path_factory.mktemp("committee"))
    try:
        asyncio.run(n.start())
        yield n
    finally:
        n.stop()


def _run(coro):
    return asyncio.run(coro)


async def _status(url: str) -> dict:
    async with NodeClient(url) as c:
        return await c.status()


async def _beacon_out(c: NodeClient, r: int) -> Beacon | None:
    info = await c.round(r)
    return Beacon.decode(bytes.fromhex(info["beacon"])) if info.get("beacon") else None


async def _open_round(ent: Entrant) -> int:
    async def pred(status):
        return status["open_round"] if status["open_round"] and status["round_phase"] == "open" else None
    return await ent.until(pred)


async def _beacons_after(ent: Entrant, r: int, k: int) -> None:
    async def pred(status):
        return status["round"] >= r + k and status["round_phase"] != "open"
    await ent.until(pred, timeout=180)


def test_round_completes_after_its_leader_is_killed(net):
    async def scenario():
        async with NodeClient(net.a.api_url) as c:
            ent = Entrant(c, net.chain)
            r = await _open_round(ent)
            leader = beacon_leader(net.chain, r)
            kill(net.members[leader])
            async def revealed(_status):
                return await _beacon_out(c, r)
            beacon = await ent.until(revealed)
            assert beacon.verify(net.chain.genesis.keyholders, 2)
            assert net.chain.member_keys[leader].public not in {p for p, _ in beacon.signatures}
            await _beacons_after(ent, r, 2)     # and rounds go on without it
            await net.restart(leader)
    _run(scenario())


def test_chain_continues_with_n_minus_t_members_stopped(net):
    async def scenario():
        net.members[0].stop()
        async with NodeClient(net.a.api_url) as c:
            ent = Entrant(c, net.chain)
            r = (await c.status())["round"]
            await _beacons_after(ent, r, 3)
        await net.restart(0)
    _run(scenario())


async def _hostile_peer(session, url: str, chain) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(url, max_msg_size=0)
    await ws.send_bytes(wire.encode(wire.Hello(wire.PROTOCOL_VERSION, chain.genesis.chain_id, chain.genesis.hash, 0,
                                               0, "", 0, int.from_bytes(os.urandom(8), "big"), "hostile")))
    return ws


def test_dropped_entry_and_conflicting_signatures_are_refused_with_evidence(net):
    chain = net.chain
    g = chain.genesis

    async def scenario():
        url = f"http://127.0.0.1:{net.a.ports['p2p']}/p2p"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.5", 0))) as session, \
                NodeClient(net.a.api_url) as c:
            ws = await _hostile_peer(session, url, chain)
            ent = Entrant(c, chain)
            # the round whose attempt-0 beacon leader we impersonate: its own process is stopped first
            async with asyncio.timeout(120):   # the open round, nobody entered yet (it waits for entries)
                while True:
                    st = await c.status()
                    if st["open_round"] and st["round_phase"] == "open":
                        break
                    await asyncio.sleep(0.02)
            r = st["open_round"]
            bad = beacon_leader(chain, r)
            net.impersonated = chain.member_keys[bad].public.hex()
            kill(net.members[bad])
            ent.entered.add(r)
            info = await c.round(r)
            notice = AnchorNotice.decode(bytes.fromhex(info["notice"]))
            entries = [make_entry(k, g.chain_id, r, notice.anchor_hash, os.urandom(32), os.urandom(32), os.urandom(32))
                       for k in chain.entrants]
            for e in entries:
                await c.send_entry(e.encode())
            keep = entries[:1]
            # its reveal time 1 s from now: the entries reached the members well before it (not a race)
            reveal_ms = max(notice.entry_deadline_ms, int(time.time() * 1000) + 1000)
            draft = Beacon(3, g.chain_id, r, notice.anchor_hash, notice.entry_deadline_ms - 1000,
                           reveal_ms, tuple(sorted(e.listing for e in keep)), bytes(32), notice.settlement,
                           notice.task_id, notice.shard_index, notice.activations)
            kp = chain.member_keys[bad]
            proposal = make_msg(kp, g.chain_id, Kind.PROPOSE_BEACON, r, 0,
                                pack([draft.encode(), [e.encode() for e in keep]]))
            await ws.send_bytes(wire.encode(wire.Committee(proposal.encode())))
            # the honest members refuse it, and round r reveals every entry under the next leader
            async def revealed(_status):
                return await _beacon_out(c, r)
            beacon = await ent.until(revealed)
            assert len(beacon.listed) == len(entries)
            live = [m for i, m in enumerate(net.members) if i != bad]
            statuses = [await _status(m.api_url) for m in live]
            for st in statuses:
                assert any(x["code"] == "dropped-entry" and x["proposer"] == kp.public.hex()
                           for x in st["committee"]["refusals"]), st["committee"]
                assert any(e["what"] == "dropped-entry" and e["signer"] == kp.public.hex()
                           for e in st["committee_evidence"])
            # conflicting co-signatures of the same member for the next round: evidence on every node
            nxt = AnchorNotice(3, g.chain_id, r + 1, notice.anchor_hash, notice.anchor_height, 1)
            for n in (nxt, replace(nxt, entry_deadline_ms=2)):
                msg = make_msg(kp, g.chain_id, Kind.SIGN_NOTICE, r + 1, 0, pack([notice_body(n), kp.sign(n.sighash)]))
                await ws.send_bytes(wire.encode(wire.Committee(msg.encode())))
            async def evidence(_status):
                st = await c.status()
                return [e for e in st["committee_evidence"] if e["what"] == "equivocation"]
            found = await ent.until(evidence, timeout=60)
            assert found[0]["signer"] == kp.public.hex() and found[0]["round"] == r + 1
            await ws.close()
            # the chain goes on (the liar's signature on a notice it never proposed wedges nothing)
            await _beacons_after(ent, r, 2)
        await net.restart(bad)
    _run(scenario())


def test_restart_every_member_in_turn_no_equivocation(net):
    async def scenario():
        async with NodeClient(net.a.api_url) as c:
            ent = Entrant(c, net.chain)
            for i in range(3):
                r = (await c.status())["round"]
                net.members[i].stop()
                await net.restart(i)
                await _beacons_after(ent, r, 1)
            st = await c.status()
            assert st["equivocations"] == []
            # nobody but the impersonated liar of the previous test ever signed two contents
            liars = {e["signer"] for e in st["committee_evidence"] if e["what"] == "equivocation"}
            assert liars <= {getattr(net, "impersonated", None)}
            for m in net.members:
                ms = await _status(m.api_url)
                assert ms["committee"]["member"] in (1, 2, 3)
    _run(scenario())
