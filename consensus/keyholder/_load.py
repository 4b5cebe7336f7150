"""Loading a keyholder from its secret file (PROTOCOL §3.10, §3.14): ``load_member`` builds the committee
``Member`` of a member file with its ShareSource (``GroupShares``: its share s_i of the committee's secret, the
round's point found by ``engine_locator``), or returns None when the file is a single keyholder's
(``load_keyholder``).

What it does NOT do: decide when a share goes out (the Member), or the arithmetic (consensus.protocol.release).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from chain.encoding import unpack
from chain.errors import DecodeError, RuleError
from consensus.engine import Engine
from consensus.keyholder._files import (
    MAX_FILE_SIZE,
    MEMBER_VERSION,
    MemberSecret,
    check_member,
    load_keyholder_file,
    load_member_file,
)
from consensus.keyholder._member import Member
from consensus.keyholder._single import Keyholder
from consensus.protocol.dkg import CommitteeKey
from consensus.protocol.release import (
    Partial,
    Release,
    SealedShard,
    check_partial,
    combine,
    ledger_point,
    make_partial,
    shard_key_of,
)

__all__ = ["GroupShares", "Locate", "engine_locator", "load_keyholder", "load_member"]

# round r -> (the round's point, the sealed key of a data shard or None)
Locate = Callable[[int], tuple[bytes, SealedShard | None]]


def engine_locator(engine: Engine) -> Locate:
    """Round r → its point (§3.14), from the (task, shard) notice r names on its anchor (§3.13 fold); a ledger
    round's (an idle notice, issue 21) is the ledger point of (r, its anchor)."""
    def locate(r: int) -> tuple[bytes, SealedShard | None]:
        notice = engine.notice(r)
        if notice is not None and notice.idle:
            return ledger_point(engine.genesis.hash, r, notice.anchor_hash), None
        anchor = engine.store.get_header(notice.anchor_hash) if notice is not None else None
        if notice is None or anchor is None:
            raise RuleError("missing-activation", f"round {r} serves no shard known here (yet)")
        book = engine.book
        task = book.advance(book.registry_at(anchor), anchor, r, notice.activations).before.tasks[notice.task_id]
        return book.round_secret(task, notice.shard_index)
    return locate


class GroupShares:
    """A committee member's ShareSource (consensus.keyholder.Member): its partial of each round's point with
    its proof, the check of another member's (members 0-based there, 1-based Shamir x here), and the
    combination of t into the shard key and the beacon's release."""

    def __init__(self, committee: CommitteeKey, genesis_hash: bytes, secret: MemberSecret, locate: Locate) -> None:
        self.committee = committee
        self.genesis_hash = genesis_hash
        self.secret = secret
        self.locate = locate
        self._mine: dict[int, bytes] = {}

    def holds(self, _shard: bytes) -> bool:
        """A member's one share covers every shard the committee will ever reveal: nothing to install."""
        return True

    def share_for(self, round: int) -> bytes:
        hit = self._mine.get(round)
        if hit is None:
            point, _ = self.locate(round)
            hit = make_partial(self.committee, self.genesis_hash, self.secret.member, self.secret.share, point,
                               os.urandom).encode()
            self._mine = {r: v for r, v in self._mine.items() if r + 4 > round}
            self._mine[round] = hit
        return hit

    def _checked(self, member: int, round: int, share: bytes) -> Partial:
        try:
            partial = Partial.decode(share)
        except DecodeError as exc:
            raise RuleError("bad-key-share", f"member {member + 1}'s share: {exc}") from None
        if partial.member != member + 1:
            raise RuleError("bad-key-share", f"a share of member {partial.member} sent as member {member + 1}'s")
        point, _ = self.locate(round)
        check_partial(self.committee, self.genesis_hash, point, partial)
        return partial

    def check_share(self, member: int, round: int, share: bytes) -> None:
        self._checked(member, round, share)

    def combine(self, round: int, shares: Mapping[int, bytes]) -> bytes:
        """Round r's shard key from ≥ t checked shares."""
        point, sealed = self.locate(round)
        sigma = combine([Partial.decode(s) for s in shares.values()], self.committee.threshold)
        return shard_key_of(self.committee, point, sigma, sealed)

    def release(self, round: int, shares: Mapping[int, bytes]) -> bytes:
        """The beacon's release: the t lowest members' partials."""
        return Release.of([Partial.decode(s) for s in shares.values()], self.committee.threshold).encode()


def load_member(secret_file: bytes, engine: Engine, datadir: Path | None = None) -> Member | None:
    """The committee member a keyholder secret file makes, or None when it is a single keyholder's file
    (``load_keyholder``). A member file is checked against genesis first (RuleError("bad-key-share"))."""
    g = engine.genesis
    raw = unpack(secret_file, max_size=MAX_FILE_SIZE)
    if isinstance(raw, list) and raw and raw[0] == MEMBER_VERSION:
        secret = load_member_file(secret_file)
        check_member(secret, g)
        assert g.committee is not None
        return Member(engine, secret.keypair, GroupShares(g.committee, g.hash, secret, engine_locator(engine)))
    if g.committee is not None:
        raise ValueError("this chain's keyholders are a committee: run a keyholder with its member file "
                         "(written by 'popchain keyholder dkg')")
    return None


def load_keyholder(secret_file: bytes, engine: Engine) -> Keyholder:
    """The single keyholder a secret file makes (its keys checked against the engine's genesis): where
    ``load_member`` returned None."""
    secret, keypairs = load_keyholder_file(secret_file, engine.genesis)
    return Keyholder(engine, secret, keypairs)
