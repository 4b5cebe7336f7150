"""Hostile model bytes: every malformation is a typed ModelError naming the field; never a crash."""
from __future__ import annotations

import tracemalloc

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.errors import ModelError
from ml.model import LinearModel, MLPModel, ModelCaps, TreesModel, decode_model, encode_model
from ml.task import TaskSpec

SPEC = TaskSpec("t", 4, 0, ("a", "b", "c"), 100)


def arr(dtype: str, shape: list[int], data: bytes) -> list:
    return [dtype, shape, data]


def good_linear() -> LinearModel:
    return LinearModel(np.arange(12).reshape(4, 3) - 6, np.array([1, -2, 3]))


def good_trees() -> TreesModel:
    # one stump: x0 <= 5 ? leaf(votes a) : leaf(votes c)
    return TreesModel(np.array([0]), np.array([0, -1, -1]), np.array([5, 0, 0]), np.array([1, -1, -1]),
                      np.array([2, -1, -1]), np.array([[0, 0, 0], [3, 0, 0], [0, 0, 3]]))


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def reject(data: bytes, match: str, caps: ModelCaps = ModelCaps()) -> None:
    with pytest.raises(ModelError, match=match):
        decode_model(data, SPEC, caps)


def test_good_models_round_trip():
    for m in (good_linear(), good_trees()):
        data = encode_model(m)
        assert encode_model(decode_model(data, SPEC)) == data


def test_wrong_dtype():
    w = np.zeros((4, 3), dtype="<f8").tobytes()
    reject(pack([1, "linear", arr("float64", [4, 3], w), arr("int8", [3], b"\0\0\0")]), r"model\.W\.dtype")
    reject(pack([1, "linear", arr("uint8", [4, 3], bytes(12)), arr("int8", [3], b"\0\0\0")]), r"model\.W\.dtype")


def test_shape_mismatch_with_task():
    reject(pack([1, "linear", arr("int8", [5, 3], bytes(15)), arr("int8", [3], bytes(3))]), r"model\.W\.shape\[0\]")
    reject(pack([1, "linear", arr("int8", [4, 3], bytes(12)), arr("int8", [2], bytes(2))]), r"model\.b\.shape\[0\]")


def test_data_length_must_match_shape():
    reject(pack([1, "linear", arr("int16", [4, 3], bytes(12)), arr("int8", [3], bytes(3))]), r"model\.W\.data")


def test_huge_declared_shapes_rejected_without_allocating():
    tracemalloc.start()
    try:
        huge = pack([1, "mlp", [[arr("int64", [4, 1 << 30], b""), arr("int64", [1 << 30], b"")],
                                [arr("int64", [1 << 30, 3], b""), arr("int64", [3], b"")]], [0]])
        reject(huge, r"model\.layers\[0\]\.W\.shape\[1\]")
        trees = pack([1, "trees", arr("int8", [1], b"\0"), arr("int64", [1 << 40], b""), arr("int64", [1], bytes(8)),
                      arr("int64", [1], bytes(8)), arr("int64", [1], bytes(8)), arr("int64", [1, 3], bytes(24))])
        reject(trees, r"model\.feature\.shape\[0\]")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_caps_on_bytes_params_and_madds():
    data = encode_model(good_linear())
    reject(data, "exceeds the cap", ModelCaps(max_bytes=len(data) - 1))
    reject(data, "caps", ModelCaps(max_params=5))
    rng = np.random.default_rng(0)
    mlp = MLPModel(((rng.integers(-3, 3, (4, 64)), np.zeros(64, int)), (rng.integers(-3, 3, (64, 3)), np.zeros(3, int))), (0,))
    reject(encode_model(mlp), "multiply-adds", ModelCaps(max_madds=100))
    reject(encode_model(mlp), r"model\.layers\[0\]\.W\.shape\[1\]", ModelCaps(max_width=32))


def test_too_many_hidden_layers():
    layers = [[arr("int8", [4, 2], bytes(8)), arr("int8", [2], bytes(2))]] + \
             [[arr("int8", [2, 2], bytes(4)), arr("int8", [2], bytes(2))]] * 4 + \
             [[arr("int8", [2, 3], bytes(6)), arr("int8", [3], bytes(3))]]
    reject(pack([1, "mlp", layers, [0] * 5]), r"model\.layers")


def test_overflow_bound_rejected():
    W = np.full((4, 3), (1 << 31) - 1, dtype=np.int64)
    spec = TaskSpec("t", 4, 0, ("a", "b", "c"), (1 << 31) - 1)
    with pytest.raises(ModelError, match="overflow bound"):
        decode_model(encode_model(LinearModel(W, np.zeros(3, int))), spec)
    # second layer overflows even though the first does not
    l1 = (np.full((4, 8), 1 << 20), np.zeros(8, int))
    l2 = (np.full((8, 3), 1 << 30), np.zeros(3, int))
    with pytest.raises(ModelError, match=r"model\.layers\[1\]: overflow"):
        decode_model(encode_model(MLPModel((l1, l2), (0,))), SPEC)


def test_int64_minimum_counts_as_huge_in_the_overflow_bound():
    # |-2^63| wraps to -2^63 in int64: the bound must not read it as small (it would let int and float paths
    # disagree, and float -> int64 conversion of out-of-range values is platform dependent)
    lo = np.iinfo(np.int64).min
    W = np.zeros((4, 3), dtype=np.int64)
    W[2, 1] = lo
    for model in (LinearModel(W, np.zeros(3, dtype=np.int64)),
                  LinearModel(np.zeros((4, 3), dtype=np.int64), np.array([0, lo, 0], dtype=np.int64)),
                  MLPModel(((np.zeros((4, 2), dtype=np.int64), np.array([lo, 0], dtype=np.int64)),
                            (np.ones((2, 3), dtype=np.int64), np.zeros(3, dtype=np.int64))), (0,))):
        with pytest.raises(ModelError, match="overflow bound"):
            decode_model(encode_model(model), SPEC)
    t = good_trees()
    value = t.value.astype(np.int64)
    value[1, 0] = lo
    with pytest.raises(ModelError, match="overflow bound"):
        decode_model(encode_model(TreesModel(t.roots, t.feature, t.threshold, t.left, t.right, value)), SPEC)


def test_trees_cycles_and_bad_links():
    t = good_trees()
    cyc = TreesModel(t.roots, t.feature, t.threshold, np.array([0, -1, -1]), t.right, t.value)  # self loop
    reject(encode_model(cyc), r"model\.left")
    back = TreesModel(np.array([0, 3]), np.concatenate([t.feature, t.feature]),
                      np.concatenate([t.threshold, t.threshold]), np.array([1, -1, -1, 1, -1, -1]),
                      np.array([2, -1, -1, 5, -1, -1]), np.concatenate([t.value, t.value]))
    reject(encode_model(back), r"model\.left")  # second tree points back into the first
    badfeat = TreesModel(t.roots, np.array([4, -1, -1]), t.threshold, t.left, t.right, t.value)
    reject(encode_model(badfeat), r"model\.feature")
    leafval = TreesModel(t.roots, t.feature, t.threshold, t.left, t.right, np.array([[1, 0, 0], [3, 0, 0], [0, 0, 3]]))
    reject(encode_model(leafval), r"model\.value")
    badroots = TreesModel(np.array([1]), t.feature, t.threshold, t.left, t.right, t.value)
    reject(encode_model(badroots), r"model\.roots")


def test_deep_tree_rejected():
    depth = 40  # a chain: node i -> (i+1, leaf)
    n = 2 * depth + 1
    feat, thr, left, right = [], [], [], []
    for i in range(depth):
        feat += [0]; thr += [0]; left += [2 * i + 2 if i < depth - 1 else 2 * i + 2]; right += [2 * i + 1]
        feat += [-1]; thr += [0]; left += [-1]; right += [-1]
    feat += [-1]; thr += [0]; left += [-1]; right += [-1]
    # renumber so that node 2i is internal, 2i+1 its leaf sibling: internal 2i -> left 2i+2, right 2i+1
    m = TreesModel(np.array([0]), np.array(feat), np.array(thr), np.array(left), np.array(right),
                   np.array([[0, 0, 0] if f >= 0 else [1, 0, 0] for f in feat]))
    assert m.feature.shape[0] == n
    reject(encode_model(m), "depth exceeds", ModelCaps(max_depth=32))
    decode_model(encode_model(m), SPEC, ModelCaps(max_depth=64))


def test_truncated_extra_fields_non_canonical_and_junk():
    data = encode_model(good_linear())
    for cut in range(len(data)):
        with pytest.raises(ModelError):
            decode_model(data[:cut], SPEC)
    obj = msgpack.unpackb(data)
    reject(pack(obj + [b"x"]), r"model\(linear\)")
    reject(data + b"\x00", "msgpack")
    reject(pack({"a": 1}), "type dict|map")
    reject(pack([1, "linear", obj[2], {"b": 1}]), "type dict|map")
    reject(pack([1, "forest", obj[2], obj[3]]), r"model\.family")
    reject(pack([2, "linear", obj[2], obj[3]]), r"model\.version")
    reject(pack([1, "linear", 1.5, obj[3]]), "float")
    # non-canonical: an int packed in a longer form than necessary
    noncanon = b"\x94\xcd\x00\x01" + data[2:]
    reject(noncanon, "non-canonical")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data):
    try:
        decode_model(data, SPEC)
    except ModelError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_models_never_crash(data):
    base = encode_model(data.draw(st.sampled_from([good_linear(), good_trees()])))
    pos = data.draw(st.integers(0, len(base) - 1))
    byte = data.draw(st.integers(0, 255))
    mutated = base[:pos] + bytes([byte]) + base[pos + 1:]
    try:
        decode_model(mutated, SPEC)
    except ModelError:
        pass
