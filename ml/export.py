"""Export fitted scikit-learn classifiers to the integer model format.

Convention (documented in PROTOCOL.md §5): the float model is trained on the task's INTEGER features
(``Dataset.X`` cast to float), so the exporter only has to turn float weights into integers:
  linear / mlp: W_q = round(W · 2^p) with p as large as the weight width and the 2^53 overflow bound allow;
                between MLP layers ReLU then an arithmetic right shift brings activations back to ~ACT_BITS bits.
  trees:        thresholds are exact (``int_thresholds``: scikit-learn's trees compare the float32 rounding of
                x with a float64 t, which for integer x is x <= an integer T*); leaf class fractions become
                integer votes round(frac · 2^VOTE_BITS) (soft voting, as in ``predict_proba``);
  boosted:      HistGradientBoosting / GradientBoosting, see ``ml.export_boosted``.
A leading StandardScaler / MinMaxScaler of a Pipeline is folded into the first layer (or the thresholds).

Agreement contract (PROTOCOL §5.8): linear / MLP exports are approximations (weights rounded); a forest's votes
sum within T/2 of 2^VOTE_BITS · Σ p_t, so wherever scikit-learn's two top mean class probabilities differ by
more than 2^-VOTE_BITS (``FOREST_MARGIN``) the integer forest predicts scikit-learn's class; below that (one row
in ~13,000 at the former 12 vote bits, see benchmarks.scoring) a row may differ. Scoring itself is exact.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import ModelError
from .model import (
    DEFAULT_CAPS,
    LinearModel,
    MLPModel,
    Model,
    ModelCaps,
    TreesModel,
    check_bounds,
    check_tree_structure,
    decode_model,
    encode_model,
)
from .task import TaskSpec

WEIGHT_BITS = 32          # |W_q| < 2^(WEIGHT_BITS-1): fits int32; the 2^52 bound usually binds first
ACT_BITS = 20             # target magnitude of hidden activations after requantisation
BOUND_BITS = 52           # exporter's own margin below the 2^53 consensus bound
VOTE_BITS = 20            # a forest's votes: T · 2^20 < 2^31 for T <= 1024 trees (exact int32 sums when scoring)
FOREST_MARGIN = 2.0 ** -VOTE_BITS + 2.0 ** -40   # + scikit-learn's float64 rounding of a mean of <= 1024 terms


def _unwrap(estimator: Any) -> tuple[Any, np.ndarray | None, np.ndarray | None]:
    """Return (final estimator, scale, offset) with the scaler as z = (x - offset) / scale."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    if not isinstance(estimator, Pipeline):
        return estimator, None, None
    steps = [s for _, s in estimator.steps if s not in (None, "passthrough")]
    if len(steps) == 1:
        return steps[0], None, None
    if len(steps) != 2:
        raise ModelError("pipeline: only [scaler, classifier] pipelines can be exported")
    scaler, final = steps
    if isinstance(scaler, StandardScaler):
        scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else None
        offset = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else None
        d = scaler.n_features_in_
        scale = np.ones(d) if scale is None else scale
        offset = np.zeros(d) if offset is None else offset
    elif isinstance(scaler, MinMaxScaler):
        # z = x * s + m  ==  (x - (-m / s)) / (1 / s)
        if np.any(scaler.scale_ == 0):
            raise ModelError("pipeline: MinMaxScaler with a zero scale")
        scale = 1.0 / np.asarray(scaler.scale_, dtype=np.float64)
        offset = -np.asarray(scaler.min_, dtype=np.float64) * scale
    else:
        raise ModelError(f"pipeline: unsupported preprocessing step {type(scaler).__name__}")
    return final, scale, offset


def _fold(W: np.ndarray, b: np.ndarray, scale: np.ndarray | None, offset: np.ndarray | None):
    if scale is None:
        return W, b
    W2 = W / scale[:, None]
    return W2, b - offset @ W2


def _check_classes(est: Any, spec: TaskSpec) -> None:
    classes = np.asarray(getattr(est, "classes_", []))
    if classes.shape != (spec.n_classes,) or not np.array_equal(classes, np.arange(spec.n_classes)):
        raise ModelError(f"estimator.classes_: expected 0..{spec.n_classes - 1} (trained on task labels), "
                         f"got {classes.tolist()}")


def _binary_to_two(W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # one decision column z (class 1 iff z > 0) -> logits [0, z]; a tie goes to class 0 as in sklearn
    return np.concatenate([np.zeros_like(W), W], axis=1), np.concatenate([np.zeros_like(b), b])


def _quantise_layer(W: np.ndarray, b: np.ndarray, in_bound: int, in_frac: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Largest p with |W·2^p| < 2^(WEIGHT_BITS-1) and a proved bound < 2^BOUND_BITS; returns (W_q, b_q, p)."""
    wmax = float(np.abs(W).max(initial=0.0))
    p = (WEIGHT_BITS - 2 - math.frexp(wmax)[1]) if wmax > 0 else 0
    while True:
        Wq = np.rint(W * 2.0 ** p).astype(np.int64)
        bq = np.rint(b * 2.0 ** (p + in_frac)).astype(np.int64)
        bound = in_bound * int(np.abs(Wq).sum(axis=0).max(initial=0)) + int(np.abs(bq).max(initial=0))
        if bound < (1 << BOUND_BITS) or p < -60:
            return Wq, bq, p
        p -= 1


def export_linear(est: Any, spec: TaskSpec, scale=None, offset=None) -> LinearModel:
    _check_classes(est, spec)
    W = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64)).T
    b = np.broadcast_to(np.asarray(est.intercept_, dtype=np.float64), (W.shape[1],)).copy()
    if W.shape[0] != spec.n_features:
        raise ModelError(f"estimator.coef_: {W.shape[0]} features, task has {spec.n_features}")
    W, b = _fold(W, b, scale, offset)
    if W.shape[1] == 1 and spec.n_classes == 2:
        W, b = _binary_to_two(W, b)
    Wq, bq, _ = _quantise_layer(W, b, spec.max_abs, 0)
    return LinearModel(Wq, bq)


def export_mlp(est: Any, spec: TaskSpec, X_ref: np.ndarray | None, scale=None, offset=None) -> MLPModel:
    _check_classes(est, spec)
    if est.activation != "relu":
        raise ModelError(f"estimator.activation: only 'relu' can be exported, got {est.activation!r}")
    coefs = [np.asarray(c, dtype=np.float64) for c in est.coefs_]
    inters = [np.asarray(c, dtype=np.float64) for c in est.intercepts_]
    if len(coefs) - 1 > 4:
        raise ModelError("estimator.hidden_layer_sizes: at most 4 hidden layers")
    coefs[0], inters[0] = _fold(coefs[0], inters[0], scale, offset)
    if coefs[-1].shape[1] == 1 and spec.n_classes == 2:
        coefs[-1], inters[-1] = _binary_to_two(coefs[-1], inters[-1])
    h_ref = None if X_ref is None else np.asarray(X_ref, dtype=np.float64)
    in_bound, in_frac = spec.max_abs, 0
    layers, shifts = [], []
    for i, (W, b) in enumerate(zip(coefs, inters)):
        Wq, bq, p = _quantise_layer(W, b, in_bound, in_frac)
        layers.append((Wq, bq))
        if i == len(coefs) - 1:
            break
        out_bound = in_bound * int(np.abs(Wq).sum(axis=0).max(initial=0)) + int(np.abs(bq).max(initial=0))
        frac = p + in_frac  # z_q ~ z · 2^frac
        if h_ref is not None:
            h_ref = np.maximum(h_ref @ W + b, 0.0)
            top = float(h_ref.max(initial=0.0)) * 2.0 ** frac
        else:
            top = float(out_bound)
        shift = max(0, math.frexp(top)[1] - ACT_BITS) if top > 0 else 0
        shift = min(shift, 62)
        shifts.append(shift)
        in_bound, in_frac = out_bound >> shift, frac - shift
    return MLPModel(tuple(layers), tuple(shifts))


def int_thresholds(t: np.ndarray, *, float32_inputs: bool) -> np.ndarray:
    """Integer thresholds T with (integer x goes left) iff x <= T, clipped to ±2^62.

    float64 comparison (``x <= t``, HistGradientBoosting): T = floor(t), exact for |x| < 2^53.
    float32 comparison (``float32(x) <= t``, every scikit-learn ``tree_``): float32(·) is monotone on the
    integers, so the integers going left are those up to T* = max{x : float32(x) <= t}. With g the largest
    float32 <= t and g' the next float32 above it, float32(x) <= g iff x < m = (g + g')/2, or x = m when
    round-half-to-even takes m down to g (g's last mantissa bit is 0). m is exact in float64."""
    t = np.asarray(t, dtype=np.float64)
    limit = 2.0 ** 62
    if not float32_inputs:
        return np.floor(np.clip(np.nan_to_num(t, nan=-limit), -limit, limit)).astype(np.int64)
    tc = np.clip(np.nan_to_num(t, nan=-limit), -limit, limit)
    with np.errstate(over="ignore"):
        g = tc.astype(np.float32)
    g = np.where(g.astype(np.float64) > tc, np.nextafter(g, np.float32(-np.inf)), g).astype(np.float32)
    up = np.nextafter(g, np.float32(np.inf)).astype(np.float32)
    m = (g.astype(np.float64) + up.astype(np.float64)) / 2.0
    even = (g.view(np.int32) & 1) == 0
    whole = m == np.floor(m)
    out = np.where(whole & even, m, np.ceil(m) - 1.0)
    return np.clip(out, -limit, limit).astype(np.int64)


def export_trees(est: Any, spec: TaskSpec, scale=None, offset=None) -> TreesModel:
    _check_classes(est, spec)
    trees = [est] if hasattr(est, "tree_") else list(est.estimators_)
    roots, feats, thrs, lefts, rights, values = [], [], [], [], [], []
    total = 0
    for t in trees:
        tr = t.tree_
        n = tr.node_count
        leaf = tr.children_left == -1
        f = np.where(leaf, -1, tr.feature).astype(np.int64)
        thr_f = np.asarray(tr.threshold, dtype=np.float64)
        if scale is not None:  # (x - m)/s <= t  <=>  x <= t·s + m   (s > 0)
            fi = np.where(leaf, 0, tr.feature)
            thr_f = thr_f * scale[fi] + offset[fi]
        # with a folded scaler scikit-learn compares float32((x - m)/s), not float32(x): floor is the best exact
        # integer rule there (agreement is then approximate at such a threshold)
        thr = np.where(leaf, 0, int_thresholds(thr_f, float32_inputs=scale is None))
        val = np.asarray(tr.value, dtype=np.float64)[:, 0, :]
        val = val / np.maximum(val.sum(axis=1, keepdims=True), 1e-300)  # fractions (sklearn >= 1.4 already are)
        votes = np.zeros((n, spec.n_classes), dtype=np.int64)
        cols = np.asarray(t.classes_, dtype=np.int64) if hasattr(t, "classes_") else np.arange(spec.n_classes)
        votes[:, cols] = np.rint(val * (1 << VOTE_BITS)).astype(np.int64)
        votes[~leaf] = 0
        roots.append(total)
        feats.append(f)
        thrs.append(thr)
        lefts.append(np.where(leaf, -1, tr.children_left + total))
        rights.append(np.where(leaf, -1, tr.children_right + total))
        values.append(votes)
        total += n
    return TreesModel(np.array(roots, dtype=np.int64), np.concatenate(feats), np.concatenate(thrs),
                      np.concatenate(lefts), np.concatenate(rights), np.concatenate(values))


def from_sklearn(estimator: Any, spec: TaskSpec, X_ref: np.ndarray | None = None,
                 caps: ModelCaps = DEFAULT_CAPS) -> Model:
    """Integer model for a fitted classifier trained on the task's integer features (see module doc).

    ``X_ref`` (optional, e.g. the training features) calibrates MLP activation shifts; it never affects validity.
    The result is checked against ``caps`` exactly as a decoder would (ModelError if it does not fit).
    """
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import LinearSVC
    from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

    final, scale, offset = _unwrap(estimator)
    if scale is not None and np.any(scale <= 0):
        raise ModelError("pipeline: scaler with a non-positive scale cannot be folded")
    if isinstance(final, (LogisticRegression, LinearSVC, SGDClassifier, RidgeClassifier)):
        model: Model = export_linear(final, spec, scale, offset)
    elif isinstance(final, MLPClassifier):
        model = export_mlp(final, spec, X_ref, scale, offset)
    elif isinstance(final, (DecisionTreeClassifier, ExtraTreeClassifier, RandomForestClassifier,
                            ExtraTreesClassifier)):
        model = export_trees(final, spec, scale, offset)
        check_tree_structure(model, spec, caps)
    elif isinstance(final, (HistGradientBoostingClassifier, GradientBoostingClassifier)):
        from .export_boosted import export_boosted
        if scale is not None:
            raise ModelError("pipeline: boosted trees are exported without a scaler (trees need none)")
        _check_classes(final, spec)
        model, _ = export_boosted(final, spec)
        check_tree_structure(model, spec, caps)
    else:
        raise ModelError(f"estimator: {type(final).__name__} cannot be exported")
    check_bounds(model, spec, caps)
    decode_model(encode_model(model), spec, caps)      # every cap, exactly as a node decodes it (ModelError)
    return model


def agreement(model: Model, estimator: Any, X: np.ndarray) -> float:
    """Share of rows where the integer model predicts the same class as the float estimator."""
    from .score import predict

    Xi = np.asarray(X, dtype=np.int64)
    ours = predict(model, Xi)
    theirs = np.asarray(estimator.predict(Xi.astype(np.float64)), dtype=np.int64)
    return float(np.mean(ours == theirs)) if len(ours) else 1.0
