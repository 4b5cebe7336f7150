"""ml.score internals that the fast paths rely on: prepared features, the per-model float layout and its input
bound, the one-dot-product range test, the float argmax, and the auto path's choice near the exactness limit.
Every property compares against the pure int64 path (the reference semantics)."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml import score as score_module
from ml.errors import ModelError
from ml.model import LinearModel, MLPModel, chain_bounds, decode_model, dense_terms, encode_model
from ml.score import dense_layout, l2_within, logits, predict, prepare, score
from ml.task import TaskSpec
from tests.test_ml_exact import _decoded, _random_trees, linear_or_mlp

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
I64 = np.iinfo(np.int64)


@SETTINGS
@given(linear_or_mlp(), st.integers(1, 50))
def test_prepared_features_score_like_raw_arrays_and_the_int_path(case, batch):
    spec, model, X, y, _ = case
    model = _decoded(spec, model)
    feats = prepare(X)
    ref = logits(model, X, path="int")
    assert np.array_equal(logits(model, feats), ref)
    assert np.array_equal(logits(model, feats, path="int"), ref)
    assert np.array_equal(predict(model, feats), predict(model, X))
    assert np.array_equal(score(model, feats, y).correct, score(model, X, y).correct)
    parts = np.concatenate([predict(model, prepare(X[i:i + batch])) for i in range(0, len(y), batch)])
    assert np.array_equal(parts, predict(model, X, path="int"))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(linear_or_mlp(), st.integers(1, 64), st.integers(0, 2))
def test_values_past_the_limit_take_the_int64_path(monkeypatch, case, piece, spikes):
    spec, model, X, _, rng = case
    model = _decoded(spec, model)
    monkeypatch.setattr(score_module, "DOT_PIECE", piece)  # the range test's pieces must not matter either
    X = X.copy()
    limit = dense_layout(model).float_max_abs
    for _ in range(spikes):  # a value the float path must not take
        X[rng.integers(0, len(X)), rng.integers(0, X.shape[1])] = limit + 1 if 0 <= limit < I64.max else -1
    ref = logits(model, X, path="int")
    assert np.array_equal(logits(model, X), ref)
    assert np.array_equal(logits(model, prepare(X)), ref)
    assert np.array_equal(predict(model, X), np.argmax(ref, axis=1))


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(1, 4))
def test_prepared_features_for_trees(seed, n_trees, depth):
    rng = np.random.default_rng(seed)
    spec = TaskSpec("t", 5, 0, ("a", "b", "c"), 60)
    model = decode_model(encode_model(_random_trees(rng, 5, 3, n_trees, depth)), spec)
    X = rng.integers(-60, 61, size=(70, 5))
    assert np.array_equal(logits(model, prepare(X)), logits(model, X))


def test_ties_on_the_float_path_go_to_the_lowest_class():
    # every row ties classes 1 and 3 (equal columns), class 0 and 2 lose
    W = np.array([[0, 5, -5, 5], [0, 2, 2, 2]])
    model = decode_model(encode_model(LinearModel(W, np.array([-100, 0, 0, 0]))),
                         TaskSpec("t", 2, 0, ("a", "b", "c", "d"), 1000))
    X = np.array([[1, 1], [7, -3], [1000, 1000], [0, 0]])
    assert predict(model, X, path="float").tolist() == [1, 1, 1, 1]
    assert predict(model, prepare(X)).tolist() == [1, 1, 1, 1]


@SETTINGS
@given(linear_or_mlp())
def test_float_max_abs_is_the_exact_limit_of_the_proved_bound(case):
    _, model, _, _, _ = case
    limit = dense_layout(model).float_max_abs
    terms = dense_terms(model)
    shifts = () if isinstance(model, LinearModel) else model.shifts
    fits = lambda m: all(b < 1 << 53 for b in chain_bounds(terms, shifts, m))
    if limit < 0:
        assert not fits(0)
    else:
        assert fits(limit)
        assert limit == 1 << 63 or not fits(limit + 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(I64.min, I64.max) | st.integers(-(1 << 40), 1 << 40), min_size=1, max_size=40),
       st.integers(0, 1 << 63), st.integers(-3, 3))
def test_l2_range_test_never_passes_an_out_of_range_value(values, max_abs, near):
    X = np.array(values, dtype=np.int64).reshape(1, -1)
    true_max = max(abs(v) for v in values)
    for m in (max_abs, max(0, true_max + near), max(0, true_max * 2 // 3 + near)):
        if l2_within(X.astype(np.float64), m):
            assert true_max <= m


def test_l2_range_test_passes_typical_task_data():
    X = np.random.default_rng(0).integers(-4095, 4096, size=(10_000, 64))
    assert l2_within(X.astype(np.float64), 1 << 30)
    assert not l2_within(X.astype(np.float64), 4095)  # sufficient, not necessary: the exact scan decides then


def _tight_linear(max_abs: int) -> LinearModel:
    """A linear model whose proved bound is just below 2^53 exactly at |x| <= max_abs."""
    colsum = ((1 << 53) - 1) // max_abs
    W = np.zeros((3, 2), dtype=np.int64)
    W[0, 0], W[1, 0], W[2, 0] = colsum // 3, colsum // 3, colsum - 2 * (colsum // 3)
    W[:, 1] = -W[:, 0]
    return LinearModel(W, np.zeros(2, dtype=np.int64))


@pytest.mark.parametrize("max_abs", [1, 1000, 1 << 20, (1 << 31) - 1])
def test_auto_path_switches_to_int64_exactly_past_the_limit(max_abs):
    model = _tight_linear(max_abs)
    spec = TaskSpec("t", 3, 0, ("a", "b"), max_abs)
    decoded = decode_model(encode_model(model), spec)
    limit = dense_layout(decoded).float_max_abs
    assert max_abs <= limit < 2 * max_abs + 2
    rng = np.random.default_rng(max_abs)
    for v in (limit, limit + 1, 2 * limit + 3, 1 << 60, I64.max, I64.min):
        X = rng.integers(-3, 4, size=(257, 3))
        X[rng.integers(0, 257, size=3), rng.integers(0, 3, size=3)] = v
        ref = logits(decoded, X, path="int")
        assert np.array_equal(logits(decoded, X), ref)
        assert np.array_equal(logits(decoded, prepare(X)), ref)
        assert np.array_equal(predict(decoded, X), np.argmax(ref, axis=1))


def test_narrow_dtype_inputs_score_like_int64():
    rng = np.random.default_rng(5)
    spec = TaskSpec("t", 6, 0, ("a", "b", "c"), 40_000)
    model = decode_model(encode_model(LinearModel(rng.integers(-99, 100, size=(6, 3)), rng.integers(-9, 9, size=3))),
                         spec)
    X = rng.integers(-32768, 32768, size=(500, 6))
    for dt in (np.int16, np.int32, np.int64):
        assert np.array_equal(logits(model, X.astype(dt)), logits(model, X, path="int"))


def test_features_are_a_private_read_only_copy():
    X = np.arange(12, dtype=np.int64).reshape(4, 3) - 5
    feats = prepare(X)
    X[0, 0] = 10**6  # the caller's array changes; the prepared features do not
    assert feats.X[0, 0] == -5 and feats.Xf[0, 0] == -5.0
    assert (feats.lo, feats.hi, feats.max_abs) == (-5, 6, 6)
    with pytest.raises(ValueError):
        feats.X[0, 0] = 1
    with pytest.raises(ValueError):
        feats.Xf[0, 0] = 1.0
    empty = prepare(np.zeros((0, 3), dtype=np.int64))
    assert empty.max_abs == 0
    model = LinearModel(np.ones((3, 2), dtype=np.int64), np.zeros(2, dtype=np.int64))
    assert predict(model, empty).shape == (0,)
    with pytest.raises(ModelError):
        prepare(np.zeros((2, 3)))  # float features are refused, as everywhere in ml.score
    with pytest.raises(ModelError):
        predict(model, prepare(np.zeros((2, 4), dtype=np.int64)))  # wrong width


def test_dense_layout_is_built_once_per_model_and_released_with_it():
    rng = np.random.default_rng(4)
    model = MLPModel(((rng.integers(-9, 9, size=(4, 5)), rng.integers(-9, 9, size=5)),
                      (rng.integers(-9, 9, size=(5, 3)), rng.integers(-9, 9, size=3))), (2,))
    first = dense_layout(model)
    assert dense_layout(model) is first
    ref = weakref.ref(first)
    del model, first
    gc.collect()
    assert ref() is None
