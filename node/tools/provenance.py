"""Where a model came from, checked against the chain: the per-task view of a chain, model cards and
``model eval`` (``audit`` lives in node.tools.audit).

Everything is recomputed locally from what the node serves, with the consensus code itself, and each model under
its *own* task: task 0's package comes from the genesis file, an announced task's is rebuilt from its
governance-signed announcement and extensions (signatures checked against the genesis keyholders — the node is
not trusted for it); shards are opened with ``ml.shards.open_shard`` (which checks the commitment) at their
task-local index; models are decoded under their task's spec and scored with ``ml.score`` (bit-exact integers);
the round test is the rule function of ``consensus.rules`` / ``consensus.protocol.stats`` (``round_test`` is the one place
that calls it). A node that lies about a record is caught; a node that withholds data makes the check fail loudly.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chain.errors import DecodeError, PopError
from consensus.protocol.genesis import Genesis, GenesisParams
from consensus.protocol.messages import Beacon
from ml.errors import MLError
from ml.model import Model, decode_model
from ml.shards import PublicTask, open_shard
from ml.task import Dataset
from node.tools.blob_cache import ensure_blobs

CARD_FORMAT = "popchain-model-card/2"


class ProvenanceError(PopError):
    """The node's data is missing or inconsistent for the requested check (one line for the user)."""


def round_test(params: GenesisParams, round_: int, parent: dict[str, Any], b: int, c: int,
               m: int, rows: int) -> tuple[dict[str, int], bool]:
    """(the crowning record's rule fields, passes) for a challenger of ``round_`` with (b, c) against the
    champion ``parent`` (its champion record) among ``m`` listed entries on a ``rows``-row shard: the consensus
    rule functions themselves (the exact family-wise sign test and the margin, consensus.protocol.stats; record
    field ``bar``), never a re-implementation. ``round_`` and ``parent`` do not enter the rule (no retarget)."""
    from consensus.protocol import rules
    from consensus.protocol.stats import crowns
    return ({"bar": rules.crowning_bar(b, c, m, params, rows)},
            crowns(b, c, m, rows, params.alpha, params.min_gain_bp))


def rule_fields(rec: dict[str, Any]) -> dict[str, int]:
    """The rule-specific fields of a crowning record (z_milli, or bar)."""
    return {k: rec[k] for k in ("z_milli", "bar") if k in rec}


def listed_hashes(beacon: Beacon) -> list[bytes]:
    """Header hashes a beacon lists."""
    return list(beacon.entries)


def describe_rule(fields: dict[str, int]) -> str:
    if "z_milli" in fields:
        return f"z {fields['z_milli'] / 1000:.3f}"
    return f"bar {fields.get('bar')}"


def original_units(X: np.ndarray, scale_bits: int) -> np.ndarray:
    """Integer features back to original units; exact (a power-of-two division of |x| < 2^31)."""
    return X.astype(np.float64) / float(1 << scale_bits)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- a chain, task by task


@dataclass
class TaskView:
    """One task as checked from the genesis file and the governance-signed messages."""
    task_id: int
    package: PublicTask                                   # extensions' shards appended (shard s at index s-1)
    history: list[dict[str, Any]]                         # its champion lineage, the initial champion first
    keys: dict[int, tuple[int, bytes]] = field(default_factory=dict)   # round -> (shard index, revealed key)
    messages: int = 0                                     # announcement + extensions checked
    initial_model: bytes = b""                            # its champion before any crowning (genesis/announced)
    batches: tuple[tuple[int, bytes, bytes], ...] = ()    # (first shard, message id, keyholder material) per batch

    def release_point(self, genesis: Genesis, index: int) -> tuple[bytes, Any]:
        """(the point shard ``index``'s release is proven against, its sealed key or None) on a committee chain
        (PROTOCOL §3.14), from genesis and the governance-signed messages only."""
        from consensus.protocol.release import decode_seal_material, vrf_point
        if self.package.vrf:
            return vrf_point(genesis.hash, self.batches[0][1], index), None
        first, msg_id, material = max((b for b in self.batches if b[0] <= index), key=lambda b: b[0])
        sealed = genesis.sealed if msg_id == genesis.hash else decode_seal_material(
            material, (next((b[0] for b in self.batches if b[0] > first), self.package.n_rounds + 1)) - first)
        return sealed[index - first].point, sealed[index - first]

    @property
    def spec(self) -> Any:
        return self.package.spec

    def shard(self, round_: int) -> Dataset:
        got = self.keys.get(round_)
        if got is None:
            raise ProvenanceError(f"the shard of round {round_} (task {self.task_id}) is not revealed on this node")
        index, key = got
        try:
            return open_shard(self.package, index, key)
        except MLError as exc:
            raise ProvenanceError(f"round {round_}: the revealed key does not open task {self.task_id}'s shard "
                                  f"{index}: {exc}") from None


Batches = tuple[tuple[int, bytes, bytes], ...]


def verified_package(genesis: Genesis, task_id: int, messages_hex: list[str]
                     ) -> tuple[PublicTask, int, bytes, Batches]:
    """(package, messages checked, initial champion bytes, (first shard, message id, keyholder material) of each
    batch) of ``task_id``: genesis for task 0; else the announcement then extensions 1, 2, … of the task, each
    for this chain and signed by ``threshold`` genesis keyholders (the sponsor's signature too for the
    announcement)."""
    if task_id == 0:
        return genesis.task, 0, genesis.block.model, ((1, genesis.hash, b""),)
    from consensus.protocol.tasks import TaskAnnouncement, TaskExtension, decode_task_message
    if not messages_hex:
        raise ProvenanceError(f"the node sent no announcement for task {task_id}")
    package: PublicTask | None = None
    champion = b""
    commits: list[bytes] = []
    cts: list[bytes] = []
    batches: list[tuple[int, bytes, bytes]] = []
    for i, text in enumerate(messages_hex):
        try:
            msg = decode_task_message(bytes.fromhex(text))
        except (DecodeError, ValueError) as exc:
            raise ProvenanceError(f"task {task_id}: message {i} does not decode: {exc}") from None
        if msg.chain_id != genesis.chain_id or not msg.verify(genesis.keyholders, genesis.threshold):
            raise ProvenanceError(f"task {task_id}: message {i} lacks the governance signatures of this chain")
        if i == 0:
            if not isinstance(msg, TaskAnnouncement) or not msg.verify_sponsor():
                raise ProvenanceError(f"task {task_id}: the first message is no sponsor-signed announcement")
            champion = msg.champion
            try:
                package = PublicTask.decode(msg.package)
            except MLError as exc:
                raise ProvenanceError(f"task {task_id}: announcement package: {exc}") from None
            batches.append((1, msg.msg_hash, msg.keyholder_material))
        elif not isinstance(msg, TaskExtension) or (msg.task_id, msg.seq) != (task_id, i):
            raise ProvenanceError(f"task {task_id}: message {i} is not extension {i} of the task")
        else:
            assert package is not None
            batches.append((package.n_rounds + len(commits) + 1, msg.msg_hash, msg.keyholder_material))
            commits += msg.commitments
            cts += msg.ciphertexts
    assert package is not None
    if commits:
        package = dataclasses.replace(package, commitments=package.commitments + tuple(commits),
                                      ciphertexts=package.ciphertexts + tuple(cts))
    return package, len(messages_hex), champion, tuple(batches)


@dataclass
class ChainView:
    """What the checks read from a node: genesis, the chain's lineage, and each task (fetched when needed)."""
    genesis: Genesis
    history: list[dict[str, Any]]                         # every crowned record, height order (+ genesis)
    client: Any = None
    tasks: dict[int, TaskView] = field(default_factory=dict)

    async def task(self, task_id: int) -> TaskView:
        if task_id not in self.tasks:
            info = await self.client.get(f"/api/tasks/{task_id}", messages="1")
            package, n, initial, batches = verified_package(self.genesis, task_id, info.get("messages") or [])
            package = await ensure_blobs(self.client, package)   # blobs (§3.15): fetched, checked, rows loaded
            keys = {k["round"]: (k["shard_index"], bytes.fromhex(k["shard_key"])) for k in info["revealed"]}
            older = info.get("revealed_next")
            while older is not None:      # the task page holds the newest keys: an audit pages back to the start
                more = await self.client.get(f"/api/tasks/{task_id}", revealed_before=str(older))
                keys.update({k["round"]: (k["shard_index"], bytes.fromhex(k["shard_key"])) for k in more["revealed"]})
                older = more.get("revealed_next")
            history = await full_history(self.client, task_id)    # all of it: the task page keeps the newest
            self.tasks[task_id] = TaskView(task_id, package, history, keys, n, initial, batches)
        return self.tasks[task_id]

    def record(self, model_hash_hex: str) -> dict[str, Any] | None:
        for rec in self.history:
            if rec["model_hash"] == model_hash_hex:
                return rec
        return None


async def full_history(client: Any, task: int | None = None) -> list[dict[str, Any]]:
    """Every champion record (``/api/champion`` pages, oldest first)."""
    pages: list[list[dict[str, Any]]] = []
    before: int | None = None
    while True:
        params = {"before": str(before)} if before is not None else {}
        if task is not None:
            params["task"] = str(task)
        page = await client.get("/api/champion", **params)
        pages.append(page["history"])
        before = page.get("next")
        if not before:
            break
    return [rec for page in reversed(pages) for rec in page]


async def chain_view(client: Any) -> ChainView:
    from consensus.protocol.genesis import load_genesis
    genesis = load_genesis(await client.genesis())
    return ChainView(genesis, await full_history(client), client)


def decode_under(view: ChainView, task: TaskView, raw: bytes, what: str) -> Model:
    try:
        return decode_model(raw, task.spec, view.genesis.model_caps)
    except MLError as exc:
        raise ProvenanceError(f"{what}: not a valid model for task {task.task_id} ({task.spec.name}): "
                              f"{exc}") from None


async def model_and_task(client: Any, view: ChainView, model_hash_hex: str) -> tuple[bytes, TaskView, Any]:
    """(model bytes, its task's view, its champion record or None) — the node names the task; the bytes are
    checked against the hash and decoded under that task's spec."""
    from chain.block import model_hash
    info = await client.get(f"/api/models/{model_hash_hex}", format="hex")
    raw = bytes.fromhex(info["model"])
    if model_hash(raw).hex() != info["hash"]:
        raise ProvenanceError("the node sent model bytes that do not hash to the model hash")
    task_id = info.get("task_id")
    task = await view.task(task_id if task_id is not None else 0)
    return raw, task, info.get("record")


# ---------------------------------------------------------------- model card


def model_card(view: ChainView, task: TaskView, rec: dict[str, Any], model: Model) -> dict[str, Any]:
    """Everything a reader needs to check a crowned model against the chain."""
    from ml.score import score
    g = view.genesis
    spec = task.spec
    card: dict[str, Any] = {
        "format": CARD_FORMAT, "chain_id": g.chain_id, "genesis_hash": g.hash.hex(),
        "task_id": task.task_id,
        "task": {"name": spec.name, "n_features": spec.n_features, "classes": list(spec.classes),
                 "scale_bits": spec.scale_bits, "max_abs": spec.max_abs,
                 "package": "genesis" if task.task_id == 0 else
                 f"announcement + {task.messages - 1} extension(s), governance signatures checked"},
        "round": rec["round"], "height": rec["height"], "block_hash": rec["hash"], "model_hash": rec["model_hash"],
        "miner_address": rec.get("miner_address"), "b": rec["b"], "c": rec["c"], **rule_fields(rec),
        "test": None, "shard_accuracy": None, "shard_rows": None,
        "inputs": "float64 features in the task's original units (columns f0..f{n-1} of holdout.csv); the model "
                  "quantises them: clip(round_half_even(x * 2^scale_bits), -max_abs, max_abs)",
    }
    if rec["round"] >= 1:
        shard = task.shard(rec["round"])
        card["shard_accuracy"] = score(model, shard.X, shard.y).accuracy if len(shard) else 0.0
        card["shard_rows"] = len(shard)
        card["shard_index"] = task.keys[rec["round"]][0]
        card["test"] = {"b": rec["b"], "c": rec["c"], **rule_fields(rec),
                        "rule": "retargeted z, one-sided McNemar" if "z_milli" in rec else "exact sign test"}
    return card


def check_parts(task: TaskView) -> list[tuple[str, np.ndarray]]:
    """Every row (original units) an export's agreement check runs on, by source, none left out: the task's
    public training rows, then each revealed shard of the task in round order."""
    spec = task.spec
    parts = [("public training rows", original_units(task.package.training.X, spec.scale_bits))]
    for r in sorted(task.keys):
        shard = task.shard(r)
        parts.append((f"round {r} (task {task.task_id} shard {task.keys[r][0]})",
                      original_units(shard.X, spec.scale_bits)))
    return parts
