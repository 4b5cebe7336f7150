"""What a committee releases for a round, and how anyone checks it (PROTOCOL §3.14): the round's point, the
members' DLEQ-proven shares of the group secret times that point, their combination, and the shard key it gives
— the output of a threshold VRF for a generated task, the unsealing of the sponsor's key for a data task.

* The **round's point** P of (task, shard j): for a VRF-generated task H2P("popchain/vrf-point", genesis hash,
  task message id, u64 j) — anyone can compute it, nobody knows its logarithm; for a sealed (data) shard the
  sponsor's ephemeral point R_j of its ``SealedShard``; for a LEDGER round r (a round serving no shard, issue 21)
  H2P("popchain/ledger-point", genesis hash, u64 r, anchor hash), its key then ranks entries only.
* A **partial** of member i is σ_i = s_i·P with a Chaum–Pedersen proof that log_G(Y_i) = log_P(σ_i), Y_i the
  member's public share key from the committee key (genesis): anyone checks it, and a wrong one names its member.
* t partials of distinct members combine by Lagrange in the exponent into σ = s·P — the same σ for any t valid
  partials (each is forced to s_i·P by its proof): **unique**, and unknown to anyone until t members release.
* The **shard key** a beacon reveals: ``vrf_output(P, σ)`` = H("popchain/vrf-output", P, σ) (the generator
  seed of a VRF-generated shard), or for a sealed shard the sponsor's SecretBox key ``mask ⊕ H("popchain/seal",
  Y, R, σ)`` (hashed ElGamal to the group key Y: the sponsor drew k, published R = k·G and masked its key with
  H(Y, R, k·Y); k·Y = s·R = σ).
* ``Release``: the t partials a beacon carries (outside its signed content, like signatures), ``check_release``
  the rule every node applies to it.

What it does NOT do: decide which (task, shard) a round serves (the schedule), keep a member's share (the
member file), or open shards (ml.shards with the key).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chain.crypto import tagged_hash
from chain.encoding import check_bytes, check_int, check_list, check_list_max, pack, unpack
from chain.errors import DecodeError, RuleError
from consensus.protocol.dkg import CommitteeKey
from consensus.protocol.group import (
    BASE,
    GroupError,
    base_mul,
    check_point,
    decode_proof,
    encode_proof,
    hash_to_point,
    lagrange_at_zero,
    mul,
    prove_dleq,
    random_scalar,
    sum_points,
    verify_dleq,
)
from consensus.protocol.messages import MAX_KEYHOLDERS, MAX_RELEASE_BYTES

__all__ = [
    "MAX_RELEASE_SIZE", "MAX_SEAL_SHARDS", "PARTIAL_SIZE", "SEAL_VERSION", "Leak", "Partial", "Release",
    "SealedShard",
    "check_partial", "check_release", "combine", "decode_seal_material", "encode_seal_material", "ledger_point",
    "make_partial",
    "release_context", "seal", "seal_keys", "shard_key_of", "unseal", "vrf_output", "vrf_point",
]

SEAL_VERSION = 2                  # keyholder_material of a sealed batch (version 1 was the dealt Shamir shares)
MAX_SEAL_SHARDS = 100_000
PARTIAL_SIZE = 8 + 32 + 64 + 8
MAX_RELEASE_SIZE = MAX_RELEASE_BYTES
Rng = Callable[[int], bytes]


def _bad(message: str) -> RuleError:
    return RuleError("bad-key-share", message)


# ---------------------------------------------------------------- the round's point and key


def vrf_point(genesis_hash: bytes, task_msg: bytes, shard: int) -> bytes:
    """The VRF input of shard ``shard`` of the task whose announcement id is ``task_msg`` (genesis hash for task
    0): a point of the group nobody knows the logarithm of."""
    return hash_to_point("popchain/vrf-point", genesis_hash, task_msg, shard.to_bytes(8, "big"))


def ledger_point(genesis_hash: bytes, round: int, anchor_hash: bytes) -> bytes:
    """The VRF input of LEDGER round ``round`` on ``anchor_hash`` (issue 21: a round that serves no shard, §3.13):
    its beacon's key is ``vrf_output`` of this point, so no member can choose it and nobody knows it before t
    members release — it ranks the entries and the plain blocks, which an entrant must not foresee."""
    return hash_to_point("popchain/ledger-point", genesis_hash, round.to_bytes(8, "big"), anchor_hash)


def vrf_output(point: bytes, sigma: bytes) -> bytes:
    return tagged_hash("popchain/vrf-output", point, sigma)


def release_context(genesis_hash: bytes, point: bytes) -> bytes:
    """What a partial's proof is bound to: the chain and the round's point (so it proves nothing elsewhere)."""
    return tagged_hash("popchain/release", genesis_hash, point)


@dataclass(frozen=True)
class SealedShard:
    """A data shard's key sealed to the committee: R = k·G and the key masked with H("popchain/seal", Y, R, k·Y)."""
    point: bytes
    mask: bytes


def _seal_pad(group_key: bytes, point: bytes, sigma: bytes) -> bytes:
    return tagged_hash("popchain/seal", group_key, point, sigma)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def seal(group_key: bytes, key: bytes, rng: Rng = os.urandom) -> SealedShard:
    """Seal a 32-byte shard key to the committee's group key Y (the sponsor forgets k)."""
    if type(key) is not bytes or len(key) != 32:
        raise ValueError("a shard key is 32 bytes")
    k = random_scalar(rng)
    point = base_mul(k)
    return SealedShard(point, _xor(key, _seal_pad(group_key, point, mul(k, group_key))))


def unseal(group_key: bytes, sealed: SealedShard, sigma: bytes) -> bytes:
    """The sealed key from σ = s·R (the committee's combined release for this shard)."""
    return _xor(sealed.mask, _seal_pad(group_key, sealed.point, sigma))


def seal_keys(group_key: bytes, keys: Sequence[bytes], rng: Rng = os.urandom) -> bytes:
    """The ``keyholder_material`` of a sealed batch: every key of the batch sealed to the committee."""
    return encode_seal_material([seal(group_key, k, rng) for k in keys])


def encode_seal_material(items: Sequence[SealedShard]) -> bytes:
    return pack([SEAL_VERSION, [[s.point, s.mask] for s in items]])


def decode_seal_material(data: bytes, n_shards: int) -> tuple[SealedShard, ...]:
    """A sealed batch's material covering exactly ``n_shards`` shards; RuleError("bad-keyholder-material")."""
    try:
        f = check_list(unpack(data, max_size=64 + MAX_SEAL_SHARDS * 72), 2, "sealed keys")
        check_int(f[0], SEAL_VERSION, SEAL_VERSION, "sealed keys version")
        items = check_list_max(f[1], MAX_SEAL_SHARDS, "sealed keys")
        out = tuple(SealedShard(check_point(p[0], "sealed key point"), check_bytes(p[1], 32, "sealed key mask"))
                    for p in (check_list(x, 2, "sealed key") for x in items))
    except DecodeError as exc:
        raise RuleError("bad-keyholder-material", str(exc)) from None
    if len(out) != n_shards:
        raise RuleError("bad-keyholder-material", f"{len(out)} sealed keys for a batch of {n_shards} shards")
    return out


def shard_key_of(committee: CommitteeKey, point: bytes, sigma: bytes, sealed: SealedShard | None) -> bytes:
    """The key a beacon reveals for a round whose point is ``point`` and combined release ``sigma``."""
    return vrf_output(point, sigma) if sealed is None else unseal(committee.group_key, sealed, sigma)


# ---------------------------------------------------------------- partials and their combination


@dataclass(frozen=True)
class Partial:
    """Member ``member``'s (1-based) share of the round's σ: ``[member, σ_i, proof (c ‖ z)]``."""
    member: int
    value: bytes
    proof: tuple[int, int]

    def to_list(self) -> list[object]:
        return [self.member, self.value, encode_proof(self.proof)]

    def encode(self) -> bytes:
        return pack(self.to_list())

    @classmethod
    def from_list(cls, f: object, name: str = "partial") -> Partial:
        items = check_list(f, 3, name)
        return cls(check_int(items[0], 1, MAX_KEYHOLDERS, f"{name}.member"), check_point(items[1], f"{name}.value"),
                   decode_proof(items[2], f"{name}.proof"))

    @classmethod
    def decode(cls, data: bytes) -> Partial:
        return cls.from_list(unpack(data, max_size=PARTIAL_SIZE), "partial")


def make_partial(committee: CommitteeKey, genesis_hash: bytes, member: int, share: int, point: bytes,
                 rng: Rng = os.urandom) -> Partial:
    """Member ``member``'s partial s_i·P with its proof."""
    sigma_i = mul(share, point)
    proof = prove_dleq(share, BASE, committee.share_key(member), point, sigma_i,
                       release_context(genesis_hash, point), rng)
    return Partial(member, sigma_i, proof)


def check_partial(committee: CommitteeKey, genesis_hash: bytes, point: bytes, partial: Partial) -> None:
    """RuleError("bad-key-share") naming the member unless its proof shows σ_i = s_i·P for its Y_i."""
    if not 1 <= partial.member <= committee.n:
        raise _bad(f"member {partial.member} is not in the committee of {committee.n}")
    if not verify_dleq(partial.proof, BASE, committee.share_key(partial.member), point, partial.value,
                       release_context(genesis_hash, point), trusted=3):
        raise _bad(f"member {partial.member}'s share does not match its public key "
                   f"({committee.keyholders[partial.member - 1].hex()[:16]})")


def combine(partials: Sequence[Partial], threshold: int) -> bytes:
    """σ = Σ λ_i σ_i over the ``threshold`` lowest distinct members (already checked partials)."""
    by_member = {p.member: p for p in partials}
    if len(by_member) < threshold:
        raise _bad(f"{len(by_member)} shares, the threshold is {threshold}")
    chosen = sorted(by_member)[:threshold]
    lam = lagrange_at_zero(chosen)
    try:
        return sum_points([mul(c, by_member[m].value) for c, m in zip(lam, chosen)])
    except GroupError as exc:
        raise _bad(f"the shares do not combine: {exc}") from None


@dataclass(frozen=True)
class Release:
    """The partials a beacon carries: exactly t of distinct members, ascending."""
    partials: tuple[Partial, ...]

    def encode(self) -> bytes:
        return pack([1, [p.to_list() for p in self.partials]])

    @classmethod
    def decode(cls, data: bytes) -> Release:
        f = check_list(unpack(data, max_size=MAX_RELEASE_SIZE), 2, "release")
        check_int(f[0], 1, 1, "release version")
        parts = tuple(Partial.from_list(x, "release.partial")
                      for x in check_list_max(f[1], MAX_KEYHOLDERS, "release.partials"))
        members = [p.member for p in parts]
        if members != sorted(set(members)):
            raise DecodeError("release: partials must be ascending by member, one each")
        return cls(parts)

    @classmethod
    def of(cls, partials: Sequence[Partial], threshold: int) -> Release:
        """The t lowest members' partials, in order."""
        by_member = {p.member: p for p in partials}
        return cls(tuple(by_member[m] for m in sorted(by_member)[:threshold]))


@dataclass(frozen=True)
class Leak:
    """A proven share of shard ``shard`` of task ``task_id`` that someone posts before the shard is revealed: its
    proof against the member's public share key shows the member computed it — a member that releases early
    (to a miner, say) is caught by whoever it released to. ``[1, task id, shard, partial]``."""
    task_id: int
    shard: int
    partial: Partial

    def encode(self) -> bytes:
        return pack([1, self.task_id, self.shard, self.partial.to_list()])

    @classmethod
    def decode(cls, data: bytes) -> Leak:
        f = check_list(unpack(data, max_size=PARTIAL_SIZE + 32), 4, "leak")
        check_int(f[0], 1, 1, "leak version")
        return cls(check_int(f[1], 0, 2**16 - 1, "leak.task_id"), check_int(f[2], 1, 2**32 - 1, "leak.shard"),
                   Partial.from_list(f[3], "leak.partial"))


def check_release(committee: CommitteeKey, genesis_hash: bytes, point: bytes, data: bytes,
                  sealed: SealedShard | None, shard_key: bytes) -> bytes:
    """THE rule of a beacon's release (§3.4): exactly t partials of distinct members, each proven against its
    member's public share key, combining into σ whose shard key is the beacon's ``shard_key``. Returns σ;
    RuleError("bad-key-share") naming the first member whose share fails."""
    try:
        release = Release.decode(data)
    except DecodeError as exc:
        raise _bad(f"release: {exc}") from None
    if len(release.partials) != committee.threshold:
        raise _bad(f"{len(release.partials)} shares, the committee's threshold is {committee.threshold}")
    for p in release.partials:
        check_partial(committee, genesis_hash, point, p)
    sigma = combine(release.partials, committee.threshold)
    if shard_key_of(committee, point, sigma, sealed) != shard_key:
        raise _bad("the released shares give another shard key than the beacon's")
    return sigma
