"""The synthetic task's integer-only, platform-independent row generator (PROTOCOL §5.6).

A ``World`` is the generator's parameters, all integers in fixed point (``FRAC`` = 12 fractional bits): each
class is a mixture of clusters at hypercube vertices of an informative subspace, mixed linearly; a few features
are products of informative ones, the rest noise; a share of labels is reassigned uniformly. ``generate(world,
seed, n)`` turns a 32-byte seed into n rows, deterministically on every platform: the only randomness is the
SHAKE-128 stream of the seed (FIPS 202), read as little-endian uint16 words, and every later step is int64
arithmetic whose magnitudes are bounded by ``World`` validation (no overflow, no float, no numpy RNG).

Gaussian-like noise is the Irwin–Hall sum of 4 uniform words (mean 0, s.d. ~1 unit after scaling, bounded by
±3.5 units). ``drift`` moves the cluster centres a little and pulls them back towards the task's first world
(a mean-reverting random walk: the concept keeps moving from shard to shard, as fraud, demand or sensor data do,
but its geometry stays bounded for any number of shards; issue 11). The default synthetic task of ``genesis
create`` drifts (node.tools.genesis_setup.DEFAULT_DRIFT_MILLI); ``drift_milli`` 0 keeps one world.

What it does NOT do: decide what is secret (ml.shards packages worlds and seeds into shard plaintexts) or
touch floats anywhere a node replays; ``world_from_seed`` runs only when a task is created.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .codec import check_int, check_list, decode_array, encode_array
from .errors import TaskError
from .task import Dataset, TaskSpec

FRAC = 12                     # fixed-point fractional bits of every generator quantity
UNIT = 1 << FRAC
NOISE_WORDS = 4               # uint16 words summed per Gaussian-like draw
_IH_MID = NOISE_WORDS * 0xFFFF // 2  # 131070: the centre of a sum of 4 words
_IH_MUL, _IH_SHIFT = 111, 10  # (sum - centre) * 111 >> 10 has s.d. ~ 4101 ~ 1 unit
MAX_INFORMATIVE = 30
MAX_CLUSTERS = 1024
MAX_GEN_FEATURES = 256
MAX_CENTRE = 1 << 20          # |centre| bound (fixed point): keeps every int64 intermediate below 2^62
MAX_MIX = 1 << 16             # |mixing entry| bound
MAX_GEN_ELEMENTS = 1 << 23    # rows x features one generate() call may produce (bounds a node's work)
NOISE_SCALE = 1 << 16         # label_noise is a probability in units of 1/65536
SCALE_BITS = 8
MAX_ABS = (1 << 16) - 1       # features are clipped to +-256 units at scale_bits 8
GEN_TAG = b"popchain/generator"
DRIFT_REVERT = 2048           # per drift step, centres move back by 2048/65536 = 1/32 of their offset from the
                              # anchor world: stationary s.d. ~ step * sqrt(32 / 2) = 4 steps per coordinate


def _words(seed: bytes, label: bytes, count: int) -> np.ndarray:
    """``count`` little-endian uint16 words of SHAKE-128(GEN_TAG ‖ u8(len label) ‖ label ‖ seed)."""
    h = hashlib.shake_128(GEN_TAG + bytes([len(label)]) + label + seed)
    return np.frombuffer(h.digest(2 * count), dtype="<u2")


def stream_u16(seed: bytes, label: bytes, count: int) -> np.ndarray:
    """``count`` uint16 words of the seed's stream ``label``, as int64."""
    return _words(seed, label, count).astype(np.int64)


def gauss(seed: bytes, label: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Irwin–Hall(4) draws in fixed point: mean 0, s.d. ~UNIT, |value| <= 14 210. Value i (row-major in
    ``shape``, n values) sums words i, n + i, 2n + i and 3n + i of the stream (plane-major: vector adds)."""
    n = math.prod(shape)
    planes = _words(seed, label, n * NOISE_WORDS).reshape(NOISE_WORDS, n)
    total = planes[0].astype(np.int64)
    for plane in planes[1:]:
        total += plane
    total -= _IH_MID
    total *= _IH_MUL
    total >>= _IH_SHIFT
    return total.reshape(shape)


@dataclass(frozen=True, eq=False)
class World:
    """Generator parameters (all int64 fixed point). Features are ``n_informative`` mixed informative ones,
    ``len(pairs)`` products of two of them, the rest noise, then permuted by ``perm``."""
    spec: TaskSpec
    centres: np.ndarray   # (n_clusters, n_informative); cluster j belongs to class j % n_classes
    mixing: np.ndarray    # (n_informative, n_informative)
    pairs: np.ndarray     # (n_products, 2) indices into the informative features
    perm: np.ndarray      # (n_features,) output column i is generated column perm[i]
    label_noise: int      # P(label reassigned uniformly) x 65536

    def __post_init__(self) -> None:
        spec = self.spec
        if not 0 <= spec.scale_bits <= FRAC or spec.n_features > MAX_GEN_FEATURES:
            raise TaskError(f"world: scale_bits <= {FRAC} and n_features <= {MAX_GEN_FEATURES} required")
        c, m, p, perm = self.centres, self.mixing, self.pairs, self.perm
        for name, a in (("centres", c), ("mixing", m), ("pairs", p), ("perm", perm)):
            if a.dtype != np.int64:
                raise TaskError(f"world.{name}: expected int64, got {a.dtype}")
        if c.ndim != 2 or not 1 <= c.shape[1] <= MAX_INFORMATIVE or not spec.n_classes <= c.shape[0] <= MAX_CLUSTERS:
            raise TaskError(f"world.centres: shape {c.shape} outside ([{spec.n_classes}, {MAX_CLUSTERS}], "
                            f"[1, {MAX_INFORMATIVE}])")
        k = c.shape[1]
        if m.shape != (k, k):
            raise TaskError(f"world.mixing: expected ({k}, {k}), got {m.shape}")
        if p.ndim != 2 or p.shape[1] != 2 or k + p.shape[0] > spec.n_features:
            raise TaskError(f"world.pairs: expected (n, 2) with {k} + n <= {spec.n_features}, got {p.shape}")
        if c.size and int(np.abs(c).max()) > MAX_CENTRE:
            raise TaskError(f"world.centres: a value exceeds {MAX_CENTRE}")
        if m.size and int(np.abs(m).max()) > MAX_MIX:
            raise TaskError(f"world.mixing: a value exceeds {MAX_MIX}")
        if p.size and (int(p.min()) < 0 or int(p.max()) >= k):
            raise TaskError(f"world.pairs: indices must lie in [0, {k})")
        if perm.shape != (spec.n_features,) or not np.array_equal(np.sort(perm), np.arange(spec.n_features)):
            raise TaskError(f"world.perm: not a permutation of {spec.n_features} columns")
        check_int(self.label_noise, 0, NOISE_SCALE, TaskError, "world.label_noise")

    @property
    def n_informative(self) -> int:
        return int(self.centres.shape[1])

    def to_obj(self) -> list[Any]:
        return [encode_array(self.centres), encode_array(self.mixing), encode_array(self.pairs),
                encode_array(self.perm), self.label_noise]

    @classmethod
    def from_obj(cls, obj: Any, spec: TaskSpec, field: str = "world") -> World:
        f = check_list(obj, 5, TaskError, field)
        cap = MAX_CLUSTERS * MAX_INFORMATIVE
        arrays = [decode_array(f[i], TaskError, f"{field}.{name}", ndim=2 if i < 3 else 1, max_elements=cap)
                  .astype(np.int64) for i, name in enumerate(("centres", "mixing", "pairs", "perm"))]
        centres, mixing, pairs, perm = arrays
        return cls(spec, centres, mixing, pairs, perm,
                   check_int(f[4], 0, NOISE_SCALE, TaskError, f"{field}.label_noise"))


def world_from_seed(seed: bytes, *, n_features: int = 24, n_classes: int = 4, n_informative: int = 8,
                    clusters_per_class: int = 4, label_noise: float = 0.08, scale_bits: int = SCALE_BITS,
                    name: str = "synthetic") -> World:
    """A fresh world from a secret seed (task creation only; its integers then travel in the shards)."""
    if not isinstance(seed, bytes) or len(seed) < 16:
        raise TaskError("synthetic.seed: need at least 16 secret bytes")
    check_int(n_informative, 2, MAX_INFORMATIVE, TaskError, "synthetic.n_informative")
    check_int(n_features, n_informative + 2, MAX_GEN_FEATURES, TaskError, "synthetic.n_features")
    check_int(n_classes, 2, 256, TaskError, "synthetic.n_classes")
    check_int(clusters_per_class, 1, MAX_CLUSTERS // n_classes, TaskError, "synthetic.clusters_per_class")
    if not 0.0 <= label_noise <= 1.0:
        raise TaskError(f"synthetic.label_noise: {label_noise} outside [0, 1]")
    n_clusters = n_classes * clusters_per_class
    # distinct hypercube vertices (one per cluster) at +-1.4 units: rank 30-bit words, keep the first distinct
    words = stream_u16(seed, b"vertices", 4 * n_clusters * 8).reshape(-1, 2)
    cand = (words[:, 0] << 16 | words[:, 1]) & ((1 << n_informative) - 1)
    _, first = np.unique(cand, return_index=True)
    vertices = cand[np.sort(first)][:n_clusters]
    if len(vertices) < n_clusters:
        raise TaskError(f"synthetic: {n_clusters} clusters need more than {n_informative} informative features")
    bits = (vertices[:, None] >> np.arange(n_informative)) & 1
    centres = (bits * 2 - 1) * (14 * UNIT // 10)
    mix_scale = math.isqrt(UNIT * UNIT // n_informative)  # 1/sqrt(k) in fixed point
    mixing = (gauss(seed, b"mixing", (n_informative, n_informative)) * mix_scale) >> FRAC
    n_products = min(4, n_features - n_informative - 1)
    pairs = stream_u16(seed, b"pairs", 2 * n_products).reshape(n_products, 2) % n_informative
    perm = np.argsort(stream_u16(seed, b"perm", 2 * n_features).reshape(-1, 2) @ np.array([1 << 16, 1]),
                      kind="stable").astype(np.int64)
    spec = TaskSpec(name, n_features, scale_bits, tuple(f"c{i}" for i in range(n_classes)), max_abs=MAX_ABS)
    return World(spec, centres.astype(np.int64), mixing.astype(np.int64), pairs.astype(np.int64), perm,
                 label_noise=round(label_noise * NOISE_SCALE))


def drift(world: World, seed: bytes, step_milli: int, anchor: World | None = None) -> World:
    """``world`` with every centre moved by ~step_milli/1000 units (Gaussian-like, from ``seed``), then, given an
    ``anchor`` (the task's first world), pulled back by DRIFT_REVERT/65536 of its offset from the anchor's centre:
    c' = c + (gauss * step_milli) // 1000 - ((c - a) * DRIFT_REVERT >> 16), clipped to ±MAX_CENTRE. Integers only
    (floor division and arithmetic shifts), so a task's shards are the same on every platform."""
    check_int(step_milli, 0, 10_000, TaskError, "drift.step_milli")
    step = (gauss(seed, b"drift", world.centres.shape) * step_milli) // 1000
    centres = world.centres + step
    if anchor is not None:
        if anchor.centres.shape != world.centres.shape:
            raise TaskError(f"drift.anchor: centres {anchor.centres.shape}, expected {world.centres.shape}")
        centres = centres - (((world.centres - anchor.centres) * DRIFT_REVERT) >> 16)
    centres = np.clip(centres, -MAX_CENTRE, MAX_CENTRE)
    return World(world.spec, centres, world.mixing, world.pairs, world.perm, world.label_noise)


def generate(world: World, seed: bytes, n: int) -> Dataset:
    """n rows of ``world`` from ``seed``: identical int64 arrays on every platform and numpy version."""
    spec = world.spec
    check_int(n, 1, MAX_GEN_ELEMENTS // spec.n_features, TaskError, "generate.n")
    k, n_clusters, n_prod = world.n_informative, world.centres.shape[0], world.pairs.shape[0]
    cluster = stream_u16(seed, b"cluster", n) % n_clusters
    informative = world.centres[cluster] + gauss(seed, b"informative", (n, k))   # |.| < 2^21
    mixed = (informative @ world.mixing) >> FRAC                                 # |.| < 30 * 2^37 >> 12
    a, b = mixed[:, world.pairs[:, 0]], mixed[:, world.pairs[:, 1]]
    products = (a * b) >> (FRAC + 1)                                             # |a * b| < 2^62
    noise = gauss(seed, b"noise", (n, spec.n_features - k - n_prod))
    cols = np.concatenate([mixed, products, noise], axis=1)[:, world.perm]
    X = cols >> (FRAC - spec.scale_bits)
    np.minimum(X, spec.max_abs, out=X)
    np.maximum(X, -spec.max_abs, out=X)
    y = cluster % spec.n_classes
    flip = stream_u16(seed, b"flip", n) < world.label_noise
    y = np.where(flip, stream_u16(seed, b"relabel", n) % spec.n_classes, y)
    return Dataset(spec, np.ascontiguousarray(X, dtype=np.int64), y.astype(np.int64))
