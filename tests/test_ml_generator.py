"""Generated hidden shards (issue 9): an integer-only generator replayed by every node from a committed seed."""
from __future__ import annotations

import hashlib

import nacl.secret
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.encoding import pack
from ml.errors import ShardError, TaskError
from ml.generator import MAX_ABS, World, drift, generate, world_from_seed
from ml.shards import (
    GENERATED,
    PublicTask,
    SecretTask,
    commitment,
    decode_generated_shard,
    open_shard,
    package_generated,
)

SEED = b"popchain-generator-test-seed-01"


def counter_rng(label: bytes):
    """A deterministic rng(n) for tests (the parameter create_genesis / package_* take)."""
    state = {"i": 0}

    def rng(n: int) -> bytes:
        state["i"] += 1
        return hashlib.shake_256(label + state["i"].to_bytes(8, "big")).digest(n)
    return rng


@pytest.fixture(scope="module")
def world() -> World:
    return world_from_seed(SEED)


@pytest.fixture(scope="module")
def package(world):
    return package_generated(world, 5, 2000, n_train=300, rng=counter_rng(b"pkg"))


def test_known_answer_pins_the_generator_on_every_platform(world):
    """A digest of generated rows: any change to the stream, the arithmetic or numpy's integer semantics
    (a platform where nodes would disagree on a shard) fails here."""
    ds = generate(world, bytes(32), 1000)
    digest = hashlib.sha256(ds.X.astype("<i8").tobytes() + ds.y.astype("<i8").tobytes()).hexdigest()
    world_digest = hashlib.sha256(pack(world.to_obj())).hexdigest()
    assert (world_digest[:16], digest[:16]) == KNOWN_ANSWER


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(1, 600), st.integers(1, 600))
def test_rows_do_not_depend_on_the_shard_size_and_stay_in_range(seed, n, m):
    w = world_from_seed(b"property-world-seed-0001", n_features=10, n_informative=4, clusters_per_class=2)
    a, b = generate(w, seed, n), generate(w, seed, m)
    k = min(n, m)
    assert np.array_equal(a.X[:k], b.X[:k]) and np.array_equal(a.y[:k], b.y[:k])
    assert int(np.abs(a.X).max()) <= MAX_ABS and set(np.unique(a.y)) <= set(range(w.spec.n_classes))


def test_generated_package_is_small_and_every_shard_opens(world, package):
    public, secret = package
    assert public.version == GENERATED and public.n_rounds == 5
    again = PublicTask.decode(public.encode())
    assert again.version == GENERATED and again.commitments == public.commitments
    assert max(len(c) for c in public.ciphertexts) < 2_000   # 2,000 rows ship as < 2 kB each
    seen = set()
    for r in range(1, 6):
        shard = open_shard(again, r, secret.key(r))
        assert len(shard) == 2000 and shard.spec == world.spec
        seen.add(hashlib.sha256(shard.X.tobytes()).digest())
        assert np.array_equal(shard.X, open_shard(public, r, secret.key(r)).X)  # replay is deterministic
    assert len(seen) == 5  # each round its own rows
    acc = np.bincount(again.train_y, minlength=4) / len(again.train_y)
    assert acc.min() > 0.15  # all classes present in the public data


def test_wrong_key_and_forged_shards_are_rejected(world, package):
    public, secret = package
    with pytest.raises(ShardError, match="wrong key"):
        open_shard(public, 1, secret.key(2))
    # a keyholder (or forger) who re-encrypts a different seed under key 1 breaks the commitment
    box = nacl.secret.SecretBox(secret.key(1))
    fake = pack([GENERATED, 1, world.to_obj(), bytes(32)])
    cts = (bytes(box.encrypt(secret.salts[0] + fake)),) + public.ciphertexts[1:]
    forged = PublicTask(public.spec, public.train_X, public.train_y, public.shard_size, public.commitments, cts,
                        GENERATED)
    with pytest.raises(ShardError, match="commitment"):
        open_shard(forged, 1, secret.key(1))


def _world_obj(world: World, **change):
    obj = world.to_obj()
    names = ["centres", "mixing", "pairs", "perm", "label_noise"]
    for k, v in change.items():
        obj[names.index(k)] = v
    return obj


@pytest.mark.parametrize("field,value,match", [
    ("perm", ["int64", [24], np.zeros(24, "<i8").tobytes()], "permutation"),
    ("pairs", ["int64", [1, 2], np.array([0, 99], "<i8").tobytes()], "pairs"),
    ("centres", ["int64", [2000, 8], bytes(2000 * 8 * 8)], "centres"),
    ("centres", ["int64", [16, 8], np.full(128, 1 << 40, "<i8").tobytes()], "centres"),
    ("mixing", ["int64", [8, 8], np.full(64, 1 << 30, "<i8").tobytes()], "mixing"),
    ("label_noise", 70_000, "label_noise"),
])
def test_hostile_worlds_are_rejected_before_generating(world, field, value, match):
    data = pack([GENERATED, 3, _world_obj(world, **{field: value}), bytes(32)])
    with pytest.raises(ShardError, match=match):
        decode_generated_shard(data, world.spec, 3, 10_000)


def test_hostile_packages_are_rejected(world, package):
    public, _ = package
    huge = PublicTask(public.spec, public.train_X, public.train_y, 1_000_000 // 24 * 24, public.commitments,
                      public.ciphertexts, GENERATED)
    with pytest.raises(TaskError, match="shard_size"):
        PublicTask.decode(huge.encode())
    fat = PublicTask(public.spec, public.train_X, public.train_y, 100, public.commitments,
                     (bytes(400_000),) + public.ciphertexts[1:], GENERATED)
    with pytest.raises(TaskError, match="too long"):
        PublicTask.decode(fat.encode())
    with pytest.raises(ShardError, match="shard.round"):
        decode_generated_shard(pack([GENERATED, 2, world.to_obj(), bytes(32)]), world.spec, 3, 10)
    with pytest.raises(ShardError, match="shard.seed"):
        decode_generated_shard(pack([GENERATED, 3, world.to_obj(), bytes(31)]), world.spec, 3, 10)


def test_drift_moves_every_shard_a_little_and_default_does_not(world):
    public, secret = package_generated(world, 3, 10, n_train=50, rng=counter_rng(b"d"), drift_milli=200)
    worlds = []
    for r in range(1, 4):
        plain = nacl.secret.SecretBox(secret.key(r)).decrypt(public.ciphertexts[r - 1])[32:]
        from chain.encoding import unpack
        worlds.append(World.from_obj(unpack(plain, max_size=1 << 20)[2], world.spec))
        assert commitment(r, secret.salts[r - 1], plain) == public.commitments[r - 1]
    steps = [np.abs(b.centres - a.centres).mean() for a, b in zip([world] + worlds, worlds)]
    assert all(0 < s < 0.5 * 4096 for s in steps)  # ~0.2 units per shard, well below the 1.4-unit centres
    assert np.array_equal(drift(world, bytes(32), 0).centres, world.centres)


def test_packaging_is_reproducible_from_the_rng_parameter(world):
    a = package_generated(world, 2, 10, n_train=20, rng=counter_rng(b"same"))
    b = package_generated(world, 2, 10, n_train=20, rng=counter_rng(b"same"))
    assert a[0].encode() == b[0].encode() and a[1] == b[1]
    assert isinstance(a[1], SecretTask)


KNOWN_ANSWER = ("e7a581346f28c096", "ef87cf7bb6959265")
