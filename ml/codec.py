"""ml/'s view of the one canonical codec: chain.encoding's msgpack and chain.crypto's tagged hash, plus the
integer-array encoding models, shards and task packages share.

What it does: re-exports ``pack`` and ``tagged_hash`` unchanged, wraps chain.encoding's decoder and field
checkers so that a failure raises the caller's ml/ error type (``err``) naming the field, and encodes /
validates arrays ``[dtype, shape, data]``: a dtype from a fixed allowlist and little-endian data whose length
is checked against the declared shape BEFORE anything is allocated.
What it does NOT do: define any encoding of its own — there is exactly one canonical msgpack (chain.encoding)
and one H (chain.crypto); ml/ imports only those two leaf modules of chain/.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from chain import encoding as _enc
from chain.crypto import tagged_hash
from chain.encoding import pack
from chain.errors import DecodeError

__all__ = ["ALLOWED_DTYPES", "check_bytes", "check_int", "check_list", "check_str", "decode_array",
           "encode_array", "pack", "smallest_dtype", "tagged_hash", "unpack_canonical"]

ALLOWED_DTYPES: dict[str, np.dtype] = {
    "int8": np.dtype("<i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
}
MAX_NDIM = 3


def _raise(err: type[Exception], field: str, exc: DecodeError) -> NoReturn:
    text = str(exc)
    raise err(text if text.startswith(field) else f"{field}: {text}") from None


def unpack_canonical(data: bytes, *, max_size: int, err: type[Exception], field: str) -> Any:
    """chain.encoding.unpack (cap, canonical re-encoding, ints/bytes/str/arrays only), raising ``err``."""
    try:
        return _enc.unpack(data, max_size=max_size)
    except DecodeError as exc:
        _raise(err, field, exc)


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
    try:
        return _enc.check_int(value, lo, hi, field)
    except DecodeError as exc:
        _raise(err, field, exc)


def check_list(value: Any, n: int | None, err: type[Exception], field: str, max_len: int = 1 << 20) -> list[Any]:
    try:
        items = _enc.check_list_max(value, max_len, field)
    except DecodeError as exc:
        _raise(err, field, exc)
    if n is not None and len(items) != n:
        raise err(f"{field}: expected {n} items, got {len(items)}")
    return items


def check_bytes(value: Any, n: int | None, err: type[Exception], field: str) -> bytes:
    try:
        return _enc.check_bytes(value, n, field) if n is not None else _enc.check_bytes_max(value, 1 << 62, field)
    except DecodeError as exc:
        _raise(err, field, exc)


def check_str(value: Any, max_len: int, err: type[Exception], field: str) -> str:
    """At most ``max_len`` UTF-8 bytes (chain.encoding's rule)."""
    try:
        return _enc.check_str(value, max_len, field)
    except DecodeError as exc:
        _raise(err, field, exc)


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
