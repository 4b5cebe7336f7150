"""A keyholder's secret material on disk (PROTOCOL §3.10, §3.14): the single keyholder's file, a committee
keyholder's key file and member file.

* keyholder file ``keyholder.secret`` (version 1, the single trusted keyholder): ``[1, secret package,
  [seed…]]`` — the shard keys (ml SecretTask bytes) and the signing seeds (``keyholder_file`` /
  ``load_keyholder_file``).
* key file (``popchain keyholder new``): ``["popchain/keyholder-key", 1, seed32]`` — a committee keyholder's
  Ed25519 signing seed, made on its own machine before the ceremony; its public key goes into the ceremony's
  member list and then into genesis.
* member file ``keyholder.secret`` of a committee keyholder (version 3, written by ``popchain keyholder dkg`` at
  the end of the distributed key generation, on the keyholder's own machine): ``[3, committee key id, i, n, t,
  seed32, share32]`` — its position i (1-based, genesis keyholder order), the committee's size and threshold, its
  signing seed and its share s_i of the committee's secret (a scalar, little-endian). It holds no shard key and
  nothing that opens one: a shard opens only with t members' releases. ``check_member`` ties it to a genesis:
  the committee key's id, the key at its place, and s_i·G = Y_i (the member's public share key).

What it does NOT do: any networking, signing or release policy (the committee protocol decides when a share
goes out), or hold anybody else's secret (no file written by ``genesis create`` or ``task create`` holds
anything a keyholder needs).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain.crypto import Keypair
from chain.encoding import check_bytes, check_int, check_list, check_list_max, pack, unpack
from chain.errors import DecodeError, RuleError
from consensus.protocol.dkg import CommitteeKey
from consensus.protocol.genesis import Genesis
from consensus.protocol.group import base_mul, check_scalar, scalar_bytes
from consensus.protocol.messages import MAX_KEYHOLDERS
from ml.shards import SecretTask

MEMBER_VERSION = 3
KEY_FILE_MAGIC = "popchain/keyholder-key"
MAX_FILE_SIZE = 64 << 20
KEYFILE_VERSION = 1

__all__ = [
    "KEYFILE_VERSION", "KEY_FILE_MAGIC", "MAX_FILE_SIZE", "MEMBER_VERSION", "MemberSecret", "check_member",
    "is_member_file", "key_file", "keyholder_file", "load_key_file", "load_keyholder_file", "load_member_file",
    "member_file", "write_secret",
]


@dataclass(frozen=True, eq=False)
class MemberSecret:
    """One committee keyholder's secret: who it is, its signing key, and its share of the committee's secret."""
    committee: bytes                   # the committee key record's id (CommitteeKey.hash)
    member: int                        # 1-based position in the genesis keyholder list (the Shamir x)
    keypair: Keypair
    n: int
    threshold: int
    share: int                         # s_i, a scalar

    def encode(self) -> bytes:
        return pack([MEMBER_VERSION, self.committee, self.member, self.n, self.threshold, self.keypair.seed,
                     scalar_bytes(self.share)])


def member_file(key: CommitteeKey, member: int, keypair: Keypair, share: int) -> bytes:
    """The member file a keyholder writes at the end of the ceremony (checked: s_i·G = Y_i)."""
    if base_mul(share) != key.share_key(member) or key.keyholders[member - 1] != keypair.public:
        raise RuleError("bad-key-share", f"member {member}'s share or key does not match the committee key")
    return MemberSecret(key.hash, member, keypair, key.n, key.threshold, share).encode()


def decode_member(obj: Any) -> MemberSecret:
    """Validate an unpacked member file (DecodeError on any bad field)."""
    f = check_list(obj, 7, "member file")
    check_int(f[0], MEMBER_VERSION, MEMBER_VERSION, "member file version")
    n = check_int(f[3], 1, MAX_KEYHOLDERS, "member file n")
    share = check_scalar(f[6], "member file share")
    if share == 0:
        raise DecodeError("member file share: zero")
    return MemberSecret(check_bytes(f[1], 32, "member file committee"), check_int(f[2], 1, n, "member file member"),
                        Keypair.from_seed(check_bytes(f[5], 32, "member file seed")), n,
                        check_int(f[4], 1, n, "member file threshold"), share)


def load_member_file(data: bytes) -> MemberSecret:
    """Decode a committee keyholder's member file. DecodeError on bad bytes."""
    return decode_member(unpack(data, max_size=MAX_FILE_SIZE))


def is_member_file(data: bytes) -> bool:
    """True if ``data`` looks like a committee member file (cheap: the first field only; load it to check)."""
    try:
        obj = unpack(data, max_size=MAX_FILE_SIZE)
    except DecodeError:
        return False
    return isinstance(obj, list) and bool(obj) and obj[0] == MEMBER_VERSION


def check_member(secret: MemberSecret, genesis: Genesis) -> None:
    """RuleError("bad-key-share") unless the member file belongs to this genesis: its committee key, its key at
    its place, the committee's n and t, and its share matching its public share key."""
    key = genesis.committee
    if key is None:
        raise RuleError("bad-key-share", "this chain has a single keyholder (a version-1 genesis): run it with its "
                                         "keyholder.secret")
    if secret.committee != key.hash:
        raise RuleError("bad-key-share", "the member file is for another committee (its DKG differs from genesis')")
    if (secret.n, secret.threshold) != (key.n, key.threshold):
        raise RuleError("bad-key-share", f"the member file is for a {secret.threshold}-of-{secret.n} committee, "
                                         f"genesis has {key.threshold}-of-{key.n}")
    if key.keyholders[secret.member - 1] != secret.keypair.public:
        raise RuleError("bad-key-share", f"member {secret.member}'s key is not genesis keyholder {secret.member}")
    if base_mul(secret.share) != key.share_key(secret.member):
        raise RuleError("bad-key-share", f"member {secret.member}'s share does not match its public share key")


# ---------------------------------------------------------------- the single keyholder's file (version 1)


def keyholder_file(secret_package: bytes, keypairs: Sequence[Keypair]) -> bytes:
    """The single keyholder's secret file: the shard keys (ml SecretTask bytes) and the signing seeds."""
    return pack([KEYFILE_VERSION, secret_package, [kp.seed for kp in keypairs]])


def load_keyholder_file(data: bytes, genesis: Genesis | None = None) -> tuple[SecretTask, tuple[Keypair, ...]]:
    """(shard keys, signing keys) of a single keyholder's file. A committee member file raises ValueError (it
    needs the committee protocol)."""
    f = unpack(data, max_size=MAX_FILE_SIZE)
    if isinstance(f, list) and f and f[0] == MEMBER_VERSION:
        raise ValueError("a committee member file holds a share, not keys: run it as a committee member")
    f = check_list(f, 3, "keyholder file")
    check_int(f[0], KEYFILE_VERSION, KEYFILE_VERSION, "keyholder file version")
    if type(f[1]) is not bytes:
        raise DecodeError("keyholder file: secret package must be bytes")
    seeds = check_list_max(f[2], MAX_KEYHOLDERS, "keyholder file seeds")
    return SecretTask.decode(f[1]), tuple(Keypair.from_seed(check_bytes(s, 32, "seed")) for s in seeds)


# ---------------------------------------------------------------- a committee keyholder's key file


def key_file(keypair: Keypair) -> bytes:
    return pack([KEY_FILE_MAGIC, 1, keypair.seed])


def load_key_file(data: bytes) -> Keypair:
    """The signing key of a key file (``popchain keyholder new``) or of a member file (the same key)."""
    obj = unpack(data, max_size=MAX_FILE_SIZE)
    if isinstance(obj, list) and obj and obj[0] == MEMBER_VERSION:
        return decode_member(obj).keypair
    f = check_list(obj, 3, "keyholder key file")
    if f[0] != KEY_FILE_MAGIC:
        raise DecodeError("not a popchain keyholder key file")
    check_int(f[1], 1, 1, "keyholder key file version")
    return Keypair.from_seed(check_bytes(f[2], 32, "keyholder key file seed"))


def write_secret(path: Path, data: bytes) -> None:
    """Write a secret file, mode 0600, refusing to overwrite (a keyholder's share exists once)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
