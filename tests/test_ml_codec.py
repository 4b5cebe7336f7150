"""ml/ has no codec of its own: its encodings are chain.encoding's, byte for byte (issue 9, one codec)."""
from __future__ import annotations

import hashlib

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain import crypto, encoding
from ml import codec
from ml.errors import ModelError, TaskError

leaf = st.one_of(st.integers(-(2**63), 2**64 - 1), st.binary(max_size=40), st.text(max_size=20))
plain = st.recursive(leaf, lambda kids: st.lists(kids, max_size=5), max_leaves=30)


def _old_tagged_hash(tag: str, *parts: bytes) -> bytes:
    """The hash ml/codec.py used to carry (reference copy, to prove nothing changed)."""
    t = hashlib.sha256(tag.encode()).digest()
    h = hashlib.sha256(t + t)
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


@settings(max_examples=300, deadline=None)
@given(plain)
def test_pack_is_chain_encoding_and_old_ml_bytes(obj):
    data = codec.pack(obj)
    assert data == encoding.pack(obj) == msgpack.packb(obj, use_bin_type=True)  # old ml pack: plain packb
    assert codec.unpack_canonical(data, max_size=1 << 20, err=TaskError, field="x") == msgpack.unpackb(data)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12), st.lists(st.binary(max_size=30), max_size=4))
def test_tagged_hash_is_chain_crypto(tag, parts):
    assert codec.tagged_hash is crypto.tagged_hash
    assert codec.tagged_hash(tag, *parts) == _old_tagged_hash(tag, *parts)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=24))
def test_array_round_trip(values):
    a = np.array(values, dtype=np.int64).reshape(len(values), 1)
    obj = codec.encode_array(a)
    back = codec.decode_array(encoding.unpack(codec.pack(obj), max_size=1 << 16), TaskError, "a", ndim=2)
    assert np.array_equal(back, a)


def test_decoder_errors_are_the_callers_type_and_name_the_field():
    with pytest.raises(ModelError, match=r"^model: .*non-canonical"):
        codec.unpack_canonical(b"\xd0\x01", max_size=10, err=ModelError, field="model")  # int8 form of 1
    with pytest.raises(TaskError, match=r"^task\.version: expected an integer"):
        codec.check_int(True, 0, 1, TaskError, "task.version")
    with pytest.raises(TaskError, match=r"^x: expected 2 items"):
        codec.check_list([1], 2, TaskError, "x")
    with pytest.raises(TaskError, match=r"exceeds the cap"):
        codec.unpack_canonical(bytes(11), max_size=10, err=TaskError, field="x")
