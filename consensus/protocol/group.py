"""The prime-order group of Ed25519 (PROTOCOL §3.14): scalars, points, hashing to both, Chaum–Pedersen proofs.

Every operation is libsodium's (pynacl's ``crypto_core_ed25519_*`` and ``crypto_scalarmult_ed25519_*noclamp``);
this module only validates, encodes and names things. A **scalar** is a Python int in [0, L) with L = 2^252 +
27742317777372353535851937790883648493 (the order of the base point G), encoded as 32 bytes little-endian. A
**point** is the 32-byte compressed encoding of a point of the prime-order subgroup other than the identity:
``check_point`` (libsodium's ``is_valid_point``) refuses small-order, non-canonical and mixed-order encodings, so
no operation here ever sees a point an attacker chose outside the group (the "identity key" class of DKG bugs).

* ``hash_to_scalar(tag, …)``: 64 bytes of tagged hashes reduced mod L (bias < 2^-250).
* ``hash_to_point(tag, …)``: libsodium's Elligator 2 map (``crypto_core_ed25519_from_uniform``, cofactor
  cleared) of a tagged hash, retried with a counter on the negligible chance it lands on the identity — a point
  whose discrete logarithm nobody knows.
* ``prove_dleq`` / ``verify_dleq``: the Chaum–Pedersen proof that log_G1(X1) = log_G2(X2), made non-interactive
  by Fiat–Shamir over a caller-given context (so a proof for one round, member or chain never verifies for
  another). ``prove_dl`` / ``verify_dl``: the Schnorr proof of knowledge of log_G(X) (a DLEQ with one base).
* ``lagrange_at_zero(indices)``: the coefficients that interpolate a degree-(t − 1) polynomial at 0 from t
  points (Shamir indices 1 … n), in the exponent or in the field alike.

What it does NOT do: decide which points or scalars a protocol uses (consensus.protocol.dkg / .release), keep
any secret, or use a clock. Errors: ``GroupError`` (a chain.errors.DecodeError) for bytes that are not a
scalar or a point; verify functions return False and never raise on hostile input.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import nacl.bindings as _na
import nacl.exceptions

from chain.crypto import tagged_hash
from chain.errors import DecodeError

__all__ = [
    "BASE", "POINT_SIZE", "PROOF_SIZE", "SCALAR_SIZE", "GroupError", "L", "Proof", "add", "base_mul",
    "check_point", "check_scalar", "decode_proof", "encode_proof", "eval_commitments", "hash_to_point",
    "hash_to_scalar", "lagrange_at_zero", "mul", "prove_dl", "prove_dleq", "random_scalar", "scalar_bytes", "sub",
    "sum_points", "verify_dl", "verify_dleq",
]

L = 2**252 + 27742317777372353535851937790883648493
POINT_SIZE = 32
SCALAR_SIZE = 32
PROOF_SIZE = 64                  # (challenge c, response z), two scalars
Rng = Callable[[int], bytes]
Proof = tuple[int, int]


class GroupError(DecodeError):
    """Bytes that are not a scalar below L or a valid point of the prime-order subgroup."""


# ---------------------------------------------------------------- scalars


def scalar_bytes(x: int) -> bytes:
    """A scalar's 32-byte little-endian encoding (x reduced mod L first)."""
    return (x % L).to_bytes(SCALAR_SIZE, "little")


def check_scalar(data: object, name: str = "scalar") -> int:
    """The scalar a 32-byte little-endian encoding names; GroupError unless it is canonical (< L)."""
    if type(data) is not bytes or len(data) != SCALAR_SIZE:
        raise GroupError(f"{name}: expected {SCALAR_SIZE} bytes")
    value = int.from_bytes(data, "little")
    if value >= L:
        raise GroupError(f"{name}: not a canonical scalar (>= L)")
    return value


def random_scalar(rng: Rng = os.urandom) -> int:
    """A uniform non-zero scalar: 64 random bytes reduced mod L (bias < 2^-250)."""
    while True:
        value = int.from_bytes(rng(64), "little") % L
        if value:
            return value


def hash_to_scalar(tag: str, *parts: bytes) -> int:
    """H(tag + "/0", parts) ‖ H(tag + "/1", parts) read little-endian, mod L."""
    wide = tagged_hash(tag + "/0", *parts) + tagged_hash(tag + "/1", *parts)
    return int.from_bytes(wide, "little") % L


def lagrange_at_zero(indices: Sequence[int]) -> list[int]:
    """λ_i = Π_{j ≠ i} j / (j − i) mod L for each i of ``indices`` (distinct, in [1, L)): Σ λ_i f(i) = f(0)
    for any polynomial f of degree < len(indices)."""
    if len(set(indices)) != len(indices) or not all(0 < i < L for i in indices):
        raise ValueError("Lagrange indices must be distinct and in [1, L)")
    out = []
    for i in indices:
        num, den = 1, 1
        for j in indices:
            if j != i:
                num = num * j % L
                den = den * (j - i) % L
        out.append(num * pow(den, -1, L) % L)
    return out


# ---------------------------------------------------------------- points


def check_point(data: object, name: str = "point") -> bytes:
    """``data`` if it is a valid point of the prime-order subgroup (canonical, on the curve, not of small
    order, not the identity); GroupError otherwise."""
    if type(data) is not bytes or len(data) != POINT_SIZE:
        raise GroupError(f"{name}: expected a {POINT_SIZE}-byte point")
    if not _na.crypto_core_ed25519_is_valid_point(data):
        raise GroupError(f"{name}: not a point of the prime-order group")
    return data


def _op(fn: Callable[..., bytes], *args: bytes) -> bytes:
    try:
        return fn(*args)
    except (nacl.exceptions.CryptoError, nacl.exceptions.RuntimeError, nacl.exceptions.ValueError,
            nacl.exceptions.TypeError) as exc:
        raise GroupError(f"group operation failed (identity or invalid point): {exc}") from None


def base_mul(x: int) -> bytes:
    """x·G (GroupError if x ≡ 0: the identity has no encoding here)."""
    return _op(_na.crypto_scalarmult_ed25519_base_noclamp, scalar_bytes(x))


def mul(x: int, point: bytes) -> bytes:
    """x·P for a valid point P (GroupError on the identity)."""
    return _op(_na.crypto_scalarmult_ed25519_noclamp, scalar_bytes(x), point)


def add(p: bytes, q: bytes) -> bytes:
    return _op(_na.crypto_core_ed25519_add, p, q)


def sub(p: bytes, q: bytes) -> bytes:
    return _op(_na.crypto_core_ed25519_sub, p, q)


def sum_points(points: Sequence[bytes]) -> bytes:
    """P_1 + … + P_k (k ≥ 1)."""
    if not points:
        raise ValueError("sum of no points")
    acc = points[0]
    for p in points[1:]:
        acc = add(acc, p)
    return acc


def eval_commitments(commitments: Sequence[bytes], x: int) -> bytes:
    """Σ_k x^k · C_k: the point f(x)·G of a polynomial f whose coefficients' points are the Feldman
    commitments C_0 … C_{t−1} (Horner's rule in the exponent)."""
    acc = commitments[-1]
    for c in reversed(commitments[:-1]):
        acc = add(mul(x, acc), c)
    return acc


BASE = base_mul(1)


def hash_to_point(tag: str, *parts: bytes) -> bytes:
    """A point nobody knows the logarithm of: Elligator 2 (cofactor cleared) of H(tag, u32 counter, parts)."""
    for counter in range(256):
        candidate = _na.crypto_core_ed25519_from_uniform(tagged_hash(tag, counter.to_bytes(4, "big"), *parts))
        if _na.crypto_core_ed25519_is_valid_point(candidate):
            return candidate
    raise GroupError("hash_to_point: no valid point in 256 tries")     # probability ~2^-2000


# ---------------------------------------------------------------- proofs

DLEQ_TAG = "popchain/dleq"
NONCE_TAG = "popchain/dleq-nonce"


def _challenge(context: bytes, g1: bytes, x1: bytes, g2: bytes, x2: bytes, a1: bytes, a2: bytes) -> int:
    return hash_to_scalar(DLEQ_TAG, context, g1, x1, g2, x2, a1, a2)


def prove_dleq(x: int, g1: bytes, x1: bytes, g2: bytes, x2: bytes, context: bytes,
               rng: Rng = os.urandom) -> Proof:
    """(c, z) proving log_g1(x1) = log_g2(x2) = x, bound to ``context``. The nonce is hedged: derived from the
    secret, the statement and 32 fresh random bytes, so a broken rng alone cannot leak x."""
    k = hash_to_scalar(NONCE_TAG, scalar_bytes(x), context, g1, x1, g2, x2, rng(32)) or 1
    a1, a2 = _times(k, g1), _times(k, g2)
    c = _challenge(context, g1, x1, g2, x2, a1, a2)
    return c, (k + c * x) % L


def _times(x: int, point: bytes) -> bytes:
    return base_mul(x) if point == BASE else mul(x, point)


def verify_dleq(proof: Proof, g1: bytes, x1: bytes, g2: bytes, x2: bytes, context: bytes, *,
                trusted: int = 0) -> bool:
    """True iff ``proof`` shows log_g1(x1) = log_g2(x2) for ``context``; never raises. Every point is checked
    to be valid except the first ``trusted`` of (g1, x1, g2), which the caller already validated (a genesis
    key, a hashed point): a released share is checked against its member's public key at ~4 scalar products."""
    try:
        c, z = proof
        if not (0 <= c < L and 0 <= z < L):
            return False
        for p in (g1, x1, g2, x2)[trusted:]:
            check_point(p)
        a1 = sub(_times(z, g1), mul(c, x1)) if c else _times(z, g1)
        a2 = sub(_times(z, g2), mul(c, x2)) if c else _times(z, g2)
        return _challenge(context, g1, x1, g2, x2, a1, a2) == c
    except (GroupError, TypeError, ValueError):
        return False


def prove_dl(x: int, point: bytes, context: bytes, rng: Rng = os.urandom) -> Proof:
    """Schnorr proof of knowledge of x = log_G(point), bound to ``context``."""
    return prove_dleq(x, BASE, point, BASE, point, context, rng)


def verify_dl(proof: Proof, point: bytes, context: bytes) -> bool:
    return verify_dleq(proof, BASE, point, BASE, point, context, trusted=1)


def encode_proof(proof: Proof) -> bytes:
    return scalar_bytes(proof[0]) + scalar_bytes(proof[1])


def decode_proof(data: object, name: str = "proof") -> Proof:
    if type(data) is not bytes or len(data) != PROOF_SIZE:
        raise GroupError(f"{name}: expected {PROOF_SIZE} bytes")
    return check_scalar(data[:32], f"{name}.c"), check_scalar(data[32:], f"{name}.z")
