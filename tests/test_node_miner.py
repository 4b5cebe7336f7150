"""The network miner's own decisions (no node needed): the bounded rows it keeps (a reservoir on stationary tasks,
a window on drifting ones, every shard opened once, check rows never trained on), the auto tournament with
boosted trees, bring-your-own trainers and model files, and entering only candidates its check expects to pass."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from ml.errors import ShardError
from ml.generator import world_from_seed
from ml.model import encode_model
from ml.predictor import PopPredictor
from ml.shards import PublicTask, SecretTask, package_generated, package_task
from ml.task import Dataset, TaskSpec, synthetic
from node.tools import miner_data
from node.tools.miner_data import TaskRows
from node.tools.miner_models import (
    Families,
    ModelFile,
    SourceError,
    UserTrainer,
    check_against,
    expects_to_pass,
)

SPEC = TaskSpec("t", 3, 0, ("a", "b"), max_abs=10_000)


def _rows_task(n_rounds: int, shard: int, n_train: int = 400) -> tuple[PublicTask, SecretTask]:
    rng = np.random.default_rng(0)
    n = n_rounds * shard + n_train + 10
    X = rng.integers(0, 10_000, size=(n, 3)).astype(np.int64)
    X[:, 0] = np.arange(n)                        # a row id: which rows a miner kept is visible
    y = (X[:, 1] > 5_000).astype(np.int64)
    return package_task(Dataset(SPEC, X, y), n_rounds, shard, n_train=n_train, seed=b"s" * 32)


def _keys(secret: SecretTask, upto: int) -> list[tuple[int, bytes]]:
    return [(i, secret.key(i)) for i in range(1, upto + 1)]


def test_stationary_rows_are_a_bounded_uniform_sample_and_never_the_check_rows():
    public, secret = _rows_task(60, 100)
    rows = TaskRows(public, max_rows=1_000, seed=1)
    assert rows.update(public, _keys(secret, 3)) and not rows.update(public, _keys(secret, 3))   # opened once
    data = rows.training_set()
    assert data.stationary and data.check is not None and len(data.check) == 50
    assert not set(data.X[:, 0].tolist()) & set(data.check.X[:, 0].tolist())   # never fit on the check rows
    assert len(data.y) == len(public.training) - 80 + 3 * 100 - 50             # public - its check slice + ...
    rows.update(public, _keys(secret, 60))
    data = rows.training_set()
    assert len(data.y) == 1_000 and rows.rows_kept() == 1_050                   # capped, flat from here on
    shard_ids = set(data.X[:, 0].tolist()) - set(public.train_X[:, 0].tolist())
    assert len(shard_ids) > 700                   # early and late shards alike (a uniform sample)
    first, last = public.train_X[:, 0].max(), data.X[:, 0].max()
    assert min(shard_ids) < first + 1_500 and max(shard_ids) > last - 1_500
    assert data.X.dtype == np.int32


def test_a_drifting_generated_task_keeps_a_window_of_the_newest_rows():
    world = world_from_seed(b"w" * 32, n_features=12, n_informative=6, n_classes=3)
    rng = np.random.default_rng(3)
    public, secret = package_generated(world, 6, 500, n_train=900, rng=lambda n: rng.bytes(n), drift_milli=400)
    rows = TaskRows(public, max_rows=50_000, window_rows=1_200)
    rows.update(public, _keys(secret, 1))
    assert rows.stationary                         # one world seen: nothing says it moves yet
    rows.update(public, _keys(secret, 6))
    data = rows.training_set()
    assert not data.stationary and 1_200 <= len(data.y) < 1_200 + 500 and len(data.check) == 250
    fixed, fsecret = package_generated(world, 3, 400, n_train=900, rng=lambda n: rng.bytes(n))
    still = TaskRows(fixed)
    still.update(fixed, _keys(fsecret, 3))
    assert still.stationary                        # drift 0: every shard shares the start world


def test_a_wrong_key_is_refused_and_nothing_is_kept():
    public, secret = _rows_task(3, 100)
    rows = TaskRows(public)
    with pytest.raises(ShardError):
        rows.update(public, [(1, secret.key(2))])
    assert rows.revealed == 0


def test_the_auto_tournament_includes_boosted_trees_and_refits_on_every_row():
    ds = synthetic(b"t" * 32, 3_000, n_features=12, n_informative=6, n_classes=3)
    public, secret = package_task(ds, 2, 800, n_train=1_300, seed=b"a" * 32)
    rows = TaskRows(public)
    rows.update(public, _keys(secret, 1))
    data = rows.training_set()
    source = Families("auto")
    cand = source.build(data, public.spec, __import__("ml.model").model.DEFAULT_CAPS, seed=1)
    assert {f for f, _ in cand.tried} == {"gbdt", "forest", "extra", "linear", "mlp"}
    assert cand.family == cand.tried[0][0] and cand.check_accuracy == cand.tried[0][1]
    assert cand.model != cand.checked              # the entry was refitted with the check rows
    again = source.build(data, public.spec, __import__("ml.model").model.DEFAULT_CAPS, seed=1)
    assert len(again.tried) == 1 and again.family == cand.family   # between tournaments: the winner only


def test_expects_to_pass_uses_the_exact_test_on_the_rounds_shard():
    assert expects_to_pass(30, 31, 1_000, 13_000, 1) == (False, 0.0)         # worse or tied: never
    ok, odds = expects_to_pass(60, 20, 1_000, 13_000, 16)                     # +4 pp at 8 % disagreement
    assert ok and odds > 0.99
    ok, odds = expects_to_pass(52, 48, 1_000, 13_000, 16)                     # +0.4 pp: not certifiable
    assert not ok and odds < 0.5


def test_the_check_scores_the_model_fitted_without_the_check_rows():
    ds = synthetic(b"c" * 32, 2_000, n_features=12, n_informative=6, n_classes=3)
    public, secret = package_task(ds, 1, 600, n_train=1_300, seed=b"c" * 32)
    rows = TaskRows(public)
    rows.update(public, _keys(secret, 1))
    data = rows.training_set()
    from ml.model import DEFAULT_CAPS
    from ml.shards import baseline_model
    cand = Families("forest").build(data, public.spec, DEFAULT_CAPS, seed=0)
    b, c = check_against(cand, encode_model(baseline_model(public)), data.check, public.spec, DEFAULT_CAPS)
    assert b > c and b + c <= len(data.check)


TRAINER = '''
from sklearn.ensemble import HistGradientBoostingClassifier
CALLS = []
def fit(X, y, spec):
    CALLS.append((X.shape, spec.name))
    return HistGradientBoostingClassifier(max_iter=20).fit(X, y)
def fit2(X, y):
    from sklearn.tree import DecisionTreeClassifier
    return DecisionTreeClassifier(max_depth=4).fit(X, y)
def broken(X, y, spec):
    raise RuntimeError("my bug")
def not_exportable(X, y, spec):
    from sklearn.svm import SVC
    return SVC().fit(X[:50], y[:50])
'''


def test_a_user_trainer_runs_in_the_miner_process(tmp_path, monkeypatch):
    (tmp_path / "my_trainer_mod.py").write_text(TRAINER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from ml.model import DEFAULT_CAPS
    ds = synthetic(b"u" * 32, 1_500, n_features=12, n_informative=6, n_classes=3)
    public, secret = package_task(ds, 1, 400, n_train=1_000, seed=b"u" * 32)
    rows = TaskRows(public)
    rows.update(public, _keys(secret, 1))
    data = rows.training_set()
    cand = UserTrainer("my_trainer_mod:fit").build(data, public.spec, DEFAULT_CAPS, seed=0)
    calls = sys.modules["my_trainer_mod"].CALLS
    assert cand.family == "trainer" and calls[0] == ((len(data.y), 12), public.spec.name) and len(calls) == 2
    assert UserTrainer("my_trainer_mod:fit2").build(data, public.spec, DEFAULT_CAPS, seed=0).check_accuracy
    with pytest.raises(SourceError, match="raised RuntimeError: my bug"):
        UserTrainer("my_trainer_mod:broken").build(data, public.spec, DEFAULT_CAPS, seed=0)
    with pytest.raises(SourceError, match="SVC cannot be entered"):
        UserTrainer("my_trainer_mod:not_exportable").build(data, public.spec, DEFAULT_CAPS, seed=0)
    for target, match in (("nope_mod:fit", "cannot import"), ("my_trainer_mod:missing", "no function"),
                          ("my_trainer_mod", "module:function")):
        with pytest.raises(SourceError, match=match):
            UserTrainer(target)


def test_a_model_file_is_entered_only_on_its_own_task(tmp_path):
    from sklearn.tree import DecisionTreeClassifier

    from ml.export import from_sklearn
    from ml.model import DEFAULT_CAPS
    ds = synthetic(b"f" * 32, 1_500, n_features=12, n_informative=6, n_classes=3)
    public, secret = package_task(ds, 1, 400, n_train=1_000, seed=b"f" * 32)
    est = DecisionTreeClassifier(max_depth=5).fit(public.train_X.astype(float), public.train_y)
    PopPredictor(from_sklearn(est, public.spec), public.spec).save(tmp_path / "m.popmodel")
    rows = TaskRows(public)
    rows.update(public, _keys(secret, 1))
    source = ModelFile(str(tmp_path / "m.popmodel"))
    cand = source.build(rows.training_set(), public.spec, DEFAULT_CAPS, seed=0)
    assert cand.model == cand.checked and cand.check_accuracy > 0.4     # 3 classes: chance is 1/3
    other = TaskSpec("other", 12, 0, ("x", "y", "z"), max_abs=public.spec.max_abs)
    with pytest.raises(SourceError, match="made for task"):
        source.build(rows.training_set(), other, DEFAULT_CAPS, seed=0)
    (tmp_path / "bad.popmodel").write_bytes(os.urandom(64))
    with pytest.raises(SourceError, match="not a .popmodel"):
        ModelFile(str(tmp_path / "bad.popmodel"))


def test_defaults_are_shared_with_the_command_line():
    from node.tools import mining
    assert miner_data.DEFAULT_MAX_ROWS == mining.DEFAULT_MAX_ROWS >= 100_000
    assert "gbdt" in mining.AUTO_FAMILIES and set(mining.AUTO_FAMILIES) < set(mining.FAMILY_CHOICES)
    assert Path(miner_data.__file__).stat().st_size < 20_000
