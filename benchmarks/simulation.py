"""Round-simulator figures for the harness: crowned share, copycat share, champion test accuracy.

The baseline of the champion's test accuracy is the best scikit-learn model trained on all public data
(measured in the same run by the simulator); the shares have no raw baseline, their goals come from the
consensus issue (copycat < 5% of rounds).
"""
from __future__ import annotations

from typing import Any

from consensus.simulator import run_simulation


def run(quick: bool = False) -> list[dict[str, Any]]:
    report = run_simulation(rounds=8 if quick else 40, shard_size=100 if quick else 200,
                            n_train=1000 if quick else 2000, n_test=1000 if quick else 2000)
    best = report.best_sklearn_test_acc
    return [
        {"name": "sim_crowned_share", "value": round(report.crowned_share, 3), "unit": "share of rounds",
         "baseline": None, "ratio": None, "goal": "target share set in genesis"},
        {"name": "sim_copycat_share", "value": round(report.copycat_win_share, 3), "unit": "share of rounds",
         "baseline": None, "ratio": None, "goal": "< 0.05"},
        {"name": "sim_champion_test_acc", "value": round(report.final_test_acc, 4), "unit": "accuracy",
         "baseline": round(best, 4), "ratio": round(report.final_test_acc / best, 3) if best else None,
         "goal": f">= initial {report.initial_test_acc:.3f}; vs best sklearn ({report.best_sklearn_family})"},
    ]


if __name__ == "__main__":
    import sys

    from benchmarks.harness import format_table
    print(format_table(run(quick="--quick" in sys.argv)))
