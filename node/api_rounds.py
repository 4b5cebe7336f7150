"""The round views of the HTTP API (docs/API.md): ``/api/rounds/{r}`` and ``/api/tasks/{id}/rounds``.

Does: one round as JSON — its statements, the (task, shard) it served, its outcome and main-chain block, every
entrant the beacon listed with b, c, bar and a verdict (node.rounds_index), the verdict record, the current
round's scored candidates — and a task's rounds, newest first, paged. Every function runs on the engine
worker thread. Does not: score anything or hold state (node.rounds_index keeps the index).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from consensus.engine import EngineApi
from node.api_tasks import activation_hex, champion_json
from node.engine_api import to_json
from node.rounds_index import RoundIndex, champion_at

MAX_ROUNDS_PAGE = 100


def round_json(engine: EngineApi, index: RoundIndex, r: int, *, full: bool = True) -> dict[str, Any]:
    """Round ``r``: ``status`` is its outcome once final (crowned | plain | void | idle), else its live phase
    (open | revealed | future); ``entrants`` lists the beacon's entries with their verdicts. ``full`` adds the
    signed statements (hex) and the task messages an opening of the round carries."""
    row = index.row(r)
    current = r == engine.current_round()
    beacon, notice = engine.beacon(r), engine.notice(r)
    anchor = beacon.anchor_hash if beacon else notice.anchor_hash if notice else None
    # the current round's entries as this node saw them (round_info reads the whole lineage: only for it)
    seen = engine.round_info(r).entries_seen if current else 0
    winner = champion_at(engine, row.height) if row.height is not None else None
    cands = engine.candidates() if current else []
    out: dict[str, Any] = {
        "round": r, "status": row.status, "final": row.final, "anchor": anchor.hex() if anchor else None,
        "task_id": row.task_id, "shard_index": row.shard_index,
        "height": row.height, "block": row.block_hash.hex() if row.block_hash else None,
        # entries this node saw in the entry window (the beacon lists the final set: ``entries``)
        "entries_seen": seen,
        "entries": [e.hex() for e in beacon.entries] if beacon else [],
        "entrants": [e.to_json() for e in index.entrants(r)],
        "shard_key": beacon.shard_key.hex() if beacon else None,
        "verdict": champion_json(winner) if winner is not None else None,   # before ``final``: the leader
        "candidates": [{"hash": s.hash.hex(), "b": s.b, "c": s.c, "bar": s.bar} for s in cands],
        "opened_ms": beacon.opened_ms if beacon else None,
        "revealed_ms": beacon.time_ms if beacon else None,
        "entry_deadline_ms": notice.entry_deadline_ms if notice else None,
    }
    if full:
        out["notice"] = notice.encode().hex() if notice else None
        out["beacon"] = beacon.encode().hex() if beacon else None
        out["activations"] = activation_hex(engine, beacon)
    return out


def task_rounds_json(engine: EngineApi, index: RoundIndex, task_id: int, before: int | None,
                     limit: int) -> dict[str, Any]:
    """The rounds that served ``task_id``, newest first: each with its entrants (no statement bytes);
    ``next`` is the ``before`` of the following (older) page, None at the end."""
    rounds = index.rounds_of(task_id, before, limit)
    items = [round_json(engine, index, r, full=False) for r in rounds]
    more = bool(rounds) and bool(index.rounds_of(task_id, rounds[-1], 1))
    return {"task_id": task_id, "rounds": items, "next": rounds[-1] if more else None,
            "counts": index.counts(task_id)}


def dataclass_view(obj: Any, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name not in drop}


__all__ = ["MAX_ROUNDS_PAGE", "dataclass_view", "round_json", "task_rounds_json", "to_json"]
