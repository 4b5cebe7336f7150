"""Bit-exactness: batch splits, row orders, BLAS thread counts and the two integer paths agree exactly."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ml.errors import ModelError
from ml.model import LinearModel, MLPModel, TreesModel, decode_model, encode_model, layer_bounds
from ml.score import logits, paired, predict, score
from ml.task import TaskSpec

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _spec(d: int, k: int, max_abs: int) -> TaskSpec:
    return TaskSpec("t", d, 0, tuple(f"c{i}" for i in range(k)), max_abs)


@st.composite
def linear_or_mlp(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    d, k = draw(st.integers(1, 12)), draw(st.integers(2, 6))
    max_abs = draw(st.sampled_from([1, 15, 255, 4095, 65535]))
    wbits = draw(st.integers(1, 16))
    spec = _spec(d, k, max_abs)
    if draw(st.booleans()):
        model = LinearModel(rng.integers(-(1 << wbits), 1 << wbits, size=(d, k)),
                            rng.integers(-(1 << wbits), 1 << wbits, size=k))
    else:
        widths = [d] + [draw(st.integers(1, 16)) for _ in range(draw(st.integers(1, 3)))] + [k]
        layers = tuple((rng.integers(-(1 << wbits), 1 << wbits, size=(a, b)), rng.integers(-(1 << wbits), 1 << wbits, size=b))
                       for a, b in zip(widths, widths[1:]))
        model = MLPModel(layers, tuple(draw(st.integers(4, 24)) for _ in widths[1:-1]))
    n = draw(st.integers(1, 300))
    X = rng.integers(-max_abs, max_abs + 1, size=(n, d))
    # small-range weights make exact ties likely: they must go to the lowest class index
    y = rng.integers(0, k, size=n)
    return spec, model, X, y, rng


def _decoded(spec, model):
    """Decode through the wire format; a model is refused exactly when its proved bound reaches 2^53."""
    too_big = any(b >= 1 << 53 for b in layer_bounds(model, spec))
    try:
        decoded = decode_model(encode_model(model), spec)
    except ModelError:
        assert too_big
        assume(False)
    assert not too_big
    return decoded


def _random_trees(rng, d, k, n_trees, depth):
    roots, feat, thr, left, right, value = [], [], [], [], [], []
    for _ in range(n_trees):
        base = len(feat)
        roots.append(base)
        # a complete binary tree in breadth-first order: children of i are 2i+1, 2i+2 (> i)
        n = 2 ** (depth + 1) - 1
        for i in range(n):
            if 2 * i + 2 < n:
                feat.append(int(rng.integers(0, d))); thr.append(int(rng.integers(-50, 50)))
                left.append(base + 2 * i + 1); right.append(base + 2 * i + 2); value.append([0] * k)
            else:
                feat.append(-1); thr.append(0); left.append(-1); right.append(-1)
                value.append(rng.integers(0, 4, size=k).tolist())
    return TreesModel(np.array(roots), np.array(feat), np.array(thr), np.array(left), np.array(right),
                      np.array(value))


@SETTINGS
@given(linear_or_mlp(), st.integers(1, 50))
def test_batch_split_and_row_order_do_not_change_bits(case, batch):
    spec, model, X, y, rng = case
    model = _decoded(spec, model)
    full = score(model, X, y).correct
    parts = np.concatenate([score(model, X[i:i + batch], y[i:i + batch]).correct for i in range(0, len(y), batch)])
    assert np.array_equal(full, parts)
    perm = rng.permutation(len(y))
    assert np.array_equal(score(model, X[perm], y[perm]).correct, full[perm])


@SETTINGS
@given(linear_or_mlp())
def test_float_path_equals_int64_path(case):
    spec, model, X, _, _ = case
    model = _decoded(spec, model)  # decoded => bound < 2^53 proved
    assert np.array_equal(logits(model, X, path="float"), logits(model, X, path="int"))


@SETTINGS
@given(linear_or_mlp())
def test_ties_go_to_lowest_class(case):
    spec, model, X, _, _ = case
    model = _decoded(spec, model)
    z = logits(model, X, path="int")
    first_max = np.array([int(np.flatnonzero(row == row.max())[0]) for row in z], dtype=np.int64)
    for path in ("float", "int", "auto"):  # argmax on the float-held logits picks the same lowest index
        assert np.array_equal(predict(model, X, path=path), first_max)


def test_blas_thread_count_does_not_change_bits():
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(1)
    spec = _spec(64, 10, 4095)
    layers = ((rng.integers(-(1 << 15), 1 << 15, size=(64, 128)), rng.integers(-(1 << 20), 1 << 20, size=128)),
              (rng.integers(-(1 << 15), 1 << 15, size=(128, 10)), rng.integers(-(1 << 20), 1 << 20, size=10)))
    model = decode_model(encode_model(MLPModel(layers, (16,))), spec)
    X = rng.integers(-4095, 4096, size=(5000, 64))
    with threadpool_limits(limits=1, user_api="blas"):
        one = logits(model, X)
    with threadpool_limits(limits=2, user_api="blas"):
        two = logits(model, X)
    assert np.array_equal(one, two)
    assert np.array_equal(one, logits(model, X, path="int"))


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 5), st.integers(1, 40))
def test_trees_vectorised_walk_matches_a_plain_walk_for_any_split(seed, n_trees, depth, batch):
    rng = np.random.default_rng(seed)
    d, k = 5, 3
    spec = _spec(d, k, 60)
    model = decode_model(encode_model(_random_trees(rng, d, k, n_trees, depth)), spec)
    X = rng.integers(-60, 61, size=(80, d))
    expected = np.zeros((80, k), dtype=np.int64)
    for r in range(80):  # reference: the obvious per-sample walk
        for root in model.roots:
            i = int(root)
            while model.feature[i] >= 0:
                i = int(model.left[i] if X[r, model.feature[i]] <= model.threshold[i] else model.right[i])
            expected[r] += model.value[i]
    assert np.array_equal(logits(model, X), expected)
    parts = np.concatenate([predict(model, X[i:i + batch]) for i in range(0, 80, batch)])
    assert np.array_equal(parts, np.argmax(expected, axis=1))


def test_paired_counts():
    a = np.array([1, 1, 0, 0, 1], dtype=bool)
    c = np.array([0, 1, 1, 0, 0], dtype=bool)
    assert paired(a, c) == (2, 1)
    assert paired(c, a) == (1, 2)
