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

HistGradientBoosting's categorical splits (``categorical_features``: a task's category codes, ml.encoding, are
integers 0..K, K <= 254) become small balanced trees of threshold nodes on the code whose leaves point at the
split's two subtrees (children shared, allowed by §5.2): exact, unknown and out-of-range codes going the missing
side as in scikit-learn. What it does NOT do: a custom ``init`` estimator.
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
    """One regression tree, its nodes already in an order where every child follows its parent (§5.2; children
    may be shared — a compiled categorical split points several nodes at the same subtree). Local indices."""
    feature: np.ndarray      # int64 (N,), -1 for leaves
    threshold: np.ndarray    # int64 (N,), exact integer thresholds (go left iff x <= t); 0 for leaves
    left: np.ndarray         # int64 (N,), -1 for leaves
    right: np.ndarray
    value: np.ndarray        # float64 (N,), leaf values (0 for internal nodes)
    column: int              # the class column this tree adds to


class _Emitter:
    """Writes one tree's nodes in final order (depth first: a node, then its left subtree, then its right)."""

    def __init__(self) -> None:
        self.feature: list[int] = []
        self.threshold: list[int] = []
        self.left: list[int] = []
        self.right: list[int] = []
        self.value: list[float] = []

    def add(self, feature: int = -1, threshold: int = 0, value: float = 0.0) -> int:
        self.feature.append(feature)
        self.threshold.append(threshold)
        self.left.append(-1)
        self.right.append(-1)
        self.value.append(value)
        return len(self.feature) - 1

    def tree(self, column: int) -> RawTree:
        return RawTree(np.array(self.feature, dtype=np.int64), np.array(self.threshold, dtype=np.int64),
                       np.array(self.left, dtype=np.int64), np.array(self.right, dtype=np.int64),
                       np.array(self.value, dtype=np.float64), column)


def _sklearn_tree(tr: Any, scale: float, column: int) -> RawTree:
    """A scikit-learn ``tree_`` (float32 comparisons) as a RawTree, leaf values times ``scale``."""
    from .export import int_thresholds
    thr = int_thresholds(tr.threshold, float32_inputs=True)
    value = np.asarray(tr.value, dtype=np.float64)[:, 0, 0] * scale
    out = _Emitter()
    stack = [(0, -1, 0)]                     # (sklearn node, parent in out, 0 = left child / 1 = right child)
    seen = 0
    while stack:
        i, parent, side = stack.pop()
        seen += 1
        if seen > tr.node_count:
            raise ModelError("estimator: a tree's node links are broken")
        leaf = tr.children_left[i] == -1
        at = out.add(value=float(value[i])) if leaf else out.add(int(tr.feature[i]), int(thr[i]))
        if parent >= 0:
            (out.left if side == 0 else out.right)[parent] = at
        if not leaf:
            stack.append((int(tr.children_right[i]), at, 1))
            stack.append((int(tr.children_left[i]), at, 0))
    return out.tree(column)


LAST = 2 ** 62      # the "end" of the last run (no threshold is ever emitted for it)


def _category_runs(directions: dict[int, bool], default: bool) -> list[tuple[int, bool]]:
    """Runs of one direction over every integer: [(last value of the run, go left?), ...] — the codes in
    ``directions`` as given, every other integer (unseen, negative, out of range) ``default``."""
    runs: list[tuple[int, bool]] = []

    def push(end: int, d: bool) -> None:
        if runs and runs[-1][1] == d:
            runs[-1] = (end, d)
        else:
            runs.append((end, d))
    prev = None
    for code in sorted(directions):
        if prev is None or code > prev + 1:
            push(code - 1, default)
        push(code, directions[code])
        prev = code
    push(LAST, default)
    return runs


@dataclass(frozen=True)
class _HGBColumns:
    """HistGradientBoosting with ``categorical_features`` fits on its own transform of X: categorical columns
    first (each value replaced by its index among the sorted values seen in fit, unseen ones by NaN), then the
    numeric ones. ``original[j]`` is transformed column j's index in X, ``categories[j]`` its raw values."""
    original: np.ndarray
    categories: dict[int, np.ndarray]
    known: np.ndarray | None = None
    f_idx_map: np.ndarray | None = None

    @classmethod
    def of(cls, est: Any) -> _HGBColumns:
        pre = getattr(est, "_preprocessor", None)
        if pre is None:
            return cls(np.arange(est.n_features_in_), {})
        original = np.empty(est.n_features_in_, dtype=np.int64)
        categories: dict[int, np.ndarray] = {}
        for name, transformer, mask in pre.transformers_:
            cols = np.flatnonzero(mask) if np.asarray(mask).dtype == bool else np.asarray(mask, dtype=np.int64)
            out = pre.output_indices_[name]
            original[out] = cols
            if name == "encoder":
                for j, cats in zip(range(out.start, out.stop), transformer.categories_):
                    cats = np.asarray(cats, dtype=np.float64)
                    categories[j] = cats[~np.isnan(cats)]
        known, f_idx_map = est._bin_mapper.make_known_categories_bitsets()
        return cls(original, categories, known, f_idx_map)

    def directions(self, j: int, left_bits: np.ndarray, missing_left: bool) -> dict[int, bool]:
        """Raw integer code -> goes left, for the codes seen in fit (the rest go the missing side)."""
        assert self.known is not None and self.f_idx_map is not None
        out = {}
        for idx, raw in enumerate(self.categories[j]):
            if raw != np.floor(raw):
                raise ModelError(f"estimator: category {raw} of feature {self.original[j]} is not an integer code")
            in_left = bool((int(left_bits[idx // 32]) >> (idx % 32)) & 1)
            known = bool((int(self.known[int(self.f_idx_map[j]), idx // 32]) >> (idx % 32)) & 1)
            out[int(raw)] = in_left or (not known and missing_left)
        return out


def _hgb_tree(pred: Any, column: int, cols: _HGBColumns) -> RawTree:
    """One HistGradientBoosting predictor as a RawTree: numeric splits x <= floor(t) (float64 comparisons), and
    each categorical split compiled into a small balanced tree of threshold nodes on the raw category code whose
    leaves point at the split's two subtrees (shared children): exactly scikit-learn's rule, unseen and
    out-of-range codes going the missing side."""
    from .export import int_thresholds
    nodes = pred.nodes
    thr = int_thresholds(nodes["num_threshold"], float32_inputs=False)
    out = _Emitter()
    n = nodes.shape[0]

    def emit(i: int, depth: int) -> int:
        if depth > n:
            raise ModelError("estimator: a tree's node links are broken")
        node = nodes[i]
        if node["is_leaf"]:
            return out.add(value=float(node["value"]))
        j = int(node["feature_idx"])
        f = int(cols.original[j])
        if not node["is_categorical"]:
            at = out.add(f, int(thr[i]))
            out.left[at] = emit(int(node["left"]), depth + 1)
            out.right[at] = emit(int(node["right"]), depth + 1)
            return at
        if j not in cols.categories:
            raise ModelError("estimator: a categorical split without the fitted category table")
        missing_left = bool(node["missing_go_to_left"])
        runs = _category_runs(cols.directions(j, pred.raw_left_cat_bitsets[int(node["bitset_idx"])], missing_left),
                              missing_left)
        # the balanced threshold tree first, then both subtrees (so every child follows its parent)
        pending: list[tuple[int, int, bool]] = []      # (out node, side, go left?) links to fill once placed

        def build(lo: int, hi: int) -> int | bool:       # runs[lo..hi] -> a node index, or a direction (leaf)
            if lo == hi:
                return runs[lo][1]
            mid = (lo + hi) // 2
            at = out.add(f, runs[mid][0])                # x <= end of run mid: runs lo..mid, else mid+1..hi
            for side, child in ((0, build(lo, mid)), (1, build(mid + 1, hi))):
                if isinstance(child, bool):
                    pending.append((at, side, child))
                else:
                    (out.left if side == 0 else out.right)[at] = child
            return at
        root = build(0, len(runs) - 1)
        if isinstance(root, bool):                        # every code goes one way: no test needed
            return emit(int(node["left"] if root else node["right"]), depth + 1)
        left_root = emit(int(node["left"]), depth + 1)
        right_root = emit(int(node["right"]), depth + 1)
        for at, side, go_left in pending:
            (out.left if side == 0 else out.right)[at] = left_root if go_left else right_root
        return root

    emit(0, 0)
    return out.tree(column)


def _hgb_trees(est: Any) -> tuple[list[RawTree], np.ndarray]:
    k = est.n_trees_per_iteration_
    cols = _HGBColumns.of(est)
    trees = [_hgb_tree(pred, c if k > 1 else 1, cols) for iteration in est._predictors
             for c, pred in enumerate(iteration)]
    base = np.asarray(est._baseline_prediction, dtype=np.float64).reshape(-1)
    return trees, base


def _gbc_trees(est: Any, n_features: int) -> tuple[list[RawTree], np.ndarray]:
    from sklearn.dummy import DummyClassifier
    if est.init_ == "zero":
        base = np.zeros(est.estimators_.shape[1])
    elif isinstance(est.init_, DummyClassifier):
        base = np.asarray(est._raw_predict_init(np.zeros((1, n_features), dtype=np.float32)),
                          dtype=np.float64).reshape(-1)
    else:
        raise ModelError(f"estimator.init: a {type(est.init_).__name__} baseline depends on the row; only the "
                         "default prior (or 'zero') can be exported")
    k = est.estimators_.shape[1]
    trees = [_sklearn_tree(reg.tree_, float(est.learning_rate), c if k > 1 else 1)
             for stage in est.estimators_ for c, reg in enumerate(stage)]
    return trees, base


def value_scale(trees: list[RawTree], base: np.ndarray) -> int:
    """p: the largest power of two with (trees + 1) · max|round(v · 2^p)| < 2^VALUE_BITS."""
    top = max([float(np.abs(base).max(initial=0.0))]
              + [float(np.abs(t.value[t.feature < 0]).max(initial=0.0)) for t in trees])
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
        leaf = t.feature < 0
        vote = np.zeros((t.feature.shape[0], k), dtype=np.int64)
        vote[leaf, t.column] = np.rint(t.value[leaf] * scale).astype(np.int64)
        roots.append(total)
        feats.append(t.feature)
        thrs.append(np.where(leaf, 0, t.threshold))
        lefts.append(np.where(leaf, -1, t.left + total))
        rights.append(np.where(leaf, -1, t.right + total))
        values.append(vote)
        total += t.feature.shape[0]
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
