"""Batch admission (chain.admission.admit_txs) gives every tx the careful per-tx verdict — decode, then
check_tx_stateless, then check_tx_stateful against the sender's tip account — with the same error class, code
and message, on a real LevelDB store, real Ed25519, inline (< 64 txs) and on the pool; and the store's
lock-free tip account reader agrees with get_account while blocks connect and disconnect."""
from __future__ import annotations

import threading

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.address import address_of
from chain.admission import TxVerdict, admit_txs
from chain.errors import DecodeError, PopError, RuleError
from chain.state import EMPTY_ACCOUNT, LedgerParams, check_tx_stateful, check_tx_stateless
from chain.store import ChainStore
from chain.tx import Transfer, make_transfer
from tests.conftest import CHAIN_ID, GENESIS_BALANCE, PARAMS, build_block, keypair, make_genesis

KEYS = [keypair(i) for i in range(6)]
FUNDED = KEYS[:4]                     # KEYS[4:] have no account: their txs fail the state check
ALLOC = [(address_of(k.public), GENESIS_BALANCE) for k in FUNDED]
FAULTS = ["none", "none", "none", "sig", "zero-sig", "chain", "fee", "amount", "version", "nonce", "funds",
          "unfunded", "flip", "truncate", "non-canonical", "garbage", "decoded"]


def _careful(item: bytes | Transfer, store: ChainStore, params: LedgerParams) -> tuple[object, ...]:
    """The per-tx path the batch must equal, as (kind, code, message, tx, account)."""
    try:
        tx = item if isinstance(item, Transfer) else Transfer.decode(item)
    except DecodeError as exc:
        return ("DecodeError", None, str(exc), None, None)
    try:
        check_tx_stateless(tx, params)
    except RuleError as exc:
        return ("RuleError", exc.code, exc.message, tx, None)
    account = store.get_account(address_of(tx.sender))
    try:
        check_tx_stateful(tx, account)
    except RuleError as exc:
        return ("RuleError", exc.code, exc.message, tx, account)
    return (None, None, None, tx, account)


def _as_tuple(v: TxVerdict) -> tuple[object, ...]:
    err = v.error
    if err is None:
        return (None, None, None, v.tx, v.account)
    code = err.code if isinstance(err, RuleError) else None
    message = err.message if isinstance(err, RuleError) else str(err)
    return (type(err).__name__, code, message, v.tx, v.account)


def _item(fault: str, i: int, data) -> bytes | Transfer:
    kp = FUNDED[i % len(FUNDED)]
    recipient = address_of(KEYS[(i + 1) % len(KEYS)].public)
    amount, fee, nonce, chain = 1 + i, 1000 + i, 0, CHAIN_ID
    if fault == "chain":
        chain = "elsewhere"
    elif fault == "fee":
        fee = PARAMS.min_fee - 1
    elif fault == "amount":
        amount = 0
    elif fault == "nonce":
        nonce = 1 + i % 3
    elif fault == "funds":
        amount = GENESIS_BALANCE
    elif fault == "unfunded":
        kp = KEYS[4 + i % 2]
    tx = make_transfer(kp, chain, recipient, amount, fee, nonce, b"m" * (i % 5))
    if fault == "version":
        tx = Transfer(2, *tx.to_list()[1:8], kp.sign(Transfer(2, *tx.to_list()[1:]).sighash))
    elif fault == "sig":
        tx = Transfer(*tx.to_list()[:8], KEYS[5].sign(tx.sighash))
    elif fault == "zero-sig":
        tx = Transfer(*tx.to_list()[:8], bytes(64))
    raw = tx.encode()
    if fault == "decoded":
        return tx
    if fault == "flip":
        pos = data.draw(st.integers(0, len(raw) - 1))
        return raw[:pos] + bytes([raw[pos] ^ data.draw(st.integers(1, 255))]) + raw[pos + 1:]
    if fault == "truncate":
        return raw[:data.draw(st.integers(0, len(raw) - 1))]
    if fault == "non-canonical":
        fields = tx.to_list()
        p = msgpack.Packer(use_bin_type=True)
        return b"\x99" + b"".join(p.pack(f) for f in fields[:4]) + b"\xcf" + fields[4].to_bytes(8, "big") + \
            b"".join(p.pack(f) for f in fields[5:])
    if fault == "garbage":
        return data.draw(st.binary(max_size=300))
    return raw


def _store(tmp_path_factory) -> ChainStore:
    store = ChainStore.open(tmp_path_factory.mktemp("adm"))
    store.init_genesis(make_genesis(ALLOC), ALLOC, PARAMS)
    return store


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_batch_verdicts_equal_the_careful_path(tmp_path_factory, data):
    n = data.draw(st.sampled_from([0, 1, 5, 63, 64, 150]))  # inline below 64, pool from 64 on
    faults = data.draw(st.lists(st.sampled_from(FAULTS), min_size=n, max_size=n))
    items = [_item(f, i, data) for i, f in enumerate(faults)]
    store = _store(tmp_path_factory)
    try:
        verdicts = admit_txs(items, PARAMS, store.tip_account_reader())
        assert len(verdicts) == n
        for item, verdict in zip(items, verdicts, strict=True):
            assert _as_tuple(verdict) == _careful(item, store, PARAMS)
            assert verdict.ok == (verdict.error is None)
        # without the state check: the stateless verdict, and the tip account for the mempool
        loose = admit_txs(items, PARAMS, store.tip_account_reader(), check_state=False)
        for item, verdict in zip(items, loose, strict=True):
            kind, code, message, tx, account = _careful(item, store, PARAMS)
            if code in ("bad-nonce", "insufficient-funds"):
                assert verdict.ok and verdict.tx == tx and verdict.account == account
            else:
                assert _as_tuple(verdict) == (kind, code, message, tx, account)
    finally:
        store.close()


def test_each_tx_is_judged_alone_against_the_tip(tmp_path_factory):
    store = _store(tmp_path_factory)
    kp = FUNDED[0]
    first = make_transfer(kp, CHAIN_ID, bytes(20), 5, 1000, 0)
    second = make_transfer(kp, CHAIN_ID, bytes(20), 5, 1000, 1)  # valid only after `first`
    got = admit_txs([first.encode(), second.encode()] * 40, PARAMS, store.tip_account_reader())
    assert [v.error.code if v.error else None for v in got[:2]] == [None, "bad-nonce"]
    for verdict, tx in zip(got, [first, second] * 40, strict=True):
        assert _as_tuple(verdict) == _careful(tx, store, PARAMS)
    store.close()


def test_verdicts_carry_decoded_txs_with_hashes(tmp_path_factory):
    store = _store(tmp_path_factory)
    txs = [make_transfer(k, CHAIN_ID, bytes(20), 5, 1000, 0) for k in FUNDED] * 20
    verdicts = admit_txs([t.encode() for t in txs], PARAMS, store.tip_account_reader())
    for tx, v in zip(txs, verdicts, strict=True):
        assert v.ok and v.tx == tx and v.tx.sighash == tx.sighash and v.tx.txid == tx.txid
        assert v.account == store.get_account(address_of(tx.sender))
    store.close()


def test_tip_account_reader_follows_the_tip_and_never_needs_the_lock(tmp_path_factory):
    store = _store(tmp_path_factory)
    ids = [address_of(k.public) for k in KEYS] + [bytes(20)]
    assert store.tip_account_reader()(ids) == [store.get_account(a) for a in ids]
    assert store.tip_account_reader()([bytes(20)]) == [EMPTY_ACCOUNT]
    block = build_block(store, KEYS[5], [make_transfer(FUNDED[0], CHAIN_ID, ids[-1], 7, 1000, 0)])
    reader = store.tip_account_reader()
    store.connect_block(block, PARAMS)
    assert reader(ids) == [store.get_account(a) for a in ids]  # an existing reader sees the new tip
    # while another thread holds the store lock (as a connecting block does), the reader still answers
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._lock:
            held.set()
            release.wait(10)
    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        assert reader(ids) == [store.get_account(a) for a in ids]
    finally:
        release.set()
        holder.join()
    store.disconnect_tip()
    assert reader(ids) == [store.get_account(a) for a in ids]
    store.close()


def test_admission_never_raises_on_hostile_input(tmp_path_factory):
    store = _store(tmp_path_factory)
    items: list[bytes] = [b"", b"\xdd\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff", bytes(10_000), b"\x99" * 300]
    verdicts = admit_txs(items * 20, PARAMS, store.tip_account_reader())
    assert all(isinstance(v.error, PopError) and v.tx is None for v in verdicts)
    store.close()
