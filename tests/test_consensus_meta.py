"""The store meta keys consensus/ writes live in one table (consensus._meta): no prefix is a prefix of another (a
scan of one never lists another's keys), and no other module of consensus/ or node/ spells a consensus key."""
from __future__ import annotations

import re
from pathlib import Path

from consensus import _meta

ROOT = Path(__file__).resolve().parent.parent
KEY_LITERAL = re.compile(rb'b"[ckm]/[a-z]')


def test_no_prefix_is_a_prefix_of_another() -> None:
    keys = {name: getattr(_meta, name) for name in _meta.__all__ if name != "u32"}
    assert len(set(keys.values())) == len(keys)
    for a, ka in keys.items():
        for b, kb in keys.items():
            assert a == b or not kb.startswith(ka), f"{a} {ka!r} is a prefix of {b} {kb!r}"


def test_u32_orders_like_the_integers() -> None:
    values = [0, 1, 255, 256, 65_535, 2**24, 2**32 - 1]
    assert sorted(_meta.u32(v) for v in values) == [_meta.u32(v) for v in values]
    assert all(len(_meta.u32(v)) == 4 for v in values)


def test_no_consensus_key_spelled_outside_the_table() -> None:
    table = ROOT / "consensus" / "_meta.py"
    offenders = [str(p.relative_to(ROOT)) for top in ("consensus", "node") for p in sorted((ROOT / top).rglob("*.py"))
                 if p != table and KEY_LITERAL.search(p.read_bytes())]
    assert offenders == []
