"""Genesis (PROTOCOL §3.1): parameters, the genesis configuration, creating a chain from a task, validation.

The genesis FILE is the encoded genesis block. Its payload is the genesis configuration and its salt is
H("popchain/genesis-config", payload), so the genesis hash commits to every parameter, the keyholders and the
public task (shard commitments included). ``load_genesis`` re-derives and checks every header field.

Two kinds of chain: version 1, one trusted keyholder process holding the shard keys (``create_genesis``), and
version 3, a keyholder committee whose secret came from a distributed key generation (``create_committee_genesis``,
PROTOCOL §3.1, §3.14): the configuration adds the committee key record (consensus.protocol.dkg, signed by every
keyholder) and the genesis task's terms — a VRF-generated task nobody can foresee (no sponsor), or a data task
whose shard keys are sealed to the committee by its sponsor (the genesis creator), who is paid back only from
its own bounty. (Version 2, shares dealt by the genesis creator, is gone: its dealer could open every shard.)
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from chain.block import MAX_BLOCK_SIZE, MAX_PAYLOAD_SIZE, Block, Header, model_hash, tx_root
from chain.crypto import tagged_hash
from chain.encoding import check_bytes, check_int, check_list, check_list_max, pack, unpack
from chain.errors import DecodeError, RuleError
from chain.state import LedgerParams, apply_allocations, genesis_state_root
from chain.tx import check_chain_id
from consensus.protocol.dkg import CommitteeKey, decode_committee_key
from consensus.protocol.messages import MAX_BEACON_ENTRIES, MAX_KEYHOLDERS
from consensus.protocol.release import SealedShard, decode_seal_material, seal_keys
from ml.errors import MLError
from ml.generator import World
from ml.model import ModelCaps, decode_model, encode_model
from ml.shards import (
    PublicTask,
    SecretTask,
    baseline_model,
    externalise,
    package_generated,
    package_task,
    package_vrf,
)
from ml.task import Dataset

__all__ = [
    "COMMITTEE_GENESIS_VERSION", "CONFIG_TAG", "GENESIS_VERSION", "MAX_ALLOCATIONS", "MAX_WINDOW_S",
    "ZERO_PUBKEY", "CommitteeTerms", "Genesis", "GenesisParams", "create_committee_genesis", "create_genesis",
    "load_genesis",
]

GENESIS_VERSION = 1
COMMITTEE_GENESIS_VERSION = 3      # version 1 + the DKG committee key + the genesis task's terms (§3.1, §3.14)
CONFIG_TAG = "popchain/genesis-config"
MAX_ALLOCATIONS = 10_000
MAX_WINDOW_S = 86_400
ZERO_PUBKEY = bytes(32)


@dataclass(frozen=True)
class GenesisParams:
    """Consensus parameters fixed in genesis (PROTOCOL §3.1 table). All integers; windows in seconds."""
    entry_window_s: int = 4
    opening_window_s: int = 4
    max_entries: int = 16
    entry_bond: int = 3_125_000        # = ceil(block_reward / max_entries): squatting every slot costs a reward
    block_reward: int = 50_000_000
    min_fee: int = 1_000
    max_block_txs: int = 5_000
    max_block_bytes: int = 8 * 2**20
    # the crowning test (§3.7): family-wise false-accept rate α = alpha_num / alpha_den per round
    alpha_num: int = 1
    alpha_den: int = 20
    time_slack_s: int = 120            # block timestamps lie within the beacon's keyholder times ± this
    # model caps (ml.model.ModelCaps; max_bound_bits stays at ml/'s 53 so scoring is exact in float64)
    model_max_bytes: int = 1 * 2**20
    model_max_params: int = 1 << 20
    model_max_madds: int = 1 << 20
    model_max_width: int = 1024
    model_max_depth: int = 32
    model_max_nodes: int = 1 << 18
    model_max_trees: int = 1024
    # the crowning margin (§3.7): a crowned model is more accurate than the champion by at least this many
    # basis points of the shard's rows (b − c ≥ ⌈min_gain_bp · rows / 10 000⌉), on top of the sign test
    min_gain_bp: int = 75

    def __post_init__(self) -> None:
        check = _param_check
        check(self.entry_window_s, 1, MAX_WINDOW_S, "entry_window_s")
        check(self.opening_window_s, 1, MAX_WINDOW_S, "opening_window_s")
        check(self.max_entries, 1, MAX_BEACON_ENTRIES, "max_entries")
        check(self.entry_bond, 0, 2**52, "entry_bond")
        check(self.block_reward, 0, 2**40, "block_reward")
        check(self.min_fee, 0, 2**40, "min_fee")
        check(self.max_block_txs, 0, 10_000, "max_block_txs")
        check(self.max_block_bytes, 1024, MAX_BLOCK_SIZE, "max_block_bytes")
        check(self.alpha_den, 2, 2**32, "alpha_den")
        check(self.alpha_num, 1, self.alpha_den - 1, "alpha_num")   # 0 < α < 1
        check(self.time_slack_s, 1, MAX_WINDOW_S, "time_slack_s")  # >= 1: a child after any block fits
        check(self.model_max_bytes, 64, 4 * 2**20, "model_max_bytes")
        check(self.model_max_params, 1, 1 << 24, "model_max_params")
        check(self.model_max_madds, 1, 1 << 24, "model_max_madds")
        check(self.model_max_width, 1, 1 << 16, "model_max_width")
        check(self.model_max_depth, 1, 64, "model_max_depth")
        check(self.model_max_nodes, 1, 1 << 22, "model_max_nodes")
        check(self.model_max_trees, 1, 1 << 16, "model_max_trees")
        check(self.min_gain_bp, 0, 10_000, "min_gain_bp")

    @property
    def alpha(self) -> tuple[int, int]:
        return (self.alpha_num, self.alpha_den)

    @property
    def model_caps(self) -> ModelCaps:
        return ModelCaps(max_bytes=self.model_max_bytes, max_params=self.model_max_params,
                         max_madds=self.model_max_madds, max_width=self.model_max_width,
                         max_depth=self.model_max_depth, max_nodes=self.model_max_nodes,
                         max_trees=self.model_max_trees)

    def to_list(self) -> list[int]:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]

    @classmethod
    def from_list(cls, value: Any) -> GenesisParams:
        names = [f.name for f in dataclasses.fields(cls)]
        items = check_list(value, len(names), "genesis.params")
        for name, item in zip(names, items):
            check_int(item, 0, 2**62, f"genesis.params.{name}")
        try:
            return cls(*items)
        except ValueError as exc:
            raise DecodeError(str(exc)) from None


def _param_check(value: Any, lo: int, hi: int, name: str) -> None:
    if type(value) is not int or not lo <= value <= hi:
        raise ValueError(f"GenesisParams.{name}: {value!r} outside [{lo}, {hi}]")


@dataclass(frozen=True, eq=False)
class Genesis:
    """A validated genesis: configuration, parameters, the decoded public task and the genesis block."""
    chain_id: str
    timestamp: int
    allocations: tuple[tuple[bytes, int], ...]
    keyholders: tuple[bytes, ...]
    threshold: int
    params: GenesisParams
    task: PublicTask
    block: Block
    committee: CommitteeKey | None = None        # version 3: the keyholders' DKG result
    sponsor: bytes = ZERO_PUBKEY                 # version 3: the genesis task's sponsor (zero: none, VRF task)
    per_crowning: int = 0                        # paid from the task's escrow per crowning (sponsored task)
    sealed: tuple[SealedShard, ...] = ()         # the genesis task's shard keys sealed to the committee

    @property
    def hash(self) -> bytes:
        return self.block.header.hash

    @property
    def header(self) -> Header:
        return self.block.header

    @property
    def n_rounds(self) -> int:
        return self.task.n_rounds

    @cached_property
    def ledger_params(self) -> LedgerParams:
        return LedgerParams(chain_id=self.chain_id, block_reward=self.params.block_reward,
                            min_fee=self.params.min_fee, max_block_txs=self.params.max_block_txs)

    @cached_property
    def model_caps(self) -> ModelCaps:
        return self.params.model_caps

    def encode(self) -> bytes:
        """The genesis file: the encoded genesis block."""
        return self.block.encode()


@dataclass(frozen=True)
class CommitteeTerms:
    """What a version-3 genesis adds: the committee key, and the genesis task's sponsor, per-crowning payout
    and sealed keys (b"" for a VRF-generated task)."""
    key: CommitteeKey
    sponsor: bytes = ZERO_PUBKEY
    per_crowning: int = 0
    sealed: bytes = b""


def _config_obj(chain_id: str, timestamp: int, allocations: Sequence[tuple[bytes, int]],
                keyholders: Sequence[bytes], threshold: int, params: GenesisParams, task_bytes: bytes,
                terms: CommitteeTerms | None = None) -> list:
    head = [GENESIS_VERSION if terms is None else COMMITTEE_GENESIS_VERSION, chain_id, timestamp,
            [[a, n] for a, n in allocations], list(keyholders), threshold, params.to_list(), task_bytes]
    if terms is None:
        return head
    return head + [terms.key.encode(), [terms.sponsor, terms.per_crowning, terms.sealed]]


def _package(dataset: Dataset | World, rounds: int, shard_size: int, n_train: int | None, seed: bytes | None,
             rng: Callable[[int], bytes], drift_milli: int,
             shard_blobs: dict[bytes, bytes] | None = None) -> tuple[PublicTask, SecretTask]:
    if isinstance(dataset, World):
        return package_generated(dataset, rounds, shard_size, n_train=n_train or 4000, rng=rng,
                                 drift_milli=drift_milli)
    public, secret = package_task(dataset, rounds, shard_size, n_train=n_train, seed=seed, rng=rng)
    if shard_blobs is not None:
        # §3.15: the shard ciphertexts leave genesis as content-addressed blobs (package version 3); genesis
        # keeps their 40-byte references, the caller stores / serves the bytes (ml.blobs, node/blobs.py)
        public, blobs = externalise(public)
        shard_blobs.update((bytes(ref), data) for ref, data in blobs.items())
    return public, secret


def _build(public: PublicTask, *, chain_id: str, allocations: Sequence[tuple[bytes, int]],
           keyholders: tuple[bytes, ...], threshold: int, params: GenesisParams, timestamp: int,
           terms: CommitteeTerms | None) -> Genesis:
    model_bytes = encode_model(baseline_model(public))
    allocations = tuple(sorted((bytes(a), int(n)) for a, n in allocations))
    payload = pack(_config_obj(chain_id, timestamp, allocations, keyholders, threshold, params, public.encode(),
                               terms))
    header = Header(1, chain_id, 0, bytes(32), 0, timestamp, ZERO_PUBKEY, tx_root([]),
                    genesis_state_root(allocations), model_hash(model_bytes), tagged_hash(CONFIG_TAG, payload))
    return load_genesis(Block(header, (), model_bytes, payload).encode())


def create_genesis(dataset: Dataset | World, *, chain_id: str, rounds: int, shard_size: int,
                   allocations: Sequence[tuple[bytes, int]], keyholder_pubkeys: Sequence[bytes],
                   threshold: int = 1, params: GenesisParams = GenesisParams(), timestamp: int,
                   n_train: int | None = None, seed: bytes | None = None,
                   rng: Callable[[int], bytes] = os.urandom, drift_milli: int = 0,
                   shard_blobs: dict[bytes, bytes] | None = None) -> tuple[Genesis, bytes]:
    """Package the task into public training data + ``rounds`` hidden shards, train the weak initial
    champion, and build the genesis block. Returns (genesis, secret package bytes for the keyholder).

    A ``Dataset`` becomes a rows package (``seed`` only fixes which rows go where); an ``ml.generator.World``
    becomes a generated package (``n_train`` public rows, default 4000; ``drift_milli`` per-shard drift).
    Every secret byte (shard keys, salts, nonces, row seeds) comes from ``rng`` — os.urandom unless a
    simulation passes a deterministic one. ``shard_blobs`` (a dataset task): put the shards in blobs, filled
    with reference -> ciphertext (PROTOCOL §3.15)."""
    public, secret = _package(dataset, rounds, shard_size, n_train, seed, rng, drift_milli, shard_blobs)
    genesis = _build(public, chain_id=chain_id, allocations=allocations,
                     keyholders=tuple(sorted(set(keyholder_pubkeys))), threshold=threshold, params=params,
                     timestamp=timestamp, terms=None)
    return genesis, secret.encode()


def create_committee_genesis(dataset: Dataset | World, *, chain_id: str, rounds: int, shard_size: int,
                             allocations: Sequence[tuple[bytes, int]], committee: CommitteeKey,
                             sponsor: bytes | None = None, per_crowning: int = 0,
                             params: GenesisParams = GenesisParams(), timestamp: int,
                             n_train: int | None = None, seed: bytes | None = None,
                             rng: Callable[[int], bytes] = os.urandom,
                             shard_blobs: dict[bytes, bytes] | None = None) -> Genesis:
    """A version-3 genesis for the keyholder committee whose DKG produced ``committee`` (§3.14). A generated
    task (``ml.generator.World``) becomes a VRF-generated package: its shard seeds are the committee's threshold
    VRF outputs, so nobody — this function's caller included — can compute a shard before t members release it
    (no sponsor; its crownings mint the block reward). A dataset becomes a rows package whose shard keys are
    sealed to the committee's group key and then forgotten: the caller is the task's ``sponsor`` (its pubkey,
    required), who knows its own rows; its crownings are paid from its escrow (allocate the bounty to
    ``consensus.protocol.tasks.escrow_account(0)``) and fees, never minted, and its key cannot enter the task;
    ``shard_blobs`` (a dataset task): put the shards in blobs, filled with reference -> ciphertext (§3.15).
    No secret is returned: there is none to keep."""
    keyholders = committee.keyholders
    if isinstance(dataset, World):
        if sponsor is not None or per_crowning:
            raise _bad("a VRF-generated genesis task has no sponsor (nobody knows its shards)")
        public = package_vrf(dataset, rounds, shard_size, n_train=n_train or 4000, rng=rng)
        terms = CommitteeTerms(committee)
    else:
        if sponsor is None or len(sponsor) != 32 or sponsor == ZERO_PUBKEY:
            raise _bad("a data genesis task needs its sponsor's key (the creator knows its rows: it is paid only "
                       "from its own bounty and cannot enter)")
        public, secret = _package(dataset, rounds, shard_size, n_train, seed, rng, 0, shard_blobs)
        terms = CommitteeTerms(committee, sponsor, per_crowning, seal_keys(committee.group_key, secret.keys, rng))
        del secret
    return _build(public, chain_id=chain_id, allocations=allocations, keyholders=keyholders,
                  threshold=committee.threshold, params=params, timestamp=timestamp, terms=terms)


def _bad(message: str) -> RuleError:
    return RuleError("bad-genesis", message)


def load_genesis(data: bytes) -> Genesis:
    """Decode and fully validate a genesis file. Raises RuleError("bad-genesis") (or DecodeError for bytes)."""
    block = Block.decode(data)
    h = block.header
    try:
        raw = unpack(block.payload, max_size=MAX_PAYLOAD_SIZE)
        version = check_int(raw[0] if isinstance(raw, list) and raw else None, GENESIS_VERSION,
                            COMMITTEE_GENESIS_VERSION, "genesis.version")
        if version not in (GENESIS_VERSION, COMMITTEE_GENESIS_VERSION):
            raise DecodeError(f"genesis.version: {version} (a dealt committee, version 2, is no longer accepted: "
                              f"its dealer could open every shard; run the keyholders' DKG)")
        f = check_list(raw, 8 if version == GENESIS_VERSION else 10, "genesis.config")
        chain_id = check_chain_id(f[1], "genesis.chain_id")
        timestamp = check_int(f[2], 0, 2**40, "genesis.timestamp")
        allocations = []
        for i, item in enumerate(check_list_max(f[3], MAX_ALLOCATIONS, "genesis.allocations")):
            pair = check_list(item, 2, f"genesis.allocations[{i}]")
            allocations.append((check_bytes(pair[0], 20, "allocation.account"),
                                check_int(pair[1], 1, 2**62, "allocation.amount")))
        keyholders = [check_bytes(k, 32, "genesis.keyholder")
                      for k in check_list_max(f[4], MAX_KEYHOLDERS, "genesis.keyholders")]
        threshold = check_int(f[5], 1, MAX_KEYHOLDERS, "genesis.threshold")
        params = GenesisParams.from_list(f[6])
        if type(f[7]) is not bytes:
            raise DecodeError("genesis.task: expected bytes")
        task = PublicTask.decode(f[7])
    except (DecodeError, MLError) as exc:
        raise _bad(f"configuration: {exc}") from None
    if [a for a, _ in allocations] != sorted({a for a, _ in allocations}):
        raise _bad("allocations must be sorted by account and unique")
    apply_allocations(allocations)  # RuleError("bad-allocation") on a bad total
    if not keyholders or keyholders != sorted(set(keyholders)):
        raise _bad("keyholders must be a non-empty sorted list of distinct keys")
    if threshold > len(keyholders):
        raise _bad(f"threshold {threshold} exceeds the {len(keyholders)} keyholders")
    terms: dict[str, Any] = {}
    if version == COMMITTEE_GENESIS_VERSION:
        terms = _committee_terms(f[8], f[9], keyholders, threshold, task)
    elif task.vrf:
        raise _bad("a VRF-generated task needs a keyholder committee (a version-3 genesis)")
    expected = Header(1, chain_id, 0, bytes(32), 0, timestamp, ZERO_PUBKEY, tx_root([]),
                      genesis_state_root(allocations), model_hash(block.model),
                      tagged_hash(CONFIG_TAG, block.payload), bytes(64))
    if h != expected or block.txs:
        raise _bad("genesis header does not match its configuration (height 0, round 0, zero prev/miner/"
                   "signature, no txs, salt = H(config), state root of the allocations, model hash)")
    try:
        decode_model(block.model, task.spec, params.model_caps)
    except MLError as exc:
        raise _bad(f"initial champion: {exc}") from None
    return Genesis(chain_id, timestamp, tuple(allocations), tuple(keyholders), threshold, params, task, block,
                   **terms)


def _committee_terms(key_raw: Any, task0: Any, keyholders: Sequence[bytes], threshold: int,
                     task: PublicTask) -> dict[str, Any]:
    """Check a version-3 genesis's committee key and genesis-task terms (§3.1); bad-genesis on any fault."""
    try:
        if type(key_raw) is not bytes:
            raise DecodeError("genesis.committee: expected bytes")
        committee = decode_committee_key(key_raw)
        f = check_list(task0, 3, "genesis.task0")
        sponsor = check_bytes(f[0], 32, "genesis.task0.sponsor")
        per_crowning = check_int(f[1], 0, 2**62, "genesis.task0.per_crowning")
        if type(f[2]) is not bytes:
            raise DecodeError("genesis.task0.sealed: expected bytes")
    except (DecodeError, RuleError) as exc:
        raise _bad(f"committee: {exc}") from None
    if committee.keyholders != tuple(keyholders) or committee.threshold != threshold:
        raise _bad("the committee key is for other keyholders or another threshold than genesis lists")
    if task.vrf:
        if sponsor != ZERO_PUBKEY or per_crowning or f[2]:
            raise _bad("a VRF-generated genesis task has no sponsor, payout or sealed keys")
        return {"committee": committee}
    if sponsor == ZERO_PUBKEY:
        raise _bad("a data genesis task on a committee chain names its sponsor (its creator, who knows its rows)")
    try:
        sealed = decode_seal_material(f[2], task.n_rounds)
    except RuleError as exc:
        raise _bad(f"genesis task's sealed keys: {exc.message}") from None
    return {"committee": committee, "sponsor": sponsor, "per_crowning": per_crowning, "sealed": sealed}
