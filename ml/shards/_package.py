"""A task package as data: PublicTask (what genesis or an announcement carries) and SecretTask (what the
keyholder keeps), their canonical encodings, decoders with every limit checked, the blob form of a rows package
(``externalise``, version 3) and a VRF task's shard labels.

Does not: choose rows or seal shards (ml.shards._making, ml.shards._sealing), or open a shard (_sealing).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import nacl.secret
import numpy as np

from ..blobs import BlobRef, BlobUnavailable, find_blob, make_ref
from ..codec import check_bytes, check_int, check_list, pack, tagged_hash, unpack_canonical
from ..errors import ShardError, TaskError
from ..generator import MAX_GEN_ELEMENTS, World
from ..task import Dataset, TaskSpec, decode_xy, encode_xy

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


def vrf_labels(world: World, shard_size: int, first: int, n: int) -> tuple[bytes, ...]:
    """The names of a VRF-generated task's shards first … first + n − 1 (they bind nothing: the beacon's VRF
    proof does); a package's are 1 … n, an extension's continue them."""
    digest = tagged_hash("popchain/vrf-task", pack([world.to_obj(), shard_size]))
    return tuple(tagged_hash("popchain/vrf-shard", digest, r.to_bytes(8, "big")) for r in range(first, first + n))
