"""Hidden shards: commitments bind every byte, wrong keys are clear errors, packages round-trip canonically."""
from __future__ import annotations

import nacl.secret
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.errors import ShardError, TaskError
from ml.score import score
from ml.shards import (
    PublicTask,
    SecretTask,
    baseline_model,
    commitment,
    demo_task,
    encode_shard,
    open_shard,
    package_task,
    split_test,
)
from ml.task import load_builtin, synthetic

SEED = b"popchain-test-seed-0123456789abcdef"


@pytest.fixture(scope="module")
def small():
    ds = load_builtin("iris")
    return package_task(ds, n_rounds=4, shard_size=20, seed=SEED)


@pytest.fixture(scope="module")
def demo():
    return demo_task(SEED)


def test_open_shard_round_trip_and_stratified(small):
    public, secret = small
    seen = []
    for r in range(1, 5):
        shard = open_shard(public, r, secret.key(r))
        assert len(shard) == 20
        counts = np.bincount(shard.y, minlength=3)
        assert counts.min() >= 6 and counts.max() <= 7
        seen.append(shard.X)
    assert len(public.train_y) == 150 - 80


def test_wrong_key_and_bad_round_are_clear_errors(small):
    public, secret = small
    with pytest.raises(ShardError, match="wrong key"):
        open_shard(public, 1, secret.key(2))
    with pytest.raises(ShardError, match="round"):
        open_shard(public, 5, secret.key(1))
    with pytest.raises(ShardError, match="key"):
        open_shard(public, 1, b"short")


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_changed_byte_of_data_or_salt_breaks_the_commitment(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    X = rng.integers(-5, 6, size=(6, 3))
    y = rng.integers(0, 2, size=6)
    shard = encode_shard(3, X, y)
    salt = bytes(rng.integers(0, 256, size=32, dtype=np.uint8))
    c = commitment(3, salt, shard)
    which = data.draw(st.sampled_from(["shard", "salt", "round"]))
    if which == "round":
        assert commitment(4, salt, shard) != c
        return
    target = shard if which == "shard" else salt
    pos = data.draw(st.integers(0, len(target) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = target[:pos] + bytes([target[pos] ^ flip]) + target[pos + 1:]
    if which == "shard":
        assert commitment(3, salt, changed) != c
    else:
        assert commitment(3, changed, shard) != c


def test_reencrypted_tampered_shard_fails_commitment(small):
    public, secret = small
    plain = nacl.secret.SecretBox(secret.key(2)).decrypt(public.ciphertexts[1])
    tampered = plain[:-1] + bytes([plain[-1] ^ 1])
    cts = list(public.ciphertexts)
    cts[1] = bytes(nacl.secret.SecretBox(secret.key(2)).encrypt(tampered))
    forged = PublicTask(public.spec, public.train_X, public.train_y, public.shard_size, public.commitments, tuple(cts))
    with pytest.raises(ShardError, match="commitment"):
        open_shard(forged, 2, secret.key(2))


def test_packages_round_trip_canonically(small):
    public, secret = small
    enc = public.encode()
    again = PublicTask.decode(enc)
    assert again.encode() == enc
    assert SecretTask.decode(secret.encode()) == secret
    with pytest.raises(TaskError):
        PublicTask.decode(enc[:-3])
    with pytest.raises(TaskError, match="non-canonical|msgpack"):
        PublicTask.decode(enc + b"\x00")
    with pytest.raises(TaskError):
        SecretTask.decode(b"\x93\x01\x90\x91\xc4\x01x")


def test_demo_task_size_and_held_out_test(demo):
    public, secret, test = demo
    assert public.n_rounds >= 100 and public.shard_size >= 200
    assert len(public.encode()) < 4 << 20
    assert 16 <= public.spec.n_features <= 32
    # the held-out test rows appear neither in the public data nor in any shard
    rows = {r.tobytes() for r in public.train_X}
    for r in (1, 50, 100):
        rows |= {x.tobytes() for x in open_shard(public, r, secret.key(r)).X}
    assert not any(x.tobytes() in rows for x in test.X)


def test_baseline_is_weak_but_better_than_chance(demo):
    public, _, test = demo
    base = baseline_model(public)
    acc = score(base, test.X, test.y).accuracy
    assert 1 / public.spec.n_classes < acc < 0.6


def test_synthetic_is_deterministic_and_seed_dependent():
    a = synthetic(SEED, n_samples=500)
    b = synthetic(SEED, n_samples=500)
    c = synthetic(SEED[::-1], n_samples=500)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    with pytest.raises(TaskError, match="seed"):
        synthetic(b"short")


def test_split_test_is_disjoint_and_stratified():
    ds = load_builtin("wine")
    rest, test = split_test(ds, 30, SEED)
    assert len(rest) + len(test) == len(ds)
    frac = np.bincount(test.y) / len(test)
    assert np.all(np.abs(frac - np.bincount(ds.y) / len(ds)) < 0.08)


def test_too_many_rounds_is_a_task_error():
    with pytest.raises(TaskError, match="leaves no training rows"):
        package_task(load_builtin("iris"), n_rounds=10, shard_size=15)
