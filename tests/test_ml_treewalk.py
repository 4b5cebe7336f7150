"""The fast tree walk (ml.treewalk) equals a plain per-row walk on random valid ensembles: irregular shapes,
shared children and unreachable nodes (valid under PROTOCOL.md §5.2), thresholds and features across the int16 /
int32 / int64 compare tiers, int32 and int64 vote sums, and any chunking."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml import treewalk
from ml.errors import ModelError
from ml.model import TreesModel, decode_model, encode_model
from ml.score import logits, predict
from ml.task import TaskSpec

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
EDGES = [0, 1, -1, 127, -128, 32766, 32767, -32767, -32768, 32768, -32769,
         2**31 - 1, -(2**31), 2**31, -(2**31) - 1, 2**62, -(2**62)]
X_EDGES = [-40, 40, 32766, 32767, -32766, -32767, -32768, 32768, 2**31 - 1, -(2**31) + 1, -(2**31), 2**31,
           2**62, -(2**62) - 1, 2**63 - 1, -(2**63)]


def _value(draw_small: bool, rng: np.random.Generator, k: int) -> list[int]:
    hi = 4 if draw_small else 1 << 40  # 1 << 40 with several trees forces the int64 vote sum
    return rng.integers(-hi, hi + 1, size=k).tolist()


def _random_ensemble(rng: np.random.Generator, d: int, k: int, n_trees: int, max_nodes: int,
                     wide: bool, share: float, big_votes: bool) -> TreesModel:
    roots, feat, thr, left, right, value = [], [], [], [], [], []
    for _ in range(n_trees):
        base = len(feat)
        roots.append(base)
        budget = [int(rng.integers(1, max_nodes + 1))]

        def grow(budget: list[int] = budget) -> int:  # preorder numbering: children always after their parent
            i = len(feat)
            feat.append(-1); thr.append(0); left.append(-1); right.append(-1); value.append([0] * k)
            if budget[0] >= 3 and rng.random() < 0.7:
                budget[0] -= 2
                feat[i] = int(rng.integers(0, d))
                thr[i] = int(rng.choice(EDGES)) if wide and rng.random() < 0.5 else int(rng.integers(-40, 41))
                left[i] = grow()
                right[i] = grow()
            else:
                value[i] = _value(not big_votes, rng, k)
            return i

        grow()
        end = len(feat)
        for i in range(base, end):  # re-point some right children to any later node of the tree (a DAG)
            if feat[i] >= 0 and i + 1 < end and rng.random() < share:
                right[i] = int(rng.integers(i + 1, end))
    return TreesModel(np.array(roots), np.array(feat), np.array(thr), np.array(left), np.array(right),
                      np.array(value, dtype=np.int64).reshape(len(feat), k))


def _reference_votes(model: TreesModel, X: np.ndarray) -> np.ndarray:
    """The obvious walk, one row and one tree at a time, in Python integers."""
    k = model.value.shape[1]
    out = np.zeros((X.shape[0], k), dtype=np.int64)
    for r in range(X.shape[0]):
        total = [0] * k
        for root in model.roots:
            i = int(root)
            while model.feature[i] >= 0:
                go_left = int(X[r, model.feature[i]]) <= int(model.threshold[i])
                i = int(model.left[i] if go_left else model.right[i])
            total = [a + int(b) for a, b in zip(total, model.value[i])]
        out[r] = total
    return out


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_trees=st.integers(1, 6), max_nodes=st.integers(1, 31),
       wide=st.booleans(), share=st.sampled_from([0.0, 0.0, 0.3]), big_votes=st.booleans(),
       edge_x=st.lists(st.sampled_from(X_EDGES), max_size=3), pairs=st.sampled_from([1, 7, 64, 1 << 18]))
def test_fast_walk_equals_plain_walk(monkeypatch, seed, n_trees, max_nodes, wide, share, big_votes, edge_x, pairs):
    rng = np.random.default_rng(seed)
    d, k, n = 4, 3, 30
    model = _random_ensemble(rng, d, k, n_trees, max_nodes, wide, share, big_votes)
    model = decode_model(encode_model(model), TaskSpec("t", d, 0, ("a", "b", "c"), 40))
    X = rng.integers(-40, 41, size=(n, d)).astype(np.int64)
    if edge_x:  # a few extreme values pick the compare dtype (int16 / int32 / int64) at its very edges
        mask = rng.random(X.shape) < 0.4
        X[mask] = rng.choice(np.array(edge_x, dtype=np.int64), size=int(mask.sum()))
    expected = _reference_votes(model, X)
    monkeypatch.setattr(treewalk, "WALK_PAIRS", pairs)  # chunking must never change a bit
    got = logits(model, X)
    assert got.dtype == np.int64
    assert np.array_equal(got, expected)
    assert np.array_equal(predict(model, X), np.argmax(expected, axis=1))  # argmax: first (lowest) maximum
    perm = rng.permutation(n)
    assert np.array_equal(logits(model, X[perm]), expected[perm])


def test_layout_is_built_once_per_model_and_released_with_it():
    rng = np.random.default_rng(3)
    model = _random_ensemble(rng, 4, 3, 3, 15, False, 0.0, False)
    first = treewalk.layout(model)
    assert treewalk.layout(model) is first
    layout_ref = weakref.ref(first)
    del model, first
    gc.collect()
    assert layout_ref() is None  # the cache holds the model weakly, so the layout goes with it


def test_ties_go_to_the_lowest_class_index():
    # two one-leaf trees whose votes tie on classes 1 and 2: class 1 wins
    model = TreesModel(np.array([0, 1]), np.array([-1, -1]), np.array([0, 0]), np.array([-1, -1]),
                       np.array([-1, -1]), np.array([[0, 3, 1], [0, 0, 2]]))
    X = np.zeros((4, 2), dtype=np.int64)
    assert np.array_equal(logits(model, X), np.tile([0, 3, 3], (4, 1)))
    assert np.array_equal(predict(model, X), np.ones(4, dtype=np.int64))


def test_model_feature_beyond_x_is_a_model_error():
    model = TreesModel(np.array([0]), np.array([5, -1, -1]), np.array([0, 0, 0]), np.array([1, -1, -1]),
                       np.array([2, -1, -1]), np.array([[0, 0], [1, 0], [0, 1]]))
    with pytest.raises(ModelError, match="feature 5"):
        logits(model, np.zeros((2, 3), dtype=np.int64))


def test_empty_input_gives_empty_votes():
    model = TreesModel(np.array([0]), np.array([0, -1, -1]), np.array([0, 0, 0]), np.array([1, -1, -1]),
                       np.array([2, -1, -1]), np.array([[0, 0], [1, 0], [0, 1]]))
    assert logits(model, np.zeros((0, 1), dtype=np.int64)).shape == (0, 2)


@pytest.mark.parametrize("x_edge", X_EDGES)
def test_every_threshold_edge_against_every_x_edge(x_edge):
    # one stump per threshold edge; X mixes x_edge with small values so every compare dtype tier is hit at its
    # boundary (clamped thresholds must keep `x <= t` exactly as in Python integers)
    thresholds = EDGES + [t + 1 for t in EDGES if abs(t) < 2**62] + [t - 1 for t in EDGES if abs(t) < 2**62]
    T = len(thresholds)
    feat, thr, left, right, value = [], [], [], [], []
    for i, t in enumerate(thresholds):
        feat += [0, -1, -1]; thr += [t, 0, 0]; left += [3 * i + 1, -1, -1]; right += [3 * i + 2, -1, -1]
        value += [[0, 0], [1, 0], [0, 1]]
    model = TreesModel(np.arange(T) * 3, np.array(feat), np.array(thr), np.array(left), np.array(right),
                       np.array(value))
    X = np.array([[x_edge], [0], [x_edge], [-1]], dtype=np.int64)
    assert np.array_equal(logits(model, X), _reference_votes(model, X))
