"""`popchain genesis create` sizing (issue 9): power-sized shards, refusals of sizings that can never crown,
no genesis without allocations, a warning for public datasets. Real processes, one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.keyholder import load_keyholder_file
from consensus.protocol import stats
from consensus.protocol.genesis import load_genesis
from node.tools import sizing
from node.tools.genesis_setup import KEYHOLDER_FILE
from tests.test_cli_e2e import assert_one_line_error, popchain
from tests.test_ml_generator import _shard_worlds

ALLOC = "pop1akn5hzhv924nluzxhp48h7wuuuajkkxsglxtyj=1000000"


@pytest.mark.parametrize("argv,fragment", [
    (["--shard-size", "1"], "nothing could ever be crowned"),
    (["--shard-size", "8"], "at least 9 disagreements"),   # 2^-8 > 5 % / 16: even a clean sweep cannot crown
    (["--rounds", "0"], "at least one round"),
    (["--detect", "0"], "--detect 0"),
    (["--task", "iris"], "choose --detect or --shard-size"),  # 150 rows: no default shard detects +5 pp
    ([], "no --alloc"),
])
def test_refused_sizings_are_one_line_errors(tmp_path: Path, argv, fragment):
    alloc = ["--alloc", ALLOC] if argv else []
    proc = popchain("genesis", "create", "--out", "g", *alloc, *argv, cwd=tmp_path, check=False)
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "g" / "genesis.bin").exists()


def test_detect_sizes_a_generated_synthetic_task(tmp_path: Path):
    proc = popchain("genesis", "create", "--out", "g", "--alloc", ALLOC, "--detect", "0.05", "--rounds", "20",
                    "--json", cwd=tmp_path)
    out = json.loads(proc.stdout)
    assert out["generated"] and out["rounds"] == 20 and out["rounds_allowed"] is None
    assert out["detectable"] <= 0.05 and out["shard_size"] == sizing.rows_for(0.05, 16, p_disagree=0.10)
    genesis = load_genesis((tmp_path / "g" / "genesis.bin").read_bytes())
    assert genesis.task.shard_size == out["shard_size"] and genesis.n_rounds == 20
    assert out["genesis_bytes"] < 400_000            # 20 generated shards: the public rows dominate
    assert out["drift_milli"] == 0       # the default synthetic task is stationary (issue 21; drifted at 500 before)


def test_the_default_synthetic_task_is_stationary_and_drift_is_opt_in(tmp_path: Path):
    """Issue 21: the default synthetic task is one fixed concept (drifting at 500 was a treadmill: the champion
    was always one shard stale); --drift-milli 500 still drifts and says so."""
    fixed = popchain("genesis", "create", "--out", "f", "--alloc", ALLOC, "--detect", "0.2", "--rounds", "3",
                     "--json", cwd=tmp_path)
    assert json.loads(fixed.stdout)["drift_milli"] == 0
    genesis = load_genesis((tmp_path / "f" / "genesis.bin").read_bytes())
    secret, _ = load_keyholder_file((tmp_path / "f" / KEYHOLDER_FILE).read_bytes())
    worlds = _shard_worlds(genesis.task, secret, genesis.task, 3)
    assert all((a.centres == b.centres).all() for a, b in zip(worlds, worlds[1:]))   # one concept
    proc = popchain("genesis", "create", "--out", "g", "--alloc", ALLOC, "--detect", "0.2", "--rounds", "3",
                    "--drift-milli", "500", cwd=tmp_path)
    assert "drift          500/1000 units per shard" in proc.stdout
    genesis = load_genesis((tmp_path / "g" / "genesis.bin").read_bytes())
    secret, _ = load_keyholder_file((tmp_path / "g" / KEYHOLDER_FILE).read_bytes())
    worlds = _shard_worlds(genesis.task, secret, genesis.task, 3)
    assert all((a.centres != b.centres).any() for a, b in zip(worlds, worlds[1:]))   # every shard moved on
    assert_one_line_error(popchain("genesis", "create", "--out", "i", "--alloc", ALLOC, "--task", "iris",
                                   "--drift-milli", "5", cwd=tmp_path, check=False), "only the generated")


def test_public_dataset_warns_and_prints_what_it_can_detect(tmp_path: Path):
    proc = popchain("genesis", "create", "--out", "g", "--alloc", ALLOC, "--task", "iris", "--shard-size", "20",
                    cwd=tmp_path)
    assert "public scikit-learn dataset" in proc.stderr and "demos only" in proc.stderr
    assert "no improvement reaches 80 % power" in proc.stdout
    assert "3 rounds" in proc.stdout and "the data allows 6" in proc.stdout   # 150 - 18 test - 11 train rows


def test_sizing_search_agrees_with_consensus_stats():
    """The power search is stats' (sign test + margin), then grown (up to ×1.5) until 16 near-copies crown in at
    most 1 round in 1 000: at the default target that bound holds; coarse targets (small shards) stop at ×1.5."""
    bp = stats.DEFAULT_MIN_GAIN_BP
    for d, delta in ((0.10, 0.01), (0.10, 0.05), (0.05, 0.02)):
        ours = sizing.rows_for(delta, 16, p_disagree=d)
        ref = stats.rows_for_power(d, stats.p_better_for(delta, d), 16, min_gain_bp=bp)
        assert 0.99 * ref <= ours <= 1.52 * ref
        assert sizing.power(ours, d, delta, 16) >= 0.8
        assert sizing.copy_rate(ours, 16) <= sizing.COPY_RATE or ours >= 1.45 * ref
    assert sizing.copy_rate(sizing.rows_for(0.01, 16), 16) <= sizing.COPY_RATE


def test_default_target_needs_the_issue_row_counts():
    """+1 pp at 80 % power with Bonferroni over 16 entries and the 0.75 pp margin: ~13,100 rows at 10 %
    disagreement (the sign test alone needed 12,992: the copy bound adds ~1 %), ~9,900 at 5 % (6,528 without
    the margin: a +1 pp challenger that disagrees on only 5 % of rows must now also clear +0.75 pp)."""
    assert 12_800 <= sizing.rows_for(0.01, 16) <= 13_300
    assert 9_600 <= sizing.rows_for(0.01, 16, p_disagree=0.05) <= 10_200
    assert 6_400 <= sizing.rows_for(0.01, 16, p_disagree=0.05, min_gain_bp=0) <= 6_700


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 16), st.integers(1, 400))
def test_every_accepted_shard_size_can_crown_something(m, shard_size):
    """The refusal is exact: plan accepts a size iff a clean sweep of its rows passes the m-entry threshold."""
    try:
        sizing.plan(m=m, shard_size=shard_size, rounds=1, available_rows=None, default_rounds=1, max_shard=10**6)
        accepted = True
    except sizing.SizingError:
        accepted = False
    assert accepted == (stats.crown_threshold(shard_size, m) is not None)
