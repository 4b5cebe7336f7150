"""Block validity for a round (PROTOCOL §3.6), the paired test, the significance retarget and fork choice.

``validate_block`` runs the checks in the order of §3.6 — cheap ones (sizes, signatures, hashes) first, the
model scoring last — and raises chain.errors.RuleError with the stable reject code of the first broken rule.
A block whose parent is unknown is not invalid: ``OrphanBlock`` says so. Everything here is integers.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from chain.address import address_of
from chain.block import Block, Header, model_hash, tx_root
from chain.errors import DecodeError, PopError, RuleError, StoreError
from chain.store import ChainStore
from consensus.genesis import Genesis, GenesisParams
from consensus.messages import MESSAGE_VERSION, Beacon, RoundPayload
from ml.errors import MLError, ShardError
from ml.model import Model, decode_model
from ml.score import Features, paired, prepare, score
from ml.shards import open_shard
from ml.task import Dataset

MILLI_SQUARED = 1_000_000


class OrphanBlock(PopError):
    """The block's parent is not known yet: fetch it, do not punish the sender."""

    def __init__(self, parent_hash: bytes) -> None:
        super().__init__(f"unknown parent {parent_hash.hex()}")
        self.parent_hash = parent_hash


@dataclass(frozen=True)
class ScoredBlock:
    """A block that passed every rule, with its crowning record."""
    block: Block
    b: int
    c: int
    z_milli: int

    @property
    def hash(self) -> bytes:
        return self.block.header.hash

    @property
    def round(self) -> int:
        return self.block.header.round


# ---------------------------------------------------------------- pure integer rules


MIN_DISAGREEMENT = 5  # b + c: the fewest disagreements at which even a clean sweep (b = n, c = 0) is evidence
                      # at the one-sided 5 % level that z_init stands for in the exact sign test (2^-5 < 0.05 <= 2^-4)


def paired_test(b: int, c: int, z_milli: int) -> bool:
    """One-sided McNemar in integers: accept iff b + c ≥ MIN_DISAGREEMENT, b − c ≥ 1 and
    (b − c)² · 10⁶ ≥ z_milli² · (b + c). At z = 0 this is "strictly more right answers, by at least one,
    on a shard where the challenger measurably differs from the champion" (PROTOCOL.md §3.6 step 9, §3.7)."""
    d = b - c
    return b + c >= MIN_DISAGREEMENT and d >= 1 and d * d * MILLI_SQUARED >= z_milli * z_milli * (b + c)


def z_for_round(params: GenesisParams, round: int, parent_round: int, parent_z_milli: int | None) -> int:
    """Significance z×1000 required in ``round`` on a parent crowned in ``parent_round`` with ``parent_z_milli``
    (None: the parent is genesis). Each void round since the parent lowers z by z_down; a crowning raises it
    by z_up for the next round; the result is clamped to [z_floor, z_max]."""
    if round <= parent_round:
        raise ValueError("round must come after the parent's round")
    voids = round - parent_round - 1
    base = params.z_init_milli if parent_z_milli is None else parent_z_milli + params.z_up_milli
    return max(params.z_floor_milli, min(params.z_max_milli, base - voids * params.z_down_milli))


def fork_key(scored: ScoredBlock) -> tuple[int, int, int]:
    """Larger is better: b − c, then b, then the LOWER header hash (a total order over distinct blocks)."""
    return (scored.b - scored.c, scored.b, -int.from_bytes(scored.hash, "big"))


def decode_block(data: bytes, params: GenesisParams) -> Block:
    """Decode wire bytes under the genesis size cap; RuleError block-too-large / bad-encoding."""
    if len(data) > params.max_block_bytes:
        raise RuleError("block-too-large", f"{len(data)} bytes, cap {params.max_block_bytes}")
    try:
        return Block.decode(data, max_size=params.max_block_bytes)
    except DecodeError as exc:
        raise RuleError("bad-encoding", str(exc)) from None


# ---------------------------------------------------------------- scoring cache


class ScoringCache:
    """Bounded memo of opened shards (with their features prepared once for scoring, ``ml.score.prepare``) and
    decoded champions with their per-row correctness (both are costly and identical for every block of a round)."""

    def __init__(self, max_items: int = 8) -> None:
        self._shards: OrderedDict[tuple[int, bytes], tuple[Dataset, Features]] = OrderedDict()
        self._correct: OrderedDict[tuple[bytes, int, bytes], np.ndarray] = OrderedDict()
        self._max = max_items

    def _put(self, table: OrderedDict, key, value) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self._max:
            table.popitem(last=False)

    def _opened(self, genesis: Genesis, round: int, key: bytes) -> tuple[Dataset, Features]:
        hit = self._shards.get((round, key))
        if hit is None:
            shard = open_shard(genesis.task, round, key)
            hit = (shard, prepare(shard.X))
            self._put(self._shards, (round, key), hit)
        return hit

    def shard(self, genesis: Genesis, round: int, key: bytes) -> Dataset:
        return self._opened(genesis, round, key)[0]

    def features(self, genesis: Genesis, round: int, key: bytes) -> Features:
        """Shard r's X prepared once: the champion and every challenger of the round are scored on it."""
        return self._opened(genesis, round, key)[1]

    def champion_correct(self, genesis: Genesis, champion_bytes: bytes, round: int, key: bytes) -> np.ndarray:
        ck = (model_hash(champion_bytes), round, key)
        hit = self._correct.get(ck)
        if hit is None:
            shard, feats = self._opened(genesis, round, key)
            model = decode_model(champion_bytes, genesis.task.spec, genesis.model_caps)
            hit = score(model, feats, shard.y).correct
            self._put(self._correct, ck, hit)
        return hit


_default_cache = ScoringCache()


# ---------------------------------------------------------------- validate_block


def parent_z_milli(store: ChainStore, parent: Header) -> int | None:
    """The z recorded in the parent's payload (None for genesis)."""
    if parent.height == 0:
        return None
    raw = store.get_payload(parent.hash)
    if raw is None:
        raise StoreError(f"payload of {parent.hash.hex()} missing")
    return RoundPayload.decode(raw).z_milli


def _walk_champion_hashes(store: ChainStore, parent: Header) -> Callable[[bytes], bool]:
    """Fallback for ``is_past_champion``: walk the parent's ancestry (the engine passes an index instead)."""
    seen = set()
    header: Header | None = parent
    while header is not None:
        seen.add(header.model_hash)
        header = None if header.height == 0 else store.get_header(header.prev_hash)
    return seen.__contains__


def decode_payload(block: Block, genesis: Genesis) -> RoundPayload:
    """Steps 1–2 of §3.6 that need no store: version, chain id, payload, beacon round and signatures."""
    h = block.header
    if h.chain_id != genesis.chain_id:
        raise RuleError("bad-chain-id", f"block for chain {h.chain_id!r}, this is {genesis.chain_id!r}")
    if h.version != MESSAGE_VERSION:
        raise RuleError("bad-version", f"header version {h.version}")
    try:
        payload = RoundPayload.decode(block.payload)
    except DecodeError as exc:
        raise RuleError("bad-payload", str(exc)) from None
    beacon = payload.beacon
    if beacon.chain_id != genesis.chain_id or beacon.round != h.round:
        raise RuleError("bad-beacon", f"beacon of round {beacon.round} on chain {beacon.chain_id!r} for a block of "
                                      f"round {h.round}")
    if not beacon.verify(genesis.keyholders, genesis.threshold):
        raise RuleError("bad-beacon-sig", f"beacon {beacon.round} lacks {genesis.threshold} keyholder signatures")
    return payload


def validate_block(block: Block, *, genesis: Genesis, store: ChainStore,
                   beacon: Beacon | None = None, is_past_champion: Callable[[bytes], bool] | None = None,
                   cache: ScoringCache | None = None) -> ScoredBlock:
    """Every rule of §3.6, cheap first. ``beacon`` (optional) is the node's accepted beacon for the round:
    the payload's beacon must carry the same content. Raises RuleError(code) or OrphanBlock."""
    cache = cache or _default_cache
    params = genesis.params
    h = block.header
    # 1. size (the node decoded the bytes; re-encoding gives the canonical size)
    size = len(block.encode())
    if size > params.max_block_bytes:
        raise RuleError("block-too-large", f"{size} bytes, cap {params.max_block_bytes}")
    payload = decode_payload(block, genesis)  # 1-2
    beacon_in = payload.beacon
    if beacon is not None and beacon.sighash != beacon_in.sighash:
        raise RuleError("bad-beacon", f"payload beacon differs from the accepted beacon of round {h.round}")
    # 3. sealed entry and anchor
    if h.hash not in beacon_in.entries:
        raise RuleError("not-entered", f"header {h.hash.hex()[:16]} is not listed in beacon {h.round}")
    if h.prev_hash != beacon_in.anchor_hash:
        raise RuleError("bad-anchor", "prev_hash is not the beacon's anchor")
    # 4. parent, height, round, time
    parent = store.get_header(h.prev_hash)
    if parent is None:
        raise OrphanBlock(h.prev_hash)
    if h.height != parent.height + 1:
        raise RuleError("bad-height", f"height {h.height} after parent height {parent.height}")
    if not parent.round < h.round <= genesis.n_rounds:
        raise RuleError("bad-round", f"round {h.round} after parent round {parent.round} "
                                     f"(task has {genesis.n_rounds} rounds)")
    if h.timestamp <= parent.timestamp:
        raise RuleError("bad-timestamp", f"timestamp {h.timestamp} not after parent's {parent.timestamp}")
    # 5. miner signature and stake
    if not h.verify_signature():
        raise RuleError("bad-header-sig", "miner signature does not verify")
    try:
        stake = store.state_view(h.prev_hash).get_account(address_of(h.miner)).balance
    except StoreError:
        raise RuleError("stale-parent", "parent is no longer on the main chain within reach") from None
    if stake < params.min_entrant_balance:
        raise RuleError("insufficient-stake", f"miner balance {stake} < {params.min_entrant_balance}")
    # 6. txs and state root (the ledger rules and their codes come from chain.state)
    ledger = genesis.ledger_params
    if len(block.txs) > ledger.max_block_txs:
        raise RuleError("too-many-txs", f"{len(block.txs)} txs, limit {ledger.max_block_txs}")
    if tx_root(block.txs) != h.tx_root:
        raise RuleError("bad-tx-root", "tx root does not match the txs")
    delta = store.preview_txs(h.prev_hash, h.miner, block.txs, ledger)
    if delta.state_root != h.state_root:
        raise RuleError("bad-state-root", "state root does not match the state after txs + reward + fees")
    # 7. model
    if model_hash(block.model) != h.model_hash:
        raise RuleError("bad-model-hash", "model bytes do not hash to header.model_hash")
    if len(block.model) > params.model_max_bytes:
        raise RuleError("model-too-large", f"{len(block.model)} bytes, cap {params.model_max_bytes}")
    try:
        challenger: Model = decode_model(block.model, genesis.task.spec, genesis.model_caps)
    except MLError as exc:
        raise RuleError("bad-model", str(exc)) from None
    past = is_past_champion or _walk_champion_hashes(store, parent)
    if past(h.model_hash):
        raise RuleError("duplicate-model", "model is byte-identical to the champion or an earlier champion")
    # 8. shard
    try:
        shard = cache.shard(genesis, h.round, beacon_in.shard_key)
    except ShardError as exc:
        raise RuleError("bad-shard-commitment", str(exc)) from None
    # 9. retarget and the paired test
    z = z_for_round(params, h.round, parent.round, parent_z_milli(store, parent))
    if payload.z_milli != z:
        raise RuleError("bad-z", f"payload z_milli {payload.z_milli}, the retarget gives {z}")
    champion_bytes = store.get_model(parent.model_hash)
    if champion_bytes is None:
        raise StoreError(f"champion model {parent.model_hash.hex()} missing")
    champion_ok = cache.champion_correct(genesis, champion_bytes, h.round, beacon_in.shard_key)
    features = cache.features(genesis, h.round, beacon_in.shard_key)  # the shard's X, prepared once per round
    b, c = paired(score(challenger, features, shard.y).correct, champion_ok)
    if (payload.b, payload.c) != (b, c):
        raise RuleError("bad-score", f"payload says b={payload.b} c={payload.c}, recomputed b={b} c={c}")
    if not paired_test(b, c, z):
        why = (f"disagrees with the champion on {b + c} < {MIN_DISAGREEMENT} rows" if b + c < MIN_DISAGREEMENT
               else f"fails the paired test at z={z / 1000:.3f}")
        raise RuleError("not-better-than-champion", f"b={b} c={c} {why}")
    return ScoredBlock(block, b, c, z)
