"""Where a model came from, checked against the chain: model cards, ``model eval`` and ``audit``.

Everything is recomputed locally from what the node serves, with the consensus code itself: shards are opened
with ``ml.shards.open_shard`` (which checks the genesis commitment), beacons are verified against the genesis
keyholders, models are scored with ``ml.score`` (bit-exact integers) and the round test is the rule function of
``consensus.protocol.rules`` / ``consensus.protocol.stats`` (``round_test`` below is the one place that calls it). A node that lies about a record is
caught; a node that withholds data makes the check fail loudly. It does not trust the node's champion
records: each is compared with the block's own payload and with the recomputation.
"""
from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chain.block import Block, model_hash
from chain.errors import DecodeError
from consensus.protocol.genesis import Genesis, GenesisParams
from consensus.protocol.messages import Beacon, RoundPayload
from ml.errors import MLError
from ml.model import Model, decode_model
from ml.score import paired, score
from ml.shards import open_shard
from ml.task import Dataset

CARD_FORMAT = "popchain-model-card/1"


class ProvenanceError(Exception):
    """The node's data is missing or inconsistent for the requested check (one line for the user)."""


def round_test(params: GenesisParams, round_: int, parent: dict[str, Any], b: int, c: int,
               m: int) -> tuple[dict[str, int], bool]:
    """(the crowning record's rule fields, passes) for a challenger of ``round_`` with (b, c) against the
    champion ``parent`` (its champion record) among ``m`` listed entries: the consensus rule functions
    themselves (the exact family-wise sign test, consensus.protocol.stats; record field ``bar``), never a
    re-implementation. ``round_`` and ``parent`` do not enter the current rule (no retarget)."""
    from consensus.protocol import rules
    from consensus.protocol.stats import accepts
    return {"bar": rules.crowning_bar(b, c, m, params)}, accepts(b, c, m, params.alpha)


def rule_fields(rec: dict[str, Any]) -> dict[str, int]:
    """The rule-specific fields of a crowning record (z_milli, or bar)."""
    return {k: rec[k] for k in ("z_milli", "bar") if k in rec}


def listed_hashes(beacon: Beacon) -> list[bytes]:
    """Header hashes a beacon lists (``entries``, or the hashes of ``listed`` (hash, miner) pairs)."""
    if hasattr(beacon, "listed"):
        return [pair[0] for pair in beacon.listed]
    return list(beacon.entries)


def describe_rule(fields: dict[str, int]) -> str:
    if "z_milli" in fields:
        return f"z {fields['z_milli'] / 1000:.3f}"
    return f"bar {fields.get('bar')}"


def shard_accuracy(model: Model, shard: Dataset) -> float:
    return score(model, shard.X, shard.y).accuracy if len(shard) else 0.0


def original_units(X: np.ndarray, scale_bits: int) -> np.ndarray:
    """Integer features back to original units; exact (a power-of-two division of |x| < 2^31)."""
    return X.astype(np.float64) / float(1 << scale_bits)


@dataclass
class ChainView:
    """What the checks read from a node, fetched once."""
    genesis: Genesis
    history: list[dict[str, Any]]
    keys: dict[int, bytes] = field(default_factory=dict)     # round -> revealed shard key

    def record(self, model_hash_hex: str) -> dict[str, Any] | None:
        for rec in self.history:
            if rec["model_hash"] == model_hash_hex:
                return rec
        return None

    def shard(self, round_: int) -> Dataset:
        key = self.keys.get(round_)
        if key is None:
            raise ProvenanceError(f"the shard of round {round_} is not revealed on this node")
        try:
            return open_shard(self.genesis.task, round_, key)
        except MLError as exc:
            raise ProvenanceError(f"round {round_}: the revealed key does not open the committed shard: {exc}")


async def chain_view(client) -> ChainView:
    from consensus.protocol.genesis import load_genesis
    genesis = load_genesis(await client.genesis())
    history = (await client.champion())["history"]
    task = await client.task()
    keys = {k["round"]: bytes.fromhex(k["shard_key"]) for k in task["revealed"]}
    return ChainView(genesis, history, keys)


def decode_for(view: ChainView, raw: bytes, what: str) -> Model:
    try:
        return decode_model(raw, view.genesis.task.spec, view.genesis.model_caps)
    except MLError as exc:
        raise ProvenanceError(f"{what}: not a valid model for this chain's task: {exc}") from None


# ---------------------------------------------------------------- model card


def model_card(view: ChainView, rec: dict[str, Any], model: Model) -> dict[str, Any]:
    """Everything a reader needs to check a crowned model against the chain."""
    g = view.genesis
    spec = g.task.spec
    card: dict[str, Any] = {
        "format": CARD_FORMAT, "chain_id": g.chain_id, "genesis_hash": g.hash.hex(),
        "task": {"name": spec.name, "n_features": spec.n_features, "classes": list(spec.classes),
                 "scale_bits": spec.scale_bits, "max_abs": spec.max_abs},
        "round": rec["round"], "height": rec["height"], "block_hash": rec["hash"], "model_hash": rec["model_hash"],
        "miner_address": rec.get("miner_address"), "b": rec["b"], "c": rec["c"], **rule_fields(rec),
        "test": None, "shard_accuracy": None, "shard_rows": None,
        "inputs": "float64 features in the task's original units (columns f0..f{n-1} of holdout.csv); the model "
                  "quantises them: clip(round_half_even(x * 2^scale_bits), -max_abs, max_abs)",
    }
    if rec["round"] >= 1:
        shard = view.shard(rec["round"])
        card["shard_accuracy"] = shard_accuracy(model, shard)
        card["shard_rows"] = len(shard)
        card["test"] = {"b": rec["b"], "c": rec["c"], **rule_fields(rec),
                        "rule": "retargeted z, one-sided McNemar" if "z_milli" in rec else "exact sign test"}
    return card


def check_rows(view: ChainView, max_rows: int = 20_000) -> tuple[np.ndarray, list[str]]:
    """Rows (original units) for an export's agreement check: public training rows and every revealed shard."""
    spec = view.genesis.task.spec
    parts, sources = [view.genesis.task.training.X], [f"{len(view.genesis.task.training)} public training rows"]
    for r in sorted(view.keys):
        shard = view.shard(r)
        parts.append(shard.X)
        sources.append(f"shard {r} ({len(shard)} rows)")
    X = np.concatenate(parts)[:max_rows]
    return original_units(X, spec.scale_bits), sources


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- model eval


async def evaluate(client, model: Model, model_bytes: bytes, shards: int) -> dict[str, Any]:
    """The round test of the current rules for ``model`` against the champion on the latest revealed shards."""
    view = await chain_view(client)
    status = await client.status()
    champ = (await client.champion())["champion"]
    if not view.keys:
        raise ProvenanceError("no shard is revealed yet: nothing to evaluate on (wait for round 1's beacon)")
    champion_model = decode_for(view, await client.model(champ["model_hash"]), "champion")
    next_round = status["open_round"] or status["round"] + (1 if status["round_phase"] in ("crowned", "void",
                                                                                          "not-started") else 0)
    next_round = max(next_round, champ["round"] + 1)
    mh = model_hash(model_bytes).hex()
    duplicate = view.record(mh) is not None
    rows: list[dict[str, Any]] = []
    for r in sorted(view.keys)[-shards:]:
        shard = view.shard(r)
        mine = score(model, shard.X, shard.y)
        theirs = score(champion_model, shard.X, shard.y)
        b, c = paired(mine.correct, theirs.correct)
        rows.append({"shard_round": r, "b": b, "c": c, "accuracy": mine.accuracy,
                     "champion_accuracy": theirs.accuracy})
    if status.get("round_phase") == "closed":
        raise ProvenanceError("no task is open on this chain: no round left to enter (until a task is announced "
                              "or extended)")
    # the entry count of a round not yet closed is unknown: assume a full round (the strictest family-wise bar)
    m = getattr(view.genesis.params, "max_entries", 1)
    for row in rows:
        fields, passes = round_test(view.genesis.params, next_round, champ, row["b"], row["c"], m)
        row.update(fields)
        row["passes"] = passes and not duplicate
    latest = rows[-1]
    return {"model_hash": mh, "champion": champ["model_hash"], "champion_round": champ["round"],
            "next_round": next_round, "assumed_entries": m, "rule": rule_fields(latest),
            "duplicate_of_a_champion": duplicate, "would_pass": latest["passes"], "shards": rows}


# ---------------------------------------------------------------- audit


async def audit(client, expected_genesis: bytes | None = None) -> dict[str, Any]:
    """Re-check every crowned model: its block and payload, the beacon, the shard commitment, the scores
    (bit-exact), the retargeted z, the paired test and the lineage (each champion's block builds on the
    previous champion's block)."""
    view = await chain_view(client)
    g = view.genesis
    if expected_genesis is not None and g.hash != expected_genesis:
        raise ProvenanceError(f"the node serves genesis {g.hash.hex()}, not the expected {expected_genesis.hex()}")
    records = []
    prev: dict[str, Any] | None = None
    prev_model: Model | None = None
    for rec in view.history:
        entry: dict[str, Any] = {k: rec.get(k) for k in ("round", "height", "hash", "model_hash", "miner_address",
                                                          "b", "c")}
        entry.update(rule_fields(rec))
        checks: dict[str, bool] = {}
        problems: list[str] = []
        try:
            block, model = await _audit_record(client, view, rec, prev, prev_model, checks, entry)
        except (ProvenanceError, DecodeError, MLError) as exc:
            problems.append(str(exc))
            block, model = None, None
        problems += [f"{name} failed" for name, ok in checks.items() if not ok]
        entry["checks"], entry["problems"], entry["ok"] = checks, problems, not problems
        records.append(entry)
        prev, prev_model = rec, model
        del block
    return {"format": "popchain-audit/1", "chain_id": g.chain_id, "genesis_hash": g.hash.hex(),
            "records": records, "crowned": sum(1 for r in records if (r["round"] or 0) >= 1),
            "ok": all(r["ok"] for r in records) and bool(records)}


async def _audit_record(client, view: ChainView, rec: dict[str, Any], prev: dict[str, Any] | None,
                        prev_model: Model | None, checks: dict[str, bool],
                        entry: dict[str, Any]) -> tuple[Block, Model]:
    g = view.genesis
    data = await client.get(f"/api/blocks/{rec['hash']}", raw="1")
    block = Block.decode(bytes.fromhex(data["raw"]), max_size=g.params.max_block_bytes)
    h = block.header
    checks["block-hash"] = h.hash.hex() == rec["hash"]
    checks["model-hash"] = model_hash(block.model) == h.model_hash and h.model_hash.hex() == rec["model_hash"]
    checks["height-round"] = (h.height, h.round) == (rec["height"], rec["round"])
    model = decode_for(view, block.model, f"model of round {rec['round']}")
    if rec["round"] == 0:     # the genesis champion: the block must be genesis itself
        checks["genesis"] = h.hash == g.hash and prev is None
        return block, model
    if prev is None or prev_model is None:
        raise ProvenanceError(f"round {rec['round']}: no earlier champion in the history (lineage broken)")
    checks["lineage"] = h.prev_hash.hex() == prev["hash"] and rec["round"] > prev["round"]
    payload = RoundPayload.decode(block.payload)
    beacon: Beacon = payload.beacon
    checks["beacon-signatures"] = beacon.verify(g.keyholders, g.threshold) and beacon.round == rec["round"]
    listed = listed_hashes(beacon)
    checks["entered"] = h.hash in listed and h.prev_hash == beacon.anchor_hash
    checks["revealed-key"] = view.keys.get(rec["round"]) == beacon.shard_key
    try:
        shard = open_shard(g.task, rec["round"], beacon.shard_key)     # checks the genesis commitment
    except MLError as exc:
        raise ProvenanceError(f"round {rec['round']}: shard commitment: {exc}") from None
    mine = await asyncio.to_thread(score, model, shard.X, shard.y)
    theirs = await asyncio.to_thread(score, prev_model, shard.X, shard.y)
    b, c = paired(mine.correct, theirs.correct)
    fields, passes = round_test(g.params, rec["round"], prev, b, c, len(listed))
    entry["recomputed"] = {"b": b, "c": c, **fields, "accuracy": mine.accuracy, "champion_accuracy": theirs.accuracy}
    recorded = rule_fields(rec)
    in_payload = {k: getattr(payload, k) for k in recorded}
    checks["payload-record"] = ((payload.b, payload.c) == (rec["b"], rec["c"]) and in_payload == recorded)
    checks["rescore"] = (b, c) == (rec["b"], rec["c"])
    checks["rule-fields"] = fields == recorded
    checks["crowning-test"] = passes
    return block, model


def audit_html(report: dict[str, Any]) -> str:
    from html import escape
    rows = []
    for r in report["records"]:
        rc = r.get("recomputed") or {}
        acc = f"{rc['accuracy']:.4f}" if "accuracy" in rc else "-"
        rows.append("<tr class='{}'><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{} / {}</td>"
                    "<td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
                        "ok" if r["ok"] else "bad", r["round"], r["height"], escape(str(r["hash"])[:16]),
                        escape(str(r.get("miner_address") or "(genesis)")), r["b"], rc.get("b", "-"), r["c"],
                        rc.get("c", "-"), escape(describe_rule(rule_fields(r))), acc,
                        "ok" if r["ok"] else escape("; ".join(r["problems"]))))
    verdict = "every record checks out" if report["ok"] else "PROBLEMS FOUND"
    return ("<!doctype html><meta charset='utf-8'><title>popchain audit</title>"
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px}tr.bad{background:#fcc}</style>"
            f"<h1>popchain audit: {escape(verdict)}</h1><p>chain {escape(report['chain_id'])}, genesis "
            f"<code>{escape(report['genesis_hash'])}</code>, {report['crowned']} crowned models</p>"
            "<table><tr><th>round</th><th>height</th><th>block</th><th>miner</th><th>b record / recomputed</th>"
            "<th>c record / recomputed</th><th>rule</th><th>shard accuracy</th><th>result</th></tr>"
            + "".join(rows) + "</table>\n")
