"""A keyholder's secret material on disk (PROTOCOL §3.10, §3.14): the keyholder file, the member file and
per-batch share files.

* keyholder file ``keyholder.secret`` (version 1, the single keyholder): ``[1, secret package, [seed…]]`` — the
  shard keys (ml SecretTask bytes) and the signing seeds (``keyholder_file`` / ``load_keyholder_file``, which
  also loads a 1-of-1 member file, whose one share of each key IS the key).
* member file ``keyholder-i.secret`` (version 2): ``[2, genesis_hash, i, n, t, seed32, [batch…]]`` — the member's
  position i (1-based, in the genesis keyholder list), the committee size and threshold, its Ed25519 signing
  seed and its shares of every shard key (``consensus.protocol.shares.ShareBatch``; batch 0 is the genesis task). It
  never holds a whole key unless t = 1.
* share file ``*.shares`` (a new batch for a task announcement or extension, dealt by its sponsor):
  ``["popchain/key-shares", 1, genesis_hash, batch]``. A running member picks it up from
  ``<datadir>/key-shares/`` (``scan_share_dir``; the node rescans when it misses a share), or from
  ``popchain keyholder add-shares``, which checks it and copies it there.
What it does NOT do: any networking, signing or release policy (the committee protocol decides when a share
goes out), or check a batch against material the chain has not activated yet (``batch_for`` does that later).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chain.crypto import Keypair
from chain.encoding import check_bytes, check_int, check_list, check_list_max, pack, unpack
from chain.errors import DecodeError, RuleError
from consensus.protocol.genesis import Genesis
from consensus.protocol.messages import MAX_KEYHOLDERS
from consensus.protocol.shares import (
    KeyholderMaterial,
    KeyShare,
    Rng,
    ShareBatch,
    check_share,
    combine_shares,
    deal,
)
from ml.shards import SecretTask

MEMBER_VERSION = 2
SHARE_FILE_MAGIC = "popchain/key-shares"
SHARE_FILE_VERSION = 1
MAX_BATCHES = 4096
MAX_FILE_SIZE = 64 << 20
SHARE_DIR = "key-shares"
KEYFILE_VERSION = 1

__all__ = [
    "KEYFILE_VERSION", "MAX_BATCHES", "MAX_FILE_SIZE", "MEMBER_VERSION", "SHARE_DIR", "SHARE_FILE_MAGIC",
    "SHARE_FILE_VERSION", "CommitteeShares", "Locate", "MemberSecret", "MemberShares", "add_share_file",
    "check_member", "committee_shares", "deal_batch", "decode_member", "genesis_locator", "install_share_file",
    "is_member_file", "keyholder_file", "load_keyholder_file", "load_member_file", "load_share_file",
    "member_file", "scan_share_dir", "share_file",
]


@dataclass(frozen=True, eq=False)
class MemberSecret:
    """One committee member's secret: who it is, its signing key, and its shares of every batch it holds."""
    genesis_hash: bytes
    member: int                        # 1-based position in the genesis keyholder list (the Shamir x)
    keypair: Keypair
    n: int                             # committee size
    threshold: int
    batches: tuple[ShareBatch, ...]    # batches[0]: the genesis task

    def share_for(self, shard_commitment: bytes) -> KeyShare | None:
        """The releasable share of the shard with this commitment, from whichever batch holds it."""
        for batch in self.batches:
            leaf = batch.leaf_of(shard_commitment)
            if leaf is not None:
                return batch.share(leaf)
        return None

    def batch_for(self, material: KeyholderMaterial, keyholders: Sequence[bytes]) -> ShareBatch | None:
        """The batch dealt under ``material``, checked against it (RuleError("bad-key-share") if it does not
        match), or None if this member has not received it yet."""
        for batch in self.batches:
            if batch.material_hash == material.hash:
                batch.check(material, keyholders)
                return batch
        return None

    def with_batch(self, batch: ShareBatch) -> MemberSecret:
        """A copy holding ``batch`` too (ignored if a batch with its material hash is already held)."""
        if batch.member != self.member or batch.pubkey != self.keypair.public:
            raise RuleError("bad-key-share", f"a share batch for member {batch.member}, this is member {self.member}")
        if any(b.material_hash == batch.material_hash for b in self.batches):
            return self
        return replace(self, batches=self.batches + (batch,))

    def whole_keys(self) -> SecretTask:
        """With t = 1 every share IS the key: the genesis task's keys in round order, as the single-keyholder
        Keyholder expects (salts are not a member's business: the key decrypts its shard's salt)."""
        if self.threshold != 1:
            raise ValueError(f"member {self.member} of a {self.threshold}-of-{self.n} committee holds shares, "
                             f"not keys: it needs the committee protocol to reveal a shard")
        return SecretTask(tuple(v.to_bytes(32, "big") for v in self.batches[0].values), ())

    def encode(self) -> bytes:
        return pack([MEMBER_VERSION, self.genesis_hash, self.member, self.n, self.threshold, self.keypair.seed,
                     [b.to_obj() for b in self.batches]])


def keyholder_file(secret_package: bytes, keypairs: Sequence[Keypair]) -> bytes:
    """The keyholder's secret file: the shard keys (ml SecretTask bytes) and the signing seeds."""
    return pack([KEYFILE_VERSION, secret_package, [kp.seed for kp in keypairs]])


def load_keyholder_file(data: bytes, genesis: Genesis | None = None) -> tuple[SecretTask, tuple[Keypair, ...]]:
    """(shard keys, signing keys) of a keyholder file: a version-1 single-keyholder file, or a version-2
    committee member file of a 1-of-1 committee, whose one share of each key IS the key.
    A member of a larger committee raises ValueError (it needs the committee protocol). With ``genesis`` a
    member file is checked against it (RuleError("bad-key-share"))."""
    f = unpack(data, max_size=MAX_FILE_SIZE)
    if isinstance(f, list) and f and f[0] == MEMBER_VERSION:
        member = decode_member(f)
        if genesis is not None:
            check_member(member, genesis)
        return member.whole_keys(), (member.keypair,)
    f = check_list(f, 3, "keyholder file")
    check_int(f[0], KEYFILE_VERSION, KEYFILE_VERSION, "keyholder file version")
    if type(f[1]) is not bytes:
        raise DecodeError("keyholder file: secret package must be bytes")
    seeds = check_list_max(f[2], MAX_KEYHOLDERS, "keyholder file seeds")
    return SecretTask.decode(f[1]), tuple(Keypair.from_seed(check_bytes(s, 32, "seed")) for s in seeds)


def member_file(genesis_hash: bytes, member: int, keypair: Keypair, n: int, threshold: int,
                batches: Sequence[ShareBatch]) -> bytes:
    return MemberSecret(genesis_hash, member, keypair, n, threshold, tuple(batches)).encode()


def decode_member(obj: Any) -> MemberSecret:
    """Validate an unpacked version-2 member file (DecodeError on any bad field)."""
    f = check_list(obj, 7, "member file")
    check_int(f[0], MEMBER_VERSION, MEMBER_VERSION, "member file version")
    genesis_hash = check_bytes(f[1], 32, "member file genesis hash")
    n = check_int(f[3], 1, MAX_KEYHOLDERS, "member file n")
    member = check_int(f[2], 1, n, "member file member")
    threshold = check_int(f[4], 1, n, "member file threshold")
    keypair = Keypair.from_seed(check_bytes(f[5], 32, "member file seed"))
    items = check_list_max(f[6], MAX_BATCHES, "member file batches")
    if not items:
        raise DecodeError("member file batches: the genesis batch is missing")
    batches = tuple(ShareBatch.from_obj(b, f"member file batch {i}") for i, b in enumerate(items))
    for b in batches:
        if b.member != member or b.pubkey != keypair.public:
            raise DecodeError(f"member file: a batch for member {b.member}, the file is member {member}'s")
    return MemberSecret(genesis_hash, member, keypair, n, threshold, batches)


def load_member_file(data: bytes) -> MemberSecret:
    """Decode a member file ``keyholder-i.secret`` (version 2). DecodeError on bad bytes."""
    return decode_member(unpack(data, max_size=MAX_FILE_SIZE))


def check_member(secret: MemberSecret, genesis: Genesis) -> None:
    """RuleError("bad-key-share") unless the member file belongs to this genesis:
    same genesis hash, its key at its place, the committee's n and t, and its genesis batch exactly what the
    genesis committee material commits for it over the genesis task's shards."""
    if secret.genesis_hash != genesis.hash:
        raise RuleError("bad-key-share", "the member file is for another chain (genesis hash differs)")
    keyholders = genesis.keyholders
    if (secret.n, secret.threshold) != (len(keyholders), genesis.threshold):
        raise RuleError("bad-key-share", f"the member file is for a {secret.threshold}-of-{secret.n} committee, "
                                         f"genesis has {genesis.threshold}-of-{len(keyholders)}")
    if keyholders[secret.member - 1] != secret.keypair.public:
        raise RuleError("bad-key-share", f"member {secret.member}'s key is not genesis keyholder {secret.member}")
    material = genesis.committee
    if material is None:
        raise RuleError("bad-key-share", "genesis has no committee material (a version-1 chain): use its "
                                         "keyholder.secret")
    batch = secret.batches[0]
    batch.check(material, keyholders)
    if batch.shard_commitments != tuple(genesis.task.commitments):
        raise RuleError("bad-key-share", "the genesis batch is not over the genesis task's shards")


def share_file(genesis_hash: bytes, batch: ShareBatch) -> bytes:
    """A member's shares of one new batch (what a sponsor hands to member ``batch.member``)."""
    return pack([SHARE_FILE_MAGIC, SHARE_FILE_VERSION, genesis_hash, batch.to_obj()])


def load_share_file(data: bytes) -> tuple[bytes, ShareBatch]:
    """(genesis hash, batch) of a share file; DecodeError on bad bytes."""
    f = check_list(unpack(data, max_size=MAX_FILE_SIZE), 4, "share file")
    if f[0] != SHARE_FILE_MAGIC:
        raise DecodeError("share file: not a popchain key-share file")
    check_int(f[1], SHARE_FILE_VERSION, SHARE_FILE_VERSION, "share file version")
    return check_bytes(f[2], 32, "share file genesis hash"), ShareBatch.from_obj(f[3], "share file batch")


def add_share_file(secret: MemberSecret, data: bytes) -> MemberSecret:
    """``secret`` with the batch of a share file added; RuleError("bad-key-share") if it is another chain's
    or another member's. The batch is checked against its material once the chain activates it (batch_for)."""
    genesis_hash, batch = load_share_file(data)
    if genesis_hash != secret.genesis_hash:
        raise RuleError("bad-key-share", "the share file is for another chain (genesis hash differs)")
    return secret.with_batch(batch)


def scan_share_dir(secret: MemberSecret, directory: Path) -> MemberSecret:
    """``secret`` plus every ``*.shares`` file in ``directory`` (absent directory: unchanged). Disk I/O: call
    it from an executor. A file that fails to decode or belongs elsewhere raises (DecodeError / RuleError)
    naming it, so an operator's mistake is reported, not skipped."""
    if not directory.is_dir():
        return secret
    for path in sorted(directory.glob("*.shares")):
        try:
            secret = add_share_file(secret, path.read_bytes())
        except (DecodeError, RuleError) as exc:
            raise type(exc)(*((exc.code, f"{path}: {exc.message}") if isinstance(exc, RuleError)
                              else (f"{path}: {exc}",))) from None
    return secret


def deal_batch(genesis: Genesis, keys: Sequence[bytes], shard_commitments: Sequence[bytes],
               rng: Rng = os.urandom) -> tuple[bytes, list[bytes]]:
    """For a task announcement or extension on a committee chain: share the new batch's shard keys among the
    genesis keyholders. Returns (``keyholder_material`` bytes for the signed message, one share file per
    member in member order, to hand to member i). keys[j] opens the shard committed as shard_commitments[j].
    A chain without a committee (version-1 genesis) has no material: ValueError."""
    if genesis.committee is None:
        raise ValueError("this chain has a single keyholder (no committee): give it the new batch's secret file")
    dealing = deal(keys, shard_commitments, genesis.keyholders, genesis.threshold, rng)
    return dealing.material.encode(), [share_file(genesis.hash, b) for b in dealing.batches]


class MemberShares:
    """A running member's shares: its member file plus the share files in ``<datadir>/key-shares/``, rescanned
    when a share is asked for that no batch holds (a new task or extension's file may have been added since).
    Reads files: call it on a worker thread, never on the event loop."""

    def __init__(self, secret: MemberSecret, directory: Path) -> None:
        self.secret = secret
        self.directory = directory

    def share_for(self, shard_commitment: bytes) -> KeyShare | None:
        share = self.secret.share_for(shard_commitment)
        if share is None:
            self.secret = scan_share_dir(self.secret, self.directory)
            share = self.secret.share_for(shard_commitment)
        return share


def install_share_file(secret: MemberSecret, data: bytes, datadir: Path) -> tuple[Path, ShareBatch]:
    """Check a share file against the member (same chain, same member) and write it, 0600, to
    ``<datadir>/key-shares/<material hash>.shares`` (refusing to overwrite a different file). Returns the path
    and the batch. RuleError / DecodeError on a file that is not this member's."""
    _genesis_hash, batch = load_share_file(data)
    add_share_file(secret, data)
    directory = datadir / SHARE_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{batch.material_hash.hex()}.shares"
    if path.exists():
        if path.read_bytes() != data:
            raise RuleError("bad-key-share", f"{path} exists with other shares for the same batch")
        return path, batch
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return path, batch


# where round r's shard lives: (the batch's material, the shard commitment, its leaf index in the batch)
Locate = Callable[[int], tuple[KeyholderMaterial, bytes, int]]


def genesis_locator(genesis: Genesis) -> Locate:
    """Round r → shard r of the genesis task (a single-task chain). A multi-task chain passes its own locator
    (the engine's schedule: the task and shard index round r serves, the material of the batch holding it)."""
    material = genesis.committee
    if material is None:
        raise ValueError("genesis has no committee material")
    commitments = genesis.task.commitments

    def locate(r: int) -> tuple[KeyholderMaterial, bytes, int]:
        if not 1 <= r <= len(commitments):
            raise RuleError("bad-key-share", f"round {r} has no genesis shard")
        return material, commitments[r - 1], r - 1
    return locate


class CommitteeShares:
    """The committee protocol's view of shares by round (consensus.keyholder's ShareSource: members are 0-based
    positions in the keyholder list there, 1-based Shamir x here). Shares travel as KeyShare bytes."""

    def __init__(self, keyholders: Sequence[bytes], threshold: int, mine: MemberShares, locate: Locate) -> None:
        self.keyholders = tuple(keyholders)
        self.threshold = threshold
        self.mine = mine
        self.locate = locate

    def holds(self, shard_commitment: bytes) -> bool:
        """True if this member holds its share of the shard with this commitment (share files rescanned)."""
        return self.mine.share_for(shard_commitment) is not None

    def share_for(self, round: int) -> bytes:
        _, shard, _ = self.locate(round)
        share = self.mine.share_for(shard)
        if share is None:
            raise RuleError("bad-key-share", f"member {self.mine.secret.member} holds no share of round {round}'s "
                                             f"shard (its share file is not in {self.mine.directory})")
        return share.encode()

    def _checked(self, member: int, round: int, share: bytes) -> KeyShare:
        material, shard, leaf = self.locate(round)
        try:
            decoded = KeyShare.decode(share)
        except DecodeError as exc:
            raise RuleError("bad-key-share", str(exc)) from None
        if decoded.member != member + 1:
            raise RuleError("bad-key-share", f"a share of member {decoded.member} sent as member {member + 1}'s")
        check_share(decoded, material, self.keyholders, shard_commitment=shard, leaf=leaf)
        return decoded

    def check_share(self, member: int, round: int, share: bytes) -> None:
        self._checked(member, round, share)

    def combine(self, round: int, shares: Mapping[int, bytes]) -> bytes:
        """Round r's shard key from ≥ t shares (checked again here: cheap, and the caller may not have)."""
        return combine_shares([self._checked(m, round, s) for m, s in shares.items()], self.threshold)


def committee_shares(secret_file: bytes, genesis: Genesis, datadir: Path, locate: Locate | None = None,
                     ) -> tuple[MemberSecret, CommitteeShares]:
    """Load and check a member file for ``genesis`` and build its ShareSource (share files from
    ``<datadir>/key-shares/``). RuleError("bad-key-share") / DecodeError on a file that is not this chain's."""
    secret = load_member_file(secret_file)
    check_member(secret, genesis)
    mine = MemberShares(secret, datadir / SHARE_DIR)
    return secret, CommitteeShares(genesis.keyholders, genesis.threshold, mine, locate or genesis_locator(genesis))


def is_member_file(data: bytes) -> bool:
    """True if ``data`` looks like a version-2 member file (cheap: the first field only; load it to check)."""
    try:
        obj = unpack(data, max_size=MAX_FILE_SIZE)
    except DecodeError:
        return False
    return isinstance(obj, list) and bool(obj) and obj[0] == MEMBER_VERSION
