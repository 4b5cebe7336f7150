"""consensus.protocol.stats: the exact Bonferroni-corrected sign test against an independent Fraction + math.comb reference,
and the false-accept / power statements PROTOCOL §3.7 makes."""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.protocol.stats import (
    DEFAULT_ALPHA,
    accepts,
    crown_threshold,
    min_disagreement,
    p_better_for,
    power,
    rows_for_power,
)

E = 16
ALPHA = Fraction(*DEFAULT_ALPHA)


@lru_cache(maxsize=None)
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
    for n in range(0, 401):
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
    for n in range(0, 401):
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
