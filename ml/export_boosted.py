"""Gradient-boosted trees (scikit-learn HistGradientBoostingClassifier and GradientBoostingClassifier, binary and
multiclass) to the integer ``trees`` family (PROTOCOL §5.2, §5.8).

A boosted model's class scores are ``raw_c = baseline_c + Σ_trees of class c  leaf value`` — exactly the
additive form of the ``trees`` family. The exporter:
  * makes every tree a ``trees`` tree whose leaves vote only in its class column (binary: column 1, so class 1
    iff raw > 0, a tie going to class 0 as in scikit-learn), plus one single-leaf tree carrying the baseline;
  * scales every leaf value and the baseline by one power of two 2^p and rounds half to even, p as large as
    keeps ``T · max|value| < 2^(VALUE_BITS)`` (T trees in all): the integer votes then sum in int32 when
    scoring (``ml.treewalk``), and each row's integer score differs from 2^p · raw by at most T/2;
  * turns thresholds into exact integer ones (``ml.export.int_thresholds``): HistGradientBoosting compares the
    float64 feature, GradientBoosting (like every scikit-learn ``tree_``) its float32 rounding.
Contract (``margin_bound``): wherever scikit-learn's decision margin exceeds ``T · 2^-p`` (plus float64
rounding, ``MARGIN_SLACK``), the integer model predicts the same class. Below it a row may differ.

What it does NOT do: categorical (bitset) splits of HistGradientBoosting — a task's categories are ordinal
codes (ml.encoding), so train with ``categorical_features=None`` — or a custom ``init`` estimator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ModelError
from .model import TreesModel
from .task import TaskSpec

VALUE_BITS = 31          # T · max|vote| < 2^31: exact int32 sums in ml.treewalk (consensus allows up to 2^53)
MARGIN_SLACK = 2.0 ** -30  # generous bound on scikit-learn's own float64 rounding of a sum of raw scores


@dataclass(frozen=True)
class RawTree:
    """One regression tree in scikit-learn's node numbering: node 0 is the root; leaves have left = -1."""
    feature: np.ndarray      # int64 (N,)
    threshold: np.ndarray    # int64 (N,), exact integer thresholds (go left iff x <= t)
    left: np.ndarray         # int64 (N,), -1 for leaves
    right: np.ndarray
    value: np.ndarray        # float64 (N,), leaf values (internal nodes ignored)
    column: int              # the class column this tree adds to


def _preorder(t: RawTree) -> np.ndarray:
    """Node ids in preorder from the root: renumbered this way every child follows its parent (§5.2)."""
    order: list[int] = []
    stack = [0]
    n = t.feature.shape[0]
    while stack:
        i = stack.pop()
        if not 0 <= i < n or len(order) > n:
            raise ModelError("estimator: a tree's node links are broken")
        order.append(i)
        if t.left[i] >= 0:
            stack.append(int(t.right[i]))
            stack.append(int(t.left[i]))
    if len(order) != len(set(order)):
        raise ModelError("estimator: a tree's node links are not a tree")
    return np.array(order, dtype=np.int64)


def _hgb_trees(est: Any) -> tuple[list[RawTree], np.ndarray]:
    from .export import int_thresholds
    trees = []
    k = est.n_trees_per_iteration_
    for iteration in est._predictors:
        for c, pred in enumerate(iteration):
            nodes = pred.nodes
            if np.any(nodes["is_categorical"][nodes["is_leaf"] == 0]):
                raise ModelError("estimator: categorical (bitset) splits cannot be exported; a task's categories "
                                 "are ordinal codes already: train with categorical_features=None")
            leaf = nodes["is_leaf"].astype(bool)
            trees.append(RawTree(
                feature=np.where(leaf, -1, nodes["feature_idx"]).astype(np.int64),
                threshold=np.where(leaf, 0, int_thresholds(nodes["num_threshold"], float32_inputs=False)),
                left=np.where(leaf, -1, nodes["left"].astype(np.int64)),
                right=np.where(leaf, -1, nodes["right"].astype(np.int64)),
                value=np.asarray(nodes["value"], dtype=np.float64), column=c if k > 1 else 1))
    base = np.asarray(est._baseline_prediction, dtype=np.float64).reshape(-1)
    return trees, base


def _gbc_trees(est: Any, n_features: int) -> tuple[list[RawTree], np.ndarray]:
    from sklearn.dummy import DummyClassifier

    from .export import int_thresholds
    if est.init_ == "zero":
        base = np.zeros(est.estimators_.shape[1])
    elif isinstance(est.init_, DummyClassifier):
        base = np.asarray(est._raw_predict_init(np.zeros((1, n_features), dtype=np.float32)),
                          dtype=np.float64).reshape(-1)
    else:
        raise ModelError(f"estimator.init: a {type(est.init_).__name__} baseline depends on the row; only the "
                         "default prior (or 'zero') can be exported")
    trees = []
    k = est.estimators_.shape[1]
    for stage in est.estimators_:
        for c, reg in enumerate(stage):
            tr = reg.tree_
            leaf = tr.children_left == -1
            trees.append(RawTree(
                feature=np.where(leaf, -1, tr.feature).astype(np.int64),
                threshold=np.where(leaf, 0, int_thresholds(tr.threshold, float32_inputs=True)),
                left=np.where(leaf, -1, tr.children_left).astype(np.int64),
                right=np.where(leaf, -1, tr.children_right).astype(np.int64),
                value=np.asarray(tr.value, dtype=np.float64)[:, 0, 0] * float(est.learning_rate),
                column=c if k > 1 else 1))
    return trees, base


def value_scale(trees: list[RawTree], base: np.ndarray) -> int:
    """p: the largest power of two with (trees + 1) · max|round(v · 2^p)| < 2^VALUE_BITS."""
    top = max([float(np.abs(base).max(initial=0.0))]
              + [float(np.abs(t.value[t.left < 0]).max(initial=0.0)) for t in trees])
    n = len(trees) + 1
    if top == 0.0:
        return 0
    p = math.floor(math.log2(((1 << VALUE_BITS) - 1) / (n * top)))
    while p > -60 and n * int(np.rint(top * 2.0 ** p)) >= 1 << VALUE_BITS:
        p -= 1
    return min(p, 60)


def export_boosted(est: Any, spec: TaskSpec) -> tuple[TreesModel, int]:
    """(integer model, p) for a fitted HistGradientBoostingClassifier / GradientBoostingClassifier."""
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier

    k = spec.n_classes
    if isinstance(est, HistGradientBoostingClassifier):
        trees, base = _hgb_trees(est)
    elif isinstance(est, GradientBoostingClassifier):
        trees, base = _gbc_trees(est, spec.n_features)
    else:
        raise ModelError(f"estimator: {type(est).__name__} is not a boosted classifier")
    per_iteration = k if k > 2 else 1
    if base.shape != (per_iteration,):
        raise ModelError(f"estimator: {base.shape[0]} scores per row, the task has {k} classes")
    if any(int(t.feature.max(initial=-1)) >= spec.n_features for t in trees):
        raise ModelError(f"estimator: a split on a feature beyond the task's {spec.n_features}")
    p = value_scale(trees, base)
    scale = 2.0 ** p
    bias = np.zeros(k, dtype=np.int64)
    bias[[1] if k == 2 else slice(None)] = np.rint(base * scale).astype(np.int64)
    roots, feats, thrs, lefts, rights, values = [0], [np.array([-1])], [np.array([0])], [np.array([-1])], \
        [np.array([-1])], [bias[None, :]]
    total = 1
    for t in trees:
        order = _preorder(t)
        new_id = np.empty(t.feature.shape[0], dtype=np.int64)
        new_id[order] = np.arange(order.shape[0]) + total
        leaf = t.left[order] < 0
        vote = np.zeros((order.shape[0], k), dtype=np.int64)
        vote[leaf, t.column] = np.rint(t.value[order][leaf] * scale).astype(np.int64)
        roots.append(total)
        feats.append(np.where(leaf, -1, t.feature[order]))
        thrs.append(np.where(leaf, 0, t.threshold[order]))
        lefts.append(np.where(leaf, -1, new_id[np.maximum(t.left[order], 0)]))
        rights.append(np.where(leaf, -1, new_id[np.maximum(t.right[order], 0)]))
        values.append(vote)
        total += order.shape[0]
    model = TreesModel(np.array(roots, dtype=np.int64), np.concatenate(feats), np.concatenate(thrs),
                       np.concatenate(lefts), np.concatenate(rights), np.concatenate(values))
    return model, p


def margin_bound(model: TreesModel, p: int) -> float:
    """Decision margin (in scikit-learn's raw-score units, between the top two classes) above which the integer
    model provably predicts scikit-learn's class: each class score is within T/2 of 2^p · raw, so two classes'
    difference within T; plus float64 rounding of scikit-learn's own sum."""
    return model.roots.shape[0] * 2.0 ** -p + MARGIN_SLACK


def raw_margin(est: Any, X: np.ndarray) -> np.ndarray:
    """scikit-learn's decision margin per row: |raw| (binary) or top-1 minus top-2 raw score (multiclass)."""
    raw = np.asarray(est.decision_function(X), dtype=np.float64)
    if raw.ndim == 1:
        return np.abs(raw)
    top2 = np.sort(raw, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]
