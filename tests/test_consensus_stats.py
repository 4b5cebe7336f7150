"""consensus.protocol.stats: the exact Bonferroni-corrected sign test against an independent Fraction + math.comb reference,
and the false-accept / power statements PROTOCOL §3.7 makes."""
from __future__ import annotations

import math
from fractions import Fraction
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.protocol.stats import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_GAIN_BP,
    accepts,
    copy_crown_exact,
    crown_bar,
    crown_threshold,
    crowns,
    margin_rows,
    min_disagreement,
    p_better_for,
    power,
    rows_for_power,
)

E = 16
ALPHA = Fraction(*DEFAULT_ALPHA)


@cache
def _tails(n: int) -> tuple[Fraction, ...]:
    """P[Bin(n, 1/2) >= b] for b = 0..n+1, from math.comb and Fractions (independent of stats.py's walk)."""
    out = [Fraction(sum(math.comb(n, k) for k in range(b, n + 1)), 2**n) for b in range(n + 2)]
    return tuple(out)


def reference_accepts(b: int, c: int, m: int, alpha: Fraction = ALPHA) -> bool:
    n = b + c
    return b > c and _tails(n)[b] * m <= alpha


def reference_threshold(n: int, m: int, alpha: Fraction = ALPHA) -> int | None:
    for b in range(n // 2 + 1, n + 1):
        if reference_accepts(b, n - b, m, alpha):
            return b
    return None


def test_threshold_equals_reference_for_every_n_up_to_400_and_every_m_up_to_E():
    for n in range(401):
        for m in range(1, E + 1):
            assert crown_threshold(n, m) == reference_threshold(n, m), (n, m)


@given(st.integers(0, 400), st.integers(0, 400), st.integers(1, E),
       st.sampled_from([(1, 20), (1, 100), (1, 2), (49, 100), (1, 1000)]))
@settings(max_examples=400, deadline=None)
def test_accepts_matches_reference(b, c, m, alpha):
    assert accepts(b, c, m, alpha) == reference_accepts(b, c, m, Fraction(*alpha))


@given(st.integers(0, 3000), st.integers(1, 256))
@settings(max_examples=200, deadline=None)
def test_threshold_is_exactly_the_least_passing_b(n, m):
    t = crown_threshold(n, m)
    if t is None:
        assert not accepts(n, 0, m)      # not even a clean sweep
    else:
        assert 2 * t > n and accepts(t, n - t, m)
        assert t == n // 2 + 1 or not accepts(t - 1, n - t + 1, m)


def test_ties_and_tiny_samples_never_crown():
    # the old rule's floor crowned 3 / 2 and 1 / 0; with m = 16 nothing below 9 disagreements can crown
    for n in range(401):
        for m in range(1, E + 1):
            assert not accepts(n, n, m)
    assert not accepts(1, 0, 1) and not accepts(3, 2, 1) and not accepts(4, 0, 1)
    assert min_disagreement(1) == 5 and min_disagreement(16) == 9
    assert not accepts(8, 0, 16) and accepts(9, 0, 16)


def test_more_entries_never_lower_the_bar():
    for n in (20, 200, 2000):
        bars = [crown_threshold(n, m) for m in range(1, 257)]
        assert all(a is None or (b is not None and a <= b) or b is None for a, b in zip(bars, bars[1:]))


def test_round_false_accept_is_at_most_alpha():
    """With m tied entrants (each disagreement a fair coin), P[some entry crowns] <= Σ P[entry crowns] <= α,
    exactly: Σ_b≥t C(n,b)/2^n <= α/m for every n."""
    for n in range(1, 401):
        for m in (1, 4, 16):
            t = crown_threshold(n, m)
            if t is not None:
                assert _tails(n)[t] * m <= ALPHA


def test_power_matches_the_issue_sizing():
    # +1 pp at 10 % disagreement needs ~13,000 rows for 80 % power with 16 entries; ~6,500 at 5 %
    assert power(13_100, 0.10, p_better_for(0.01, 0.10)) >= 0.8
    assert power(13_121, 0.10, p_better_for(0.01, 0.10), 16, DEFAULT_ALPHA, DEFAULT_MIN_GAIN_BP) >= 0.8
    assert power(10_000, 0.10, p_better_for(0.01, 0.10)) < 0.8
    assert power(2_000, 0.10, 0.5) <= 0.05 / 16 * 1.01 + 1e-9  # a tied challenger: within its α/m share
    n = rows_for_power(0.05, p_better_for(0.01, 0.05))
    assert n is not None and 6_000 <= n <= 7_000


def test_bad_arguments_are_value_errors():
    for args in [(-1, 1), (10, 0), (10, -3)]:
        with pytest.raises(ValueError):
            crown_threshold(*args)
    with pytest.raises(ValueError):
        crown_threshold(10, 1, (1, 1))
    with pytest.raises(ValueError):
        accepts(-1, 0, 1)


# ---------------------------------------------------------------- the margin (issue 18)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 200), st.integers(0, 200), st.integers(1, 16), st.integers(1, 5_000), st.integers(0, 400))
def test_crowning_is_the_sign_test_and_the_margin(b, c, m, rows, bp):
    """crowns ⟺ the exact sign test and 10 000 · (b − c) ≥ bp · rows, and ⟺ b ≥ crown_bar(n): the payload's bar is
    exactly the least b that crowns (integers; the margin only ever removes crownings)."""
    ok = crowns(b, c, m, rows, DEFAULT_ALPHA, bp)
    assert ok == (reference_accepts(b, c, m) and 10_000 * (b - c) >= bp * rows)
    bar = crown_bar(b + c, m, rows, DEFAULT_ALPHA, bp)
    assert ok == (bar is not None and b >= bar)
    if bar is not None:
        assert crowns(bar, b + c - bar, m, rows, DEFAULT_ALPHA, bp)
        assert bar == b + c or not crowns(bar - 1, b + c - bar + 1, m, rows, DEFAULT_ALPHA, bp) or bar - 1 <= (b + c) // 2
    assert margin_rows(rows, bp) == -(-bp * rows // 10_000)


def _copy_reference(rows: int, d: Fraction, m: int, bp: int) -> Fraction:
    """Σ_n C(N,n) d^n (1−d)^(N−n) · P[Bin(n, ½) ≥ bar(n)], term by term in Fractions (independent of the walk)."""
    total = Fraction(0)
    for n in range(rows + 1):
        bar = crown_bar(n, m, rows, DEFAULT_ALPHA, bp)
        if bar is not None:
            total += Fraction(math.comb(rows, n)) * d**n * (1 - d) ** (rows - n) * _tails(n)[bar]
    return total


@settings(max_examples=10, deadline=None)
@given(st.integers(40, 200), st.sampled_from([Fraction(1, 20), Fraction(1, 7), Fraction(3, 10)]),
       st.sampled_from([1, 4, 16]), st.sampled_from([0, 75, 500, 2_000]))
def test_the_copy_crowning_bound_is_exact(rows, d, m, bp):
    """copy_crown_exact is the exact binomial mixture up to the binomial mass beyond 14 standard deviations, which
    it counts as crowning (< 1e-12 here, < 1e-40 at the default shard size): never below it, a rigorous bound."""
    per_copy, per_round = copy_crown_exact(rows, d, m, DEFAULT_ALPHA, bp)
    ref = _copy_reference(rows, d, m, bp)
    assert ref <= per_copy <= ref + Fraction(1, 10**12)
    assert per_round == min(Fraction(1), m * per_copy)


def test_near_copies_crown_in_at_most_one_round_in_a_thousand_at_the_default_sizing():
    """16 near-copies at 5 % disagreement on the default 13,121-row shard: ≤ 1/1000 per round with the margin,
    while a +1 pp challenger keeps ≥ 80 % power; without the margin they crown ~4.4 % of rounds (α)."""
    rows = 13_121
    with_margin = copy_crown_exact(rows, Fraction(1, 20), 16, DEFAULT_ALPHA, DEFAULT_MIN_GAIN_BP)[1]
    without = copy_crown_exact(rows, Fraction(1, 20), 16, DEFAULT_ALPHA, 0)[1]
    assert with_margin <= Fraction(1, 1000) < Fraction(4, 100) < without <= ALPHA
    assert power(rows, 0.10, p_better_for(0.01, 0.10), 16, DEFAULT_ALPHA, DEFAULT_MIN_GAIN_BP) >= 0.8
