"""Hypothesis properties of the pure consensus rules: paired test, retarget, fork order, message encodings."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.block import Block, Header
from chain.crypto import Keypair
from chain.errors import DecodeError
from consensus.protocol.genesis import GenesisParams
from consensus.protocol.messages import (
    AnchorNotice,
    Beacon,
    Entry,
    RoundPayload,
    Settlement,
    make_anchor_notice,
    make_beacon,
    make_entry,
    make_settlement,
)
from consensus.protocol.rules import ScoredBlock, fork_key
from consensus.protocol.stats import accepts, min_disagreement
from ml.score import paired

KP = Keypair.from_seed(bytes(range(32)))
counts = st.integers(0, 5000)
E = GenesisParams().max_entries


@given(counts, counts, st.integers(1, E))
@settings(max_examples=300, deadline=None)
def test_crowning_never_accepts_ties_or_a_worse_challenger(b, c, m):
    if b <= c:
        assert not accepts(b, c, m)


@given(counts, counts, st.integers(1, E), st.integers(1, 50))
@settings(max_examples=300, deadline=None)
def test_one_more_right_answer_never_loses_acceptance(b, c, m, extra):
    # converting disagreements the challenger lost into ones it won only helps it
    if accepts(b, c, m) and c >= extra:
        assert accepts(b + extra, c - extra, m)


@st.composite
def champion_and_near_copy(draw):
    """A shard's labels, the champion's predictions, and a challenger that changes fewer than
    min_disagreement(E) of them (a perturbed copy, as the simulator's copycat makes)."""
    n = draw(st.integers(1, 300))
    k = draw(st.integers(2, 6))
    y = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    champ = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    flips = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, k - 1)),
                          max_size=min_disagreement(E) - 1))
    chall = list(champ)
    for i, v in flips:
        chall[i] = v
    return np.array(y), np.array(champ), np.array(chall)


@given(champion_and_near_copy())
def test_a_copy_changing_few_predictions_is_never_crowned_in_a_full_round(case):
    y, champ, chall = case
    b, c = paired(chall == y, champ == y)
    assert b + c <= int(np.count_nonzero(chall != champ)) < min_disagreement(E)
    assert not accepts(b, c, E)


def _scored(b: int, c: int, salt: int) -> ScoredBlock:
    h = Header(1, "t", 1, bytes(32), 1, 1, bytes(32), bytes(32), bytes(32), bytes(32),
               salt.to_bytes(32, "big"))
    return ScoredBlock(Block(h, (), b"", b""), b, c, 1)    # bar 1 ≤ b: crowning blocks (plain ones:
                                                            # tests/test_plain_blocks.py)


blocks_st = st.lists(st.tuples(st.integers(1, 50), st.integers(0, 50), st.integers(0, 2**64)),
                     min_size=1, max_size=12, unique_by=lambda t: t[2])


@given(blocks_st, st.randoms())
def test_fork_choice_is_a_total_order_independent_of_arrival(items, rnd):
    blocks = [_scored(b, c, s) for b, c, s in items]
    keys = [fork_key(x) for x in blocks]
    assert len(set(keys)) == len(keys)  # distinct blocks never tie: a total order
    best = max(blocks, key=fork_key)
    shuffled = list(blocks)
    rnd.shuffle(shuffled)
    incremental = shuffled[0]
    for x in shuffled[1:]:  # the engine's "switch when a better one arrives"
        if fork_key(x) > fork_key(incremental):
            incremental = x
    assert incremental is best
    # the order is the protocol's: larger b − c, then larger b, then the lower header hash
    for x in blocks:
        if x is not best:
            assert (best.b - best.c, best.b) > (x.b - x.c, x.b) or (
                (best.b - best.c, best.b) == (x.b - x.c, x.b) and best.hash < x.hash)


hashes = st.binary(min_size=32, max_size=32)


@given(st.integers(1, 2**32 - 1), hashes, hashes, hashes, hashes)
def test_entry_roundtrip_and_signature(r, parent, header, mh, proof):
    e = make_entry(KP, "popchain-x", r, parent, header, mh, proof)
    assert Entry.decode(e.encode()) == e and e.verify_signature()
    assert e.listing == (header, KP.public, mh, proof)
    for i in (4, 6, 7):     # header hash, model hash and possession are all signed
        fields = list(e.unsigned_fields())
        fields[i] = bytes([fields[i][0] ^ 1]) + fields[i][1:]
        assert not Entry(*fields, e.signature).verify_signature()


# a settlement: window [first, last] (before round r) and records (round, miner, model hash, opened)
def settlement_st(r: int):
    return st.integers(1, r).flatmap(lambda first: st.integers(first - 1, r - 1).flatmap(
        lambda last: st.lists(st.tuples(st.integers(first, max(first, last)), hashes, hashes, st.integers(0, 1)),
                              max_size=0 if last < first else 12, unique_by=lambda t: (t[0], t[1])).map(
            lambda recs: make_settlement(first, last, recs))))


@given(st.integers(1, 1000).flatmap(lambda r: st.tuples(st.just(r), settlement_st(r))), hashes,
       st.lists(st.tuples(hashes, hashes, hashes, hashes), max_size=20, unique_by=(lambda t: t[0], lambda t: t[1])),
       hashes, st.integers(0, 2**45), st.integers(0, 10**6))
def test_beacon_roundtrip_canonical(r_settle, anchor, entries, key, opened_ms, dt):
    r, settlement = r_settle
    bc = make_beacon([KP], "popchain-x", r, anchor, entries, key, opened_ms=opened_ms, time_ms=opened_ms + dt,
                     settlement=settlement)
    assert Beacon.decode(bc.encode()) == bc
    assert bc.verify([KP.public], 1) and not bc.verify([bytes(32)], 1)
    payload = RoundPayload(2, bc, 3, 1, 9)
    assert RoundPayload.decode(payload.encode()) == payload
    n = make_anchor_notice([KP], "popchain-x", r, anchor, 7, 123_456, settlement=settlement)
    assert AnchorNotice.decode(n.encode()) == n and n.verify([KP.public], 1)
    assert n.settlement == bc.settlement
    # forfeits: one bond per unopened record; opened: the opened records' models
    assert sum(k for _, k in bc.forfeits) == sum(1 for rec in settlement.records if not rec[3])
    assert set(bc.opened) == {rec[2] for rec in settlement.records if rec[3]}


@given(st.binary(max_size=300))
def test_decoders_raise_only_decode_error(data):
    for cls in (Entry, Beacon, AnchorNotice, RoundPayload):
        try:
            cls.decode(data)
        except DecodeError:
            pass


def test_beacon_entries_must_be_sorted_unique_one_per_miner():
    z = bytes(32)
    items = [(b"\x02" * 32, b"\x0a" * 32, z, z), (b"\x01" * 32, b"\x0b" * 32, z, z)]
    bc = make_beacon([KP], "popchain-x", 1, bytes(32), items, bytes(32))
    assert list(bc.entries) == sorted(bc.entries)
    with pytest.raises(DecodeError):
        Beacon(3, "popchain-x", 1, bytes(32), 0, 0, tuple(items), bytes(32))
    with pytest.raises(DecodeError):   # one miner key, two entries
        Beacon(3, "popchain-x", 1, bytes(32), 0, 0, ((b"\x01" * 32, KP.public, z, z),
                                                     (b"\x02" * 32, KP.public, z, z)), bytes(32))
    with pytest.raises(DecodeError):   # revealed before it opened
        Beacon(3, "popchain-x", 1, bytes(32), 5, 4, (), bytes(32))
    with pytest.raises(DecodeError):   # a settlement record outside its window, or out of order
        make_settlement(2, 3, [(1, KP.public, z, 0)])
    with pytest.raises(DecodeError):
        Settlement(1, 3, ((2, KP.public, z, 0), (1, KP.public, z, 0)))
