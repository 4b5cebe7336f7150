"""Protocol messages of a round (PROTOCOL §3.3–3.5): Entry, AnchorNotice, Beacon, RoundPayload.

Each is a frozen dataclass with a canonical encoding through chain.encoding (positional msgpack arrays), a
byte cap, a decoder that checks every field and raises chain.errors.DecodeError, and (where signed) a sighash
= H(tag, encoding of the unsigned fields). Signature *validity against genesis keyholders* is checked here
(``verify_keyholder_sigs``); which round/anchor is acceptable is the engine's business.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from chain.crypto import Keypair, tagged_hash, verify_sig
from chain.encoding import check_bytes, check_int, check_list, check_list_max, pack_trusted, unpack
from chain.errors import DecodeError
from chain.tx import check_chain_id

MESSAGE_VERSION = 1
MAX_ROUND = 2**32 - 1
MAX_HEIGHT = 2**32 - 1
MAX_TIME_MS = 2**50
MAX_KEYHOLDERS = 16          # signatures on a notice/beacon; genesis may list at most this many keyholders
MAX_BEACON_ENTRIES = 256     # encoding cap; the consensus limit is genesis max_entries (<= this)
SHARD_KEY_SIZE = 32
MAX_SCORE = 2**32 - 1        # b and c count shard rows
MAX_Z_MILLI = 100_000

MAX_ENTRY_SIZE = 256
MAX_NOTICE_SIZE = 160 + MAX_KEYHOLDERS * 100
MAX_BEACON_SIZE = 200 + MAX_BEACON_ENTRIES * 34 + MAX_KEYHOLDERS * 100
MAX_PAYLOAD_SIZE = MAX_BEACON_SIZE + 64

ENTRY_TAG = "popchain/entry"
ANCHOR_TAG = "popchain/anchor"
BEACON_TAG = "popchain/beacon"

Signatures = tuple[tuple[bytes, bytes], ...]


def _check_version(value: Any, name: str) -> int:
    return check_int(value, MESSAGE_VERSION, MESSAGE_VERSION, name)


def _check_signatures(value: Any, name: str) -> Signatures:
    items = check_list_max(value, MAX_KEYHOLDERS, name)
    out = []
    for i, item in enumerate(items):
        pair = check_list(item, 2, f"{name}[{i}]")
        out.append((check_bytes(pair[0], 32, f"{name}[{i}].pubkey"), check_bytes(pair[1], 64, f"{name}[{i}].sig")))
    keys = [p for p, _ in out]
    if keys != sorted(set(keys)):
        raise DecodeError(f"{name}: signer keys must be sorted ascending and unique")
    return tuple(out)


def _sign_all(keypairs: Sequence[Keypair], msg: bytes) -> Signatures:
    return tuple(sorted((kp.public, kp.sign(msg)) for kp in {kp.public: kp for kp in keypairs}.values()))


def verify_keyholder_sigs(signatures: Signatures, msg: bytes, keyholders: Sequence[bytes], threshold: int) -> bool:
    """True iff at least ``threshold`` distinct genesis keyholders signed ``msg`` (unknown signers ignored)."""
    allowed = set(keyholders)
    good = {pub for pub, sig in signatures if pub in allowed and verify_sig(pub, msg, sig)}
    return len(good) >= threshold >= 1


# ---------------------------------------------------------------- Entry


@dataclass(frozen=True)
class Entry:
    """A miner's sealed bid for round ``round``: only the header hash of its already-built block."""
    version: int
    chain_id: str
    round: int
    parent_hash: bytes
    header_hash: bytes
    miner: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_version(self.version, "entry.version")
        check_chain_id(self.chain_id, "entry.chain_id")
        check_int(self.round, 1, MAX_ROUND, "entry.round")
        check_bytes(self.parent_hash, 32, "entry.parent_hash")
        check_bytes(self.header_hash, 32, "entry.header_hash")
        check_bytes(self.miner, 32, "entry.miner")
        check_bytes(self.signature, 64, "entry.signature")

    def unsigned_fields(self) -> list[Any]:
        return [self.version, self.chain_id, self.round, self.parent_hash, self.header_hash, self.miner]

    @cached_property
    def sighash(self) -> bytes:
        return tagged_hash(ENTRY_TAG, pack_trusted(self.unsigned_fields()))

    def verify_signature(self) -> bool:
        return verify_sig(self.miner, self.sighash, self.signature)

    def encode(self) -> bytes:
        return pack_trusted([*self.unsigned_fields(), self.signature])

    @classmethod
    def decode(cls, data: bytes) -> "Entry":
        return cls(*check_list(unpack(data, max_size=MAX_ENTRY_SIZE), 7, "entry"))


def make_entry(keypair: Keypair, chain_id: str, round: int, parent_hash: bytes, header_hash: bytes) -> Entry:
    unsigned = Entry(MESSAGE_VERSION, chain_id, round, parent_hash, header_hash, keypair.public, bytes(64))
    return Entry(MESSAGE_VERSION, chain_id, round, parent_hash, header_hash, keypair.public,
                 keypair.sign(unsigned.sighash))


# ---------------------------------------------------------------- AnchorNotice


@dataclass(frozen=True)
class AnchorNotice:
    """Keyholder's signed announcement: round ``round`` is open for entries on ``anchor_hash`` until
    ``entry_deadline_ms`` (keyholder clock, unix milliseconds; informational)."""
    version: int
    chain_id: str
    round: int
    anchor_hash: bytes
    anchor_height: int
    entry_deadline_ms: int
    signatures: Signatures

    def __post_init__(self) -> None:
        _check_version(self.version, "notice.version")
        check_chain_id(self.chain_id, "notice.chain_id")
        check_int(self.round, 1, MAX_ROUND, "notice.round")
        check_bytes(self.anchor_hash, 32, "notice.anchor_hash")
        check_int(self.anchor_height, 0, MAX_HEIGHT, "notice.anchor_height")
        check_int(self.entry_deadline_ms, 0, MAX_TIME_MS, "notice.entry_deadline_ms")

    def unsigned_fields(self) -> list[Any]:
        return [self.version, self.chain_id, self.round, self.anchor_hash, self.anchor_height,
                self.entry_deadline_ms]

    @cached_property
    def sighash(self) -> bytes:
        return tagged_hash(ANCHOR_TAG, pack_trusted(self.unsigned_fields()))

    def verify(self, keyholders: Sequence[bytes], threshold: int) -> bool:
        return verify_keyholder_sigs(self.signatures, self.sighash, keyholders, threshold)

    def encode(self) -> bytes:
        return pack_trusted([*self.unsigned_fields(), [list(s) for s in self.signatures]])

    @classmethod
    def decode(cls, data: bytes) -> "AnchorNotice":
        f = check_list(unpack(data, max_size=MAX_NOTICE_SIZE), 7, "notice")
        return cls(f[0], f[1], f[2], f[3], f[4], f[5], _check_signatures(f[6], "notice.signatures"))


def make_anchor_notice(keypairs: Sequence[Keypair], chain_id: str, round: int, anchor_hash: bytes,
                       anchor_height: int, entry_deadline_ms: int) -> AnchorNotice:
    unsigned = AnchorNotice(MESSAGE_VERSION, chain_id, round, anchor_hash, anchor_height, entry_deadline_ms, ())
    return AnchorNotice(MESSAGE_VERSION, chain_id, round, anchor_hash, anchor_height, entry_deadline_ms,
                        _sign_all(keypairs, unsigned.sighash))


# ---------------------------------------------------------------- Beacon


@dataclass(frozen=True)
class Beacon:
    """Round ``round``'s reveal: the anchor, the accepted entries' header hashes and shard key r."""
    version: int
    chain_id: str
    round: int
    anchor_hash: bytes
    entries: tuple[bytes, ...]
    shard_key: bytes
    signatures: Signatures

    def __post_init__(self) -> None:
        _check_version(self.version, "beacon.version")
        check_chain_id(self.chain_id, "beacon.chain_id")
        check_int(self.round, 1, MAX_ROUND, "beacon.round")
        check_bytes(self.anchor_hash, 32, "beacon.anchor_hash")
        if not isinstance(self.entries, tuple) or len(self.entries) > MAX_BEACON_ENTRIES:
            raise DecodeError(f"beacon.entries: expected a tuple of at most {MAX_BEACON_ENTRIES} hashes")
        for i, h in enumerate(self.entries):
            check_bytes(h, 32, f"beacon.entries[{i}]")
        if list(self.entries) != sorted(set(self.entries)):
            raise DecodeError("beacon.entries: must be sorted ascending and unique")
        check_bytes(self.shard_key, SHARD_KEY_SIZE, "beacon.shard_key")

    def unsigned_fields(self) -> list[Any]:
        return [self.version, self.chain_id, self.round, self.anchor_hash, list(self.entries), self.shard_key]

    @cached_property
    def sighash(self) -> bytes:
        """The signed content; two beacons of a round with different sighashes are equivocation."""
        return tagged_hash(BEACON_TAG, pack_trusted(self.unsigned_fields()))

    def verify(self, keyholders: Sequence[bytes], threshold: int) -> bool:
        return verify_keyholder_sigs(self.signatures, self.sighash, keyholders, threshold)

    def encode(self) -> bytes:
        return pack_trusted([*self.unsigned_fields(), [list(s) for s in self.signatures]])

    @classmethod
    def decode(cls, data: bytes) -> "Beacon":
        f = check_list(unpack(data, max_size=MAX_BEACON_SIZE), 7, "beacon")
        entries = check_list_max(f[4], MAX_BEACON_ENTRIES, "beacon.entries")
        return cls(f[0], f[1], f[2], f[3], tuple(entries), f[5], _check_signatures(f[6], "beacon.signatures"))


def make_beacon(keypairs: Sequence[Keypair], chain_id: str, round: int, anchor_hash: bytes,
                entries: Sequence[bytes], shard_key: bytes) -> Beacon:
    listed = tuple(sorted(set(entries)))
    unsigned = Beacon(MESSAGE_VERSION, chain_id, round, anchor_hash, listed, shard_key, ())
    return Beacon(MESSAGE_VERSION, chain_id, round, anchor_hash, listed, shard_key,
                  _sign_all(keypairs, unsigned.sighash))


# ---------------------------------------------------------------- RoundPayload


@dataclass(frozen=True)
class RoundPayload:
    """A round block's payload: its signed beacon (so a syncing node can validate alone) and the crowning
    record b, c, z_milli, which must equal what every validator recomputes."""
    version: int
    beacon: Beacon
    b: int
    c: int
    z_milli: int

    def __post_init__(self) -> None:
        _check_version(self.version, "payload.version")
        if not isinstance(self.beacon, Beacon):
            raise DecodeError("payload.beacon: expected a Beacon")
        check_int(self.b, 0, MAX_SCORE, "payload.b")
        check_int(self.c, 0, MAX_SCORE, "payload.c")
        check_int(self.z_milli, 0, MAX_Z_MILLI, "payload.z_milli")

    def encode(self) -> bytes:
        return pack_trusted([self.version, self.beacon.encode(), self.b, self.c, self.z_milli])

    @classmethod
    def decode(cls, data: bytes) -> "RoundPayload":
        f = check_list(unpack(data, max_size=MAX_PAYLOAD_SIZE), 5, "payload")
        if type(f[1]) is not bytes:
            raise DecodeError("payload.beacon: expected bytes")
        return cls(f[0], Beacon.decode(f[1]), f[2], f[3], f[4])
