"""Shared fixtures: temp datadirs with a real LevelDB store, deterministic keypairs, a block builder."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from chain.address import address_of
from chain.block import Block, Header, model_hash, tx_root
from chain.crypto import Keypair
from chain.state import LedgerParams, genesis_state_root
from chain.store import ChainStore
from chain.tx import Transfer

CHAIN_ID = "popchain-test"
PARAMS = LedgerParams(chain_id=CHAIN_ID, block_reward=50_000_000, min_fee=1_000)
GENESIS_BALANCE = 10**12


def keypair(i: int) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(b"popchain-test-key-%d" % i).digest())


def make_genesis(allocations: Sequence[tuple[bytes, int]], params: LedgerParams = PARAMS,
                 model: bytes = b"genesis-model") -> Block:
    header = Header(1, params.chain_id, 0, bytes(32), 0, 1_700_000_000, bytes(32), tx_root([]),
                    genesis_state_root(allocations), model_hash(model), bytes(32))
    return Block(header, (), model, b"genesis-config")


def build_block(store: ChainStore, miner: Keypair, txs: Sequence[Transfer], params: LedgerParams = PARAMS,
                *, prev_hash: bytes | None = None, model: bytes | None = None, payload: bytes = b"",
                salt: bytes = bytes(32)) -> Block:
    """A valid signed block on ``prev_hash`` (default tip), its state root computed by the store."""
    parent = store.get_header(prev_hash) if prev_hash is not None else store.tip()
    assert parent is not None
    model = model if model is not None else b"model-%d" % (parent.height + 1)
    delta = store.preview_txs(parent.hash, miner.public, txs, params)
    header = Header(1, params.chain_id, parent.height + 1, parent.hash, parent.round + 1, parent.timestamp + 1,
                    miner.public, tx_root(txs), delta.state_root, model_hash(model), salt)
    return Block(header.sign(miner), tuple(txs), model, payload)


@pytest.fixture
def keys() -> list[Keypair]:
    return [keypair(i) for i in range(8)]


@pytest.fixture
def allocations(keys: list[Keypair]) -> list[tuple[bytes, int]]:
    return [(address_of(k.public), GENESIS_BALANCE) for k in keys[:4]]


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    return tmp_path / "datadir"


@pytest.fixture
def store(datadir: Path, allocations: list[tuple[bytes, int]]):
    s = ChainStore.open(datadir)
    s.init_genesis(make_genesis(allocations), allocations, PARAMS)
    yield s
    s.close()
