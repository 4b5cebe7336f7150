"""Peer wire format (PROTOCOL §4.1): framing and per-type schemas only — no policy, no consensus.

A frame is one websocket binary message: ``u8 type || canonical msgpack array`` (chain.encoding). The byte cap
is checked per type *before* decoding, then every field's type, length and range. Anything else raises
WireError, never another exception. Consensus objects (tx, entry, anchor notice, beacon, block) travel as
opaque bytes inside their frame: their own decoders (chain/, consensus/) run afterwards in the node.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from chain.block import MAX_BLOCK_SIZE, MAX_HEADER_SIZE
from chain.encoding import (
    check_bytes,
    check_bytes_max,
    check_int,
    check_list,
    check_list_max,
    check_str,
    pack,
    pack_trusted,
    unpack,
)
from chain.errors import DecodeError
from chain.tx import MAX_TX_SIZE
from consensus.protocol.committee import MAX_COMMITTEE_SIZE
from consensus.protocol.messages import MAX_BEACON_SIZE, MAX_ENTRY_SIZE
from consensus.protocol.messages import MAX_NOTICE_SIZE as MAX_ANCHOR_SIZE
from consensus.protocol.release import PARTIAL_SIZE
from consensus.protocol.tasks import MAX_TASK_MSG_SIZE
from node.errors import WireError

# 2: TXS batches; 3: TASK, GETROUNDS/ROUNDS and COMMITTEE frames and version-2 notices/beacons; 4: entries v2 and
# statements v3 (issue 18: identity, attribution, bonds), GETBLOB/BLOB (shard blobs, §4.9) and LEAK (§3.14). An
# older peer is refused at the handshake (not banned): it would take the new frames for garbage and penalise us.
PROTOCOL_VERSION = 4
MAX_INV_ITEMS = 1000
MAX_LEAK_SIZE = PARTIAL_SIZE + 32
MAX_TXS_ITEMS = 1000       # transfers in one TXS frame (the answer to a GETDATA of ≤ 1000 ids)
MAX_LOCATOR = 64
MAX_HEADERS = 500
MAX_ADDRS = 256
MAX_REASON = 200
MAX_HOST = 64
MAX_AGENT = 64
U64 = 2**64 - 1


class InvKind(IntEnum):
    TX = 1
    ENTRY = 2
    ANCHOR = 3
    BEACON = 4
    BLOCK = 5
    TASK = 6        # a task announcement or extension (consensus.protocol.tasks, PROTOCOL §3.13)


class MsgType(IntEnum):
    HELLO = 1
    REJECT = 2
    PING = 3
    PONG = 4
    INV = 5
    GETDATA = 6
    NOTFOUND = 7
    TX = 8          # object frames: 7 + InvKind
    ENTRY = 9
    ANCHOR = 10
    BEACON = 11
    BLOCK = 12
    GETHEADERS = 13
    HEADERS = 14
    GETADDR = 15
    ADDR = 16
    TXS = 17        # many transfers in one frame: GETDATA for txs is answered with these
    TASK = 18       # object frame of InvKind.TASK
    GETROUNDS = 19  # [first round, count]: ask for the notices/beacons of those rounds (sync, §4.4)
    ROUNDS = 20     # [[kind, bytes]…]: the notices/beacons asked for (void rounds included)
    COMMITTEE = 21  # a keyholder-committee message (consensus.protocol.committee), flooded by every node
    GETBLOB = 22    # [blob reference (40), offset, length ≤ MAX_BLOB_CHUNK]: a byte range of a shard blob (§4.9)
    BLOB = 23       # [blob id (32), offset, bytes]: the range asked for; empty bytes = "I do not have it"
    LEAK = 24       # a member's share posted before its shard is revealed (consensus.protocol.release.Leak)


def object_type(kind: InvKind) -> MsgType:
    """The frame type carrying an object of ``kind``."""
    return MsgType.TASK if kind == InvKind.TASK else MsgType(7 + int(kind))


def object_kind(mtype: MsgType) -> InvKind:
    return InvKind.TASK if mtype == MsgType.TASK else InvKind(int(mtype) - 7)


def is_object_type(mtype: MsgType) -> bool:
    return MsgType.TX <= mtype <= MsgType.BLOCK or mtype == MsgType.TASK


OBJECT_CAPS: dict[InvKind, int] = {
    InvKind.TX: MAX_TX_SIZE,
    InvKind.ENTRY: MAX_ENTRY_SIZE,
    InvKind.ANCHOR: MAX_ANCHOR_SIZE,
    InvKind.BEACON: MAX_BEACON_SIZE,
    InvKind.BLOCK: MAX_BLOCK_SIZE,
    InvKind.TASK: MAX_TASK_MSG_SIZE,
}
MAX_ROUNDS_ITEMS = 64      # statements in one ROUNDS frame (2 per round)
MAX_BLOB_CHUNK = 256 << 10  # bytes of a blob one GETBLOB may ask for / one BLOB may carry
_ENVELOPE = 16  # type byte + array header + bin header, generously
FRAME_CAPS: dict[MsgType, int] = {
    MsgType.HELLO: 512,
    MsgType.REJECT: 300,
    MsgType.PING: 16,
    MsgType.PONG: 16,
    MsgType.INV: 8 + MAX_INV_ITEMS * 40,
    MsgType.GETDATA: 8 + MAX_INV_ITEMS * 40,
    MsgType.NOTFOUND: 8 + MAX_INV_ITEMS * 40,
    **{object_type(k): cap + _ENVELOPE for k, cap in OBJECT_CAPS.items()},
    MsgType.GETROUNDS: 24,
    MsgType.ROUNDS: 8 + MAX_ROUNDS_ITEMS * (max(MAX_ANCHOR_SIZE, MAX_BEACON_SIZE) + 8),
    MsgType.GETHEADERS: 8 + (MAX_LOCATOR + 1) * 35,
    MsgType.HEADERS: 8 + MAX_HEADERS * (MAX_HEADER_SIZE + 3),
    MsgType.GETADDR: 8,
    MsgType.ADDR: 8 + MAX_ADDRS * (MAX_HOST + 8),
    MsgType.TXS: 8 + MAX_TXS_ITEMS * (MAX_TX_SIZE + 3),
    MsgType.COMMITTEE: MAX_COMMITTEE_SIZE + _ENVELOPE,
    MsgType.GETBLOB: 64,
    MsgType.BLOB: MAX_BLOB_CHUNK + 64,
    MsgType.LEAK: MAX_LEAK_SIZE + _ENVELOPE,
}
MAX_FRAME = max(FRAME_CAPS.values())


@dataclass(frozen=True)
class Hello:
    version: int
    chain_id: str
    genesis_hash: bytes
    best_height: int
    best_round: int
    listen_host: str      # "" = not listening
    listen_port: int      # 0 = not listening
    nonce: int            # random per node process: detects self-connections
    agent: str


@dataclass(frozen=True)
class Reject:
    reason: str


@dataclass(frozen=True)
class Ping:
    nonce: int


@dataclass(frozen=True)
class Pong:
    nonce: int


@dataclass(frozen=True)
class Inv:
    items: tuple[tuple[InvKind, bytes], ...]


@dataclass(frozen=True)
class GetData:
    items: tuple[tuple[InvKind, bytes], ...]


@dataclass(frozen=True)
class NotFound:
    items: tuple[tuple[InvKind, bytes], ...]


@dataclass(frozen=True)
class Object:
    kind: InvKind
    data: bytes


@dataclass(frozen=True)
class Txs:
    txs: tuple[bytes, ...]       # encoded transfers (their own decoder runs in the node)


@dataclass(frozen=True)
class Committee:
    data: bytes                  # an encoded committee message (its own decoder runs in the node)


@dataclass(frozen=True)
class Leak:
    data: bytes                  # an encoded early share (consensus.protocol.release.Leak), flooded like evidence


@dataclass(frozen=True)
class GetHeaders:
    locator: tuple[bytes, ...]   # newest first, like Core's block locator
    stop: bytes                  # 32 zero bytes = as many as allowed


@dataclass(frozen=True)
class Headers:
    headers: tuple[bytes, ...]   # encoded chain.block.Header, ascending height


@dataclass(frozen=True)
class GetAddr:
    pass


@dataclass(frozen=True)
class Addr:
    addrs: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class GetRounds:
    first: int                   # rounds first … first + count − 1
    count: int


@dataclass(frozen=True)
class Rounds:
    items: tuple[tuple[InvKind, bytes], ...]   # (ANCHOR | BEACON, encoded statement), ascending round


@dataclass(frozen=True)
class GetBlob:
    ref: bytes                   # the 40-byte blob reference (ml.blobs): id ‖ u64be size
    offset: int
    length: int                  # 1 … MAX_BLOB_CHUNK


@dataclass(frozen=True)
class Blob:
    blob_id: bytes               # 32 bytes
    offset: int
    data: bytes                  # ≤ MAX_BLOB_CHUNK; empty = not found


Message = (Hello | Reject | Ping | Pong | Inv | GetData | NotFound | Object | Txs | GetHeaders | Headers | GetAddr
           | Addr | GetRounds | Rounds | Committee | Leak | GetBlob | Blob)


# ---------------------------------------------------------------- encode


def _inv_fields(items: tuple[tuple[InvKind, bytes], ...]) -> list[Any]:
    return [[int(k), h] for k, h in items]


def _fields(msg: Message) -> tuple[MsgType, list[Any]]:
    match msg:
        case Hello():
            return MsgType.HELLO, [msg.version, msg.chain_id, msg.genesis_hash, msg.best_height, msg.best_round,
                                   msg.listen_host, msg.listen_port, msg.nonce, msg.agent]
        case Reject():
            return MsgType.REJECT, [msg.reason[:MAX_REASON]]
        case Ping():
            return MsgType.PING, [msg.nonce]
        case Pong():
            return MsgType.PONG, [msg.nonce]
        case Inv():
            return MsgType.INV, [_inv_fields(msg.items)]
        case GetData():
            return MsgType.GETDATA, [_inv_fields(msg.items)]
        case NotFound():
            return MsgType.NOTFOUND, [_inv_fields(msg.items)]
        case Object():
            return object_type(msg.kind), [msg.data]
        case GetHeaders():
            return MsgType.GETHEADERS, [list(msg.locator), msg.stop]
        case Headers():
            return MsgType.HEADERS, [list(msg.headers)]
        case GetAddr():
            return MsgType.GETADDR, []
        case Addr():
            return MsgType.ADDR, [[[h, p] for h, p in msg.addrs]]
        case Txs():
            return MsgType.TXS, [list(msg.txs)]
        case GetRounds():
            return MsgType.GETROUNDS, [msg.first, msg.count]
        case Rounds():
            return MsgType.ROUNDS, [[int(k), d] for k, d in msg.items]
        case Committee():
            return MsgType.COMMITTEE, [msg.data]
        case GetBlob():
            return MsgType.GETBLOB, [msg.ref, msg.offset, msg.length]
        case Blob():
            return MsgType.BLOB, [msg.blob_id, msg.offset, msg.data]
        case Leak():
            return MsgType.LEAK, [msg.data]
    raise TypeError(f"not a wire message: {type(msg).__name__}")


_INV_ITEM_HEADS = {k: bytes([0x92, int(k), 0xC4, 0x20]) for k in InvKind}


def _array_head(n: int) -> bytes:
    """msgpack's shortest array header for ``n`` < 2**16 items."""
    return bytes([0x90 + n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")


def _fast_encode(msg: Message) -> tuple[MsgType, bytes] | None:
    """(type, frame) of an INV/GETDATA/NOTFOUND or TXS built without the generic type walk — the same bytes as
    the checked path (tests/test_node_wire_fast.py compares them) — or None when a field is not plainly
    well-formed (the checked path then raises the precise error). These are the frames a relaying node sends
    for every transfer."""
    if isinstance(msg, Txs):
        txs = msg.txs
        if type(txs) is not tuple or not all(type(t) is bytes and len(t) <= MAX_TX_SIZE for t in txs):
            return None
        return MsgType.TXS, bytes([MsgType.TXS, 0x91]) + pack_trusted(list(txs))
    if isinstance(msg, Inv):
        mtype = MsgType.INV
    elif isinstance(msg, GetData):
        mtype = MsgType.GETDATA
    elif isinstance(msg, NotFound):
        mtype = MsgType.NOTFOUND
    else:
        return None
    items, heads = msg.items, _INV_ITEM_HEADS
    try:
        if not all(type(h) is bytes and len(h) == 32 for _, h in items):
            return None
        body = b"".join([heads[k] + h for k, h in items])
    except (KeyError, TypeError, ValueError):
        return None
    return mtype, bytes([mtype, 0x91]) + _array_head(len(items)) + body


def encode(msg: Message) -> bytes:
    """Frame bytes of ``msg``. Raises WireError if it would exceed its type's cap (a local bug or a huge object)."""
    fast = _fast_encode(msg)
    if fast is not None:
        mtype, frame = fast
        if len(frame) > FRAME_CAPS[mtype]:
            raise WireError("oversize", f"{mtype.name} frame of {len(frame)} bytes exceeds its cap {FRAME_CAPS[mtype]}")
        return frame
    mtype, fields = _fields(msg)
    try:
        frame = bytes([mtype]) + pack(fields)
    except DecodeError as exc:
        raise WireError("bad-field", f"{mtype.name}: {exc}") from None
    if len(frame) > FRAME_CAPS[mtype]:
        raise WireError("oversize", f"{mtype.name} frame of {len(frame)} bytes exceeds its cap {FRAME_CAPS[mtype]}")
    return frame


# ---------------------------------------------------------------- decode


_KINDS = {int(k): k for k in InvKind}


def _inv_items(value: Any, name: str) -> tuple[tuple[InvKind, bytes], ...]:
    raw = check_list_max(value, MAX_INV_ITEMS, name)
    out = []
    for item in raw:
        kind, h = check_list(item, 2, f"{name} item")
        check_int(kind, 1, len(InvKind), f"{name} kind")
        out.append((_KINDS[kind], check_bytes(h, 32, f"{name} hash")))
    return tuple(out)


# An INV/GETDATA/NOTFOUND body in its one canonical form: [[[kind, bin8(32)], ...]] — checked and sliced in C
# (floods of these frames are what a hostile peer sends most). Anything else takes the general path, which
# applies the same rules and names the field at fault.
_INV_ITEMS_RE = re.compile(rb"(?:\x92[\x01-\x%02x]\xc4\x20.{32})*" % len(InvKind), re.DOTALL)
_INV_ITEM = 36
_INVENTORY = frozenset({MsgType.INV, MsgType.GETDATA, MsgType.NOTFOUND})


def _fast_inventory(mtype: MsgType, frame: bytes) -> Message | None:
    """The decoded INV/GETDATA/NOTFOUND if ``frame`` has the canonical layout, else None (the general decoder
    then rules on it)."""
    if len(frame) < 3 or frame[1] != 0x91:
        return None
    tag = frame[2]
    if 0x90 <= tag <= 0x9F:
        n, start = tag - 0x90, 3
    elif tag == 0xDC and len(frame) >= 5:
        n, start = int.from_bytes(frame[3:5], "big"), 5
        if n < 16:
            return None   # not the shortest form: the general decoder refuses it
    else:
        return None
    if n > MAX_INV_ITEMS or len(frame) != start + n * _INV_ITEM or not _INV_ITEMS_RE.fullmatch(frame, start):
        return None
    kinds = _KINDS
    items = tuple((kinds[frame[i + 1]], frame[i + 4:i + 36]) for i in range(start, len(frame), _INV_ITEM))
    return Inv(items) if mtype == MsgType.INV else GetData(items) if mtype == MsgType.GETDATA else NotFound(items)


def _fast_txs(body: bytes, cap: int) -> Txs | None:
    """A TXS body in its plain form — canonical [[bin, ...]] of at most MAX_TXS_ITEMS transfers of at most
    MAX_TX_SIZE bytes — decoded without the generic type walk (the list is checked in one pass here); None for
    anything else, which the general decoder then rules on with the precise error."""
    try:
        f = unpack(body, max_size=cap, typed=True)
    except DecodeError:
        return None
    if type(f) is not list or len(f) != 1 or type(f[0]) is not list or len(f[0]) > MAX_TXS_ITEMS:
        return None
    raw = f[0]
    if not all(type(t) is bytes and len(t) <= MAX_TX_SIZE for t in raw):
        return None
    return Txs(tuple(raw))


def _decode_body(mtype: MsgType, f: list[Any]) -> Message:
    match mtype:
        case MsgType.HELLO:
            check_list(f, 9, "hello")
            return Hello(check_int(f[0], 0, 2**16, "version"), check_str(f[1], 32, "chain_id"),
                         check_bytes(f[2], 32, "genesis_hash"), check_int(f[3], 0, U64, "best_height"),
                         check_int(f[4], 0, U64, "best_round"), check_str(f[5], MAX_HOST, "listen_host"),
                         check_int(f[6], 0, 65535, "listen_port"), check_int(f[7], 0, U64, "nonce"),
                         check_str(f[8], MAX_AGENT, "agent"))
        case MsgType.REJECT:
            return Reject(check_str(check_list(f, 1, "reject")[0], MAX_REASON, "reason"))
        case MsgType.PING:
            return Ping(check_int(check_list(f, 1, "ping")[0], 0, U64, "nonce"))
        case MsgType.PONG:
            return Pong(check_int(check_list(f, 1, "pong")[0], 0, U64, "nonce"))
        case MsgType.INV:
            return Inv(_inv_items(check_list(f, 1, "inv")[0], "inv"))
        case MsgType.GETDATA:
            return GetData(_inv_items(check_list(f, 1, "getdata")[0], "getdata"))
        case MsgType.NOTFOUND:
            return NotFound(_inv_items(check_list(f, 1, "notfound")[0], "notfound"))
        case MsgType.GETHEADERS:
            check_list(f, 2, "getheaders")
            locator = check_list_max(f[0], MAX_LOCATOR, "locator")
            return GetHeaders(tuple(check_bytes(h, 32, "locator hash") for h in locator),
                              check_bytes(f[1], 32, "stop"))
        case MsgType.HEADERS:
            raw = check_list_max(check_list(f, 1, "headers")[0], MAX_HEADERS, "headers")
            return Headers(tuple(check_bytes_max(h, MAX_HEADER_SIZE, "header") for h in raw))
        case MsgType.GETADDR:
            check_list(f, 0, "getaddr")
            return GetAddr()
        case MsgType.ADDR:
            raw = check_list_max(check_list(f, 1, "addr")[0], MAX_ADDRS, "addrs")
            addrs = []
            for item in raw:
                host, port = check_list(item, 2, "addr item")
                addrs.append((check_str(host, MAX_HOST, "addr host"), check_int(port, 1, 65535, "addr port")))
            return Addr(tuple(addrs))
        case MsgType.TXS:
            raw = check_list_max(check_list(f, 1, "txs")[0], MAX_TXS_ITEMS, "txs")
            return Txs(tuple(check_bytes_max(t, MAX_TX_SIZE, "tx") for t in raw))
        case MsgType.GETROUNDS:
            check_list(f, 2, "getrounds")
            return GetRounds(check_int(f[0], 1, 2**32 - 1, "first"), check_int(f[1], 1, MAX_ROUNDS_ITEMS // 2, "count"))
        case MsgType.ROUNDS:
            items = []
            for item in check_list_max(f, MAX_ROUNDS_ITEMS, "rounds"):
                k, d = check_list(item, 2, "rounds item")
                check_int(k, int(InvKind.ANCHOR), int(InvKind.BEACON), "rounds kind")
                items.append((InvKind(k), check_bytes_max(d, OBJECT_CAPS[InvKind(k)], "rounds object")))
            return Rounds(tuple(items))
        case MsgType.COMMITTEE:
            return Committee(check_bytes_max(check_list(f, 1, "committee")[0], MAX_COMMITTEE_SIZE, "committee"))
        case MsgType.GETBLOB:
            check_list(f, 3, "getblob")
            return GetBlob(check_bytes(f[0], 40, "blob ref"), check_int(f[1], 0, U64, "offset"),
                           check_int(f[2], 1, MAX_BLOB_CHUNK, "length"))
        case MsgType.BLOB:
            check_list(f, 3, "blob")
            return Blob(check_bytes(f[0], 32, "blob id"), check_int(f[1], 0, U64, "offset"),
                        check_bytes_max(f[2], MAX_BLOB_CHUNK, "blob data"))
        case MsgType.LEAK:
            return Leak(check_bytes_max(check_list(f, 1, "leak")[0], MAX_LEAK_SIZE, "leak"))
    kind = object_kind(mtype)
    data = check_bytes_max(check_list(f, 1, kind.name.lower())[0], OBJECT_CAPS[kind], "object")
    return Object(kind, data)


def frame_type(frame: bytes) -> MsgType:
    """The type of a frame (for rate limiting before the full decode). Raises WireError."""
    if not isinstance(frame, (bytes, bytearray)) or not frame:
        raise WireError("malformed", "empty or non-binary frame")
    if frame[0] not in MsgType._value2member_map_:
        raise WireError("unknown-type", f"unknown message type {frame[0]}")
    return MsgType(frame[0])


def _decode_object(mtype: MsgType, frame: bytes) -> Object:
    """Object frames are ``[bin]``: parsed directly (no re-pack of a possibly large block just to check that
    the array around it is canonical); the same shortest-form rules as chain.encoding apply."""
    kind = object_kind(mtype)
    if len(frame) < 3 or frame[1] != 0x91:
        raise WireError("bad-field", f"{mtype.name}: body must be an array of one bin")
    tag = frame[2]
    if tag == 0xC4:
        size, offset, shortest = (frame[3] if len(frame) > 3 else -1), 4, 0
    elif tag == 0xC5:
        size, offset, shortest = int.from_bytes(frame[3:5], "big"), 5, 1 << 8
    elif tag == 0xC6:
        size, offset, shortest = int.from_bytes(frame[3:7], "big"), 7, 1 << 16
    else:
        raise WireError("bad-field", f"{mtype.name}: object must be msgpack bin")
    if size < shortest or len(frame) < offset or len(frame) - offset != size:
        raise WireError("bad-field", f"{mtype.name}: bin length does not match the frame (or is not shortest)")
    if size > OBJECT_CAPS[kind]:
        raise WireError("oversize", f"{mtype.name}: object of {size} bytes exceeds its cap {OBJECT_CAPS[kind]}")
    return Object(kind, bytes(frame[offset:]))


def decode(frame: bytes) -> Message:
    """Decode one frame. Raises WireError only (reason: malformed, unknown-type, oversize, bad-field)."""
    mtype = frame_type(frame)
    cap = FRAME_CAPS[mtype]
    if len(frame) > cap:
        raise WireError("oversize", f"{mtype.name} frame of {len(frame)} bytes exceeds its cap {cap}")
    if is_object_type(mtype):
        return _decode_object(mtype, frame)
    if mtype in _INVENTORY:
        fast = _fast_inventory(mtype, bytes(frame))
        if fast is not None:
            return fast
    elif mtype == MsgType.TXS:
        txs = _fast_txs(bytes(frame[1:]), cap)
        if txs is not None:
            return txs
    try:
        fields = unpack(bytes(frame[1:]), max_size=cap)
        if not isinstance(fields, list):
            raise DecodeError("frame body must be an array")
        return _decode_body(mtype, fields)
    except DecodeError as exc:
        raise WireError("bad-field", f"{mtype.name}: {exc}") from None
    except (ValueError, TypeError) as exc:  # defensive: a checker we did not foresee
        raise WireError("bad-field", f"{mtype.name}: {exc}") from None
