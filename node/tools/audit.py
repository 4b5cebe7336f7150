"""``popchain audit``: re-check every crowned model of the chain, task by task, against the chain itself.

For each champion record (height order, every task) it fetches the block and checks: the block and model
hashes, height and round, the chain linkage (each crowned block builds on the previous one, or on plain blocks
after it), the beacon's keyholder signatures (and on a committee chain its release: the t members' proven
shares give exactly the revealed key), that the block was listed and built on the beacon's anchor, that
the beacon served the record's task at the shard index the node says and revealed the key the node says, the
shard commitment (the shard opens under the *task's* package at that index), a bit-exact re-score of the model
and of the task's previous champion on it (each model decoded under its own task's spec), the rule's fields
against the payload and the record, and the crowning test. Each task's first champion is checked against its
announcement (task 0: the genesis block). The packages come from node.tools.provenance (genesis, or the
governance-signed messages): the node is not trusted for them. Nothing is written but the report.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from html import escape
from typing import Any

from chain.block import Block, model_hash
from chain.errors import DecodeError
from consensus.protocol.messages import Beacon, RoundPayload
from ml.errors import MLError
from ml.model import Model
from ml.score import paired, score
from ml.shards import open_shard
from node.tools.provenance import (
    ChainView,
    ProvenanceError,
    TaskView,
    chain_view,
    decode_under,
    describe_rule,
    listed_hashes,
    round_test,
    rule_fields,
)

REPORT_FORMAT = "popchain-audit/2"
Progress = Callable[[int, int], None]


async def audit(client: Any, expected_genesis: bytes | None = None,
                progress: Progress | None = None) -> dict[str, Any]:
    view = await chain_view(client)
    g = view.genesis
    if expected_genesis is not None and g.hash != expected_genesis:
        raise ProvenanceError(f"the node serves genesis {g.hash.hex()}, not the expected {expected_genesis.hex()}")
    standing: dict[int, tuple[dict[str, Any], Model]] = {}     # each task's champion so far (record, model)
    records: list[dict[str, Any]] = []
    prev: dict[str, Any] | None = None
    for i, rec in enumerate(view.history):
        entry: dict[str, Any] = {k: rec.get(k) for k in ("round", "height", "hash", "model_hash", "miner_address",
                                                          "b", "c", "task_id")}
        entry.update(rule_fields(rec))
        checks: dict[str, bool] = {}
        problems: list[str] = []
        try:
            task = await view.task(int(rec.get("task_id") or 0))
            if task.task_id not in standing:
                standing[task.task_id] = _initial(view, task, checks)
            model = await _audit_record(client, view, task, rec, prev, standing[task.task_id], checks, entry)
            if rec["round"] >= 1:
                standing[task.task_id] = (rec, model)
        except (ProvenanceError, DecodeError, MLError) as exc:
            problems.append(str(exc))
        problems += [f"{name} failed" for name, ok in checks.items() if not ok]
        entry["checks"], entry["problems"], entry["ok"] = checks, problems, not problems
        records.append(entry)
        prev = rec
        if progress is not None:
            progress(i + 1, len(view.history))
    tasks = []
    for task_id, task in sorted(view.tasks.items()):
        mine = [r for r in records if (r["task_id"] or 0) == task_id]
        tasks.append({"task_id": task_id, "name": task.spec.name, "records": len(mine),
                      "crowned": sum(1 for r in mine if (r["round"] or 0) >= 1), "ok": all(r["ok"] for r in mine),
                      "package": "genesis" if task_id == 0 else
                      f"announcement + {task.messages - 1} extension(s), governance signatures checked"})
    return {"format": REPORT_FORMAT, "chain_id": g.chain_id, "genesis_hash": g.hash.hex(), "records": records,
            "tasks": tasks, "crowned": sum(1 for r in records if (r["round"] or 0) >= 1),
            "ok": all(r["ok"] for r in records) and bool(records)}


def _release_holds(view: ChainView, task: TaskView, beacon: Beacon) -> bool:
    from chain.errors import RuleError
    from consensus.protocol.release import check_release
    g = view.genesis
    assert g.committee is not None
    try:
        point, sealed = task.release_point(g, beacon.shard_index)
        check_release(g.committee, g.hash, point, beacon.release, sealed, beacon.shard_key)
    except (RuleError, DecodeError, IndexError, ValueError):
        return False
    return True


def _initial(view: ChainView, task: TaskView, checks: dict[str, bool]) -> tuple[dict[str, Any], Model]:
    """The task's champion before its first crowning: the genesis model, or the announcement's (whose hash
    the node's lineage of the task must start with)."""
    first = task.history[0] if task.history else None
    if task.task_id != 0:
        checks["task-announcement"] = first is not None and first["round"] == 0 and \
            first["model_hash"] == model_hash(task.initial_model).hex()
    rec = first or {"round": 0, "hash": view.genesis.hash.hex(), "model_hash": model_hash(task.initial_model).hex()}
    return rec, decode_under(view, task, task.initial_model, f"task {task.task_id}'s initial champion")


async def _audit_record(client: Any, view: ChainView, task: TaskView, rec: dict[str, Any],
                        prev: dict[str, Any] | None, champion: tuple[dict[str, Any], Model],
                        checks: dict[str, bool], entry: dict[str, Any]) -> Model:
    g = view.genesis
    data = await client.get(f"/api/blocks/{rec['hash']}", raw="1")
    block = Block.decode(bytes.fromhex(data["raw"]), max_size=g.params.max_block_bytes)
    h = block.header
    checks["block-hash"] = h.hash.hex() == rec["hash"]
    checks["model-hash"] = model_hash(block.model) == h.model_hash and h.model_hash.hex() == rec["model_hash"]
    checks["height-round"] = (h.height, h.round) == (rec["height"], rec["round"])
    model = decode_under(view, task, block.model, f"model of round {rec['round']}")
    if rec["round"] == 0:     # the genesis champion: the block must be genesis itself
        checks["genesis"] = h.hash == g.hash and prev is None
        return model
    if prev is None:
        raise ProvenanceError(f"round {rec['round']}: no earlier record in the history (lineage broken)")
    # crowned blocks follow each other, or plain blocks (no champion record) lie between them
    consecutive = prev["height"] == h.height - 1
    checks["lineage"] = (h.prev_hash.hex() == prev["hash"] if consecutive else prev["height"] < h.height) \
        and rec["round"] > prev["round"]
    payload = RoundPayload.decode(block.payload)
    beacon: Beacon = payload.beacon
    checks["beacon-signatures"] = beacon.verify(g.keyholders, g.threshold) and beacon.round == rec["round"]
    listed = listed_hashes(beacon)
    checks["entered"] = h.hash in listed and h.prev_hash == beacon.anchor_hash
    revealed = task.keys.get(rec["round"])
    checks["task-shard"] = revealed is not None and (beacon.task_id, beacon.shard_index) == (task.task_id,
                                                                                             revealed[0])
    checks["revealed-key"] = revealed is not None and revealed[1] == beacon.shard_key
    if g.committee is not None:     # the committee's proven shares give exactly the key (PROTOCOL §3.14)
        checks["release"] = _release_holds(view, task, beacon)
    try:   # checks the commitment of the task's shard at the beacon's index
        shard = open_shard(task.package, beacon.shard_index, beacon.shard_key)
    except MLError as exc:
        raise ProvenanceError(f"round {rec['round']}: task {task.task_id} shard {beacon.shard_index} commitment: "
                              f"{exc}") from None
    champ_rec, champ_model = champion
    mine = await asyncio.to_thread(score, model, shard.X, shard.y)
    theirs = await asyncio.to_thread(score, champ_model, shard.X, shard.y)
    b, c = paired(mine.correct, theirs.correct)
    fields, passes = round_test(g.params, rec["round"], champ_rec, b, c, len(listed), len(shard.y))
    entry["recomputed"] = {"b": b, "c": c, **fields, "accuracy": mine.accuracy, "champion_accuracy": theirs.accuracy,
                           "against": champ_rec["model_hash"], "shard_index": beacon.shard_index}
    recorded = rule_fields(rec)
    in_payload = {k: getattr(payload, k) for k in recorded}
    checks["payload-record"] = ((payload.b, payload.c) == (rec["b"], rec["c"]) and in_payload == recorded)
    checks["rescore"] = (b, c) == (rec["b"], rec["c"])
    checks["rule-fields"] = fields == recorded
    checks["crowning-test"] = passes
    return model


def audit_html(report: dict[str, Any]) -> str:
    rows = []
    for r in report["records"]:
        rc = r.get("recomputed") or {}
        acc = f"{rc['accuracy']:.4f}" if "accuracy" in rc else "-"
        rows.append("<tr class='{}'><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td>"
                    "<td>{} / {}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
                        "ok" if r["ok"] else "bad", r["round"], r.get("task_id") or 0, r["height"],
                        escape(str(r["hash"])[:16]), escape(str(r.get("miner_address") or "(genesis)")),
                        f"{r['b']:,}", _n(rc.get("b")), f"{r['c']:,}", _n(rc.get("c")),
                        escape(describe_rule(rule_fields(r))), acc,
                        "ok" if r["ok"] else escape("; ".join(r["problems"]))))
    tasks = "".join(f"<li>task {t['task_id']} {escape(t['name'])}: {t['crowned']:,} crowned, "
                    f"{'ok' if t['ok'] else 'PROBLEMS'} (package: {escape(t['package'])})</li>"
                    for t in report.get("tasks", []))
    verdict = "every record checks out" if report["ok"] else "PROBLEMS FOUND"
    return ("<!doctype html><meta charset='utf-8'><title>popchain audit</title>"
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px}tr.bad{background:#fcc}</style>"
            f"<h1>popchain audit: {escape(verdict)}</h1><p>chain {escape(report['chain_id'])}, genesis "
            f"<code>{escape(report['genesis_hash'])}</code>, {report['crowned']:,} crowned models</p><ul>{tasks}</ul>"
            "<table><tr><th>round</th><th>task</th><th>height</th><th>block</th><th>miner</th>"
            "<th>b record / recomputed</th><th>c record / recomputed</th><th>rule</th><th>shard accuracy</th>"
            "<th>result</th></tr>" + "".join(rows) + "</table>\n")


def _n(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else "-"
