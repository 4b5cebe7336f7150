"""The task views of the HTTP API (docs/API.md): ``/api/tasks``, ``/api/tasks/{id}``, ``POST /api/tasks`` and the
per-task fields of ``/api/status``.

Does: turn the engine's task records (consensus.engine.TaskInfo) into JSON, decide the chain's phase as users
see it (``closed`` when no task has work left: status never says ``open`` when nothing is), and hand a posted
task announcement/extension to the node (bounded body, typed errors). Does not: validate task messages (the
node's consensus entry point does) or keep any state.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aiohttp import web

from chain.address import address_of, encode_address
from consensus.engine import EngineApi
from consensus.protocol.messages import AnchorNotice, Beacon
from consensus.protocol.registry import ChampionRecord
from consensus.protocol.tasks import MAX_TASK_MSG_SIZE
from node.engine_api import to_json
from node.errors import ApiError
from node.rounds_index import RoundIndex

MAX_TASK_ID_DIGITS = 9
MAX_HISTORY = 1000           # champion records per task in one answer (newest kept)
MAX_REVEALED = 1000          # revealed shard keys per task in one answer (newest kept; page with revealed_before)
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
    spec: Any = None               # ml.task.TaskSpec (None: the announcement is not known here)
    shard_size: int = 0            # rows per hidden shard


def task_rows(engine: EngineApi) -> list[TaskRow]:
    """Every task of the chain in id order (engine worker thread)."""
    return [TaskRow(t.task_id, t.name, t.sponsor if any(t.sponsor) else None, t.shards_total, t.shards_revealed,
                    t.shards_left, t.status, t.bounty_total, t.bounty_left, t.bounty_per_crowning, t.champion,
                    t.extensions, t.spec, _shard_size(engine, t.task_id)) for t in engine.tasks()]


def _shard_size(engine: EngineApi, task_id: int) -> int:
    from chain.errors import RuleError
    try:
        return int(engine.task_package(task_id).shard_size)     # the task book caches packages
    except RuleError:
        return 0


@lru_cache(maxsize=256)
def detectable_effect(shard_size: int, max_entries: int, alpha: tuple[int, int]) -> float | None:
    """The improvement a task's shards crown with 80 % power at 10 % disagreement (node.tools.sizing, the
    figure ``genesis create`` / ``task create`` print), None if no improvement does."""
    from node.tools.sizing import detectable
    if shard_size <= 0:
        return None
    return detectable(shard_size, max_entries, alpha)


def spec_json(spec: Any) -> dict[str, Any] | None:
    if spec is None:
        return None
    return {"name": spec.name, "n_features": spec.n_features, "classes": list(spec.classes),
            "scale_bits": spec.scale_bits, "max_abs": spec.max_abs}


def bounty_paid(t: TaskRow, crowned: int) -> int:
    """What the task's crownings were paid from its bounty: per_crowning each while the escrow lasts, at most
    the announced bounty (exact unless the sponsor could not fund the whole bounty at activation)."""
    if t.sponsor is None or not t.bounty_per_crowning:
        return 0
    return min(t.bounty_total, t.bounty_per_crowning * crowned)


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


def task_json(t: TaskRow, counts: dict[str, int] | None = None, params: Any = None) -> dict[str, Any]:
    """A task record; with ``counts`` (its final rounds by outcome, node.rounds_index) and ``params`` (the
    genesis parameters) also its round counts, bounty paid and the improvement its shards detect."""
    out = {"task_id": t.task_id, "name": t.name, "status": t.status,
           "sponsor": t.sponsor.hex() if t.sponsor else None,
           "sponsor_address": encode_address(address_of(t.sponsor)) if t.sponsor else None,
           "shards_total": t.shards_total, "shards_revealed": t.shards_revealed, "shards_left": t.shards_left,
           "bounty_total": t.bounty_total, "bounty_left": t.bounty_left,
           "bounty_per_crowning": t.bounty_per_crowning, "extensions": t.extensions,
           "champion": champion_json(t.champion), "spec": spec_json(t.spec), "shard_size": t.shard_size}
    if counts is not None:
        out["rounds"] = counts
        out["bounty_paid"] = bounty_paid(t, counts.get("crowned", 0))
    if params is not None:
        out["detectable"] = detectable_effect(t.shard_size, params.max_entries, tuple(params.alpha))
    return out


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


def champion_history(engine: EngineApi, task_id: int, before: int | None = None,
                     limit: int = MAX_HISTORY) -> list[ChampionRecord]:
    """The newest ``limit`` records of task ``task_id``'s champion lineage below height ``before``, oldest first
    (engine worker thread; reads only those records)."""
    return list(engine.champion_history(task_id, before=before, limit=limit))


def revealed_page(engine: EngineApi, index: RoundIndex, task_id: int, before: int | None = None,
                  limit: int = MAX_REVEALED) -> dict[str, Any]:
    """The newest ``limit`` shard keys task ``task_id`` revealed in rounds below ``before`` (void rounds
    included), in round order: ``{"revealed": [{"round", "shard_index", "shard_key"}], "revealed_next": the
    ``revealed_before`` of the older page or None, "revealed_first": the task's first revealed key or None}``.
    Engine worker thread; reads the rounds of the page only (the round index lists the task's rounds)."""
    out: list[dict[str, Any]] = []
    next_before = None
    cursor = before
    while len(out) < limit:      # a round without a beacon (nobody entered) served no shard: page past it
        want = limit - len(out)
        rounds = index.rounds_of(task_id, cursor, want)
        for r in rounds:
            b = engine.beacon(r)
            if b is not None and b.task_id == task_id:
                out.append({"round": r, "shard_index": b.shard_index, "shard_key": b.shard_key.hex()})
        if len(rounds) < want:
            break
        cursor = rounds[-1]
    if len(out) >= limit and index.rounds_of(task_id, out[-1]["round"], 1):
        next_before = out[-1]["round"]
    out.reverse()
    first = None
    for r in index.first_rounds_of(task_id, 4):   # shard 1's key: the world a generated task's extension drifts from
        b = engine.beacon(r)
        if b is not None and b.task_id == task_id:
            first = {"round": r, "shard_index": b.shard_index, "shard_key": b.shard_key.hex()}
            break
    return {"revealed": out, "revealed_next": next_before, "revealed_first": first}


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


# ---------------------------------------------------------------- handlers (node.api registers them)


class TaskHandlers:
    """``/api/tasks``, ``/api/tasks/{id}``, ``/api/tasks/{id}/rounds``, ``/api/champion``, ``/api/models/{ref}``.
    Engine reads go through ``deps.engine_call`` (the worker thread); ``index`` is the node's RoundIndex."""

    def __init__(self, deps: Any, index: RoundIndex) -> None:
        self.deps = deps
        self.index = index

    async def call(self, fn: Any, *args: Any) -> Any:
        return await self.deps.engine_call(fn, *args)

    async def tasks(self, request: web.Request) -> web.Response:
        """Every task of the chain (id order): status, shards, bounty, champion, round counts, spec."""
        engine, index, params = self.deps.engine, self.index, self.deps.genesis.params

        def read() -> list[dict[str, Any]]:
            return [task_json(t, index.counts(t.task_id), params) for t in task_rows(engine)]
        rows = await self.call(read)
        return web.json_response({"tasks": rows, "tasks_open": sum(1 for t in rows if t["status"] != CLOSED)})

    async def task_detail(self, request: web.Request) -> web.Response:
        """One task: its record, its champion lineage (newest MAX_HISTORY), its revealed shard keys (newest
        MAX_REVEALED below round ``?revealed_before=R``, at most ``?revealed_limit=N``; ``revealed_next`` pages
        on, ``revealed_first`` is shard 1's key); with
        ``?package=1`` its public package, with ``?messages=1`` its governance-signed announcement and
        extensions (hex, in order: what an auditor checks the package against)."""
        task_id = parse_task_id(request.match_info["id"])
        assert task_id is not None
        engine, index, params = self.deps.engine, self.index, self.deps.genesis.params
        with_package, with_messages = bool(request.query.get("package")), bool(request.query.get("messages"))
        before = _int_query(request, "revealed_before", 1, 2**32)
        limit = _int_query(request, "revealed_limit", 1, MAX_REVEALED) or MAX_REVEALED

        def read() -> dict[str, Any]:
            row = find_task(task_rows(engine), task_id)
            out = task_json(row, index.counts(task_id), params)
            out["history"] = [champion_json(r) for r in champion_history(engine, task_id)]
            out.update(revealed_page(engine, index, task_id, before, limit))
            out["package"] = task_package(engine, task_id).hex() if with_package else None
            if with_messages:
                out["messages"] = task_messages(engine, task_id)
            return out
        return web.json_response(await self.call(read))

    async def task_rounds(self, request: web.Request) -> web.Response:
        """``/api/tasks/{id}/rounds?before=R&limit=N``: the task's rounds, newest first, with every entrant."""
        from node.api_rounds import MAX_ROUNDS_PAGE, task_rounds_json
        task_id = parse_task_id(request.match_info["id"])
        assert task_id is not None
        before = _int_query(request, "before", 1, 2**32)
        limit = _int_query(request, "limit", 1, MAX_ROUNDS_PAGE) or 20
        engine, index = self.deps.engine, self.index

        def read() -> dict[str, Any]:
            find_task(task_rows(engine), task_id)
            return task_rounds_json(engine, index, task_id, before, limit)
        return web.json_response(await self.call(read))

    async def champion(self, request: web.Request) -> web.Response:
        """The champion of the current round's task and the chain's lineage (every task, height order), or with
        ``?task=ID`` that task's champion and lineage (its initial champion first). The lineage is paged newest
        last: at most ``limit`` (default and cap MAX_HISTORY) records below height ``before``; ``next`` is the
        ``before`` of the previous (older) page, None when the page reaches the start."""
        engine = self.deps.engine
        task_id = parse_task_id(request.query.get("task"))
        before = _int_query(request, "before", 1, 2**32)
        limit = _int_query(request, "limit", 1, MAX_HISTORY) or MAX_HISTORY

        def read() -> tuple[Any, Any, list[Any]]:    # one record more than the page: is there an older page?
            if task_id is None:
                return None, engine.champion(), engine.champion_history(before=before, limit=limit + 1)
            row = find_task(task_rows(engine), task_id)
            return row, row.champion, champion_history(engine, task_id, before, limit + 1)
        row, champ, history = await self.call(read)
        page = history[-limit:]
        older = len(history) > len(page)
        out: dict[str, Any] = {"champion": champion_json(champ), "history": [champion_json(r) for r in page],
                               "next": page[0].height if older and page else None}
        if row is not None:
            out["task_id"] = row.task_id
        return web.json_response(out)

    async def model(self, request: web.Request) -> web.Response:
        """A model's bytes by hash or unique prefix; ``?format=hex`` answers JSON with the bytes (hex) and what
        the chain knows of the model: the task it competes on and its champion record (None for a model that
        is no champion)."""
        from node.api_lookup import resolve
        store = self.deps.store
        h = await resolve(store, "model", request.match_info["hash"], what="model hash")
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(None, store.get_model, h)
        if data is None:   # an announced task's initial champion travels in its announcement, not in a block
            data = await self.call(task_champion_model, self.deps.engine, h)
        if data is None and self.deps.fetch_model is not None:   # pruned here: an archive peer has it
            record, _ = await self.call(model_record, self.deps.engine, self.index, h)
            if record is not None and record.height > 0:
                data = await self.deps.fetch_model(record.hash, h)
        if data is None:
            raise ApiError(404, "not-found", f"no model {h.hex()[:16]}… is stored on this node (nor, on a pruned "
                                             "node, could a peer send it)")
        if request.query.get("format") == "hex":
            record, task_id = await self.call(model_record, self.deps.engine, self.index, h)
            return web.json_response({"hash": h.hex(), "model": data.hex(), "bytes": len(data), "task_id": task_id,
                                      "record": champion_json(record) if record is not None else None})
        return web.Response(body=data, content_type="application/octet-stream")


def _int_query(request: web.Request, name: str, lo: int, hi: int) -> int | None:
    text = request.query.get(name)
    if text is None:
        return None
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise ApiError(400, "bad-request", f"{name}: expected an integer {lo}..{hi}, got {text[:40]!r}")
    return int(text)


def task_messages(engine: EngineApi, task_id: int) -> list[str]:
    """The task's announcement and its extensions, in order, as hex (task 0: none, genesis carries it)."""
    return [msg.encode().hex() for msg in engine.task_messages(task_id)]


def model_record(engine: EngineApi, index: RoundIndex, model_hash: bytes) -> tuple[Any, int | None]:
    """(champion record, task id) of a model: a crowned model's record, a task's initial champion's record, or
    (None, None) for a model that never was a champion (engine worker thread)."""
    rec = index.record_of_model(model_hash)
    if rec is not None:
        return rec, rec.task_id
    for t in engine.tasks():     # a task's first record: genesis (task 0) or an announced task's initial champion
        first = engine.champion_at(0) if t.task_id == 0 else engine.initial_champion(t.task_id)
        if first is not None and first.model_hash == model_hash:
            return first, t.task_id
    return None, None
