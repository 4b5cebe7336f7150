"""Gradient-boosted trees in the integer format (issue 22): exact integer scoring of exported
HistGradientBoosting / GradientBoosting models (binary and multiclass) on random data and rows, the stated
agreement contract with scikit-learn (same class wherever scikit-learn's margin exceeds the bound), ONNX agreeing
with popchain's scoring on every row, exact thresholds for scikit-learn's float32 comparisons, and the
1-in-13,000 forest disagreement of benchmarks.scoring explained and closed (vote quantisation, not thresholds)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)

from ml.errors import ModelError
from ml.export import FOREST_MARGIN, VOTE_BITS, from_sklearn, int_thresholds
from ml.export_boosted import export_boosted, margin_bound, raw_margin
from ml.model import DEFAULT_CAPS, ModelCaps, TreesModel, decode_model, encode_model
from ml.onnx_export import agreement, to_onnx
from ml.score import logits, predict
from ml.task import TaskSpec
from tests.test_ml_treewalk import _reference_votes

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _one_thread():
    """scikit-learn's OpenMP fits hand off to a second thread that a shared 2-core machine often has busy."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        yield


def _data(seed: int, n: int, d: int, k: int, spread: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.integers(-spread, spread + 1, size=(n, d)).astype(np.int64)
    score = X[:, 0] - X[:, 1 % d] // 2 + rng.integers(-spread, spread + 1, size=n) // 3
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, k + 1)[1:-1])).astype(np.int64)
    return X, y


@SETTINGS
@given(seed=st.integers(0, 2**31), k=st.sampled_from([2, 3, 4]), hist=st.booleans(),
       trees=st.integers(1, 25), leaves=st.integers(2, 40), spread=st.sampled_from([40, 5000, 1 << 26]))
def test_boosted_export_is_exact_and_keeps_the_contract(seed, k, hist, trees, leaves, spread):
    X, y = _data(seed, 300, 3, k, spread)
    spec = TaskSpec("b", 3, 0, tuple(f"c{i}" for i in range(k)), max_abs=1 << 27)
    est = (HistGradientBoostingClassifier(max_iter=trees, max_leaf_nodes=max(2, leaves), early_stopping=False,
                                          random_state=seed % 1000)
           if hist else GradientBoostingClassifier(n_estimators=trees, max_leaf_nodes=max(2, leaves),
                                                   random_state=seed % 1000))
    est.fit(X.astype(np.float64), y)
    model = from_sklearn(est, spec)
    model = decode_model(encode_model(model), spec)            # what a node decodes
    rows = np.concatenate([X, _data(seed + 1, 200, 3, k, spread * 2)[0]])   # also outside the training range
    assert np.array_equal(logits(model, rows), _reference_votes(model, rows))   # scoring is exact
    _, p = export_boosted(est, spec)
    ours = predict(model, rows)
    theirs = est.predict(rows.astype(np.float64))
    margin, bound = raw_margin(est, rows.astype(np.float64)), margin_bound(model, p)
    assert np.array_equal(ours[margin > bound], theirs[margin > bound])   # the agreement contract
    # Below the bound only near ties may differ; a whole leaf can sit exactly on the tie (one tree, raw margin
    # 0.0 for 16 of 500 rows at seed 36), so no share of agreement is promised there.
    assert (margin[ours != theirs] <= bound).all()
    same, n = agreement(to_onnx(model, spec, DEFAULT_CAPS), model, spec, rows.astype(np.float64))
    assert same == n                                             # ONNX = popchain scoring, every row


def test_binary_boosting_votes_in_column_one_with_a_bias_tree():
    X, y = _data(1, 500, 3, 2, 100)
    est = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X.astype(float), y)
    model, p = export_boosted(est, TaskSpec("b", 3, 0, ("a", "b"), 1000))
    assert model.roots.shape[0] == 11 and model.feature[0] == -1          # the baseline: a single leaf
    assert not model.value[:, 0].any() and model.value[0, 1] == round(est._baseline_prediction[0, 0] * 2.0 ** p)
    assert model.roots.shape[0] * int(np.abs(model.value).max()) < 1 << 31   # int32 vote sums


@SETTINGS
@given(seed=st.integers(0, 2**31), k=st.sampled_from([2, 3]), n_cats=st.integers(2, 60),
       missing_left=st.booleans())
def test_categorical_splits_compile_exactly(seed, k, n_cats, missing_left):
    """HistGradientBoosting's native categorical splits (the encoding's codes 0..K) become threshold nodes on
    the code pointing at shared subtrees: the same class as scikit-learn on every row with a clear margin,
    unseen codes, negative and out-of-range values included, and exact scoring (shared children and all)."""
    rng = np.random.default_rng(seed)
    n = 600
    code = rng.integers(0, n_cats, size=n)
    if missing_left:     # codes never seen in training (at either end and inside): unknown at predict time
        code[(code == n_cats // 2) | (code == 0) | (code == n_cats - 1)] = 1
    effect = rng.normal(0, 1.5, size=n_cats)
    num = rng.integers(-50, 50, size=n)
    # the categorical column second: scikit-learn moves categorical columns first internally
    X = np.stack([num, code], axis=1).astype(np.int64)
    score = effect[code] + num / 40 + rng.normal(0, 0.7, size=n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, k + 1)[1:-1])).astype(np.int64)
    est = HistGradientBoostingClassifier(max_iter=15, categorical_features=[1], random_state=seed % 1000)
    est.fit(X.astype(np.float64), y)
    spec = TaskSpec("c", 2, 0, tuple(f"c{i}" for i in range(k)), max_abs=1000)
    caps = ModelCaps(max_depth=96)       # unbounded leaf-wise trees: compiled category tests add depth
    model = decode_model(encode_model(from_sklearn(est, spec, caps=caps)), spec, caps)
    rows = np.stack([rng.integers(-60, 60, size=603),
                     np.concatenate([np.arange(-3, 300), rng.integers(0, n_cats, 300)])], axis=1).astype(np.int64)
    assert np.array_equal(logits(model, rows), _reference_votes(model, rows))
    _, p = export_boosted(est, spec)
    ours, theirs = predict(model, rows), est.predict(rows.astype(np.float64))
    clear = raw_margin(est, rows.astype(np.float64)) > margin_bound(model, p)
    assert np.array_equal(ours[clear], theirs[clear])
    same, n_rows = agreement(to_onnx(model, spec, caps), model, spec, rows.astype(np.float64))
    assert same == n_rows


def test_a_row_dependent_baseline_is_refused():
    X, y = _data(2, 400, 3, 2, 5)
    spec = TaskSpec("b", 3, 0, ("a", "b"), 1000)
    from sklearn.linear_model import LogisticRegression
    gbc = GradientBoostingClassifier(n_estimators=3, init=LogisticRegression()).fit(X.astype(float), y)
    with pytest.raises(ModelError, match="baseline depends on the row"):
        from_sklearn(gbc, spec)


def test_a_boosted_model_over_the_caps_is_refused():
    X, y = _data(3, 400, 3, 3, 50)
    est = HistGradientBoostingClassifier(max_iter=30, early_stopping=False).fit(X.astype(float), y)
    with pytest.raises(ModelError, match="roots|nodes"):
        from_sklearn(est, TaskSpec("b", 3, 0, ("a", "b", "c"), 1000), caps=ModelCaps(max_trees=40, max_nodes=500))


@settings(max_examples=300, deadline=None)
@given(t=st.floats(-(2.0 ** 63), 2.0 ** 63, allow_nan=False), offsets=st.lists(st.integers(-9, 9), max_size=6),
       scale=st.integers(0, 60))
def test_int_thresholds_match_float32_comparison_exactly(t, offsets, scale):
    t = t / 2.0 ** scale
    T = int(int_thresholds(np.array([t]), float32_inputs=True)[0])
    step = max(1, int(abs(T)) >> 23)     # float32 spacing around T: probe across it
    for x in {T, T + 1, T - 1, *(T + o * step for o in offsets)}:
        if abs(x) < 2 ** 53:    # scikit-learn gets float64 X (exact below 2^53), then rounds it to float32
            assert (float(np.float32(float(x))) <= t) == (x <= T), (t, T, x)
    assert int(int_thresholds(np.array([t]), float32_inputs=False)[0]) == max(-(2 ** 62), min(2 ** 62, int(np.floor(t))))


def test_the_forest_disagreement_of_benchmarks_scoring_was_vote_quantisation():
    """benchmarks.scoring's forest (seed 0) used to disagree with scikit-learn on row 10,149 of its 13,000: the
    classes' mean probabilities there differ by 4e-6, under the 2^-12 rounding of 12-bit votes. With 20-bit
    votes the row agrees, and every disagreement left lies within the stated margin."""
    rng = np.random.default_rng(0)
    spec = TaskSpec("bench", 64, 8, tuple(f"c{i}" for i in range(10)), max_abs=(1 << 12) - 1)
    X = rng.integers(-spec.max_abs, spec.max_abs + 1, size=(13_000, 64)).astype(np.int64)
    y = np.argmax(X[:3000, :10] + X[:3000, 10:20] // 2, axis=1).astype(np.int64)
    forest = RandomForestClassifier(n_estimators=100, max_depth=12, min_samples_leaf=3, random_state=0, n_jobs=1)
    forest.fit(X[:3000].astype(np.float64), y)
    model = from_sklearn(forest, spec)
    assert VOTE_BITS == 20
    proba = forest.predict_proba(X[10_149:10_150].astype(np.float64))[0]
    top2 = np.sort(proba)[-2:]
    assert 0 < top2[1] - top2[0] < 2.0 ** -12                     # the row: a near tie
    ours, theirs = predict(model, X), forest.predict(X.astype(np.float64))
    assert ours[10_149] == theirs[10_149]
    bad = np.flatnonzero(ours != theirs)
    if bad.size:
        p = np.sort(forest.predict_proba(X[bad].astype(np.float64)), axis=1)
        assert np.all(p[:, -1] - p[:, -2] <= FOREST_MARGIN)


def test_a_boosted_model_is_an_ordinary_trees_model():
    X, y = _data(4, 300, 3, 3, 100)
    est = GradientBoostingClassifier(n_estimators=5).fit(X.astype(float), y)
    model = from_sklearn(est, TaskSpec("b", 3, 0, ("a", "b", "c"), 1000))
    assert isinstance(model, TreesModel) and encode_model(model)[:1] and model.family == "trees"
