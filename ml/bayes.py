"""The synthetic task's physical limit: the accuracy of the classifier that knows the true concept (issue 21).

A generated row's label is its cluster's class, reassigned uniformly with probability ε = label_noise/65536
(PROTOCOL §5.6). The features carry the cluster only through the informative coordinates ``z = centre +
noise`` (mixed linearly — invertible in every generated world, so no information is lost — plus products of
them and pure noise columns). The **Bayes-optimal** classifier therefore picks the class maximising
(1 − ε)·P(class | z) + ε/k, with P(cluster | z) ∝ exp(−|z − centre|² / 2σ²) over equally likely clusters.
``bayes_accuracy`` draws fresh rows of a world exactly as ``ml.generator.generate`` does (the same streams), runs
that oracle on their informative coordinates and scores it against their labels: the accuracy no model of the
features can beat (up to Monte Carlo error, ~0.1 pp at 200,000 rows; the Gaussian posterior stands in for the
generator's Irwin–Hall noise, whose s.d. it uses, and features quantised to scale_bits lose a negligible share).

What it does NOT do: anything consensus reads — it is a report for summaries (demo, explorer, `task show`,
benchmarks), floats allowed.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .codec import check_list, pack, unpack_canonical
from .errors import ShardError, TaskError
from .generator import FRAC, World, gauss, stream_u16
from .shards import MAX_GENERATED_SHARD_BYTES, PublicTask, checked_shard_bytes

__all__ = ["bayes_accuracy", "shard_bayes_accuracy", "shard_world"]

_SIGMA = 4101.0 / (1 << FRAC) * (1 << FRAC)   # the generator's noise s.d. in fixed point (~1 unit)
_CHUNK = 50_000


def _oracle_correct(world: World, seed: bytes, n: int) -> int:
    spec = world.spec
    k, n_clusters = world.n_informative, world.centres.shape[0]
    cluster = stream_u16(seed, b"cluster", n) % n_clusters
    z = (world.centres[cluster] + gauss(seed, b"informative", (n, k))).astype(np.float64)
    centres = world.centres.astype(np.float64)
    d2 = (z * z).sum(1)[:, None] - 2.0 * z @ centres.T + (centres * centres).sum(1)[None, :]
    logp = -d2 / (2.0 * _SIGMA * _SIGMA)
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    p /= p.sum(axis=1, keepdims=True)
    n_classes = spec.n_classes
    by_class = np.zeros((n, n_classes))
    for c in range(n_classes):
        by_class[:, c] = p[:, c::n_classes].sum(axis=1)        # class c owns clusters c, c + k, c + 2k, …
    # label noise adds ε/k to every class alike: it does not move the argmax
    guess = by_class.argmax(axis=1)
    y = cluster % n_classes
    flip = stream_u16(seed, b"flip", n) < world.label_noise
    y = np.where(flip, stream_u16(seed, b"relabel", n) % n_classes, y)
    return int((guess == y).sum())


def bayes_accuracy(world: World, *, rows: int = 200_000, seed: bytes = b"popchain/bayes") -> float:
    """The Bayes-optimal accuracy of ``world`` on ``rows`` fresh rows (see the module docstring)."""
    correct = done = 0
    i = 0
    while done < rows:
        n = min(_CHUNK, rows - done)
        correct += _oracle_correct(world, hashlib.sha256(seed + i.to_bytes(4, "big")).digest(), n)
        done += n
        i += 1
    return correct / rows


def shard_world(public: PublicTask, round_: int, key: bytes) -> World:
    """The generator world a revealed shard of a generated task was drawn from (its committed plaintext; a
    VRF-generated task's one world is public in its package, PROTOCOL §5.5)."""
    if not public.generated:
        raise ShardError("shard: not a generated task: no known concept, no Bayes limit")
    if public.vrf and public.world is not None:
        return public.world      # a committee's VRF-generated task draws every shard from its public world
    obj = unpack_canonical(checked_shard_bytes(public, round_, key), max_size=MAX_GENERATED_SHARD_BYTES,
                           err=ShardError, field="shard")
    f = check_list(obj, 4, ShardError, "shard")
    try:
        return World.from_obj(f[2], public.spec, "shard.world")
    except TaskError as exc:
        raise ShardError(f"shard: {exc}") from None


_cache: dict[bytes, float] = {}


def shard_bayes_accuracy(public: PublicTask, round_: int, key: bytes, *, rows: int = 200_000) -> float:
    """``bayes_accuracy`` of a revealed shard's world (memoised by the world: a stationary task computes once)."""
    world = shard_world(public, round_, key)
    digest = hashlib.sha256(pack(world.to_obj())).digest()
    hit = _cache.get(digest)
    if hit is None:
        hit = _cache[digest] = bayes_accuracy(world, rows=rows)
        while len(_cache) > 64:
            _cache.pop(next(iter(_cache)))
    return hit
