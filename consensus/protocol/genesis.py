"""Genesis (PROTOCOL §3.1): parameters, the genesis configuration, creating a chain from a task, validation.

The genesis FILE is the encoded genesis block. Its payload is the genesis configuration and its salt is
H("popchain/genesis-config", payload), so the genesis hash commits to every parameter, the keyholders and the
public task (shard commitments included). ``load_genesis`` re-derives and checks every header field. A version-2
configuration adds the keyholder committee's share commitments (consensus.protocol.shares, PROTOCOL §3.14).
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
from consensus.protocol.messages import MAX_BEACON_ENTRIES, MAX_KEYHOLDERS
from consensus.protocol.shares import Dealing, KeyholderMaterial, deal, decode_material
from ml.errors import MLError
from ml.generator import World
from ml.model import ModelCaps, decode_model, encode_model
from ml.shards import PublicTask, SecretTask, baseline_model, package_generated, package_task
from ml.task import Dataset

__all__ = [
    "COMMITTEE_GENESIS_VERSION", "CONFIG_TAG", "GENESIS_VERSION", "MAX_ALLOCATIONS", "MAX_WINDOW_S",
    "ZERO_PUBKEY", "Genesis", "GenesisParams", "create_committee_genesis", "create_genesis", "load_genesis",
]

GENESIS_VERSION = 1
COMMITTEE_GENESIS_VERSION = 2      # version 1 + a committee field: keyholder material for the genesis task (§3.14)
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
    committee: KeyholderMaterial | None = None   # version 2: share commitments of the genesis task's keys

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


def _config_obj(chain_id: str, timestamp: int, allocations: Sequence[tuple[bytes, int]],
                keyholders: Sequence[bytes], threshold: int, params: GenesisParams, task_bytes: bytes,
                material: KeyholderMaterial | None = None) -> list:
    head = [GENESIS_VERSION if material is None else COMMITTEE_GENESIS_VERSION, chain_id, timestamp,
            [[a, n] for a, n in allocations], list(keyholders), threshold, params.to_list(), task_bytes]
    return head if material is None else head + [material.encode()]


def _package(dataset: Dataset | World, rounds: int, shard_size: int, n_train: int | None, seed: bytes | None,
             rng: Callable[[int], bytes], drift_milli: int) -> tuple[PublicTask, SecretTask]:
    if isinstance(dataset, World):
        return package_generated(dataset, rounds, shard_size, n_train=n_train or 4000, rng=rng,
                                 drift_milli=drift_milli)
    return package_task(dataset, rounds, shard_size, n_train=n_train, seed=seed, rng=rng)


def _build(public: PublicTask, *, chain_id: str, allocations: Sequence[tuple[bytes, int]],
           keyholders: tuple[bytes, ...], threshold: int, params: GenesisParams, timestamp: int,
           material: KeyholderMaterial | None) -> Genesis:
    model_bytes = encode_model(baseline_model(public))
    allocations = tuple(sorted((bytes(a), int(n)) for a, n in allocations))
    payload = pack(_config_obj(chain_id, timestamp, allocations, keyholders, threshold, params, public.encode(),
                               material))
    header = Header(1, chain_id, 0, bytes(32), 0, timestamp, ZERO_PUBKEY, tx_root([]),
                    genesis_state_root(allocations), model_hash(model_bytes), tagged_hash(CONFIG_TAG, payload))
    return load_genesis(Block(header, (), model_bytes, payload).encode())


def create_genesis(dataset: Dataset | World, *, chain_id: str, rounds: int, shard_size: int,
                   allocations: Sequence[tuple[bytes, int]], keyholder_pubkeys: Sequence[bytes],
                   threshold: int = 1, params: GenesisParams = GenesisParams(), timestamp: int,
                   n_train: int | None = None, seed: bytes | None = None,
                   rng: Callable[[int], bytes] = os.urandom, drift_milli: int = 0) -> tuple[Genesis, bytes]:
    """Package the task into public training data + ``rounds`` hidden shards, train the weak initial
    champion, and build the genesis block. Returns (genesis, secret package bytes for the keyholder).

    A ``Dataset`` becomes a rows package (``seed`` only fixes which rows go where); an ``ml.generator.World``
    becomes a generated package (``n_train`` public rows, default 4000; ``drift_milli`` per-shard drift).
    Every secret byte (shard keys, salts, nonces, row seeds) comes from ``rng`` — os.urandom unless a
    simulation passes a deterministic one."""
    public, secret = _package(dataset, rounds, shard_size, n_train, seed, rng, drift_milli)
    genesis = _build(public, chain_id=chain_id, allocations=allocations,
                     keyholders=tuple(sorted(set(keyholder_pubkeys))), threshold=threshold, params=params,
                     timestamp=timestamp, material=None)
    return genesis, secret.encode()


def create_committee_genesis(dataset: Dataset | World, *, chain_id: str, rounds: int, shard_size: int,
                             allocations: Sequence[tuple[bytes, int]], keyholder_pubkeys: Sequence[bytes],
                             threshold: int, params: GenesisParams = GenesisParams(), timestamp: int,
                             n_train: int | None = None, seed: bytes | None = None,
                             rng: Callable[[int], bytes] = os.urandom, drift_milli: int = 0,
                             ) -> tuple[Genesis, Dealing]:
    """As ``create_genesis``, for a t-of-n committee (§3.14): every shard key is Shamir-shared among the
    keyholders (genesis order = sorted pubkeys) and genesis (version 2) carries the share commitments. Returns
    (genesis, dealing): dealing.batches[i] is member i+1's secret shares. The whole keys are dropped here; the
    caller (the dealer) writes one member file per keyholder and must keep nothing else."""
    public, secret = _package(dataset, rounds, shard_size, n_train, seed, rng, drift_milli)
    keyholders = tuple(sorted(set(keyholder_pubkeys)))
    try:
        dealing = deal(secret.keys, public.commitments, keyholders, threshold, rng)
    except ValueError as exc:
        raise _bad(f"committee: {exc}") from None
    genesis = _build(public, chain_id=chain_id, allocations=allocations, keyholders=keyholders,
                     threshold=threshold, params=params, timestamp=timestamp, material=dealing.material)
    return genesis, dealing


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
        f = check_list(raw, 8 if version == GENESIS_VERSION else 9, "genesis.config")
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
    committee = None
    if version == COMMITTEE_GENESIS_VERSION:
        # t > n/2: two conflicting statements for one round cannot both gather t signatures (§3.14)
        if 2 * threshold <= len(keyholders):
            raise _bad(f"committee threshold {threshold} of {len(keyholders)} is not a majority")
        if type(f[8]) is not bytes:
            raise _bad("configuration: genesis.committee: expected bytes")
        try:
            committee = decode_material(f[8], keyholders, threshold, task.n_rounds)
        except RuleError as exc:
            raise _bad(f"committee: {exc.message}") from None
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
                   committee)
