"""Round-simulator figures for the harness: crowned share, copycat shares, champion test accuracy.

The baseline of the champion's test accuracy is the best scikit-learn model trained on all public data
(measured in the same run by the simulator); the shares have no raw baseline. The consensus issue bounds the
copycat's wins at the floor (z = z_floor): < 5 % of those rounds (``sim_copycat_floor_share``); the share over
all rounds (``sim_copycat_share``) is reported alongside, without a bound of its own.
"""
from __future__ import annotations

from typing import Any

from benchmarks.simulator import run_simulation


def run(quick: bool = False) -> list[dict[str, Any]]:
    report = run_simulation(rounds=8 if quick else 40, shard_size=100 if quick else 200,
                            n_train=1000 if quick else 2000, n_test=1000 if quick else 2000)
    best = report.best_sklearn_test_acc
    return [
        {"name": "sim_crowned_share", "value": round(report.crowned_share, 3), "unit": "share of rounds",
         "baseline": None, "ratio": None, "goal": "target share set in genesis"},
        {"name": "sim_copycat_share", "value": round(report.copycat_win_share, 3), "unit": "share of rounds",
         "baseline": None, "ratio": None,
         "goal": f"info: {report.copycat_wins}/{len(report.rounds)} rounds (the issue bounds the floor share)"},
        {"name": "sim_copycat_floor_share", "value": round(report.copycat_floor_share, 3),
         "unit": "share of floor rounds", "baseline": None, "ratio": None,
         "goal": f"< 0.05 (issue; {report.copycat_floor_wins}/{report.floor_rounds} rounds at z_floor)"},
        {"name": "sim_champion_test_acc", "value": round(report.final_test_acc, 4), "unit": "accuracy",
         "baseline": round(best, 4), "ratio": round(report.final_test_acc / best, 3) if best else None,
         "goal": f">= initial {report.initial_test_acc:.3f}; vs best sklearn ({report.best_sklearn_family})"},
    ]


if __name__ == "__main__":
    import sys

    from benchmarks.harness import format_table
    print(format_table(run(quick="--quick" in sys.argv)))
