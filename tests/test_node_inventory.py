"""node.inventory: the request table and the trickle queues stay within their bounds whatever peers announce,
and a request a peer does not honour goes to the next announcer."""
from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from node.inventory import RequestTracker, Trickle
from node.wire import MAX_INV_ITEMS, InvKind

TX, BLOCK = InvKind.TX, InvKind.BLOCK


def _key(i: int, kind: InvKind = TX) -> tuple[InvKind, bytes]:
    return (kind, i.to_bytes(32, "big"))


def _check(t: RequestTracker) -> None:
    inflight = t._inflight
    assert len(inflight) <= t.total
    per_peer = Counter(r.peer for r in inflight.values())
    blocks = Counter(r.peer for k, r in inflight.items() if k[0] == BLOCK)
    assert dict(per_peer) == t._count and dict(blocks) == t._blocks
    assert all(n <= t.per_peer for n in per_peer.values())
    assert all(n <= t.per_peer_blocks for n in blocks.values())
    assert all(len(a) <= 2 for a in t._alternates.values())
    pairs = Counter((p, k) for p, q in t._queues.items() for k in q)
    assert t.waiting() == sum(pairs.values()) <= t.total_waiting
    assert all(0 < len(q) <= t.per_peer_waiting for q in t._queues.values())
    assert pairs == Counter((p, h) for h in t._waiting for p in t._announcers(h))
    assert all(not isinstance(ps, list) or len(ps) > 1 for ps in t._waiting.values())   # one: kept bare


ops = st.lists(st.tuples(st.sampled_from(["announce", "received", "notfound", "expire", "gone", "drain"]),
                         st.integers(0, 4), st.integers(0, 60), st.booleans()), max_size=300)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_request_tracker_bounds_hold_under_any_sequence(seq):
    t: RequestTracker[int] = RequestTracker(per_peer=10, per_peer_blocks=2, total=25, timeout_s=5.0,
                                            per_peer_waiting=6, total_waiting=15)
    now = 0.0
    alive = {0, 1, 2, 3, 4}
    for op, peer, item, is_block in seq:
        now += 1.0
        key = _key(item, BLOCK if is_block else TX)
        if op == "announce":
            if key not in t and not t.announced(peer, key, now) and key[0] == TX:
                t.wait(peer, key)   # what node.gossip does at a full share
        elif op == "drain":
            plan = t.next_requests(now, alive, lambda k: k[1][-1] % 7 != 0, everyone=is_block)
            assert all(p in alive for p in plan) and all(t.asked(k) == p for p, ks in plan.items() for k in ks)
        elif op == "received":
            t.received(key)
        elif op == "notfound":
            plan = t.failed(peer, [key], now, alive)
            assert all(p in alive for p in plan)
        elif op == "expire":
            t.expire(now, alive)
        else:
            t.peer_gone(peer, now, alive - {peer})
            assert all(r.peer != peer for r in t._inflight.values())
        _check(t)


def test_notfound_and_timeout_go_to_the_next_announcer():
    t: RequestTracker[str] = RequestTracker(timeout_s=10.0)
    k = _key(1)
    assert t.announced("liar", k, 0.0)
    assert not t.announced("honest", k, 0.1)      # already asked: kept as an alternate
    assert t.failed("honest", [k], 1.0, {"liar", "honest"}) == {}   # only the asked peer's NOTFOUND counts
    assert t.failed("liar", [k], 1.0, {"liar", "honest"}) == {"honest": [k]}
    assert t.asked(k) == "honest"
    k2 = _key(2)
    t.announced("liar", k2, 2.0)
    t.announced("honest", k2, 2.0)
    assert t.expire(11.0, {"liar", "honest"}) == {}            # k (asked at 1.0) and k2 not old enough
    assert t.expire(13.0, {"liar", "honest"}) == {"honest": [k2]}   # k2 timed out at the liar; k re-sent at 1.0
    assert t.asked(k) is None                                  # k timed out at honest with nobody left


def test_ids_beyond_the_share_wait_and_are_requested_as_it_frees_from_another_announcer_if_one_fails():
    t: RequestTracker[str] = RequestTracker(per_peer=2, timeout_s=10.0)
    alive = {"a", "b"}
    keys = [_key(i) for i in range(5)]
    for k in keys:   # a has room for two: the other three wait, in announcement order
        assert t.announced("a", k, 0.0) or t.wait("a", k)
    assert t.inflight_from("a") == 2 and t.waiting() == 3
    assert t.next_requests(0.0, alive, lambda k: True) == {}          # nothing freed yet
    t.received(keys[0])
    assert t.next_requests(1.0, alive, lambda k: True) == {"a": [keys[2]]}
    assert t.wait("b", keys[4])                                        # b announces one a still has waiting
    t.received(keys[3])                                                # arrived from elsewhere: not asked
    t.received(keys[1])
    assert t.next_requests(2.0, alive, lambda k: True) == {"a": [keys[4]]}
    assert t.failed("a", [keys[4]], 3.0, alive) == {}                  # b is asked once its share frees ...
    assert t.next_requests(3.0, alive, lambda k: True, everyone=True) == {"b": [keys[4]]}
    t.peer_gone("a", 4.0, {"b"})
    assert t.waiting() == 0 and t.asked(keys[4]) == "b" and t.asked(keys[2]) is None


def test_waiting_ids_are_bounded_per_peer_and_in_total():
    t: RequestTracker[str] = RequestTracker(per_peer=10, per_peer_waiting=100, total_waiting=250)
    for p in ("f1", "f2", "f3"):
        for i in range(10 * MAX_INV_ITEMS):
            k = _key(i)
            if k not in t:
                t.announced(p, k, 0.0) or t.wait(p, k)
    assert t.waiting() == 250 and max(len(q) for q in t._queues.values()) == 100


def test_a_flood_of_unknown_ids_costs_only_its_senders_slots():
    t: RequestTracker[str] = RequestTracker(per_peer=8000, total=64_000)
    for i in range(100 * MAX_INV_ITEMS):
        t.announced("flooder", _key(i), 0.0)
    assert t.inflight_from("flooder") == 8000 and t.dropped == 100 * MAX_INV_ITEMS - 8000
    assert t.announced("honest", _key(10**9), 0.0)          # others are unaffected


def test_trickle_batches_ids_into_inv_sized_chunks_and_is_bounded():
    tr: Trickle[str] = Trickle(cap=2500)
    for i in range(3000):
        tr.add("p", _key(i))
    assert tr.pending("p") == 2500 and tr.dropped == 500
    [(peer, chunks)] = tr.take()
    assert peer == "p" and [len(c) for c in chunks] == [1000, 1000, 500]
    assert chunks[0][0] == _key(500)                      # the oldest were dropped
    assert tr.take() == []
