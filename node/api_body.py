"""Bounded JSON request bodies for the HTTP API: size and nesting depth are checked BEFORE ``json.loads``.

Does: refuse a body over its endpoint's byte cap (413) or nested deeper than MAX_JSON_DEPTH (400), each with a
one-line ApiError, then parse it and require a JSON object. The depth check strips string literals with one
regex (C speed) and walks only the bracket characters left, so a hostile body costs linear time and never
reaches the recursive parser (a deeply nested body used to end in a RecursionError and a 500).
Also: ``hex_field``, the one decoder of a hex value a request carries (a body field or a query value), 400 if bad.
Does not: validate the fields of the object (each endpoint does, with ``hex_field`` and friends).
"""
from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from node.errors import ApiError

MAX_JSON_DEPTH = 32          # our bodies are 2 deep ({"txs": [...]}); 32 leaves room and stays far from recursion
MAX_BODY = 16 * 2**20        # the aiohttp-wide cap: an opened block carries its model (PROTOCOL caps it lower)
MAX_TX_BODY = 1 * 2**20      # a batch of MAX_BATCH_TXS transfers (<= 256 bytes each, 512 hex chars) fits
MAX_SMALL_BODY = 64 * 2**10  # entries

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth_ok(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """True iff the nesting depth of ``data`` (outside string literals) is at most ``max_depth``.

    Brackets inside an unterminated string are counted: that can only over-estimate the depth of a body the
    parser would refuse anyway."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return True  # cheap check first, no regex: fewer openers than the limit, brackets in strings included
    bare = _STRING.sub(b"", data)
    if bare.count(b"[") + bare.count(b"{") <= max_depth:
        return True  # the common case: no walk at all
    depth = 0
    for m in _BRACKET.finditer(bare):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return False
        else:
            depth -= 1
    return True


def parse_json_object(data: bytes, limit: int) -> dict[str, Any]:
    """The JSON object in ``data`` after the size and depth checks; ApiError(413/400) otherwise."""
    if len(data) > limit:
        raise ApiError(413, "body-too-large", f"body is {len(data)} bytes, limit {limit} for this endpoint")
    if not json_depth_ok(data):
        raise ApiError(400, "bad-request", f"body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad-request", "body must be JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad-request", "body must be a JSON object")
    return body


async def json_body(request: web.Request, limit: int) -> dict[str, Any]:
    """Read (at most ``limit`` bytes, refused early from Content-Length) and parse a request's JSON object."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body-too-large", f"body is {request.content_length} bytes, limit {limit} for this "
                                              "endpoint")
    return parse_json_object(await request.read(), limit)


def hex_field(value: Any, name: str, size: int | None = None) -> bytes:
    """The bytes of a hex string a request carries (a body field or a query value) as ``name``, of exactly
    ``size`` bytes when given; a 400 ApiError otherwise."""
    if not isinstance(value, str):
        raise ApiError(400, "bad-request", f"{name}: expected a hex string")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise ApiError(400, "bad-request", f"{name}: not hex") from None
    if size is not None and len(data) != size:
        raise ApiError(400, "bad-request", f"{name}: expected {size} bytes")
    return data

