"""Bit-exact scoring: exact integer arithmetic, so every node reaches the same verdict on the same shard.

Linear / MLP layers run on float64 arrays that hold integers ("int-in-float64"): a model's proved bound
(PROTOCOL.md §5.3) keeps every product and partial sum an integer below 2**53, where float64 arithmetic is exact
in any order, so BLAS (any blocking, any thread count, any batch split) returns the exact integer result. The
pure int64 path gives the identical bits and is used when the bound does not hold for the actual inputs (only
possible with non-default caps or features beyond the task's max_abs). Argmax ties go to the lowest class index
(numpy's argmax returns the first maximum). Trees: ``ml.treescan`` (small trees by bit masks) and
``ml.treewalk`` (the rest: a level-synchronous vectorised walk), both with cached layouts and exact votes.

Per model, ``dense_layout`` (cached like the tree layout, ``ml.permodel``) holds the float64 weights and the
largest input magnitude for which every §5.3 bound stays below 2**53. Per shard, ``prepare(X)`` converts the
features to float64 and measures their range once, so a validator scores the champion and every challenger on
one ``Features`` object without converting or scanning X again. Raw int64 X is converted per call and its range
checked with one pass (``l2_within``; the exact scan only when that cheap test cannot decide).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import ModelError
from .model import LinearModel, MLPModel, Model, TreesModel, chain_bounds, dense_terms
from .permodel import PerModel
from .treescan import ensemble_votes

EXACT_FLOAT_BITS = 53
DOT_PIECE = 8192  # l2_within sums dot products of this many elements: OpenBLAS computes a dot product of at
                  # most 10 000 elements on the calling thread (no hand-off to a worker thread that a loaded
                  # machine may have descheduled, which costs more than the whole sum)
_INT64_ABS = 1 << 63  # |x| <= 2**63 for every int64

Path = Literal["auto", "float", "int"]


@dataclass(frozen=True)
class Score:
    correct: np.ndarray  # bool (n,)
    n_correct: int
    n: int

    @property
    def accuracy(self) -> float:  # reporting only, never inside a consensus rule
        return self.n_correct / self.n if self.n else 0.0


# ---------------------------------------------------------------- prepared features


@dataclass(frozen=True, eq=False)
class Features:
    """Integer features prepared once for scoring many models (``prepare``): private read-only copies, so the
    float64 view and the measured range can never disagree with the integers."""
    X: np.ndarray    # int64 (n, d), read-only
    Xf: np.ndarray   # float64 (n, d), read-only: X converted once (exact wherever the float path is taken)
    lo: int          # exact min(X) (0 when empty)
    hi: int          # exact max(X) (0 when empty)

    @property
    def shape(self) -> tuple[int, int]:
        return self.X.shape  # type: ignore[return-value]

    @property
    def max_abs(self) -> int:
        return max(self.hi, -self.lo)


def prepare(X: np.ndarray) -> Features:
    """Features for ``logits`` / ``predict`` / ``score``: converts to float64 and scans the range once."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ModelError(f"X: expected a 2-d array, got shape {X.shape}")
    Xi = _as_int_matrix(X, X.shape[1]).copy()
    Xf = Xi.astype(np.float64)
    lo, hi = (int(Xi.min()), int(Xi.max())) if Xi.size else (0, 0)
    Xi.flags.writeable = False
    Xf.flags.writeable = False
    return Features(Xi, Xf, lo, hi)


Inputs = np.ndarray | Features


def _as_int_matrix(X: np.ndarray, d: int) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != d:
        raise ModelError(f"X: expected shape (n, {d}), got {X.shape}")
    if X.dtype.kind not in "iu":
        raise ModelError(f"X: expected integer features, got {X.dtype}")
    return X.astype(np.int64, copy=False)


def _n_rows(X: Inputs) -> int:
    return X.shape[0] if isinstance(X, Features) else np.asarray(X).shape[0]


# ---------------------------------------------------------------- linear / MLP


@dataclass(frozen=True, eq=False)
class DenseLayout:
    """Per-model scoring data for linear / MLP models (derived from the immutable decoded model)."""
    d: int
    shifts: tuple[int, ...]
    int_layers: tuple[tuple[np.ndarray, np.ndarray], ...]    # int64 (W, b) per layer
    float_layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # float64 (W·2^-s, b·2^-s), s = the shift after it
    float_max_abs: int  # largest M with every §5.3 bound < 2^53 for inputs |x| <= M (-1: none; at most 2^63)


def _build_dense(m: LinearModel | MLPModel) -> DenseLayout:
    layers = ((m.W, m.b),) if isinstance(m, LinearModel) else tuple(m.layers)
    shifts = () if isinstance(m, LinearModel) else tuple(int(s) for s in m.shifts)
    int_layers = tuple((W.astype(np.int64), b.astype(np.int64)) for W, b in layers)
    float_layers = []
    for i, (W, b) in enumerate(int_layers):
        # scaling by 2^-s is exact (a power of two; integers * 2^-62 stay far above the subnormal range), so
        # h·(W·2^-s) + b·2^-s is exactly (h·W + b)·2^-s: every product and partial sum is an exact integer
        # below 2^53 (the bound) times 2^-s, hence representable; the shift's floor then follows the matmul
        scale = 2.0 ** -shifts[i] if i < len(shifts) else 1.0
        float_layers.append((W.astype(np.float64) * scale, b.astype(np.float64) * scale))
    return DenseLayout(d=int(layers[0][0].shape[0]), shifts=shifts, int_layers=int_layers,
                       float_layers=tuple(float_layers), float_max_abs=_float_max_abs(m, shifts))


def _float_max_abs(m: LinearModel | MLPModel, shifts: tuple[int, ...]) -> int:
    """Largest M in [0, 2^63] such that every ``chain_bounds`` bound is < 2^53 when |x| <= M (-1 if none).
    The bounds are monotone non-decreasing in M, so a binary search over Python ints finds it exactly."""
    terms = dense_terms(m)
    limit = 1 << EXACT_FLOAT_BITS

    def ok(max_abs: int) -> bool:
        return all(b < limit for b in chain_bounds(terms, shifts, max_abs))

    if not ok(0):
        return -1
    if ok(_INT64_ABS):
        return _INT64_ABS
    lo, hi = 0, _INT64_ABS  # ok(lo), not ok(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


dense_layout: PerModel[LinearModel | MLPModel, DenseLayout] = PerModel(_build_dense)


def _dtype_abs_bound(dtype: np.dtype) -> int | None:
    """max |x| any value of a narrow integer dtype can have (None for 64-bit dtypes: the data decides)."""
    if dtype.kind not in "iu" or dtype.itemsize >= 8:
        return None
    info = np.iinfo(dtype)
    return max(int(info.max), -int(info.min))


def l2_within(Xf: np.ndarray, max_abs: int) -> bool:
    """Cheap sufficient test (one pass of BLAS dot products) that every |x| <= max_abs, for Xf = float64(X),
    X int64 — instead of the two passes of an exact min/max scan.

    Proof. Let N = Xf.size, u = 2^-53. Rounding to nearest gives |Xf_i| >= |x_i|(1 - u). The computed sum of
    squares s' of N non-negative products, summed in ANY order (BLAS blocking, FMA or not, then the pieces
    added in Python — one summation tree of the N products like any other), obeys
    s' >= (1 - γ_N) Σ Xf_i² with γ_N = N·u / (1 - N·u) <= 1/3 for N <= 2^50 (Higham, Accuracy and Stability of
    Numerical Algorithms, §3.1). So s' >= (2/3)(1 - u)² max x_i² > max x_i² / 2, and 2·s' <= max_abs² implies
    max x_i² < max_abs². No overflow is possible (|x| <= 2^63, N <= 2^50: s' < 2^177), 2·s' is exact, and Python
    compares a float with an int exactly. When the test fails the caller falls back to an exact scan."""
    v = Xf.reshape(-1)
    if v.size == 0:
        return max_abs >= 0
    if v.size > 1 << 50:
        return False
    s = 0.0
    for start in range(0, v.size, DOT_PIECE):
        piece = v[start:start + DOT_PIECE]
        s += float(np.dot(piece, piece))
    return 2.0 * s <= max_abs * max_abs


def _float_forward(lay: DenseLayout, Xf: np.ndarray) -> np.ndarray:
    """Exact integer class scores of rows Xf, held in float64 (the caller checked the bound for these rows).
    One BLAS call per layer over all rows, like plain float64 numpy: on a loaded machine every multithreaded
    BLAS call can wait for a descheduled worker thread, so splitting rows into chunks costs more than it saves."""
    h = Xf
    last = len(lay.float_layers) - 1
    for i, (W, b) in enumerate(lay.float_layers):
        h = h @ W  # a new array: Xf (possibly a prepared, shared one) is never written
        h += b
        if i < last:
            # h holds (h_prev·W + b)·2^-s exactly; floor then ReLU = ReLU then floor (floor is monotone and
            # floor(0) = 0) = the arithmetic right shift by s of the ReLU output
            if lay.shifts[i]:
                np.floor(h, out=h)
            np.maximum(h, 0.0, out=h)
    return h


def _int_scores(lay: DenseLayout, Xi: np.ndarray) -> np.ndarray:
    hi = Xi
    for i, (W, b) in enumerate(lay.int_layers):
        hi = hi @ W + b
        if i < len(lay.shifts):
            hi = np.maximum(hi, 0) >> lay.shifts[i]
    return hi


def _dense_scores(model: LinearModel | MLPModel, X: Inputs, path: Path) -> np.ndarray:
    """Exact class scores: float64 holding exact integers (float path) or int64 (int path)."""
    lay = dense_layout(model)
    limit = lay.float_max_abs
    if isinstance(X, Features):
        if X.shape[1] != lay.d:
            raise ModelError(f"X: expected shape (n, {lay.d}), got {X.shape}")
        if path == "float" or (path == "auto" and X.max_abs <= limit):
            return _float_forward(lay, X.Xf)
        return _int_scores(lay, X.X)
    Xi = _as_int_matrix(X, lay.d)
    if path == "int" or (path == "auto" and limit < 0):
        return _int_scores(lay, Xi)
    Xf = Xi.astype(np.float64)
    if path == "auto":
        narrow = _dtype_abs_bound(np.asarray(X).dtype)
        if not ((narrow is not None and narrow <= limit) or l2_within(Xf, limit)
                or max(int(Xi.max()), -int(Xi.min())) <= limit):  # the exact scan decides what l2 cannot
            return _int_scores(lay, Xi)
    return _float_forward(lay, Xf)


# ---------------------------------------------------------------- public API


def _scores(model: Model, X: Inputs, path: Path) -> np.ndarray:
    if isinstance(model, TreesModel):
        if isinstance(X, Features):
            return ensemble_votes(model, X.X, x_range=(X.lo, X.hi))
        X = np.asarray(X)
        return ensemble_votes(model, _as_int_matrix(X, X.shape[1] if X.ndim == 2 else -1))
    if isinstance(model, (LinearModel, MLPModel)):
        return _dense_scores(model, X, path)
    raise ModelError(f"model: unknown type {type(model).__name__}")


def logits(model: Model, X: Inputs, *, path: Path = "auto") -> np.ndarray:
    """Exact integer class scores (int64 (n, k)) for integer features X (an array or prepared ``Features``)."""
    return _scores(model, X, path).astype(np.int64, copy=False)


def predict(model: Model, X: Inputs, *, path: Path = "auto") -> np.ndarray:
    """Class indices (int64); ties go to the lowest class index.

    The argmax runs directly on the scores, float64 or int64. On the float path every score is an exact
    integer z with |z| < 2^53 (the bound), the very value ``logits`` returns after an exact conversion to
    int64; float64 represents every integer of that range exactly and orders them as the integers are ordered
    (no NaN can occur), so the maximal entries of a row sit at the same indices and numpy's argmax, which
    returns the first maximal index, gives the same class: the lowest index among the maximal logits."""
    return np.argmax(_scores(model, X, path), axis=1).astype(np.int64, copy=False)


def score(model: Model, X: Inputs, y: np.ndarray, *, path: Path = "auto") -> Score:
    y = np.asarray(y)
    n = _n_rows(X)
    if y.ndim != 1 or y.shape[0] != n:
        raise ModelError(f"y: expected shape ({n},), got {y.shape}")
    correct = predict(model, X, path=path) == y
    return Score(correct=correct, n_correct=int(correct.sum()), n=int(y.shape[0]))


def paired(challenger_correct: np.ndarray, champion_correct: np.ndarray) -> tuple[int, int]:
    """(b, c) = (#challenger right & champion wrong, #champion right & challenger wrong)."""
    a = np.asarray(challenger_correct, dtype=bool)
    c = np.asarray(champion_correct, dtype=bool)
    if a.shape != c.shape or a.ndim != 1:
        raise ModelError(f"paired: correctness vectors differ in shape {a.shape} vs {c.shape}")
    return int(np.count_nonzero(a & ~c)), int(np.count_nonzero(c & ~a))
