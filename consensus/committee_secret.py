"""A committee member's secret material and its loading (PROTOCOL §3.10, §3.13): the ``ShareSource`` a
consensus.committee.Member releases, checks and combines shares with, and ``load_member`` (which secret file
makes a committee member, which one the single-process keyholder).

What it does NOT do: decide when a share goes out (consensus.committee), or the sharing arithmetic
(consensus.shares).
"""
from __future__ import annotations

from collections.abc import Mapping

from chain.encoding import unpack
from chain.errors import DecodeError, RuleError
from consensus.committee import Member
from consensus.engine import Engine
from consensus.genesis import Genesis
from consensus.keyholder import load_keyholder_file
from consensus.member import MAX_FILE_SIZE, MEMBER_VERSION, MemberSecret, check_member, decode_member
from consensus.shares import KeyShare, check_share, combine_shares
from ml.shards import SecretTask


class WholeKeyShares:
    """Secret material of a member that holds the whole key (a version-1 keyholder file with one signing key):
    its "share" is the key itself. Kept for committees dealt before key shares existed; a real committee
    member holds Shamir shares (consensus.shares) and never a whole key."""

    def __init__(self, secret: SecretTask) -> None:
        self.secret = secret

    def share_for(self, round: int) -> bytes:
        return self.secret.key(round)

    def check_share(self, member: int, round: int, share: bytes) -> None:
        if share != self.secret.key(round):
            raise RuleError("bad-key-share", f"member {member + 1}'s share of round {round} is not the key")

    def combine(self, round: int, shares: Mapping[int, bytes]) -> bytes:
        return self.secret.key(round)


class MemberShares:
    """A committee member's Shamir shares (consensus.member.MemberSecret of a version-2 member file): it
    releases its share of shard key r, checks others' shares against the genesis share commitments
    (consensus.shares.check_share: RuleError("bad-key-share")) and combines t checked shares into the key."""

    def __init__(self, secret: MemberSecret, genesis: Genesis) -> None:
        self.secret = secret
        self.genesis = genesis
        assert genesis.committee is not None
        self.material = genesis.committee

    def _shard(self, round: int) -> bytes:
        commitments = self.genesis.task.commitments
        if not 1 <= round <= len(commitments):
            raise RuleError("bad-key-share", f"round {round} has no genesis shard")
        return commitments[round - 1]

    def share_for(self, round: int) -> bytes:
        share = self.secret.share_for(self._shard(round))
        if share is None:
            raise RuleError("bad-key-share", f"this member holds no share of round {round}'s shard")
        return share.encode()

    def check_share(self, member: int, round: int, share: bytes) -> None:
        try:
            ks = KeyShare.decode(share)
        except DecodeError as exc:
            raise RuleError("bad-key-share", f"share does not decode: {exc}") from None
        if ks.member != member + 1:
            raise RuleError("bad-key-share", f"a share of member {ks.member} released by member {member + 1}")
        check_share(ks, self.material, self.genesis.keyholders, shard_commitment=self._shard(round),
                    leaf=round - 1)

    def combine(self, round: int, shares: Mapping[int, bytes]) -> bytes:
        return combine_shares([KeyShare.decode(v) for v in shares.values()], self.genesis.threshold)


def load_member(secret_file: bytes, engine: Engine) -> Member | None:
    """The committee member a keyholder secret file makes, or None when the node should run the single-process
    consensus.keyholder.Keyholder instead (a file holding ≥ threshold keys, or a 1-of-1 member file).
    A version-2 member file (``keyholder-i.secret``) is checked against genesis first."""
    g = engine.genesis
    raw = unpack(secret_file, max_size=MAX_FILE_SIZE)
    if isinstance(raw, list) and raw and raw[0] == MEMBER_VERSION:
        member = decode_member(raw)
        check_member(member, g)
        if g.threshold == 1:
            return None
        return Member(engine, member.keypair, MemberShares(member, g))
    secret, keypairs = load_keyholder_file(secret_file)
    mine = [kp for kp in keypairs if kp.public in g.keyholders]
    if len(mine) >= g.threshold:
        return None
    if len(mine) != 1:
        raise ValueError(f"a committee member's file holds one genesis keyholder key, this one {len(mine)}")
    if len(secret.keys) != g.n_rounds:
        raise ValueError("secret package does not match the genesis task (round count differs)")
    return Member(engine, mine[0], WholeKeyShares(secret))
