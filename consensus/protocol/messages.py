"""Protocol messages of a round (PROTOCOL §3.3–3.5): Entry, Settlement, AnchorNotice, Beacon, RoundPayload.

Each is a frozen dataclass with a canonical encoding through chain.encoding (positional msgpack arrays), a
byte cap, a decoder that checks every field and raises chain.errors.DecodeError, and (where signed) a sighash
= H(tag, encoding of the unsigned fields). Signature *validity against genesis keyholders* is checked here
(``verify_keyholder_sigs``); which round/anchor is acceptable is the engine's business.

An entry (version 2) names the model hash it commits to and a proof of possession of the model bytes
(``possession``), so a beacon's listing says who committed to which model first (§3.9 attribution). A notice
and a beacon (version 3) carry a ``Settlement``: one record per listed entry of a window of rounds (who, which
model, opened or not) — the bonds it forfeits and the models it attributes, for void rounds too.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from chain.crypto import Keypair, tagged_hash, verify_sig
from chain.encoding import (
    check_bytes,
    check_bytes_max,
    check_int,
    check_list,
    check_list_max,
    pack_trusted,
    unpack,
)
from chain.errors import DecodeError
from chain.tx import check_chain_id

__all__ = [
    "ANCHOR_TAG", "BEACON_TAG", "ENTRY_TAG", "ENTRY_VERSION", "MAX_ACTIVATIONS", "MAX_ACTIVATION_BYTES",
    "MAX_BEACON_ENTRIES", "MAX_BEACON_SIZE", "MAX_ENTRY_SIZE", "MAX_HEIGHT", "MAX_KEYHOLDERS", "MAX_NOTICE_SIZE",
    "MAX_PAYLOAD_SIZE", "MAX_RELEASE_BYTES", "MAX_ROUND", "MAX_SCHEDULE_SIZE", "MAX_SCORE", "MAX_SETTLE", "MAX_SETTLEMENT_SIZE",
    "MAX_SHARD_INDEX", "MAX_TASK_ID", "MAX_TIME_MS", "MESSAGE_VERSION", "PAYLOAD_VERSION", "POSSESSION_TAG",
    "SHARD_KEY_SIZE", "STATEMENT_VERSION", "Activations", "AnchorNotice", "Beacon", "Entry", "Forfeits",
    "Listed", "Listing", "Record", "RoundPayload", "Settlement", "Signatures", "make_anchor_notice",
    "make_beacon", "make_entry", "make_payload", "make_settlement", "possession", "verify_keyholder_sigs",
]

MESSAGE_VERSION = 1          # block headers
ENTRY_VERSION = 2            # entries: 2 adds the model hash and the proof of possession (issue 18)
STATEMENT_VERSION = 3        # notices and beacons: 2 added (task_id, shard_index, activations) (issue 11); 3 the
                             # settlement records and the listing's model hash + possession (issue 18)
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
MAX_SETTLE = 4096            # settlement records one notice/beacon carries; a longer void streak carries over
                             # to the next block's settlement (whole rounds, §3.9): no record is ever dropped

MAX_ENTRY_SIZE = 320
MAX_LISTED_SIZE = 136        # one listing item: 4 × bin32 + array header
MAX_SETTLEMENT_SIZE = 24 + MAX_SETTLE * 80         # [first, last, [[round, miner, model hash, opened]…]]
MAX_SCHEDULE_SIZE = 24 + MAX_ACTIVATIONS * 42          # task id, shard index, [[round, message id]…]
MAX_NOTICE_SIZE = 160 + MAX_SETTLEMENT_SIZE + MAX_SCHEDULE_SIZE + MAX_KEYHOLDERS * 100
MAX_RELEASE_BYTES = 16 + MAX_KEYHOLDERS * 112     # a committee's t proven shares (consensus.protocol.release)
MAX_BEACON_SIZE = (240 + MAX_BEACON_ENTRIES * MAX_LISTED_SIZE + MAX_SETTLEMENT_SIZE + MAX_SCHEDULE_SIZE
                   + MAX_KEYHOLDERS * 100 + MAX_RELEASE_BYTES)
MAX_ACTIVATION_BYTES = 6 << 20   # task message bytes one payload carries (inside the 8 MiB block cap)
MAX_PAYLOAD_SIZE = MAX_BEACON_SIZE + 64 + MAX_ACTIVATION_BYTES + MAX_ACTIVATIONS * 8

ENTRY_TAG = "popchain/entry"
POSSESSION_TAG = "popchain/possession"
ANCHOR_TAG = "popchain/anchor"
BEACON_TAG = "popchain/beacon"

Signatures = tuple[tuple[bytes, bytes], ...]
Listing = tuple[bytes, bytes, bytes, bytes]  # (header hash, miner pubkey, model hash, possession)
Listed = tuple[Listing, ...]                  # ascending by header hash
Record = tuple[int, bytes, bytes, int]        # (round, miner pubkey, model hash, opened: 0 | 1)
Forfeits = tuple[tuple[bytes, int], ...]      # (miner pubkey, number of bonds), ascending by miner
Activations = tuple[tuple[int, bytes], ...]   # (round whose notice activated it, task message id), in order


def _check_version(value: Any, name: str, version: int = MESSAGE_VERSION) -> int:
    return check_int(value, version, version, name)


def _check_schedule(task_id: Any, shard_index: Any, activations: Any, round_: int, name: str,
                    min_shard: int) -> None:
    """(task_id, shard_index) the round serves (shard 0: an idle round — a ledger round, §3.13) and the task messages
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


def possession(miner: bytes, model_bytes: bytes) -> bytes:
    """The proof of possession an entry carries: H("popchain/possession", miner, model bytes). Only a key that
    holds the bytes when it seals can make it, so a key that copies another entry's model hash cannot open
    that model later with bytes it learnt from the other's opening (§3.3)."""
    return tagged_hash(POSSESSION_TAG, miner, model_bytes)


@dataclass(frozen=True)
class Entry:
    """A miner's sealed bid for round ``round``: the header hash of its already-built block, the model hash
    that header binds, and its proof of possession of the model bytes."""
    version: int
    chain_id: str
    round: int
    parent_hash: bytes
    header_hash: bytes
    miner: bytes
    model_hash: bytes
    possession: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_version(self.version, "entry.version", ENTRY_VERSION)
        check_chain_id(self.chain_id, "entry.chain_id")
        check_int(self.round, 1, MAX_ROUND, "entry.round")
        check_bytes(self.parent_hash, 32, "entry.parent_hash")
        check_bytes(self.header_hash, 32, "entry.header_hash")
        check_bytes(self.miner, 32, "entry.miner")
        check_bytes(self.model_hash, 32, "entry.model_hash")
        check_bytes(self.possession, 32, "entry.possession")
        check_bytes(self.signature, 64, "entry.signature")

    def unsigned_fields(self) -> list[Any]:
        return [self.version, self.chain_id, self.round, self.parent_hash, self.header_hash, self.miner,
                self.model_hash, self.possession]

    @property
    def listing(self) -> Listing:
        """What a beacon lists for this entry."""
        return (self.header_hash, self.miner, self.model_hash, self.possession)

    @cached_property
    def sighash(self) -> bytes:
        return tagged_hash(ENTRY_TAG, pack_trusted(self.unsigned_fields()))

    def verify_signature(self) -> bool:
        return verify_sig(self.miner, self.sighash, self.signature)

    def encode(self) -> bytes:
        return pack_trusted([*self.unsigned_fields(), self.signature])

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        return cls(*check_list(unpack(data, max_size=MAX_ENTRY_SIZE), 9, "entry"))


def make_entry(keypair: Keypair, chain_id: str, round: int, parent_hash: bytes, header_hash: bytes,
               model_hash: bytes, proof: bytes) -> Entry:
    """Sign an entry; ``proof`` is ``possession(keypair.public, model bytes)``."""
    fields = (ENTRY_VERSION, chain_id, round, parent_hash, header_hash, keypair.public, model_hash, proof)
    unsigned = Entry(*fields, bytes(64))
    return Entry(*fields, keypair.sign(unsigned.sighash))


# ---------------------------------------------------------------- Settlement


@dataclass(frozen=True)
class Settlement:
    """What a round's blocks settle (§3.9): every listed entry of rounds ``first`` … ``last`` as a record
    (round, miner, model hash, opened). An unopened record forfeits one bond of its miner; every record
    attributes its model hash to its miner (first listed wins); an opened one is never crowned again. The
    window starts right after the parent block's window (genesis: round 1), so no round is settled twice and
    none is skipped; a window may end before the previous round when the records would not fit one message
    (``last`` < r − 1: the rest carries over to the next block). ``last = first − 1`` is an empty window."""
    first: int = 1
    last: int = 0
    records: tuple[Record, ...] = ()

    def __post_init__(self) -> None:
        check_int(self.first, 1, MAX_ROUND, "settlement.first")
        check_int(self.last, self.first - 1, MAX_ROUND, "settlement.last")
        if not isinstance(self.records, tuple) or len(self.records) > MAX_SETTLE:
            raise DecodeError(f"settlement.records: expected a tuple of at most {MAX_SETTLE} records")
        for i, rec in enumerate(self.records):
            if not isinstance(rec, tuple) or len(rec) != 4:
                raise DecodeError(f"settlement.records[{i}]: expected (round, miner, model hash, opened)")
            check_int(rec[0], self.first, max(self.first, self.last), f"settlement.records[{i}].round")
            check_bytes(rec[1], 32, f"settlement.records[{i}].miner")
            check_bytes(rec[2], 32, f"settlement.records[{i}].model_hash")
            check_int(rec[3], 0, 1, f"settlement.records[{i}].opened")
        keys = [(r[0], r[1]) for r in self.records]
        if keys != sorted(set(keys)):
            raise DecodeError("settlement.records: must be sorted by (round, miner) and unique")
        if self.records and self.last < self.first:
            raise DecodeError("settlement: records in an empty window")

    @property
    def forfeits(self) -> Forfeits:
        """(miner, k): k = that key's unopened records (each forfeits one bond), ascending by miner."""
        owed: dict[bytes, int] = {}
        for _, miner, _, opened in self.records:
            if not opened:
                owed[miner] = owed.get(miner, 0) + 1
        return tuple(sorted(owed.items()))

    @property
    def opened(self) -> tuple[bytes, ...]:
        """The model hashes of the opened records (sorted, unique)."""
        return tuple(sorted({mh for _, _, mh, opened in self.records if opened}))

    def to_list(self) -> list[Any]:
        return [self.first, self.last, [list(r) for r in self.records]]

    @classmethod
    def from_list(cls, value: Any, name: str) -> Settlement:
        f = check_list(value, 3, name)
        recs = tuple(tuple(check_list(r, 4, f"{name}.records[]"))
                     for r in check_list_max(f[2], MAX_SETTLE, f"{name}.records"))
        try:
            return cls(f[0], f[1], recs)  # type: ignore[arg-type]
        except DecodeError as exc:
            raise DecodeError(f"{name}: {exc}") from None


def make_settlement(first: int, last: int, records: Sequence[tuple[int, bytes, bytes, int | bool]]) -> Settlement:
    """A settlement with its records in canonical order."""
    return Settlement(first, last, tuple(sorted((int(q), bytes(m), bytes(h), int(bool(o)))
                                                for q, m, h, o in records)))


# ---------------------------------------------------------------- AnchorNotice


@dataclass(frozen=True)
class AnchorNotice:
    """Keyholder's signed announcement: round ``round`` is open for entries on ``anchor_hash`` until at least
    ``entry_deadline_ms`` (keyholder clock, unix milliseconds; the round waits for its first entry), with the
    settlement its blocks will apply (§3.9; the beacon repeats it), the (task, shard) the round serves
    (shard 0: idle, nothing to serve — e.g. the closing notice of an exhausted chain) and the task messages
    activated since the anchor (§3.13)."""
    version: int
    chain_id: str
    round: int
    anchor_hash: bytes
    anchor_height: int
    entry_deadline_ms: int
    settlement: Settlement = Settlement()
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
        _check_window(self.settlement, self.round, "notice")
        _check_schedule(self.task_id, self.shard_index, self.activations, self.round, "notice", 0)

    @property
    def idle(self) -> bool:
        return self.shard_index == 0

    @property
    def served(self) -> tuple[int, int] | None:
        return None if self.shard_index == 0 else (self.task_id, self.shard_index)

    @property
    def forfeits(self) -> Forfeits:
        return self.settlement.forfeits

    @property
    def opened(self) -> tuple[bytes, ...]:
        return self.settlement.opened

    def unsigned_fields(self) -> list[Any]:
        return [self.version, self.chain_id, self.round, self.anchor_hash, self.anchor_height,
                self.entry_deadline_ms, self.settlement.to_list(), self.task_id, self.shard_index,
                [list(p) for p in self.activations]]

    @cached_property
    def sighash(self) -> bytes:
        return tagged_hash(ANCHOR_TAG, pack_trusted(self.unsigned_fields()))

    def verify(self, keyholders: Sequence[bytes], threshold: int) -> bool:
        return verify_keyholder_sigs(self.signatures, self.sighash, keyholders, threshold)

    def encode(self) -> bytes:
        return pack_trusted([*self.unsigned_fields(), [list(s) for s in self.signatures]])

    @classmethod
    def decode(cls, data: bytes) -> AnchorNotice:
        f = check_list(unpack(data, max_size=MAX_NOTICE_SIZE), 11, "notice")
        return cls(f[0], f[1], f[2], f[3], f[4], f[5], Settlement.from_list(f[6], "notice.settlement"), f[7],
                   f[8], _decode_activations(f[9], "notice.activations"),
                   _check_signatures(f[10], "notice.signatures"))


def _check_window(settlement: Any, round_: int, name: str) -> None:
    if not isinstance(settlement, Settlement):
        raise DecodeError(f"{name}.settlement: expected a Settlement")
    if settlement.last >= round_:
        raise DecodeError(f"{name}.settlement: settles round {settlement.last}, not before round {round_}")


def make_anchor_notice(keypairs: Sequence[Keypair], chain_id: str, round: int, anchor_hash: bytes,
                       anchor_height: int, entry_deadline_ms: int, *, settlement: Settlement = Settlement(),
                       task_id: int = 0, shard_index: int | None = None,
                       activations: Sequence[tuple[int, bytes]] = ()) -> AnchorNotice:
    """Sign a notice. ``shard_index`` None means ``round`` (the genesis-only schedule: task 0, shard r)."""
    fields = (STATEMENT_VERSION, chain_id, round, anchor_hash, anchor_height, entry_deadline_ms, settlement,
              task_id, round if shard_index is None else shard_index,
              tuple((int(q), bytes(h)) for q, h in activations))
    unsigned = AnchorNotice(*fields)
    return AnchorNotice(*fields, _sign_all(keypairs, unsigned.sighash))


# ---------------------------------------------------------------- Beacon


def _check_listed(listed: Any, name: str) -> None:
    if not isinstance(listed, tuple) or len(listed) > MAX_BEACON_ENTRIES:
        raise DecodeError(f"{name}: expected a tuple of at most {MAX_BEACON_ENTRIES} entries")
    for i, item in enumerate(listed):
        if not isinstance(item, tuple) or len(item) != 4:
            raise DecodeError(f"{name}[{i}]: expected (header hash, miner, model hash, possession)")
        for j, what in enumerate(("header_hash", "miner", "model_hash", "possession")):
            check_bytes(item[j], 32, f"{name}[{i}].{what}")
    hashes = [x[0] for x in listed]
    if hashes != sorted(set(hashes)):
        raise DecodeError(f"{name}: must be sorted ascending by header hash and unique")
    if len({x[1] for x in listed}) != len(listed):
        raise DecodeError(f"{name}: one entry per miner key")


@dataclass(frozen=True)
class Beacon:
    """Round ``round``'s reveal (PROTOCOL §3.4): the anchor, keyholder times, the listed entries (header hash,
    miner, model hash, possession), shard key r, and the settlement the round's anchor notice announced (§3.9).
    A committee's *draft* is a Beacon with the key zero that lists the candidates (possibly more than E);
    the beacon itself lists the E it keeps once the key is known (consensus.protocol.listing)."""
    version: int
    chain_id: str
    round: int
    anchor_hash: bytes
    opened_ms: int                # keyholder time the round opened (its anchor notice), unix ms
    time_ms: int                  # keyholder time of this reveal, unix ms (>= opened_ms)
    listed: Listed
    shard_key: bytes
    settlement: Settlement = Settlement()
    task_id: int = 0                   # the (task, shard) this round serves (§3.13), as in its notice
    shard_index: int = 1
    activations: Activations = ()      # task messages activated since the anchor, as in its notice
    signatures: Signatures = ()
    # a committee chain's release (consensus.protocol.release.Release bytes): t DLEQ-proven shares whose
    # combination gives shard_key (§3.4, §3.14). Outside the signed content, like the signatures; b"": none
    release: bytes = b""

    def __post_init__(self) -> None:
        _check_version(self.version, "beacon.version", STATEMENT_VERSION)
        check_bytes_max(self.release, MAX_RELEASE_BYTES, "beacon.release")
        check_chain_id(self.chain_id, "beacon.chain_id")
        check_int(self.round, 1, MAX_ROUND, "beacon.round")
        check_bytes(self.anchor_hash, 32, "beacon.anchor_hash")
        check_int(self.opened_ms, 0, MAX_TIME_MS, "beacon.opened_ms")
        check_int(self.time_ms, 0, MAX_TIME_MS, "beacon.time_ms")
        if self.opened_ms > self.time_ms:
            raise DecodeError("beacon: opened_ms after time_ms")
        _check_listed(self.listed, "beacon.listed")
        check_bytes(self.shard_key, SHARD_KEY_SIZE, "beacon.shard_key")
        _check_window(self.settlement, self.round, "beacon")
        # shard 0 (task 0): a LEDGER round — every task exhausted; it reveals no shard and lists entries for
        # plain blocks only (issue 21); its shard_key is a fresh keyholder value (the slot values' key)
        _check_schedule(self.task_id, self.shard_index, self.activations, self.round, "beacon", 0)

    @property
    def idle(self) -> bool:
        return self.shard_index == 0

    @property
    def served(self) -> tuple[int, int] | None:
        return None if self.shard_index == 0 else (self.task_id, self.shard_index)

    def schedule_fields(self) -> tuple[int, int, Activations]:
        return (self.task_id, self.shard_index, self.activations)

    @property
    def entries(self) -> tuple[bytes, ...]:
        """The listed header hashes (ascending)."""
        return tuple(x[0] for x in self.listed)

    def listing_of(self, header_hash: bytes) -> Listing | None:
        """The listed item with this header hash, or None."""
        return next((x for x in self.listed if x[0] == header_hash), None)

    @property
    def forfeits(self) -> Forfeits:
        return self.settlement.forfeits

    @property
    def opened(self) -> tuple[bytes, ...]:
        return self.settlement.opened

    def unsigned_fields(self) -> list[Any]:
        return [self.version, self.chain_id, self.round, self.anchor_hash, self.opened_ms, self.time_ms,
                [list(p) for p in self.listed], self.shard_key, self.settlement.to_list(), self.task_id,
                self.shard_index, [list(p) for p in self.activations]]

    @cached_property
    def sighash(self) -> bytes:
        """The signed content; two beacons of a round with different sighashes are equivocation."""
        return tagged_hash(BEACON_TAG, pack_trusted(self.unsigned_fields()))

    def verify(self, keyholders: Sequence[bytes], threshold: int) -> bool:
        return verify_keyholder_sigs(self.signatures, self.sighash, keyholders, threshold)

    def encode(self) -> bytes:
        release = [self.release] if self.release else []
        return pack_trusted([*self.unsigned_fields(), [list(s) for s in self.signatures], *release])

    @classmethod
    def decode(cls, data: bytes) -> Beacon:
        f = unpack(data, max_size=MAX_BEACON_SIZE)
        release = b""
        if isinstance(f, list) and len(f) == 14:
            release = check_bytes_max(f[13], MAX_RELEASE_BYTES, "beacon.release")
            if not release:
                raise DecodeError("beacon.release: an empty release is left out, not encoded")
            f = f[:13]
        f = check_list(f, 13, "beacon")
        listed = tuple(tuple(check_list(p, 4, "beacon.listed[]"))
                       for p in check_list_max(f[6], MAX_BEACON_ENTRIES, "beacon.listed"))
        return cls(f[0], f[1], f[2], f[3], f[4], f[5], listed, f[7],  # type: ignore[arg-type]
                   Settlement.from_list(f[8], "beacon.settlement"), f[9], f[10],
                   _decode_activations(f[11], "beacon.activations"), _check_signatures(f[12], "beacon.signatures"),
                   release)


def make_beacon(keypairs: Sequence[Keypair], chain_id: str, round: int, anchor_hash: bytes,
                entries: Sequence[Listing], shard_key: bytes, *, opened_ms: int = 0, time_ms: int = 0,
                settlement: Settlement = Settlement(), task_id: int = 0, shard_index: int | None = None,
                activations: Sequence[tuple[int, bytes]] = ()) -> Beacon:
    """Sign a beacon; ``entries`` are listing items (header hash, miner, model hash, possession) in any order.
    ``shard_index`` None means ``round`` (the genesis-only schedule); a keyholder copies the settlement and
    task_id/shard_index/activations from the notice."""
    listed = tuple(sorted({(bytes(h), bytes(m), bytes(mh), bytes(p)) for h, m, mh, p in entries}))
    fields = (STATEMENT_VERSION, chain_id, round, anchor_hash, opened_ms, max(time_ms, opened_ms), listed,
              shard_key, settlement, task_id, round if shard_index is None else shard_index,
              tuple((int(q), bytes(h)) for q, h in activations))
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
