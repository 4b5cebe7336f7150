"""Bit-exact scoring: exact integer arithmetic, so every node reaches the same verdict on the same shard.

Linear / MLP layers run on float64 arrays that hold integers ("int-in-float64"): decode proved every partial
sum stays below 2**53, where float64 addition is exact in any order, so BLAS (any blocking, any thread count,
any batch split) returns the exact integer result. The pure int64 path gives the identical bits and is used
when a model's proved bound is >= 2**53 (only possible with non-default caps). Argmax ties go to the lowest
class index (numpy's argmax returns the first maximum). Trees: ``ml.treewalk`` (a cached layout, level-synchronous
vectorised walk, exact integer votes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import ModelError
from .model import LinearModel, Model, TreesModel, layer_bounds
from .task import TaskSpec
from .treewalk import tree_votes

EXACT_FLOAT_BITS = 53

Path = Literal["auto", "float", "int"]


@dataclass(frozen=True)
class Score:
    correct: np.ndarray  # bool (n,)
    n_correct: int
    n: int

    @property
    def accuracy(self) -> float:  # reporting only, never inside a consensus rule
        return self.n_correct / self.n if self.n else 0.0


def _as_int_matrix(X: np.ndarray, d: int) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != d:
        raise ModelError(f"X: expected shape (n, {d}), got {X.shape}")
    if X.dtype.kind not in "iu":
        raise ModelError(f"X: expected integer features, got {X.dtype}")
    return X.astype(np.int64, copy=False)


def _float_path_ok(model: Model, max_abs: int) -> bool:
    spec = TaskSpec("bound", 1, 0, ("a", "b"), max_abs)  # layer_bounds only reads max_abs
    return all(b < (1 << EXACT_FLOAT_BITS) for b in layer_bounds(model, spec))


def logits(model: Model, X: np.ndarray, *, path: Path = "auto") -> np.ndarray:
    """Exact integer class scores (int64 (n, k)) for integer features X."""
    if isinstance(model, TreesModel):
        return tree_votes(model, _as_int_matrix(X, _n_features(model, X)))
    layers = [(model.W, model.b)] if isinstance(model, LinearModel) else list(model.layers)
    shifts = [] if isinstance(model, LinearModel) else list(model.shifts)
    Xi = _as_int_matrix(X, layers[0][0].shape[0])
    if path == "auto":
        max_abs = max(int(Xi.max(initial=0)), -int(Xi.min(initial=0)))  # no |X| temporary
        path = "float" if _float_path_ok(model, max(1, max_abs)) else "int"
    if path == "float":
        h = Xi.astype(np.float64)
        for i, (W, b) in enumerate(layers):
            h = h @ W.astype(np.float64)
            h += b.astype(np.float64)
            if i < len(shifts):
                np.maximum(h, 0.0, out=h)
                if shifts[i]:
                    h *= 2.0 ** -shifts[i]  # exact power-of-two scaling, then floor = arithmetic right shift
                    np.floor(h, out=h)
        return h.astype(np.int64)
    hi = Xi
    for i, (W, b) in enumerate(layers):
        hi = hi @ W.astype(np.int64) + b.astype(np.int64)
        if i < len(shifts):
            hi = np.maximum(hi, 0) >> shifts[i]
    return hi


def _n_features(model: TreesModel, X: np.ndarray) -> int:
    return np.asarray(X).shape[1] if np.asarray(X).ndim == 2 else -1


def predict(model: Model, X: np.ndarray, *, path: Path = "auto") -> np.ndarray:
    """Class indices (int64); ties go to the lowest class index."""
    return np.argmax(logits(model, X, path=path), axis=1).astype(np.int64)


def score(model: Model, X: np.ndarray, y: np.ndarray, *, path: Path = "auto") -> Score:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != np.asarray(X).shape[0]:
        raise ModelError(f"y: expected shape ({np.asarray(X).shape[0]},), got {y.shape}")
    correct = predict(model, X, path=path) == y
    return Score(correct=correct, n_correct=int(correct.sum()), n=int(y.shape[0]))


def paired(challenger_correct: np.ndarray, champion_correct: np.ndarray) -> tuple[int, int]:
    """(b, c) = (#challenger right & champion wrong, #champion right & challenger wrong)."""
    a = np.asarray(challenger_correct, dtype=bool)
    c = np.asarray(champion_correct, dtype=bool)
    if a.shape != c.shape or a.ndim != 1:
        raise ModelError(f"paired: correctness vectors differ in shape {a.shape} vs {c.shape}")
    return int(np.count_nonzero(a & ~c)), int(np.count_nonzero(c & ~a))
