"""Issue 21 item 3: the holdout a generated task's champion is judged on (node.tools.forward, `task show`).

A drifting task's champion is judged on its FORWARD holdout — the first shard revealed after the round that
crowned it (rows it never saw, drawn after it, from the concept it faces now) — not on the newest revealed
shard (possibly the one it was crowned on) nor on the owner's holdout.csv (the task's start). A stationary task
keeps its judge (the newest revealed shard). `genesis create --drift-milli` says that holdout.csv judges nothing.

Old code: `task show` scored every generated task's champion on the newest revealed shard, and genesis create
called holdout.csv "untouched test split to judge the champion" on a drifting task too.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ml.generator import world_from_seed
from ml.score import score
from ml.shards import baseline_model, open_shard, package_generated
from node.tools.forward import Revealed, judge
from tests.test_cli_e2e import popchain
from tests.test_cli_genesis import ALLOC

ROUNDS = 4


def _rng(label: bytes):
    counter = iter(range(10**6))
    return lambda n: hashlib.shake_256(label + next(counter).to_bytes(4, "big")).digest(n)


@pytest.fixture(scope="module")
def tasks():
    world = world_from_seed(b"forward-holdout-world-seed-01234", n_features=8, n_informative=4, n_classes=2)
    out = {}
    for name, drift in (("drifting", 500), ("stationary", 0)):
        public, secret = package_generated(world, ROUNDS, 300, n_train=400, rng=_rng(name.encode()),
                                           drift_milli=drift)
        # shard i revealed in round 2i (a void round in between, as a multi-task chain interleaves)
        out[name] = (public, [Revealed(2 * i, i, secret.key(i)) for i in range(1, ROUNDS + 1)])
    return out


def test_a_drifting_task_is_judged_on_the_shard_after_its_champions_crowning(tasks):
    public, revealed = tasks["drifting"]
    model = baseline_model(public)
    j = judge(public, revealed, 4, model)        # crowned in round 4, on shard 2: judged on shard 3 (round 6)
    assert j is not None and j["drifting"] and j["holdout"] == "forward"
    assert (j["shard_index"], j["round"], j["crowned_round"]) == (3, 6, 4)
    shard = open_shard(public, 3, revealed[2].shard_key)
    assert j["champion_accuracy"] == round(score(model, shard.X, shard.y).accuracy, 4)
    assert j["gap_pp"] == round((j["bayes_accuracy"] - j["champion_accuracy"]) * 100, 2)
    # the initial champion (round 0) is judged on the task's first shard
    first = judge(public, revealed, 0, model)
    assert first is not None and first["shard_index"] == 1
    # a champion crowned on the newest shard has no forward holdout yet: it says so, it scores nothing
    assert judge(public, revealed, 8, model) == {"holdout": "forward", "drifting": True, "crowned_round": 8,
                                                 "pending": True}


def test_a_stationary_task_keeps_the_newest_revealed_shard(tasks):
    public, revealed = tasks["stationary"]
    j = judge(public, revealed, 4, baseline_model(public))
    assert j is not None and not j["drifting"] and j["holdout"] == "newest-shard" and j["shard_index"] == ROUNDS
    assert judge(public, [], 0, baseline_model(public)) is None


def test_genesis_create_of_a_drifting_task_says_holdout_csv_judges_nothing(tmp_path: Path):
    proc = popchain("genesis", "create", "--out", "g", "--alloc", ALLOC, "--detect", "0.2", "--rounds", "3",
                    "--drift-milli", "500", cwd=tmp_path)
    assert "FORWARD holdout" in proc.stdout and "task's START" in proc.stdout, proc.stdout
