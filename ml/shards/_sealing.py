"""One hidden shard: its canonical bytes (rows, or a generated shard's world and seed), its commitment, sealing
it under a fresh key and salt, and opening it again with the revealed key (checked against the commitment).

Does not: decide which rows go into which shard (ml.shards._making) or decode a whole package (_package).
"""
from __future__ import annotations

import nacl.exceptions
import nacl.secret
import numpy as np

from ..blobs import BlobRef, find_blob
from ..codec import (
    check_bytes,
    check_int,
    check_list,
    decode_array,
    encode_array,
    pack,
    tagged_hash,
    unpack_canonical,
)
from ..errors import ShardError, TaskError
from ..generator import World, generate
from ..task import Dataset, TaskSpec
from ._package import (
    GENERATED,
    KEY_SIZE,
    MAX_GENERATED_SHARD_BYTES,
    MAX_TASK_BYTES,
    SALT_SIZE,
    SHARD_TAG,
    VERSION,
    PublicTask,
    Rng,
)


def encode_shard(round_: int, X: np.ndarray, y: np.ndarray) -> bytes:
    return pack([VERSION, round_, encode_array(X), encode_array(y)])


def decode_shard(data: bytes, spec: TaskSpec, round_: int, shard_size: int) -> Dataset:
    obj = unpack_canonical(data, max_size=MAX_TASK_BYTES, err=ShardError, field="shard")
    f = check_list(obj, 4, ShardError, "shard")
    check_int(f[0], VERSION, VERSION, ShardError, "shard.version")
    check_int(f[1], round_, round_, ShardError, "shard.round")
    X = decode_array(f[2], ShardError, "shard.X", ndim=2, shape=(shard_size, spec.n_features),
                     max_elements=shard_size * spec.n_features)
    y = decode_array(f[3], ShardError, "shard.y", ndim=1, shape=(shard_size,), max_elements=shard_size)
    try:
        return Dataset(spec, X.astype(np.int64), y.astype(np.int64))
    except TaskError as exc:
        raise ShardError(f"shard: {exc}") from None


def encode_generated_shard(round_: int, world: World, seed: bytes) -> bytes:
    return pack([GENERATED, round_, world.to_obj(), seed])


def decode_generated_shard(data: bytes, spec: TaskSpec, round_: int, shard_size: int) -> Dataset:
    """Validate ``[2, r, world, seed32]`` (cheap checks first), then replay the generator."""
    obj = unpack_canonical(data, max_size=MAX_GENERATED_SHARD_BYTES, err=ShardError, field="shard")
    f = check_list(obj, 4, ShardError, "shard")
    check_int(f[0], GENERATED, GENERATED, ShardError, "shard.version")
    check_int(f[1], round_, round_, ShardError, "shard.round")
    seed = check_bytes(f[3], 32, ShardError, "shard.seed")
    try:
        return generate(World.from_obj(f[2], spec, "shard.world"), seed, shard_size)
    except TaskError as exc:
        raise ShardError(f"shard: {exc}") from None


def commitment(round_: int, salt: bytes, shard_bytes: bytes) -> bytes:
    return tagged_hash(SHARD_TAG, round_.to_bytes(8, "big"), salt, shard_bytes)


def seal_shard(r: int, shard_bytes: bytes, rng: Rng) -> tuple[bytes, bytes, bytes, bytes]:
    """(key, salt, commitment, ciphertext) of shard r."""
    key, salt = rng(KEY_SIZE), rng(SALT_SIZE)
    box = nacl.secret.SecretBox(key)
    ct = bytes(box.encrypt(salt + shard_bytes, rng(nacl.secret.SecretBox.NONCE_SIZE)))
    return key, salt, commitment(r, salt, shard_bytes), ct


def open_shard(public: PublicTask, round_: int, key: bytes) -> Dataset:
    """Decrypt shard ``round_`` with the revealed key and check it against its commitment (ShardError); a
    VRF-generated shard is generated from the key (its proof was checked where the key came from: the beacon)."""
    if public.vrf:
        if isinstance(round_, bool) or not isinstance(round_, int) or not 1 <= round_ <= public.n_rounds:
            raise ShardError(f"round: {round_!r} outside [1, {public.n_rounds}]")
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise ShardError(f"key: expected {KEY_SIZE} bytes")
        assert public.world is not None
        return generate(public.world, key, public.shard_size)
    shard_bytes = checked_shard_bytes(public, round_, key)
    if public.generated:
        return decode_generated_shard(shard_bytes, public.spec, round_, public.shard_size)
    return decode_shard(shard_bytes, public.spec, round_, public.shard_size)


def generated_world_digest(public: PublicTask, round_: int, key: bytes) -> bytes:
    """H(world) of a generated shard (after the commitment check): equal digests mean one distribution, so a
    miner can tell a stationary generated task from a drifting one once two shards are revealed."""
    if not public.generated:
        raise ShardError("shard: not a generated task")
    if public.vrf:
        assert public.world is not None
        return tagged_hash("popchain/world", pack(public.world.to_obj()))
    obj = unpack_canonical(checked_shard_bytes(public, round_, key), max_size=MAX_GENERATED_SHARD_BYTES,
                           err=ShardError, field="shard")
    f = check_list(obj, 4, ShardError, "shard")
    return tagged_hash("popchain/world", pack(f[2]))


def checked_shard_bytes(public: PublicTask, round_: int, key: bytes) -> bytes:
    """S_r of shard ``round_``: decrypted with the revealed key and checked against its commitment."""
    if isinstance(round_, bool) or not isinstance(round_, int) or not 1 <= round_ <= public.n_rounds:
        raise ShardError(f"round: {round_!r} outside [1, {public.n_rounds}]")
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise ShardError(f"key: expected {KEY_SIZE} bytes")
    ct = public.ciphertexts[round_ - 1]
    if isinstance(ct, BlobRef):
        ct = find_blob(ct)                   # checked against the reference; BlobUnavailable if not here
    try:
        plain = nacl.secret.SecretBox(key).decrypt(ct)
    except nacl.exceptions.CryptoError:
        raise ShardError(f"key: does not decrypt the shard of round {round_} (wrong key)") from None
    salt, shard_bytes = plain[:SALT_SIZE], plain[SALT_SIZE:]
    if len(salt) != SALT_SIZE or commitment(round_, salt, shard_bytes) != public.commitments[round_ - 1]:
        raise ShardError(f"shard: round {round_} does not match its commitment")
    return shard_bytes
