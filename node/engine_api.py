"""Thin adapters from consensus.engine results to what node/ needs (verdict → outcome, stale codes, JSON views).

Kept in one module so that a change in the engine's result types touches one place of node/.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from chain.rejects import STALE_CODES as _STALE_CODES
from consensus.engine import BlockVerdict

# Reject codes that say "too late / already known", not "this peer lied": soft points only (chain.rejects).
STALE_CODES = _STALE_CODES


def is_stale_code(code: str) -> bool:
    return code in STALE_CODES


def block_outcome(verdict: BlockVerdict) -> tuple[str, str, str]:
    """(outcome, code, message) with outcome in tip-changed | accepted | known | stale | orphan | opened |
    rejected (the block is invalid) | corrupt (this copy is: PROTOCOL §3.6 identity)."""
    status = getattr(verdict, "status", "rejected")
    code = getattr(verdict, "code", None) or status
    return status, code, getattr(verdict, "message", "")


def to_json(value: Any) -> Any:
    """Dataclasses/tuples/bytes → JSON-friendly values (bytes as hex)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.name.startswith("_")}
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(to_json(k)): to_json(v) for k, v in value.items()}
    return value
