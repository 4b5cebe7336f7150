"""Connecting a block that consensus validation has just previewed checks its transfers once, not twice: the
store remembers the preview's delta for that exact tx tuple on that parent, miner, ledger params and moves.
Anything else — other txs, a header whose state root is not the preview's — is checked in full."""
from __future__ import annotations

import dataclasses

import pytest

import chain.store
from chain.address import address_of
from chain.block import Block
from chain.errors import RuleError
from chain.store import ChainStore
from chain.tx import make_transfer
from tests.conftest import CHAIN_ID, PARAMS, build_block, keypair, make_genesis

KEYS = [keypair(i) for i in range(90)]


@pytest.fixture
def counted(monkeypatch):
    """How many times the store starts checking a tx list's signatures (the real check runs every time)."""
    calls: list[int] = []
    real = chain.store.submit_verify_transfers

    def spy(txs, *args, **kwargs):
        calls.append(len(txs))
        return real(txs, *args, **kwargs)
    monkeypatch.setattr(chain.store, "submit_verify_transfers", spy)
    return calls


@pytest.fixture
def store(tmp_path):
    alloc = [(address_of(k.public), 10**12) for k in KEYS]
    s = ChainStore.open(tmp_path / "chain")
    s.init_genesis(make_genesis(alloc), alloc, PARAMS)
    yield s
    s.close()


def _block(store: ChainStore) -> Block:
    txs = [make_transfer(k, CHAIN_ID, address_of(KEYS[(i + 1) % 80].public), 5 + i, 1000, 0)
           for i, k in enumerate(KEYS[:80])]
    return build_block(store, KEYS[85], txs)


def test_a_previewed_block_connects_without_checking_its_txs_again(store, counted):
    block = _block(store)            # build_block previews a list: nothing remembered
    counted.clear()
    store.preview_txs(block.header.prev_hash, block.header.miner, block.txs, PARAMS)
    delta = store.connect_block(block, PARAMS)
    assert counted == [80]           # the preview's check only
    assert delta.state_root == block.header.state_root == store.tip().state_root
    assert store.verify().ok


def test_other_txs_or_another_state_root_are_checked_in_full(store, counted):
    block = _block(store)
    h = block.header
    store.preview_txs(h.prev_hash, h.miner, (*block.txs,), PARAMS)   # equal txs, another tuple object
    counted.clear()
    store.connect_block(block, PARAMS)
    assert counted == [80]           # not the preview's tuple: checked again
    store.disconnect_tip()
    # the preview's exact tuple under a header that claims another state root: the root is still compared
    store.preview_txs(h.prev_hash, h.miner, block.txs, PARAMS)
    forged = Block(dataclasses.replace(h, state_root=bytes(32)).sign(KEYS[85]), block.txs, block.model,
                   block.payload)
    with pytest.raises(RuleError) as err:
        store.connect_block(forged, PARAMS)
    assert err.value.code == "bad-state-root"
    assert store.tip().height == 0
    # other ledger params than the preview's: checked again (and the reward they mint is the one connected)
    store.preview_txs(h.prev_hash, h.miner, block.txs, dataclasses.replace(PARAMS, block_reward=1))
    counted.clear()
    store.connect_block(block, PARAMS)
    assert counted == [80]
    assert store.verify().ok
