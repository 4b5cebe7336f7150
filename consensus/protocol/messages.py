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

__all__ = [
    "ANCHOR_TAG", "BEACON_TAG", "ENTRY_TAG", "MAX_ACTIVATIONS", "MAX_ACTIVATION_BYTES", "MAX_BEACON_ENTRIES",
    "MAX_BEACON_SIZE", "MAX_ENTRY_SIZE", "MAX_HEIGHT", "MAX_KEYHOLDERS", "MAX_NOTICE_SIZE",
    "MAX_PAYLOAD_SIZE", "MAX_ROUND", "MAX_SCHEDULE_SIZE", "MAX_SCORE", "MAX_SETTLE", "MAX_SETTLEMENT_SIZE",
    "MAX_SHARD_INDEX", "MAX_TASK_ID", "MAX_TIME_MS", "MESSAGE_VERSION", "PAYLOAD_VERSION", "SHARD_KEY_SIZE",
    "STATEMENT_VERSION", "Activations", "AnchorNotice", "Beacon", "Entry", "Forfeits", "Listed",
    "RoundPayload", "Signatures", "make_anchor_notice", "make_beacon", "make_entry", "make_payload",
    "verify_keyholder_sigs",
]

MESSAGE_VERSION = 1          # entries (and block headers)
STATEMENT_VERSION = 2        # notices and beacons: 2 adds (task_id, shard_index, activations) (issue 11)
PAYLOAD_VERSION = 2          # round payloads: 2 adds the activated task messages' bytes
MAX_TASK_ID = 2**16 - 1      # tasks per chain (ids 0 … 65 535)
MAX_SHARD_INDEX = 2**32 - 1
MAX_ACTIVATIONS = 64         # task messages a notice may activate since its anchor
MAX_ROUND = 2**32 - 1
MAX_HEIGHT = 2**32 - 1
MAX_TIME_MS = 2**50
MAX_KEYHOLDERS = 16          # signatures on a notice/beacon; genesis may list at most this many keyholders
MAX_BEACON_ENTRIES = 256     # encoding cap; the consensus limit is genesis max_entries (<= this)
SHARD_KEY_SIZE = 32
MAX_SCORE = 2**32 - 1        # b and c count shard rows
MAX_SETTLE = 1024            # opened models / forfeiting keys a beacon may settle (the keyholder stays below)

MAX_ENTRY_SIZE = 256
MAX_SETTLEMENT_SIZE = 16 + MAX_SETTLE * (35 + 42)   # opened model hashes + (miner, count) forfeits
MAX_SCHEDULE_SIZE = 24 + MAX_ACTIVATIONS * 42          # task id, shard index, [[round, message id]…]
MAX_NOTICE_SIZE = 160 + MAX_SETTLEMENT_SIZE + MAX_SCHEDULE_SIZE + MAX_KEYHOLDERS * 100
MAX_BEACON_SIZE = 240 + MAX_BEACON_ENTRIES * 70 + MAX_SETTLEMENT_SIZE + MAX_SCHEDULE_SIZE + MAX_KEYHOLDERS * 100
MAX_ACTIVATION_BYTES = 6 << 20   # task message bytes one payload carries (inside the 8 MiB block cap)
MAX_PAYLOAD_SIZE = MAX_BEACON_SIZE + 64 + MAX_ACTIVATION_BYTES + MAX_ACTIVATIONS * 8

ENTRY_TAG = "popchain/entry"
ANCHOR_TAG = "popchain/anchor"
BEACON_TAG = "popchain/beacon"

Signatures = tuple[tuple[bytes, bytes], ...]
Listed = tuple[tuple[bytes, bytes], ...]      # (header hash, miner pubkey), ascending by header hash
Forfeits = tuple[tuple[bytes, int], ...]      # (miner pubkey, number of bonds), ascending by miner
Activations = tuple[tuple[int, bytes], ...]   # (round whose notice activated it, task message id), in order


def _check_version(value: Any, name: str, version: int = MESSAGE_VERSION) -> int:
    return check_int(value, version, version, name)


def _check_schedule(task_id: Any, shard_index: Any, activations: Any, round_: int, name: str,
                    min_shard: int) -> None:
    """(task_id, shard_index) the round serves (shard 0: an idle round, notices only) and the task messages
    activated since the anchor: rounds ascending, none after this round, ids unique."""
    check_int(task_id, 0, MAX_TASK_ID, f"{name}.task_id")
    check_int(shard_index, min_shard, MAX_SHARD_INDEX, f"{name}.shard_index")
    if shard_index == 0 and task_id != 0:
        raise DecodeError(f"{name}: an idle round names task 0")
    if not isinstance(activations, tuple) or len(activations) > MAX_ACTIVATIONS:
        raise DecodeError(f"{name}.activations: expected a tuple of at most {MAX_ACTIVATIONS} items")
    last = 0
    for i, pair in enumerate(activations):
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise DecodeError(f"{name}.activations[{i}]: expected (round, message id)")
        check_int(pair[0], max(1, last), round_, f"{name}.activations[{i}].round")
        check_bytes(pair[1], 32, f"{name}.activations[{i}].id")
        last = pair[0]
    if len({h for _, h in activations}) != len(activations):
        raise DecodeError(f"{name}.activations: a message is listed twice")


def _decode_activations(value: Any, name: str) -> Activations:
    return tuple(tuple(check_list(p, 2, f"{name}[]"))  # type: ignore[misc]
                 for p in check_list_max(value, MAX_ACTIVATIONS, name))


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
    def decode(cls, data: bytes) -> Entry:
        return cls(*check_list(unpack(data, max_size=MAX_ENTRY_SIZE), 7, "entry"))


def make_entry(keypair: Keypair, chain_id: str, round: int, parent_hash: bytes, header_hash: bytes) -> Entry:
    unsigned = Entry(MESSAGE_VERSION, chain_id, round, parent_hash, header_hash, keypair.public, bytes(64))
    return Entry(MESSAGE_VERSION, chain_id, round, parent_hash, header_hash, keypair.public,
                 keypair.sign(unsigned.sighash))


# ---------------------------------------------------------------- AnchorNotice


@dataclass(frozen=True)
class AnchorNotice:
    """Keyholder's signed announcement: round ``round`` is open for entries on ``anchor_hash`` until at least
    ``entry_deadline_ms`` (keyholder clock, unix milliseconds; the round waits for its first entry), with the
    settlement of the rounds since the anchor that its blocks will apply (§3.9; the beacon repeats it), the
    (task, shard) the round serves (shard 0: idle, nothing to serve — e.g. the closing notice of an exhausted
    chain) and the task messages activated since the anchor (§3.13)."""
    version: int
    chain_id: str
    round: int
    anchor_hash: bytes
    anchor_height: int
    entry_deadline_ms: int
    opened: tuple[bytes, ...] = ()
    forfeits: Forfeits = ()
    task_id: int = 0
    shard_index: int = 0
    activations: Activations = ()
    signatures: Signatures = ()

    def __post_init__(self) -> None:
        _check_version(self.version, "notice.version", STATEMENT_VERSION)
        check_chain_id(self.chain_id, "notice.chain_id")
        check_int(self.round, 1, MAX_ROUND, "notice.round")
        check_bytes(self.anchor_hash, 32, "notice.anchor_hash")
        check_int(self.anchor_height, 0, MAX_HEIGHT, "notice.anchor_height")
        check_int(self.entry_deadline_ms, 0, MAX_TIME_MS, "notice.entry_deadline_ms")
        _check_settlement(self.opened, self.forfeits, "notice")
        _check_schedule(self.task_id, self.shard_index, self.activations, self.round, "notice", 0)

    @property
    def idle(self) -> bool:
        return self.shard_index == 0

    @property
    def served(self) -> tuple[int, int] | None:
        return None if self.shard_index == 0 else (self.task_id, self.shard_index)

    def unsigned_fields(self) -> list[Any]:
        return [self.version, self.chain_id, self.round, self.anchor_hash, self.anchor_height,
                self.entry_deadline_ms, list(self.opened), [list(p) for p in self.forfeits],
                self.task_id, self.shard_index, [list(p) for p in self.activations]]

    @cached_property
    def sighash(self) -> bytes:
        return tagged_hash(ANCHOR_TAG, pack_trusted(self.unsigned_fields()))

    def verify(self, keyholders: Sequence[bytes], threshold: int) -> bool:
        return verify_keyholder_sigs(self.signatures, self.sighash, keyholders, threshold)

    def encode(self) -> bytes:
        return pack_trusted([*self.unsigned_fields(), [list(s) for s in self.signatures]])

    @classmethod
    def decode(cls, data: bytes) -> AnchorNotice:
        f = check_list(unpack(data, max_size=MAX_NOTICE_SIZE), 12, "notice")
        opened, forfeits = _decode_settlement(f[6], f[7], "notice")
        return cls(f[0], f[1], f[2], f[3], f[4], f[5], opened, forfeits, f[8], f[9],
                   _decode_activations(f[10], "notice.activations"), _check_signatures(f[11], "notice.signatures"))


def make_anchor_notice(keypairs: Sequence[Keypair], chain_id: str, round: int, anchor_hash: bytes,
                       anchor_height: int, entry_deadline_ms: int, *, opened: Sequence[bytes] = (),
                       forfeits: Sequence[tuple[bytes, int]] = (), task_id: int = 0, shard_index: int | None = None,
                       activations: Sequence[tuple[int, bytes]] = ()) -> AnchorNotice:
    """Sign a notice. ``shard_index`` None means ``round`` (the genesis-only schedule: task 0, shard r)."""
    fields = (STATEMENT_VERSION, chain_id, round, anchor_hash, anchor_height, entry_deadline_ms,
              *_canonical_settlement(opened, forfeits), task_id, round if shard_index is None else shard_index,
              tuple((int(q), bytes(h)) for q, h in activations))
    unsigned = AnchorNotice(*fields)
    return AnchorNotice(*fields, _sign_all(keypairs, unsigned.sighash))


# ---------------------------------------------------------------- Beacon


def _check_settlement(opened: Any, forfeits: Any, name: str) -> None:
    _check_hash_list(opened, MAX_SETTLE, f"{name}.opened")
    if not isinstance(forfeits, tuple) or len(forfeits) > MAX_SETTLE:
        raise DecodeError(f"{name}.forfeits: expected a tuple of at most {MAX_SETTLE} items")
    for i, pair in enumerate(forfeits):
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise DecodeError(f"{name}.forfeits[{i}]: expected (miner, count)")
        check_bytes(pair[0], 32, f"{name}.forfeits[{i}].miner")
        check_int(pair[1], 1, MAX_ROUND, f"{name}.forfeits[{i}].count")
    miners = [m for m, _ in forfeits]
    if miners != sorted(set(miners)):
        raise DecodeError(f"{name}.forfeits: must be sorted ascending by miner and unique")


def _decode_settlement(opened: Any, forfeits: Any, name: str) -> tuple[tuple[bytes, ...], Forfeits]:
    o = tuple(check_list_max(opened, MAX_SETTLE, f"{name}.opened"))
    f = tuple(tuple(check_list(p, 2, f"{name}.forfeits[]")) for p in check_list_max(forfeits, MAX_SETTLE,
                                                                                       f"{name}.forfeits"))
    return o, f  # type: ignore[return-value]


def _canonical_settlement(opened: Sequence[bytes], forfeits: Sequence[tuple[bytes, int]]
                          ) -> tuple[tuple[bytes, ...], Forfeits]:
    return tuple(sorted(set(opened))), tuple(sorted((bytes(m), int(k)) for m, k in forfeits))


def _check_hash_list(value: Any, cap: int, name: str, size: int = 32) -> tuple[bytes, ...]:
    if not isinstance(value, tuple) or len(value) > cap:
        raise DecodeError(f"{name}: expected a tuple of at most {cap} items")
    for i, h in enumerate(value):
        check_bytes(h, size, f"{name}[{i}]")
    if list(value) != sorted(set(value)):
        raise DecodeError(f"{name}: must be sorted ascending and unique")
    return value


@dataclass(frozen=True)
class Beacon:
    """Round ``round``'s reveal (PROTOCOL §3.4): the anchor, keyholder times, the listed entries (header hash
    and miner), shard key r, and the settlement of the rounds since the anchor (§3.9): models opened there,
    and the bonds forfeited there — the same settlement the round's anchor notice announced."""
    version: int
    chain_id: str
    round: int
    anchor_hash: bytes
    opened_ms: int                # keyholder time the round opened (its anchor notice), unix ms
    time_ms: int                  # keyholder time of this reveal, unix ms (>= opened_ms)
    listed: Listed
    shard_key: bytes
    opened: tuple[bytes, ...] = ()     # model hashes opened in rounds anchor.round .. round - 1
    forfeits: Forfeits = ()            # (miner, k): k listed-but-unopened entries in those rounds
    task_id: int = 0                   # the (task, shard) this round serves (§3.13), as in its notice
    shard_index: int = 1
    activations: Activations = ()      # task messages activated since the anchor, as in its notice
    signatures: Signatures = ()

    def __post_init__(self) -> None:
        _check_version(self.version, "beacon.version", STATEMENT_VERSION)
        check_chain_id(self.chain_id, "beacon.chain_id")
        check_int(self.round, 1, MAX_ROUND, "beacon.round")
        check_bytes(self.anchor_hash, 32, "beacon.anchor_hash")
        check_int(self.opened_ms, 0, MAX_TIME_MS, "beacon.opened_ms")
        check_int(self.time_ms, 0, MAX_TIME_MS, "beacon.time_ms")
        if self.opened_ms > self.time_ms:
            raise DecodeError("beacon: opened_ms after time_ms")
        if not isinstance(self.listed, tuple) or len(self.listed) > MAX_BEACON_ENTRIES:
            raise DecodeError(f"beacon.listed: expected a tuple of at most {MAX_BEACON_ENTRIES} entries")
        for i, pair in enumerate(self.listed):
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise DecodeError(f"beacon.listed[{i}]: expected (header hash, miner)")
            check_bytes(pair[0], 32, f"beacon.listed[{i}].header_hash")
            check_bytes(pair[1], 32, f"beacon.listed[{i}].miner")
        hashes = [h for h, _ in self.listed]
        if hashes != sorted(set(hashes)):
            raise DecodeError("beacon.listed: must be sorted ascending by header hash and unique")
        if len({m for _, m in self.listed}) != len(self.listed):
            raise DecodeError("beacon.listed: one entry per miner key")
        check_bytes(self.shard_key, SHARD_KEY_SIZE, "beacon.shard_key")
        _check_settlement(self.opened, self.forfeits, "beacon")
        _check_schedule(self.task_id, self.shard_index, self.activations, self.round, "beacon", 1)

    @property
    def served(self) -> tuple[int, int]:
        return (self.task_id, self.shard_index)

    def schedule_fields(self) -> tuple[int, int, Activations]:
        return (self.task_id, self.shard_index, self.activations)

    @property
    def entries(self) -> tuple[bytes, ...]:
        """The listed header hashes (ascending)."""
        return tuple(h for h, _ in self.listed)

    def unsigned_fields(self) -> list[Any]:
        return [self.version, self.chain_id, self.round, self.anchor_hash, self.opened_ms, self.time_ms,
                [list(p) for p in self.listed], self.shard_key, list(self.opened),
                [list(p) for p in self.forfeits], self.task_id, self.shard_index,
                [list(p) for p in self.activations]]

    @cached_property
    def sighash(self) -> bytes:
        """The signed content; two beacons of a round with different sighashes are equivocation."""
        return tagged_hash(BEACON_TAG, pack_trusted(self.unsigned_fields()))

    def verify(self, keyholders: Sequence[bytes], threshold: int) -> bool:
        return verify_keyholder_sigs(self.signatures, self.sighash, keyholders, threshold)

    def encode(self) -> bytes:
        return pack_trusted([*self.unsigned_fields(), [list(s) for s in self.signatures]])

    @classmethod
    def decode(cls, data: bytes) -> Beacon:
        f = check_list(unpack(data, max_size=MAX_BEACON_SIZE), 14, "beacon")
        listed = tuple(tuple(check_list(p, 2, "beacon.listed[]"))
                       for p in check_list_max(f[6], MAX_BEACON_ENTRIES, "beacon.listed"))
        opened, forfeits = _decode_settlement(f[8], f[9], "beacon")
        return cls(f[0], f[1], f[2], f[3], f[4], f[5], listed, f[7], opened,  # type: ignore[arg-type]
                   forfeits, f[10], f[11], _decode_activations(f[12], "beacon.activations"),
                   _check_signatures(f[13], "beacon.signatures"))


def make_beacon(keypairs: Sequence[Keypair], chain_id: str, round: int, anchor_hash: bytes,
                entries: Sequence[tuple[bytes, bytes]], shard_key: bytes, *, opened_ms: int = 0,
                time_ms: int = 0, opened: Sequence[bytes] = (),
                forfeits: Sequence[tuple[bytes, int]] = (), task_id: int = 0, shard_index: int | None = None,
                activations: Sequence[tuple[int, bytes]] = ()) -> Beacon:
    """Sign a beacon; ``entries`` are (header hash, miner) pairs in any order. ``shard_index`` None means
    ``round`` (the genesis-only schedule); a keyholder copies task_id/shard_index/activations from the notice."""
    listed = tuple(sorted({(bytes(h), bytes(m)) for h, m in entries}))
    fields = (STATEMENT_VERSION, chain_id, round, anchor_hash, opened_ms, max(time_ms, opened_ms), listed,
              shard_key, *_canonical_settlement(opened, forfeits), task_id,
              round if shard_index is None else shard_index, tuple((int(q), bytes(h)) for q, h in activations))
    unsigned = Beacon(*fields)
    return Beacon(*fields, _sign_all(keypairs, unsigned.sighash))


# ---------------------------------------------------------------- RoundPayload


@dataclass(frozen=True)
class RoundPayload:
    """A round block's payload: its signed beacon (so a syncing node can validate alone), the crowning
    record b, c and ``bar`` (the least b that crowns with b + c disagreements and the beacon's entry count,
    consensus.protocol.stats.crown_threshold), which must equal what every validator recomputes, and the bytes of
    every task message the beacon's ``activations`` name, in that order (§3.13; decoded by the rules)."""
    version: int
    beacon: Beacon
    b: int
    c: int
    bar: int
    activations: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        _check_version(self.version, "payload.version", PAYLOAD_VERSION)
        if not isinstance(self.beacon, Beacon):
            raise DecodeError("payload.beacon: expected a Beacon")
        check_int(self.b, 0, MAX_SCORE, "payload.b")
        check_int(self.c, 0, MAX_SCORE, "payload.c")
        check_int(self.bar, 0, MAX_SCORE, "payload.bar")
        if not isinstance(self.activations, tuple) or len(self.activations) != len(self.beacon.activations):
            raise DecodeError("payload.activations: one message per activation the beacon names")
        if any(type(a) is not bytes for a in self.activations):
            raise DecodeError("payload.activations: expected bytes")
        if sum(len(a) for a in self.activations) > MAX_ACTIVATION_BYTES:
            raise DecodeError(f"payload.activations: more than {MAX_ACTIVATION_BYTES} bytes")

    def encode(self) -> bytes:
        return pack_trusted([self.version, self.beacon.encode(), self.b, self.c, self.bar, list(self.activations)])

    @classmethod
    def decode(cls, data: bytes) -> RoundPayload:
        f = check_list(unpack(data, max_size=MAX_PAYLOAD_SIZE), 6, "payload")
        if type(f[1]) is not bytes:
            raise DecodeError("payload.beacon: expected bytes")
        acts = tuple(check_list_max(f[5], MAX_ACTIVATIONS, "payload.activations"))
        return cls(f[0], Beacon.decode(f[1]), f[2], f[3], f[4], acts)


def make_payload(beacon: Beacon, b: int, c: int, bar: int, activations: Sequence[bytes] = ()) -> RoundPayload:
    return RoundPayload(PAYLOAD_VERSION, beacon, b, c, bar, tuple(activations))
