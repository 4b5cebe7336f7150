"""PopPredictor: a scikit-learn-style wrapper so a user can load the champion and use it.

``predict`` takes the task's integer features (``Dataset.X``); ``predict_raw`` quantises raw float features
with the task's scale first. Classes are the task's class indices; ``class_names`` gives their labels.
Files: canonical msgpack ``[1, spec, model bytes]`` — data only, validated on load.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .codec import check_bytes, check_int, check_list, pack, unpack_canonical
from .errors import ModelError
from .model import DEFAULT_CAPS, Model, ModelCaps, decode_model, encode_model
from .score import predict
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
        return self.predict(quantise(X, self.spec.scale_bits, self.spec.max_abs))

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
