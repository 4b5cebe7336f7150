"""The pieces of issue 19's defences, in process (their attacks on real processes: test_node_hostile.py): global
budgets with per-peer shares (node.budgets, node.inventory), inbound eviction (node.eviction), housekeeping that
survives OS errors (node.housekeeping)."""
from __future__ import annotations

import asyncio
import errno
import logging

import pytest

from chain.errors import StoreError
from node.budgets import Budgets, KnownInventory, ObjectBudget
from node.eviction import Candidate, netgroup, select_to_evict
from node.housekeeping import Housekeeping
from node.inventory import RequestTracker
from node.wire import InvKind

KEY = bytes(32)


def test_known_inventory_is_bounded_and_keeps_the_recent_half():
    known: KnownInventory[int] = KnownInventory(1000)
    for i in range(10_000):
        known.add(i)
        assert len(known) <= 1000
    assert all(i in known for i in range(10_000 - 500, 10_000))


def test_a_peer_within_its_reserved_share_is_never_refused_while_others_flood():
    budgets = Budgets.for_slots(32, 8)
    objects = ObjectBudget(budgets, 0.0)
    flooders = [objects.new_peer(0.0) for _ in range(31)]
    honest = objects.new_peer(0.0)
    share = budgets.obj_reserved_rate
    refused = 0
    for step in range(1, 200):           # 20 s of 0.1 s steps
        now = step / 10
        for f in flooders:
            while objects.take(f, 1000, now):   # each takes all it can get
                pass
        refused += not objects.take(honest, int(share / 10), now)
    assert refused == 0


def test_request_shares_leave_room_for_an_honest_peer_when_31_peers_flood():
    budgets = Budgets.for_slots(32, 8)
    tracker: RequestTracker[str] = RequestTracker(per_peer=budgets.requests_per_peer, total=32_000)
    n = 0
    for p in range(31):
        while tracker.announced(f"flooder{p}", (InvKind.TX, n.to_bytes(32, "big")), 0.0):
            n += 1
    assert len(tracker) <= 31 * budgets.requests_per_peer
    assert tracker.announced("honest", (InvKind.TX, b"h" * 32), 0.0)


def test_netgroups_on_a_lan_are_hosts_and_on_the_internet_prefixes():
    assert netgroup("127.0.0.10") != netgroup("127.0.0.11")
    assert netgroup("192.168.1.5") != netgroup("192.168.1.6")
    assert netgroup("8.8.4.4") == netgroup("8.8.8.8") == "8.8.0.0/16"
    assert netgroup("2a00:1450:4001::1") == netgroup("2a00:1450:9999::1") == "2a00:1450::/32"
    assert netgroup("fd00::1") != netgroup("fd00:0:0:1::1")
    assert netgroup("::ffff:8.8.8.8") == "8.8.0.0/16"


def _cand(i: int, group: str, **kw: object) -> Candidate[int]:
    base: dict[str, object] = {"connected": float(i), "min_ping_ms": None, "last_block": 0.0, "last_tx": 0.0,
                               "handshaken": True}
    base.update(kw)
    return Candidate(i, group, **base)   # type: ignore[arg-type]


def test_eviction_takes_from_the_most_crowded_group_never_the_lone_newcomer():
    cands = [_cand(i, f"attacker{i % 4}") for i in range(31)] + [_cand(100, "newcomer")]
    for _ in range(50):
        chosen = select_to_evict(cands, KEY)
        assert chosen is not None and chosen.group.startswith("attacker")
        cands.remove(chosen)
        cands.append(_cand(len(cands) + 200, chosen.group))   # it reconnects at once
    assert any(c.group == "newcomer" for c in cands)


def test_eviction_protects_useful_peers_and_refuses_when_all_are_protected():
    useful = [_cand(i, f"g{i}", last_block=1000.0 + i) for i in range(4)]
    quick = [_cand(10 + i, f"h{i}", min_ping_ms=1.0) for i in range(8)]
    idle = [_cand(50 + i, "crowd") for i in range(12)]
    chosen = select_to_evict(useful + quick + idle, KEY)
    assert chosen is not None and chosen.group == "crowd" and chosen.connected == max(c.connected for c in idle)
    assert select_to_evict(useful, KEY) is None


def test_eviction_prefers_a_peer_still_in_its_handshake():
    cands = [_cand(i, f"g{i % 3}") for i in range(20)] + [_cand(30, "g0", handshaken=False)]
    chosen = select_to_evict(cands, KEY)
    assert chosen is not None and not chosen.handshaken


def test_housekeeping_retries_os_errors_and_keeps_the_other_steps_going(caplog):
    calls = {"ok": 0, "broken": 0}

    def ok() -> None:
        calls["ok"] += 1

    def broken() -> None:
        calls["broken"] += 1
        raise OSError(errno.EMFILE, "Too many open files")

    async def scenario() -> None:
        hk = Housekeeping()
        hk.add("broken", broken)
        hk.add("ok", ok)
        with caplog.at_level(logging.WARNING, logger="popchain.node"):
            for second in range(120):
                await hk.run_due(float(second))
        assert hk.health() == {"broken": "Too many open files"}
    asyncio.run(scenario())
    assert calls["ok"] == 120
    assert 5 <= calls["broken"] < 20          # retried with backoff, not every second, never given up
    assert caplog.text.count("broken failed") == 1   # logged once


def test_housekeeping_lets_a_storage_fault_through():
    def full() -> None:
        raise StoreError("disk full")

    async def scenario() -> None:
        hk = Housekeeping()
        hk.add("check disk", full)
        await hk.run_due(0.0)
    with pytest.raises(StoreError):
        asyncio.run(scenario())


def test_parked_orphans_are_bounded_in_bytes(tmp_path):
    """Orphan blocks a peer pushes are parked by the engine until their parent comes: 64 of them at most, and now
    at most MAX_ORPHAN_BYTES together (64 blocks of 4 MB models would have held 256 MB)."""
    import dataclasses
    import os

    from chain.block import Block
    from chain.store import ChainStore
    from consensus.engine import Engine
    from consensus.engine._engine import MAX_ORPHAN_BYTES, _parked_size
    from node.tools.testing import make_test_chain

    chain = make_test_chain(tmp_path / "chain", rounds=3)
    with ChainStore.open(tmp_path / "store") as store:
        engine = Engine(store, chain.genesis)
        g = chain.genesis.header
        for i in range(64):
            header = dataclasses.replace(g, height=5, prev_hash=os.urandom(32), timestamp=g.timestamp + i)
            engine._park(Block(header, (), os.urandom(3 * 2**20), b""))
            held = sum(map(_parked_size, engine._orphans.values()))
            assert held <= MAX_ORPHAN_BYTES
        assert 0 < len(engine._orphans) <= MAX_ORPHAN_BYTES // (3 * 2**20)


def test_a_block_larger_than_the_send_share_leaves_room_for_the_small_frames_after_it():
    """An honest syncing peer was cut ("slow-peer: send queue over its share") by the tiny ROUNDS answer that
    followed a ~950 KB block still being written: the limit must be share + the largest frame + slack."""
    from node.peer import SEND_SLACK_BYTES, LocalIdentity, Peer

    async def scenario() -> Peer:
        peer = Peer(None, inbound=True, host="127.0.0.1", port=1, handler=_never, on_offence=lambda *a: None,
                    hello_factory=_never, identity=LocalIdentity("c", bytes(32), 1, "127.0.0.1", 1), is_duplicate=lambda n: False,
                    budgets=Budgets.for_slots(32, 8))
        block = bytes(950_000)
        assert len(block) > peer.send_share + SEND_SLACK_BYTES
        peer.send_frame(block)        # a block: queued (the writer would be writing it)
        peer.send_frame(b"\x14\x90")  # the ROUNDS answer right after it
        assert not peer.close_reason, peer.close_reason
        peer.send_frame(block)        # a second whole block on top of the first is over the share
        return peer
    peer = asyncio.run(scenario())
    assert peer.close_reason.startswith("slow-peer"), peer.close_reason


def _never(*args: object) -> object:
    raise AssertionError("not called")
