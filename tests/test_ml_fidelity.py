"""Each exporter agrees >= 99.5% with its float model on held-out rows and loses < 0.5 pp accuracy."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

from ml.errors import ModelError
from ml.export import agreement, from_sklearn
from ml.model import decode_model, encode_model
from ml.score import score
from ml.task import load_builtin


@pytest.fixture(scope="module")
def digits():
    ds = load_builtin("digits")
    Xtr, Xte, ytr, yte = train_test_split(ds.X, ds.y, test_size=0.3, random_state=0, stratify=ds.y)
    return ds.spec, Xtr, Xte, ytr, yte


@pytest.fixture(scope="module")
def cancer():
    ds = load_builtin("breast_cancer")
    Xtr, Xte, ytr, yte = train_test_split(ds.X, ds.y, test_size=0.3, random_state=0, stratify=ds.y)
    return ds.spec, Xtr, Xte, ytr, yte


ESTIMATORS = {
    "logistic": lambda: LogisticRegression(max_iter=500),
    "linear_svc": lambda: LinearSVC(),
    "sgd": lambda: SGDClassifier(random_state=0),
    "ridge": lambda: RidgeClassifier(),
    "mlp": lambda: MLPClassifier((32,), max_iter=200, random_state=0),
    "decision_tree": lambda: DecisionTreeClassifier(random_state=0),
    "random_forest": lambda: RandomForestClassifier(20, random_state=0),
    "extra_trees": lambda: ExtraTreesClassifier(20, random_state=0),
}


def _check(est, spec, Xtr, Xte, ytr, yte):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(Xtr.astype(np.float64), ytr)
    model = decode_model(encode_model(from_sklearn(est, spec, Xtr)), spec)  # through the wire format
    agree = agreement(model, est, Xte)
    acc_int = score(model, Xte, yte).accuracy
    acc_float = est.score(Xte.astype(np.float64), yte)
    assert agree >= 0.995, agree
    assert abs(acc_int - acc_float) <= 0.005, (acc_int, acc_float)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_exporter_fidelity_on_digits(name, digits):
    _check(ESTIMATORS[name](), *digits)


@pytest.mark.parametrize("make", [
    lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
    lambda: make_pipeline(MinMaxScaler(), LinearSVC()),
    lambda: make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=300, random_state=0)),
])
def test_scaled_pipeline_fidelity_on_breast_cancer(make, cancer):
    _check(make(), *cancer)


def test_unsupported_estimator_is_a_model_error(digits):
    from sklearn.neighbors import KNeighborsClassifier

    spec, Xtr, _, ytr, _ = digits
    with pytest.raises(ModelError, match="estimator"):
        from_sklearn(KNeighborsClassifier().fit(Xtr, ytr), spec)


def test_non_relu_mlp_is_refused(digits):
    spec, Xtr, _, ytr, _ = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPClassifier((4,), activation="tanh", max_iter=5).fit(Xtr, ytr)
    with pytest.raises(ModelError, match="activation"):
        from_sklearn(est, spec)
