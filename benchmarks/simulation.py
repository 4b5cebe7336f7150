"""Round-simulator figures for the harness (issue 9): the crowning rule's false-crown rate and power, and what
each attacker achieves end to end through real Engine + Keyholder rounds.

- sim_false_crown_round   share of rounds crowned when all 16 entrants are tied with the champion (≤ 0.05):
                          Monte Carlo on consensus.protocol.stats.crowns (sign test + margin); baseline = the
                          exact binomial value
- sim_power_1pp           crowning probability of a +1 pp challenger at 10 % disagreement on the default shard
                          size, 16 listed entries, with the margin (≥ 0.8): Monte Carlo; baseline = exact binomial
- sim_copycat_share       share of rounds won by copy-noise / copy-flip / sybil-copy (≤ 0.01)
- sim_squatter_cost       grains burnt from the squatter per round it voids, / block reward (≥ 1): E keys richer
                          than any honest miner hold every slot and never open; the worse of stopping before the
                          last round and squatting to the end of the genesis task, after which the chain lives on
                          (an extension of the task, issue 11) and its next crowned block burns the forfeits
- sim_champion_regressions share of crownings after which the champion's held-out test accuracy fell by more
                          than one standard error (≤ 0.05)
- sim_champion_test_acc   final champion test accuracy (mixed scenario, mean over seeds) vs the best scikit-learn
                          model trained on all public data (training split + every revealed shard), same run
- sim_crowned_share       share of mixed-scenario rounds crowned (info: liveness)
- sim_wins_<attacker>     per attacker kind, share of its scenario's rounds it won (info; finetune is legitimate)
- sim_late_timestamp_stalls rounds in which a miner could not build a valid block after a late timestamp (0)
Full mode runs several seeds; quick mode one seed and few rounds (CI).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmarks.sim_rule import crown_power, false_crown_round
from benchmarks.simulator import SCENARIOS, RoundReport, ScenarioReport, World, WorldConfig, run_scenario
from consensus.protocol.genesis import GenesisParams
from ml.score import score
from ml.training import train_candidate
from node.tools.sizing import DEFAULT_DETECT, rows_for

# the default task's shard size: what `popchain genesis create` picks for its default --detect 0.01
DEFAULT_SHARD_ROWS: int = rows_for(DEFAULT_DETECT, GenesisParams().max_entries, GenesisParams().alpha) or 0
MARGIN_BP = GenesisParams().min_gain_bp
SQUATTER_END_EXTEND = 2   # shards the squatter-end scenario's extension adds after the genesis task
KINDS = ("copy-noise", "copy-flip", "sybil-copy", "squatter", "finetune", "late-timestamp")
SEEDS = (b"popchain-simulation-seed-1", b"popchain-simulation-seed-2", b"popchain-simulation-seed-3")


def _fig(name: str, value: Any, unit: str, goal: str, baseline: Any = None) -> dict[str, Any]:
    ratio = round(value / baseline, 3) if isinstance(baseline, float) and baseline else None
    return {"name": name, "value": value, "unit": unit, "baseline": baseline, "ratio": ratio, "goal": goal}


def best_sklearn(world: World, revealed_rounds: int, quick: bool) -> tuple[float, str]:
    """The best of our families trained on everything public after the run (training split + revealed shards)."""
    from ml.shards import open_shard

    revealed = [open_shard(world.genesis.task, r, world.secret_key(r)) for r in range(1, revealed_rounds + 1)]
    best, name = 0.0, ""
    for fam in ("linear", "mlp", "extra"):
        model = train_candidate(fam, world.public, revealed, seed=7, caps=world.genesis.model_caps,
                                size="small" if quick else "default", max_rows=None if not quick else 20_000)
        acc = score(model, world.test.X, world.test.y).accuracy
        if acc > best:
            best, name = acc, fam
    return best, name


def run_reports(quick: bool) -> tuple[list[World], list[ScenarioReport]]:
    seeds = SEEDS[:1] if quick else SEEDS
    config = WorldConfig(rounds=3 if quick else 8, shard_size=DEFAULT_SHARD_ROWS, n_test=2_000 if quick else 4_000,
                         max_train_rows=4_000 if quick else 8_000)
    worlds, reports = [], []
    for seed in seeds:
        world = World(seed, config)
        worlds.append(world)
        reports += [run_scenario(world, s, extend=scenario_extend(s)) for s in SCENARIOS]
    return worlds, reports


def scenario_extend(scenario: str) -> int:
    """Extension shards a scenario plays after the genesis task (only squatter-end: the chain lives on)."""
    return SQUATTER_END_EXTEND if scenario == "squatter-end" else 0


def regression(r: RoundReport, n_test: int) -> bool:
    """The crowning lowered held-out accuracy by more than one standard error of the accuracy before."""
    se = math.sqrt(r.acc_before * (1 - r.acc_before) / n_test)
    return r.acc_after < r.acc_before - se


def run(quick: bool = False) -> list[dict[str, Any]]:
    trials = 4_000 if quick else 40_000
    fc = false_crown_round(DEFAULT_SHARD_ROWS, trials=trials)
    pw = crown_power(DEFAULT_SHARD_ROWS, trials=trials)
    worlds, reports = run_reports(quick)
    by = {s: [r for r in reports if r.scenario == s] for s in SCENARIOS}
    n_seeds = len(worlds)
    figs = [
        _fig("sim_false_crown_round", round(fc.monte_carlo, 4), "share of rounds",
             f"<= 0.05; 16 tied entrants, {DEFAULT_SHARD_ROWS} rows, 10 % disagreement, margin {MARGIN_BP} bp; "
             f"{fc.summary} (baseline = exact binomial)", round(fc.exact, 4)),
        _fig("sim_power_1pp", round(pw.monte_carlo, 4), "crowning probability",
             f">= 0.8; +1 pp at 10 % disagreement, {DEFAULT_SHARD_ROWS} rows, m = 16, margin {MARGIN_BP} bp; "
             f"{pw.summary} (baseline = exact binomial)", round(pw.exact, 4)),
    ]
    # copy attackers: every round of every scenario that casts one
    copy_rounds = sum(len(r.rounds) for r in reports if r.copy_miners)
    copy_wins = sum(sum(1 for rr in r.rounds if rr.winner in r.copy_miners) for r in reports)
    figs.append(_fig("sim_copycat_share", round(copy_wins / copy_rounds, 4) if copy_rounds else 0.0,
                     "share of rounds", f"<= 0.01; {copy_wins}/{copy_rounds} rounds won by copy-noise, copy-flip "
                     f"or sybil-copy ({n_seeds} seeds, mixed + sybil scenarios)"))
    # squatter: grains lost per round it voided (holding listed slots, opening none), for each strategy: stopping
    # before the last round (an honest block is then crowned and settles the forfeits of the rounds since its
    # parent) and squatting to the end of the genesis task (the chain goes on with an extension of the task: its
    # first crowned block settles them). The figure is the worse of the two.
    costs, texts = [], []
    reward = reports[0].block_reward
    for scenario in ("squatter", "squatter-end"):
        voided = sum(1 for rep in by[scenario] for rr in rep.rounds
                     if rr.void and dict(rr.listed_by_kind).get("squatter"))
        lost = sum(rep.balance_lost.get("squatter", 0) for rep in by[scenario])
        costs.append(lost / voided / reward if voided and reward else 0.0)
        extra = (f", then {SQUATTER_END_EXTEND} extension rounds" if scenario == "squatter-end" else "")
        texts.append(f"{scenario}: lost {lost} grains over {voided} voided rounds{extra}")
    figs.append(_fig("sim_squatter_cost", round(min(costs), 3), "block rewards lost per voided round",
                     ">= 1; worst of " + "; ".join(texts)))
    crownings = [(rr, r.n_test) for r in reports for rr in r.rounds if not rr.void]
    regressions = sum(1 for rr, n_test in crownings if regression(rr, n_test))
    figs.append(_fig("sim_champion_regressions", round(regressions / len(crownings), 4) if crownings else 0.0,
                     "share of crownings", f"<= 0.05; {regressions}/{len(crownings)} crownings lowered test "
                     "accuracy by more than one standard error"))
    finals = [r.final_test_acc for r in by["mixed"]]
    initial = float(np.mean([r.initial_test_acc for r in by["mixed"]]))
    best, fam = best_sklearn(worlds[0], len(by["mixed"][0].rounds), quick)
    final = round(float(np.mean(finals)), 4)
    figs.append(_fig("sim_champion_test_acc", final, "accuracy",
                     f">= initial {initial:.3f}; vs best sklearn on all public data ({fam}, seed 1)",
                     round(best, 4)))
    mixed_rounds = sum(len(r.rounds) for r in by["mixed"])
    crowned = sum(r.crowned for r in by["mixed"])
    figs.append(_fig("sim_crowned_share", round(crowned / mixed_rounds, 3) if mixed_rounds else 0.0,
                     "share of rounds", f"info (liveness): {crowned}/{mixed_rounds} mixed-scenario rounds crowned"))
    for kind in KINDS:
        rs = [r for r in reports if kind in r.kinds.values()]
        n = sum(len(r.rounds) for r in rs)
        w = sum(r.wins(kind=kind) for r in rs)
        goal = "info: legitimate re-fit" if kind == "finetune" else (
            "info: honest model, wins allowed" if kind == "late-timestamp" else "0 (counted above)"
            if kind != "squatter" else "0 (never opens)")
        figs.append(_fig("sim_wins_" + kind.replace("-", "_"), round(w / n, 3) if n else 0.0, "share of rounds",
                         f"{goal}; {w}/{n} rounds"))
    stalls = sum(1 for r in reports if "late-timestamp" in r.kinds.values() for rr in r.rounds if rr.unbuildable)
    figs.append(_fig("sim_late_timestamp_stalls", stalls, "rounds",
                     f"0; rounds in which some miner could not build or enter a block ({n_seeds} seeds)"))
    return figs


FIGURES = ("sim_false_crown_round", "sim_power_1pp", "sim_copycat_share", "sim_squatter_cost",
           "sim_champion_regressions", "sim_champion_test_acc", "sim_crowned_share") + tuple(
    "sim_wins_" + k.replace("-", "_") for k in KINDS) + ("sim_late_timestamp_stalls",)


if __name__ == "__main__":
    import sys

    from benchmarks.harness import format_table
    print(format_table(run(quick="--quick" in sys.argv)))
