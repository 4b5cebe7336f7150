"""PopPredictor: a scikit-learn-style wrapper so a user can load the champion and use it.

``predict`` takes the task's integer features (``Dataset.X``); ``predict_raw`` quantises raw float features
with the task's scale first; a CSV task's rows as the file has them (``{column: cell}``) go to ``predict_rows``,
which applies the task's committed encoding. Classes are the task's class indices; ``class_names`` their labels.
Files: canonical msgpack ``[1, spec, model bytes]`` — data only, validated on load.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .codec import check_bytes, check_int, check_list, pack, unpack_canonical
from .errors import ModelError
from .model import DEFAULT_CAPS, Model, ModelCaps, decode_model, encode_model
from .score import predict
from .table import Table
from .task import TaskSpec, quantise


class PopPredictor:
    def __init__(self, model: Model, spec: TaskSpec) -> None:
        self.model = model
        self.spec = spec
        self.classes_ = np.arange(spec.n_classes, dtype=np.int64)
        self.class_names = spec.classes
        self.n_features_in_ = spec.n_features

    def predict(self, X: np.ndarray) -> np.ndarray:
        return predict(self.model, np.asarray(X, dtype=np.int64))

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        if self.spec.encoding is not None:
            raise ModelError("predict_raw: a CSV task's rows carry text and missing cells; use predict_rows")
        return self.predict(quantise(X, self.spec.scale_bits, self.spec.max_abs))

    def predict_rows(self, rows: Sequence[Mapping[str, str]]) -> np.ndarray:
        """Class indexes for a CSV task's rows as the file has them, ``{column: cell text}`` (a column a row
        lacks counts as a blank cell)."""
        enc = self.spec.encoding
        if enc is None:
            raise ModelError("predict_rows: this task has no column encoding; use predict_raw")
        names = tuple(c.name for c in enc.columns)
        cells = [[str(r.get(n, "")).strip() for n in names] for r in rows]
        return self.predict(enc.encode(Table("rows", names, cells, None, list(range(1, len(cells) + 1)))))

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y))) if len(y) else 0.0

    @property
    def model_bytes(self) -> bytes:
        return encode_model(self.model)

    @classmethod
    def from_bytes(cls, model_bytes: bytes, spec: TaskSpec, caps: ModelCaps = DEFAULT_CAPS) -> PopPredictor:
        return cls(decode_model(model_bytes, spec, caps), spec)

    def save(self, path: str | Path) -> None:
        tmp = Path(str(path) + ".tmp")
        tmp.write_bytes(pack([1, self.spec.to_obj(), self.model_bytes]))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, caps: ModelCaps = DEFAULT_CAPS) -> PopPredictor:
        data = Path(path).read_bytes()
        obj = unpack_canonical(data, max_size=caps.max_bytes + (1 << 20), err=ModelError, field="predictor")
        f = check_list(obj, 3, ModelError, "predictor")
        check_int(f[0], 1, 1, ModelError, "predictor.version")
        spec = TaskSpec.from_obj(f[1])
        return cls.from_bytes(check_bytes(f[2], None, ModelError, "predictor.model"), spec, caps)
