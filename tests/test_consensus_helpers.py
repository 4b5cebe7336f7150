"""Shared builders for the consensus tests: a small real genesis (synthetic task), keys, and a block builder
that makes an otherwise-valid round block with exactly one thing changed."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from benchmarks.simulator import _rng_bytes
from chain.address import address_of
from chain.block import Block, Header, model_hash, tx_root
from chain.crypto import Keypair
from chain.store import ChainStore
from chain.tx import Transfer, make_transfer
from consensus.mining import score_against
from consensus.protocol.genesis import Genesis, GenesisParams, create_genesis
from consensus.protocol.messages import (
    PAYLOAD_VERSION,
    Beacon,
    RoundPayload,
    Settlement,
    make_beacon,
    possession,
)
from consensus.protocol.rules import crowning_bar
from consensus.protocol.settlement import bond_of, miner_funding
from ml.model import encode_model
from ml.shards import SecretTask, split_test
from ml.task import synthetic
from ml.training import train_candidate

CHAIN_ID = "popchain-ctest"
ROUNDS = 4
SHARD = 120
BALANCE = 10**9
BOND = 10**8           # each miner's bond account (32 default bonds); a squatter's holds exactly one bond
TEST_PARAMS = GenesisParams(max_block_txs=3, max_block_bytes=64 * 1024, model_max_bytes=16 * 1024,
                            entry_window_s=4, opening_window_s=4)


def kp(name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(b"consensus-test/" + name.encode()).digest())


KEYHOLDER = kp("keyholder")
MINERS = [kp(f"miner-{i}") for i in range(5)]
POOR = kp("poor")
SQUATTERS = [kp(f"squatter-{i}") for i in range(TEST_PARAMS.max_entries)]   # funded with exactly one bond


@dataclass(frozen=True)
class World:
    genesis: Genesis
    secret: SecretTask
    secret_bytes: bytes
    test_X: np.ndarray
    test_y: np.ndarray


@lru_cache(maxsize=None)
def world(params: GenesisParams = TEST_PARAMS) -> World:
    seed = b"consensus-test-world-seed"
    full = synthetic(seed, n_samples=ROUNDS * SHARD + 1200 + 400)
    rest, test = split_test(full, 400, seed)
    genesis, secret = create_genesis(rest, chain_id=CHAIN_ID, rounds=ROUNDS, shard_size=SHARD,
                                     allocations=[a for m in MINERS for a in miner_funding(m.public, BALANCE, BOND)]
                                     + [(bond_of(s.public), params.entry_bond) for s in SQUATTERS],
                                     keyholder_pubkeys=[KEYHOLDER.public], params=params,
                                     timestamp=1_700_000_000, n_train=1200, seed=seed, rng=_rng_bytes(seed))
    return World(genesis, SecretTask.decode(secret), secret, test.X, test.y)


@lru_cache(maxsize=None)
def trained(family: str, seed: int = 0) -> bytes:
    w = world()
    return encode_model(train_candidate(family, w.genesis.task.training, (), seed=seed, caps=w.genesis.model_caps))


def new_store(tmp_path=None) -> ChainStore:
    store = ChainStore.open(tmp_path / "db") if tmp_path is not None else ChainStore.memory()
    g = world().genesis
    store.init_genesis(g.block, g.allocations, g.ledger_params)
    return store


def transfer(sender: Keypair, nonce: int = 0, *, amount: int = 5, fee: int = 1_000, recipient: bytes | None = None
             ) -> Transfer:
    return make_transfer(sender, CHAIN_ID, recipient or address_of(MINERS[4].public), amount, fee, nonce)


def make_block(store: ChainStore, *, miner: Keypair = MINERS[0], model: bytes | None = None,
               txs: tuple[Transfer, ...] = (), header: dict | None = None, sign_with: Keypair | None = None,
               round: int = 1, parent: Header | None = None, entered: bool = True, beacon: dict | None = None,
               beacon_signers: tuple[Keypair, ...] = (KEYHOLDER,), payload: dict | None = None,
               raw_payload: bytes | None = None,
               extra_entries: tuple[tuple[bytes, bytes], ...] = ()) -> tuple[Block, Beacon]:
    """An otherwise-valid block of ``round`` on ``parent`` (default: tip) and its beacon, with overrides.
    ``extra_entries``: (header hash, miner) of other listed entries (their model hash and proof are made up);
    ``beacon["settlement"]``: the beacon's settlement (default: the empty window after the parent's)."""
    w = world()
    g = w.genesis
    parent = parent or store.tip()
    model = model if model is not None else trained("linear")
    from consensus.engine._index import ChainIndex
    from consensus.protocol.settlement import settlement_moves
    first = ChainIndex(store).settled_through(parent) + 1
    settlement = (beacon or {}).get("settlement") or Settlement(first, first - 1)
    moves = settlement_moves(bond=g.params.entry_bond, settlement=settlement)
    delta = store.preview_txs(parent.hash, miner.public, txs, g.ledger_params, moves)
    fields = dict(version=1, chain_id=g.chain_id, height=parent.height + 1, prev_hash=parent.hash, round=round,
                  timestamp=parent.timestamp + 10, miner=miner.public, tx_root=tx_root(txs),
                  state_root=delta.state_root, model_hash=model_hash(model),
                  salt=hashlib.sha256(b"salt" + miner.public + bytes([round])).digest())
    fields.update(header or {})
    h = Header(**fields)
    h = dataclasses.replace(h, signature=(sign_with or miner).sign(h.hash))
    t_ms = (parent.timestamp + 10) * 1000
    mine = (h.hash, miner.public, h.model_hash, possession(miner.public, model))
    others = [(hh, m, hashlib.sha256(b"model" + hh).digest(), hashlib.sha256(b"proof" + hh).digest())
              for hh, m in extra_entries]
    bfields = dict(round=round, anchor_hash=parent.hash, entries=([mine] if entered else []) + others,
                   shard_key=w.secret.key(min(round, ROUNDS)), opened_ms=t_ms, time_ms=t_ms, settlement=settlement)
    bfields.update(beacon or {})
    bc = make_beacon(list(beacon_signers), g.chain_id, bfields["round"], bfields["anchor_hash"], bfields["entries"],
                     bfields["shard_key"], opened_ms=bfields["opened_ms"], time_ms=bfields["time_ms"],
                     settlement=bfields["settlement"])
    if raw_payload is None:
        champion = store.get_model(parent.model_hash)
        try:
            b, c = score_against(g, bc, model, champion)
        except Exception:
            b, c = 0, 0
        pf = dict(b=b, c=c, bar=crowning_bar(b, c, max(1, len(bc.listed)), g.params, SHARD))
        pf.update(payload or {})
        raw_payload = RoundPayload(PAYLOAD_VERSION, bc, pf["b"], pf["c"], pf["bar"]).encode()
    return Block(h, tuple(txs), model, raw_payload), bc
