"""ONNX export (ml/onnx_export.py): onnxruntime agrees 100 % with popchain's own integer scoring, per family.

The rows are the task's held-out split in original units (what ``holdout.csv`` holds) plus hostile rows: values
beyond max_abs (clipped in the graph as quantise clips them), half-way values (round half to even) and exact
ties between classes (lowest index wins).
"""
from __future__ import annotations

import numpy as np
import pytest

from ml.model import DEFAULT_CAPS, LinearModel, MLPModel, TreesModel, decode_model, encode_model
from ml.onnx_export import OnnxPredictor, agreement, to_onnx
from ml.score import predict
from ml.shards import demo_task
from ml.task import quantise
from ml.training import train_candidate


@pytest.fixture(scope="module")
def task():
    public, _secret, test = demo_task(b"onnx-export-test-seed-0123456789", n_rounds=2, shard_size=50,
                                      n_train=1500, n_test=400)
    return public, test


def _rows(spec, test) -> np.ndarray:
    x = test.X.astype(np.float64) / float(1 << spec.scale_bits)
    rng = np.random.default_rng(1)
    big = rng.normal(size=(50, spec.n_features)) * (spec.max_abs / (1 << spec.scale_bits)) * 3   # clipped
    half = (rng.integers(-50, 50, size=(50, spec.n_features)) + 0.5) / float(1 << spec.scale_bits)
    return np.concatenate([x, big, half])


@pytest.mark.parametrize("family", ["linear", "mlp", "forest", "extra"])
def test_onnx_agrees_with_popchain_scoring(task, family: str) -> None:
    public, test = task
    spec = public.spec
    model = train_candidate(family, public.training, seed=3, size="small")
    model = decode_model(encode_model(model), spec, DEFAULT_CAPS)   # exactly what a node would score
    data = to_onnx(model, spec, DEFAULT_CAPS, metadata={"family": family})
    same, n = agreement(data, model, spec, _rows(spec, test))
    assert same == n == len(test) + 100


def test_ties_go_to_the_lowest_index_and_shifts_floor(task) -> None:
    public, _ = task
    spec = public.spec
    d, k = spec.n_features, spec.n_classes
    x = np.random.default_rng(2).normal(size=(64, d))
    flat = LinearModel(np.zeros((d, k), dtype=np.int64), np.array([0] + [5] * (k - 1), dtype=np.int64))
    labels = OnnxPredictor(to_onnx(flat, spec, DEFAULT_CAPS)).predict(x)
    assert set(labels.tolist()) == {1}     # classes 1..k-1 tie on 5: the lowest of them
    W1 = np.random.default_rng(3).integers(-7, 8, size=(d, 6))
    mlp = MLPModel(((W1, np.arange(6) - 3), (np.ones((6, k), dtype=np.int64), np.zeros(k, dtype=np.int64))), (3,))
    assert np.array_equal(OnnxPredictor(to_onnx(mlp, spec, DEFAULT_CAPS)).predict(x),
                          predict(mlp, quantise(x, spec.scale_bits, spec.max_abs)))
    stump = TreesModel(np.array([0]), np.array([0, -1, -1]), np.array([0, 0, 0]), np.array([1, -1, -1]),
                       np.array([2, -1, -1]), np.array([[0] * k, [3] * k, [0, 2] + [2] * (k - 2)]))
    onnx_labels = OnnxPredictor(to_onnx(stump, spec, DEFAULT_CAPS)).predict(x)
    assert np.array_equal(onnx_labels, predict(stump, quantise(x, spec.scale_bits, spec.max_abs)))
    assert set(onnx_labels.tolist()) <= {0, 1}


def test_a_damaged_onnx_file_is_a_model_error() -> None:
    from ml.errors import ModelError
    with pytest.raises(ModelError, match="onnx"):
        OnnxPredictor(b"\x08\x07garbage")


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def _models(draw):
    from ml.task import TaskSpec
    d, k = draw(st.integers(1, 5)), draw(st.integers(2, 4))
    spec = TaskSpec("prop", d, draw(st.integers(0, 8)), tuple(f"c{i}" for i in range(k)), max_abs=draw(
        st.sampled_from([1, 255, (1 << 20) - 1])))
    ints = lambda n, lo, hi: np.array(draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)),  # noqa: E731
                                      dtype=np.int64)
    family = draw(st.sampled_from(["linear", "mlp", "trees"]))
    if family == "linear":
        model = LinearModel(ints(d * k, -9, 9).reshape(d, k), ints(k, -50, 50))
    elif family == "mlp":
        h = draw(st.integers(1, 4))
        model = MLPModel(((ints(d * h, -9, 9).reshape(d, h), ints(h, -50, 50)),
                          (ints(h * k, -9, 9).reshape(h, k), ints(k, -50, 50))), (draw(st.integers(0, 6)),))
    else:   # one stump per tree: root split on a feature, two leaves with small votes
        T = draw(st.integers(1, 3))
        feature, threshold, left, right, value = [], [], [], [], []
        for t in range(T):
            base = 3 * t
            feature += [draw(st.integers(0, d - 1)), -1, -1]
            threshold += [draw(st.integers(-300, 300)), 0, 0]
            left += [base + 1, -1, -1]
            right += [base + 2, -1, -1]
            value += [[0] * k, list(ints(k, 0, 3)), list(ints(k, 0, 3))]
        model = TreesModel(np.arange(T, dtype=np.int64) * 3, np.array(feature), np.array(threshold),
                           np.array(left), np.array(right), np.array(value, dtype=np.int64))
    x = np.array(draw(st.lists(st.lists(st.floats(-1e7, 1e7, allow_nan=False), min_size=d, max_size=d),
                               min_size=1, max_size=8)), dtype=np.float64)
    return spec, model, x


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_models())
def test_onnx_equals_popchain_on_random_models(case) -> None:
    """Property: for any small valid model and any finite rows, the ONNX graph predicts exactly what popchain's
    integer scoring predicts after quantise (ties, clipping, half-way rounding, shifts, tree thresholds)."""
    spec, model, x = case
    encoded = encode_model(model)
    try:
        model = decode_model(encoded, spec, DEFAULT_CAPS)
    except Exception:      # a drawn model the decoder refuses is not a model anyone could crown
        return
    same, n = agreement(to_onnx(model, spec, DEFAULT_CAPS), model, spec, x)
    assert same == n
