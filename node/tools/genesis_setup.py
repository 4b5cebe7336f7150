"""Creating a chain on disk: load a task, hold out a test split, build genesis, write the three files.

``popchain genesis create`` and ``popchain demo`` both call ``create_genesis_files``; the consensus rules for
what a genesis contains live in consensus.genesis, this module only chooses sizes and writes files.
"""
from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chain.crypto import Keypair
from consensus.genesis import GenesisParams, create_genesis
from consensus.keyholder import keyholder_file
from ml.errors import TaskError
from ml.shards import split_test
from ml.task import Dataset, load_builtin, load_csv, synthetic, write_feature_csv

BUILTINS = ("digits", "breast_cancer", "wine", "iris")
SYNTHETIC_ROUNDS, SYNTHETIC_SHARD, SYNTHETIC_TRAIN, SYNTHETIC_TEST = 100, 200, 4000, 2000

GENESIS_FILE = "genesis.bin"
KEYHOLDER_FILE = "keyholder.secret"
HOLDOUT_FILE = "holdout.csv"


def _sizes(n_rows: int, rounds: int | None, shard_size: int | None) -> tuple[int, int, int]:
    """(rounds, shard_size, n_test) for a small named dataset: ~1/8 held out for testing, ~half hidden."""
    n_test = max(10, n_rows // 8)
    shard_size = shard_size or max(10, n_rows // 16)
    rounds = rounds or max(1, (n_rows // 2) // shard_size)
    if rounds * shard_size + n_test >= n_rows - 10:
        raise TaskError(f"{rounds} rounds x {shard_size} samples + {n_test} test rows leave no training data "
                        f"out of {n_rows} rows; lower --rounds or --shard-size")
    return rounds, shard_size, n_test


def load_task(task: str, *, label_column: str, rounds: int | None, shard_size: int | None,
              seed: bytes) -> tuple[Dataset, int, int, int]:
    """(dataset, rounds, shard_size, n_test) for a task name: synthetic | digits | ... | csv:PATH."""
    if task == "synthetic":
        rounds = rounds or SYNTHETIC_ROUNDS
        shard_size = shard_size or SYNTHETIC_SHARD
        return (synthetic(seed, n_samples=rounds * shard_size + SYNTHETIC_TRAIN + SYNTHETIC_TEST),
                rounds, shard_size, SYNTHETIC_TEST)
    if task in BUILTINS:
        dataset = load_builtin(task)
    elif task.startswith("csv:"):
        dataset = load_csv(task[4:], label_column)
    else:
        raise TaskError(f"unknown task {task!r}: use synthetic, {', '.join(BUILTINS)} or csv:PATH")
    return (dataset, *_sizes(len(dataset), rounds, shard_size))


def create_genesis_files(out: Path, *, task: str = "synthetic", label_column: str = "label",
                         rounds: int | None = None, shard_size: int | None = None,
                         allocations: Sequence[tuple[bytes, int]] = (), chain_id: str | None = None,
                         params: GenesisParams = GenesisParams(), keyholder: Keypair | None = None,
                         timestamp: int | None = None) -> dict[str, Any]:
    """Write genesis.bin, keyholder.secret (0600) and holdout.csv into ``out``; return a summary."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (GENESIS_FILE, KEYHOLDER_FILE):
        if (out / name).exists():
            raise TaskError(f"{out / name} already exists: refusing to overwrite a chain's files")
    seed = secrets.token_bytes(32)      # the synthetic task's secret seed and the row split; never stored
    dataset, rounds, shard_size, n_test = load_task(task, label_column=label_column, rounds=rounds,
                                                    shard_size=shard_size, seed=seed)
    rest, holdout = split_test(dataset, n_test, seed)
    keyholder = keyholder or Keypair.generate()
    chain_id = chain_id or f"popchain-{secrets.token_hex(3)}"
    genesis, secret = create_genesis(rest, chain_id=chain_id, rounds=rounds, shard_size=shard_size,
                                     allocations=list(allocations), keyholder_pubkeys=[keyholder.public],
                                     params=params, timestamp=int(timestamp or time.time()), seed=seed)
    genesis_path, secret_path, holdout_path = out / GENESIS_FILE, out / KEYHOLDER_FILE, out / HOLDOUT_FILE
    genesis_path.write_bytes(genesis.encode())
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(keyholder_file(secret, [keyholder]))
    write_feature_csv(holdout_path, holdout)
    return {"genesis_hash": genesis.hash.hex(), "chain_id": chain_id, "task": dataset.spec.name,
            "rounds": rounds, "shard_size": shard_size, "n_train": len(genesis.task.training),
            "n_holdout": len(holdout), "genesis": str(genesis_path), "keyholder": str(secret_path),
            "holdout": str(holdout_path), "keyholder_pubkey": keyholder.public.hex()}
