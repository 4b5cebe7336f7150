"""The crowning test (PROTOCOL §3.6 step 9, §3.7): an exact one-sided sign test with a Bonferroni correction,
and a minimum effect.

A challenger that disagrees with the champion on n = b + c of the N shard rows (b: it is right and the champion
wrong, c: the reverse) is crowned iff

    b > c   and   alpha_den · m · Σ_{k ≥ b} C(n, k)  ≤  alpha_num · 2^n       (the sign test)
            and   10 000 · (b − c)  ≥  min_gain_bp · N                          (the margin)

i.e. the exact one-sided p-value P[Bin(n, 1/2) ≥ b] times m (the number of entries the round's beacon lists)
is at most α = alpha_num / alpha_den, and the challenger is more accurate by at least ``min_gain_bp`` basis
points of the shard. Under the null "no entrant is truly better than the champion" each row a challenger
disagrees on is, at best, a fair coin for it (rows are exchangeable draws from the shard distribution, and the
shard was hidden when the challenger was sealed), so each listed entry passes the sign test with probability
≤ α / m and the round crowns anything with probability ≤ α, however the m entries were chosen. The margin
adds what the sign test cannot: a near-copy of the champion (few disagreements) is held far below α — its
b − c is a fair random walk of n ≪ N steps, which rarely reaches a fixed share of N (``copy_crown_exact``).

Validity (``crown_threshold``, ``accepts``, ``margin_rows``, ``crown_bar``, ``crowns``) is Python integers only,
no floats, cached per (n, m, α). ``power`` and ``rows_for_power`` size shards (not validity rules): they use
floats; ``copy_crown_exact`` is the exact (integer) crowning rate of tied near-copies, for the figures.

What this module does not do: it does not count b and c (ml.score does) and reads no chain state.
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np

__all__ = [
    "DEFAULT_ALPHA", "DEFAULT_MIN_GAIN_BP", "MAX_N", "Alpha", "accepts", "copy_crown_exact", "crown_bar",
    "crown_threshold", "crowns", "margin_rows", "min_disagreement", "p_better_for", "power", "rows_for_power",
]

Alpha = tuple[int, int]          # (alpha_num, alpha_den): α = alpha_num / alpha_den, 0 < α < 1
DEFAULT_ALPHA: Alpha = (1, 20)
DEFAULT_MIN_GAIN_BP = 75         # the margin's default: +0.75 percentage points of the shard (genesis param)
MAX_N = 1 << 22                  # b + c cannot exceed the shard rows; a bound that keeps the integers sane


def _check(n: int, m: int, alpha: Alpha) -> None:
    num, den = alpha
    if not (type(num) is int and type(den) is int and 0 < num < den):
        raise ValueError(f"alpha must be integers 0 < alpha_num < alpha_den, got {alpha!r}")
    if type(m) is not int or m < 1:
        raise ValueError(f"the entry count m must be a positive integer, got {m!r}")
    if type(n) is not int or not 0 <= n <= MAX_N:
        raise ValueError(f"n must be an integer in [0, {MAX_N}], got {n!r}")


@lru_cache(maxsize=65_536)
def _threshold(n: int, m: int, num: int, den: int) -> int | None:
    # Walk the upper tail down from k = n: term = C(n, k), tail = Σ_{j ≥ k} C(n, j). The least passing b is
    # one above the first k whose tail exceeds the limit (tails only grow as k falls).
    limit = num << n                      # alpha_num · 2^n
    half = n // 2 + 1                     # the least b with b > c = n − b
    term, tail, k = 1, 0, n
    while k >= half:
        tail += term
        if den * m * tail > limit:
            break
        term = term * k // (n - k + 1)    # C(n, k−1) = C(n, k) · k / (n − k + 1), exact
        k -= 1
    best = k + 1
    return best if best <= n else None


def crown_threshold(n: int, m: int, alpha: Alpha = DEFAULT_ALPHA) -> int | None:
    """The least b that crowns a challenger with b + c = n disagreements when m entries are listed, or None
    when no b can (small n: even a clean sweep b = n has p = 2^-n > α / m)."""
    _check(n, m, alpha)
    if n == 0:
        return None
    return _threshold(n, m, alpha[0], alpha[1])


def accepts(b: int, c: int, m: int, alpha: Alpha = DEFAULT_ALPHA) -> bool:
    """The crowning rule: b > c and m · P[Bin(b + c, 1/2) ≥ b] ≤ α, exactly (integers)."""
    if type(b) is not int or type(c) is not int or b < 0 or c < 0:
        raise ValueError("b and c must be non-negative integers")
    t = crown_threshold(b + c, m, alpha)
    return t is not None and b >= t


def margin_rows(rows: int, min_gain_bp: int) -> int:
    """M = ⌈min_gain_bp · rows / 10 000⌉: the least b − c the margin accepts on a ``rows``-row shard."""
    if type(rows) is not int or type(min_gain_bp) is not int or rows < 0 or not 0 <= min_gain_bp <= 10_000:
        raise ValueError(f"rows and min_gain_bp must be integers, rows >= 0, 0 <= bp <= 10000: {rows!r}, "
                         f"{min_gain_bp!r}")
    return -(-min_gain_bp * rows // 10_000)


def crown_bar(n: int, m: int, rows: int, alpha: Alpha = DEFAULT_ALPHA, min_gain_bp: int = 0) -> int | None:
    """The least b that crowns with b + c = n disagreements, m listed entries, on a ``rows``-row shard (both the
    sign test and the margin: b ≥ ⌈(n + M)/2⌉), or None when no b ≤ n can."""
    t = crown_threshold(n, m, alpha)
    if t is None:
        return None
    bar = max(t, -(-(n + margin_rows(rows, min_gain_bp)) // 2))
    return bar if bar <= n else None


def crowns(b: int, c: int, m: int, rows: int, alpha: Alpha = DEFAULT_ALPHA, min_gain_bp: int = 0) -> bool:
    """The crowning rule (§3.6 step 9): the sign test and the margin, exactly (integers)."""
    if type(b) is not int or type(c) is not int or b < 0 or c < 0:
        raise ValueError("b and c must be non-negative integers")
    bar = crown_bar(b + c, m, rows, alpha, min_gain_bp)
    return bar is not None and b >= bar


def min_disagreement(m: int, alpha: Alpha = DEFAULT_ALPHA) -> int:
    """The fewest disagreements at which any outcome can crown (a clean sweep): least n with m·2^-n ≤ α."""
    n = 1
    while crown_threshold(n, m, alpha) is None:
        n += 1
    return n


# ---------------------------------------------------------------- sizing (floats; not validity rules)


_LOG_FACT = np.zeros(1)


def _log_fact(n: int) -> np.ndarray:
    """log(k!) for k = 0..n (a grown-once table: lgamma per element is the slow part of ``power``)."""
    global _LOG_FACT
    if len(_LOG_FACT) <= n:
        _LOG_FACT = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, 2 * n + 2, dtype=np.float64)))))
    return _LOG_FACT


def _binom_logpmf(k: np.ndarray, n: int, p: float) -> np.ndarray:
    if p <= 0.0 or p >= 1.0:
        edge = 0 if p <= 0.0 else n
        return np.where(k == edge, 0.0, -np.inf)
    lf = _log_fact(n)
    ki = k.astype(np.int64)
    return lf[n] - lf[ki] - lf[n - ki] + k * math.log(p) + (n - k) * math.log1p(-p)


def _binom_sf(t: int, n: int, p: float) -> float:
    """P[Bin(n, p) ≥ t]."""
    if t <= 0:
        return 1.0
    if t > n:
        return 0.0
    k = np.arange(t, n + 1, dtype=np.float64)
    return float(min(1.0, np.exp(_binom_logpmf(k, n, p)).sum()))


def power(n_rows: int, p_disagree: float, p_better: float, m: int = 16, alpha: Alpha = DEFAULT_ALPHA,
          min_gain_bp: int = 0) -> float:
    """Probability that a challenger is crowned on an ``n_rows`` shard when it disagrees with the champion on
    each row with probability ``p_disagree`` and each disagreement goes its way with probability ``p_better``
    (a +δ accuracy gain at disagreement rate d has p_better = (d + δ) / 2d): Σ_n P[D = n] · P[b ≥ bar(n)],
    bar from ``crown_bar`` (sign test and margin)."""
    if n_rows <= 0:
        return 0.0
    if p_disagree <= 0.0:
        return 0.0
    mean = n_rows * p_disagree
    sd = math.sqrt(max(mean * (1 - p_disagree), 1e-12))
    lo, hi = max(1, int(mean - 9 * sd) - 1), min(n_rows, int(mean + 9 * sd) + 2)
    ns = np.arange(lo, hi + 1)
    weights = np.exp(_binom_logpmf(ns.astype(np.float64), n_rows, min(p_disagree, 1.0)))
    total = 0.0
    for n, w in zip(ns.tolist(), weights.tolist()):
        if w < 1e-15:
            continue
        t = crown_bar(n, m, n_rows, alpha, min_gain_bp)
        if t is not None:
            total += w * _binom_sf(t, n, p_better)
    return min(1.0, total)


def p_better_for(improvement: float, p_disagree: float) -> float:
    """The share of disagreements a challenger wins when it is ``improvement`` (e.g. 0.01) more accurate."""
    if p_disagree <= 0:
        raise ValueError("p_disagree must be positive")
    return min(1.0, (p_disagree + improvement) / (2 * p_disagree))


def rows_for_power(p_disagree: float, p_better: float, m: int = 16, alpha: Alpha = DEFAULT_ALPHA,
                   target: float = 0.8, max_rows: int = 200_000, resolution: int = 100,
                   min_gain_bp: int = 0) -> int | None:
    """The fewest shard rows (to within 1/``resolution``) at which ``power`` reaches ``target``, or None if not
    even ``max_rows`` do. Power is not exactly monotone in n (the integer threshold steps), so the answer is the
    bisection's, rounded up to keep the target."""
    lo, hi = 1, 64
    while power(hi, p_disagree, p_better, m, alpha, min_gain_bp) < target:
        if hi >= max_rows:
            return None
        lo, hi = hi, min(max_rows, hi * 2)
    while hi - lo > max(1, lo // resolution):
        mid = (lo + hi) // 2
        if power(mid, p_disagree, p_better, m, alpha, min_gain_bp) >= target:
            hi = mid
        else:
            lo = mid
    return hi


# ---------------------------------------------------------------- the copy figure (exact integers; not a rule)


def copy_crown_exact(rows: int, d: Fraction, m: int = 16, alpha: Alpha = DEFAULT_ALPHA,
                     min_gain_bp: int = DEFAULT_MIN_GAIN_BP, spread: int = 14) -> tuple[Fraction, Fraction]:
    """(per copy, per round) crowning probability of tied near-copies of the champion, as exact rational upper
    bounds: each copy disagrees with the champion on each of the N = ``rows`` shard rows independently with
    probability ``d`` (a Fraction) and wins each disagreement with probability 1/2 (it is no better); m such
    entries are listed. Per copy P = Σ_n C(N, n) d^n (1 − d)^(N − n) · P[Bin(n, 1/2) ≥ bar(n)] with the rule's own
    bars (``crown_bar``), summed exactly in integers for n within ``spread`` standard deviations of N·d; the
    binomial mass outside that range (computed exactly as 1 − the mass inside: < 10^-40 at the default shard
    size, < 10^-12 even at 40 rows) is counted as crowning, so the bound is rigorous. Per round: the union bound m · P, whatever the copies' correlation. The tail
    T(n, t) = Σ_{k ≥ t} C(n, k) is walked with T(n + 1, t) = 2 T(n, t) + C(n, t − 1)."""
    if not 0 < d < 1:
        raise ValueError("d must be a Fraction in (0, 1)")
    a, q = d.numerator, d.denominator
    N = rows
    mean, sd = N * float(d), math.sqrt(N * float(d) * (1 - float(d)))
    lo, hi = max(0, int(mean - spread * sd)), min(N, int(mean + spread * sd) + 1)
    # weight(n) = C(N, n) a^n (q − a)^(N − n), over q^N; tail T(n, bar(n)), over 2^n
    w = math.comb(N, lo) * a ** lo * (q - a) ** (N - lo)
    t = crown_bar(lo, m, N, alpha, min_gain_bp) or lo + 1
    T = sum(math.comb(lo, k) for k in range(t, lo + 1))
    crowned, inside = 0, 0
    for n in range(lo, hi + 1):
        if n > lo:
            T = 2 * T + (math.comb(n - 1, t - 1) if t >= 1 else 0)   # T(n, t) from T(n − 1, t)
            w = w * a // (q - a) * (N - n + 1) // n                  # exact: C(N, n) = C(N, n−1)(N−n+1)/n
        inside += w
        bar = crown_bar(n, m, N, alpha, min_gain_bp)
        if bar is None:
            continue
        while t < bar:
            T -= math.comb(n, t)
            t += 1
        while t > bar:
            t -= 1
            T += math.comb(n, t)
        crowned += w * T << (N - n)
    denominator = q ** N
    outside = Fraction(denominator - inside, denominator)       # exact mass outside [lo, hi], counted as crowned
    per_copy = Fraction(crowned, denominator << N) + outside
    return per_copy, min(Fraction(1), m * per_copy)
