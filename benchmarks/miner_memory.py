"""Bounded miner memory (issue 23 item 3): the miner's RSS is flat in the number of revealed shards.

miner_rss_growth   RSS of a miner process after 500 revealed shards ÷ after 50, on a stationary task of 2,000-row
                   shards (14 integer features, like an encoded CSV task): the miner's own data path
                   (node.tools.miner_data.TaskRows fed the shard keys one reveal at a time, as each round reveals
                   one; a candidate fitted with node.tools.miner_models at both checkpoints: gradient-boosted
                   trees). Goal <= 1.2. Quick: 100 ÷ 10 shards (the default 200,000-row cap is reached at ~95),
                   fitting the linear family. Baseline, same run: the previous miner's path in a fresh process —
                   every revealed shard opened again and all its rows kept for the fit — its RSS ratio over the
                   same checkpoints.
Each measurement runs in its own child process (``--child``) so neither sees the other's heap. The task package
(the ciphertexts of every shard, which a miner caches) is in memory at both checkpoints alike.
`python -m benchmarks.miner_memory [--quick]`.
"""
from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N_FEATURES = 14


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _task(n_shards: int, shard: int):
    from ml.shards import package_task
    from ml.task import Dataset, TaskSpec
    rng = np.random.default_rng(0)
    n = n_shards * shard + 20_000
    X = rng.integers(0, 1_000, size=(n, N_FEATURES)).astype(np.int64)
    y = ((X[:, 0] + X[:, 1] // 2 + rng.integers(0, 500, size=n)) > 1_000).astype(np.int64)
    spec = TaskSpec("memory", N_FEATURES, 0, ("a", "b"), max_abs=1_000)
    return package_task(Dataset(spec, X, y), n_shards, shard, n_train=10_000, seed=b"m" * 32)


def child(mode: str, first: int, last: int, shard: int, family: str) -> dict[str, Any]:
    """RSS after fitting a candidate at ``first`` and at ``last`` revealed shards."""
    from ml.model import DEFAULT_CAPS
    from ml.shards import open_shard
    from ml.training import fit_family
    from node.tools.miner_data import TaskRows
    from node.tools.miner_models import Families
    public, secret = _task(last, shard)
    keys = [(i, secret.key(i)) for i in range(1, last + 1)]
    rows = TaskRows(public, seed=1) if mode == "bounded" else None
    source = Families(family)
    out: dict[str, Any] = {}
    for r in range(1, last + 1):
        if rows is not None:
            rows.update(public, keys[:r])             # one reveal a round: only the new shard is opened
        if r not in (first, last):
            continue
        if rows is not None:
            source.build(rows.training_set(), public.spec, DEFAULT_CAPS, seed=0)
            kept = rows.rows_kept()
        else:   # the previous miner: every revealed shard opened again, every row kept and fitted on
            shards = [open_shard(public, i, k) for i, k in keys[:r]]
            X = np.concatenate([public.train_X] + [s.X for s in shards])
            y = np.concatenate([public.train_y] + [s.y for s in shards])
            fit_family(family, X, y, public.spec, caps=DEFAULT_CAPS)
            kept = len(y)
            del shards, X, y
        gc.collect()
        out[str(r)] = {"rss_mb": round(_rss_mb(), 1), "rows": kept}
    return out


def _spawn(mode: str, first: int, last: int, shard: int, family: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.miner_memory", "--child", mode, str(first), str(last),
                           str(shard), family], cwd=ROOT, capture_output=True, text=True, check=False, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"miner_memory child ({mode}) failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict[str, Any]]:
    first, last, shard = (10, 100, 2_000) if quick else (50, 500, 2_000)
    family = "linear" if quick else "gbdt"
    ours = _spawn("bounded", first, last, shard, family)
    old = _spawn("reopen-all", first, last, shard, family)
    a, b = ours[str(first)], ours[str(last)]
    oa, ob = old[str(first)], old[str(last)]
    ratio = b["rss_mb"] / a["rss_mb"]
    return [{"name": "miner_rss_growth", "value": round(ratio, 3), "unit": f"RSS {last} / {first} shards",
             "baseline": round(ob["rss_mb"] / oa["rss_mb"], 3), "ratio": round(ratio, 3),
             "goal": f"<= 1.2; {a['rss_mb']:.0f} -> {b['rss_mb']:.0f} MB keeping {a['rows']:,} -> {b['rows']:,} "
                     f"rows ({shard:,}-row shards, --max-rows default, {family}); baseline: every shard reopened and kept, "
                     f"{oa['rss_mb']:.0f} -> {ob['rss_mb']:.0f} MB ({oa['rows']:,} -> {ob['rows']:,} rows)"}]


if __name__ == "__main__":
    if "--child" in sys.argv:
        i = sys.argv.index("--child")
        mode, first, last, shard = sys.argv[i + 1], *map(int, sys.argv[i + 2:i + 5])
        print(json.dumps(child(mode, first, last, shard, sys.argv[i + 5])))
    else:
        for f in run(quick="--quick" in sys.argv):
            print(f)
