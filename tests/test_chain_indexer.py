"""The index writer (chain.store_indexer): a block's tx/address index records follow its synced connect in a
second batch; the marker says how far they go. A datadir written before the marker keeps its (complete) indexes,
a marker off the main chain means a full rebuild, and a writer that cannot write fails loudly (index reads and
the next connect raise StorageFault: the node stops as on any failing LevelDB write, and never answers from a
stale index); the next open catches the indexes up."""
from __future__ import annotations

import os

import pytest

import chain.store_indexer
from chain.address import address_of
from chain.errors import StorageFault
from chain.store import ChainStore
from chain.store_indexer import K_INDEXED, read_marker
from chain.tx import make_transfer
from tests.conftest import CHAIN_ID, PARAMS, build_block, keypair, make_genesis

KEYS = [keypair(i) for i in range(4)]
ALLOC = [(address_of(k.public), 10**12) for k in KEYS]


def _grow(store: ChainStore, n: int) -> None:
    for _ in range(n):
        tip = store.tip()
        txs = [make_transfer(k, CHAIN_ID, address_of(KEYS[(i + 1) % 4].public), 1 + tip.height, 1000,
                             store.get_account(address_of(k.public)).nonce) for i, k in enumerate(KEYS)]
        store.connect_block(build_block(store, KEYS[tip.height % 4], txs), PARAMS)


@pytest.fixture
def datadir(tmp_path):
    store = ChainStore.open(tmp_path / "chain")
    store.init_genesis(make_genesis(ALLOC), ALLOC, PARAMS)
    _grow(store, 3)
    store.close()
    return tmp_path / "chain"


def _at_tip(store: ChainStore) -> bool:
    return read_marker(store._kv) == (store.tip().hash, store.tip().height)


def test_a_datadir_from_before_the_marker_keeps_its_indexes(datadir):
    with ChainStore.open(datadir) as store:
        store.raw_write({K_INDEXED: None})      # as written when the records went into the consensus batch
    with ChainStore.open(datadir) as store:
        assert _at_tip(store)
        assert store.verify().ok


def test_a_marker_off_the_main_chain_rebuilds_the_indexes(datadir):
    with ChainStore.open(datadir) as store:
        block = store.get_block(store.tip().hash)
        assert block is not None
        stray = {k: None for k, _ in store._kv.iterator(b"i")}          # records lost ...
        stray[K_INDEXED] = os.urandom(32) + (2).to_bytes(4, "big")      # ... under a marker naming no block
        store.raw_write(stray)
    with ChainStore.open(datadir) as store:
        assert _at_tip(store)
        assert store.verify().ok
        assert all(store.find_tx(tx.txid) is not None for tx in block.txs)


def test_a_failing_index_writer_fails_loudly_and_the_next_open_catches_up(datadir, monkeypatch):
    monkeypatch.setattr(chain.store_indexer, "RETRY_PAUSE_S", 0.0)
    store = ChainStore.open(datadir)
    real = store._kv.write

    def write(changes, *, sync):
        if not sync:
            raise OSError(28, "No space left on device")   # only the index writer's batches are unsynced
        real(changes, sync=sync)
    store._kv.write = write  # type: ignore[method-assign]
    try:
        _grow(store, 1)                                      # its consensus batch is written, its index fails
        block = store.get_block(store.tip().hash)
        assert block is not None
        with pytest.raises(StorageFault, match="index writer failed"):
            store.find_tx(block.txs[0].txid)                 # never an answer from an index behind the tip
        with pytest.raises(StorageFault, match="index writer failed"):
            _grow(store, 1)                                  # the next connect stops the node (exit 3)
        assert store.tip().height == 4                       # (before writing anything)
        store.disconnect_tip()                               # the store stays consistent meanwhile
    finally:
        store._kv.write = real  # type: ignore[method-assign]
        store.close()
    with ChainStore.open(datadir) as store:                  # the next start indexes what was missed
        assert _at_tip(store)
        assert store.verify().ok
        assert store.tip().height == 3
