"""The round simulator's attackers through real Engine + Keyholder rounds (CI-sized, seeds fixed: the counts
below are deterministic, not timed), and the rule figures' Monte Carlo against the exact binomial.

Each attacker of issue 9 plays a few rounds on the default task's shard size with small models; no copy may win,
the squatter must pay at least one block reward per round it voids (also when it squats to the end of the
genesis task: the chain lives on with an extension, whose first crowned block burns them), and a late timestamp
must not stop anyone from building the next block. ~25 s of CPU."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from benchmarks.sim_attackers import copy_flip, copy_noise
from benchmarks.sim_rule import crown_power, exact_tail, false_crown_round
from benchmarks.simulation import DEFAULT_SHARD_ROWS, FIGURES, regression, scenario_extend
from benchmarks.simulator import SCENARIOS, World, WorldConfig, run_scenario
from consensus.protocol.stats import crown_threshold
from ml.model import MLPModel, TreesModel, decode_model, encode_model

CONFIG = WorldConfig(rounds=3, shard_size=DEFAULT_SHARD_ROWS, n_test=2_000, max_train_rows=4_000)


@pytest.fixture(scope="module")
def world() -> World:
    return World(b"popchain-simulation-seed-1", CONFIG)


@pytest.fixture(scope="module")
def reports(world):
    return {s: run_scenario(world, s, extend=scenario_extend(s)) for s in SCENARIOS}


def test_copy_attackers_never_win(reports):
    for scenario in ("mixed", "sybil"):
        rep = reports[scenario]
        assert rep.copy_miners
        for r in rep.rounds:
            assert r.winner not in rep.copy_miners, (scenario, r)
            # they did play: listed and opened, and judged by the engine (not refused before the beacon)
            kinds = {t.kind for t in r.tries}
            assert kinds & {"copy-noise", "copy-flip", "sybil-copy"}, (scenario, r)


def test_sybil_lists_its_keys_and_opens_only_one(reports):
    for r in reports["sybil"].rounds:
        listed = dict(r.listed_by_kind)
        assert listed.get("sybil-copy", 0) >= 8          # most of its E - 1 keys got a slot
        assert sum(t.kind == "sybil-copy" for t in r.tries) == 1


def test_squatter_pays_a_block_reward_per_round_it_voids(reports):
    rep = reports["squatter"]
    last_crowned = max((r.round for r in rep.rounds if not r.void), default=0)
    assert last_crowned == len(rep.rounds)          # once it stops, an honest block is crowned and settles
    # a crowned block of round r settles the bonds forfeited in the rounds before it
    voided = [r for r in rep.rounds if r.void and dict(r.listed_by_kind).get("squatter") and r.round < last_crowned]
    assert voided, "the squatter voided nothing: the scenario tests nothing"
    assert all(r.winner_kind != "squatter" for r in rep.rounds)
    assert rep.balance_lost["squatter"] >= len(voided) * rep.block_reward


def test_squatter_to_the_end_pays_for_the_rounds_it_voids(reports):
    # was a strict xfail (issue 9): forfeits are charged by the next crowned block only, and after the last shard
    # of the task there was none. The chain now lives on (an extension of the task): its first crowned block
    # burns every bond the squatter forfeited
    rep = reports["squatter-end"]
    voided = [r for r in rep.rounds if r.void and dict(r.listed_by_kind).get("squatter")]
    assert len(voided) == CONFIG.rounds and not any(r.extension for r in voided)
    assert rep.extension_rounds == scenario_extend("squatter-end")
    assert [r.winner_kind for r in rep.rounds if r.extension][0] == "honest"   # the reviving round crowns
    assert rep.balance_lost["squatter"] >= len(voided) * rep.block_reward


def test_late_timestamp_cannot_halt_the_chain(reports):
    rep = reports["late"]
    assert rep.rounds[0].winner_kind == "late-timestamp"   # it won, so the next rounds build on its stamp
    for r in rep.rounds:
        assert not r.unbuildable, r
    assert rep.crowned >= 2


def test_honest_and_finetune_miners_improve_the_champion(reports):
    rep = reports["mixed"]
    assert rep.final_test_acc > rep.initial_test_acc + 0.2
    assert rep.crowned >= 2
    assert all(r.winner_kind in ("honest", "finetune", "late-timestamp") for r in rep.rounds if r.winner)
    crownings = [r for rep in reports.values() for r in rep.rounds if not r.void]
    assert not [r for r in crownings if regression(r, rep.n_test)]


def test_simulation_is_deterministic(world):
    small = World(b"popchain-simulation-seed-1", WorldConfig(rounds=2, shard_size=2_000, n_test=500,
                                                             max_train_rows=1_000))
    a, b = run_scenario(small, "sybil"), run_scenario(small, "sybil")
    key = [(r.winner, r.b, r.c, r.tries) for r in a.rounds]
    assert key == [(r.winner, r.b, r.c, r.tries) for r in b.rounds]


def test_perturbations_touch_what_they_claim(world):
    champion = world.train("mlp", 1, ())
    assert isinstance(champion, MLPModel)
    noisy = copy_noise(champion, np.random.default_rng(0), 0.10)
    assert all((W1 != W2).any() and (b1 != b2).any()
               for (W1, b1), (W2, b2) in zip(champion.layers, noisy.layers))
    flipped = copy_flip(champion, np.random.default_rng(0))
    assert int((flipped.layers[-1][0] != champion.layers[-1][0]).sum()) == 5
    assert all((W1 == W2).all() for (W1, _), (W2, _) in zip(champion.layers[:-1], flipped.layers[:-1]))
    trees = world.train("extra", 1, ())
    assert isinstance(trees, TreesModel)
    shifted = copy_flip(trees, np.random.default_rng(0))
    assert set((shifted.threshold.astype(int) - trees.threshold.astype(int)).tolist()) <= {-1, 0, 1}
    assert int((shifted.threshold != trees.threshold).sum()) == 5
    for m in (noisy, flipped, shifted):  # still valid models under the genesis caps
        decode_model(encode_model(m), world.genesis.task.spec, world.genesis.model_caps)


def test_rule_figures_match_the_exact_binomial():
    fc = false_crown_round(DEFAULT_SHARD_ROWS, trials=2_000)
    assert fc.exact <= 0.05
    assert abs(fc.monte_carlo - fc.exact) <= 4 * fc.stderr + 1e-9
    pw = crown_power(DEFAULT_SHARD_ROWS, trials=2_000)
    assert abs(pw.monte_carlo - pw.exact) <= 4 * pw.stderr
    # the threshold the Monte Carlo asks about is the exact Bonferroni-corrected sign-test threshold
    alpha = Fraction(1, 20)
    assert crown_threshold(8, 16) is None                       # 16 * 2^-8 > alpha: nothing can crown
    for n in (9, 40, 401, 1000):
        t = crown_threshold(n, 16)
        assert t is not None and exact_tail(n, t) * 16 <= alpha < exact_tail(n, t - 1) * 16


def test_harness_lists_every_simulation_figure():
    from benchmarks.harness import MODULES
    assert dict(MODULES)["benchmarks.simulation"] == FIGURES
