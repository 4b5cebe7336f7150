"""Canonical encodings: round trips, byte flips break signatures, non-canonical and garbage bytes rejected."""
from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.address import address_of, decode_address, encode_address
from chain.block import Block, Header
from chain.crypto import Keypair, merkle_root, tagged_hash, verify_many, verify_sig
from chain.encoding import pack, unpack
from chain.errors import DecodeError, PopError
from chain.tx import MAX_AMOUNT, MAX_NONCE, Transfer, make_transfer
from tests.conftest import keypair

KEYS = [keypair(i) for i in range(4)]
chain_ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=32)
b32 = st.binary(min_size=32, max_size=32)


@st.composite
def transfers(draw) -> Transfer:
    return make_transfer(draw(st.sampled_from(KEYS)), draw(chain_ids), draw(st.binary(min_size=20, max_size=20)),
                         draw(st.integers(0, MAX_AMOUNT)), draw(st.integers(0, MAX_AMOUNT)),
                         draw(st.integers(0, MAX_NONCE)), draw(st.binary(max_size=64)))


@st.composite
def headers(draw) -> Header:
    kp = draw(st.sampled_from(KEYS))
    h = Header(1, draw(chain_ids), draw(st.integers(0, 2**32 - 1)), draw(b32), draw(st.integers(0, 2**32 - 1)),
               draw(st.integers(0, 2**40)), kp.public, draw(b32), draw(b32), draw(b32), draw(b32))
    return h.sign(kp)


@settings(max_examples=60, deadline=None)
@given(transfers())
def test_transfer_round_trip_and_signature(tx):
    data = tx.encode()
    assert len(data) <= 256
    back = Transfer.decode(data)
    assert back == tx and back.encode() == data and back.txid == tx.txid
    assert back.verify_signature()


@settings(max_examples=60, deadline=None)
@given(transfers(), st.data())
def test_any_byte_flip_breaks_a_signed_tx(tx, data):
    raw = bytearray(tx.encode())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        flipped = Transfer.decode(bytes(raw))
    except DecodeError:
        return
    assert not flipped.verify_signature()


@settings(max_examples=60, deadline=None)
@given(headers(), st.data())
def test_header_round_trip_and_byte_flip(header, data):
    raw = header.encode()
    assert Header.decode(raw) == header and header.verify_signature()
    flipped = bytearray(raw)
    i = data.draw(st.integers(0, len(raw) - 1))
    flipped[i] ^= data.draw(st.integers(1, 255))
    try:
        other = Header.decode(bytes(flipped))
    except DecodeError:
        return
    assert not other.verify_signature()


@settings(max_examples=30, deadline=None)
@given(headers(), st.lists(transfers(), max_size=5), st.binary(max_size=300), st.binary(max_size=300))
def test_block_round_trip(header, txs, model, payload):
    block = Block(header, tuple(txs), model, payload)
    data = block.encode()
    back = Block.decode(data)
    assert back == block and back.encode() == data
    assert [t.txid for t in back.txs] == [t.txid for t in txs]


def test_non_canonical_rejected():
    tx = make_transfer(KEYS[0], "c", bytes(20), 5, 1000, 0)
    fields = tx.to_list()
    # amount 5 as a uint32 instead of a positive fixint: same value, longer bytes
    p = msgpack.Packer(use_bin_type=True)
    parts = [p.pack(f) for f in fields]
    parts[4] = b"\xce" + (5).to_bytes(4, "big")
    raw = b"\x99" + b"".join(parts)
    assert msgpack.unpackb(raw) == msgpack.unpackb(tx.encode())
    with pytest.raises(DecodeError, match="non-canonical"):
        Transfer.decode(raw)
    # bytes as str, a map, a float, trailing bytes: all rejected
    with pytest.raises(DecodeError):
        Transfer.decode(msgpack.packb(fields, use_bin_type=False))
    for bad in ({"a": 1}, 1.5, True, None):
        with pytest.raises(DecodeError):
            unpack(msgpack.packb(bad), max_size=100)
        with pytest.raises(DecodeError):
            pack([bad])
    with pytest.raises(DecodeError):
        Transfer.decode(tx.encode() + b"\x00")
    with pytest.raises(DecodeError):
        unpack(b"\x91\x01", max_size=1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_raises_typed_errors_only(data):
    for decoder in (Transfer.decode, Header.decode, Block.decode):
        try:
            decoder(data)
        except PopError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=20, max_size=20), st.data())
def test_address_round_trip_and_typo(account, data):
    text = encode_address(account)
    assert text.startswith("pop1") and decode_address(text) == account
    assert decode_address(text.upper()) == account
    i = data.draw(st.integers(4, len(text) - 1))
    c = data.draw(st.sampled_from([c for c in "qpzry9x8gf2tvdw0s3jn54khce6mua7l" if c != text[i]]))
    with pytest.raises(DecodeError):
        decode_address(text[:i] + c + text[i + 1:])


def test_bad_addresses_are_clear_errors():
    for bad in ("", "pop1", "bc1qqqqqq", "pop1" + "b" * 40, "Pop1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", "x" * 200):
        with pytest.raises(DecodeError):
            decode_address(bad)


def test_hashing_and_merkle():
    assert tagged_hash("a", b"bc") != tagged_hash("a", b"b", b"c")  # length prefixes keep parts apart
    assert tagged_hash("a", b"x") != tagged_hash("b", b"x")
    leaves = [bytes([i]) for i in range(5)]
    assert merkle_root(leaves) != merkle_root(leaves[:4])
    assert merkle_root(leaves[:3]) != merkle_root(leaves[:3] + leaves[2:3])  # no odd-duplication mutation
    assert len(merkle_root([])) == 32


def test_verify_many_matches_single():
    kp = Keypair.generate()
    items = [(kp.public, bytes([i]) * 32, kp.sign(bytes([i]) * 32)) for i in range(200)]
    items[77] = (kp.public, b"x" * 32, items[77][2])
    items[150] = (b"short", b"", b"")
    results = verify_many(items)
    assert results == [verify_sig(*it) for it in items]
    assert results.count(False) == 2 and not results[77] and not results[150]


def test_out_of_range_fields_rejected():
    tx = make_transfer(KEYS[0], "c", bytes(20), 5, 1000, 0)
    for field, value in (("amount", MAX_AMOUNT + 1), ("nonce", -1), ("memo", b"m" * 65), ("recipient", b"x"),
                         ("chain_id", "has space"), ("fee", True)):
        with pytest.raises(DecodeError):
            dataclasses.replace(tx, **{field: value})
    assert address_of(KEYS[0].public) != address_of(KEYS[1].public)
