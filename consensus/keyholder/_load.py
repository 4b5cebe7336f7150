"""Loading a keyholder from its secret file (PROTOCOL §3.10, §3.14): ``load_member`` builds the committee
``Member`` of a member file with its ShareSource (``committee_shares``: Shamir shares checked against the
commitments of the batch holding each shard, found by ``engine_locator``), or of a version-1 file holding one
key (``WholeKeyShares``), or returns None when the single-process keyholder should run: ``load_keyholder``.

What it does NOT do: decide when a share goes out (the Member), or the sharing arithmetic
(consensus.protocol.shares).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from chain.encoding import unpack
from chain.errors import RuleError
from consensus.engine import Engine
from consensus.keyholder._files import (
    MAX_FILE_SIZE,
    MEMBER_VERSION,
    Locate,
    committee_shares,
    genesis_locator,
    load_keyholder_file,
)
from consensus.keyholder._member import Member
from consensus.keyholder._single import Keyholder
from consensus.protocol.shares import KeyholderMaterial
from consensus.protocol.tasks import check_batch_material
from ml.shards import SecretTask

__all__ = ["WholeKeyShares", "engine_locator", "load_keyholder", "load_member"]


class WholeKeyShares:
    """Secret material of a member that holds the whole key (a version-1 keyholder file with one signing key):
    its "share" is the key itself. Kept for committees dealt before key shares existed; a real committee
    member holds Shamir shares (consensus.protocol.shares) and never a whole key."""

    def __init__(self, secret: SecretTask) -> None:
        self.secret = secret

    def share_for(self, round: int) -> bytes:
        return self.secret.key(round)

    def check_share(self, member: int, round: int, share: bytes) -> None:
        if share != self.secret.key(round):
            raise RuleError("bad-key-share", f"member {member + 1}'s share of round {round} is not the key")

    def combine(self, round: int, shares: Mapping[int, bytes]) -> bytes:
        return self.secret.key(round)


def engine_locator(engine: Engine) -> Locate:
    """Round r → (keyholder material, shard commitment, leaf) of the shard round r serves (§3.13 schedule, from
    notice r's anchor and activations): the genesis committee's material for the genesis batch, else the
    material the announcement/extension bringing that batch carried (checked when it was stored, §3.14)."""
    g = engine.genesis
    genesis_only = genesis_locator(g)

    def locate(r: int) -> tuple[KeyholderMaterial, bytes, int]:
        notice = engine.notice(r)
        if notice is None and len(engine.registry().tasks) == 1:
            return genesis_only(r)      # no notice yet, one task: round r can only serve genesis shard r
        anchor = engine.store.get_header(notice.anchor_hash) if notice is not None else None
        if notice is None or notice.idle or anchor is None:
            raise RuleError("bad-key-share", f"round {r} serves no shard known here")
        book = engine.book
        task = book.advance(book.registry_at(anchor), anchor, r, notice.activations).before.tasks[notice.task_id]
        _, msg_hash, first = task.batch_of(notice.shard_index)
        material = g.committee if msg_hash == g.hash else None
        if material is None:
            msg = book.message(msg_hash)
            if msg is None:
                raise RuleError("bad-key-share", f"task message {msg_hash.hex()[:16]} of round {r} unknown here")
            material = check_batch_material(g, msg.keyholder_material, book.shard_count(msg))
        if material is None:
            raise RuleError("bad-key-share", "this chain has no keyholder committee")
        commitment = book.package_of(task).commitments[notice.shard_index - 1]
        return material, commitment, notice.shard_index - first
    return locate


def load_member(secret_file: bytes, engine: Engine, datadir: Path | None = None) -> Member | None:
    """The committee member a keyholder secret file makes, or None when the node should run the single-process
    Keyholder instead (``load_keyholder``: a file holding ≥ threshold keys, or a 1-of-1 member file).
    A version-2 member file (``keyholder-i.secret``) is checked against genesis first."""
    g = engine.genesis
    raw = unpack(secret_file, max_size=MAX_FILE_SIZE)
    if isinstance(raw, list) and raw and raw[0] == MEMBER_VERSION:
        if g.threshold == 1:
            return None
        # the member file's shares plus <datadir>/key-shares/*.shares (tasks dealt later),
        # each released share checked against the commitments of the batch holding its shard
        member, shares = committee_shares(secret_file, g, datadir or Path(".") / "no-datadir",
                                          locate=engine_locator(engine))
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


def load_keyholder(secret_file: bytes, engine: Engine) -> Keyholder:
    """The single keyholder a secret file makes (its keys checked against the engine's genesis): where
    ``load_member`` returned None."""
    secret, keypairs = load_keyholder_file(secret_file, engine.genesis)
    return Keyholder(engine, secret, keypairs)
