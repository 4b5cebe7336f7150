"""ChainStore on a real LevelDB: connect/disconnect, undo, views, previews, meta keys, lock, verify/reindex."""
from __future__ import annotations

import pytest

from chain.address import address_of
from chain.errors import RuleError, StoreError
from chain.state import Account
from chain.store import ChainStore
from chain.tx import make_transfer
from tests.conftest import CHAIN_ID, GENESIS_BALANCE, PARAMS, build_block, keypair, make_genesis


def test_genesis_and_accounts(store, keys, allocations):
    assert store.is_initialised()
    assert store.tip().height == 0 and store.genesis() == store.tip()
    assert store.get_account(allocations[0][0]) == Account(GENESIS_BALANCE, 0)
    assert store.get_account(bytes(20)) == Account(0, 0)
    assert store.state_view().state_root() == store.tip().state_root
    with pytest.raises(StoreError):
        store.init_genesis(make_genesis(allocations), allocations, PARAMS)


def test_genesis_root_must_match(datadir, allocations):
    with ChainStore.open(datadir) as s:
        with pytest.raises(RuleError) as err:
            s.init_genesis(make_genesis(allocations[:1]), allocations, PARAMS)
        assert err.value.code == "bad-state-root"
        assert not s.is_initialised()


def test_connect_disconnect_restores_state(store, keys):
    miner = keys[5]
    root0 = store.tip().state_root
    items0 = list(store.state_view().items())
    tx = make_transfer(keys[0], CHAIN_ID, address_of(keys[6].public), 500, 1000, 0)
    block = build_block(store, miner, [tx])
    store.connect_block(block, PARAMS, extra={b"round/1": b"crowned"})
    assert store.tip() == block.header
    assert store.get_account(address_of(keys[6].public)) == Account(500, 0)
    assert store.get_account(address_of(keys[0].public)) == Account(GENESIS_BALANCE - 1500, 1)
    assert store.get_account(address_of(miner.public)).balance == PARAMS.block_reward + 1000
    assert store.meta_get(b"round/1") == b"crowned"
    assert store.get_block(block.hash) == block and store.get_block(1) == block
    assert store.get_model(block.header.model_hash) == block.model
    # a view at the parent sees the old state through the undo overlay
    view = store.state_view(store.genesis().hash)
    assert view.get_account(address_of(keys[6].public)) == Account(0, 0)
    assert view.state_root() == root0
    back = store.disconnect_tip(extra={b"round/1": None})
    assert back == block
    assert store.tip().state_root == root0
    assert list(store.state_view().items()) == items0
    assert store.meta_get(b"round/1") is None
    assert store.block_hash_at(1) is None and store.has_block(block.hash)
    with pytest.raises(StoreError):
        store.disconnect_tip()
    assert store.verify().ok


def test_preview_at_ancestor_and_reorg(store, keys):
    """A competing block on the tip's parent validates against the parent's state; switching is a reorg."""
    a = build_block(store, keys[5], [make_transfer(keys[0], CHAIN_ID, address_of(keys[6].public), 7, 1000, 0)])
    store.connect_block(a, PARAMS)
    b = build_block(store, keys[7], [make_transfer(keys[0], CHAIN_ID, address_of(keys[7].public), 9, 1000, 0)],
                    prev_hash=a.header.prev_hash)
    store.preview_block(b, PARAMS)  # nonce 0 is valid at the parent, though spent at the tip
    with pytest.raises(StoreError):
        store.connect_block(b, PARAMS)
    store.disconnect_tip()
    store.connect_block(b, PARAMS)
    assert store.tip() == b.header and store.verify().ok


def test_bad_blocks_rejected_and_nothing_written(store, keys):
    tx = make_transfer(keys[0], CHAIN_ID, address_of(keys[6].public), 5, 1000, 0)
    good = build_block(store, keys[5], [tx])
    import dataclasses
    bad_root = dataclasses.replace(good, header=dataclasses.replace(good.header, state_root=bytes(32)))
    bad_txroot = dataclasses.replace(good, header=dataclasses.replace(good.header, tx_root=bytes(32)))
    bad_model = dataclasses.replace(good, model=b"other")
    for block, code in ((bad_root, "bad-state-root"), (bad_txroot, "bad-tx-root"), (bad_model, "bad-model-hash")):
        with pytest.raises(RuleError) as err:
            store.connect_block(block, PARAMS)
        assert err.value.code == code
    assert store.tip().height == 0 and store.verify().ok


def test_meta_keys(store):
    store.meta_put(b"peer/a", b"1")
    store.meta_write({b"peer/b": b"2", b"other": b"3"})
    assert store.meta_items(b"peer/") == [(b"peer/a", b"1"), (b"peer/b", b"2")]
    store.meta_delete(b"peer/a")
    assert store.meta_get(b"peer/a") is None


def test_datadir_lock(store, datadir):
    with pytest.raises(StoreError):
        ChainStore.open(datadir)


def test_reopen_and_reindex(datadir, allocations, keys):
    with ChainStore.open(datadir) as s:
        s.init_genesis(make_genesis(allocations), allocations, PARAMS)
        for n in range(3):
            s.connect_block(build_block(s, keys[5], [make_transfer(keys[1], CHAIN_ID, bytes(20), 1, 1000, n)]),
                            PARAMS)
        tip = s.tip()
    with ChainStore.open(datadir) as s:
        assert s.tip() == tip and s.params() == PARAMS
        s._kv.write({b"a" + bytes(20): Account(999, 0).encode()}, sync=True)  # corrupt one account
        report = s.verify()
        assert not report.ok and any(p.startswith("stored accounts differ") for p in report.problems)
        assert s.reindex().ok
        assert s.get_account(bytes(20)) == Account(3, 0)


def test_memory_twin_behaves_the_same(allocations, keys):
    s = ChainStore.memory()
    s.init_genesis(make_genesis(allocations), allocations, PARAMS)
    block = build_block(s, keypair(5), [make_transfer(keys[0], CHAIN_ID, bytes(20), 1, 1000, 0)])
    s.connect_block(block, PARAMS)
    assert s.verify().ok
