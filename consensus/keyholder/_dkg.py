"""One keyholder's side of the distributed key generation (PROTOCOL §3.14; the messages and the public rule are
consensus.protocol.dkg's): it holds its random polynomial and its ceremony encryption key in memory, writes
the four messages, checks the shares dealt to it, and ends with its share s_i of a secret nobody holds.

``DkgMember(session, keypair)`` → ``join()`` → ``deal(transcript)`` (every JOIN in) → ``complain(transcript)``
(every DEAL in, or the phase timed out) → ``sign(transcript)`` (COMPLAIN phase over) gives the SIGN message and
the unsigned committee key → ``finish(key, signatures)`` the signed ``CommitteeKey``; ``share`` is the
member's secret share (checked: s_i·G = Y_i). A crash before the end loses the polynomial on purpose: the
ceremony is run again with a fresh session.

What it does NOT do: transport or timing (node.tools.dkg_client), or write files (the caller writes the member
file, consensus.keyholder.member_file_v3).
"""
from __future__ import annotations

import os
from collections.abc import Callable

from chain.crypto import Keypair
from chain.encoding import pack
from chain.errors import PopError
from consensus.protocol.dkg import (
    COMPLAIN,
    DEAL,
    DKG_VERSION,
    JOIN,
    SIGN,
    CommitteeKey,
    Deal,
    DkgMsg,
    Join,
    Outcome,
    Session,
    Transcript,
    commit_of,
    complaint_context,
    encode_complaints,
    pad,
    pok_context,
    xor32,
)
from consensus.protocol.group import (
    BASE,
    L,
    base_mul,
    mul,
    prove_dl,
    prove_dleq,
    random_scalar,
    scalar_bytes,
)

__all__ = ["DkgError", "DkgMember"]

Rng = Callable[[int], bytes]


class DkgError(PopError):
    """The ceremony cannot go on (a member missing, a key this member cannot accept); the message says who."""


class DkgMember:
    """This keyholder in one ceremony (see the module docstring)."""

    def __init__(self, session: Session, keypair: Keypair, rng: Rng = os.urandom) -> None:
        if keypair.public not in session.keyholders:
            raise DkgError("this key is not one of the ceremony's keyholders")
        self.session = session
        self.keypair = keypair
        self.me = session.keyholders.index(keypair.public) + 1
        self.rng = rng
        self._enc = random_scalar(rng)
        self._coeffs = [random_scalar(rng) for _ in range(session.threshold)]
        self.commitments = tuple(base_mul(a) for a in self._coeffs)
        self.share: int | None = None
        self.outcome: Outcome | None = None

    def _msg(self, phase: int, body: bytes) -> DkgMsg:
        unsigned = DkgMsg(DKG_VERSION, self.session.id, phase, self.me, body, bytes(64))
        return DkgMsg(DKG_VERSION, self.session.id, phase, self.me, body, self.keypair.sign(unsigned.sighash))

    def _f(self, x: int) -> int:
        acc = 0
        for c in reversed(self._coeffs):
            acc = (acc * x + c) % L
        return acc

    # ------------------------------------------------------------ phases

    def join(self) -> DkgMsg:
        return self._msg(JOIN, Join(base_mul(self._enc), commit_of(self.session.id, self.me, self.commitments))
                         .encode())

    def deal(self, transcript: Transcript) -> DkgMsg:
        """Encrypt f(j) to every member j (needs every member's JOIN: their encryption keys)."""
        s = self.session
        joins = transcript.joins()
        missing = [j for j in range(1, s.n + 1) if j not in joins]
        if missing:
            raise DkgError(f"members {missing} did not join: the ceremony needs all {s.n}")
        e = random_scalar(self.rng)
        ephemeral = base_mul(e)
        cts = tuple(xor32(scalar_bytes(self._f(j)), pad(s.id, self.me, j, ephemeral, mul(e, joins[j].enc)))
                    for j in range(1, s.n + 1))
        pok = prove_dl(self._coeffs[0], self.commitments[0], pok_context(s.id, self.me), self.rng)
        return self._msg(DEAL, Deal(self.commitments, pok, ephemeral, cts).encode())

    def _received(self, transcript: Transcript, dealer: int) -> tuple[bytes, int | None]:
        """(DH key, decrypted share) of ``dealer``'s ciphertext to this member."""
        deal = transcript.deal(dealer)
        assert deal is not None
        shared = mul(self._enc, deal.ephemeral)
        return shared, transcript.share_of(dealer, self.me, shared)

    def complain(self, transcript: Transcript) -> DkgMsg:
        """A publicly verifiable complaint against every dealer whose share to this member is wrong."""
        s = self.session
        joins = transcript.joins()
        items = []
        for dealer in transcript.have(DEAL):
            if dealer == self.me or transcript.deal(dealer) is None or dealer not in joins:
                continue
            shared, value = self._received(transcript, dealer)
            if not transcript.share_ok(dealer, self.me, value):
                deal = transcript.deal(dealer)
                assert deal is not None
                proof = prove_dleq(self._enc, BASE, joins[self.me].enc, deal.ephemeral, shared,
                                   complaint_context(s.id, dealer, self.me), self.rng)
                items.append((dealer, shared, proof))
        return self._msg(COMPLAIN, encode_complaints(items))

    def sign(self, transcript: Transcript) -> tuple[DkgMsg, CommitteeKey]:
        """Apply the public rule, compute this member's share of the qualified dealers' secrets, check it
        against the group commitments, and sign the committee key record."""
        s = self.session
        out = transcript.outcome()
        self.outcome = out
        if len(out.qual) < s.threshold:
            raise DkgError(f"only {len(out.qual)} dealers qualified ({out.disqualified}): fewer than the "
                           f"threshold {s.threshold}")
        total = 0
        for dealer in out.qual:
            _, value = self._received(transcript, dealer)
            if value is None or not transcript.share_ok(dealer, self.me, value):
                raise DkgError(f"dealer {dealer}'s share to member {self.me} is wrong and was not disqualified "
                               f"(this member's complaint is missing from the transcript)")
            total = (total + value) % L
        key = CommitteeKey(s.id, s.threshold, s.keyholders, out.commitments, out.qual, out.transcript_hash)
        if total == 0 or base_mul(total) != key.share_key(self.me):
            raise DkgError("this member's share does not match the group commitments")
        self.share = total
        return self._msg(SIGN, pack([self.keypair.sign(key.sighash)])), key

    def finish(self, key: CommitteeKey, signatures: dict[bytes, bytes]) -> CommitteeKey:
        """The record with every keyholder's signature (RuleError("bad-committee-key") if one is missing or
        wrong: then the members did not agree on one transcript)."""
        signed = CommitteeKey(key.session, key.threshold, key.keyholders, key.commitments, key.qual,
                              key.transcript_hash, tuple(sorted(signatures.items())))
        signed.check()
        return signed
