"""The keyholders' distributed key generation (PROTOCOL §3.14): ceremony messages, the public rule that turns a
transcript into the committee's key, and the committee key record genesis carries.

A Pedersen/Feldman DKG (each member deals a Feldman-verified sharing of a random secret; the committee's secret
is the sum of the qualified dealers' secrets, which no party ever holds) with the FROST proof of knowledge of
each dealer's constant term (no rogue-key contribution), shares encrypted member to member inside the public
transcript, and *publicly verifiable* complaints (a member that received a bad share reveals the Diffie–Hellman
key of that ciphertext with a Chaum–Pedersen proof, so anyone can decrypt it and check it against the dealer's
commitments: no dealer response round, no trust in the complainer). Four phases, every message signed by its
member's genesis key (``DkgMsg``):

1. JOIN     ``[encryption point, H(commitments)]`` — a fresh encryption key, and the member's polynomial fixed
            before it sees anyone's commitments (only withholding can still bias the key, one bit per cheater).
2. DEAL     ``[[A_0 … A_{t−1}], proof of knowledge of a_0, ephemeral point E, [ciphertext to member 1 … n]]`` —
            A_k = a_k·G; member j's share f(j) is XORed with H("popchain/dkg-pad", session, i, j, E, e·enc_j).
3. COMPLAIN ``[[dealer, K, proof]…]`` — for each dealer whose share does not match its commitments.
4. SIGN     ``[signature over the committee key record]`` — once every member agrees on it.

``Transcript.result()`` is the rule anyone applies to phases 1–3: QUAL = the dealers whose deal is well formed
(t valid points matching their JOIN commitment, a valid proof of knowledge, n ciphertexts) and against whom no
complaint is *valid* (a complaint that decrypts to a share matching the commitments is ignored); the group
commitments C_k = Σ_{i∈QUAL} A_{i,k}; member j's public share key Y_j = Σ_k j^k C_k and its secret share
s_j = Σ_{i∈QUAL} f_i(j) (only j can compute it). ``CommitteeKey`` is the result signed by all n members; a
genesis of version 3 carries it (``check`` refuses anything else).

What it does NOT do: transport (node.tools.dkg_board / dkg_client), keep the member's secrets (the
participant, consensus.keyholder.DkgMember), or prove that ciphertexts to *other* members decrypt correctly
(a member checks its own and complains; a publicly verifiable secret sharing would need more).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from chain.crypto import tagged_hash, verify_sig
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
from consensus.protocol.group import (
    BASE,
    GroupError,
    L,
    base_mul,
    check_point,
    decode_proof,
    encode_proof,
    eval_commitments,
    sum_points,
    verify_dl,
    verify_dleq,
)
from consensus.protocol.messages import MAX_KEYHOLDERS

__all__ = [
    "COMPLAIN", "DEAL", "DKG_VERSION", "JOIN", "KEY_TAG", "MAX_DKG_MSG_SIZE", "MAX_KEY_SIZE", "SIGN",
    "CommitteeKey", "Complaint", "Deal", "DkgMsg", "Join", "Session", "Transcript", "commit_of", "complaint_context",
    "decode_committee_key", "pad", "pok_context",
]

DKG_VERSION = 1
JOIN, DEAL, COMPLAIN, SIGN = 1, 2, 3, 4
PHASES = (JOIN, DEAL, COMPLAIN, SIGN)
SESSION_TAG = "popchain/dkg-session"
MSG_TAG = "popchain/dkg-msg"
KEY_TAG = "popchain/committee-key"
TRANSCRIPT_TAG = "popchain/dkg-transcript"
MAX_LABEL = 64
MAX_DKG_MSG_SIZE = 256 + MAX_KEYHOLDERS * 140
MAX_KEY_SIZE = 256 + MAX_KEYHOLDERS * (32 + 3 + 96 + 8)


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def _bad(message: str) -> RuleError:
    return RuleError("bad-committee-key", message)


def check_committee_shape(n: int, threshold: int) -> None:
    """A committee is 1 … 16 members with a majority threshold (2t > n: two conflicting statements for one
    round cannot both gather t signatures, since any two signer sets of that size share a member)."""
    if not 1 <= n <= MAX_KEYHOLDERS:
        raise ValueError(f"a committee has 1 to {MAX_KEYHOLDERS} members, not {n}")
    if not 1 <= threshold <= n or 2 * threshold <= n:
        raise ValueError(f"threshold {threshold} of {n} is not a majority (need n/2 < t <= n)")


# ---------------------------------------------------------------- the session


@dataclass(frozen=True)
class Session:
    """What a ceremony is about: the members (their genesis Ed25519 keys, sorted), the threshold, a label and a
    fresh nonce (so no message of another ceremony can be replayed into this one). Every member checks the
    members and the threshold against what it was told out of band before it joins."""
    label: str
    keyholders: tuple[bytes, ...]
    threshold: int
    nonce: bytes

    def __post_init__(self) -> None:
        check_str(self.label, MAX_LABEL, "dkg.label")
        for k in self.keyholders:
            check_bytes(k, 32, "dkg.keyholder")
        if list(self.keyholders) != sorted(set(self.keyholders)):
            raise DecodeError("dkg.keyholders: must be sorted and distinct")
        try:
            check_committee_shape(len(self.keyholders), self.threshold)
        except ValueError as exc:
            raise DecodeError(f"dkg: {exc}") from None
        check_bytes(self.nonce, 32, "dkg.nonce")

    @property
    def n(self) -> int:
        return len(self.keyholders)

    def encode(self) -> bytes:
        return pack([DKG_VERSION, self.label, list(self.keyholders), self.threshold, self.nonce])

    @cached_property
    def id(self) -> bytes:
        return tagged_hash(SESSION_TAG, self.encode())

    @classmethod
    def decode(cls, data: bytes) -> Session:
        f = check_list(unpack(data, max_size=128 + MAX_KEYHOLDERS * 35), 5, "dkg session")
        check_int(f[0], DKG_VERSION, DKG_VERSION, "dkg session version")
        keys = tuple(check_bytes(k, 32, "dkg.keyholder") for k in check_list_max(f[2], MAX_KEYHOLDERS, "keyholders"))
        return cls(check_str(f[1], MAX_LABEL, "dkg.label"), keys, check_int(f[3], 1, MAX_KEYHOLDERS, "t"),
                   check_bytes(f[4], 32, "dkg.nonce"))


def commit_of(session_id: bytes, member: int, commitments: Sequence[bytes]) -> bytes:
    return tagged_hash("popchain/dkg-commit", session_id, _u32(member), *commitments)


def pok_context(session_id: bytes, member: int) -> bytes:
    return tagged_hash("popchain/dkg-pok", session_id, _u32(member))


def complaint_context(session_id: bytes, dealer: int, member: int) -> bytes:
    return tagged_hash("popchain/dkg-complaint", session_id, _u32(dealer), _u32(member))


def pad(session_id: bytes, dealer: int, member: int, ephemeral: bytes, shared: bytes) -> bytes:
    """The one-time pad of dealer→member's share: H(session, dealer, member, E, e·enc_member)."""
    return tagged_hash("popchain/dkg-pad", session_id, _u32(dealer), _u32(member), ephemeral, shared)


def xor32(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------- messages


@dataclass(frozen=True)
class DkgMsg:
    """``[1, session id, phase, member (1-based), body, signature]``, signed by keyholder ``member`` over
    H("popchain/dkg-msg", first five fields)."""
    version: int
    session: bytes
    phase: int
    member: int
    body: bytes
    signature: bytes

    def unsigned(self) -> list[Any]:
        return [self.version, self.session, self.phase, self.member, self.body]

    @cached_property
    def sighash(self) -> bytes:
        return tagged_hash(MSG_TAG, pack(self.unsigned()))

    def encode(self) -> bytes:
        return pack([*self.unsigned(), self.signature])

    @classmethod
    def decode(cls, data: bytes) -> DkgMsg:
        f = check_list(unpack(data, max_size=MAX_DKG_MSG_SIZE), 6, "dkg message")
        check_int(f[0], DKG_VERSION, DKG_VERSION, "dkg message version")
        return cls(DKG_VERSION, check_bytes(f[1], 32, "dkg.session"), check_int(f[2], JOIN, SIGN, "dkg.phase"),
                   check_int(f[3], 1, MAX_KEYHOLDERS, "dkg.member"), check_bytes_max(f[4], MAX_DKG_MSG_SIZE, "dkg.body"),
                   check_bytes(f[5], 64, "dkg.signature"))

    def check(self, session: Session) -> None:
        """DecodeError unless it belongs to ``session`` and its member's key signed it."""
        if self.session != session.id:
            raise DecodeError("dkg message of another session")
        if not 1 <= self.member <= session.n:
            raise DecodeError(f"dkg message of member {self.member}: the committee has {session.n}")
        if not verify_sig(session.keyholders[self.member - 1], self.sighash, self.signature):
            raise DecodeError(f"dkg message of member {self.member}: signature does not verify")


@dataclass(frozen=True)
class Join:
    enc: bytes          # the member's encryption point for this ceremony
    commit: bytes       # H(its Feldman commitments)

    def encode(self) -> bytes:
        return pack([self.enc, self.commit])

    @classmethod
    def decode(cls, data: bytes) -> Join:
        f = check_list(unpack(data, max_size=128), 2, "dkg join")
        return cls(check_point(f[0], "dkg.join.enc"), check_bytes(f[1], 32, "dkg.join.commit"))


@dataclass(frozen=True)
class Deal:
    commitments: tuple[bytes, ...]      # A_0 … A_{t−1}
    pok: tuple[int, int]                # proof of knowledge of a_0
    ephemeral: bytes                    # E = e·G
    ciphertexts: tuple[bytes, ...]      # to members 1 … n, 32 bytes each

    def encode(self) -> bytes:
        return pack([list(self.commitments), encode_proof(self.pok), self.ephemeral, list(self.ciphertexts)])

    @classmethod
    def decode(cls, data: bytes, session: Session) -> Deal:
        f = check_list(unpack(data, max_size=MAX_DKG_MSG_SIZE), 4, "dkg deal")
        commitments = tuple(check_point(c, "dkg.deal.commitment")
                            for c in check_list(f[0], session.threshold, "dkg.deal.commitments"))
        cts = tuple(check_bytes(c, 32, "dkg.deal.ciphertext") for c in check_list(f[3], session.n, "dkg.deal.cts"))
        return cls(commitments, decode_proof(f[1], "dkg.deal.pok"), check_point(f[2], "dkg.deal.ephemeral"), cts)


Complaint = tuple[int, bytes, tuple[int, int]]      # (dealer, K = enc_member·E_dealer, DLEQ proof)


def encode_complaints(items: Sequence[Complaint]) -> bytes:
    return pack([[d, k, encode_proof(p)] for d, k, p in sorted(items)])


def decode_complaints(data: bytes, session: Session) -> tuple[Complaint, ...]:
    out: list[Complaint] = []
    for item in check_list_max(unpack(data, max_size=MAX_DKG_MSG_SIZE), session.n, "dkg complaints"):
        f = check_list(item, 3, "dkg complaint")
        out.append((check_int(f[0], 1, session.n, "dkg.complaint.dealer"), check_point(f[1], "dkg.complaint.K"),
                    decode_proof(f[2], "dkg.complaint.proof")))
    if [d for d, _, _ in out] != sorted({d for d, _, _ in out}):
        raise DecodeError("dkg complaints: sorted by dealer, one per dealer")
    return tuple(out)


# ---------------------------------------------------------------- the public rule


@dataclass(frozen=True)
class Outcome:
    """What phases 1–3 decide: the qualified dealers, the group commitments, who was disqualified and why,
    and the transcript hash every member signs with the key."""
    qual: tuple[int, ...]
    commitments: tuple[bytes, ...]
    disqualified: dict[int, str]
    false_complaints: tuple[tuple[int, int], ...]     # (complainer, dealer) whose complaint did not hold
    transcript_hash: bytes


class Transcript:
    """The signed messages of phases 1–3 as one member (or an auditor) saw them, checked one by one."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.msgs: dict[tuple[int, int], DkgMsg] = {}

    def add(self, msg: DkgMsg) -> bool:
        """Keep ``msg`` (first per (phase, member)); DecodeError if it is not a valid message of the session.
        True if new."""
        msg.check(self.session)
        key = (msg.phase, msg.member)
        if key in self.msgs:
            return False
        self.msgs[key] = msg
        return True

    def have(self, phase: int) -> list[int]:
        return sorted(m for p, m in self.msgs if p == phase)

    def joins(self) -> dict[int, Join]:
        out = {}
        for m in self.have(JOIN):
            try:
                out[m] = Join.decode(self.msgs[(JOIN, m)].body)
            except DecodeError:
                continue
        return out

    def deal(self, member: int) -> Deal | None:
        msg = self.msgs.get((DEAL, member))
        if msg is None:
            return None
        try:
            return Deal.decode(msg.body, self.session)
        except DecodeError:
            return None

    def hash(self, phases: Sequence[int] = (JOIN, DEAL, COMPLAIN)) -> bytes:
        parts = [self.msgs[k].encode() for k in sorted(self.msgs) if k[0] in phases]
        return tagged_hash(TRANSCRIPT_TAG, self.session.id, *parts)

    def _deal_problem(self, i: int, joins: Mapping[int, Join]) -> str | None:
        s = self.session
        if i not in joins:
            return "no valid JOIN"
        deal = self.deal(i)
        if deal is None:
            return "no valid DEAL"
        if commit_of(s.id, i, deal.commitments) != joins[i].commit:
            return "its commitments differ from the ones it committed to when it joined"
        if not verify_dl(deal.pok, deal.commitments[0], pok_context(s.id, i)):
            return "its proof of knowledge of its secret does not verify"
        return None

    def share_of(self, dealer: int, member: int, shared: bytes) -> int | None:
        """Dealer's share to ``member`` decrypted with the DH key ``shared``, or None if it is no scalar."""
        deal = self.deal(dealer)
        assert deal is not None
        value = int.from_bytes(xor32(deal.ciphertexts[member - 1],
                                     pad(self.session.id, dealer, member, deal.ephemeral, shared)), "little")
        return value if value < L else None

    def share_ok(self, dealer: int, member: int, value: int | None) -> bool:
        deal = self.deal(dealer)
        if deal is None or value is None or value == 0:
            return False
        try:
            return base_mul(value) == eval_commitments(deal.commitments, member)
        except GroupError:
            return False

    def outcome(self) -> Outcome:
        """The public rule (see the module docstring). Deterministic in the transcript."""
        s = self.session
        joins = self.joins()
        disq: dict[int, str] = {}
        for i in range(1, s.n + 1):
            problem = self._deal_problem(i, joins)
            if problem is not None:
                disq[i] = problem
        false: list[tuple[int, int]] = []
        for j in self.have(COMPLAIN):
            if j not in joins:
                continue
            try:
                items = decode_complaints(self.msgs[(COMPLAIN, j)].body, s)
            except DecodeError:
                continue
            for dealer, shared, proof in items:
                if dealer in disq or dealer == j:
                    continue
                deal = self.deal(dealer)
                assert deal is not None
                if not verify_dleq(proof, BASE, joins[j].enc, deal.ephemeral, shared,
                                   complaint_context(s.id, dealer, j), trusted=3):
                    false.append((j, dealer))          # a complaint that proves nothing
                    continue
                if self.share_ok(dealer, j, self.share_of(dealer, j, shared)):
                    false.append((j, dealer))          # the share was fine
                else:
                    disq[dealer] = f"member {j} showed that its share does not match the dealer's commitments"
        qual = tuple(i for i in range(1, s.n + 1) if i not in disq)
        commitments: tuple[bytes, ...] = ()
        if qual:
            deals = [self.deal(i) for i in qual]
            commitments = tuple(sum_points([d.commitments[k] for d in deals if d is not None])
                                for k in range(s.threshold))
        return Outcome(qual, commitments, disq, tuple(false), self.hash())


# ---------------------------------------------------------------- the committee key (what genesis carries)


@dataclass(frozen=True)
class CommitteeKey:
    """The ceremony's public result: ``[1, session id, t, [keyholder…], [C_0 … C_{t−1}], [qualified dealer…],
    transcript hash, [[keyholder, signature]…]]``, signed by every keyholder over H("popchain/committee-key",
    first seven fields). The group key is Y = C_0 = s·G; member i's public share key is Y_i = Σ_k i^k·C_k =
    s_i·G. Nobody knows s."""
    session: bytes
    threshold: int
    keyholders: tuple[bytes, ...]
    commitments: tuple[bytes, ...]
    qual: tuple[int, ...]
    transcript_hash: bytes
    signatures: tuple[tuple[bytes, bytes], ...] = ()

    def unsigned(self) -> list[Any]:
        return [DKG_VERSION, self.session, self.threshold, list(self.keyholders), list(self.commitments),
                list(self.qual), self.transcript_hash]

    @cached_property
    def sighash(self) -> bytes:
        return tagged_hash(KEY_TAG, pack(self.unsigned()))

    @cached_property
    def hash(self) -> bytes:
        """The record's id (signatures included): what a member file names."""
        return tagged_hash(KEY_TAG + "/id", self.encode())

    def encode(self) -> bytes:
        return pack([*self.unsigned(), [list(s) for s in self.signatures]])

    @property
    def n(self) -> int:
        return len(self.keyholders)

    @property
    def group_key(self) -> bytes:
        return self.commitments[0]

    @cached_property
    def _share_keys(self) -> tuple[bytes, ...]:
        return tuple(eval_commitments(self.commitments, i) for i in range(1, self.n + 1))

    def share_key(self, member: int) -> bytes:
        """Y_member (1-based) = s_member·G."""
        if not 1 <= member <= self.n:
            raise ValueError(f"member {member} of {self.n}")
        return self._share_keys[member - 1]

    def check(self) -> None:
        """RuleError("bad-committee-key") unless the record is well formed and every keyholder signed it."""
        try:
            check_committee_shape(self.n, self.threshold)
        except ValueError as exc:
            raise _bad(str(exc)) from None
        if list(self.keyholders) != sorted(set(self.keyholders)):
            raise _bad("keyholders must be sorted and distinct")
        if len(self.commitments) != self.threshold:
            raise _bad(f"{len(self.commitments)} commitments for threshold {self.threshold}")
        if list(self.qual) != sorted(set(self.qual)) or not all(1 <= q <= self.n for q in self.qual):
            raise _bad("qualified dealers must be sorted member indices")
        if len(self.qual) < self.threshold:
            raise _bad(f"{len(self.qual)} qualified dealers, fewer than the threshold {self.threshold}: a "
                       f"coalition of t − 1 could know the key")
        signers = {k: s for k, s in self.signatures}
        if sorted(signers) != list(self.keyholders) or len(signers) != len(self.signatures):
            raise _bad("every keyholder must sign the committee key, once")
        for k in self.keyholders:
            if not verify_sig(k, self.sighash, signers[k]):
                raise _bad(f"keyholder {k.hex()[:16]}'s signature on the committee key does not verify")


def decode_committee_key(data: bytes) -> CommitteeKey:
    """Decode and check a committee key record (DecodeError on bytes, RuleError("bad-committee-key") on
    content)."""
    f = check_list(unpack(data, max_size=MAX_KEY_SIZE), 8, "committee key")
    check_int(f[0], DKG_VERSION, DKG_VERSION, "committee key version")
    keys = tuple(check_bytes(k, 32, "committee key keyholder")
                 for k in check_list_max(f[3], MAX_KEYHOLDERS, "committee key keyholders"))
    try:
        commitments = tuple(check_point(c, "committee key commitment")
                            for c in check_list_max(f[4], MAX_KEYHOLDERS, "committee key commitments"))
    except GroupError as exc:
        raise _bad(str(exc)) from None
    qual = tuple(check_int(q, 1, MAX_KEYHOLDERS, "committee key qual")
                 for q in check_list_max(f[5], MAX_KEYHOLDERS, "committee key qual"))
    sigs = tuple((check_bytes(p[0], 32, "signer"), check_bytes(p[1], 64, "signature"))
                 for p in (check_list(x, 2, "committee key signature")
                           for x in check_list_max(f[7], MAX_KEYHOLDERS, "committee key signatures")))
    key = CommitteeKey(check_bytes(f[1], 32, "committee key session"), check_int(f[2], 1, MAX_KEYHOLDERS, "t"),
                       keys, commitments, qual, check_bytes(f[6], 32, "committee key transcript"), sigs)
    if key.encode() != data:
        raise DecodeError("committee key: non-canonical encoding")
    key.check()
    return key
