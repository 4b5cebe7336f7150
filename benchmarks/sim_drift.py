"""The drifting default task (issue 11): does it keep crowning under the strict rule, and why that drift rate.

- demo_crowned_share_50  share of 50 rounds crowned on the drifting default task (drift
                         node.tools.genesis_setup.DEFAULT_DRIFT_MILLI) under the strict rule (consensus.protocol.stats: exact
                         sign test, Bonferroni over the listed entries, α = 1/20), played by the round simulator's
                         4 honest miners retraining on the newest revealed rows through the real Engine/Keyholder
                         path (goal ≥ 0.3). Baseline: the same 50 rounds, seed and miners on the stationary task
                         (drift 0).
- drift_gap_1pp_share    share of sampled rounds r ≤ 300 in which a model fitted on shard r−1 beats one fitted on
                         shard r−2 (the champion one round staler) by ≥ 1 pp on shard r: the measurement the drift
                         rate was chosen from (``python -m benchmarks.sim_drift --gap`` prints the table for any
                         rate). Baseline: the same share at drift 0 (retraining noise alone).

- champion_bayes_gap_pp   (issue 21) the stationary default task's Bayes limit minus the champion on fresh rows
- forward_gap_pp         (issue 21) on the drifting task, a plain fit on the newest revealed shard minus the
                         champion, both on the next shard (median; also at drift SLOW_DRIFT_MILLI, in its fields)
Both issue-21 figures are played by 3 miners as users run them (benchmarks.sim_miner.UserMiner: the real miner's
rows and ``--model auto`` tournament, default ``--max-rows``): 50 rounds in full mode; quick mode 20 stationary
and 31 drifting rounds (>= 30 forward gaps).

Full mode: the default shards (13,121 rows, --detect 0.01); the crowned share's cast is 4 small-model honest miners
on 6,000 rows each. Quick mode (CI): the demo's shards (--detect 0.02); the crowned share still 50 rounds, but 2
small-model miners (MLP, extra trees) on 1,500 rows and 3 gap samples instead of 12. What it does not do: judge anything itself — crowning is
the Engine's, exactly as on the network.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.simulator import World, WorldConfig, run_scenario
from consensus.protocol.genesis import GenesisParams
from ml.generator import drift, generate, world_from_seed
from ml.score import score
from ml.training import train_candidate
from node.tools.demo import DEMO_DETECT
from node.tools.genesis_setup import DEFAULT_DRIFT_MILLI
from node.tools.mining import DEFAULT_MAX_ROWS, WINDOW_ROWS
from node.tools.sizing import DEFAULT_DETECT, rows_for

SEED = b"popchain-drift-simulation-seed-1"
ROUNDS = 50


def _rows(detect: float) -> int:
    p = GenesisParams()
    return rows_for(detect, p.max_entries, p.alpha) or 0


def crowned_share(drift_milli: int, *, quick: bool, rounds: int = ROUNDS, seed: bytes = SEED,
                  n_test: int = 500) -> tuple[int, int]:
    """(crowned, rounds) of the honest cast on a fresh world of ``drift_milli``."""
    rep = _honest_run(drift_milli, quick=quick, rounds=rounds, seed=seed, n_test=n_test)[0]
    return rep.crowned, len(rep.rounds)


QUICK_ROUNDS = 6             # quick mode (CI-sized, inside the bench test's time): the users' stationary run is 6
QUICK_DRIFT_ROUNDS = 6       # rounds of the demo's shards and the drifting ones 6 (full: 50 each; the full
                             # forward_gap_pp is a median over >= 30 rounds, the quick one over 5)
SLOW_DRIFT_MILLI = 100       # forward_gap_pp also at this slower drift: where one shard of staleness drowns in noise


def _honest_run(drift_milli: int, *, quick: bool, rounds: int = ROUNDS, seed: bytes = SEED,
                n_test: int = 500, forward: bool = False, users: bool = False) -> tuple[Any, World]:
    """The honest cast on a fresh world: with ``users``, 3 miners as users run them (benchmarks.sim_miner:
    ``--model auto``, every revealed row up to the default ``--max-rows``), else the cached small-model cast
    (4 miners, 2 in quick mode, fitting on the newest 6,000 / 1,500 rows)."""
    config = WorldConfig(rounds=rounds, shard_size=_rows(DEMO_DETECT if quick else DEFAULT_DETECT),
                         n_test=n_test, max_train_rows=1_500 if quick else 6_000, drift_milli=drift_milli)
    world = World(seed, config)
    cast = "users" if users else "honest-pair" if quick else "honest"
    return run_scenario(world, cast, forward=forward), world


def forward_gap(rep: Any) -> dict[str, float]:
    """Issue 21 item 3, the forward holdout on a drifting task: per round, a plain fit (small MLP) on the newest
    revealed shard alone minus the champion the round started with, both scored on the round's shard (the next
    shard for both), in pp; the median over every round that has a newest shard. Baseline (same run): the same
    plain fit minus the genesis champion (a chain that never crowned)."""
    gaps = [(r.fresh_acc - r.fwd_acc) * 100 for r in rep.rounds if r.fresh_acc is not None]
    base = [(r.fresh_acc - r.genesis_acc) * 100 for r in rep.rounds if r.fresh_acc is not None]
    return {"median_pp": round(float(np.median(gaps)), 2) if gaps else 0.0,
            "baseline_pp": round(float(np.median(base)), 2) if base else 0.0,
            "rounds": len(gaps), "champion_ahead": sum(g <= 0 for g in gaps)}


def bayes_gap(rep: Any, world: World) -> dict[str, float]:
    """Issue 21: the stationary task's Bayes-optimal accuracy (ml.bayes, the generator's own concept) minus the
    champion's accuracy on the run's fresh held-out rows, in pp — at genesis, after rounds 10 and 25, at the end."""
    from ml.bayes import bayes_accuracy
    limit = bayes_accuracy(world.task_world)
    at = {r.round: r.acc_after for r in rep.rounds}
    last = max(at) if at else 0
    out = {"bayes": round(limit, 4), "genesis_pp": round((limit - rep.initial_test_acc) * 100, 2)}
    for r in (10, 25):
        if r in at:
            out[f"round{r}_pp"] = round((limit - at[r]) * 100, 2)
    out["final_pp"] = round((limit - rep.final_test_acc) * 100, 2)
    out["rounds"] = last
    return out


@dataclass(frozen=True)
class Gap:
    round: int
    accuracy: float       # the fresh model (fitted on shard r-1) on shard r
    gaps: tuple[float, ...]   # its lead over models fitted on shards r-2, r-3, r-4 (one, two, three rounds staler)


def gap_table(drift_milli: int, *, horizon: int = 300, samples: int = 12, rows: int = 6_000,
              test_rows: int = 13_000, family: str = "mlp", seed: bytes = SEED) -> list[Gap]:
    """The drift rate's measurement: worlds drifted exactly as ml.shards.package_generated does (anchor = the
    first world), a small model fitted on ``rows`` rows of each shard, scored on the next shards."""
    start = world_from_seed(seed)
    worlds = [start]
    for r in range(1, horizon + 1):
        prev = worlds[-1]
        worlds.append(drift(prev, hashlib.sha256(seed + b"/drift/%d" % r).digest(), drift_milli, anchor=start)
                      if drift_milli else prev)

    def shard(r: int, n: int):
        return generate(worlds[r], hashlib.sha256(seed + b"/rows/%d" % r).digest(), n)
    models: dict[int, Any] = {}

    def fitted_before(r: int):   # the model a miner brings to round r: fitted on the latest revealed shard r-1
        if r not in models:
            models[r] = train_candidate(family, shard(r - 1, rows), (), seed=r, size="small")
        return models[r]
    out = []
    for r in np.linspace(5, horizon, samples).astype(int):
        test = shard(int(r), test_rows)
        acc = [score(fitted_before(int(r) - k), test.X, test.y).accuracy for k in range(4)]
        out.append(Gap(int(r), acc[0], tuple(acc[0] - a for a in acc[1:])))
    return out


def _fig(name: str, value: Any, unit: str, goal: str, baseline: Any) -> dict[str, Any]:
    ratio = round(value / baseline, 3) if isinstance(baseline, float) and baseline else None
    return {"name": name, "value": value, "unit": unit, "baseline": baseline, "ratio": ratio, "goal": goal}


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = QUICK_ROUNDS if quick else ROUNDS
    nd = QUICK_DRIFT_ROUNDS if quick else ROUNDS
    fwd = forward_gap(_honest_run(DEFAULT_DRIFT_MILLI, quick=quick, rounds=nd, forward=True, users=True)[0])
    slow = forward_gap(_honest_run(SLOW_DRIFT_MILLI, quick=quick, rounds=4 if quick else nd, forward=True,
                                   users=True)[0])
    fwd.update({f"drift{SLOW_DRIFT_MILLI}_{k}": v for k, v in slow.items()})
    stationary, sworld = _honest_run(0, quick=quick, rounds=n, n_test=5_000 if quick else 20_000, users=True)
    gap = bayes_gap(stationary, sworld)
    # the crowned share keeps its old measurement (50 rounds of the small-model cast): information only
    crowned_run, _ = _honest_run(DEFAULT_DRIFT_MILLI, quick=quick)
    crowned = crowned_run.crowned
    base = _honest_run(0, quick=quick)[0].crowned
    rows = _rows(DEMO_DETECT if quick else DEFAULT_DETECT)
    samples = 3 if quick else 12
    drifting = gap_table(DEFAULT_DRIFT_MILLI, samples=samples)
    fixed = gap_table(0, samples=samples)
    share = sum(g.gaps[0] >= 0.01 for g in drifting) / len(drifting)
    share0 = sum(g.gaps[0] >= 0.01 for g in fixed) / len(fixed)
    users = (f"3 honest miners as users run them (--model auto, every revealed row up to --max-rows "
             f"{DEFAULT_MAX_ROWS:,}), {rows:,}-row shards")
    return [
        _fig("demo_crowned_share_50", round(crowned / ROUNDS, 3), "share of rounds",
             f"info; {crowned}/{ROUNDS} rounds crowned at drift {DEFAULT_DRIFT_MILLI}/1000 on {rows:,}-row shards, "
             f"{2 if quick else 4} small-model honest miners, strict rule (baseline: the same rounds on the "
             f"stationary task, {base}/{ROUNDS})", round(base / ROUNDS, 3)),
        {**_fig("champion_bayes_gap_pp", gap["final_pp"], "pp",
                f"<= 2 and shrinking; Bayes-optimal {gap['bayes']:.3f} minus the champion on "
                f"{5_000 if quick else 20_000:,} fresh rows of the stationary default task after {gap['rounds']} "
                f"rounds, {users} (baseline: the genesis champion's gap, same run)", gap["genesis_pp"]),
         "fields": gap},
        {**_fig("forward_gap_pp", fwd["median_pp"], "pp",
                f"<= 0.5; drift {DEFAULT_DRIFT_MILLI}/1000, {users} (a drifting task: the newest "
                f"{WINDOW_ROWS:,}): a plain fit on the newest revealed shard minus the champion, both on the next "
                f"shard, median over {fwd['rounds']} rounds (champion ahead in {fwd['champion_ahead']}); "
                f"baseline: the same fit minus the genesis champion; at drift {SLOW_DRIFT_MILLI}/1000: "
                f"{slow['median_pp']} pp (fields)", fwd["baseline_pp"]),
         "fields": fwd},
        _fig("drift_gap_1pp_share", round(share, 3), "share of sampled rounds",
             f"info; {samples} rounds in 1..300 where a model one shard fresher leads by >= 1 pp on the next shard "
             f"(median lead {np.median([g.gaps[0] for g in drifting]):+.2%}; two shards fresher: "
             f"{sum(g.gaps[1] >= 0.01 for g in drifting)}/{samples}); baseline drift 0", round(share0, 3)),
    ]


FIGURES = ("demo_crowned_share_50", "champion_bayes_gap_pp", "forward_gap_pp", "drift_gap_1pp_share")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sim_drift", description=__doc__.split("\n")[0])
    ap.add_argument("--gap", type=int, metavar="DRIFT_MILLI", action="append",
                    help="print the staleness-gap table for this drift rate (repeatable) instead of the figures")
    ap.add_argument("--horizon", type=int, default=300)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.gap:
        for milli in args.gap:
            for g in gap_table(milli, horizon=args.horizon):
                print(f"drift {milli:4d}  round {g.round:4d}  acc {g.accuracy:.4f}  lead over 1/2/3 rounds staler "
                      + " ".join(f"{x:+.4f}" for x in g.gaps), flush=True)
        return 0
    from benchmarks.harness import format_table
    print(format_table(run(quick=args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
