"""Shard sizing for ``popchain genesis create``: how many rows a hidden shard needs for the crowning test to
detect a target improvement, and what a given size can detect.

Everything statistical is consensus.protocol.stats': the exact integer bars (``crown_bar``: the sign test over
m = E listed entries at α, and the margin of ``min_gain_bp``) and the float power around them; this module only
searches shard sizes and improvements with it. A size must also hold tied near-copies of the champion (COPY_D
disagreement, m of them) to at most COPY_RATE crownings per round, computed exactly (``stats.copy_crown_exact``):
the least power-sized shard is grown (0.5 % steps, at most ×1.5) until it does.
``plan_rows`` splits a dataset's rows between public training rows and hidden shards (the owner's defaults:
``DEFAULT_PUBLIC_SHARE`` public, shards sized to detect +1 pp when that leaves ``MIN_DEFAULT_ROUNDS`` rounds,
else that many equal shards), and ``sizing_warnings`` says in words when a sizing starves the miners or the chain.
What it does NOT do: decide validity — nothing here is a consensus rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from chain.errors import PopError
from consensus.protocol import stats
from consensus.protocol.stats import DEFAULT_ALPHA, DEFAULT_MIN_GAIN_BP, Alpha, min_disagreement

POWER_TARGET = 0.8
DISAGREEMENT = 0.10        # the champion/challenger disagreement the target improvement is sized at
DEFAULT_DETECT = 0.01      # +1 percentage point
MAX_SIZED_ROWS = 400_000
COPY_D = Fraction(1, 20)   # a near-copy's disagreement with the champion (the simulator's tied noise copies: 1–5 %)
COPY_RATE = Fraction(1, 1000)   # goal: such copies crown in at most 1 round in 1 000 (issue 18)
DEFAULT_PUBLIC_SHARE = 0.4     # a dataset's rows (after the holdout) kept public for training by default
MIN_DEFAULT_ROUNDS = 3         # default sizing: coarser shards rather than fewer than this many rounds ...
MAX_AUTO_DETECT = 0.05         # ... but never shards that cannot detect +5 pp
WARN_PUBLIC_ROWS = 10_000      # fewer public rows than this: miners start weak (warned)
MIN_TRAIN_ROWS = 11


def power(n_rows: int, p_disagree: float, improvement: float, m: int, alpha: Alpha = DEFAULT_ALPHA,
          min_gain_bp: int = DEFAULT_MIN_GAIN_BP) -> float:
    """P(crowned) for a challenger ``improvement`` more accurate than the champion that disagrees with it on a
    ``p_disagree`` share of an ``n_rows`` shard (consensus.protocol.stats.power, in improvement terms)."""
    if p_disagree <= 0:
        return 0.0
    return stats.power(n_rows, p_disagree, stats.p_better_for(improvement, p_disagree), m, alpha, min_gain_bp)


def copy_rate(n_rows: int, m: int, alpha: Alpha = DEFAULT_ALPHA, min_gain_bp: int = DEFAULT_MIN_GAIN_BP) -> Fraction:
    """Exact per-round crowning bound of m tied near-copies (COPY_D disagreement) on ``n_rows`` shards."""
    return stats.copy_crown_exact(n_rows, COPY_D, m, alpha, min_gain_bp)[1]


@lru_cache(maxsize=64)
def rows_for(improvement: float, m: int, alpha: Alpha = DEFAULT_ALPHA, *, p_disagree: float = DISAGREEMENT,
             target: float = POWER_TARGET, max_rows: int = MAX_SIZED_ROWS,
             min_gain_bp: int = DEFAULT_MIN_GAIN_BP) -> int | None:
    """The fewest shard rows (to within 0.5 %) with ``power`` ≥ target, grown in 0.5 % steps (at most ×1.5)
    until m near-copies crown in at most COPY_RATE of rounds when the margin is on; None if ``max_rows`` do
    not (consensus.protocol.stats.rows_for_power, in improvement terms)."""
    if p_disagree <= 0:
        return None
    rows = stats.rows_for_power(p_disagree, stats.p_better_for(improvement, p_disagree), m, alpha, target=target,
                                max_rows=max_rows, resolution=200, min_gain_bp=min_gain_bp)
    if rows is None or min_gain_bp == 0:
        return rows
    limit = min(max_rows, rows * 3 // 2)
    while copy_rate(rows, m, alpha, min_gain_bp) > COPY_RATE and rows < limit:
        rows = min(limit, rows + max(1, rows // 200))
    return rows


def detectable(n_rows: int, m: int, alpha: Alpha = DEFAULT_ALPHA, *, p_disagree: float = DISAGREEMENT,
               target: float = POWER_TARGET, min_gain_bp: int = DEFAULT_MIN_GAIN_BP) -> float | None:
    """The least improvement (to 1e-4) crowned with probability ≥ target on ``n_rows`` shards, or None if not
    even a challenger right on every disagreement (+p_disagree) is."""
    if power(n_rows, p_disagree, p_disagree, m, alpha, min_gain_bp) < target:
        return None
    lo, hi = 0.0, p_disagree
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if power(n_rows, p_disagree, mid, m, alpha, min_gain_bp) >= target else (mid, hi)
    return hi


@dataclass(frozen=True)
class Sizing:
    shard_size: int
    rounds: int
    rounds_allowed: int | None     # None: a generated task can make as many shards as genesis lists
    detectable: float | None       # improvement crowned with ≥ 80 % power at DISAGREEMENT, None if none
    min_rows: int                  # fewest rows with which anything can ever be crowned (m = E)
    public_rows: int | None = None  # rows tasks: public training rows (the rest of the data after the shards)


class SizingError(PopError, ValueError):
    """A sizing under which nothing could ever be crowned, or that the data cannot supply."""


def plan(*, m: int, alpha: Alpha = DEFAULT_ALPHA, detect: float = DEFAULT_DETECT, shard_size: int | None,
         rounds: int | None, available_rows: int | None, default_rounds: int, max_shard: int,
         min_gain_bp: int = DEFAULT_MIN_GAIN_BP) -> Sizing:
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
        sized = rows_for(detect, m, alpha, p_disagree=d, min_gain_bp=min_gain_bp)
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
    return Sizing(shard_size, rounds, allowed, detectable(shard_size, m, alpha, p_disagree=d, min_gain_bp=min_gain_bp),
                  floor)


def public_count(public: float | None, available: int) -> int | None:
    """``--public-rows``: a count (≥ 1) or a fraction in (0, 1) of the rows left after the holdout."""
    if public is None:
        return None
    if 0 < public < 1:
        return max(1, round(public * available))
    if public != int(public) or public < 1:
        raise SizingError(f"--public-rows {public}: a row count (>= 1) or a fraction between 0 and 1")
    if public >= available:
        raise SizingError(f"--public-rows {int(public)}: the data has {available:,} rows besides the holdout, and "
                          "hidden shards need some of them")
    return int(public)


def plan_rows(*, m: int, alpha: Alpha = DEFAULT_ALPHA, available: int, public: float | None = None,
              detect: float | None = None, shard_size: int | None = None, rounds: int | None = None,
              max_shard: int) -> Sizing:
    """Split ``available`` rows (a dataset after its holdout) into public training rows and ``rounds`` hidden
    shards. Explicit choices are kept (and checked); the rest is derived: public rows default to
    DEFAULT_PUBLIC_SHARE (they shrink, down to MIN_TRAIN_ROWS, when explicit shard sizes need the rows); shards
    to detect ``detect`` (default +1 pp) when that gives MIN_DEFAULT_ROUNDS rounds, else that many equal
    shards as long as they detect +5 pp, else fewer rounds."""
    floor = min_disagreement(m, alpha)
    a = f"{alpha[0]}/{alpha[1]}"
    if rounds is not None and rounds < 1:
        raise SizingError(f"--rounds {rounds}: a chain needs at least one round")
    if detect is not None and not 0 < detect <= 0.5:
        raise SizingError(f"--detect {detect}: the target improvement must lie in (0, 0.5]")
    if available < MIN_TRAIN_ROWS + floor:
        raise SizingError(f"{max(available, 0)} rows besides the holdout: too few for {MIN_TRAIN_ROWS} public rows "
                          f"and one shard of at least {floor}")
    fixed_public = public_count(public, available)
    if shard_size is not None:
        if shard_size < floor:
            raise SizingError(f"--shard-size {shard_size}: nothing could ever be crowned — with E = {m} entries at "
                              f"α = {a} the sign test needs at least {floor} disagreements in a shard")
        if shard_size > max_shard:
            raise SizingError(f"--shard-size {shard_size}: at most {max_shard} rows per shard for this task")
    elif detect is not None:
        d = max(DISAGREEMENT, detect)
        sized = rows_for(detect, m, alpha, p_disagree=d)
        if sized is None or sized > max_shard:
            raise SizingError(f"--detect {detect}: needs more than {max_shard} rows per shard; raise --detect")
        shard_size = sized
    hideable = available - (fixed_public if fixed_public is not None else MIN_TRAIN_ROWS)
    default_hidden = available - max(MIN_TRAIN_ROWS, round(available * DEFAULT_PUBLIC_SHARE))
    hidden = hideable if fixed_public is not None else default_hidden
    if shard_size is not None:
        if rounds is None:
            if shard_size > hidden and fixed_public is None:
                hidden = hideable          # the owner asked for big shards: public rows give way
            rounds = hidden // shard_size
    elif rounds is not None:               # rounds fixed, shard size derived: +1 pp, or what the rows allow
        if rounds > hidden and fixed_public is None:
            hidden = hideable
        shard_size = min(rows_for(DEFAULT_DETECT, m, alpha) or max_shard, hidden // rounds, max_shard)
    else:
        shard_size, rounds = _auto_shards(m, alpha, hidden, max_shard)
    need = rounds * shard_size
    if rounds < 1 or need > hideable:
        what = f"{fixed_public:,} public rows and " if fixed_public is not None else ""
        raise SizingError(f"the data has {available:,} rows besides the holdout: {what}{max(rounds, 1)} x "
                          f"{shard_size:,}-row shards do not fit; lower --rounds, --shard-size or --public-rows, "
                          "or raise --detect")
    if shard_size < floor:
        raise SizingError(f"{rounds} rounds leave {shard_size}-row shards, under the {floor} disagreements the sign "
                          "test needs: fewer --rounds")
    public_rows = fixed_public if fixed_public is not None else available - need
    d = max(DISAGREEMENT, DEFAULT_DETECT if detect is None else detect)
    return Sizing(shard_size, rounds, (available - MIN_TRAIN_ROWS) // shard_size,
                  detectable(shard_size, m, alpha, p_disagree=d), floor, public_rows)


def _auto_shards(m: int, alpha: Alpha, hidden: int, max_shard: int) -> tuple[int, int]:
    sized = rows_for(DEFAULT_DETECT, m, alpha)
    if sized is not None and sized <= max_shard and hidden // sized >= MIN_DEFAULT_ROUNDS:
        return sized, hidden // sized
    for rounds in range(MIN_DEFAULT_ROUNDS, 0, -1):
        size = min(hidden // rounds, max_shard)
        det = detectable(size, m, alpha) if size >= 1 else None
        if det is not None and det <= MAX_AUTO_DETECT:
            return size, rounds
    det = detectable(min(hidden, max_shard), m, alpha) if hidden >= 1 else None
    raise SizingError(f"the default split hides {hidden:,} rows: even one shard of them detects "
                      + (f"only +{det:.1%}" if det is not None else "no improvement at 80 % power")
                      + f" (the default needs +{MAX_AUTO_DETECT:.0%}); choose --detect or --shard-size, and "
                        "--public-rows, yourself")


def sizing_warnings(sizing: Sizing, *, generated: bool, n_train: int) -> list[str]:
    """What a task owner should know before handing the chain out (printed by genesis/task create)."""
    out = []
    if not generated and n_train < WARN_PUBLIC_ROWS:
        out.append(f"only {n_train:,} public training rows: miners learn from them until shards are revealed, and "
                   f"under ~{WARN_PUBLIC_ROWS:,} rows their models start weak; keep more public (--public-rows), or "
                   "fewer/smaller shards (--rounds, --shard-size, --detect)")
    if sizing.rounds == 1:
        out.append("only 1 round: the task crowns at most once and then closes (until 'task extend' adds "
                   "shards); smaller shards (--shard-size, or a larger --detect) give more rounds but detect only "
                   "larger improvements")
    return out
