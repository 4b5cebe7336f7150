"""Canonical msgpack: positional arrays of ints, bytes and str only, each packed in its shortest form.

``unpack`` accepts exactly the bytes ``pack`` would produce for the decoded value, so every consensus object
has one encoding. Field checkers raise DecodeError with the field name, for the per-type decoders.
"""
from __future__ import annotations

from typing import Any

import msgpack

from chain.errors import DecodeError

_packer_opts = {"use_bin_type": True, "autoreset": True}
_packb = msgpack.Packer(**_packer_opts).pack
MAX_DEPTH = 8


def _check_packable(obj: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise DecodeError("nesting too deep")
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _check_packable(item, depth + 1)
    elif isinstance(obj, bool) or not isinstance(obj, (int, bytes, str)):
        # bool is an int subclass but msgpack gives it its own type: keep the value space to ints only
        raise DecodeError(f"type {type(obj).__name__} is not allowed in a canonical encoding")


def pack(obj: Any) -> bytes:
    """Canonical bytes of ``obj`` (nested lists/tuples of int, bytes, str). Raises DecodeError on other types."""
    _check_packable(obj)
    out: bytes = _packb(obj)
    return out


def pack_trusted(obj: Any) -> bytes:
    """``pack`` without the type walk, for values built by our own validated dataclasses (hot paths)."""
    out: bytes = _packb(obj)
    return out


def _check_unpacked(obj: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise DecodeError("nesting too deep")
    if isinstance(obj, list):
        for item in obj:
            _check_unpacked(item, depth + 1)
    elif isinstance(obj, bool) or not isinstance(obj, (int, bytes, str)):
        raise DecodeError(f"type {type(obj).__name__} is not allowed (only arrays, ints, bytes, str)")


def unpack_uncanonical(data: bytes, *, max_size: int) -> Any:
    """Step one of ``unpack``: size cap and msgpack decoding only — NOT canonical, no type walk. Only for
    decoders that check every field's exact type and then compare a re-encoding with ``data`` themselves
    (chain.block builds the block's re-encoding from the per-tx encodings it needs anyway)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise DecodeError(f"{len(data)} bytes exceeds the cap of {max_size}")
    if not data:
        raise DecodeError("empty input")
    try:
        # the length caps bound memory: no container can claim more items than there are bytes
        return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True,
                               max_bin_len=max_size, max_str_len=max_size, max_array_len=len(data),
                               max_map_len=0, max_ext_len=0)
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 -- msgpack raises many types (ExtraData, ValueError, UnicodeDecodeError, ...)
        raise DecodeError(f"malformed msgpack: {type(exc).__name__}: {exc}") from None


def unpack(data: bytes, *, max_size: int, typed: bool = False) -> Any:
    """Decode canonical bytes of at most ``max_size``; arrays come back as lists. Raises DecodeError only.
    ``typed=True`` skips the generic type walk for callers that check every field's exact type themselves."""
    data = bytes(data) if isinstance(data, (bytearray, memoryview)) else data
    obj = unpack_uncanonical(data, max_size=max_size)
    if not typed:
        _check_unpacked(obj)
    if _packb(obj) != data:
        raise DecodeError("non-canonical encoding (does not re-encode to the same bytes)")
    return obj


# ---------------------------------------------------------------- field checkers for decoders


def check_list(value: Any, length: int, name: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != length:
        raise DecodeError(f"{name}: expected an array of {length} fields")
    return value


def check_list_max(value: Any, max_len: int, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise DecodeError(f"{name}: expected an array")
    if len(value) > max_len:
        raise DecodeError(f"{name}: {len(value)} items exceeds the cap of {max_len}")
    return value


def check_int(value: Any, lo: int, hi: int, name: str) -> int:
    if type(value) is not int:
        raise DecodeError(f"{name}: expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise DecodeError(f"{name}: {value} outside [{lo}, {hi}]")
    return value


def check_bytes(value: Any, size: int, name: str) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise DecodeError(f"{name}: expected {size} bytes")
    return value


def check_bytes_max(value: Any, max_size: int, name: str) -> bytes:
    if type(value) is not bytes:
        raise DecodeError(f"{name}: expected bytes, got {type(value).__name__}")
    if len(value) > max_size:
        raise DecodeError(f"{name}: {len(value)} bytes exceeds the cap of {max_size}")
    return value


def check_str(value: Any, max_len: int, name: str) -> str:
    if type(value) is not str:
        raise DecodeError(f"{name}: expected a string, got {type(value).__name__}")
    if len(value.encode()) > max_len:
        raise DecodeError(f"{name}: longer than {max_len} bytes")
    return value
