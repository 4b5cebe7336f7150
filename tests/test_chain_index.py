"""The tx and address indexes (chain.store_index): written in the connect/disconnect batch, paged newest first,
checked by verify, rebuilt by reindex. Attackers first: a reorg must not leave a stale txid -> block record,
tampering must be reported, and a page cursor must never skip or repeat an entry."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chain.address import address_of
from chain.store import ChainStore
from chain.store_index import K_INDEX_VERSION, P_TXINDEX, RECEIVED, SENT, parse_cursor
from chain.tx import make_transfer
from tests.conftest import CHAIN_ID, PARAMS, build_block, keypair, make_genesis


def _send(store, sender, to, amount, n=0):
    nonce = store.get_account(address_of(sender.public)).nonce
    return make_transfer(sender, CHAIN_ID, to, amount, 1000, nonce + n)


def test_connect_indexes_disconnect_unindexes(store, keys):
    a, b = keys[0], keys[1]
    addr_a, addr_b = address_of(a.public), address_of(b.public)
    tx1 = _send(store, a, addr_b, 10)
    block1 = build_block(store, keys[5], [tx1])
    store.connect_block(block1, PARAMS)
    loc = store.find_tx(tx1.txid)
    assert loc is not None and (loc.block_hash, loc.height, loc.position, loc.tx) == (block1.hash, 1, 0, tx1)
    [sent] = store.address_history(addr_a)
    [got] = store.address_history(addr_b)
    assert sent.direction == SENT and got.direction == RECEIVED and sent.location.txid == tx1.txid
    self_tx = _send(store, b, addr_b, 3)
    block2 = build_block(store, keys[5], [self_tx, _send(store, a, addr_b, 4)])
    store.connect_block(block2, PARAMS)
    hist_b = store.address_history(addr_b)
    assert [h.location.height for h in hist_b] == [2, 2, 1]
    assert hist_b[1].direction == SENT | RECEIVED  # to itself: one entry, both directions
    # reorg: the disconnected block's txs leave both indexes in the same batch
    store.disconnect_tip()
    assert store.find_tx(self_tx.txid) is None
    assert [h.location.txid for h in store.address_history(addr_b)] == [tx1.txid]
    assert store.verify().ok


def test_paging_never_skips_or_repeats(store, keys):
    a, b = keys[0], keys[1]
    addr_b = address_of(b.public)
    sent = []
    for _ in range(3):
        txs = [_send(store, a, addr_b, 1 + i, i) for i in range(4)]
        sent += txs
        store.connect_block(build_block(store, keys[5], txs), PARAMS)
    seen, before = [], None
    while True:
        page = store.address_history(addr_b, before, limit=3)
        if not page:
            break
        seen += [h.location.txid for h in page]
        before = parse_cursor(page[-1].cursor)
    assert seen == [t.txid for t in reversed(sent)]
    assert [h.location.height for h in store.address_history(addr_b, parse_cursor("3"), 100)] == [2] * 4 + [1] * 4


def test_verify_reports_tampered_index_and_reindex_repairs(datadir, allocations, keys):
    with ChainStore.open(datadir) as s:
        s.init_genesis(make_genesis(allocations), allocations, PARAMS)
        tx = _send(s, keys[0], address_of(keys[1].public), 5)
        s.connect_block(build_block(s, keys[5], [tx]), PARAMS)
        s._kv.write({P_TXINDEX + tx.txid: None, P_TXINDEX + bytes(32): b"junk"}, sync=True)
        report = s.verify()
        assert not report.ok and any("indexes differ" in p for p in report.problems)
        s._kv.write({K_INDEX_VERSION: None}, sync=True)  # as a datadir from before the indexes
        assert not s.has_indexes()
        assert s.reindex().ok and s.has_indexes()
        assert s.find_tx(tx.txid) is not None and s.find_tx(bytes(32)) is None


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=12))
def test_indexes_always_match_a_replay(ops):
    """Property: after any sequence of connects (a transfer between two of four keys) and disconnects, the
    stored indexes equal the ones a replay of the main chain builds (verify compares them)."""
    keys = [keypair(i) for i in range(4)]
    alloc = sorted((address_of(k.public), 10**12) for k in keys)
    s = ChainStore.memory()
    s.init_genesis(make_genesis(alloc), alloc, PARAMS)
    for connect, i, j in ops:
        if connect or s.tip().height == 0:
            s.connect_block(build_block(s, keys[3], [_send(s, keys[i], address_of(keys[j].public), 1)]), PARAMS)
        else:
            s.disconnect_tip()
        assert s.verify().ok
