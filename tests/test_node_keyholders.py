"""Nobody peeks (issue 24), on real processes: three keyholders make their keys and generate the committee's key
together (``popchain keyholder new`` / ``dkg-board`` / ``dkg`` processes), the genesis creator builds a chain on
it (``genesis create --committee``: a VRF-generated task, no secret file), three member nodes and a plain node
run it, an entrant enters every round. Attackers, each a real process or a real file:

* the genesis creator and any one member (t − 1 of 2-of-3): every file they hold, tried as the key of every
  shard of the chain before its beacon — none is it (and two member files, t, compute every key: the test's
  check that it knows the real keys);
* a keyholder whose node is down sends a RELEASE with a corrupted share over the wire (a hostile peer with its
  key): every node refuses the share and records evidence naming it; the round reveals without it;
* a keyholder hands its share of a future shard to someone, who posts it (``POST /api/committee/leak``): it
  becomes evidence on every node; a forged one and one of a revealed shard are refused;
* members stop: the one that misses rounds is counted, and below the threshold every node says so
  (``/api/status``, a warning log line, metrics, ``popchain chain info``).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from benchmarks._nodeproc import NodeProc, stop_all
from chain.address import address_of, encode_address
from chain.encoding import pack
from consensus.keyholder import load_member_file
from consensus.protocol.committee import Kind, make_msg
from consensus.protocol.dkg import decode_committee_key
from consensus.protocol.genesis import load_genesis
from consensus.protocol.group import L, mul
from consensus.protocol.messages import STATEMENT_VERSION, AnchorNotice, Beacon
from consensus.protocol.release import Leak, Partial, combine, make_partial, vrf_output, vrf_point
from node import wire
from node.tools.client import ApiCallError, NodeClient
from node.tools.committee_kit import CommitteeChain, Entrant, kill
from node.tools.testing import seeded_keypair
from tests.test_cli_e2e import ROOT, _env, assert_one_line_error, popchain

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROUNDS = 20


def _spawn(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    with log.open("wb") as fh:
        return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                env=_env(), start_new_session=True)


class Net:
    """The ceremony's processes, then a plain node A and member nodes M1..M3 (genesis order)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.a: NodeProc | None = None
        self.members: list[NodeProc] = []

    def ceremony(self) -> None:
        r = self.root
        self.pubkeys = [json.loads(popchain("keyholder", "new", "--out", f"k{i}.key", "--json", cwd=r).stdout)["pubkey"]
                        for i in (1, 2, 3)]
        (r / "keyholders.txt").write_text("# the three keyholders, agreed out of band\n" + "\n".join(self.pubkeys))
        board = _spawn(["keyholder", "dkg-board", "--keyholders", "@keyholders.txt", "--threshold", "2", "--label",
                        "issue24", "--listen", "127.0.0.1:0", "--linger", "3", "--json"], r, r / "board.log")
        self.procs.append(board)
        deadline = time.monotonic() + 60
        while b'"url"' not in (r / "board.log").read_bytes():
            assert board.poll() is None and time.monotonic() < deadline, (r / "board.log").read_text()
            time.sleep(0.05)
        text = (r / "board.log").read_text()
        self.board = json.loads(text[text.index("{"):text.rindex("}") + 1])["url"]
        # a keyholder told another threshold refuses the board's session (the board cannot change the committee)
        self.wrong = popchain("keyholder", "dkg", "--key", "k1.key", "--board", self.board, "--keyholders",
                              "@keyholders.txt", "--threshold", "3", "--label", "issue24", "--out", "wrong",
                              cwd=r, check=False)
        clients = [_spawn(["keyholder", "dkg", "--key", f"k{i}.key", "--board", self.board, "--keyholders",
                           "@keyholders.txt", "--threshold", "2", "--label", "issue24", "--out", f"m{i}",
                           "--timeout", "120", "--json"], r, r / f"dkg{i}.log") for i in (1, 2, 3)]
        self.procs += clients
        for c in clients:
            c.wait(180)
        self.dkg = [json.loads((r / f"dkg{i}.log").read_text()) for i in (1, 2, 3)]
        assert all(c.returncode == 0 for c in clients), [(r / f"dkg{i}.log").read_text() for i in (1, 2, 3)]

    def genesis(self) -> None:
        r = self.root
        self.entrants = tuple(seeded_keypair(f"issue24/entrant{i}") for i in range(2))
        allocs = [a for k in self.entrants for a in ("--alloc", f"{encode_address(address_of(k.public))}=10000000000",
                                                      "--bond", f"{encode_address(address_of(k.public))}=1000000000")]
        self.created = json.loads(popchain("genesis", "create", "--committee", "m1/committee.key", "--out", "chain",
                                           "--rounds", str(ROUNDS), "--shard-size", "300", "--entry-window", "1",
                                           "--opening-window", "1", "--chain-id", "popchain-issue24", *allocs,
                                           "--json", cwd=r).stdout)
        self.g = load_genesis((r / "chain" / "genesis.bin").read_bytes())
        secrets = [load_member_file((r / f"m{i}" / "keyholder.secret").read_bytes()) for i in (1, 2, 3)]
        self.secrets = sorted(secrets, key=lambda s: s.member)
        order = [s.keypair.public for s in secrets]
        paths = [r / f"m{i}" / "keyholder.secret" for i in (1, 2, 3)]
        self.member_paths = [paths[order.index(k)] for k in self.g.keyholders]
        self.chain = CommitteeChain(r / "chain" / "genesis.bin", self.g, tuple(self.member_paths),
                                    tuple(s.keypair for s in self.secrets), self.entrants)

    async def start(self) -> None:
        r = self.root
        self.a = NodeProc(r / "A", genesis=self.chain.genesis_path, log_level="INFO")
        await self.a.start().ready()
        for i in range(3):
            self.members.append(self._member(i))
            await self.members[i].start().ready()

    def _member(self, i: int) -> NodeProc:
        assert self.a is not None
        peers = [self.a.p2p_addr] + [m.p2p_addr for m in self.members if m.alive() and m.ports]
        return NodeProc(self.root / f"M{i + 1}", genesis=self.chain.genesis_path, peers=peers,
                        keyholder=self.member_paths[i], log_level="INFO")

    async def restart(self, i: int) -> None:
        assert self.a is not None
        peers = [self.a.p2p_addr] + [m.p2p_addr for j, m in enumerate(self.members) if j != i and m.alive()]
        self.members[i] = NodeProc(self.members[i].datadir, genesis=self.chain.genesis_path, peers=peers,
                                   keyholder=self.member_paths[i], log_level="INFO")
        await self.members[i].start().ready()

    def nodes(self) -> list[NodeProc]:
        return [n for n in [self.a, *self.members] if n is not None and n.alive()]

    def stop(self) -> None:
        stop_all([n for n in [self.a, *self.members] if n is not None])
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, 15)
                p.wait(20)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    n = Net(tmp_path_factory.mktemp("keyholders"))
    try:
        n.ceremony()
        n.genesis()
        asyncio.run(n.start())
        yield n
    finally:
        n.stop()


def _run(coro):
    return asyncio.run(coro)


async def _status(url: str) -> dict:
    async with NodeClient(url) as c:
        return await c.status()


def true_key(net: Net, shard: int) -> bytes:
    """Shard ``shard``'s key as two member files (t) compute it: what the committee will reveal."""
    g = net.g
    point = vrf_point(g.hash, g.hash, shard)
    parts = [make_partial(g.committee, g.hash, s.member, s.share, point) for s in net.secrets[:2]]
    return vrf_output(point, combine(parts, 2))


def candidates_of(net: Net, paths: list[Path], share_members: list) -> set[bytes]:
    """Every 32-byte value an attacker holding these files could try as a shard's key: every 32-byte window of
    every file, and (for each shard) the member's share used as if it were the committee's."""
    out: set[bytes] = set()
    for p in paths:
        raw = p.read_bytes()
        out.update(raw[i:i + 32] for i in range(len(raw) - 31))
    g = net.g
    for s in share_members:
        for shard in range(1, ROUNDS + 1):
            point = vrf_point(g.hash, g.hash, shard)
            out.add(vrf_output(point, mul(s.share, point)))
            out.add(vrf_output(point, mul(s.share * 2 % L, point)))          # λ_i · σ_i for i = 1 of {1, 2}
    return out


def test_the_ceremony_runs_among_real_keyholder_processes(net):
    keys = [(net.root / f"m{i}" / "committee.key").read_bytes() for i in (1, 2, 3)]
    assert keys[0] == keys[1] == keys[2]
    key = decode_committee_key(keys[0])
    assert net.g.committee == key and sorted(net.pubkeys) == [k.hex() for k in net.g.keyholders]
    assert {d["member"] for d in net.dkg} == {1, 2, 3} and all(d["group_key"] == key.group_key.hex() for d in net.dkg)
    for i in (1, 2, 3):
        assert (net.root / f"m{i}" / "keyholder.secret").stat().st_mode & 0o777 == 0o600
    assert_one_line_error(net.wrong, "refusing to join")
    # the genesis creator wrote no secret file: genesis and the held-out test split only
    assert sorted(p.name for p in (net.root / "chain").iterdir()) == ["genesis.bin", "holdout.csv"]
    assert net.created["committee"] and net.created["vrf"] and net.created["keyholder"] is None


def test_neither_the_creator_nor_one_member_can_open_a_shard_before_its_beacon(net):
    creator = [net.root / "chain" / "genesis.bin", net.root / "chain" / "holdout.csv"]
    keys = [true_key(net, s) for s in range(1, ROUNDS + 1)]
    assert len(set(keys)) == ROUNDS
    # the creator's files, plus each single member's files (its member file, key file, the public transcript)
    for i, s in enumerate(net.secrets):
        mine = [net.member_paths[i], net.member_paths[i].parent / "committee.key",
                net.member_paths[i].parent / "dkg-transcript.bin"]
        assert not candidates_of(net, creator + mine, [s]) & set(keys), f"member {s.member} opened a shard"

    async def scenario():
        async with NodeClient(net.a.api_url) as c:
            ent = Entrant(c, net.chain)

            async def revealed(st):
                return st["round"] >= 3 and st["round_phase"] != "open"
            await ent.until(revealed, timeout=120)
            for r in (1, 2, 3):
                info = await c.round(r)
                beacon = Beacon.decode(bytes.fromhex(info["beacon"]))
                assert beacon.shard_key == keys[beacon.shard_index - 1]      # what t members reveal
    _run(scenario())


async def _hostile_peer(session, url: str, g) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(url, max_msg_size=0)
    await ws.send_bytes(wire.encode(wire.Hello(wire.PROTOCOL_VERSION, g.chain_id, g.hash, 0, 0, "", 0,
                                               int.from_bytes(os.urandom(8), "big"), "hostile")))
    return ws


def test_a_corrupted_release_is_refused_and_its_member_named_on_every_node(net):
    g = net.g
    bad = 2                                          # member 3's key, its node down: the attacker has its file
    kp = net.secrets[bad].keypair

    async def scenario():
        kill(net.members[bad])
        url = f"http://127.0.0.1:{net.a.ports['p2p']}/p2p"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.6", 0))) as session, \
                NodeClient(net.a.api_url) as c:
            ent = Entrant(c, net.chain)

            async def open_(st):
                return st["open_round"] if st["open_round"] and st["round_phase"] == "open" else None
            r = await ent.until(open_)
            notice = AnchorNotice.decode(bytes.fromhex((await c.round(r))["notice"]))
            draft = Beacon(STATEMENT_VERSION, g.chain_id, r, notice.anchor_hash, notice.entry_deadline_ms - 1000,
                           notice.entry_deadline_ms, (), bytes(32), notice.settlement, notice.task_id,
                           notice.shard_index, notice.activations)
            point = vrf_point(g.hash, g.hash, notice.shard_index)
            honest = make_partial(g.committee, g.hash, net.secrets[bad].member, net.secrets[bad].share, point)
            corrupted = replace(honest, proof=(honest.proof[0], (honest.proof[1] + 1) % L))
            ws = await _hostile_peer(session, url, g)
            msg = make_msg(kp, g.chain_id, Kind.RELEASE, r, 0, pack([draft.encode(), corrupted.encode()]))
            await ws.send_bytes(wire.encode(wire.Committee(msg.encode())))

            async def named(_st):
                out = []
                for n in net.nodes():
                    st = await _status(n.api_url)
                    out.append([e for e in st["committee_evidence"]
                                if e["what"] == "bad-share" and e["signer"] == kp.public.hex()])
                return out if all(out) else None
            found = await ent.until(named, timeout=60)
            assert all(e[0]["round"] == r for e in found)

            async def revealed(_st):                       # the two honest members reveal without it
                info = await c.round(r)
                return Beacon.decode(bytes.fromhex(info["beacon"])) if info.get("beacon") else None
            beacon = await ent.until(revealed, timeout=60)
            assert beacon.shard_key == true_key(net, beacon.shard_index)
            await ws.close()
        await net.restart(bad)
    _run(scenario())


def test_an_early_share_becomes_evidence_on_every_node(net):
    g = net.g
    leaker = net.secrets[1]
    shard = ROUNDS - 1                                 # far in the future: nobody may know it yet
    point = vrf_point(g.hash, g.hash, shard)
    leak = Leak(0, shard, make_partial(g.committee, g.hash, leaker.member, leaker.share, point))

    async def scenario():
        async with NodeClient(net.a.api_url) as c:
            forged = Leak(0, shard, replace(leak.partial, value=mul(2, leak.partial.value)))
            with pytest.raises(ApiCallError) as exc:
                await c.post_leak(forged.encode())
            assert exc.value.code == "bad-key-share"
            past = Leak(0, 1, make_partial(g.committee, g.hash, leaker.member, leaker.share, vrf_point(g.hash, g.hash, 1)))
            with pytest.raises(ApiCallError) as exc:
                await c.post_leak(past.encode())
            assert exc.value.code == "not-early"
            res = await c.post_leak(leak.encode())         # anyone the member handed it to can post it
            assert res["evidence"]["what"] == "early-share"
            ent = Entrant(c, net.chain)

            async def everywhere(_st):
                for n in net.nodes():
                    st = await _status(n.api_url)
                    if not any(e["what"] == "early-share" and e["signer"] == leaker.keypair.public.hex()
                               for e in st["committee_evidence"]):
                        return False
                return True
            await ent.until(everywhere, timeout=60)
        async with aiohttp.ClientSession() as s, s.get(net.a.api_url + "/metrics") as resp:
            assert 'popchain_committee_evidence_total{what="early-share"}' in await resp.text()
    _run(scenario())


def test_missed_releases_and_a_committee_below_threshold_are_reported(net):
    async def scenario():
        async with NodeClient(net.a.api_url) as c:
            ent = Entrant(c, net.chain)
            net.members[0].stop()                          # n − t: rounds go on, member 1 misses its releases
            r = (await c.status())["round"]

            async def missed(st):
                m1 = st["committee"]["members"][0]
                return st["round"] >= r + 2 and st["round_phase"] != "open" and m1["missed_releases"] >= 1
            await ent.until(missed, timeout=120)
            net.members[1].stop()                          # below the threshold: nothing can reveal

            async def below(st):
                cm = st["committee"]
                return st if cm["below_threshold"] and cm["reachable"] == 1 and cm["threshold"] == 2 else None
            st = await ent.until(below, timeout=60)
            assert [m["reachable"] for m in st["committee"]["members"]] == [False, False, True]
            deadline = time.monotonic() + 30
            log = net.a.datadir / "node.log"
            while "keyholders reachable, threshold 2: no round can reveal" not in log.read_text():
                assert time.monotonic() < deadline, "no warning line"
                await asyncio.sleep(0.2)
            async with aiohttp.ClientSession() as s, s.get(net.a.api_url + "/metrics") as resp:
                text = await resp.text()
            assert "popchain_committee_below_threshold 1.0" in text and "popchain_committee_reachable 1.0" in text
            info = popchain("chain", "info", "--node", net.a.api_url, cwd=net.root).stdout
            assert "1 of 3 keyholders reachable, threshold 2" in info and "WARNING" in info
            banner = await asyncio.to_thread(_explorer_banner, net.a.api_url)
            assert "Only 1 of 3 keyholders are reachable (threshold 2)" in banner
            assert "Keyholder evidence" in banner and "early-share" in banner and "bad-share" in banner
            m1 = st["committee"]["members"][0]
            assert f"Missed releases: keyholder {m1['member']} in " in banner
            await net.restart(0)

            async def back(st):
                return not st["committee"]["below_threshold"] and st["committee"]["reachable"] >= 2
            await ent.until(back, timeout=60)
            await net.restart(1)
    _run(scenario())


def _explorer_banner(url: str) -> str:
    """The explorer's overview banner, as a browser renders it (headless chromium)."""
    from tests.test_explorer_browser import _driver, _text, _wait
    driver = _driver()
    try:
        driver.get(url + "/")
        return _wait(driver, lambda d: _text(d, "#committee-banner"), timeout=60, what="the committee banner")
    finally:
        driver.quit()


def test_genesis_create_for_a_data_task_names_its_sponsor_and_bounty(net, tmp_path):
    """A dataset on a committee chain: the creator is the task's sponsor (its key, its bounty in escrow, paid per
    crowning), the keys are sealed to the committee, and still no secret file is written."""
    sponsor = seeded_keypair("issue24/sponsor")
    out = json.loads(popchain("genesis", "create", "--committee", str(net.root / "m2" / "committee.key"), "--task",
                              "digits", "--rounds", "3", "--detect", "0.1", "--sponsor", sponsor.public.hex(), "--bounty", "500000000",
                              "--per-crowning",
                              "25000000", "--alloc", f"{encode_address(address_of(sponsor.public))}=1000000000",
                              "--out", "data", "--json", cwd=tmp_path).stdout)
    g = load_genesis((tmp_path / "data" / "genesis.bin").read_bytes())
    assert out["sponsor"] == sponsor.public.hex() and g.sponsor == sponsor.public and g.per_crowning == 25_000_000
    assert len(g.sealed) == g.n_rounds and not g.task.vrf
    # the shard ciphertexts are blobs (§3.15) beside genesis: no file that opens a shard
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["blobs", "genesis.bin", "holdout.csv"]
    refused = popchain("genesis", "create", "--committee", str(net.root / "m2" / "committee.key"), "--task", "digits",
                       "--alloc", f"{encode_address(address_of(sponsor.public))}=1", "--out", "x", cwd=tmp_path,
                       check=False)
    assert_one_line_error(refused, "--sponsor")
    assert ROOT.exists() and Partial      # imported for the module's readers


def test_a_sponsor_cannot_enter_its_own_task_on_any_node(net, tmp_path):
    """The sponsor's position on the live committee: a sponsor (entrant 1's key, funded at genesis) packages a data
    task with ``popchain task create`` (its keys sealed to the committee, nothing written that opens a shard), two
    members' files co-sign it (``task announce`` processes) and the committee activates it. In a round of that task
    the sponsor's entry is refused on every node — the plain node and each member (``sponsor-entry``: it knows the
    rows) — while an entry of another key is taken; in a round of the other task the sponsor may enter."""
    import hashlib

    import nacl.pwhash

    from chain.wallet import Wallet
    from consensus.protocol.messages import make_entry
    sponsor, other = net.entrants[1], net.entrants[0]
    w = Wallet.create(tmp_path / "s.popkeys", "pw", opslimit=nacl.pwhash.argon2id.OPSLIMIT_MIN,
                      memlimit=nacl.pwhash.argon2id.MEMLIMIT_MIN)
    w.import_seed(hashlib.sha256(b"popchain/testing/issue24/entrant1").digest(), "sponsor")
    (tmp_path / "pw").write_text("pw\n")
    created = json.loads(popchain("task", "create", "--task", "digits", "--detect", "0.1", "--sponsor-wallet",
                                  "s.popkeys", "--sponsor-key", "sponsor", "--password-file", "pw", "--bounty",
                                  "1000000000", "--node", net.a.api_url, "--out", "t1", "--json", cwd=tmp_path).stdout)
    assert created["sponsor"] == sponsor.public.hex()
    # no key file (the shard ciphertexts are blobs, §3.15, sealed: they open nothing without the committee)
    assert sorted(p.name for p in (tmp_path / "t1").iterdir()) == ["blobs", "holdout.csv", "task.announce"]
    popchain("task", "announce", created["announcement"], "--keyholder", str(net.member_paths[0]), "--sign-only",
             "--node", net.a.api_url, cwd=tmp_path)
    popchain("task", "announce", created["announcement"], "--keyholder", str(net.member_paths[1]),
             "--node", net.a.api_url, cwd=tmp_path)

    def entry_of(key, r: int, anchor: bytes):
        return make_entry(key, net.g.chain_id, r, anchor, hashlib.sha256(os.urandom(16)).digest(), os.urandom(32),
                          os.urandom(32)).encode()

    async def scenario():
        async with NodeClient(net.a.api_url) as c:
            seen_task0, st = False, None
            try:
                async with asyncio.timeout(180):
                    while True:                  # enter task-0 rounds (the sponsor too) until task 1 opens
                        st = await c.status()
                        r = st["open_round"]
                        if r and st["round_phase"] == "open":
                            anchor = bytes.fromhex((await c.round(r))["anchor"])
                            if st.get("round_task") == 1:
                                break
                            for key in (sponsor, other):
                                with contextlib.suppress(ApiCallError):     # duplicate-entry on a second pass
                                    await c.send_entry(entry_of(key, r, anchor))
                                    seen_task0 = seen_task0 or key is sponsor
                        await asyncio.sleep(0.05)
            except TimeoutError:
                raise AssertionError(f"task 1 never opened: {st} {await c.get('/api/tasks')}") from None
            assert seen_task0, "the sponsor could not enter a round of the other task"
            for n in net.nodes():                # nobody entered yet: the round stays open until someone does
                async with NodeClient(n.api_url) as nc:
                    with pytest.raises(ApiCallError) as exc:
                        await nc.send_entry(entry_of(sponsor, r, anchor))
                    assert exc.value.code == "sponsor-entry", (n.api_url, exc.value)
            await c.send_entry(entry_of(other, r, anchor))

            async def revealed(_st):
                info = await c.round(r)
                return Beacon.decode(bytes.fromhex(info["beacon"])) if info.get("beacon") else None
            beacon = await Entrant(c, replace(net.chain, entrants=(other,))).until(revealed, timeout=60)
            assert beacon.task_id == 1 and [x[1] for x in beacon.listed] == [other.public]
    _run(scenario())
