"""Train a candidate model for a round: scikit-learn on the public data + revealed shards, exported to the
integer format by ml.export. Small and fast (seconds); used by the simulator, the demo miner and tests.

``size="small"`` is a cheaper profile of every family (the round simulator's CI runs: ~0.1–0.3 s per fit on
2 000–8 000 rows): narrower MLPs trained for a fixed 20 epochs in 1 000-row mini-batches at a higher learning
rate (no early-stopping validation pass, which costs an accuracy evaluation per epoch), and fewer, shallower
trees. On the default synthetic task the small MLP is about as accurate as the default one (~0.8 test
accuracy on 8 000 rows).

``recent_rows`` keeps only the newest rows (the latest revealed shards first, the public data last): on a
drifting task (ml.generator.drift) old shards describe a concept that has moved on, so a model fitted on the
latest shards beats one fitted on everything; on a stationary task every row is drawn alike, so the newest n
rows are as good as any n."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from ml.errors import ModelError
from ml.export import from_sklearn
from ml.model import DEFAULT_CAPS, Model, ModelCaps
from ml.task import Dataset, TaskSpec

FAMILIES = ("linear", "mlp", "forest", "extra", "tree", "boosted-linear", "gbdt")
GBDT_MODEL_BYTES = 512 << 10  # a gbdt candidate's iterations are capped so its model stays about this size
                             # (genesis caps a model at 1 MiB by default)
SIZES = ("default", "small")


def categorical_columns(spec: TaskSpec) -> list[int]:
    """Feature indexes of the spec's categorical columns with at most 254 categories (codes 0..254: what
    HistGradientBoosting's native categorical splits take; ml.export_boosted compiles them exactly)."""
    from ml.encoding import CategoricalColumn
    if spec.encoding is None:
        return []
    out, at = [], 0
    for c in spec.encoding.columns:
        if isinstance(c, CategoricalColumn) and len(c.categories) <= 254:
            out.append(at)
        at += c.width
    return out


def gbdt_estimator(seed: int, spec: TaskSpec, *, small: bool = False):
    """HistGradientBoosting (learning rate 0.05, early stopping on 10 % of the rows, a CSV task's categories as
    categories, depth <= 8: compiled categorical splits add levels, and the model's depth is capped at 32), its
    iterations capped so that the exported model (k trees per iteration when k > 2, ~90 nodes of k int32 votes
    each) stays near GBDT_MODEL_BYTES."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    k = spec.n_classes
    per_iteration = k if k > 2 else 1
    budget = max(10, GBDT_MODEL_BYTES // (90 * (4 * k + 12) * per_iteration))
    return HistGradientBoostingClassifier(max_iter=min(60 if small else 800, budget), learning_rate=0.05,
                                          max_leaf_nodes=31, max_depth=8, early_stopping=True,
                                          validation_fraction=0.1, n_iter_no_change=30,
                                          categorical_features=categorical_columns(spec) or None, random_state=seed)


def _estimator(family: str, seed: int, n_rows: int, size: str = "default", spec: TaskSpec | None = None):
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {SIZES}")
    small = size == "small"
    if family == "linear":  # already cheap: one profile
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.5 + (seed % 4) * 0.5))
    if family == "boosted-linear":  # a wider linear baseline: stronger regularisation variety
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.05))
    if family == "mlp" and small:
        hidden = ((24,), (32,), (32, 16))[seed % 3]
        return make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=hidden, batch_size=1000,
                                                             learning_rate_init=0.015, max_iter=20,
                                                             random_state=seed))
    if family == "mlp":
        hidden = ((48,), (64, 32), (64,))[seed % 3]
        return make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=hidden, max_iter=200,
                                                             early_stopping=True, random_state=seed))
    if family == "forest":
        return RandomForestClassifier(n_estimators=12 if small else 24, max_depth=10, min_samples_leaf=3,
                                      random_state=seed, n_jobs=1)
    if family == "extra":
        return ExtraTreesClassifier(n_estimators=16 if small else 32, max_depth=10 if small else 12,
                                    min_samples_leaf=2, random_state=seed, n_jobs=1)
    if family == "tree":
        return DecisionTreeClassifier(max_depth=6 + seed % 4, min_samples_leaf=5, random_state=seed)
    if family == "gbdt":
        if spec is None:
            raise ValueError("gbdt needs the task spec")
        return gbdt_estimator(seed, spec, small=small)
    raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")


def training_data(public: Dataset, revealed: Sequence[Dataset] = (),
                  recent_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Public rows then every revealed shard in round order; with ``recent_rows``, only the newest that many
    (the tail of that order: the latest shards, reaching into older ones and the public data only if needed)."""
    parts = [public] + list(revealed)
    if recent_rows is not None:
        if recent_rows < 1:
            raise ValueError(f"recent_rows must be positive, got {recent_rows}")
        kept, need = [], recent_rows
        for d in reversed(parts):
            if need <= 0:
                break
            take = min(need, len(d.y))
            kept.append((d.X[len(d.y) - take:], d.y[len(d.y) - take:]))
            need -= take
        kept.reverse()
        return np.concatenate([x for x, _ in kept]), np.concatenate([y for _, y in kept])
    X = np.concatenate([d.X for d in parts]) if revealed else public.X
    y = np.concatenate([d.y for d in parts]) if revealed else public.y
    return X, y


def train_candidate(family: str, public: Dataset, revealed: Sequence[Dataset] = (), seed: int = 0, *,
                    max_rows: int | None = None, caps: ModelCaps = DEFAULT_CAPS, size: str = "default",
                    recent_rows: int | None = None) -> Model:
    """Fit ``family`` (in the ``size`` profile) on public data + revealed shards (only the newest
    ``recent_rows`` of them if given, then optionally a seeded subsample of ``max_rows``)."""
    X, y = training_data(public, revealed, recent_rows)
    if max_rows is not None and len(y) > max_rows:
        idx = np.random.default_rng(seed).choice(len(y), size=max_rows, replace=False)
        X, y = X[idx], y[idx]
    # one BLAS thread: the fits multiply small matrices (~1000 x 24 @ 24 x 32), where OpenBLAS's thread
    # hand-off costs more than the work (measured 17x slower with 2 threads on a loaded 2-core machine)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # small max_iter is deliberate (speed)
        est = _estimator(family, seed, len(y), size, public.spec).fit(X.astype(np.float64), y)
    return from_sklearn(est, public.spec, X_ref=X, caps=caps)


def fit_family(family: str, X: np.ndarray, y: np.ndarray, spec: TaskSpec, *, seed: int = 0,
               caps: ModelCaps = DEFAULT_CAPS, size: str = "default") -> Model:
    """``family`` fitted on integer rows X (as float64) and class indexes y, exported (ModelError if it does not
    fit the caps). One BLAS/OpenMP thread, as ``train_candidate``."""
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = _estimator(family, seed, len(y), size, spec).fit(np.asarray(X, dtype=np.float64), y)
        try:
            return from_sklearn(est, spec, X_ref=X, caps=caps)
        except ModelError:
            if family != "gbdt" or getattr(est, "categorical_features", None) is None:
                raise
            # compiled category tests made it too deep for the caps: the same fit on the ordinal codes
            est.set_params(categorical_features=None).fit(np.asarray(X, dtype=np.float64), y)
    return from_sklearn(est, spec, X_ref=X, caps=caps)
