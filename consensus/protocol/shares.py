"""Shamir t-of-n sharing of 32-byte shard keys, share commitments and the released-share message (PROTOCOL §3.14).

A shard key k (32 bytes, read big-endian as an integer < 2^256) is the constant term of a random polynomial
f of degree t − 1 over the prime field GF(P), P = 2^256 + 297 (the least prime above 2^256, so every key is one
field element); member i (1-based position in the genesis keyholder list) holds y_i = f(i), 33 bytes. Any t
points give k by Lagrange interpolation at 0; any t − 1 are uniformly distributed whatever k is (each (t − 1)-
tuple of values comes from exactly one polynomial per secret). The field is a parameter of every function, so
the tests run the *same code* over a small prime where the distribution can be enumerated.

The dealer commits, per member and per shard of a batch, to c = H("popchain/key-share", shard commitment,
member pubkey, u32 i, y_i, salt32); each member's commitments over the batch (shard order) form a Merkle tree
(chain.crypto's) and the batch's *keyholder material* lists one root per member: ``[1, t, n_shards,
[root…]]``. A released share carries (i, shard commitment, leaf index, y, salt, Merkle path), so any node checks
it against the material in genesis or in a task extension (``check_share``, reject code ``bad-key-share``).

What it does NOT do: prove that the dealer's shares lie on one polynomial of degree t − 1 (a hash commitment
binds the dealer, it does not prove consistency; the shard commitment stays the final check of a reconstructed
key), sign anything, or decide when a share may be released (the committee protocol does).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from chain.crypto import merkle_leaf, merkle_root, merkle_root_of_hashes, tagged_hash
from chain.encoding import check_bytes, check_int, check_list, check_list_max, pack, unpack
from chain.errors import DecodeError, RuleError
from consensus.protocol.messages import MAX_KEYHOLDERS

__all__ = [
    "KEY_SIZE", "MATERIAL_TAG", "MATERIAL_VERSION", "MAX_MATERIAL_SIZE", "MAX_PATH", "MAX_SHARDS",
    "MAX_SHARE_SIZE", "SALT_SIZE", "SHARE_TAG", "SHARE_VERSION", "VALUE_SIZE", "Dealing", "KeyShare",
    "KeyholderMaterial", "P", "Rng", "ShareBatch", "check_share", "combine",
    "combine_key", "combine_shares", "deal", "decode_material", "evaluate", "merkle_check", "merkle_levels",
    "merkle_path", "random_element", "share_commitment", "split", "split_key",
]

P = 2**256 + 297                 # the least prime above 2^256 (a shard key is one field element)
KEY_SIZE = 32
VALUE_SIZE = 33                  # bytes of a share value y < P, big-endian
SALT_SIZE = 32
MAX_SHARDS = 100_000             # shards per batch (= ml.shards.MAX_ROUNDS)
MAX_PATH = 17                    # Merkle path length for up to 2^17 > MAX_SHARDS leaves
MATERIAL_VERSION = 1
SHARE_VERSION = 1
SHARE_TAG = "popchain/key-share"
MATERIAL_TAG = "popchain/keyholder-material"
MAX_MATERIAL_SIZE = 64 + MAX_KEYHOLDERS * 35
MAX_SHARE_SIZE = 200 + MAX_PATH * 35

Rng = Callable[[int], bytes]


def _bad(message: str) -> RuleError:
    return RuleError("bad-key-share", message)


# ---------------------------------------------------------------- the field and the sharing


def random_element(rng: Rng, p: int = P) -> int:
    """A uniform element of GF(p) by rejection sampling (no modulo bias): draw ⌈bits/8⌉ bytes, keep the low
    ``bits`` bits, retry while ≥ p (for P about half of the draws are kept)."""
    bits = p.bit_length()
    size = (bits + 7) // 8
    mask = (1 << bits) - 1
    while True:
        value = int.from_bytes(rng(size), "big") & mask
        if value < p:
            return value


def split(secret: int, threshold: int, n: int, rng: Rng, p: int = P) -> list[int]:
    """Shares y_1 … y_n of ``secret`` (0 ≤ secret < p): f(x) = secret + a_1 x + … + a_{t−1} x^{t−1} with
    uniform a_j, y_i = f(i). threshold 1 gives every member the secret itself."""
    if not 0 <= secret < p:
        raise ValueError("secret outside the field")
    if not 1 <= threshold <= n < p:
        raise ValueError(f"need 1 <= threshold ({threshold}) <= n ({n}) < p")
    coeffs = [secret] + [random_element(rng, p) for _ in range(threshold - 1)]
    return [evaluate(coeffs, x, p) for x in range(1, n + 1)]


def evaluate(coeffs: Sequence[int], x: int, p: int = P) -> int:
    """f(x) mod p by Horner's rule; coeffs[0] is the constant term."""
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % p
    return acc


def combine(points: Sequence[tuple[int, int]], p: int = P) -> int:
    """f(0) from points (x, y) with distinct x in [1, p): Lagrange interpolation at 0. Given exactly t points
    of a degree-(t − 1) polynomial this is its constant term (the secret)."""
    xs = [x for x, _ in points]
    if not points or len(set(xs)) != len(xs) or not all(0 < x < p for x in xs):
        raise ValueError("need at least one point, with distinct x in [1, p)")
    secret = 0
    for i, (xi, yi) in enumerate(points):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * xj % p
                den = den * (xj - xi) % p
        secret = (secret + yi * num * pow(den, -1, p)) % p
    return secret


def split_key(key: bytes, threshold: int, n: int, rng: Rng) -> list[int]:
    if type(key) is not bytes or len(key) != KEY_SIZE:
        raise ValueError("a shard key is 32 bytes")
    return split(int.from_bytes(key, "big"), threshold, n, rng)


def combine_key(points: Sequence[tuple[int, int]]) -> bytes:
    """The 32-byte key from t points; RuleError("bad-key-share") if they interpolate to no 32-byte key (a
    corrupted share or an inconsistent dealer: the caller still checks the key against the shard commitment)."""
    value = combine(points)
    if value >= 1 << (8 * KEY_SIZE):
        raise _bad("the shares do not interpolate to a 32-byte key")
    return value.to_bytes(KEY_SIZE, "big")


# ---------------------------------------------------------------- commitments and Merkle paths


def share_commitment(shard_commitment: bytes, member_pubkey: bytes, member: int, value: int, salt: bytes) -> bytes:
    """c = H("popchain/key-share", shard commitment, member pubkey, u32 member, y (33 bytes), salt)."""
    return tagged_hash(SHARE_TAG, shard_commitment, member_pubkey, member.to_bytes(4, "big"),
                       value.to_bytes(VALUE_SIZE, "big"), salt)


def merkle_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of chain.crypto's Merkle tree over ``leaves`` (level 0 = leaf hashes; last = [root])."""
    level = [merkle_leaf(x) for x in leaves]
    levels = [level]
    while len(level) > 1:
        nxt = [merkle_root_of_hashes(level[i:i + 2]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])      # an odd node is promoted, as in merkle_root_of_hashes
        levels.append(nxt)
        level = nxt
    return levels


def merkle_path(levels: Sequence[Sequence[bytes]], index: int) -> tuple[bytes, ...]:
    """Sibling hashes from leaf ``index`` up (a promoted node has no sibling at that level)."""
    path = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return tuple(path)


def merkle_check(leaf: bytes, index: int, count: int, path: Sequence[bytes], root: bytes) -> bool:
    """True iff ``leaf`` is leaf ``index`` of a ``count``-leaf tree with this root (path from merkle_path)."""
    if not 0 <= index < count:
        return False
    h, used, n = merkle_leaf(leaf), 0, count
    while n > 1:
        sibling = index ^ 1
        if sibling < n:
            if used >= len(path):
                return False
            pair = [h, path[used]] if index % 2 == 0 else [path[used], h]
            h = merkle_root_of_hashes(pair)
            used += 1
        index //= 2
        n = (n + 1) // 2
    return used == len(path) and h == root


# ---------------------------------------------------------------- keyholder material (public)


@dataclass(frozen=True)
class KeyholderMaterial:
    """What nodes need to check released shares of one batch of shards: the threshold, the batch size and one
    Merkle root per member (member order = the genesis keyholder list). Genesis carries one for its task; a
    task extension or announcement carries one in its ``keyholder_material`` bytes."""
    threshold: int
    n_shards: int
    roots: tuple[bytes, ...]

    def encode(self) -> bytes:
        return pack([MATERIAL_VERSION, self.threshold, self.n_shards, list(self.roots)])

    @cached_property
    def hash(self) -> bytes:
        return tagged_hash(MATERIAL_TAG, self.encode())

    @classmethod
    def decode(cls, data: bytes) -> KeyholderMaterial:
        f = check_list(unpack(data, max_size=MAX_MATERIAL_SIZE), 4, "keyholder material")
        check_int(f[0], MATERIAL_VERSION, MATERIAL_VERSION, "keyholder material version")
        roots = check_list_max(f[3], MAX_KEYHOLDERS, "keyholder material roots")
        if not roots:
            raise DecodeError("keyholder material roots: at least one member")
        threshold = check_int(f[1], 1, len(roots), "keyholder material threshold")
        n_shards = check_int(f[2], 1, MAX_SHARDS, "keyholder material n_shards")
        return cls(threshold, n_shards, tuple(check_bytes(r, 32, "keyholder material root") for r in roots))

    def check_committee(self, keyholders: Sequence[bytes], threshold: int, n_shards: int) -> None:
        """RuleError("bad-keyholder-material") unless it fits the committee and the batch it comes with."""
        if len(self.roots) != len(keyholders) or self.threshold != threshold:
            raise RuleError("bad-keyholder-material", f"material for a {self.threshold}-of-{len(self.roots)} "
                                                      f"committee, the chain has {threshold}-of-{len(keyholders)}")
        if self.n_shards != n_shards:
            raise RuleError("bad-keyholder-material", f"material covers {self.n_shards} shards, the batch has "
                                                      f"{n_shards}")


def decode_material(data: bytes, keyholders: Sequence[bytes], threshold: int, n_shards: int) -> KeyholderMaterial:
    """Decode and check a ``keyholder_material`` field (genesis, task announcement or extension) against the
    committee and the number of shards it comes with; RuleError("bad-keyholder-material") on any fault. This
    is the one function a task-extension validator calls."""
    try:
        material = KeyholderMaterial.decode(data)
    except DecodeError as exc:
        raise RuleError("bad-keyholder-material", str(exc)) from None
    material.check_committee(keyholders, threshold, n_shards)
    return material


# ---------------------------------------------------------------- a released share (the wire message body)


@dataclass(frozen=True)
class KeyShare:
    """Member ``member``'s share of the shard whose commitment is ``shard_commitment``, leaf ``leaf`` of its
    batch: ``[1, member, shard_commitment, leaf, y33, salt32, [sibling…]]``. Unsigned: the committee message
    that carries it is signed; the commitment check alone already binds it to what the dealer committed."""
    member: int
    shard_commitment: bytes
    leaf: int
    value: int
    salt: bytes
    path: tuple[bytes, ...]

    def encode(self) -> bytes:
        return pack([SHARE_VERSION, self.member, self.shard_commitment, self.leaf,
                     self.value.to_bytes(VALUE_SIZE, "big"), self.salt, list(self.path)])

    @classmethod
    def decode(cls, data: bytes) -> KeyShare:
        f = check_list(unpack(data, max_size=MAX_SHARE_SIZE), 7, "key share")
        check_int(f[0], SHARE_VERSION, SHARE_VERSION, "key share version")
        member = check_int(f[1], 1, MAX_KEYHOLDERS, "key share member")
        shard = check_bytes(f[2], 32, "key share shard commitment")
        leaf = check_int(f[3], 0, MAX_SHARDS - 1, "key share leaf")
        value = int.from_bytes(check_bytes(f[4], VALUE_SIZE, "key share value"), "big")
        if value >= P:
            raise DecodeError("key share value: not a field element")
        salt = check_bytes(f[5], SALT_SIZE, "key share salt")
        path = tuple(check_bytes(h, 32, "key share path") for h in check_list_max(f[6], MAX_PATH, "key share path"))
        return cls(member, shard, leaf, value, salt, path)


def check_share(share: KeyShare, material: KeyholderMaterial, keyholders: Sequence[bytes], *,
                shard_commitment: bytes, leaf: int) -> None:
    """RuleError("bad-key-share") unless ``share`` is what the dealer committed to for member ``share.member``
    at ``leaf`` of ``material``'s batch, for the shard with ``shard_commitment`` (both expected by the caller
    from chain state). Cheap checks first, then at most 18 hashes."""
    if not 1 <= share.member <= len(material.roots) or len(keyholders) != len(material.roots):
        raise _bad(f"member {share.member} is not in the committee of {len(material.roots)}")
    if share.shard_commitment != shard_commitment or share.leaf != leaf:
        raise _bad("the share is for another shard")
    if not 0 <= share.value < P:
        raise _bad("value outside the field")
    c = share_commitment(shard_commitment, keyholders[share.member - 1], share.member, share.value, share.salt)
    if not merkle_check(c, leaf, material.n_shards, share.path, material.roots[share.member - 1]):
        raise _bad(f"member {share.member}'s share does not match the dealer's commitment")


def combine_shares(shares: Sequence[KeyShare], threshold: int) -> bytes:
    """The shard key from ≥ t *checked* shares of one shard (distinct members; the t lowest are used)."""
    by_member = {s.member: s for s in shares}
    if len(by_member) != len(shares) or len({s.shard_commitment for s in shares}) > 1:
        raise _bad("shares must come from distinct members, for one shard")
    if len(by_member) < threshold:
        raise _bad(f"{len(by_member)} shares, the threshold is {threshold}")
    chosen = sorted(by_member)[:threshold]
    return combine_key([(m, by_member[m].value) for m in chosen])


# ---------------------------------------------------------------- a member's secret shares of one batch


@dataclass(frozen=True, eq=False)
class ShareBatch:
    """Member ``member``'s shares of one batch (genesis task, or one announcement/extension): per shard the
    shard commitment, y and the salt. ``[material_hash, member, pubkey, [[shard_commitment, y33, salt]…]]``."""
    material_hash: bytes
    member: int
    pubkey: bytes
    shard_commitments: tuple[bytes, ...]
    values: tuple[int, ...]
    salts: tuple[bytes, ...]

    def commitments(self) -> list[bytes]:
        return [share_commitment(s, self.pubkey, self.member, y, salt)
                for s, y, salt in zip(self.shard_commitments, self.values, self.salts)]

    @cached_property
    def _levels(self) -> list[list[bytes]]:
        return merkle_levels(self.commitments())

    @property
    def root(self) -> bytes:
        return self._levels[-1][0]

    @cached_property
    def _index(self) -> dict[bytes, int]:
        return {s: i for i, s in enumerate(self.shard_commitments)}

    def leaf_of(self, shard_commitment: bytes) -> int | None:
        return self._index.get(shard_commitment)

    def share(self, leaf: int) -> KeyShare:
        """The releasable share of shard ``leaf`` (with its Merkle path)."""
        return KeyShare(self.member, self.shard_commitments[leaf], leaf, self.values[leaf], self.salts[leaf],
                        merkle_path(self._levels, leaf))

    def check(self, material: KeyholderMaterial, keyholders: Sequence[bytes]) -> None:
        """RuleError("bad-key-share") unless this batch is exactly what ``material`` commits for this member."""
        if material.hash != self.material_hash:
            raise _bad("the shares belong to another batch (material hash differs)")
        if not 1 <= self.member <= len(keyholders) or keyholders[self.member - 1] != self.pubkey:
            raise _bad(f"member {self.member}'s key is not at its place in the keyholder list")
        if len(self.values) != material.n_shards or self.root != material.roots[self.member - 1]:
            raise _bad(f"member {self.member}'s shares do not match the dealer's commitments")

    def to_obj(self) -> list[Any]:
        return [self.material_hash, self.member, self.pubkey,
                [[s, y.to_bytes(VALUE_SIZE, "big"), salt]
                 for s, y, salt in zip(self.shard_commitments, self.values, self.salts)]]

    @classmethod
    def from_obj(cls, obj: Any, name: str = "share batch") -> ShareBatch:
        f = check_list(obj, 4, name)
        material_hash = check_bytes(f[0], 32, f"{name}.material_hash")
        member = check_int(f[1], 1, MAX_KEYHOLDERS, f"{name}.member")
        pubkey = check_bytes(f[2], 32, f"{name}.pubkey")
        items = check_list_max(f[3], MAX_SHARDS, f"{name}.shares")
        if not items:
            raise DecodeError(f"{name}.shares: at least one shard")
        shards, values, salts = [], [], []
        for item in items:
            s = check_list(item, 3, f"{name}.share")
            shards.append(check_bytes(s[0], 32, f"{name}.shard_commitment"))
            value = int.from_bytes(check_bytes(s[1], VALUE_SIZE, f"{name}.value"), "big")
            if value >= P:
                raise DecodeError(f"{name}.value: not a field element")
            values.append(value)
            salts.append(check_bytes(s[2], SALT_SIZE, f"{name}.salt"))
        if len(set(shards)) != len(shards):
            raise DecodeError(f"{name}: a shard appears twice")
        return cls(material_hash, member, pubkey, tuple(shards), tuple(values), tuple(salts))


# ---------------------------------------------------------------- dealing


@dataclass(frozen=True, eq=False)
class Dealing:
    """One batch dealt to the committee: the public material and each member's secret batch (member order)."""
    material: KeyholderMaterial
    batches: tuple[ShareBatch, ...]


def deal(keys: Sequence[bytes], shard_commitments: Sequence[bytes], members: Sequence[bytes], threshold: int,
         rng: Rng) -> Dealing:
    """Share every shard key of a batch among ``members`` (the genesis keyholder pubkeys, in genesis order)
    with ``threshold``; keys[j] opens the shard with shard_commitments[j]. Every random byte (coefficients,
    salts) comes from ``rng``. The dealer learns every key: it must not keep them (PROTOCOL §3.14)."""
    n = len(members)
    if not 1 <= threshold <= n <= MAX_KEYHOLDERS:
        raise ValueError(f"need 1 <= threshold ({threshold}) <= keyholders ({n}) <= {MAX_KEYHOLDERS}")
    if list(members) != sorted(set(members)):
        raise ValueError("members must be the sorted, distinct keyholder pubkeys (genesis order)")
    if len(keys) != len(shard_commitments) or not 1 <= len(keys) <= MAX_SHARDS:
        raise ValueError("one key per shard commitment, 1 to 100,000 shards")
    values = [split_key(k, threshold, n, rng) for k in keys]          # values[j][i] = y_{i+1} of shard j
    salts = [[rng(SALT_SIZE) for _ in range(n)] for _ in keys]
    roots = []
    for i, pub in enumerate(members):
        leaves = [share_commitment(s, pub, i + 1, values[j][i], salts[j][i]) for j, s in enumerate(shard_commitments)]
        roots.append(merkle_root(leaves))
    material = KeyholderMaterial(threshold, len(keys), tuple(roots))
    batches = tuple(ShareBatch(material.hash, i + 1, pub, tuple(shard_commitments),
                               tuple(values[j][i] for j in range(len(keys))),
                               tuple(salts[j][i] for j in range(len(keys))))
                    for i, pub in enumerate(members))
    return Dealing(material, batches)
