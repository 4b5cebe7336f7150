"""The crowning rule's false-crown rate and power: Monte Carlo on the real acceptance function, next to the
exact binomial value.

Model (the one PROTOCOL §3.6 states its guarantee in): each of the m listed entrants disagrees with the champion
on each of the N shard rows independently with probability d, and wins each disagreement with probability q
(q = 1/2: tied with the champion; q = (d + δ) / 2d: truly δ more accurate). Monte Carlo draws (b, c) per
entrant with a seeded numpy generator and asks ``consensus.protocol.stats.crowns(b, c, m, N, α, margin)`` — the
function validate_block calls (sign test and margin). The exact value sums the binomial mixture
Σ_n P[D = n] · P[Bin(n, q) ≥ bar(n)] over the rule's own bars (``consensus.protocol.stats.power``, float64 terms,
no normal approximation); for a round of m tied entrants the false-crown rate is 1 − (1 − p)^m. A *near-copy*
of the champion is a tied entrant with small d (5 %): ``copy_crown`` is its simulated check beside
``consensus.protocol.stats.copy_crown_exact`` (integers). ``exact_tail`` is an independent integer check of a
single threshold (Fractions), used by the tests.
What this module does not do: score models; the simulator (benchmarks.simulator) does that end to end.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from consensus.protocol.stats import DEFAULT_ALPHA, DEFAULT_MIN_GAIN_BP, copy_crown_exact, crowns, power


@dataclass(frozen=True)
class RuleFigure:
    monte_carlo: float      # share of trials crowned
    exact: float            # the binomial value of the same share
    trials: int
    stderr: float           # Monte Carlo standard error

    @property
    def summary(self) -> str:
        return f"MC {self.monte_carlo:.4f} ± {self.stderr:.4f} over {self.trials} trials, exact {self.exact:.4f}"


def exact_tail(n: int, t: int) -> Fraction:
    """P[Bin(n, 1/2) ≥ t] as an exact fraction (independent of consensus.protocol.stats' incremental walk)."""
    return Fraction(sum(math.comb(n, k) for k in range(max(t, 0), n + 1)), 2**n)


def _draw(rng: np.random.Generator, trials: int, m: int, n_rows: int, d: float, q: float):
    n = rng.binomial(n_rows, d, size=(trials, m))
    b = rng.binomial(n, q)
    return b, n - b


def false_crown_round(n_rows: int, *, d: float = 0.10, m: int = 16, trials: int = 20_000, seed: int = 1,
                      alpha: tuple[int, int] = DEFAULT_ALPHA, min_gain_bp: int = DEFAULT_MIN_GAIN_BP) -> RuleFigure:
    """Share of rounds in which any of m entrants, each exactly tied with the champion, is crowned."""
    b, c = _draw(np.random.default_rng(seed), trials, m, n_rows, d, 0.5)
    crowned = sum(1 for i in range(trials)
                  if any(crowns(int(b[i, j]), int(c[i, j]), m, n_rows, alpha, min_gain_bp) for j in range(m)))
    share = crowned / trials
    exact = 1.0 - (1.0 - power(n_rows, d, 0.5, m, alpha, min_gain_bp)) ** m
    return RuleFigure(share, exact, trials, math.sqrt(max(share * (1 - share), 1e-12) / trials))


def crown_power(n_rows: int, *, improvement: float = 0.01, d: float = 0.10, m: int = 16, trials: int = 20_000,
                seed: int = 2, alpha: tuple[int, int] = DEFAULT_ALPHA,
                min_gain_bp: int = DEFAULT_MIN_GAIN_BP) -> RuleFigure:
    """Probability that one challenger, truly ``improvement`` more accurate at disagreement rate d, passes the
    rule in a round listing m entries."""
    q = (d + improvement) / (2 * d)
    b, c = _draw(np.random.default_rng(seed), trials, 1, n_rows, d, q)
    passed = sum(1 for i in range(trials) if crowns(int(b[i, 0]), int(c[i, 0]), m, n_rows, alpha, min_gain_bp))
    share = passed / trials
    return RuleFigure(share, power(n_rows, d, q, m, alpha, min_gain_bp), trials,
                      math.sqrt(max(share * (1 - share), 1e-12) / trials))


def copy_crown(n_rows: int, *, d: Fraction = Fraction(1, 20), m: int = 16, trials: int = 100_000, seed: int = 3,
               alpha: tuple[int, int] = DEFAULT_ALPHA, min_gain_bp: int = DEFAULT_MIN_GAIN_BP) -> RuleFigure:
    """Share of rounds in which any of m tied near-copies of the champion (disagreement d) is crowned; ``exact``
    is the integer union bound of ``consensus.protocol.stats.copy_crown_exact``. Vectorised: a copy can crown
    only with b − c ≥ the margin, so only those draws are asked ``crowns``."""
    b, c = _draw(np.random.default_rng(seed), trials, m, n_rows, float(d), 0.5)
    floor = -(-min_gain_bp * n_rows // 10_000)
    hit = np.zeros(trials, dtype=bool)
    for i, j in zip(*np.nonzero((b - c) >= max(1, floor)), strict=True):
        hit[i] |= crowns(int(b[i, j]), int(c[i, j]), m, n_rows, alpha, min_gain_bp)
    share = float(hit.mean())
    exact = float(copy_crown_exact(n_rows, d, m, alpha, min_gain_bp)[1])
    return RuleFigure(share, exact, trials, math.sqrt(max(share * (1 - share), 1e-12) / trials))
