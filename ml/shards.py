"""Hidden-shard packaging: what genesis carries (public) and what the keyholder keeps (secret).

Round r (1-based) owns shard r: canonical shard bytes S_r, a fresh 32-byte salt and a fresh SecretBox key.
Commitment r = H("popchain/shard", u64be(r), salt, S_r); ciphertext r = SecretBox(key).encrypt(salt ‖ S_r)
(24-byte nonce ‖ box). Revealing the 32-byte key alone lets anyone decrypt, recover the salt and check the
commitment. Two kinds of task package (the package version says which):
  * version 1, ROWS (digits, csv, ...): S_r = ``[1, r, X, y]`` — the rows themselves;
  * version 2, GENERATED (the synthetic task): S_r = ``[2, r, world, seed32]`` — ml.generator's parameters
    and a row seed; every node replays ``generate(world, seed, shard_size)``, so a 13,000-row shard costs
    genesis a few hundred bytes. The commitment binds world and seed, hence (the generator being
    deterministic) every generated row;
  * version 3, ROWS IN BLOBS: as version 1, but the package lists a 40-byte blob reference per shard instead of
    its ciphertext (ml.blobs, PROTOCOL §3.15): the ciphertexts travel as content-addressed blobs, so a package
    stays small whatever the dataset size. ``externalise`` turns a version-1 package into this form;
  * version 4, VRF-GENERATED (a committee chain's synthetic task, PROTOCOL §5.5): no sealed shard at all —
    the package carries the public world and the shard count; shard r is ``generate(world, key_r, size)``
    where key_r, the shard's seed, is the committee's threshold-VRF output for (chain, task, r), revealed by
    beacon r. Nobody, the task's creator included, can compute a shard before the committee releases it.
    Its ``commitments`` are per-shard *labels* (H("popchain/vrf-shard", task digest, u64 r): names, not
    bindings; the VRF proof in the beacon is what binds the key) and it has no ciphertexts.
A held-out test split never enters a package. Randomness (keys, salts, seeds) comes from the ``rng``
argument (default os.urandom), so a simulation can be reproducible without patching anything.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import nacl.exceptions
import nacl.secret
import numpy as np

from .blobs import BlobRef, BlobUnavailable, find_blob, make_ref
from .codec import (
    check_bytes,
    check_int,
    check_list,
    decode_array,
    encode_array,
    pack,
    tagged_hash,
    unpack_canonical,
)
from .errors import ShardError, TaskError
from .generator import MAX_GEN_ELEMENTS, World, drift, generate
from .model import Model
from .task import Dataset, TaskSpec, decode_xy, encode_xy

VERSION = 1            # rows package (and rows shard)
GENERATED = 2          # generated package (and generated shard)
BLOBS = 3              # rows package whose shard ciphertexts are blobs (ml.blobs); the shards are rows (VERSION)
VRF_GENERATED = 4      # generated package whose shard seeds are the committee's VRF outputs
Rng = Callable[[int], bytes]
MAX_GENERATED_SHARD_BYTES = 256 << 10   # a world (<= 1024 x 30 centres) and a seed, with room to spare
SHARD_TAG = "popchain/shard"
MAX_ROUNDS = 100_000
MAX_SHARD_SIZE = 100_000
MAX_TRAIN_ROWS = 1_000_000
MAX_TASK_BYTES = 256 << 20
TRAIN_BLOB_BYTES = 256 << 10   # public rows encoded larger than this leave a version-3 package as a blob
KEY_SIZE = 32
SALT_SIZE = 32
SECRET_OVERHEAD = nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES


@dataclass(frozen=True, eq=False)
class PublicTask:
    spec: TaskSpec
    train_X: np.ndarray
    train_y: np.ndarray
    shard_size: int
    commitments: tuple[bytes, ...]   # index r-1 for round r (VRF_GENERATED: labels)
    ciphertexts: tuple[bytes, ...]   # VRF_GENERATED: none
    version: int = VERSION           # VERSION: shards are rows; GENERATED: shards are (world, seed); BLOBS: rows
                                     # whose ciphertexts entries are ml.blobs.BlobRef (appended extensions inline)
    train_ref: BlobRef | None = None  # BLOBS only: the public rows are this blob (pack([X, y])); until it is
                                     # loaded (``hydrate``) train_X / train_y are empty and ``training`` raises
    world: World | None = None       # VRF_GENERATED only: the public world every shard is drawn from

    @property
    def generated(self) -> bool:
        return self.version in (GENERATED, VRF_GENERATED)

    @property
    def vrf(self) -> bool:
        """Shard keys are the committee's VRF outputs (nothing sealed: the shard is unknown to everyone)."""
        return self.version == VRF_GENERATED

    @property
    def n_rounds(self) -> int:
        return len(self.commitments)

    @property
    def training_loaded(self) -> bool:
        return self.train_ref is None or len(self.train_y) > 0

    @property
    def training(self) -> Dataset:
        if not self.training_loaded:
            assert self.train_ref is not None
            raise BlobUnavailable(f"the public training rows (blob {self.train_ref.hex_id[:16]}…, "
                                  f"{self.train_ref.size} bytes) are not loaded: fetch the task's blobs first")
        return Dataset(self.spec, self.train_X, self.train_y)

    def encode(self) -> bytes:
        if self.vrf:
            assert self.world is not None
            return pack([self.version, self.spec.to_obj(), encode_xy(self.train_X, self.train_y), self.shard_size,
                         self.n_rounds, self.world.to_obj()])
        train = bytes(self.train_ref) if self.train_ref is not None else encode_xy(self.train_X, self.train_y)
        return pack([self.version, self.spec.to_obj(), train, self.shard_size,
                     list(self.commitments), [bytes(c) for c in self.ciphertexts]])

    def blob_refs(self) -> tuple[BlobRef, ...]:
        """Every blob this package references: the shards' in index order (what nodes need for rounds, so
        fetched first), then the public rows' if they are a blob (what miners and tools need)."""
        shards = tuple(c for c in self.ciphertexts if isinstance(c, BlobRef))
        return shards if self.train_ref is None else (*shards, self.train_ref)

    def hydrate(self) -> PublicTask:
        """This package with its public rows loaded from their blob (ml.blobs.find_blob: BlobUnavailable if it
        is not here); itself if they are inline or loaded already."""
        if self.training_loaded:
            return self
        assert self.train_ref is not None
        X, y = _train_from_blob(find_blob(self.train_ref), self.spec)
        return dataclasses.replace(self, train_X=X, train_y=y)

    @classmethod
    def decode(cls, data: bytes, *, max_size: int = MAX_TASK_BYTES) -> PublicTask:
        obj = unpack_canonical(data, max_size=max_size, err=TaskError, field="task")
        f = check_list(obj, 6, TaskError, "task")
        version = check_int(f[0], VERSION, VRF_GENERATED, TaskError, "task.version")
        spec = TaskSpec.from_obj(f[1])
        shard_size = check_int(f[3], 1, MAX_SHARD_SIZE, TaskError, "task.shard_size")
        if version != VERSION and shard_size * spec.n_features > MAX_GEN_ELEMENTS:
            raise TaskError(f"task.shard_size: {shard_size} rows x {spec.n_features} features exceeds the "
                            f"generator's cap of {MAX_GEN_ELEMENTS} values")
        train_ref = None
        if version == BLOBS and type(f[2]) is bytes:   # the public rows are a blob too (§3.15)
            train_ref = _blob_ref(f[2], "task.train")
            X = np.zeros((0, spec.n_features), dtype=np.int64)
            y = np.zeros(0, dtype=np.int64)
        else:
            X, y = decode_xy(f[2], spec, "task.train", MAX_TRAIN_ROWS)
        if version == VRF_GENERATED:
            n = check_int(f[4], 1, MAX_ROUNDS, TaskError, "task.n_shards")
            world = World.from_obj(f[5], spec, "task.world")
            return cls(spec, X, y, shard_size, vrf_labels(world, shard_size, 1, n), (), version, world=world)
        commits = check_list(f[4], None, TaskError, "task.commitments", max_len=MAX_ROUNDS)
        cts = check_list(f[5], len(commits), TaskError, "task.ciphertexts")
        if not commits:
            raise TaskError("task.commitments: at least one round is required")
        for i, c in enumerate(commits):
            check_bytes(c, 32, TaskError, f"task.commitments[{i}]")
        if version == BLOBS:
            cts = [_blob_ref(c, f"task.blobs[{i}]") for i, c in enumerate(cts)]
        for i, c in enumerate(cts):
            if isinstance(c, BlobRef):
                continue
            check_bytes(c, None, TaskError, f"task.ciphertexts[{i}]")
            if len(c) <= SECRET_OVERHEAD + SALT_SIZE:
                raise TaskError(f"task.ciphertexts[{i}]: too short ({len(c)} bytes)")
            if version == GENERATED and len(c) > SECRET_OVERHEAD + SALT_SIZE + MAX_GENERATED_SHARD_BYTES:
                raise TaskError(f"task.ciphertexts[{i}]: {len(c)} bytes is too long for a generated shard")
        return cls(spec, X, y, shard_size, tuple(commits), tuple(cts), version, train_ref)


def _blob_ref(raw: object, field: str) -> BlobRef:
    try:
        ref = BlobRef.parse(raw if isinstance(raw, bytes) else b"", field)
    except ShardError as exc:
        raise TaskError(str(exc)) from None
    if type(raw) is not bytes or ref.size <= SECRET_OVERHEAD + SALT_SIZE:
        raise TaskError(f"{field}: not a blob reference of a shard ciphertext")
    return ref


def externalise(public: PublicTask, *, train_over: int = TRAIN_BLOB_BYTES) -> tuple[PublicTask,
                                                                                   dict[BlobRef, bytes]]:
    """A rows package (version 1) as version 3: every shard ciphertext replaced by its blob reference, and the
    public rows too when their encoding exceeds ``train_over`` bytes. Returns the new package (its rows still
    loaded in memory) and the blobs (reference -> bytes) to store or serve. The shard commitments, keys and so
    every consensus outcome are unchanged; only where the bytes live differs."""
    if public.version != VERSION:
        raise TaskError("only a rows package (version 1) moves its shards into blobs")
    blobs = {make_ref(ct): ct for ct in public.ciphertexts}
    refs = tuple(make_ref(ct) for ct in public.ciphertexts)
    train_ref = None
    train = pack(encode_xy(public.train_X, public.train_y))
    if len(train) > train_over:
        train_ref = make_ref(train)
        blobs[train_ref] = train
    return dataclasses.replace(public, ciphertexts=refs, version=BLOBS, train_ref=train_ref), blobs


def _train_from_blob(data: bytes, spec: TaskSpec) -> tuple[np.ndarray, np.ndarray]:
    obj = unpack_canonical(data, max_size=MAX_TASK_BYTES, err=TaskError, field="task.train")
    return decode_xy(obj, spec, "task.train", MAX_TRAIN_ROWS)


@dataclass(frozen=True)
class SecretTask:
    keys: tuple[bytes, ...]   # index r-1 for round r
    salts: tuple[bytes, ...]

    def encode(self) -> bytes:
        return pack([VERSION, list(self.keys), list(self.salts)])

    @classmethod
    def decode(cls, data: bytes, *, max_size: int = 16 << 20) -> SecretTask:
        obj = unpack_canonical(data, max_size=max_size, err=TaskError, field="secret")
        f = check_list(obj, 3, TaskError, "secret")
        check_int(f[0], VERSION, VERSION, TaskError, "secret.version")
        keys = check_list(f[1], None, TaskError, "secret.keys", max_len=MAX_ROUNDS)
        salts = check_list(f[2], len(keys), TaskError, "secret.salts")
        return cls(tuple(check_bytes(k, KEY_SIZE, TaskError, f"secret.keys[{i}]") for i, k in enumerate(keys)),
                   tuple(check_bytes(s, SALT_SIZE, TaskError, f"secret.salts[{i}]") for i, s in enumerate(salts)))

    def key(self, round_: int) -> bytes:
        if not 1 <= round_ <= len(self.keys):
            raise ShardError(f"round: {round_} outside [1, {len(self.keys)}]")
        return self.keys[round_ - 1]


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


def _seal(r: int, shard_bytes: bytes, rng: Rng) -> tuple[bytes, bytes, bytes, bytes]:
    """(key, salt, commitment, ciphertext) of shard r."""
    key, salt = rng(KEY_SIZE), rng(SALT_SIZE)
    box = nacl.secret.SecretBox(key)
    ct = bytes(box.encrypt(salt + shard_bytes, rng(nacl.secret.SecretBox.NONCE_SIZE)))
    return key, salt, commitment(r, salt, shard_bytes), ct


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
        key, salt, commit, ct = _seal(r, encode_shard(r, dataset.X[rows], dataset.y[rows]), rng)
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
        key, salt, commit, ct = _seal(r, encode_generated_shard(r, current, rng(32)), rng)
        keys.append(key)
        salts.append(salt)
        commits.append(commit)
        cts.append(ct)
    return GeneratedBatch(tuple(commits), tuple(cts), SecretTask(tuple(keys), tuple(salts)), current)


def vrf_labels(world: World, shard_size: int, first: int, n: int) -> tuple[bytes, ...]:
    """The names of a VRF-generated task's shards first … first + n − 1 (they bind nothing: the beacon's VRF
    proof does); a package's are 1 … n, an extension's continue them."""
    digest = tagged_hash("popchain/vrf-task", pack([world.to_obj(), shard_size]))
    return tuple(tagged_hash("popchain/vrf-shard", digest, r.to_bytes(8, "big")) for r in range(first, first + n))


def package_vrf(world: World, n_rounds: int, shard_size: int, *, n_train: int, rng: Rng = os.urandom) -> PublicTask:
    """A VRF-generated task (version 4): ``n_train`` public rows of ``world`` and ``n_rounds`` shards whose seeds
    only the committee's threshold VRF will give. There is no secret to keep: nobody has one."""
    check_int(n_rounds, 1, MAX_ROUNDS, TaskError, "n_rounds")
    check_int(shard_size, 1, MAX_GEN_ELEMENTS // world.spec.n_features, TaskError, "shard_size")
    check_int(n_train, 1, MAX_TRAIN_ROWS, TaskError, "n_train")
    train = generate(world, rng(32), n_train)
    return PublicTask(world.spec, train.X, train.y, shard_size, vrf_labels(world, shard_size, 1, n_rounds), (),
                      VRF_GENERATED, world=world)


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


def baseline_model(public: PublicTask) -> Model:
    """A deliberately weak, deterministic initial champion: a depth-2 decision tree on the public data."""
    from sklearn.tree import DecisionTreeClassifier

    from .export import from_sklearn

    train = public.training                     # BlobUnavailable if the rows are a blob not loaded yet
    X, y = train.X, train.y
    if len(np.unique(y)) != public.spec.n_classes:
        raise TaskError("task.train: every class must occur in the public training data")
    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X.astype(np.float64), y)
    return from_sklearn(tree, public.spec)


def demo_task(seed: bytes, n_rounds: int = 100, shard_size: int = 200, n_train: int = 4000,
              n_test: int = 2000) -> tuple[PublicTask, SecretTask, Dataset]:
    """The default demo: the synthetic task from a secret seed -> (public, secret, held-out test set)."""
    from .task import synthetic

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
        key, salt, commit, ct = _seal(r, encode_shard(r, dataset.X[rows], dataset.y[rows]), rng)
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
