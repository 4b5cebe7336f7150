"""Creating a chain on disk: load or generate a task, size its shards, hold out a test split, build genesis,
write the three files.

``popchain genesis create`` and ``popchain demo`` both call ``create_genesis_files``; the consensus rules for
what a genesis contains live in consensus.protocol.genesis, the sizing arithmetic in node.tools.sizing; this module only
chooses sizes and writes files. The synthetic task is a *generated* package (ml.generator: each hidden shard is
a committed world + seed, so power-sized 13,000-row shards cost genesis a few hundred bytes); named datasets
and CSV files ship their shards as encrypted rows in content-addressed blobs (PROTOCOL §3.15): genesis holds
their 40-byte references (and the public rows, or a blob of them when they exceed 256 KiB), the blobs go to
``<out>/blobs/`` for the owner's node to
serve (``popchain node --blob-dir``); every other node fetches them from its peers.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chain.address import encode_address
from chain.block import MAX_PAYLOAD_SIZE
from chain.crypto import Keypair
from chain.errors import DecodeError
from consensus.keyholder import keyholder_file
from consensus.protocol.dkg import CommitteeKey
from consensus.protocol.genesis import GenesisParams, create_committee_genesis, create_genesis
from consensus.protocol.settlement import bond_account
from consensus.protocol.tasks import escrow_account
from ml.blobs import BlobDir, BlobRef
from ml.codec import smallest_dtype
from ml.errors import TaskError
from ml.generator import MAX_GEN_ELEMENTS, World, generate, world_from_seed
from ml.shards import MAX_SHARD_SIZE, MAX_TRAIN_ROWS, SALT_SIZE, SECRET_OVERHEAD, TRAIN_BLOB_BYTES, split_test
from ml.task import Dataset, load_builtin, load_csv, write_feature_csv
from node.tools.sizing import (
    DEFAULT_DETECT,
    MIN_TRAIN_ROWS,
    Sizing,
    SizingError,
    detectable,
    plan,
    plan_rows,
    sizing_warnings,
)

BUILTINS = ("digits", "breast_cancer", "wine", "iris")
SYNTHETIC_ROUNDS, SYNTHETIC_TRAIN, SYNTHETIC_TEST = 100, 4000, 2000
# A drifting synthetic task (ml.generator.drift, --drift-milli 500): centres move ~0.5 units per shard, pulled
# 1/32 back to the start. Measured (python -m benchmarks.sim_drift --gap 500): a model retrained on the latest revealed shard
# beats one a round staler by +2.8 pp (median; 0.7-5.4 pp) on the next shard, and one two rounds staler by >= 1 pp
# in 12 of 12 sampled rounds up to round 300; at 100 the lead (<= 0.5 pp) drowns in retraining noise (±1 pp).
# That lead is a treadmill (issue 21: the champion is always one shard stale), so it is no longer the default:
DEFAULT_DRIFT_MILLI = 500       # the drifting rate the drift benchmarks measure (benchmarks.sim_drift)
# the default synthetic task of `genesis create`, `popchain demo` and `task create` is STATIONARY: one concept
# whose Bayes-optimal accuracy the generator knows (ml.bayes), so progress is the champion's gap to it
SYNTHETIC_DRIFT_MILLI = 0

GENESIS_FILE = "genesis.bin"
KEYHOLDER_FILE = "keyholder.secret"
HOLDOUT_FILE = "holdout.csv"
BLOB_DIR = "blobs"
GENESIS_GOAL = 1 << 20      # a dataset genesis (public rows + blob references) stays within 1 MiB

Rng = Callable[[int], bytes]


def public_dataset_warning(task: str) -> str | None:
    if task in BUILTINS:
        return (f"{task} is a public scikit-learn dataset: anyone can look up its hidden shards, so its "
                f"chain is for demos only")
    return None


def size_task(task: str, dataset: Dataset | None, params: GenesisParams, *, detect: float | None,
              rounds: int | None, shard_size: int | None, public_rows: float | None = None) -> tuple[Sizing, int]:
    """(sizing, n_test). ``dataset`` None means the generated synthetic task (its public rows: ``public_rows``,
    default SYNTHETIC_TRAIN); a dataset keeps 1/8 of its rows as the holdout and splits the rest (plan_rows)."""
    m = params.max_entries
    try:
        if dataset is None:
            n_train = SYNTHETIC_TRAIN if public_rows is None else int(public_rows)
            if public_rows is not None and (public_rows != n_train or not MIN_TRAIN_ROWS <= n_train <= MAX_TRAIN_ROWS):
                raise SizingError(f"--public-rows {public_rows}: the synthetic task takes a row count in "
                                  f"[{MIN_TRAIN_ROWS}, {MAX_TRAIN_ROWS:,}]")
            max_shard = min(MAX_SHARD_SIZE, MAX_GEN_ELEMENTS // 24)
            sized = plan(m=m, alpha=params.alpha, detect=DEFAULT_DETECT if detect is None else detect,
                         shard_size=shard_size, rounds=rounds, available_rows=None, default_rounds=SYNTHETIC_ROUNDS,
                         max_shard=max_shard, min_gain_bp=params.min_gain_bp)
            return dataclasses.replace(sized, public_rows=n_train), SYNTHETIC_TEST
        n_test = max(10, len(dataset) // 8)
        available = len(dataset) - n_test
        return plan_rows(m=m, alpha=params.alpha, available=available, public=public_rows, detect=detect,
                         shard_size=shard_size, rounds=rounds,
                         max_shard=min(MAX_SHARD_SIZE, max(available, 1))), n_test
    except SizingError as exc:
        hint = ""
        if dataset is not None and shard_size is None:
            best = detectable(max(1, len(dataset) - max(10, len(dataset) // 8) - MIN_TRAIN_ROWS), m, params.alpha)
            hint = (f" ({len(dataset)} rows: one shard of all the hideable rows detects "
                    + (f"+{best:.2%})" if best is not None else "no improvement at 80 % power)"))
        raise TaskError(f"{task}: {exc}{hint}") from None


def check_package_fits(dataset: Dataset, sizing: Sizing, cap: int, what: str, *, blobs: bool = False) -> int:
    """The package's size estimate in bytes; TaskError in words when it would exceed ``cap``. Inline, every row
    of a dataset task travels inside the genesis / announcement (public rows and encrypted hidden shards); with
    ``blobs`` (PROTOCOL §3.15) the hidden shards — and the public rows beyond TRAIN_BLOB_BYTES — are blobs, and
    what remains is 32 + 40 bytes of commitment and reference per shard."""
    d = dataset.spec.n_features
    width = np.dtype(smallest_dtype(int(dataset.X.min()), int(dataset.X.max()))).itemsize
    public = sizing.public_rows or 0
    if blobs:
        estimate = min(public * (d * width + 1), TRAIN_BLOB_BYTES) + sizing.rounds * 80 + (64 << 10)
        if estimate > cap:
            raise TaskError(
                f"{what} would be about {estimate / 2**20:.1f} MiB, over its {cap / 2**20:.0f} MiB limit: the rows "
                f"are blobs outside it, but each of the {sizing.rounds:,} hidden shards keeps 80 bytes of commitment "
                f"and blob reference inside it. Use fewer, larger shards (--rounds, --shard-size, --detect) and "
                f"add more later with 'popchain task extend'")
        return estimate
    rows = public + sizing.rounds * sizing.shard_size
    estimate = rows * (d * width + 1) + sizing.rounds * (SECRET_OVERHEAD + SALT_SIZE + 128) + (64 << 10)
    if estimate > cap:
        raise TaskError(
            f"{what} would be about {estimate / 2**20:.1f} MiB, over its {cap / 2**20:.0f} MiB cap: every row of a "
            f"dataset task travels inside it — {public:,} public + {sizing.rounds} x {sizing.shard_size:,} hidden "
            f"rows of {d} features at {width} bytes a value. Keep fewer rows public (--public-rows), hide fewer "
            f"(--rounds, --shard-size, --detect), or drop columns from the CSV")
    return estimate


STARTER_BONDS = 8     # entry bonds a --alloc account's bond account gets when no --bond is given


def create_genesis_files(out: Path, *, task: str = "synthetic", label_column: str = "label",
                         rounds: int | None = None, shard_size: int | None = None, detect: float | None = None,
                         public_rows: float | None = None, categorical: tuple[str, ...] = (),
                         allocations: Sequence[tuple[bytes, int]] = (),
                         bonds: Sequence[tuple[bytes, int]] | None = None, chain_id: str | None = None,
                         params: GenesisParams = GenesisParams(), keyholder: Keypair | None = None,
                         timestamp: int | None = None, drift_milli: int | None = None,
                         committee: CommitteeKey | None = None, sponsor: bytes | None = None,
                         bounty: int = 0, per_crowning: int | None = None,
                         rng: Rng = os.urandom) -> dict[str, Any]:
    """Write genesis.bin, keyholder.secret (0600) and holdout.csv into ``out``; return a summary (sizes, the
    improvement the shards detect, rounds the data allows, warnings). Every secret byte comes from ``rng``.
    ``drift_milli`` None means SYNTHETIC_DRIFT_MILLI (0: stationary, issue 21) for the synthetic task, 0 for a
    dataset.

    With ``committee`` (the key record the keyholders' DKG produced, ``popchain keyholder dkg``) the chain is a
    committee chain (PROTOCOL §3.14) and no secret file is written at all: the synthetic task becomes a
    VRF-generated one that nobody can foresee, and a dataset's shard keys are sealed to the committee — its
    creator is the task's ``sponsor`` (pubkey, required), ``bounty`` grains are allocated to the genesis task's
    escrow and each crowning pays ``per_crowning`` (default the block reward) from it: no coin is minted for
    a task whose rows someone knows.

    ``bonds``: (account, grains) allocated to those accounts' *bond accounts* — a miner's stake, the only
    balance entries are bonded with (PROTOCOL §3.9). None: every allocated account gets a starter bond of
    STARTER_BONDS entry bonds (so a chain made with --alloc alone can be mined at once)."""
    if not allocations:
        raise TaskError("no --alloc: nobody could hold the entrant balance, so no miner could ever enter a round")
    if bonds is None:
        bonds = [(account, STARTER_BONDS * params.entry_bond) for account, _ in allocations]
    if not any(amount > 0 for _, amount in bonds):
        raise TaskError("no --bond: no key holds a bond, so no miner could ever enter a round (a miner's stake is "
                        "its bond account, PROTOCOL §3.9)")
    secret_names = [KEYHOLDER_FILE] if committee is None else []
    for name in (GENESIS_FILE, *secret_names, BLOB_DIR):
        if (out / name).exists():
            raise TaskError(f"{out / name} already exists: refusing to overwrite a chain's files")
    seed = rng(32)      # the synthetic world and the row split; never stored
    dataset: Dataset | None
    if task == "synthetic":
        dataset = None
    elif task in BUILTINS:
        dataset = load_builtin(task)
    elif task.startswith("csv:"):
        dataset = load_csv(task[4:], label_column, categorical=categorical)
    else:
        raise TaskError(f"unknown task {task!r}: use synthetic, {', '.join(BUILTINS)} or csv:PATH")
    if drift_milli is None:
        drift_milli = SYNTHETIC_DRIFT_MILLI if dataset is None and committee is None else 0
    if drift_milli and dataset is not None:
        raise TaskError(f"--drift-milli: only the generated synthetic task can drift, not {task}")
    if drift_milli and committee is not None:
        raise TaskError("--drift-milli: a committee chain's synthetic task is VRF-generated (nobody can foresee a "
                        "shard) and does not drift yet; leave it out (PROTOCOL §5.6)")
    if committee is not None and dataset is not None and sponsor is None:
        raise TaskError(f"--sponsor: on a committee chain the creator of a data task ({task}) is its sponsor, who "
                        f"knows its rows: name its public key (it is paid only from --bounty and cannot enter)")
    sizing, n_test = size_task(task, dataset, params, detect=detect, rounds=rounds, shard_size=shard_size,
                               public_rows=public_rows)
    common: dict[str, Any] = {}
    shard_blobs: dict[bytes, bytes] = {}      # a dataset task: reference -> shard ciphertext (§3.15)
    source: Dataset | World
    if dataset is None:
        source = world_from_seed(seed)
        holdout = generate(source, rng(32), n_test)
        common = {"n_train": sizing.public_rows, "drift_milli": drift_milli}
    else:
        check_package_fits(dataset, sizing, GENESIS_GOAL, "the genesis", blobs=True)
        source, holdout = split_test(dataset, n_test, seed)
        common = {"seed": seed, "n_train": sizing.public_rows, "shard_blobs": shard_blobs}
    out.mkdir(parents=True, exist_ok=True)
    if committee is None:
        keyholder = keyholder or Keypair.from_seed(rng(32))
    if committee is not None and dataset is not None:
        allocations = list(allocations) + ([(escrow_account(0), bounty)] if bounty else [])
        common.update(sponsor=sponsor, per_crowning=params.block_reward if per_crowning is None else per_crowning)
    elif bounty or per_crowning or sponsor is not None:
        raise TaskError("--sponsor, --bounty and --per-crowning are for a data task on a committee chain (a "
                        "single keyholder's or a VRF-generated genesis task mints its rewards)")
    chain_kw: dict[str, Any] = dict(chain_id=chain_id or f"popchain-{rng(3).hex()}", rounds=sizing.rounds,
                                    shard_size=sizing.shard_size, params=params,
                                    allocations=list(allocations) + [(bond_account(a), n) for a, n in bonds if n],
                                    timestamp=int(timestamp or time.time()), rng=rng, **common)
    genesis_path, holdout_path = out / GENESIS_FILE, out / HOLDOUT_FILE
    secrets: dict[Path, bytes] = {}
    try:
        if keyholder is not None:
            genesis, secret = create_genesis(source, keyholder_pubkeys=[keyholder.public], **chain_kw)
            secrets = {out / KEYHOLDER_FILE: keyholder_file(secret, [keyholder])}
            pubkeys = [keyholder.public]
        else:
            assert committee is not None
            chain_kw.pop("drift_milli", None)
            genesis = create_committee_genesis(source, committee=committee, **chain_kw)
            pubkeys = list(committee.keyholders)
    except DecodeError as exc:   # the block's payload cap: the estimate above let a borderline genesis through
        raise TaskError(f"the genesis does not fit its {MAX_PAYLOAD_SIZE / 2**20:.0f} MiB payload cap ({exc}): "
                        f"{sizing.public_rows or 0:,} public + {sizing.rounds} x {sizing.shard_size:,} hidden rows "
                        "travel inside it; keep fewer rows public (--public-rows) or hide fewer (--rounds, "
                        "--shard-size, --detect)") from None
    chain_id = genesis.chain_id
    genesis_bytes = genesis.encode()
    # the public rows may be a blob now (§3.15): their count is the sizing's, not loaded from genesis
    n_train = len(genesis.task.training) if genesis.task.training_loaded else int(sizing.public_rows or 0)
    genesis_path.write_bytes(genesis_bytes)
    for path, data in secrets.items():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    write_feature_csv(holdout_path, holdout)
    blob_dir = BlobDir(out / BLOB_DIR)
    for ref, data in shard_blobs.items():
        blob_dir.put(BlobRef.parse(ref), data)
    warning = public_dataset_warning(task)
    warnings = ([warning] if warning else []) + sizing_warnings(sizing, generated=genesis.task.generated,
                                                                n_train=n_train)
    spec = genesis.task.spec
    return {"genesis_hash": genesis.hash.hex(), "chain_id": chain_id, "task": genesis.task.spec.name,
            "generated": genesis.task.generated, "rounds": sizing.rounds, "shard_size": sizing.shard_size,
            "rounds_allowed": sizing.rounds_allowed, "detectable": sizing.detectable,
            "drift_milli": drift_milli, "max_entries": params.max_entries, "alpha": list(params.alpha), "genesis_bytes": len(genesis_bytes),
            "blobs": len(shard_blobs), "blob_bytes": sum(map(len, shard_blobs.values())),
            "blob_dir": str(out / BLOB_DIR) if shard_blobs else None,
            "n_train": n_train, "n_holdout": len(holdout), "genesis": str(genesis_path),
            "keyholder": str(next(iter(secrets))) if secrets else None, "keyholder_files": [str(p) for p in secrets],
            "keyholder_pubkey": pubkeys[0].hex(), "keyholder_pubkeys": [k.hex() for k in pubkeys],
            "keyholders": len(pubkeys), "threshold": genesis.threshold, "committee": genesis.committee is not None,
            "vrf": genesis.task.vrf, "sponsor": genesis.sponsor.hex() if genesis.committee is not None else None,
            "bounty": bounty, "per_crowning": genesis.per_crowning,
            "holdout": str(holdout_path), "warnings": warnings,
            # issue 21: a drifting task's champion is judged on its forward holdout, not on holdout.csv (its start)
            "judged_on": "forward" if drift_milli else "holdout",
            "bonds": [[encode_address(a), n] for a, n in bonds if n], "min_gain_bp": params.min_gain_bp,
            "columns": spec.encoding.describe() if spec.encoding is not None else []}
