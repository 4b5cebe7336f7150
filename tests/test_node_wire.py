"""Wire schemas (hypothesis: garbage → WireError only), caps, and the node's bounded policy helpers."""
from __future__ import annotations

import hashlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.address import address_of
from chain.crypto import Keypair
from chain.errors import RuleError
from chain.state import Account, LedgerParams
from chain.tx import make_transfer
from node import wire
from node.datadir import Datadir, PeerBook
from node.discovery import decode_announcement, encode_announcement
from node.errors import NodeError, WireError
from node.limits import BoundedSet, TokenBucket
from node.mempool import Mempool

H = bytes(range(32))
SAMPLES = [
    wire.Hello(1, "popchain-x", H, 5, 7, "127.0.0.1", 9444, 12345, "popchain/0.1"),
    wire.Reject("wrong chain"),
    wire.Ping(1), wire.Pong(2**64 - 1),
    wire.Inv(((wire.InvKind.TX, H), (wire.InvKind.BLOCK, H))),
    wire.GetData(((wire.InvKind.BEACON, H),)),
    wire.NotFound(()),
    wire.Object(wire.InvKind.TX, b"\x01" * 100),
    wire.Object(wire.InvKind.BLOCK, b"\x02" * 5000),
    wire.GetHeaders((H, H), bytes(32)),
    wire.Headers((b"\x03" * 200,)),
    wire.GetAddr(),
    wire.Addr((("127.0.0.1", 9444),)),
    wire.Txs((b"\x04" * 200, b"\x05" * 256)),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_roundtrip(msg):
    assert wire.decode(wire.encode(msg)) == msg


@given(st.binary(max_size=2048))
@settings(max_examples=400, deadline=None)
def test_garbage_raises_wire_error_only(data):
    try:
        wire.decode(data)
    except WireError:
        pass


@given(st.sampled_from(SAMPLES), st.integers(0, 10_000), st.integers(0, 255))
@settings(max_examples=300, deadline=None)
def test_mutated_frames_raise_wire_error_only(msg, pos, byte):
    frame = bytearray(wire.encode(msg))
    frame[pos % len(frame)] = byte
    try:
        wire.decode(bytes(frame))
    except WireError:
        pass


@given(st.sampled_from(SAMPLES), st.integers(1, 50))
@settings(max_examples=100, deadline=None)
def test_truncated_frames_raise(msg, cut):
    frame = wire.encode(msg)
    if cut >= len(frame):
        return
    with pytest.raises(WireError):
        wire.decode(frame[:-cut])


def test_oversize_per_type_is_refused_before_decoding():
    frame = bytes([wire.MsgType.PING]) + b"\x91" + b"\x00" * 100  # PING cap is 16 bytes
    with pytest.raises(WireError) as err:
        wire.decode(frame)
    assert err.value.reason == "oversize"
    with pytest.raises(WireError):
        wire.encode(wire.Object(wire.InvKind.TX, b"\x00" * 10_000))


def test_txs_frame_caps():
    full = wire.Txs(tuple(bytes([i % 256]) * 256 for i in range(wire.MAX_TXS_ITEMS)))
    assert wire.decode(wire.encode(full)) == full
    with pytest.raises(WireError):                         # one transfer too many
        wire.decode(wire.encode(wire.Txs(full.txs + (b"\x00",))))
    body = bytes([wire.MsgType.TXS]) + b"\x91\x91\xc5\x01\x01" + b"\x00" * 257   # one 257-byte "tx"
    with pytest.raises(WireError):
        wire.decode(body)


def test_unknown_type_and_empty():
    for frame in (b"", b"\xff\x90", bytes([0]) + b"\x90"):
        with pytest.raises(WireError):
            wire.decode(frame)


def test_field_ranges_checked():
    bad = bytes([wire.MsgType.INV]) + __import__("chain.encoding", fromlist=["pack"]).pack([[[9, H]]])
    with pytest.raises(WireError):
        wire.decode(bad)  # unknown inventory kind


def test_discovery_announcement_roundtrip_and_garbage():
    data = encode_announcement("c", H, "127.0.0.1", 9444, 7)
    assert decode_announcement(data) == ("c", H, "127.0.0.1", 9444, 7)
    from chain.errors import DecodeError
    with pytest.raises(DecodeError):
        decode_announcement(b"\xd1garbage")


# ---------------------------------------------------------------- policy helpers

def test_token_bucket_and_bounded_set():
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.2)  # refilled two tokens
    s: BoundedSet[int] = BoundedSet(3)
    for i in range(5):
        s.add(i)
    assert 0 not in s and 4 in s and len(s) == 3


def test_peer_book_persists_and_bans_expire(tmp_path):
    d = Datadir(tmp_path / "d").open()
    book = PeerBook()
    book.add("127.0.0.1", 1234, now=1.0)
    now = time.time()
    book.ban("127.0.0.2", until=now + 100)         # keyed by IP (node.limits.ban_key)
    book.ban("127.0.0.3", until=now - 1)           # already expired: not persisted
    d.save_peer_book(book)
    again = d.load_peer_book()
    assert "127.0.0.1:1234" in again.addrs
    assert list(again.bans) == ["127.0.0.2"]
    assert again.is_banned("127.0.0.2", now=now + 50)
    assert not again.is_banned("127.0.0.2", now=now + 150)
    with pytest.raises(NodeError):
        Datadir(tmp_path / "d").open()  # locked while the first is open
    d.close()
    Datadir(tmp_path / "d").open().close()


# ---------------------------------------------------------------- mempool

PARAMS = LedgerParams(chain_id="popchain-test", block_reward=50, min_fee=1000)


def _kp(i: int) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(b"mp%d" % i).digest())


def _tx(kp: Keypair, nonce: int, fee: int = 1000, amount: int = 5):
    return make_transfer(kp, PARAMS.chain_id, address_of(_kp(99).public), amount, fee, nonce)


def test_mempool_orders_by_fee_keeps_nonce_order():
    pool = Mempool(PARAMS)
    a, b = _kp(1), _kp(2)
    rich = Account(10**9, 0)
    pool.add(_tx(a, 0, fee=1000), rich, 0)
    pool.add(_tx(a, 1, fee=9000), rich, 0)
    pool.add(_tx(b, 0, fee=5000), rich, 0)
    picked = pool.select(10)
    assert [(t.sender, t.nonce) for t in picked] == [(b.public, 0), (a.public, 0), (a.public, 1)]


def test_mempool_rejects_gaps_and_overspend():
    pool = Mempool(PARAMS)
    a = _kp(1)
    with pytest.raises(RuleError) as err:
        pool.add(_tx(a, 1), Account(10**9, 0), 0)
    assert err.value.code == "nonce-gap"   # held as an orphan by the relay, not dropped
    pool.add(_tx(a, 0, amount=5000), Account(7000, 0), 0)
    with pytest.raises(RuleError) as err:
        pool.add(_tx(a, 1, amount=5000), Account(7000, 0), 0)
    assert err.value.code == "insufficient-funds"


def test_mempool_evicts_cheapest_tail_when_full_and_expires():
    pool = Mempool(PARAMS, max_txs=2, expiry_s=10)
    rich = Account(10**9, 0)
    cheap = _tx(_kp(1), 0, fee=1000)
    pool.add(cheap, rich, 0)
    pool.add(_tx(_kp(2), 0, fee=2000), rich, 0)
    with pytest.raises(RuleError):
        pool.add(_tx(_kp(3), 0, fee=1000), rich, 0)  # does not pay more than the cheapest
    evicted = pool.add(_tx(_kp(3), 0, fee=3000), rich, 5)
    assert evicted == [cheap.txid] and len(pool) == 2
    assert len(pool.expire(now=12)) == 1 and len(pool) == 1


def test_mempool_revalidate_after_block():
    pool = Mempool(PARAMS)
    a = _kp(1)
    txs = [_tx(a, n) for n in range(3)]
    for t in txs:
        pool.add(t, Account(10**9, 0), 0)
    dropped = pool.revalidate(lambda pub: Account(10**9, 2))  # two of them were mined
    assert set(dropped) == {txs[0].txid, txs[1].txid}
    assert pool.txids() == [txs[2].txid]


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 70000])
def test_object_frames_all_bin_sizes_roundtrip(size):
    msg = wire.Object(wire.InvKind.BLOCK, bytes(size))
    assert wire.decode(wire.encode(msg)) == msg


def test_object_frame_non_shortest_bin_is_refused():
    # bin16 header for 3 bytes: valid msgpack, not canonical
    frame = bytes([wire.MsgType.TX, 0x91, 0xC5, 0x00, 0x03]) + b"abc"
    with pytest.raises(WireError):
        wire.decode(frame)
    with pytest.raises(WireError):  # a trailing byte after the bin
        wire.decode(wire.encode(wire.Object(wire.InvKind.TX, b"abc")) + b"\x00")


@given(st.binary(max_size=64), st.sampled_from([wire.MsgType.TX, wire.MsgType.BLOCK, wire.MsgType.ENTRY]))
@settings(max_examples=300, deadline=None)
def test_object_frame_garbage_raises_wire_error_only(body, mtype):
    try:
        wire.decode(bytes([mtype]) + body)
    except WireError:
        pass


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1000, 1010), st.booleans()), max_size=80))
def test_mempool_eviction_candidate_is_the_cheapest_tail(ops):
    """The lazily cleaned tail heap picks the same victim as a scan of every sender's last tx."""
    pool = Mempool(PARAMS, max_txs=12, max_per_sender=5)
    rich = Account(10**12, 0)
    for who, fee, remove in ops:
        kp = _kp(who)
        seq = pool._by_sender.get(kp.public, {})
        if remove and seq:
            pool.remove([seq[max(seq)]])
        else:
            try:
                pool.add(_tx(kp, len(seq), fee=fee), rich, 0)
            except RuleError:
                pass
        tails = [s[max(s)] for s in pool._by_sender.values() if s]
        expected = min(tails, key=lambda t: (pool._by_id[t].tx.fee, t), default=None)
        assert pool._lowest_tail() == expected
        assert len(pool) <= 12
