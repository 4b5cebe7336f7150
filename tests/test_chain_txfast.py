"""Transfer fast paths equal the careful ones: the sighash taken from the encoding's bytes equals the
sighash of the packed unsigned fields (PROTOCOL §2.1), the txid likewise, and the trusted decoder accepts
exactly what the checked decoder accepts — same object — and otherwise defers to it (same error)."""
from __future__ import annotations

import hashlib
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.encoding import pack, unpack
from chain.errors import DecodeError, PopError
from chain.tx import (
    MAX_AMOUNT,
    MAX_NONCE,
    MAX_TX_SIZE,
    Transfer,
    decode_many_trusted,
    decode_trusted,
    make_transfer,
    sighash_of_encoding,
    transfers_from_lists,
    trusted_transfer,
    txid_of_encoding,
)
from tests.conftest import keypair

KEYS = [keypair(i) for i in range(3)]
chain_ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=32)


def _tagged(tag: str, *parts: bytes) -> bytes:
    """PROTOCOL §1's H(tag, parts…), written out independently of chain.crypto."""
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + b"".join(struct.pack(">I", len(p)) + p for p in parts)).digest()


@st.composite
def transfers(draw) -> Transfer:
    fields = [draw(st.integers(0, 255)), draw(chain_ids), draw(st.sampled_from(KEYS)).public,
              draw(st.binary(min_size=20, max_size=20)), draw(st.integers(0, MAX_AMOUNT)),
              draw(st.integers(0, MAX_AMOUNT)), draw(st.integers(0, MAX_NONCE)), draw(st.binary(max_size=64)),
              draw(st.binary(min_size=64, max_size=64))]
    return Transfer(*fields)


@settings(max_examples=300, deadline=None)
@given(transfers())
def test_sighash_and_txid_from_bytes_equal_the_packed_form(tx):
    packed_unsigned = pack(tx.to_list()[:8])
    expected = _tagged("popchain/tx-sig", tx.chain_id.encode(), packed_unsigned)
    assert tx.sighash == expected
    assert sighash_of_encoding(tx.chain_id, tx.encode()) == expected
    # the byte identity the fast path relies on: fixarray(8) + the full encoding minus header and bin8(64) sig
    assert packed_unsigned == b"\x98" + tx.encode()[1:-66]
    assert tx.txid == txid_of_encoding(tx.encode()) == _tagged("popchain/txid", pack(tx.to_list()))
    assert len(tx.encode()) <= MAX_TX_SIZE  # even the largest fields fit the cap


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(KEYS), chain_ids, st.integers(0, MAX_AMOUNT), st.integers(0, MAX_NONCE))
def test_signed_transfer_verifies_with_the_fast_sighash(kp, chain_id, amount, nonce):
    tx = make_transfer(kp, chain_id, bytes(20), amount, 5, nonce, b"memo")
    assert tx.verify_signature()
    decoded = Transfer.decode(tx.encode())
    assert decoded == tx and decoded.sighash == tx.sighash and decoded.verify_signature()


def _checked(data: bytes, typed: bool) -> Transfer | str:
    """The careful decoder's verdict: canonical unpack (``typed=False``: with the generic type walk too), then
    the dataclass checks. ``typed=True`` is the checked path Transfer.decode falls back to."""
    try:
        tx = Transfer.from_list(unpack(data, max_size=MAX_TX_SIZE, typed=typed))
    except DecodeError as exc:
        return f"error: {exc}"
    return tx


def _mutations(draw, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "splice", "same"]))
    raw = bytearray(data)
    if kind == "flip":
        i = draw(st.integers(0, len(raw) - 1))
        raw[i] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif kind == "extend":
        raw += draw(st.binary(min_size=1, max_size=4))
    elif kind == "splice":
        i = draw(st.integers(0, len(raw)))
        raw[i:i] = draw(st.binary(min_size=1, max_size=3))
    return bytes(raw)


@settings(max_examples=400, deadline=None)
@given(transfers(), st.data())
def test_fast_decode_accepts_and_rejects_exactly_like_the_checked_decoder(tx, data):
    raw = _mutations(data.draw, tx.encode())
    expected = _checked(raw, typed=True)
    assert isinstance(expected, str) == isinstance(_checked(raw, typed=False), str)
    fast = decode_trusted(raw)
    if fast is not None:  # the fast path may only accept what the checked path accepts, as the same object
        assert fast == expected and fast.encode() == raw
    try:
        got: Transfer | str = Transfer.decode(raw)
    except DecodeError as exc:
        got = f"error: {exc}"
    assert got == expected  # same object, or the same error message
    if isinstance(got, Transfer):
        assert got.encode() == raw and got.sighash == expected.sighash  # type: ignore[union-attr]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(transfers(), st.booleans()), max_size=12), st.data())
def test_batched_fast_decode_equals_one_by_one(pairs, data):
    datas = [_mutations(data.draw, tx.encode()) if mutate else tx.encode() for tx, mutate in pairs]
    datas += data.draw(st.lists(st.sampled_from([b"", b"\xc0", "text", bytearray(b"\x99")]), max_size=2))
    assert decode_many_trusted(datas) == [decode_trusted(d) for d in datas]


def test_batched_fast_decode_finds_the_non_canonical_one():
    txs = [make_transfer(KEYS[0], "c", bytes(20), 5 + i, 1000, 0) for i in range(4)]
    fields = txs[2].to_list()
    p = msgpack.Packer(use_bin_type=True)
    wide = b"\x99" + b"".join(p.pack(f) for f in fields[:4]) + _wide(fields[4]) + \
        b"".join(p.pack(f) for f in fields[5:])
    got = decode_many_trusted([txs[0].encode(), txs[1].encode(), wide, txs[3].encode()])
    assert got == [txs[0], txs[1], None, txs[3]]


def _wide(value: int) -> bytes:
    return b"\xcf" + value.to_bytes(8, "big")  # uint64 form: non-canonical for small values


def test_non_canonical_and_odd_encodings_refused_by_both():
    tx = make_transfer(KEYS[0], "c", bytes(20), 5, 1000, 0)
    good = tx.encode()
    fields = tx.to_list()
    p = msgpack.Packer(use_bin_type=True)
    head = b"\x99" + p.pack(fields[0]) + p.pack(fields[1]) + p.pack(fields[2]) + p.pack(fields[3])
    tail = p.pack(fields[5]) + p.pack(fields[6]) + p.pack(fields[7]) + p.pack(fields[8])
    wide_amount = head + _wide(5) + tail
    str8_chain = (b"\x99" + p.pack(fields[0]) + b"\xd9\x01c" + p.pack(fields[2]) + p.pack(fields[3])
                  + p.pack(fields[4]) + tail)
    bin_as_str = good.replace(b"\xc4\x40", b"\xd9\x40", 1)
    map_form = msgpack.packb({0: 1})
    for raw in (wide_amount, str8_chain, bin_as_str, map_form, b"", b"\xc0", good + b"\x00", good[:-1],
                p.pack([*fields[:8], fields[8], 0]), p.pack([True, *fields[1:]]), p.pack([1.0, *fields[1:]]),
                b"\x99" + b"\x00" * 300):
        assert decode_trusted(raw) is None
        with pytest.raises(DecodeError):
            Transfer.decode(raw)
    assert Transfer.decode(bytearray(good)) == tx  # other byte types take the checked path, same result


def test_trusted_constructor_refuses_what_the_dataclass_refuses():
    good = make_transfer(KEYS[0], "c", bytes(20), 5, 1000, 0).to_list()
    for i, bad in [(0, 256), (0, -1), (0, True), (1, ""), (1, "has space"), (1, "x" * 33), (1, b"c"),
                   (2, bytes(31)), (2, bytearray(32)), (3, bytes(21)), (4, MAX_AMOUNT + 1), (4, -1),
                   (5, MAX_AMOUNT + 1), (6, MAX_NONCE + 1), (6, -1), (7, bytes(65)), (7, "m"), (8, bytes(63)),
                   (8, "s" * 64)]:
        fields = list(good)
        fields[i] = bad
        assert trusted_transfer(fields, b"") is None
        assert transfers_from_lists([good, fields]) is None
        with pytest.raises(PopError):
            Transfer.from_list(fields)
    assert trusted_transfer(good[:8], b"") is None and trusted_transfer(tuple(good), b"") is None
    assert trusted_transfer(good, bytes(MAX_TX_SIZE + 1)) is None
    built = trusted_transfer(good, pack(good))
    assert built == Transfer.from_list(good) and built.encode() == pack(good)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["popchain/txid", "popchain/tx-sig", "popchain/address", "popchain/merkle-leaf",
                        "popchain/merkle-node", "x"]), st.binary(max_size=600))
def test_short_message_hash_states_equal_hashlib(tag, message):
    from chain.crypto import _tag_state, tagged_hash
    for short in (True, False):
        h = _tag_state(tag, short).copy()
        h.update(struct.pack(">I", len(message)) + message)
        assert h.digest() == _tagged(tag, message) == tagged_hash(tag, message)
