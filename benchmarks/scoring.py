"""Scoring benchmarks: exact integer scoring of 10k rows vs plain float64 numpy / the sklearn forest.

score_linear_10k      linear 64x10 on 10k rows, exact int-in-float64 path   vs  float64 X@W+b, argmax
score_linear_10k_raw  the same from raw int64 X: converts and range-checks X in every call
score_mlp_10k         MLP 64-128-10 (ReLU) on 10k rows, exact path           vs  float64 MLP, argmax
score_trees_10k       100-tree random forest on 10k rows, ml.treewalk walk   vs  sklearn RandomForest.predict
Each value is the median of several runs, each run timed right next to its baseline (alternately, so a load
spike on the shared machine hits both alike). Features are prepared once on both sides, as a validator does
with a shard (one ``ml.score.prepare`` per shard, then the champion and every challenger): the baseline gets
``X.astype(float64)`` ready-made, ours ``prepare(X)``. ``score_linear_10k_raw`` shows the cost of skipping
that step (int64 -> float64 conversion and the range check inside every call; the baseline still skips it).
`python -m benchmarks.scoring`.
"""
from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ml.export import from_sklearn
from ml.model import LinearModel, MLPModel, decode_model, encode_model
from ml.score import predict, prepare
from ml.task import TaskSpec

N_ROWS = 10_000


def _interleaved_median_ms(fn: Callable[[], Any], baseline: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Medians of fn and baseline timed alternately, so a load spike on the shared machine hits both alike."""
    fn(), baseline()  # warm-up (also builds any per-model cache, as a node scoring a known model would have)
    ours: list[float] = []
    base: list[float] = []
    for _ in range(repeats):
        for sink, f in ((ours, fn), (base, baseline)):
            t = time.perf_counter()
            f()
            sink.append((time.perf_counter() - t) * 1000)
    return statistics.median(ours), statistics.median(base)


def _figure(name: str, value: float, baseline: float, goal: str) -> dict[str, Any]:
    return {"name": name, "value": round(value, 3), "unit": "ms/10k", "baseline": round(baseline, 3),
            "ratio": round(value / baseline, 2), "goal": goal}


def run(quick: bool = False) -> list[dict[str, Any]]:
    from sklearn.ensemble import RandomForestClassifier

    repeats = 5 if quick else 15
    rng = np.random.default_rng(0)
    spec = TaskSpec("bench", 64, 8, tuple(f"c{i}" for i in range(10)), max_abs=(1 << 12) - 1)
    X = rng.integers(-spec.max_abs, spec.max_abs + 1, size=(N_ROWS, 64)).astype(np.int64)
    Xf = X.astype(np.float64)
    feats = prepare(X)
    figures = []

    # linear: a 16-bit-weight model (as a trained export would be)
    W = rng.integers(-(1 << 15), 1 << 15, size=(64, 10)).astype(np.int64)
    b = rng.integers(-(1 << 20), 1 << 20, size=10).astype(np.int64)
    lin = decode_model(encode_model(LinearModel(W, b)), spec)
    Wf, bf = rng.normal(size=(64, 10)), rng.normal(size=10)
    def float_linear() -> np.ndarray:
        z = Xf @ Wf
        z += bf
        return np.argmax(z, axis=1)

    assert np.array_equal(predict(lin, feats), predict(lin, X, path="int"))
    assert np.array_equal(predict(lin, X), predict(lin, X, path="int"))
    ours, base = _interleaved_median_ms(lambda: predict(lin, feats), float_linear, repeats)
    figures.append(_figure("score_linear_10k", ours, base, "<= 2x float64"))
    ours, base = _interleaved_median_ms(lambda: predict(lin, X), float_linear, repeats)
    figures.append(_figure("score_linear_10k_raw", ours, base, "info: + X conversion the baseline skips"))

    # MLP 64-128-10 with 16-bit weights and a >>16 requantisation
    W1 = rng.integers(-(1 << 15), 1 << 15, size=(64, 128)).astype(np.int64)
    b1 = rng.integers(-(1 << 20), 1 << 20, size=128).astype(np.int64)
    W2 = rng.integers(-(1 << 15), 1 << 15, size=(128, 10)).astype(np.int64)
    b2 = rng.integers(-(1 << 20), 1 << 20, size=10).astype(np.int64)
    mlp = decode_model(encode_model(MLPModel(((W1, b1), (W2, b2)), (16,))), spec)
    W1f, b1f = rng.normal(size=(64, 128)), rng.normal(size=128)
    W2f, b2f = rng.normal(size=(128, 10)), rng.normal(size=10)
    def float_mlp() -> np.ndarray:  # in-place like the exact path, so only the arithmetic differs
        h = Xf @ W1f
        h += b1f
        np.maximum(h, 0.0, out=h)
        z = h @ W2f
        z += b2f
        return np.argmax(z, axis=1)

    assert np.array_equal(predict(mlp, feats), predict(mlp, X, path="int"))
    ours, base = _interleaved_median_ms(lambda: predict(mlp, feats), float_mlp, repeats)
    figures.append(_figure("score_mlp_10k", ours, base, "<= 2x float64"))

    # trees: a 100-tree forest fitted on a small labelled sample, then both predict the same 10k rows
    y_train = np.argmax(X[:3000, :10] + X[:3000, 10:20] // 2, axis=1).astype(np.int64)  # 10 classes
    forest = RandomForestClassifier(n_estimators=100, max_depth=12, min_samples_leaf=3,
                                    random_state=0, n_jobs=1)
    forest.fit(Xf[:3000], y_train)
    trees = decode_model(encode_model(from_sklearn(forest, spec)), spec)
    assert np.array_equal(predict(trees, feats), forest.predict(Xf))
    ours, base = _interleaved_median_ms(lambda: predict(trees, feats), lambda: forest.predict(Xf),
                                        max(5, repeats // 2))
    figures.append(_figure("score_trees_10k", ours, base, "<= 1x sklearn predict"))
    return figures


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    rows = run(quick=quick)
    print(f"{'figure':<21} {'value':>9} {'baseline':>9} {'ratio':>6}  unit    goal")
    for f in rows:
        print(f"{f['name']:<21} {f['value']:>9.3f} {f['baseline']:>9.3f} {f['ratio']:>6.2f}  {f['unit']}  {f['goal']}")
