"""Tasks: what a model is asked to classify, and the integer datasets it is scored on.

Features become integers ONCE, at task creation. Built-in and synthetic tasks quantise float features:
``x_int = clip(round(x * 2**scale_bits), ±max_abs)``. A CSV task carries a committed column encoding in its spec
(``ml.encoding``: numeric and categorical columns, missing values), applied to raw rows by ``load_csv`` and
``read_feature_csv`` alike. Everything downstream (training, export, scoring, shards) sees only the integers.
"""
from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .codec import check_int, check_list, check_str, decode_array, encode_array
from .encoding import Encoding, fit_encoding
from .errors import TaskError
from .table import read_table

MAX_FEATURES = 4096
MAX_CLASSES = 256
MAX_SCALE_BITS = 24
MAX_ABS_LIMIT = (1 << 31) - 1  # features always fit int32
DEFAULT_MAX_ABS = (1 << 20) - 1


@dataclass(frozen=True)
class TaskSpec:
    name: str
    n_features: int
    scale_bits: int
    classes: tuple[str, ...]
    max_abs: int = DEFAULT_MAX_ABS  # every feature value satisfies |x| <= max_abs (the overflow bound's max|x|)
    encoding: Encoding | None = None  # CSV tasks: how raw rows become the features (then scale_bits = 0)

    def __post_init__(self) -> None:
        check_str(self.name, 64, TaskError, "spec.name")
        check_int(self.n_features, 1, MAX_FEATURES, TaskError, "spec.n_features")
        check_int(self.scale_bits, 0, MAX_SCALE_BITS, TaskError, "spec.scale_bits")
        check_int(self.max_abs, 1, MAX_ABS_LIMIT, TaskError, "spec.max_abs")
        if not 2 <= len(self.classes) <= MAX_CLASSES:
            raise TaskError(f"spec.classes: need 2..{MAX_CLASSES} classes, got {len(self.classes)}")
        for i, c in enumerate(self.classes):
            check_str(c, 64, TaskError, f"spec.classes[{i}]")
        if len(set(self.classes)) != len(self.classes):
            raise TaskError("spec.classes: duplicate class names")
        if self.encoding is not None:
            if self.encoding.width != self.n_features:
                raise TaskError(f"spec.encoding: {self.encoding.width} features, the spec says {self.n_features}")
            if self.scale_bits != 0:
                raise TaskError("spec.scale_bits: must be 0 with an encoding (each column has its own scale)")
            if self.encoding.max_abs > self.max_abs:
                raise TaskError(f"spec.encoding: features up to {self.encoding.max_abs} exceed max_abs={self.max_abs}")

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to_obj(self) -> list[Any]:
        head = [self.name, self.n_features, self.scale_bits, list(self.classes), self.max_abs]
        return head if self.encoding is None else head + [self.encoding.to_obj()]

    @classmethod
    def from_obj(cls, obj: Any) -> TaskSpec:
        f = check_list(obj, None, TaskError, "spec", max_len=6)
        if len(f) not in (5, 6):
            raise TaskError(f"spec: expected 5 items (6 with an encoding), got {len(f)}")
        classes = check_list(f[3], None, TaskError, "spec.classes", max_len=MAX_CLASSES)
        return cls(name=check_str(f[0], 64, TaskError, "spec.name"),
                   n_features=check_int(f[1], 1, MAX_FEATURES, TaskError, "spec.n_features"),
                   scale_bits=check_int(f[2], 0, MAX_SCALE_BITS, TaskError, "spec.scale_bits"),
                   classes=tuple(check_str(c, 64, TaskError, f"spec.classes[{i}]") for i, c in enumerate(classes)),
                   max_abs=check_int(f[4], 1, MAX_ABS_LIMIT, TaskError, "spec.max_abs"),
                   encoding=Encoding.from_obj(f[5]) if len(f) == 6 else None)


@dataclass(frozen=True)
class Dataset:
    spec: TaskSpec
    X: np.ndarray  # int64 (n, n_features), |X| <= spec.max_abs
    y: np.ndarray  # int64 (n,), values in [0, n_classes)

    def __post_init__(self) -> None:
        check_dataset_arrays(self.spec, self.X, self.y, "dataset")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: np.ndarray) -> Dataset:
        return Dataset(self.spec, self.X[idx], self.y[idx])


def check_dataset_arrays(spec: TaskSpec, X: np.ndarray, y: np.ndarray, field: str) -> None:
    if X.ndim != 2 or X.shape[1] != spec.n_features or X.dtype != np.int64:
        raise TaskError(f"{field}.X: expected int64 (n, {spec.n_features}), got {X.dtype} {X.shape}")
    if y.ndim != 1 or y.shape[0] != X.shape[0] or y.dtype != np.int64:
        raise TaskError(f"{field}.y: expected int64 ({X.shape[0]},), got {y.dtype} {y.shape}")
    if X.size and int(np.abs(X).max()) > spec.max_abs:
        raise TaskError(f"{field}.X: a value exceeds max_abs={spec.max_abs}")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= spec.n_classes):
        raise TaskError(f"{field}.y: labels must lie in [0, {spec.n_classes})")


def encode_xy(X: np.ndarray, y: np.ndarray) -> list[Any]:
    return [encode_array(X), encode_array(y)]


def decode_xy(obj: Any, spec: TaskSpec, field: str, max_rows: int) -> tuple[np.ndarray, np.ndarray]:
    parts = check_list(obj, 2, TaskError, field)
    X = decode_array(parts[0], TaskError, f"{field}.X", ndim=2, shape=(None, spec.n_features),
                     max_elements=max_rows * spec.n_features)
    y = decode_array(parts[1], TaskError, f"{field}.y", ndim=1, shape=(X.shape[0],), max_elements=max_rows)
    X, y = X.astype(np.int64), y.astype(np.int64)
    check_dataset_arrays(spec, X, y, field)
    return X, y


def quantise(X: np.ndarray, scale_bits: int, max_abs: int) -> np.ndarray:
    Xf = np.asarray(X, dtype=np.float64)
    if not np.all(np.isfinite(Xf)):
        raise TaskError("features: NaN or infinite value")
    return np.clip(np.rint(Xf * float(1 << scale_bits)), -max_abs, max_abs).astype(np.int64)


def make_dataset(name: str, X: np.ndarray, y_labels: np.ndarray, scale_bits: int,
                 classes: tuple[str, ...] | None = None) -> Dataset:
    """Quantise float features and index labels; ``max_abs`` is the data's own maximum (at least 1)."""
    Xf = np.asarray(X, dtype=np.float64)
    if Xf.ndim != 2 or Xf.shape[0] == 0:
        raise TaskError(f"features: expected a non-empty 2-D table, got shape {Xf.shape}")
    Xq = quantise(Xf, scale_bits, MAX_ABS_LIMIT)
    max_abs = max(1, int(np.abs(Xq).max()))
    if classes is None:
        uniq = np.unique(y_labels)
        classes = tuple(str(u) for u in uniq)
        y = np.searchsorted(uniq, y_labels).astype(np.int64)
    else:
        y = np.asarray(y_labels, dtype=np.int64)
    spec = TaskSpec(name=name, n_features=Xf.shape[1], scale_bits=scale_bits, classes=classes, max_abs=max_abs)
    return Dataset(spec, Xq, y)


# scale bits per built-in: digits are already small integers; the others keep ~3 significant digits
_BUILTIN_SCALE = {"digits": 0, "iris": 4, "wine": 6, "breast_cancer": 10}


def load_builtin(name: str) -> Dataset:
    """digits / breast_cancer / wine / iris from scikit-learn (bundled, no download)."""
    from sklearn import datasets

    if name not in _BUILTIN_SCALE:
        raise TaskError(f"builtin: unknown dataset {name!r}; choose from {sorted(_BUILTIN_SCALE)}")
    bunch = getattr(datasets, f"load_{name}")()
    classes = tuple(str(c) for c in bunch.target_names)
    return make_dataset(name, bunch.data, bunch.target.astype(np.int64), _BUILTIN_SCALE[name], classes)


def _label_index(path: Path, label_column: str, labels: list[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Class names (numbers in numeric order, then strings) and each row's class index."""
    uniq = sorted(set(labels), key=lambda s: (0, float(s), s) if _is_number(s) else (1, 0.0, s))
    if len(uniq) < 2:
        raise TaskError(f"{path}: column {label_column!r} needs at least 2 distinct labels")
    if len(uniq) > MAX_CLASSES:
        raise TaskError(f"{path}: column {label_column!r} has {len(uniq)} distinct labels; at most {MAX_CLASSES}")
    index = {c: i for i, c in enumerate(uniq)}
    return tuple(uniq), np.array([index[c] for c in labels], dtype=np.int64)


def load_csv(path: str | Path, label_column: str, *, scale_bits: int | None = None, name: str | None = None,
             categorical: tuple[str, ...] = (), max_rows: int = 1_000_000) -> Dataset:
    """A CSV file with a header row, as users have it: numeric and categorical (text) columns, missing values
    (``ml.encoding.DEFAULT_MISSING``: blank, "?", "NA", ...). The task's encoding is fitted on the file and
    committed in the spec; ``scale_bits`` forces one scale on every numeric column, ``categorical`` names
    numeric-looking columns to treat as categories (codes, ids)."""
    path = Path(path)
    table = read_table(path, label_column, label_required=True, max_rows=max_rows)
    assert table.labels is not None
    classes, y = _label_index(path, label_column, table.labels)
    enc = fit_encoding(table, label_column, categorical=categorical, scale_bits=scale_bits)
    X = enc.encode(table)
    if enc.width > MAX_FEATURES:
        raise TaskError(f"{path}: {enc.width} features after encoding; at most {MAX_FEATURES}")
    spec = TaskSpec(name=name or path.stem[:64], n_features=enc.width, scale_bits=0, classes=classes,
                    max_abs=enc.max_abs, encoding=enc)
    return Dataset(spec, X, y)


def read_feature_csv(path: str | Path, spec: TaskSpec, *, label_column: str | None = "label",
                     max_rows: int = 1_000_000) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows to predict on, as the task reads them: (integer features, class indexes or None). A CSV task
    (``spec.encoding``) takes its raw columns by name (any order, extra columns ignored; missing values and
    categories as the encoding says); other tasks take the feature columns in order, in original units.
    The label column is optional (``label_column`` if the header has it, else the task's own label column);
    its values must be class names of the task."""
    path = Path(path)
    enc = spec.encoding
    if enc is not None:
        table = read_table(path, label_column, label_required=False, max_rows=max_rows)
        if table.labels is None and label_column != enc.label and enc.label in table.columns:
            label_column = enc.label
            table = read_table(path, label_column, label_required=False, max_rows=max_rows)
        X = enc.encode(table)
    else:
        table = read_table(path, label_column, label_required=False, max_rows=max_rows)
        if len(table.columns) != spec.n_features:
            raise TaskError(f"{path}: {len(table.columns)} feature columns, the task has {spec.n_features}")
        values = np.empty((len(table), spec.n_features), dtype=np.float64)
        for i, row in enumerate(table.rows):
            for j, cell in enumerate(row):
                values[i, j] = _legacy_number(cell, table.where(i, table.columns[j]))
        X = quantise(values, spec.scale_bits, spec.max_abs)
    if table.labels is None:
        return X, None
    index = {c: i for i, c in enumerate(spec.classes)}
    unknown = sorted(set(table.labels) - index.keys())
    if unknown:
        raise TaskError(f"{path}: column {label_column!r} has labels not in the task: {unknown[:5]}")
    return X, np.array([index[c] for c in table.labels], dtype=np.int64)


def _legacy_number(cell: str, where: str) -> float:
    if not cell:
        raise TaskError(f"{where}: missing value")
    try:
        v = float(cell)
    except ValueError:
        raise TaskError(f"{where}: non-numeric value {cell!r}") from None
    if not math.isfinite(v):
        raise TaskError(f"{where}: non-finite value {cell!r}")
    return v


def write_feature_csv(path: str | Path, dataset: Dataset, *, label_column: str | None = None) -> None:
    """The inverse of read_feature_csv: a CSV task's raw columns (``Encoding.decode``, exact) and its label
    column; other tasks' original units (X / 2^scale_bits, exact) as f0, f1, ... and ``label``."""
    spec = dataset.spec
    enc = spec.encoding
    with Path(path).open("w", newline="") as fh:
        writer = csv.writer(fh)
        if enc is not None:
            writer.writerow([c.name for c in enc.columns] + [label_column or enc.label])
            for cells, label in zip(enc.decode(dataset.X), dataset.y):
                writer.writerow(cells + [spec.classes[int(label)]])
            return
        scale = float(1 << spec.scale_bits)
        writer.writerow([f"f{i}" for i in range(spec.n_features)] + [label_column or "label"])
        for xrow, label in zip(dataset.X, dataset.y):
            writer.writerow([repr(float(v) / scale) for v in xrow] + [spec.classes[int(label)]])


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def synthetic(seed: bytes, n_samples: int = 26_000, *, n_features: int = 24, n_classes: int = 4,
              n_informative: int = 8, clusters_per_class: int = 4, label_noise: float = 0.08,
              scale_bits: int = 8) -> Dataset:
    """``n_samples`` rows of the synthetic task of a secret seed (deterministic given the seed): the integer
    generator of ml.generator (the same one a generated hidden shard replays), its world drawn from ``seed``.

    Each class is a mixture of clusters at random hypercube vertices of an informative subspace, so classes are
    not linearly separable (trees / MLPs beat linear models); a few features are products of informative ones,
    the rest noise, and ``label_noise`` of the labels are reassigned uniformly at random.
    """
    from .generator import MAX_GEN_ELEMENTS, generate, world_from_seed

    world = world_from_seed(seed, n_features=n_features, n_classes=n_classes, n_informative=n_informative,
                            clusters_per_class=clusters_per_class, label_noise=label_noise, scale_bits=scale_bits)
    check_int(n_samples, n_classes * 10, 10_000_000, TaskError, "synthetic.n_samples")
    chunk = MAX_GEN_ELEMENTS // n_features
    parts = [generate(world, hashlib.sha256(b"popchain/synthetic-rows" + seed + i.to_bytes(4, "big")).digest(),
                      min(chunk, n_samples - start))
             for i, start in enumerate(range(0, n_samples, chunk))]
    if len(parts) == 1:
        return parts[0]
    return Dataset(world.spec, np.concatenate([p.X for p in parts]), np.concatenate([p.y for p in parts]))
