"""Keyholder-committee messages (PROTOCOL §3.10): the signed envelope members exchange, the leader rule, and
the pure evidence book that spots a member signing two different statements for one round.

What it does: encode/decode ``CommitteeMsg`` (canonical msgpack, byte cap, every field checked, DecodeError),
its envelope signature, ``leader(keyholders, round, attempt)``, the statement a signing message commits its
signer to (``statement_of``), and ``StatementBook`` (first statement per (round, class, signer) → Evidence on
a conflicting second). What it does NOT do: decide whether a proposal is acceptable (consensus.keyholder), or
send anything (node.committee_service).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from functools import cached_property
from typing import Any

from chain.crypto import Keypair, tagged_hash, verify_sig
from chain.encoding import (
    check_bytes,
    check_bytes_max,
    check_int,
    check_list,
    check_list_max,
    check_str,
    pack,
    unpack,
)
from chain.errors import DecodeError, RuleError
from chain.tx import check_chain_id
from consensus.protocol.messages import (
    MAX_BEACON_ENTRIES,
    MAX_BEACON_SIZE,
    MAX_ENTRY_SIZE,
    MAX_NOTICE_SIZE,
    MAX_ROUND,
    SHARD_KEY_SIZE,
    AnchorNotice,
    Beacon,
    Entry,
)
from consensus.protocol.release import PARTIAL_SIZE as MAX_SHARE_SIZE

__all__ = [
    "COMMITTEE_TAG", "COMMITTEE_VERSION", "MAX_ATTEMPT", "MAX_BODY_SIZE", "MAX_CARRIED_BEACONS",
    "MAX_COMMITTEE_SIZE", "SIGNING_KINDS", "ZERO_KEY", "Body", "CommitteeMsg", "Evidence", "Kind",
    "StatementBook", "check_msg", "decode_body", "draft_of", "heartbeat", "leader", "make_msg", "notice_body",
    "parse_beacon", "parse_notice", "statement_of", "verify_evidence",
]

COMMITTEE_TAG = "popchain/committee"
COMMITTEE_VERSION = 1
MAX_ATTEMPT = 2**16 - 1
MAX_CARRIED_BEACONS = 32     # beacons a notice proposal carries (void rounds a restarted member may have missed)
MAX_BODY_SIZE = MAX_BEACON_SIZE + MAX_BEACON_ENTRIES * (MAX_ENTRY_SIZE + 3) + 64
# a notice proposal carrying beacons stays under this too: the leader carries only what fits (consensus.keyholder)
MAX_COMMITTEE_SIZE = MAX_BODY_SIZE + 256
ZERO_KEY = bytes(SHARD_KEY_SIZE)


class Kind(IntEnum):
    PROPOSE_NOTICE = 1    # body: [the unsigned anchor notice, [beacons of the void rounds it settles, ≤ 32]]
    PROPOSE_BEACON = 2    # body: [beacon draft (shard key zero, unsigned, listing the candidates), [their entry bytes]]
    SIGN_NOTICE = 3       # body: [unsigned notice, Ed25519 signature over the notice's sighash]
    RELEASE = 4           # body: [beacon draft, the signer's share of shard key r]  (co-signs the draft)
    SIGN_BEACON = 5       # body: [unsigned beacon with the reconstructed key, signature over its sighash]
    HEARTBEAT = 6         # body: [member's clock, unix s]: "I am up" every few seconds (liveness, §3.10)


SIGNING_KINDS = (Kind.SIGN_NOTICE, Kind.RELEASE, Kind.SIGN_BEACON)


@dataclass(frozen=True)
class CommitteeMsg:
    version: int
    chain_id: str
    kind: Kind
    round: int
    attempt: int
    signer: bytes
    body: bytes
    signature: bytes

    def __post_init__(self) -> None:
        check_int(self.version, COMMITTEE_VERSION, COMMITTEE_VERSION, "committee.version")
        check_chain_id(self.chain_id, "committee.chain_id")
        if not isinstance(self.kind, Kind):
            raise DecodeError("committee.kind: expected a Kind")
        check_int(self.round, 1, MAX_ROUND, "committee.round")
        check_int(self.attempt, 0, MAX_ATTEMPT, "committee.attempt")
        check_bytes(self.signer, 32, "committee.signer")
        check_bytes_max(self.body, MAX_BODY_SIZE, "committee.body")
        check_bytes(self.signature, 64, "committee.signature")

    def unsigned_fields(self) -> list[Any]:
        return [self.version, self.chain_id, int(self.kind), self.round, self.attempt, self.signer, self.body]

    @cached_property
    def sighash(self) -> bytes:
        return tagged_hash(COMMITTEE_TAG, pack(self.unsigned_fields()))

    def verify_signature(self) -> bool:
        return verify_sig(self.signer, self.sighash, self.signature)

    def encode(self) -> bytes:
        return pack([*self.unsigned_fields(), self.signature])

    @cached_property
    def id(self) -> bytes:
        return tagged_hash("popchain/committee-id", self.encode())

    @classmethod
    def decode(cls, data: bytes) -> CommitteeMsg:
        f = check_list(unpack(data, max_size=MAX_COMMITTEE_SIZE), 8, "committee message")
        check_int(f[2], 1, len(Kind), "committee.kind")
        return cls(f[0], f[1], Kind(f[2]), f[3], f[4], f[5], f[6], f[7])


def make_msg(keypair: Keypair, chain_id: str, kind: Kind, round: int, attempt: int, body: bytes) -> CommitteeMsg:
    unsigned = CommitteeMsg(COMMITTEE_VERSION, chain_id, kind, round, attempt, keypair.public, body, bytes(64))
    return replace(unsigned, signature=keypair.sign(unsigned.sighash))


def heartbeat(keypair: Keypair, chain_id: str, round: int, now_s: int) -> CommitteeMsg:
    """A member's "I am up" for round ``round`` (≥ 1): nodes count the members they heard from recently."""
    return make_msg(keypair, chain_id, Kind.HEARTBEAT, max(1, round), 0, pack([int(now_s)]))


def leader(keyholders: Sequence[bytes], round: int, attempt: int) -> bytes:
    """The proposer of (round, attempt): genesis keyholders (sorted) in turn, one step per failover."""
    return keyholders[(round + attempt) % len(keyholders)]


# ---------------------------------------------------------------- bodies


def draft_of(beacon: Beacon) -> Beacon:
    """The beacon's content without its key and signatures: what a RELEASE co-signs."""
    return replace(beacon, shard_key=ZERO_KEY, signatures=())


def notice_body(notice: AnchorNotice) -> bytes:
    return replace(notice, signatures=()).encode()


def parse_notice(raw: Any) -> AnchorNotice:
    if type(raw) is not bytes or len(raw) > MAX_NOTICE_SIZE:
        raise DecodeError("committee: notice must be bytes within the notice cap")
    notice = AnchorNotice.decode(raw)
    if notice.signatures:
        raise DecodeError("committee: a proposed notice carries no signatures")
    return notice


def parse_beacon(raw: Any, *, draft: bool) -> Beacon:
    if type(raw) is not bytes or len(raw) > MAX_BEACON_SIZE:
        raise DecodeError("committee: beacon must be bytes within the beacon cap")
    beacon = Beacon.decode(raw)
    if beacon.signatures or (draft and beacon.shard_key != ZERO_KEY):
        raise DecodeError("committee: a draft carries no key and no signatures")
    return beacon


@dataclass(frozen=True)
class Body:
    """A decoded body: the statement, plus entries (PROPOSE_BEACON), a share (RELEASE) or a signature."""
    notice: AnchorNotice | None = None
    beacon: Beacon | None = None          # the draft (PROPOSE_BEACON, RELEASE) or the full beacon (SIGN_BEACON)
    entries: tuple[Entry, ...] = ()
    beacons: tuple[Beacon, ...] = ()      # PROPOSE_NOTICE: beacons of void rounds in the notice's settlement
    share: bytes = b""
    sig: bytes = b""


def decode_body(msg: CommitteeMsg) -> Body:
    """Decode a message's body by kind; DecodeError on anything malformed."""
    kind = msg.kind
    if kind == Kind.HEARTBEAT:
        check_int(check_list(unpack(msg.body, max_size=16), 1, "committee heartbeat")[0], 0, 2**40,
                  "committee heartbeat clock")
        return Body()
    f = check_list(unpack(msg.body, max_size=MAX_BODY_SIZE), 2, f"committee {kind.name} body")
    if kind == Kind.PROPOSE_NOTICE:
        raws = check_list_max(f[1], MAX_CARRIED_BEACONS, "committee carried beacons")
        return Body(notice=parse_notice(f[0]), beacons=tuple(Beacon.decode(check_bytes_max(
            b, MAX_BEACON_SIZE, "committee carried beacon")) for b in raws))
    if kind == Kind.PROPOSE_BEACON:
        raws = check_list_max(f[1], MAX_BEACON_ENTRIES, "committee entries")
        entries = tuple(Entry.decode(check_bytes_max(e, MAX_ENTRY_SIZE, "committee entry")) for e in raws)
        return Body(beacon=parse_beacon(f[0], draft=True), entries=entries)
    if kind == Kind.SIGN_NOTICE:
        return Body(notice=parse_notice(f[0]), sig=check_bytes(f[1], 64, "committee sig"))
    if kind == Kind.RELEASE:
        return Body(beacon=parse_beacon(f[0], draft=True), share=check_bytes_max(f[1], MAX_SHARE_SIZE, "share"))
    beacon = parse_beacon(f[0], draft=False)
    return Body(beacon=beacon, sig=check_bytes(f[1], 64, "committee sig"))


def check_msg(msg: CommitteeMsg, chain_id: str, keyholders: Sequence[bytes]) -> Body:
    """The checks every node runs before relaying (cheap first): chain, a genesis keyholder signer, the envelope
    signature, a body that decodes and names the envelope's round, and an inner signature that verifies."""
    if msg.chain_id != chain_id:
        raise RuleError("bad-committee-msg", f"committee message for chain {msg.chain_id!r}")
    if msg.signer not in keyholders:
        raise RuleError("bad-committee-msg", "committee message signed by a key that is not a genesis keyholder")
    if not msg.verify_signature():
        raise RuleError("bad-committee-msg", "committee message signature does not verify")
    try:
        body = decode_body(msg)
    except DecodeError as exc:
        raise RuleError("bad-committee-msg", f"committee {msg.kind.name}: {exc}") from None
    stmt = body.notice or body.beacon
    if stmt is None:            # a heartbeat: its signature is all there is to check
        return body
    if stmt.round != msg.round or stmt.chain_id != chain_id:
        raise RuleError("bad-committee-msg", "committee body names another round or chain")
    if msg.kind == Kind.SIGN_NOTICE and not verify_sig(msg.signer, stmt.sighash, body.sig):
        raise RuleError("bad-committee-msg", "notice co-signature does not verify")
    if msg.kind == Kind.SIGN_BEACON and not verify_sig(msg.signer, stmt.sighash, body.sig):
        raise RuleError("bad-committee-msg", "beacon co-signature does not verify")
    if msg.kind == Kind.PROPOSE_BEACON:
        items = sorted(e.listing for e in body.entries)
        if tuple(items) != body.beacon.listed:  # type: ignore[union-attr]
            raise RuleError("bad-committee-msg", "proposal entries differ from the draft's listing")
    return body


# ---------------------------------------------------------------- evidence


def statement_of(msg: CommitteeMsg, body: Body) -> tuple[str, bytes] | None:
    """(class, content id) a signing message commits its signer to for its round, or None (proposals). A
    member signs at most one notice, one beacon draft (RELEASE) and one beacon (SIGN_BEACON: the draft's
    listing narrowed to E by the key, §3.3) per round."""
    if msg.kind == Kind.SIGN_NOTICE:
        return "notice", body.notice.sighash  # type: ignore[union-attr]
    if msg.kind == Kind.RELEASE:
        return "beacon", draft_of(body.beacon).sighash  # type: ignore[arg-type]
    if msg.kind == Kind.SIGN_BEACON:
        return "beacon-full", body.beacon.sighash  # type: ignore[union-attr]
    return None


@dataclass(frozen=True)
class Evidence:
    """Proof that ``signer`` misbehaved in ``round``: ``what`` is "equivocation" (two signed messages with
    different content of one class, ``first`` and ``second``), "dropped-entry" (its signed proposal, and a
    valid entry of that round a member held that the proposal left out although it ranked in), "bad-share"
    (its signed RELEASE whose share fails its proof against its public share key), "early-share" (a proven
    share of a shard not yet revealed, posted by anyone: consensus.protocol.release.Leak; ``round`` = the
    round it was seen in) or "missed-release" (a node saw no release of it in a round it should have)."""
    round: int
    signer: bytes
    what: str
    first: bytes
    second: bytes

    def encode(self) -> bytes:
        return pack([self.round, self.signer, self.what, self.first, self.second])

    @classmethod
    def decode(cls, data: bytes) -> Evidence:
        f = check_list(unpack(data, max_size=2 * MAX_COMMITTEE_SIZE + 128), 5, "evidence")
        return cls(check_int(f[0], 1, MAX_ROUND, "evidence.round"), check_bytes(f[1], 32, "evidence.signer"),
                   check_str(f[2], 32, "evidence.what"), check_bytes_max(f[3], MAX_COMMITTEE_SIZE, "evidence"),
                   check_bytes_max(f[4], MAX_COMMITTEE_SIZE, "evidence"))


class StatementBook:
    """First signing statement per (round, class, signer); a different second one is equivocation evidence.
    Bounded: the oldest ``max_rounds`` rounds are forgotten first (evidence once found is kept by the engine)."""

    def __init__(self, max_rounds: int = 32) -> None:
        self.max_rounds = max_rounds
        self._first: OrderedDict[int, dict[tuple[str, bytes], tuple[bytes, bytes]]] = OrderedDict()

    def observe(self, msg: CommitteeMsg, body: Body) -> Evidence | None:
        stmt = statement_of(msg, body)
        if stmt is None:
            return None
        cls, content = stmt
        seen = self._first.get(msg.round)
        if seen is None:
            seen = self._first[msg.round] = {}
            while len(self._first) > self.max_rounds:
                self._first.pop(min(self._first))
        first = seen.get((cls, msg.signer))
        if first is None:
            seen[(cls, msg.signer)] = (content, msg.encode())
            return None
        if first[0] == content:
            return None
        return Evidence(msg.round, msg.signer, "equivocation", first[1], msg.encode())


def verify_evidence(ev: Evidence, chain_id: str, keyholders: Sequence[bytes]) -> bool:
    """True iff an equivocation evidence proves itself: two valid messages of one signer, round and class with
    different content (anyone can check it; a dropped-entry record is a member's local observation)."""
    if ev.what != "equivocation":
        return False
    try:
        a, b = CommitteeMsg.decode(ev.first), CommitteeMsg.decode(ev.second)
        sa = statement_of(a, check_msg(a, chain_id, keyholders))
        sb = statement_of(b, check_msg(b, chain_id, keyholders))
    except (DecodeError, RuleError):
        return False
    return (a.signer == b.signer == ev.signer and a.round == b.round == ev.round and sa is not None
            and sb is not None and sa[0] == sb[0] and sa[1] != sb[1])
