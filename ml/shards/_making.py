"""Making task packages (a task's creator only; nodes never run this): the stratified assignment of rows to
hidden shards and public training data, the held-out test split, generated and VRF-generated packages, the
batches a task extension carries, and the deliberately weak baseline champion.

Does not: define the package format (ml.shards._package) or the shard sealing (ml.shards._sealing).
Randomness (keys, salts, seeds) comes from the ``rng`` argument (default os.urandom); ``seed`` fixes only the
row assignment.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from ..codec import check_int
from ..errors import TaskError
from ..generator import MAX_GEN_ELEMENTS, World, drift, generate
from ..model import Model
from ..task import Dataset
from ._package import (
    GENERATED,
    MAX_ROUNDS,
    MAX_SHARD_SIZE,
    MAX_TRAIN_ROWS,
    VRF_GENERATED,
    PublicTask,
    Rng,
    SecretTask,
    vrf_labels,
)
from ._sealing import encode_generated_shard, encode_shard, seal_shard


def _rng(seed: bytes | None, label: bytes, rng: Rng = os.urandom) -> np.random.Generator:
    """Row assignment only (task creation, not replayed by nodes): numpy PCG64 from seed or ``rng``."""
    material = hashlib.sha256(label + (seed if seed is not None else rng(32))).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(material, "big")))


def _stratified_order(y: np.ndarray, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """Permutation whose consecutive blocks of len(y)//n_groups rows have near-equal class mixes."""
    keys = np.empty(len(y), dtype=np.float64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        # spread class c evenly over [0, 1): rank / count, jittered inside its slot
        keys[idx] = (np.arange(len(idx)) + rng.random(len(idx))) / len(idx)
    return np.argsort(keys, kind="stable")


def split_test(dataset: Dataset, n_test: int, seed: bytes | None = None) -> tuple[Dataset, Dataset]:
    """(rest, test): a stratified held-out test set for reporting; it must never go into genesis."""
    n = len(dataset)
    check_int(n_test, 1, n - 1, TaskError, "n_test")
    order = _stratified_order(dataset.y, max(1, n // n_test), _rng(seed, b"popchain/test-split"))
    step = n / n_test
    test_pos = np.unique((np.arange(n_test) * step).astype(np.int64))
    mask = np.zeros(n, dtype=bool)
    mask[order[test_pos]] = True
    return dataset.subset(np.flatnonzero(~mask)), dataset.subset(np.flatnonzero(mask))

def package_task(dataset: Dataset, n_rounds: int, shard_size: int, *, n_train: int | None = None,
                 seed: bytes | None = None, rng: Rng = os.urandom) -> tuple[PublicTask, SecretTask]:
    """Split ``dataset`` into n_rounds stratified hidden shards of shard_size rows and public training data
    (the remaining rows, or the first ``n_train`` of them). Keys, salts and nonces come from ``rng``
    (os.urandom unless a simulation passes its own); ``seed`` only fixes the row assignment."""
    check_int(n_rounds, 1, MAX_ROUNDS, TaskError, "n_rounds")
    check_int(shard_size, 1, MAX_SHARD_SIZE, TaskError, "shard_size")
    n_hidden = n_rounds * shard_size
    if n_hidden >= len(dataset):
        raise TaskError(f"n_rounds x shard_size = {n_hidden} leaves no training rows out of {len(dataset)}")
    order_rng = _rng(seed, b"popchain/shards", rng)
    # stratified: rows sorted by class-spread keys; any contiguous block has a near-proportional class mix
    order = _stratified_order(dataset.y, n_rounds + 1, order_rng)
    shard_rows = [order[(r - 1) * shard_size:r * shard_size] for r in range(1, n_rounds + 1)]
    train_mask = np.zeros(len(dataset), dtype=bool)
    train_mask[order[n_hidden:]] = True
    train_idx = order_rng.permutation(np.flatnonzero(train_mask))
    if n_train is not None:
        check_int(n_train, 1, len(train_idx), TaskError, "n_train")
        train_idx = train_idx[:n_train]
    keys, salts, commits, cts = [], [], [], []
    for r, rows in enumerate(shard_rows, start=1):
        rows = order_rng.permutation(rows)
        key, salt, commit, ct = seal_shard(r, encode_shard(r, dataset.X[rows], dataset.y[rows]), rng)
        keys.append(key)
        salts.append(salt)
        commits.append(commit)
        cts.append(ct)
    public = PublicTask(dataset.spec, dataset.X[train_idx], dataset.y[train_idx], shard_size,
                        tuple(commits), tuple(cts))
    return public, SecretTask(tuple(keys), tuple(salts))


def package_generated(world: World, n_rounds: int, shard_size: int, *, n_train: int, rng: Rng = os.urandom,
                      drift_milli: int = 0) -> tuple[PublicTask, SecretTask]:
    """A generated task: ``n_train`` public rows of ``world`` plus n_rounds hidden shards, each a fresh row
    seed (from ``rng``) and the world it is drawn from. With ``drift_milli`` > 0 the world of shard r is that
    of shard r-1 with its centres moved by ~drift_milli/1000 units and pulled 1/32 of the way back towards
    ``world`` (ml.generator.drift), so shard r's distribution is unknown until it is revealed; 0 (the default)
    keeps one world for every shard. The public rows are always drawn from ``world``: the task *at the start*;
    later miners learn the moving concept from the revealed shards."""
    check_int(n_rounds, 1, MAX_ROUNDS, TaskError, "n_rounds")
    check_int(shard_size, 1, MAX_GEN_ELEMENTS // world.spec.n_features, TaskError, "shard_size")
    check_int(n_train, 1, MAX_TRAIN_ROWS, TaskError, "n_train")
    train = generate(world, rng(32), n_train)
    batch = generated_batch(world, 1, n_rounds, rng=rng, drift_milli=drift_milli, anchor=world)
    public = PublicTask(world.spec, train.X, train.y, shard_size, batch.commitments, batch.ciphertexts, GENERATED)
    return public, batch.secret


@dataclass(frozen=True)
class GeneratedBatch:
    """Sealed generated shards first_index … of a task: what a package or a task extension carries, the keys
    for the keyholder, and the world of the last shard (the next batch drifts on from it)."""
    commitments: tuple[bytes, ...]
    ciphertexts: tuple[bytes, ...]
    secret: SecretTask
    last_world: World


def generated_batch(world: World, first_index: int, n: int, *, rng: Rng = os.urandom, drift_milli: int = 0,
                    anchor: World | None = None) -> GeneratedBatch:
    """``n`` generated shards with task-local indices first_index …: shard i's world is the previous one
    (``world`` before the first) drifted by ``drift_milli`` towards ``anchor`` (the task's start world: pass it
    for every batch of a task, or its drift is a free random walk), then a fresh row seed; each sealed as
    package shards are (commitment binds the index). package_generated is the batch 1 … n_rounds."""
    check_int(n, 1, MAX_ROUNDS, TaskError, "n_shards")
    keys, salts, commits, cts = [], [], [], []
    current = world
    for r in range(first_index, first_index + n):
        if drift_milli:
            current = drift(current, rng(32), drift_milli, anchor=anchor)
        key, salt, commit, ct = seal_shard(r, encode_generated_shard(r, current, rng(32)), rng)
        keys.append(key)
        salts.append(salt)
        commits.append(commit)
        cts.append(ct)
    return GeneratedBatch(tuple(commits), tuple(cts), SecretTask(tuple(keys), tuple(salts)), current)


def package_vrf(world: World, n_rounds: int, shard_size: int, *, n_train: int, rng: Rng = os.urandom) -> PublicTask:
    """A VRF-generated task (version 4): ``n_train`` public rows of ``world`` and ``n_rounds`` shards whose seeds
    only the committee's threshold VRF will give. There is no secret to keep: nobody has one."""
    check_int(n_rounds, 1, MAX_ROUNDS, TaskError, "n_rounds")
    check_int(shard_size, 1, MAX_GEN_ELEMENTS // world.spec.n_features, TaskError, "shard_size")
    check_int(n_train, 1, MAX_TRAIN_ROWS, TaskError, "n_train")
    train = generate(world, rng(32), n_train)
    return PublicTask(world.spec, train.X, train.y, shard_size, vrf_labels(world, shard_size, 1, n_rounds), (),
                      VRF_GENERATED, world=world)


def baseline_model(public: PublicTask) -> Model:
    """A deliberately weak, deterministic initial champion: a depth-2 decision tree on the public data."""
    from sklearn.tree import DecisionTreeClassifier

    from ..export import from_sklearn

    train = public.training                     # BlobUnavailable if the rows are a blob not loaded yet
    X, y = train.X, train.y
    if len(np.unique(y)) != public.spec.n_classes:
        raise TaskError("task.train: every class must occur in the public training data")
    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X.astype(np.float64), y)
    return from_sklearn(tree, public.spec)


def demo_task(seed: bytes, n_rounds: int = 100, shard_size: int = 200, n_train: int = 4000,
              n_test: int = 2000) -> tuple[PublicTask, SecretTask, Dataset]:
    """The default demo: the synthetic task from a secret seed -> (public, secret, held-out test set)."""
    from ..task import synthetic

    ds = synthetic(seed, n_samples=n_rounds * shard_size + n_train + n_test)
    rest, test = split_test(ds, n_test, seed)
    public, secret = package_task(rest, n_rounds, shard_size, seed=seed)
    return public, secret, test


# ---------------------------------------------------------------- extension batches (issue 11)

ShardBatch = tuple[tuple[bytes, ...], tuple[bytes, ...], SecretTask]   # commitments, ciphertexts, their keys


def extend_rows(dataset: Dataset, first: int, n_rounds: int, shard_size: int, *, seed: bytes | None = None,
                rng: Rng = os.urandom) -> ShardBatch:
    """Hidden shards ``first`` … ``first + n_rounds − 1`` of a rows task from fresh rows of ``dataset`` (a task
    extension's batch: the commitment binds the task-local index, so shard numbers continue the task's)."""
    check_int(first, 1, MAX_ROUNDS, TaskError, "first")
    check_int(n_rounds, 1, MAX_ROUNDS, TaskError, "n_rounds")
    check_int(shard_size, 1, MAX_SHARD_SIZE, TaskError, "shard_size")
    if n_rounds * shard_size > len(dataset):
        raise TaskError(f"{n_rounds} x {shard_size} rows needed, the dataset has {len(dataset)}")
    order_rng = _rng(seed, b"popchain/extension", rng)
    order = _stratified_order(dataset.y, n_rounds, order_rng)
    keys, salts, commits, cts = [], [], [], []
    for i in range(n_rounds):
        r = first + i
        rows = order_rng.permutation(order[i * shard_size:(i + 1) * shard_size])
        key, salt, commit, ct = seal_shard(r, encode_shard(r, dataset.X[rows], dataset.y[rows]), rng)
        keys.append(key)
        salts.append(salt)
        commits.append(commit)
        cts.append(ct)
    return tuple(commits), tuple(cts), SecretTask(tuple(keys), tuple(salts))


def extend_generated(world: World, first: int, n_rounds: int, *, rng: Rng = os.urandom,
                     drift_milli: int = 0, anchor: World | None = None) -> tuple[ShardBatch, World]:
    """Generated shards ``first`` … of a task whose last shard was drawn from ``world`` (with ``drift_milli``
    each continues to drift from there, towards ``anchor``: pass the task's start world, else the drift of an
    extended task is a free random walk). Returns the batch and the world of its last shard (for the next one).
    generated_batch as a tuple."""
    check_int(first, 1, MAX_ROUNDS, TaskError, "first")
    batch = generated_batch(world, first, n_rounds, rng=rng, drift_milli=drift_milli, anchor=anchor)
    return (batch.commitments, batch.ciphertexts, batch.secret), batch.last_world
