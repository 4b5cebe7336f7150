"""Hypothesis properties of the pure consensus rules: paired test, retarget, fork order, message encodings."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chain.block import Block, Header
from chain.crypto import Keypair
from chain.errors import DecodeError
from consensus.genesis import GenesisParams
from consensus.messages import (
    AnchorNotice,
    Beacon,
    Entry,
    RoundPayload,
    make_anchor_notice,
    make_beacon,
    make_entry,
)
from consensus.rules import MIN_DISAGREEMENT, ScoredBlock, fork_key, paired_test, z_for_round
from ml.score import paired

KP = Keypair.from_seed(bytes(range(32)))
counts = st.integers(0, 5000)
z_milli = st.integers(0, 4000)


@given(counts, counts, z_milli)
@settings(max_examples=500)
def test_paired_test_matches_float_reference_away_from_ties(b, c, z):
    d = b - c
    if d >= 1 and b + c >= MIN_DISAGREEMENT:
        margin = d / math.sqrt(b + c) - z / 1000
        assume(abs(margin) > 1e-9)  # away from exact ties the float reference is reliable
        assert paired_test(b, c, z) == (margin >= 0)
    else:
        assert not paired_test(b, c, z)


@given(counts, counts)
def test_paired_test_at_zero_is_strictly_more_right_answers_on_a_measurable_difference(b, c):
    assert paired_test(b, c, 0) == (b - c >= 1 and b + c >= MIN_DISAGREEMENT)


@given(counts, counts, z_milli, z_milli)
def test_paired_test_monotone_in_z(b, c, z1, z2):
    lo, hi = sorted((z1, z2))
    if paired_test(b, c, hi):
        assert paired_test(b, c, lo)


@given(counts, counts, z_milli, st.integers(1, 50))
def test_one_more_right_answer_never_loses_acceptance_at_z_zero(b, c, z, extra):
    # converting disagreements the challenger lost into ones it won only helps it
    if paired_test(b, c, z) and c >= extra:
        assert paired_test(b + extra, c - extra, z)
    if paired_test(b, c, 0):
        assert paired_test(b + extra, c, 0)


def test_min_disagreement_is_the_smallest_clean_sweep_significant_at_five_percent():
    # exact one-sided sign test: a clean sweep b = n, c = 0 has p = 2^-n
    assert 2.0 ** -MIN_DISAGREEMENT < 0.05 <= 2.0 ** -(MIN_DISAGREEMENT - 1)
    assert not any(paired_test(n, 0, 0) for n in range(MIN_DISAGREEMENT))
    assert paired_test(MIN_DISAGREEMENT, 0, 0)
    assert paired_test(MIN_DISAGREEMENT, 0, 1645)  # a clean sweep of 5 also clears z_init: sqrt(5) > 1.645


@st.composite
def champion_and_near_copy(draw):
    """A shard's labels, the champion's predictions, and a challenger that changes fewer than
    MIN_DISAGREEMENT of them (a perturbed copy, as the simulator's copycat makes)."""
    n = draw(st.integers(1, 300))
    k = draw(st.integers(2, 6))
    y = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    champ = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    flips = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, k - 1)), max_size=MIN_DISAGREEMENT - 1))
    chall = list(champ)
    for i, v in flips:
        chall[i] = v
    return np.array(y), np.array(champ), np.array(chall)


@given(champion_and_near_copy(), z_milli)
def test_a_copy_changing_fewer_than_min_disagreement_predictions_is_never_crowned(case, z):
    y, champ, chall = case
    b, c = paired(chall == y, champ == y)
    assert b + c <= int(np.count_nonzero(chall != champ)) < MIN_DISAGREEMENT
    assert not paired_test(b, c, z)


params_st = st.builds(
    lambda floor, span, init_off, up, down: GenesisParams(
        z_floor_milli=floor, z_max_milli=floor + span, z_init_milli=floor + min(init_off, span),
        z_up_milli=up, z_down_milli=down),
    st.integers(0, 2000), st.integers(0, 3000), st.integers(0, 3000), st.integers(0, 1000), st.integers(1, 1000))


@given(params_st, st.integers(0, 200), st.integers(0, 30), st.integers(0, 30),
       st.one_of(st.none(), st.integers(0, 6000)))
@settings(max_examples=300)
def test_retarget_monotone_in_void_rounds_and_bounded(params, parent_round, v1, v2, parent_z):
    lo, hi = sorted((v1, v2))
    z_lo = z_for_round(params, parent_round + 1 + lo, parent_round, parent_z)
    z_hi = z_for_round(params, parent_round + 1 + hi, parent_round, parent_z)
    assert z_hi <= z_lo
    for z in (z_lo, z_hi):
        assert params.z_floor_milli <= z <= params.z_max_milli
    # enough void rounds always reach the floor: the chain never halts for good
    top = max(params.z_max_milli, params.z_init_milli, parent_z or 0) + params.z_up_milli
    far = parent_round + 2 + top // params.z_down_milli + 1
    assert z_for_round(params, far, parent_round, parent_z) == params.z_floor_milli


def test_retarget_examples():
    p = GenesisParams()
    assert z_for_round(p, 1, 0, None) == p.z_init_milli
    assert z_for_round(p, 2, 0, None) == p.z_init_milli - p.z_down_milli
    assert z_for_round(p, 5, 4, 1000) == 1000 + p.z_up_milli
    assert z_for_round(p, 7, 4, 1000) == 1000 + p.z_up_milli - 2 * p.z_down_milli
    with pytest.raises(ValueError):
        z_for_round(p, 4, 4, None)


def _scored(b: int, c: int, salt: int) -> ScoredBlock:
    h = Header(1, "t", 1, bytes(32), 1, 1, bytes(32), bytes(32), bytes(32), bytes(32),
               salt.to_bytes(32, "big"))
    return ScoredBlock(Block(h, (), b"", b""), b, c, 0)


blocks_st = st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 2**64)),
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


@given(st.integers(1, 2**32 - 1), hashes, hashes)
def test_entry_roundtrip_and_signature(r, parent, header):
    e = make_entry(KP, "popchain-x", r, parent, header)
    assert Entry.decode(e.encode()) == e and e.verify_signature()
    forged = Entry(e.version, e.chain_id, e.round, e.parent_hash,
                   bytes([header[0] ^ 1]) + header[1:], e.miner, e.signature)
    assert not forged.verify_signature()


@given(st.integers(1, 1000), hashes, st.lists(hashes, max_size=20), hashes)
def test_beacon_roundtrip_canonical(r, anchor, entries, key):
    bc = make_beacon([KP], "popchain-x", r, anchor, entries, key)
    assert Beacon.decode(bc.encode()) == bc
    assert bc.verify([KP.public], 1) and not bc.verify([bytes(32)], 1)
    payload = RoundPayload(1, bc, 3, 1, 1645)
    assert RoundPayload.decode(payload.encode()) == payload
    n = make_anchor_notice([KP], "popchain-x", r, anchor, 7, 123_456)
    assert AnchorNotice.decode(n.encode()) == n and n.verify([KP.public], 1)


@given(st.binary(max_size=300))
def test_decoders_raise_only_decode_error(data):
    for cls in (Entry, Beacon, AnchorNotice, RoundPayload):
        try:
            cls.decode(data)
        except DecodeError:
            pass


def test_beacon_entries_must_be_sorted_unique():
    bc = make_beacon([KP], "popchain-x", 1, bytes(32), [b"\x02" * 32, b"\x01" * 32], bytes(32))
    assert list(bc.entries) == sorted(bc.entries)
    with pytest.raises(DecodeError):
        Beacon(1, "popchain-x", 1, bytes(32), (b"\x02" * 32, b"\x01" * 32), bytes(32), ())
