"""Connecting blocks — ledger work first, then only the signatures that come before the first failure, on
the pool — decides exactly what a plain sequential reference decides: the same reject code (first failing tx
in block order, tx root before txs, state root last), the same state root and accounts, and writes nothing
on a reject. Also the building blocks: Merkle roots, tx roots, the leaf cache and the undo record bytes."""
from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.address import address_of
from chain.block import Block, Header, tx_root
from chain.crypto import merkle_root, merkle_root_of_hashes
from chain.encoding import pack
from chain.errors import RuleError
from chain.state import Account, state_root_of
from chain.state_cache import LeafCache
from chain.store import ChainStore
from chain.tx import Transfer, make_transfer
from tests.conftest import CHAIN_ID, PARAMS, keypair, make_genesis

KEYS = [keypair(i) for i in range(6)]


# ---------------------------------------------------------------- an independent reference (PROTOCOL §1–2)

def _h(tag: str, *parts: bytes) -> bytes:
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + b"".join(struct.pack(">I", len(p)) + p for p in parts)).digest()


def _merkle(leaves: list[bytes]) -> bytes:
    if not leaves:
        return _h("popchain/merkle-empty")
    level = [_h("popchain/merkle-leaf", x) for x in leaves]
    while len(level) > 1:
        nxt = [_h("popchain/merkle-node", level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = nxt + ([level[-1]] if len(level) % 2 else [])
    return level[0]


def _ok_sig(tx: Transfer) -> bool:
    import nacl.exceptions
    import nacl.signing
    sighash = _h("popchain/tx-sig", tx.chain_id.encode(), pack(tx.to_list()[:8]))
    try:
        nacl.signing.VerifyKey(tx.sender).verify(sighash, tx.signature)
        return True
    except nacl.exceptions.BadSignatureError:
        return False


def _reference(accounts: dict[bytes, tuple[int, int]], block: Block) -> str | dict[bytes, tuple[int, int]]:
    """Reject code, or the accounts after ``block`` — one tx at a time, each check in PROTOCOL order."""
    h = block.header
    if len(block.txs) > PARAMS.max_block_txs:
        return "too-many-txs"
    if _h("popchain/model", block.model) != h.model_hash:
        return "bad-model-hash"
    if _merkle([_h("popchain/txid", pack(t.to_list())) for t in block.txs]) != h.tx_root:
        return "bad-tx-root"
    state = dict(accounts)
    fees = 0
    for tx in block.txs:
        if tx.version != 1:
            return "bad-version"
        if tx.chain_id != PARAMS.chain_id:
            return "bad-chain-id"
        if tx.amount < 1:
            return "bad-amount"
        if tx.fee < PARAMS.min_fee:
            return "fee-too-low"
        if not _ok_sig(tx):
            return "bad-tx-sig"
        sender = _h("popchain/address", tx.sender)[:20]
        balance, nonce = state.get(sender, (0, 0))
        if tx.nonce != nonce:
            return "bad-nonce"
        if balance < tx.amount + tx.fee:
            return "insufficient-funds"
        state[sender] = (balance - tx.amount - tx.fee, nonce + 1)
        balance, nonce = state.get(tx.recipient, (0, 0))
        state[tx.recipient] = (balance + tx.amount, nonce)
        fees += tx.fee
    miner = _h("popchain/address", h.miner)[:20]
    balance, nonce = state.get(miner, (0, 0))
    state[miner] = (balance + PARAMS.block_reward + fees, nonce)
    leaves = [a + b.to_bytes(8, "big") + n.to_bytes(8, "big") for a, (b, n) in sorted(state.items())]
    if _merkle(leaves) != h.state_root:
        return "bad-state-root"
    return state


# ---------------------------------------------------------------- blocks with faults

FAULTS = ["none"] * 6 + ["sig", "nonce", "funds", "fee", "chain", "amount", "version"]
HEADER_FAULTS = ["none", "none", "none", "tx-root", "state-root", "model", "too-many"]


def _block(store: ChainStore, accounts: dict[bytes, tuple[int, int]], data) -> Block:
    """A block on the tip with random transfers among KEYS, some faulty; a valid state root unless a fault
    comes first (then any root: the reference says which check fails first)."""
    n = data.draw(st.sampled_from([0, 3, 63, 64, 65, 130]))
    nonces = {address_of(k.public): accounts.get(address_of(k.public), (0, 0))[1] for k in KEYS}
    mode = data.draw(st.sampled_from(["clean", "one", "many"]))
    faulty = data.draw(st.integers(0, max(n - 1, 0)))
    txs = []
    for i in range(n):
        kp = KEYS[data.draw(st.integers(0, 3))]
        sender = address_of(kp.public)
        fault = "none"
        if mode == "many":
            fault = data.draw(st.sampled_from(FAULTS))
        elif mode == "one" and i == faulty:
            fault = data.draw(st.sampled_from(FAULTS[6:]))
        amount = 1_000_000_000_000_000 if fault == "funds" else data.draw(st.integers(1, 50_000))
        fee = 999 if fault == "fee" else 1000
        nonce = nonces[sender] + (1 if fault == "nonce" else 0)
        tx = make_transfer(kp, "other" if fault == "chain" else CHAIN_ID,
                           address_of(KEYS[data.draw(st.integers(0, 5))].public),
                           0 if fault == "amount" else amount, fee, nonce)
        if fault == "sig":
            tx = Transfer(*tx.to_list()[:8], KEYS[5].sign(tx.sighash))
        elif fault == "version":
            tx = Transfer(2, *tx.to_list()[1:])
        if fault == "none":
            nonces[sender] += 1
        txs.append(tx)
    header_fault = data.draw(st.sampled_from(HEADER_FAULTS))
    miner = KEYS[data.draw(st.integers(0, 5))]
    tip = store.tip()
    model = b"model-%d" % (tip.height + 1)
    if header_fault == "too-many":
        txs = txs * 40 + [txs[0]] * (PARAMS.max_block_txs + 1 - 40 * len(txs)) if txs else []
    root_of_txs = tx_root(txs)
    stub = Header(1, CHAIN_ID, tip.height + 1, tip.hash, tip.round + 1, tip.timestamp + 1, miner.public,
                  bytes(32) if header_fault == "tx-root" else root_of_txs, bytes(32),
                  _h("popchain/model", b"other" if header_fault == "model" else model), bytes(32))
    after = _reference(accounts, Block(stub, tuple(txs), model, b""))
    state_root = bytes(32)
    if header_fault != "state-root" and isinstance(after, str) and after == "bad-state-root":
        state_root = store.preview_txs(tip.hash, miner.public, txs, PARAMS).state_root
    header = Header(*stub.to_list()[:8], state_root, *stub.to_list()[9:11]).sign(miner)
    return Block(header, tuple(txs), model, b"payload")


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_connect_decides_like_the_sequential_reference(tmp_path_factory, data):
    alloc = [(address_of(k.public), 10**9) for k in KEYS[:4]]
    store = ChainStore.open(tmp_path_factory.mktemp("connect"))
    store.init_genesis(make_genesis(alloc), alloc, PARAMS)
    accounts = {a: (n, 0) for a, n in alloc}
    try:
        for _ in range(data.draw(st.integers(1, 3))):
            block = _block(store, accounts, data)
            expected = _reference(accounts, Block.decode(block.encode()))
            tip = store.tip()
            try:
                store.connect_block(Block.decode(block.encode()), PARAMS)
                got: str | None = None
            except RuleError as err:
                got = err.code
            if isinstance(expected, str):
                assert got == expected
                assert store.tip() == tip  # nothing written
            else:
                assert got is None
                accounts = expected
                assert store.tip() == block.header
                assert {a: (acc.balance, acc.nonce) for a, acc in
                        ((a, store.get_account(a)) for a in accounts)} == accounts
        assert store.verify().ok
    finally:
        store.close()


def test_rule_order_examples(tmp_path_factory):
    """Hand-made cases of PROTOCOL §2.1's order with more than 64 txs (the pool path)."""
    alloc = [(address_of(k.public), 10**9) for k in KEYS[:4]]
    store = ChainStore.open(tmp_path_factory.mktemp("order"))
    store.init_genesis(make_genesis(alloc), alloc, PARAMS)
    kp = KEYS[0]
    base = [make_transfer(kp, CHAIN_ID, bytes(20), 1, 1000, n) for n in range(100)]
    forged = Transfer(*base[70].to_list()[:8], bytes(64))

    def code(txs: list[Transfer], **header_changes) -> str:
        tip = store.tip()
        root = bytes(32)
        fields = dict(version=1, chain_id=CHAIN_ID, height=1, prev_hash=tip.hash, round=1,
                      timestamp=tip.timestamp + 1, miner=KEYS[5].public, tx_root=tx_root(txs),
                      state_root=root, model_hash=_h("popchain/model", b"m"), salt=bytes(32))
        fields.update(header_changes)
        block = Block(Header(**fields), tuple(txs), b"m", b"")
        with pytest.raises(RuleError) as err:
            store.connect_block(block, PARAMS)
        return err.value.code

    assert code(base) == "bad-state-root"
    assert code(base[:70] + [forged] + base[71:]) == "bad-tx-sig"            # before the state root
    assert code(base[:70] + [forged] + base[71:], tx_root=bytes(32)) == "bad-tx-root"  # tx root first
    late_nonce = base[:90] + [make_transfer(kp, CHAIN_ID, bytes(20), 1, 1000, 999)] + base[91:]
    assert code(late_nonce[:70] + [forged] + late_nonce[71:]) == "bad-tx-sig"  # earlier sig beats later nonce
    early_nonce = base[:10] + [make_transfer(kp, CHAIN_ID, bytes(20), 1, 1000, 999)] + base[11:]
    assert code(early_nonce[:70] + [forged] + early_nonce[71:]) == "bad-nonce"  # earlier nonce first
    own = Transfer(*make_transfer(kp, CHAIN_ID, bytes(20), 1, 1000, 999).to_list()[:8], bytes(64))
    assert code(base[:30] + [own] + base[31:]) == "bad-tx-sig"  # a tx's own signature before its nonce
    fee = make_transfer(kp, CHAIN_ID, bytes(20), 1, 10, 30)
    assert code(base[:30] + [fee] + base[31:70] + [forged] + base[71:]) == "fee-too-low"
    bad_fee_sig = Transfer(*fee.to_list()[:8], bytes(64))
    assert code(base[:30] + [bad_fee_sig] + base[31:]) == "fee-too-low"  # field rules before its signature
    assert store.tip().height == 0 and store.verify().ok
    store.close()


# ---------------------------------------------------------------- building blocks


def test_pool_skips_blocks_past_the_limit():
    # chain.store lowers the limit when the ledger work finds a block's first failure: signatures that rule
    # order puts after it are not started
    from chain.crypto import submit_chunks
    seen: list[int] = []

    def fn(part, offset):
        seen.append(offset)
        return [offset + k for k in range(len(part))]
    results = submit_chunks(fn, list(range(300)), limit=[50])()
    assert sorted(seen) == [0, 32]  # the blocks that start below 50
    assert results[:64] == list(range(64)) and results[64:] == [None] * 236
    assert submit_chunks(fn, list(range(300)))() == list(range(300))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=300))
def test_stepped_merkle_roots_equal_the_reference(hashes):
    leaves_as_hashes = [_h("popchain/merkle-leaf", x) for x in hashes]
    assert merkle_root_of_hashes(leaves_as_hashes) == _merkle(hashes) == merkle_root(hashes)


def test_tx_root_computes_and_keeps_txids():
    txs = [make_transfer(KEYS[i % 4], CHAIN_ID, bytes(20), 1 + i, 1000, i) for i in range(70)]
    fresh = [Transfer.decode(t.encode()) for t in txs]
    assert all("_txid" not in t.__dict__ for t in fresh)
    assert tx_root(fresh) == _merkle([_h("popchain/txid", t.encode()) for t in txs])
    assert [t.__dict__["_txid"] for t in fresh] == [t.txid for t in txs]


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.binary(min_size=20, max_size=20), st.integers(1, 2**40), max_size=40),
       st.data())
def test_leaf_cache_roots_equal_a_fresh_state_root(base, data):
    encoded = {a: Account(n, 1).encode() for a, n in base.items()}
    cache = LeafCache.load(sorted(encoded.items()))
    for _ in range(3):
        changes: dict[bytes, bytes | None] = {}
        for a in data.draw(st.lists(st.sampled_from(sorted(encoded)), max_size=5)) if encoded else []:
            gone = data.draw(st.booleans())
            changes[a] = None if gone else Account(data.draw(st.integers(0, 99)), 2).encode()
        for a in data.draw(st.lists(st.binary(min_size=20, max_size=20), max_size=5)):
            changes[a] = Account(data.draw(st.integers(0, 99)), 0).encode()
        after = {**encoded, **changes}
        after = {a: v for a, v in after.items() if v is not None}
        expected = state_root_of(sorted(after.items()))
        assert cache.root_with(changes) == expected
        cache.apply(changes)
        assert cache.root_with({}) == expected
        assert all(cache.get(a) == v for a, v in after.items())
        assert all(cache.get(a) is None for a, v in changes.items() if v is None)
        encoded = after


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.binary(min_size=20, max_size=20),
                       st.none() | st.binary(min_size=16, max_size=16), max_size=30))
def test_undo_record_bytes_equal_the_packed_list(before):
    from chain.encoding import pack_trusted
    from chain.store import _pack_undo
    assert _pack_undo(before) == pack_trusted([(a, b"" if v is None else v) for a, v in before.items()])
