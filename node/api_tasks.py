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
from consensus.engine import EngineApi
from consensus.protocol.messages import AnchorNotice, Beacon
from consensus.protocol.registry import ChampionRecord
from consensus.protocol.tasks import MAX_TASK_MSG_SIZE
from node.engine_api import to_json
from node.errors import ApiError

MAX_TASK_ID_DIGITS = 9
MAX_HISTORY = 1000           # champion records per task in one answer (newest kept)
# a task message in hex, plus its shard keys in hex (keyholder nodes): consensus.protocol.tasks caps the message
MAX_TASK_BODY = 2 * MAX_TASK_MSG_SIZE + (1 << 20)
CLOSED = "closed"


@dataclass(frozen=True)
class TaskRow:
    """What every task view shows; built from the engine's TaskInfo (or, on a single-task engine, genesis)."""
    task_id: int
    name: str
    sponsor: bytes | None          # None: the genesis task (no sponsor)
    shards_total: int
    shards_revealed: int
    shards_left: int
    status: str                    # open | closed
    bounty_total: int
    bounty_left: int
    bounty_per_crowning: int
    champion: ChampionRecord
    extensions: int = 0            # extensions applied so far (the next one has seq = extensions + 1)


def task_rows(engine: EngineApi) -> list[TaskRow]:
    """Every task of the chain in id order (engine worker thread)."""
    return [TaskRow(t.task_id, t.name, t.sponsor if any(t.sponsor) else None, t.shards_total, t.shards_revealed,
                    t.shards_left, t.status, t.bounty_total, t.bounty_left, t.bounty_per_crowning, t.champion,
                    t.extensions) for t in engine.tasks()]


def round_task_of(engine: EngineApi, r: int) -> int | None:
    """The task round r serves (None: no such round)."""
    if r < 1:
        return None
    served = engine.round_task(r)          # (task id, shard index) or None (idle round)
    return None if served is None else served[0]


def activation_hex(engine: EngineApi, statement: AnchorNotice | Beacon | None) -> list[str]:
    """The bytes of the task messages a notice/beacon activates (a block of its round carries them), hex."""
    if statement is None:
        return []
    return [m.hex() for m in engine.activation_bytes(statement)]


def chain_phase(round_status: str | None, rows: list[TaskRow]) -> str:
    """The phase /api/status reports: the current round's status while some task is open, ``closed`` when none
    is and no round is still being opened (every task has spent its shards and its last round is final — the
    keyholder's idle notice; a new task or an extension reopens it). The last round's opening window, after
    its beacon spent the last shard, still says ``revealed``: its block may yet be crowned."""
    if not any(t.status != CLOSED for t in rows) and round_status != "revealed":
        return CLOSED
    return round_status or "not-started"


def champion_json(rec: ChampionRecord | None) -> Any:
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


def champion_history(engine: EngineApi, task_id: int) -> list[ChampionRecord]:
    """Task ``task_id``'s champion lineage, oldest first (engine worker thread)."""
    return list(engine.champion_history(task_id))


def revealed_shards(engine: EngineApi, task_id: int) -> list[dict[str, Any]]:
    """Every shard key of task ``task_id`` revealed so far (void rounds included), in round order:
    ``{"round", "shard_index", "shard_key"}`` (engine worker thread)."""
    out = []
    for r in range(1, engine.current_round() + 1):
        b = engine.beacon(r)
        if b is None:
            continue
        if b.task_id == task_id:
            out.append({"round": r, "shard_index": b.shard_index, "shard_key": b.shard_key.hex()})
    return out


def task_package(engine: EngineApi, task_id: int) -> bytes:
    """Task ``task_id``'s public package as it stands (extension shards included), encoded."""
    return engine.task_package(task_id).encode()


def task_champion_model(engine: EngineApi, model_hash: bytes) -> bytes | None:
    """The bytes of a task's current champion with this model hash (an announced task's initial champion is
    in no block: it comes from the announcement), or None (engine worker thread)."""
    for t in engine.tasks():
        if t.champion.model_hash == model_hash:
            return engine.champion_model(t.task_id)
    return None
