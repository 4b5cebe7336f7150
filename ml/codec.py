"""Canonical msgpack and integer-array encoding shared by models, shards and task packages.

Own copy (ml/ imports nothing of ours): positional arrays, ints, bytes, str; no maps, floats or extension
types; a decoder accepts only bytes that re-encode identically. Arrays are ``[dtype, shape, data]`` with a
dtype from a fixed allowlist and little-endian data whose length is checked against the declared shape
BEFORE anything is allocated.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

ALLOWED_DTYPES: dict[str, np.dtype] = {
    "int8": np.dtype("<i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
}
MAX_NDIM = 3


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _check_plain(obj: Any, err: type[Exception], field: str, depth: int = 0) -> None:
    """Only lists, ints, bytes and str may appear (no maps, floats, bools, nil, ext)."""
    if depth > 16:
        raise err(f"{field}: nesting too deep")
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            _check_plain(item, err, f"{field}[{i}]", depth + 1)
    elif isinstance(obj, bool) or not isinstance(obj, (int, bytes, str)):
        raise err(f"{field}: type {type(obj).__name__} not allowed")


def unpack_canonical(data: bytes, *, max_size: int, err: type[Exception], field: str) -> Any:
    """Decode ``data`` (at most ``max_size`` bytes) and insist it is the canonical encoding."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise err(f"{field}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise err(f"{field}: {len(data)} bytes exceeds the cap of {max_size}")
    try:
        # msgpack bounds every declared length by len(data), so a lying header cannot allocate much
        obj = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise err(f"{field}: not valid msgpack ({type(exc).__name__}: {exc})") from None
    _check_plain(obj, err, field)
    if pack(obj) != data:
        raise err(f"{field}: non-canonical encoding")
    return obj


def tagged_hash(tag: str, *parts: bytes) -> bytes:
    """sha256(sha256(tag) || sha256(tag) || u32be(len) || part ...) — the protocol's H (PROTOCOL.md §1)."""
    t = hashlib.sha256(tag.encode()).digest()
    h = hashlib.sha256(t + t)
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


def smallest_dtype(lo: int, hi: int) -> str:
    for name, dt in ALLOWED_DTYPES.items():
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return name
    raise OverflowError(f"range [{lo}, {hi}] does not fit int64")


def encode_array(arr: np.ndarray, dtype: str | None = None) -> list[Any]:
    a = np.asarray(arr)
    if a.dtype.kind not in "iu":
        raise TypeError(f"integer array expected, got {a.dtype}")
    if dtype is None:
        dtype = smallest_dtype(int(a.min()), int(a.max())) if a.size else "int8"
    dt = ALLOWED_DTYPES[dtype]
    cast = a.astype(dt)
    if not np.array_equal(cast, a):
        raise OverflowError(f"array does not fit {dtype}")
    return [dtype, [int(n) for n in a.shape], np.ascontiguousarray(cast).tobytes()]


def check_int(value: Any, lo: int, hi: int, err: type[Exception], field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise err(f"{field}: expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise err(f"{field}: {value} outside [{lo}, {hi}]")
    return value


def check_list(value: Any, n: int | None, err: type[Exception], field: str, max_len: int = 1 << 20) -> list[Any]:
    if not isinstance(value, list):
        raise err(f"{field}: expected a list, got {type(value).__name__}")
    if n is not None and len(value) != n:
        raise err(f"{field}: expected {n} items, got {len(value)}")
    if len(value) > max_len:
        raise err(f"{field}: {len(value)} items exceeds the cap of {max_len}")
    return value


def check_bytes(value: Any, n: int | None, err: type[Exception], field: str) -> bytes:
    if not isinstance(value, bytes):
        raise err(f"{field}: expected bytes, got {type(value).__name__}")
    if n is not None and len(value) != n:
        raise err(f"{field}: expected {n} bytes, got {len(value)}")
    return value


def check_str(value: Any, max_len: int, err: type[Exception], field: str) -> str:
    if not isinstance(value, str):
        raise err(f"{field}: expected a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise err(f"{field}: longer than {max_len} characters")
    return value


def decode_array(obj: Any, err: type[Exception], field: str, *, ndim: int,
                 shape: Sequence[int | None] = (), max_elements: int = 1 << 24) -> np.ndarray:
    """Validate ``[dtype, shape, data]`` and view it as a read-only int array (no copy of the data).

    Expected dims given in ``shape`` (None = free) are checked, then product(shape) * itemsize is compared
    with the real byte length and with ``max_elements`` using Python ints, before numpy sees anything.
    """
    parts = check_list(obj, 3, err, field)
    dtype_name = check_str(parts[0], 8, err, f"{field}.dtype")
    if dtype_name not in ALLOWED_DTYPES:
        raise err(f"{field}.dtype: {dtype_name!r} not in {sorted(ALLOWED_DTYPES)}")
    dims = check_list(parts[1], ndim, err, f"{field}.shape")
    for i, n in enumerate(dims):
        check_int(n, 0, max_elements, err, f"{field}.shape[{i}]")
        if i < len(shape) and shape[i] is not None and n != shape[i]:
            raise err(f"{field}.shape[{i}]: expected {shape[i]}, got {n}")
    count = math.prod(dims)
    if count > max_elements:
        raise err(f"{field}: {count} elements exceeds the cap of {max_elements}")
    data = check_bytes(parts[2], None, err, f"{field}.data")
    dt = ALLOWED_DTYPES[dtype_name]
    if count * dt.itemsize != len(data):
        raise err(f"{field}.data: {len(data)} bytes, shape {dims} of {dtype_name} needs {count * dt.itemsize}")
    return np.frombuffer(data, dtype=dt).reshape(dims)
