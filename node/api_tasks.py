"""The task views of the HTTP API (docs/API.md): ``/api/tasks``, ``/api/tasks/{id}``, ``POST /api/tasks`` and the
per-task fields of ``/api/status``.

Does: turn the engine's task records (consensus.engine.TaskInfo) into JSON, decide the chain's phase as users
see it (``closed`` when no task has work left: status never says ``open`` when nothing is), and hand a posted
task announcement/extension to the node (bounded body, typed errors). Does not: validate task messages (the
node's consensus entry point does) or keep any state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chain.address import address_of, encode_address
from node.engine_api import to_json
from node.errors import ApiError

MAX_TASK_ID_DIGITS = 9
MAX_HISTORY = 1000           # champion records per task in one answer (newest kept)
MAX_TASK_BODY = 8 * 2**20    # a task announcement carries a public package (ml.shards caps it well below this)
CLOSED = "closed"


@dataclass(frozen=True)
class TaskRow:
    """What every task view shows; built from the engine's TaskInfo (or, on a single-task engine, genesis)."""
    task_id: int
    name: str
    sponsor: bytes | None
    shards_total: int
    shards_revealed: int
    shards_left: int
    status: str                    # open | closed
    bounty_total: int
    bounty_left: int
    bounty_per_crowning: int
    champion: Any                  # consensus.engine.ChampionRecord
    extensions: int = 0            # extensions applied so far (the next one has seq = extensions + 1)


def _spec_name(info: Any) -> str:
    spec = getattr(info, "spec", None)
    return str(getattr(info, "name", None) or getattr(spec, "name", None) or f"task {info.task_id}")


def task_rows(engine: Any) -> list[TaskRow]:
    """Every task of the chain in id order (engine worker thread)."""
    if not hasattr(engine, "tasks"):
        return [_genesis_task_row(engine)]
    return [TaskRow(t.task_id, _spec_name(t), getattr(t, "sponsor", None), t.shards_total, t.shards_revealed,
                    t.shards_left, t.status, t.bounty_total, t.bounty_left, t.bounty_per_crowning, t.champion,
                    getattr(t, "extensions", 0))
            for t in engine.tasks()]


def _genesis_task_row(engine: Any) -> TaskRow:
    """A chain with only its genesis task: its shards are its rounds; it closes once the keyholder has moved
    past its last round (the closing notice)."""
    g = engine.genesis
    r = engine.current_round()
    revealed = sum(1 for x in range(1, min(r, g.n_rounds) + 1) if engine.beacon(x) is not None)
    status = CLOSED if r > g.n_rounds else "open"
    return TaskRow(0, g.task.spec.name, None, g.n_rounds, revealed, g.n_rounds - revealed, status, 0, 0, 0,
                   engine.champion())


def round_task_of(engine: Any, r: int) -> int | None:
    """The task round r serves (None: no such round)."""
    if r < 1:
        return None
    if hasattr(engine, "round_task"):
        served = engine.round_task(r)          # (task id, shard index) or None
        return served[0] if isinstance(served, tuple) else served
    return 0 if r <= engine.genesis.n_rounds else None


def activation_hex(engine: Any, statement: Any) -> list[str]:
    """The bytes of the task messages a notice/beacon activates (a block of its round carries them), hex."""
    if statement is None or not hasattr(engine, "activation_bytes"):
        return []
    return [m.hex() for m in engine.activation_bytes(statement)]


def chain_phase(round_status: str | None, rows: list[TaskRow]) -> str:
    """The phase /api/status reports: the current round's status while some task is open, ``closed`` when none
    is (every task has spent its shards and its last round is final; a new task or an extension reopens it)."""
    if not any(t.status != CLOSED for t in rows):
        return CLOSED
    return round_status or "not-started"


def champion_json(rec: Any) -> Any:
    out = to_json(rec)
    if rec is not None and any(rec.miner):
        out["miner_address"] = encode_address(address_of(rec.miner))
    return out


def task_json(t: TaskRow) -> dict[str, Any]:
    return {"task_id": t.task_id, "name": t.name, "status": t.status,
            "sponsor": t.sponsor.hex() if t.sponsor else None,
            "sponsor_address": encode_address(address_of(t.sponsor)) if t.sponsor else None,
            "shards_total": t.shards_total, "shards_revealed": t.shards_revealed, "shards_left": t.shards_left,
            "bounty_total": t.bounty_total, "bounty_left": t.bounty_left,
            "bounty_per_crowning": t.bounty_per_crowning, "extensions": t.extensions,
            "champion": champion_json(t.champion)}


def status_fields(rows: list[TaskRow], round_task: int | None) -> dict[str, Any]:
    """The per-task part of /api/status."""
    open_rows = [t for t in rows if t.status != CLOSED]
    return {"tasks_open": len(open_rows), "tasks_total": len(rows), "round_task": round_task,
            "shards_left": sum(t.shards_left for t in rows),
            "tasks": [{"task_id": t.task_id, "name": t.name, "status": t.status, "shards_left": t.shards_left}
                      for t in rows]}


def parse_task_id(text: str | None, what: str = "task") -> int | None:
    """A task id from a path or query parameter (None when absent); ApiError 400 otherwise."""
    if text is None:
        return None
    if not text.isdigit() or len(text) > MAX_TASK_ID_DIGITS:
        raise ApiError(400, "bad-request", f"{what}: expected a task id (0, 1, 2 ...), got {text[:40]!r}")
    return int(text)


def find_task(rows: list[TaskRow], task_id: int) -> TaskRow:
    for t in rows:
        if t.task_id == task_id:
            return t
    raise ApiError(404, "unknown-task", f"no task {task_id} on this chain (tasks: "
                                        f"{', '.join(str(t.task_id) for t in rows)})")


def champion_history(engine: Any, task_id: int) -> list[Any]:
    """Task ``task_id``'s champion lineage, oldest first (engine worker thread)."""
    if hasattr(engine, "tasks"):
        return list(engine.champion_history(task_id))
    return list(engine.champion_history())


def revealed_shards(engine: Any, task_id: int) -> list[dict[str, Any]]:
    """Every shard key of task ``task_id`` revealed so far (void rounds included), in round order:
    ``{"round", "shard_index", "shard_key"}`` (engine worker thread)."""
    out = []
    for r in range(1, engine.current_round() + 1):
        b = engine.beacon(r)
        if b is None:
            continue
        t = getattr(b, "task_id", 0)
        if t == task_id:
            out.append({"round": r, "shard_index": getattr(b, "shard_index", r), "shard_key": b.shard_key.hex()})
    return out


def task_package(engine: Any, task_id: int) -> bytes:
    """Task ``task_id``'s public package as it stands (extension shards included), encoded."""
    if hasattr(engine, "task_package"):
        pkg = engine.task_package(task_id)
        return pkg if isinstance(pkg, bytes) else pkg.encode()
    return engine.genesis.task.encode()
