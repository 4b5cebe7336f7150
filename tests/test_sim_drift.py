"""The drifting default task (issue 11): retrained models keep a lead over a stale champion, a stationary task
gives none, and the harness lists the figures. Seeds fixed, small models: deterministic counts, not timings."""
from __future__ import annotations

import numpy as np

from benchmarks import harness, sim_drift
from benchmarks.simulator import World, WorldConfig, run_scenario
from node.tools.genesis_setup import DEFAULT_DRIFT_MILLI


def test_a_fresher_model_leads_a_stale_one_only_when_the_task_drifts():
    kw = dict(horizon=60, samples=3, rows=2_000, test_rows=4_000)
    drifting = sim_drift.gap_table(DEFAULT_DRIFT_MILLI, **kw)
    fixed = sim_drift.gap_table(0, **kw)
    lead = float(np.mean([g.gaps[1] for g in drifting]))     # over a champion two shards staler
    noise = float(np.mean([abs(g.gaps[1]) for g in fixed]))
    assert lead >= 0.01 and lead > 3 * noise, (lead, noise)
    assert all(g.accuracy > 0.6 for g in drifting)            # the moving concept stays learnable


def test_the_drifting_task_keeps_crowning_where_the_stationary_one_stops():
    config = dict(rounds=8, shard_size=3_264, n_test=200, max_train_rows=2_000)
    drift = run_scenario(World(b"popchain-drift-test-seed-01", WorldConfig(**config, drift_milli=DEFAULT_DRIFT_MILLI)),
                         "honest-pair")
    fixed = run_scenario(World(b"popchain-drift-test-seed-01", WorldConfig(**config)), "honest-pair")
    late = lambda rep: sum(not r.void for r in rep.rounds[3:])   # noqa: E731 — after the first champions
    assert late(drift) >= 3 and late(drift) > late(fixed), ([r.void for r in drift.rounds],
                                                             [r.void for r in fixed.rounds])


def test_harness_lists_the_drift_figures():
    names = dict(harness.MODULES)["benchmarks.sim_drift"]
    assert names == sim_drift.FIGURES and "demo_crowned_share_50" in harness.expected_figures()
