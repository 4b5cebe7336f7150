"""Task loaders (CSV errors name row and column) and the user-facing PopPredictor."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from ml.errors import ModelError, TaskError
from ml.export import from_sklearn
from ml.predictor import PopPredictor
from ml.task import TaskSpec, load_builtin, load_csv


@pytest.mark.parametrize("name,d,k", [("digits", 64, 10), ("breast_cancer", 30, 2), ("wine", 13, 3), ("iris", 4, 3)])
def test_builtins_are_integer_and_bounded(name, d, k):
    ds = load_builtin(name)
    assert ds.X.dtype == np.int64 and ds.X.shape[1] == d and ds.spec.n_classes == k
    assert np.abs(ds.X).max() <= ds.spec.max_abs
    assert TaskSpec.from_obj(ds.spec.to_obj()) == ds.spec


def test_unknown_builtin():
    with pytest.raises(TaskError, match="unknown dataset"):
        load_builtin("mnist")


def test_csv_loads_and_quantises(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b,label\n0.5,1,yes\n-0.25,2,no\n1,3,yes\n")
    ds = load_csv(p, "label", scale_bits=2)
    assert ds.spec.classes == ("no", "yes")
    assert ds.X.tolist() == [[2, 4], [-1, 8], [4, 12]]
    assert ds.y.tolist() == [1, 0, 1]
    assert ds.spec.encoding is not None and ds.spec.scale_bits == 0


@pytest.mark.parametrize("text,match", [
    ("a,label\n1,x\n2\n", r"row 3 has 1 columns"),
    ("a,b\n1,2\n", r"label column 'label' not in header"),
    ("", "empty file"),
    ("a,label\n1,x\n2,x\n", "at least 2 distinct labels"),
    ("a,label\n1,x\n2,\n", r"row 3, column 'label': missing label"),
    ("a,a,label\n1,2,x\n", "duplicate column names"),
])
def test_csv_errors_name_row_and_column(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(TaskError, match=match):
        load_csv(p, "label")


def test_csv_missing_file(tmp_path):
    with pytest.raises(TaskError, match="cannot read"):
        load_csv(tmp_path / "nope.csv", "label")


def test_predictor_is_sklearn_like_and_round_trips_files(tmp_path):
    ds = load_builtin("iris")
    est = LogisticRegression(max_iter=500).fit(ds.X.astype(float), ds.y)
    pred = PopPredictor(from_sklearn(est, ds.spec), ds.spec)
    assert list(pred.classes_) == [0, 1, 2]
    assert pred.score(ds.X, ds.y) > 0.9
    path = tmp_path / "champion.pop"
    pred.save(path)
    loaded = PopPredictor.load(path)
    assert loaded.model_bytes == pred.model_bytes and loaded.spec == ds.spec
    assert np.array_equal(loaded.predict(ds.X), pred.predict(ds.X))
    from sklearn.datasets import load_iris
    assert np.array_equal(loaded.predict_raw(load_iris().data), pred.predict(ds.X))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ModelError):
        PopPredictor.load(path)
