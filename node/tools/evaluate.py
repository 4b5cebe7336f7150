"""``popchain model eval``: would this model pass the round test of its task now?

Does: pick the task the model competes on (``--task``, else the task whose spec the file carries — the current
round's task when several share it), score the candidate — an integer model (bit-exact, ``ml.score``) or an
exported ONNX file (onnxruntime; the export computes popchain's integers) — and that task's champion on the
task's latest revealed shards, and apply the consensus rule functions (node.tools.provenance.round_test) as if
the next round had a full set of ``max_entries`` entrants (the strictest family-wise bar: a round's entry count
is unknown before it closes). Does not: enter anything or contact anyone but the node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.model import Model
from ml.score import paired, score
from node.tools.provenance import (
    ChainView,
    ProvenanceError,
    TaskView,
    chain_view,
    decode_under,
    model_and_task,
    original_units,
    round_test,
    rule_fields,
)


@dataclass
class Candidate:
    """A model to evaluate: an integer model (``model``) or an exported ONNX file (``onnx``), its task spec
    (None: raw bytes, which carry none) and its model hash."""
    model_hash: str
    spec: Any = None
    model: Model | None = None
    onnx: Any = None                  # ml.onnx_export.OnnxPredictor
    raw: bytes | None = None          # raw model bytes: decoded under the chosen task's spec

    def correct(self, view: ChainView, task: TaskView, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.onnx is not None:
            return np.asarray(self.onnx.predict(original_units(X, task.spec.scale_bits)) == y)
        model = self.model if self.model is not None else decode_under(view, task, self.raw or b"", "model")
        return score(model, X, y).correct


async def pick_task(client: Any, status: dict[str, Any], spec: Any, wanted: int | None) -> int:
    """The task to evaluate on: ``wanted``, else the one whose spec is ``spec`` (the current round's task
    first when several are)."""
    tasks = (await client.tasks())["tasks"]
    if wanted is not None:
        if not any(t["task_id"] == wanted for t in tasks):
            raise ProvenanceError(f"no task {wanted} on this chain (see 'popchain task list')")
        return wanted
    if spec is None:   # raw bytes: the current round's task
        return int(status.get("round_task") or 0)
    same = [t["task_id"] for t in tasks if t.get("spec") and t["spec"]["n_features"] == spec.n_features
            and tuple(t["spec"]["classes"]) == tuple(spec.classes) and t["spec"]["name"] == spec.name
            and t["spec"]["scale_bits"] == spec.scale_bits and t["spec"]["max_abs"] == spec.max_abs]
    if not same:
        raise ProvenanceError(f"no task of this chain takes a {spec.name!r} model with {spec.n_features} features "
                              "(see 'popchain task list')")
    if status.get("round_task") in same:
        return int(status["round_task"])
    open_same = [k for k in same if next(t for t in tasks if t["task_id"] == k)["status"] == "open"]
    return (open_same or same)[-1]


async def evaluate(client: Any, cand: Candidate, shards: int, wanted: int | None) -> dict[str, Any]:
    """The round test of the current rules for ``cand`` against its task's champion on the task's latest
    revealed shards."""
    view = await chain_view(client)
    status = await client.status()
    task_id = await pick_task(client, status, cand.spec, wanted)
    task = await view.task(task_id)
    if not task.keys:
        raise ProvenanceError(f"no shard of task {task_id} is revealed yet: nothing to evaluate on")
    champ = (await client.champion(task_id))["champion"]
    raw, _, _ = await model_and_task(client, view, champ["model_hash"])
    champion_model = decode_under(view, task, raw, "champion")
    next_round = status["open_round"] or status["round"] + (1 if status["round_phase"] in ("crowned", "void",
                                                                                          "not-started") else 0)
    next_round = max(next_round, champ["round"] + 1)
    duplicate = any(rec["model_hash"] == cand.model_hash for rec in view.history) or \
        any(rec["model_hash"] == cand.model_hash for rec in task.history)
    rows: list[dict[str, Any]] = []
    for r in sorted(task.keys)[-shards:]:
        shard = task.shard(r)
        mine = cand.correct(view, task, shard.X, shard.y)
        theirs = score(champion_model, shard.X, shard.y)
        b, c = paired(mine, theirs.correct)
        rows.append({"shard_round": r, "shard_index": task.keys[r][0], "b": b, "c": c,
                     "accuracy": float(mine.mean()) if len(mine) else 0.0, "champion_accuracy": theirs.accuracy,
                     "rows": len(shard.y)})
    task_status = next(t for t in (await client.tasks())["tasks"] if t["task_id"] == task_id)
    m = getattr(view.genesis.params, "max_entries", 1)
    for row in rows:
        fields, passes = round_test(view.genesis.params, next_round, champ, row["b"], row["c"], m, row["rows"])
        row.update(fields)
        row["passes"] = passes and not duplicate
    latest = rows[-1]
    return {"model_hash": cand.model_hash, "task_id": task_id, "task_status": task_status["status"],
            "champion": champ["model_hash"], "champion_round": champ["round"], "next_round": next_round,
            "assumed_entries": m, "rule": rule_fields(latest), "duplicate_of_a_champion": duplicate,
            "would_pass": latest["passes"] and task_status["status"] == "open", "shards": rows,
            "via": "onnxruntime" if cand.onnx is not None else "popchain integer scoring"}
