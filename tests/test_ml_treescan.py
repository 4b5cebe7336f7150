"""The bit-mask scan of small trees (ml.treescan) gives exactly the leaves a plain per-row walk reaches: random
ensembles (irregular shapes, shared children and unreachable nodes that must fall back to the walk, thresholds
across every int tier, single-column votes as boosted trees have and multi-column votes as forests have), trees
at the 64-leaf limit and just over it, and every scan/walk policy."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml import treescan
from ml.model import TreesModel, decode_model, encode_model
from ml.score import logits, predict, prepare
from ml.task import TaskSpec
from tests.test_ml_treewalk import SETTINGS, X_EDGES, _random_ensemble, _reference_votes

SPEC = TaskSpec("t", 4, 0, ("a", "b", "c"), 40)


def _single_column(model: TreesModel, rng: np.random.Generator) -> TreesModel:
    """The same trees voting in one column each, as boosted trees do."""
    value = np.zeros_like(model.value)
    ends = np.append(model.roots[1:], model.feature.shape[0])
    for root, end in zip(model.roots, ends):
        col = int(rng.integers(0, model.value.shape[1]))
        value[root:end, col] = model.value[root:end, col]
    return TreesModel(model.roots, model.feature, model.threshold, model.left, model.right, value)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_trees=st.integers(1, 70), max_nodes=st.integers(1, 40),
       wide=st.booleans(), share=st.sampled_from([0.0, 0.0, 0.3]), big_votes=st.booleans(),
       single=st.booleans(), policy=st.sampled_from(["scan", "auto", "walk"]),
       edge_x=st.lists(st.sampled_from(X_EDGES), max_size=3), rows_per_chunk=st.sampled_from([1, 7, 1024]))
def test_scan_equals_plain_walk(monkeypatch, seed, n_trees, max_nodes, wide, share, big_votes, single, policy,
                                edge_x, rows_per_chunk):
    rng = np.random.default_rng(seed)
    model = _random_ensemble(rng, 4, 3, n_trees, max_nodes, wide, share, big_votes)
    if single:
        model = _single_column(model, rng)
    monkeypatch.setattr(treescan, "POLICY", policy)
    monkeypatch.setattr(treescan, "ROWS_PER_CHUNK", rows_per_chunk)
    model = decode_model(encode_model(model), SPEC)      # a fresh object: its layout is built under this policy
    X = rng.integers(-40, 41, size=(37, 4)).astype(np.int64)
    if edge_x:
        mask = rng.random(X.shape) < 0.4
        X[mask] = rng.choice(np.array(edge_x, dtype=np.int64), size=int(mask.sum()))
    expected = _reference_votes(model, X)
    assert np.array_equal(logits(model, X), expected)
    assert np.array_equal(logits(model, prepare(X)), expected)
    assert np.array_equal(predict(model, X), np.argmax(expected, axis=1))
    lay = treescan.layout(model)
    if policy == "walk":
        assert not lay.blocks
    if policy == "scan" and share == 0.0:
        assert lay.rest is None      # proper trees of <= 20 leaves: every one scanned (or constant)


def _full_tree(depth: int, extra_leaf: bool) -> TreesModel:
    """A complete tree of 2^depth leaves on feature 0 (leaf j reached by x = j), one leaf split further if
    ``extra_leaf`` (2^depth + 1 leaves)."""
    feat, thr, left, right, value = [], [], [], [], []

    def grow(lo: int, hi: int, split_last: bool) -> int:
        i = len(feat)
        feat.append(-1); thr.append(0); left.append(-1); right.append(-1); value.append([0, 0, 0])
        if hi - lo > 1 or split_last:
            mid = (lo + hi) // 2 if hi - lo > 1 else lo
            feat[i], thr[i] = (0, mid - 1) if hi - lo > 1 else (1, 0)
            left[i] = grow(lo, mid, False) if hi - lo > 1 else grow(lo, hi, False)
            right[i] = grow(mid, hi, split_last and hi - lo > 1) if hi - lo > 1 else grow(lo, hi, False)
            if hi - lo == 1:
                value[right[i]] = [0, 0, 1000 + lo]
        else:
            value[i] = [lo + 1, 0, 0]
        return i

    grow(0, 2 ** depth, extra_leaf)
    return TreesModel(np.array([0]), np.array(feat), np.array(thr), np.array(left), np.array(right),
                      np.array(value, dtype=np.int64))


@pytest.mark.parametrize("extra_leaf", [False, True])
def test_the_64_leaf_limit(monkeypatch, extra_leaf):
    monkeypatch.setattr(treescan, "POLICY", "scan")
    model = decode_model(encode_model(_full_tree(6, extra_leaf)), TaskSpec("t", 2, 0, ("a", "b", "c"), 100))
    lay = treescan.layout(model)
    assert (len(lay.blocks) == 1) is (not extra_leaf) and (lay.rest is None) is (not extra_leaf)
    X = np.array([[j, s] for j in range(-2, 67) for s in (0, 1)], dtype=np.int64)
    assert np.array_equal(logits(model, X), _reference_votes(model, X))
