"""A committee member's secret material and its loading (PROTOCOL §3.10, §3.14): ``load_member`` builds the
consensus.committee.Member of a member file with consensus.member's ShareSource (``committee_shares``), or of a
version-1 file holding one key (``WholeKeyShares``), or None when the single-process keyholder should run.

What it does NOT do: decide when a share goes out (consensus.committee), or the sharing arithmetic
(consensus.shares).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from chain.encoding import unpack
from chain.errors import RuleError
from consensus.committee import Member
from consensus.engine import Engine
from consensus.keyholder import load_keyholder_file
from consensus.member import MAX_FILE_SIZE, MEMBER_VERSION, committee_shares
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


def load_member(secret_file: bytes, engine: Engine, datadir: Path | None = None) -> Member | None:
    """The committee member a keyholder secret file makes, or None when the node should run the single-process
    consensus.keyholder.Keyholder instead (a file holding ≥ threshold keys, or a 1-of-1 member file).
    A version-2 member file (``keyholder-i.secret``) is checked against genesis first."""
    g = engine.genesis
    raw = unpack(secret_file, max_size=MAX_FILE_SIZE)
    if isinstance(raw, list) and raw and raw[0] == MEMBER_VERSION:
        if g.threshold == 1:
            return None
        # consensus.member: the member file's shares plus <datadir>/key-shares/*.shares (tasks dealt later),
        # each released share checked against the commitments of the batch holding its shard
        member, shares = committee_shares(secret_file, g, datadir or Path(".") / "no-datadir")
        return Member(engine, member.keypair, shares)
    secret, keypairs = load_keyholder_file(secret_file)
    mine = [kp for kp in keypairs if kp.public in g.keyholders]
    if len(mine) >= g.threshold:
        return None
    if len(mine) != 1:
        raise ValueError(f"a committee member's file holds one genesis keyholder key, this one {len(mine)}")
    if len(secret.keys) != g.n_rounds:
        raise ValueError("secret package does not match the genesis task (round count differs)")
    return Member(engine, mine[0], WholeKeyShares(secret))
