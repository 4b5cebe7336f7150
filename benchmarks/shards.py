"""Generated hidden shards: what a node pays to open a power-sized shard, and what genesis pays to carry them.

shard_open_generated_13k   open a 13,000-row generated shard (decrypt, commitment, replay ml.generator)
                           vs  numpy PCG64 drawing the same number of float64 normals (a bare RNG, no checks)
genesis_task_bytes_13k     the task package of 100 rounds x 13,000-row generated shards (quick: 10 rounds)
                           vs  the same shards shipped as encrypted rows (one rows shard's size x rounds)
`python -m benchmarks.shards [--quick]`.
"""
from __future__ import annotations

import hashlib
import statistics
import sys
import time
from typing import Any

import numpy as np

from ml.generator import world_from_seed
from ml.shards import SALT_SIZE, SECRET_OVERHEAD, encode_shard, open_shard, package_generated

ROWS = 13_000


def _rng(label: bytes):
    counter = [0]

    def rng(n: int) -> bytes:
        counter[0] += 1
        return hashlib.shake_256(label + counter[0].to_bytes(8, "big")).digest(n)
    return rng


def run(quick: bool = False) -> list[dict[str, Any]]:
    rounds, repeats = (10, 3) if quick else (100, 9)
    world = world_from_seed(b"popchain-bench-shards-seed")
    public, secret = package_generated(world, rounds, ROWS, n_train=4000, rng=_rng(b"bench"))
    n_values = ROWS * world.spec.n_features
    ours, base = [], []
    for i in range(repeats):
        r = 1 + i % rounds
        t = time.perf_counter()
        shard = open_shard(public, r, secret.key(r))
        ours.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        np.random.default_rng(i).standard_normal(n_values)
        base.append((time.perf_counter() - t) * 1000)
    value, baseline = statistics.median(ours), statistics.median(base)
    task_bytes = len(public.encode())
    rows_shard = len(encode_shard(1, shard.X, shard.y)) + SALT_SIZE + SECRET_OVERHEAD + 32
    rows_bytes = task_bytes - sum(len(c) + 32 for c in public.ciphertexts) + rounds * rows_shard
    return [
        {"name": "shard_open_generated_13k", "value": round(value, 2), "unit": "ms", "baseline": round(baseline, 2),
         "ratio": round(value / baseline, 2), "goal": "<= 250 ms (well inside the opening window)"},
        {"name": "genesis_task_bytes_13k", "value": task_bytes, "unit": f"bytes/{rounds} rounds",
         "baseline": rows_bytes, "ratio": round(task_bytes / rows_bytes, 4), "goal": "<= 1 MiB at 100 rounds"},
    ]


if __name__ == "__main__":
    for fig in run(quick="--quick" in sys.argv):
        print(fig)
