"""TaskBook: the engine's store of task messages and per-block task registries, and the checks a task message
must pass before it can be activated (PROTOCOL §3.13).

Store layout (consensus meta keys, written by the engine in the same synced WriteBatch as the block that
applies them): ``c/treg/<u32 height>`` → the Registry after the main-chain block at that height (absent for
genesis: ``genesis_registry``); ``c/tmsg/<id>`` → task message bytes (activated ones, and a bounded pool of
validated, not yet activated ones gossiped to this node). Decoded packages are cached (bounded).

What it does NOT do: fork choice or finality (the engine), ledger moves (chain/), scoring (block validity).
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from chain.block import Header, model_hash
from chain.errors import DecodeError, RuleError
from chain.store import ChainStore
from consensus._meta import P_TID, P_TMSG, P_TREG, u32
from consensus.protocol.genesis import Genesis
from consensus.protocol.registry import (
    Advance,
    ChampionRecord,
    Registry,
    TaskRecord,
    advance,
    genesis_registry,
)
from consensus.protocol.release import SealedShard, vrf_point
from consensus.protocol.tasks import (
    TaskAnnouncement,
    TaskExtension,
    TaskMessage,
    check_batch_material,
    decode_task_message,
    escrow_account,
)
from ml.errors import MLError
from ml.model import decode_model
from ml.shards import MAX_GENERATED_SHARD_BYTES, SALT_SIZE, SECRET_OVERHEAD, PublicTask, vrf_labels

MAX_POOL = 256            # validated task messages waiting for activation (governance-signed: few)
BLOCK_HEADROOM = 256 << 10   # room a block keeps for its header, txs, model and beacon next to task messages

__all__ = ["BLOCK_HEADROOM", "MAX_POOL", "TaskBook", "activation_budget"]


def activation_budget(max_block_bytes: int) -> int:
    """Bytes of task messages one round payload may carry so that its block still fits the genesis cap."""
    return max(0, max_block_bytes - BLOCK_HEADROOM)


class TaskBook:
    def __init__(self, store: ChainStore, genesis: Genesis) -> None:
        self.store = store
        self.genesis = genesis
        g = genesis.header
        escrow = dict(genesis.allocations).get(escrow_account(0), 0)
        self._genesis_registry = genesis_registry(
            genesis.hash, genesis.n_rounds, ChampionRecord(g.hash, 0, 0, g.miner, g.model_hash, 0, 0, 0, 0),
            sponsor=genesis.sponsor, bounty=escrow, per_crowning=genesis.per_crowning)
        self._msgs: OrderedDict[bytes, TaskMessage] = OrderedDict()
        self._packages: OrderedDict[tuple[int, tuple[tuple[bytes, int], ...]], PublicTask] = OrderedDict()
        self._decoded: OrderedDict[bytes, PublicTask] = OrderedDict()
        self._sealed: OrderedDict[bytes, tuple[SealedShard, ...]] = OrderedDict()

    # ------------------------------------------------------------ registries

    def registry_at(self, header: Header) -> Registry:
        """The registry after main-chain block ``header`` (genesis: task 0 alone)."""
        if header.height == 0:
            return self._genesis_registry
        raw = self.store.meta_get(P_TREG + u32(header.height))
        if raw is None or not self.store.is_main_chain(header.hash):   # registries are kept per main-chain height
            raise RuleError("stale-parent", f"no task registry for height {header.height} (not on the main chain)")
        return Registry.decode(raw)

    @staticmethod
    def registry_extra(height: int, registry: Registry | None) -> dict[bytes, bytes | None]:
        return {P_TREG + u32(height): None if registry is None else registry.encode()}

    # ------------------------------------------------------------ messages

    def message(self, msg_hash: bytes) -> TaskMessage | None:
        hit = self._msgs.get(msg_hash)
        if hit is None:
            raw = self.store.meta_get(P_TMSG + msg_hash)
            if raw is None:
                return None
            hit = decode_task_message(raw)
            self._msgs[msg_hash] = hit
            while len(self._msgs) > 64:
                self._msgs.popitem(last=False)
        return hit

    def message_extra(self, msgs: Sequence[TaskMessage]) -> dict[bytes, bytes | None]:
        out: dict[bytes, bytes | None] = {}
        for m in msgs:
            if self.store.meta_get(P_TMSG + m.msg_hash) is None:
                out[P_TMSG + m.msg_hash] = m.encode()
                out[P_TID + m.msg_hash] = b""
        return out

    def ids(self) -> list[bytes]:
        """The ids of every stored task message (activated or not), in id order."""
        return [k[len(P_TID):] for k, _ in self.store.meta_items(P_TID)]

    def pool(self) -> list[TaskMessage]:
        """Every stored task message (activated or not), in id order."""
        return [m for m in (self.message(h) for h in self.ids()) if m is not None]

    def pending(self, applied: Registry) -> list[TaskMessage]:
        """Stored messages ``applied`` does not contain (decoded only those: activated packages stay on disk)."""
        return [m for m in (self.message(h) for h in self.ids() if not applied.has_message(h)) if m is not None]

    def add_to_pool(self, msg: TaskMessage, applied: Registry) -> bool:
        """Store a checked message; False if known. Bounded: beyond MAX_POOL pending ones it is refused."""
        key = P_TMSG + msg.msg_hash
        if self.store.meta_get(key) is not None:
            return False
        pending = sum(1 for h in self.ids() if not applied.has_message(h))
        if pending >= MAX_POOL:
            raise RuleError("task-pool-full", f"{pending} task messages already wait for activation")
        if isinstance(msg, TaskAnnouncement):
            self.store.put_model(msg.champion)   # served by hash like any champion (GET /api/model/…)
        self.store.meta_write({key: msg.encode(), P_TID + msg.msg_hash: b""})
        return True

    # ------------------------------------------------------------ checks

    def decoded_package(self, ann: TaskAnnouncement) -> PublicTask:
        hit = self._decoded.get(ann.msg_hash)
        if hit is None:
            try:
                hit = PublicTask.decode(ann.package)
            except MLError as exc:
                raise RuleError("bad-task", f"announcement package: {exc}") from None
            self._decoded[ann.msg_hash] = hit
            while len(self._decoded) > 8:
                self._decoded.popitem(last=False)
        return hit

    def check_message(self, msg: TaskMessage) -> None:
        """Stateless checks of a task message (chain id, governance signatures, sponsor signature, the package
        and initial champion decode under the genesis caps, generated-shard ciphertext bounds). Raises
        RuleError. Whether it applies now (unknown task, seq, replay) is ``Registry.activate``'s."""
        g = self.genesis
        if msg.chain_id != g.chain_id:
            raise RuleError("bad-chain-id", f"task message for chain {msg.chain_id!r}")
        if not msg.verify(g.keyholders, g.threshold):
            raise RuleError("bad-task-sig", f"task message lacks {g.threshold} governance signatures")
        size = len(msg.encode())
        if size > activation_budget(g.params.max_block_bytes):
            raise RuleError("bad-task", f"{size} bytes: a block carrying it would exceed max_block_bytes "
                                        f"{g.params.max_block_bytes}")
        if isinstance(msg, TaskAnnouncement):
            if not msg.verify_sponsor():
                raise RuleError("bad-sponsor-sig", "the sponsor's signature does not verify")
            package = self.decoded_package(msg)
            try:
                decode_model(msg.champion, package.spec, g.model_caps)
            except MLError as exc:
                raise RuleError("bad-task", f"initial champion: {exc}") from None
        # the new shards' keys sealed to the committee (§3.14), none for a VRF-generated task or a
        # single-keyholder chain
        vrf = self.decoded_package(msg).vrf if isinstance(msg, TaskAnnouncement) else msg.vrf
        check_batch_material(g, msg.keyholder_material, self.shard_count(msg), vrf=vrf)

    def check_extension_fits(self, msg: TaskExtension, registry: Registry) -> None:
        """An extension of a generated task keeps its ciphertexts within the generated-shard bound."""
        t = registry.task(msg.task_id)
        if t is None:
            raise RuleError("unknown-task", f"no task {msg.task_id}")
        package = self.package_of(t)
        if package.vrf:
            assert package.world is not None
            labels = vrf_labels(package.world, package.shard_size, t.shards_total + 1, len(msg.commitments))
            if not msg.vrf or tuple(msg.commitments) != labels:
                raise RuleError("bad-task", f"task {t.task_id} is VRF-generated: an extension lists the labels of "
                                            f"shards {t.shards_total + 1}… and seals nothing")
            return
        if msg.vrf or any(len(ct) <= SECRET_OVERHEAD + SALT_SIZE for ct in msg.ciphertexts):
            raise RuleError("bad-task", f"task {t.task_id}'s shards are sealed: every ciphertext holds one")
        if package.generated:
            cap = SECRET_OVERHEAD + SALT_SIZE + MAX_GENERATED_SHARD_BYTES
            if any(len(ct) > cap for ct in msg.ciphertexts):
                raise RuleError("bad-task", "a ciphertext is too long for a generated shard")

    def shard_count(self, msg: TaskMessage) -> int:
        if isinstance(msg, TaskAnnouncement):
            return self.decoded_package(msg).n_rounds
        return len(msg.commitments)

    @staticmethod
    def champion_hash(msg: TaskMessage) -> bytes:
        return model_hash(msg.champion) if isinstance(msg, TaskAnnouncement) else b""

    # ------------------------------------------------------------ folding

    def advance(self, reg: Registry, anchor: Header, r: int, activations: Sequence[tuple[int, bytes]],
                extra: Mapping[bytes, TaskMessage] = {}) -> Advance:
        """``consensus.protocol.registry.advance`` with this book's messages (``extra`` first: a payload's own)."""
        msgs: dict[bytes, TaskMessage] = {}
        for _, h in activations:
            m = extra.get(h) or self.message(h)
            if m is not None:
                msgs[h] = m
        return advance(reg, anchor.round, r, activations, msgs, self.shard_count, self.champion_hash, anchor.height)

    def payload_messages(self, raw: Sequence[bytes], ids: Sequence[tuple[int, bytes]]) -> dict[bytes, TaskMessage]:
        """Decode and check the task messages a round payload carries (one per activation, in order)."""
        out: dict[bytes, TaskMessage] = {}
        for data, (_, h) in zip(raw, ids):
            try:
                msg = decode_task_message(data)
            except DecodeError as exc:
                raise RuleError("bad-activation", f"payload task message: {exc}") from None
            if msg.msg_hash != h:
                raise RuleError("bad-activation", "a payload task message is not the one the beacon activates")
            try:
                self.check_message(msg)
            except RuleError as err:
                raise RuleError("bad-activation", f"{err.code}: {err.message}") from None
            out[h] = msg
        return out

    # ------------------------------------------------------------ packages

    def package_of(self, t: TaskRecord, extra: Mapping[bytes, TaskMessage] = {}) -> PublicTask:
        """Task ``t``'s public package with every extension's shards appended (shard s at index s − 1)."""
        key = (t.task_id, t.batches)
        hit = self._packages.get(key)
        if hit is not None:
            return hit
        if t.task_id == 0:
            base = self.genesis.task
        else:
            ann = extra.get(t.msg_hash) or self.message(t.msg_hash)
            if not isinstance(ann, TaskAnnouncement):
                raise RuleError("missing-activation", f"announcement of task {t.task_id} is not known")
            base = self.decoded_package(ann)
        commits, cts = list(base.commitments), list(base.ciphertexts)
        for h, _ in t.batches[1:]:
            ext = extra.get(h) or self.message(h)
            if not isinstance(ext, TaskExtension):
                raise RuleError("missing-activation", f"extension {h.hex()[:16]} of task {t.task_id} is not known")
            commits += ext.commitments
            cts += ext.ciphertexts
        hit = dataclasses.replace(base, commitments=tuple(commits), ciphertexts=tuple(cts))
        self._packages[key] = hit
        while len(self._packages) > 8:
            self._packages.popitem(last=False)
        return hit

    def round_secret(self, t: TaskRecord, index: int, extra: Mapping[bytes, TaskMessage] = {}
                     ) -> tuple[bytes, SealedShard | None]:
        """(the round's point, the sealed key or None) of shard ``index`` of task ``t`` on a committee chain
        (§3.14): the VRF point of (chain, task, shard) for a VRF-generated task, else the sponsor's sealed key of
        that shard, from the batch that brought it (genesis's, the announcement's or an extension's)."""
        g = self.genesis
        if g.committee is None:
            raise RuleError("bad-key-share", "this chain has no keyholder committee")
        package = self.package_of(t, extra)
        if package.vrf:
            return vrf_point(g.hash, t.msg_hash, index), None
        _, msg_hash, first = t.batch_of(index)
        sealed: tuple[SealedShard, ...] | None
        if msg_hash == g.hash:
            sealed = g.sealed
        else:
            sealed = self._sealed.get(msg_hash)
            if sealed is None:
                msg = extra.get(msg_hash) or self.message(msg_hash)
                if msg is None:
                    raise RuleError("missing-activation", f"task message {msg_hash.hex()[:16]} is not known")
                sealed = check_batch_material(g, msg.keyholder_material, self.shard_count(msg)) or ()
                self._sealed[msg_hash] = sealed
                while len(self._sealed) > 16:
                    self._sealed.popitem(last=False)
        assert sealed is not None
        if not 0 <= index - first < len(sealed):
            raise RuleError("bad-key-share", f"no sealed key for shard {index} of task {t.task_id}")
        item = sealed[index - first]
        return item.point, item

    def champion_model(self, t: TaskRecord, extra: Mapping[bytes, TaskMessage] = {}) -> bytes:
        """The model bytes of task ``t``'s champion (a crowned block's model, or the announcement's)."""
        mh = t.champion.model_hash
        got = self.store.get_model(mh)
        if got is not None:
            return got
        ann = extra.get(t.msg_hash) or self.message(t.msg_hash)
        if isinstance(ann, TaskAnnouncement) and model_hash(ann.champion) == mh:
            return ann.champion
        raise RuleError("missing-activation", f"champion model of task {t.task_id} is not known")
