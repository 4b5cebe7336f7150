"""Shard sizing for ``popchain genesis create``: how many rows a hidden shard needs for the crowning test to
detect a target improvement, and what a given size can detect.

Everything statistical is consensus.protocol.stats': the exact integer thresholds (``crown_threshold`` over m = E listed
entries at α) and the float power around them; this module only searches shard sizes and improvements with it.
What it does NOT do: decide validity — nothing here is a consensus rule.
"""
from __future__ import annotations

from dataclasses import dataclass

from consensus.protocol import stats
from consensus.protocol.stats import DEFAULT_ALPHA, Alpha, min_disagreement

POWER_TARGET = 0.8
DISAGREEMENT = 0.10        # the champion/challenger disagreement the target improvement is sized at
DEFAULT_DETECT = 0.01      # +1 percentage point
MAX_SIZED_ROWS = 400_000


def power(n_rows: int, p_disagree: float, improvement: float, m: int, alpha: Alpha = DEFAULT_ALPHA) -> float:
    """P(crowned) for a challenger ``improvement`` more accurate than the champion that disagrees with it on a
    ``p_disagree`` share of an ``n_rows`` shard (consensus.protocol.stats.power, in improvement terms)."""
    if p_disagree <= 0:
        return 0.0
    return stats.power(n_rows, p_disagree, stats.p_better_for(improvement, p_disagree), m, alpha)


def rows_for(improvement: float, m: int, alpha: Alpha = DEFAULT_ALPHA, *, p_disagree: float = DISAGREEMENT,
             target: float = POWER_TARGET, max_rows: int = MAX_SIZED_ROWS) -> int | None:
    """The fewest shard rows (to within 0.5 %) with ``power`` ≥ target, or None if ``max_rows`` do not
    (consensus.protocol.stats.rows_for_power, in improvement terms)."""
    if p_disagree <= 0:
        return None
    return stats.rows_for_power(p_disagree, stats.p_better_for(improvement, p_disagree), m, alpha, target=target,
                                max_rows=max_rows, resolution=200)


def detectable(n_rows: int, m: int, alpha: Alpha = DEFAULT_ALPHA, *, p_disagree: float = DISAGREEMENT,
               target: float = POWER_TARGET) -> float | None:
    """The least improvement (to 1e-4) crowned with probability ≥ target on ``n_rows`` shards, or None if not
    even a challenger right on every disagreement (+p_disagree) is."""
    if power(n_rows, p_disagree, p_disagree, m, alpha) < target:
        return None
    lo, hi = 0.0, p_disagree
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if power(n_rows, p_disagree, mid, m, alpha) >= target else (mid, hi)
    return hi


@dataclass(frozen=True)
class Sizing:
    shard_size: int
    rounds: int
    rounds_allowed: int | None     # None: a generated task can make as many shards as genesis lists
    detectable: float | None       # improvement crowned with ≥ 80 % power at DISAGREEMENT, None if none
    min_rows: int                  # fewest rows with which anything can ever be crowned (m = E)


class SizingError(ValueError):
    """A sizing under which nothing could ever be crowned, or that the data cannot supply."""


def plan(*, m: int, alpha: Alpha = DEFAULT_ALPHA, detect: float = DEFAULT_DETECT, shard_size: int | None,
         rounds: int | None, available_rows: int | None, default_rounds: int, max_shard: int) -> Sizing:
    """Choose (shard_size, rounds). ``available_rows`` is what a rows task can hide at most (None: generated,
    any amount); explicit values are checked, missing ones derived: the shard size from the ``detect`` target,
    the rounds as ``default_rounds`` (generated) or about half the available rows (rows task)."""
    floor = min_disagreement(m, alpha)
    a = f"{alpha[0]}/{alpha[1]}"
    if rounds is not None and rounds < 1:
        raise SizingError(f"--rounds {rounds}: a chain needs at least one round")
    if not 0 < detect <= 0.5:
        raise SizingError(f"--detect {detect}: the target improvement must lie in (0, 0.5]")
    d = max(DISAGREEMENT, detect)
    if shard_size is not None:
        if shard_size < floor:
            raise SizingError(f"--shard-size {shard_size}: nothing could ever be crowned — with E = {m} entries at "
                              f"α = {a} the sign test needs at least {floor} disagreements in a shard")
        if shard_size > max_shard:
            raise SizingError(f"--shard-size {shard_size}: at most {max_shard} rows per shard for this task")
    else:
        sized = rows_for(detect, m, alpha, p_disagree=d)
        if sized is None or sized > max_shard:
            raise SizingError(f"--detect {detect}: needs more than {max_shard} rows per shard; raise --detect")
        shard_size = sized
    allowed = None if available_rows is None else available_rows // shard_size
    if allowed is not None and allowed < 1:
        raise SizingError(f"the task's data leaves {available_rows} rows to hide: not one {shard_size}-row shard "
                          f"(sized to detect +{detect:.2%}); raise --detect or lower --shard-size")
    if rounds is None:  # a rows task keeps about half its rows public for training unless told otherwise
        rounds = (default_rounds if allowed is None or available_rows is None
                  else max(1, min(allowed, available_rows // 2 // shard_size)))
    elif allowed is not None and rounds > allowed:
        raise SizingError(f"--rounds {rounds}: the data allows only {allowed} rounds of {shard_size}-row shards")
    return Sizing(shard_size, rounds, allowed, detectable(shard_size, m, alpha, p_disagree=d), floor)
