"""The block-connect fast paths give exactly what the checked paths give: bulk tx decoding (fields, encoding,
sighash, txid), Block.decode vs the fully checked decoder (same objects, same errors), the deferred apply
(reject order), the lazy account mappings and the leaf-cache merge memo."""
from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.address import address_of
from chain.block import Block, Header
from chain.crypto import tagged_hash
from chain.encoding import pack_trusted
from chain.errors import DecodeError, PopError, RuleError
from chain.state import Account, EncodedAccounts, apply_txs
from chain.state_cache import LeafCache
from chain.tx import MAX_AMOUNT, MAX_NONCE, Transfer, make_transfer, transfers_from_lists
from tests.conftest import PARAMS, keypair

KEYS = [keypair(i) for i in range(4)]
chain_ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=32)


@st.composite
def transfers(draw) -> Transfer:
    return make_transfer(draw(st.sampled_from(KEYS)), draw(chain_ids), draw(st.binary(min_size=20, max_size=20)),
                         draw(st.integers(0, MAX_AMOUNT)), draw(st.integers(0, MAX_AMOUNT)),
                         draw(st.integers(0, MAX_NONCE)), draw(st.binary(max_size=64)))


def _block(txs: list[Transfer]) -> Block:
    kp = KEYS[0]
    header = Header(1, "fast", 1, bytes(32), 1, 5, kp.public, bytes(32), bytes(32), bytes(32), bytes(32)).sign(kp)
    return Block(header, tuple(txs), b"model", b"payload")


@settings(max_examples=60, deadline=None)
@given(st.lists(transfers(), max_size=6))
def test_bulk_transfers_equal_the_checked_ones(txs):
    built = transfers_from_lists([tx.to_list() for tx in txs])
    assert built is not None and built == txs
    for fast, tx in zip(built, txs):
        assert fast.encode() == tx.encode()
        assert fast.sighash == tagged_hash("popchain/tx-sig", tx.chain_id.encode(), pack_trusted(tx.unsigned_fields()))
        assert fast.txid == tagged_hash("popchain/txid", tx.encode())
        assert fast.verify_signature()


@settings(max_examples=60, deadline=None)
@given(st.lists(transfers(), max_size=4), st.data())
def test_block_decode_fast_equals_checked_also_on_corrupted_bytes(txs, data):
    encoded = _block(txs).encode()
    raw = bytearray(encoded)
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    raw = bytes(raw)
    try:
        expected: Block | str = Block._decode_checked(raw, 10**7)
    except DecodeError as exc:
        expected = str(exc)
    try:
        got: Block | str = Block.decode(raw, max_size=10**7)
    except DecodeError as exc:
        got = str(exc)
    assert got == expected
    if isinstance(got, Block):
        assert [t.txid for t in got.txs] == [t.txid for t in expected.txs]  # type: ignore[union-attr]
        assert [t.sighash for t in got.txs] == [t.sighash for t in expected.txs]  # type: ignore[union-attr]


def test_bulk_builder_refuses_what_the_field_checks_refuse():
    good = make_transfer(KEYS[0], "c", bytes(20), 5, 1000, 0).to_list()
    bad_lists = [good[:8], good + [0], "x" * 9, b"123456789"]
    for i, bad_value in [(0, 256), (0, True), (1, "bad id"), (1, b"c"), (2, bytes(31)), (3, bytes(21)),
                         (4, MAX_AMOUNT + 1), (4, -1), (5, MAX_AMOUNT + 1), (6, MAX_NONCE + 1),
                         (7, bytes(65)), (8, bytes(63)), (8, "s" * 64)]:
        fields = list(good)
        fields[i] = bad_value
        bad_lists.append(fields)
    for bad in bad_lists:
        assert transfers_from_lists([good, bad]) is None
        with pytest.raises(PopError):
            Transfer.from_list(bad)
    # a block carrying such a tx fails with the checked decoder's own error
    p = msgpack.Packer(use_bin_type=True)
    block = _block([])
    fields = [block.header.to_list(), [good, bad_lists[-1]], b"m", b"p"]
    with pytest.raises(DecodeError, match="tx.signature"):
        Block.decode(p.pack(fields))


def test_balance_overflow_reports_an_earlier_bad_signature_first():
    # PROTOCOL §2.1: the block's reject code is that of the first failing tx; tx 0 has a bad signature,
    # tx 1 would overflow its recipient — the block must be rejected for bad-tx-sig, not balance-overflow
    kp, rich = KEYS[1], bytes(range(20))
    tx0 = make_transfer(kp, PARAMS.chain_id, bytes(20), 1, 1000, 0)
    tx0 = Transfer(*tx0.unsigned_fields(), signature=bytes(64))
    tx1 = make_transfer(kp, PARAMS.chain_id, rich, 10, 1000, 1)
    accounts = {address_of(kp.public): Account(10**6, 0), rich: Account(2**64 - 5, 0)}
    with pytest.raises(RuleError) as err:
        apply_txs(accounts.get, [tx0, tx1], None, PARAMS)
    assert err.value.code == "bad-tx-sig"
    # with a good signature the overflow itself is reported
    good0 = make_transfer(kp, PARAMS.chain_id, bytes(20), 1, 1000, 0)
    with pytest.raises(RuleError) as err:
        apply_txs(accounts.get, [good0, tx1], None, PARAMS)
    assert err.value.code == "balance-overflow"


def test_encoded_accounts_behave_like_a_dict_of_accounts():
    raw = {b"a" * 20: Account(5, 1).encode(), b"b" * 20: None}
    lazy = EncodedAccounts(raw)
    assert lazy == {b"a" * 20: Account(5, 1), b"b" * 20: None}
    assert len(lazy) == 2 and b"b" * 20 in lazy and lazy[b"a" * 20] == Account(5, 1)
    assert dict(lazy.items()) == {b"a" * 20: Account(5, 1), b"b" * 20: None}


def test_leaf_cache_memo_never_leaks_between_different_changes():
    base = {bytes([i]) * 20: Account(i + 1, 0).encode() for i in range(5)}
    fresh = lambda: LeafCache.load(base.items())  # noqa: E731
    a = {bytes([1]) * 20: Account(99, 1).encode()}
    b = {bytes([2]) * 20: None, bytes([9]) * 20: Account(7, 0).encode()}
    cache = fresh()
    root_a = cache.root_with(a)
    cache.apply(b)  # not the memoised changes: must merge b itself
    reference = fresh()
    reference.apply(b)
    assert cache.root_with({}) == reference.root_with({})
    assert root_a == fresh().root_with(a)


def test_direct_verify_chunk_matches_verify_sig():
    from chain.crypto import Keypair, _verify_chunk, verify_sig
    kp = Keypair.from_seed(bytes(range(32)))
    msgs = [b"", b"a", bytes(32), bytes(range(256)) * 3, b"z" * 5000, b"tail"]
    items = [(kp.public, m, kp.sign(m)) for m in msgs]
    items += [(kp.public, m + b"!", kp.sign(m)) for m in msgs]            # wrong message
    items += [(kp.public, b"a", bytes(64)), (b"short", b"a", kp.sign(b"a")), (kp.public, b"a", b"sig"),
              (kp.public, bytearray(b"a"), kp.sign(b"a")), (KEYS[0].public, b"a", kp.sign(b"a"))]
    assert _verify_chunk(items) == [verify_sig(*it) for it in items]
    assert _verify_chunk(items)[:len(msgs)] == [True] * len(msgs)
    results = _verify_chunk(items)
    assert not any(results[len(msgs):-2]) and not results[-1]
    # independent oracle: pynacl's public API
    import nacl.signing

    def oracle(pubkey, msg, sig) -> bool:
        try:
            nacl.signing.VerifyKey(pubkey).verify(bytes(msg), sig)
            return True
        except Exception:
            return False
    assert results == [oracle(*it) for it in items]
