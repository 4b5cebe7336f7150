"""Creating a task or a shard batch for a live chain on disk (``popchain task create`` / ``task extend``).

Does: load or generate the task's data (the same sources as ``genesis create``: synthetic, the built-in
datasets, csv:PATH), size its shards for the chain's crowning test (node.tools.sizing via genesis_setup's
``size_task``, under the chain's own parameters E and α), package it (ml.shards), hold out a test split, have
the sponsor sign the announcement (consensus.protocol.tasks), and write the files: a public message for the keyholders
to co-sign and announce, and — for a single keyholder only — the secret shard keys (mode 0600); on a committee
chain the keys are sealed to the committee inside the message (a synthetic task is VRF-generated: no key
exists), so the sponsor hands nothing secret to anyone. For an extension it seals a new batch of shards of an
existing task under that task's shard format and indices.
``governance_sign`` adds the governance signatures of a keyholder file to a message (``task announce``).
Does not: talk to a node, or decide whether a message will be accepted (the chain does).

A task secret file is ``pack([TASK_SECRET_VERSION, task_id or -1, first shard index, SecretTask bytes,
source])``; ``source`` lets ``task extend`` continue the task: ``[1, world, drift_milli]`` for a generated task
(the world of its last shard), ``[0]`` for a rows task (an extension of it needs new rows, ``--data``).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain.crypto import Keypair
from chain.encoding import check_int, check_list, pack, unpack
from chain.errors import DecodeError, PopError
from consensus.protocol.genesis import Genesis
from ml.blobs import BlobDir, BlobRef
from ml.errors import TaskError
from ml.generator import World, generate, world_from_seed
from ml.shards import VERSION as ROWS_VERSION
from ml.shards import (
    PublicTask,
    SecretTask,
    externalise,
    package_generated,
    package_task,
    package_vrf,
    split_test,
)
from ml.task import Dataset, write_feature_csv
from node.tools.genesis_setup import (
    BLOB_DIR,
    BUILTINS,
    GENESIS_GOAL,
    SYNTHETIC_TRAIN,
    check_package_fits,
    public_dataset_warning,
    size_task,
)
from node.tools.sizing import sizing_warnings

Rng = Callable[[int], bytes]
TASK_SECRET_VERSION = 1
ANNOUNCE_FILE = "task.announce"
SECRET_FILE = "task.secret"
HOLDOUT_FILE = "holdout.csv"
SOURCE_ROWS, SOURCE_GENERATED = 0, 1


@dataclass(frozen=True)
class TaskSecret:
    """What the keyholder needs for a task's shards (and ``task extend`` for more of them)."""
    task_id: int                  # -1: not known yet (a new task gets its id when it is activated)
    first_index: int              # task-local index of the first shard these keys open
    secret: SecretTask
    world: World | None = None    # generated tasks: the world of the last shard (an extension drifts on)
    drift_milli: int = 0

    def encode(self) -> bytes:
        source = [SOURCE_GENERATED, self.world.to_obj(), self.world.spec.to_obj(), self.drift_milli] \
            if self.world is not None else [SOURCE_ROWS]
        return pack([TASK_SECRET_VERSION, self.task_id, self.first_index, self.secret.encode(), source])

    @classmethod
    def decode(cls, data: bytes) -> TaskSecret:
        from ml.task import TaskSpec
        f = check_list(unpack(data, max_size=64 << 20), 5, "task secret")
        check_int(f[0], TASK_SECRET_VERSION, TASK_SECRET_VERSION, "task secret version")
        task_id = check_int(f[1], -1, 2**16, "task secret task id")
        first = check_int(f[2], 1, 2**32, "task secret first index")
        if type(f[3]) is not bytes or type(f[4]) is not list or not f[4]:
            raise DecodeError("task secret: malformed")
        secret = SecretTask.decode(f[3])
        if f[4][0] == SOURCE_GENERATED:
            src = check_list(f[4], 4, "task secret source")
            world = World.from_obj(src[1], TaskSpec.from_obj(src[2]))
            return cls(task_id, first, secret, world, check_int(src[3], 0, 10_000, "task secret drift"))
        return cls(task_id, first, secret)


def write_secret(path: Path, data: bytes) -> None:
    """A secret file, created 0600 and never overwritten."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _refuse_existing(*paths: Path) -> None:
    for p in paths:
        if p.exists():
            raise TaskError(f"{p} already exists: refusing to overwrite a task's files")


def build_package(task: str, genesis: Genesis, *, label_column: str = "label", rounds: int | None = None,
                  shard_size: int | None = None, detect: float | None = None, drift_milli: int = 0,
                  public_rows: float | None = None, categorical: tuple[str, ...] = (),
                  rng: Rng = os.urandom) -> tuple[PublicTask, TaskSecret, Dataset, Any]:
    """(public package, secret, held-out test rows, sizing) of a new task sized for ``genesis``'s test."""
    from consensus.protocol.tasks import MAX_PACKAGE_SIZE
    dataset = load_source(task, label_column, categorical)
    if drift_milli and dataset is not None:
        raise TaskError(f"--drift-milli: only the generated synthetic task can drift, not {task}")
    sizing, n_test = size_task(task, dataset, genesis.params, detect=detect, rounds=rounds, shard_size=shard_size,
                               public_rows=public_rows)
    seed = rng(32)
    if dataset is None and genesis.committee is not None:
        # a committee chain's generated task is VRF-generated: its shards are nobody's to know (no secret)
        if drift_milli:
            raise TaskError("--drift-milli: a committee chain's synthetic task is VRF-generated and does not "
                            "drift yet (PROTOCOL §5.6)")
        world = world_from_seed(seed)
        holdout = generate(world, rng(32), n_test)
        public = package_vrf(world, sizing.rounds, sizing.shard_size, n_train=sizing.public_rows or SYNTHETIC_TRAIN,
                             rng=rng)
        return public, TaskSecret(-1, 1, SecretTask((), ())), holdout, sizing
    if dataset is None:
        world = world_from_seed(seed)
        holdout = generate(world, rng(32), n_test)
        public, secret = package_generated(world, sizing.rounds, sizing.shard_size,
                                           n_train=sizing.public_rows or SYNTHETIC_TRAIN, rng=rng,
                                           drift_milli=drift_milli)
        last = _last_world(public, secret, world)
        return public, TaskSecret(-1, 1, secret, last, drift_milli), holdout, sizing
    # the shards become blobs (PROTOCOL §3.15): only the public rows count against the 1 MiB goal
    check_package_fits(dataset, sizing, min(MAX_PACKAGE_SIZE, GENESIS_GOAL), "the task announcement", blobs=True)
    rest, holdout = split_test(dataset, n_test, seed)
    public, secret = package_task(rest, sizing.rounds, sizing.shard_size, n_train=sizing.public_rows, seed=seed,
                                  rng=rng)
    return public, TaskSecret(-1, 1, secret), holdout, sizing


def load_source(task: str, label_column: str, categorical: tuple[str, ...] = ()) -> Dataset | None:
    """The task's rows (None: the generated synthetic task), as ``genesis create`` reads them."""
    from ml.task import load_builtin, load_csv
    if task == "synthetic":
        return None
    if task in BUILTINS:
        return load_builtin(task)
    if task.startswith("csv:"):
        return load_csv(task[4:], label_column, categorical=categorical)
    raise TaskError(f"unknown task {task!r}: use synthetic, {', '.join(BUILTINS)} or csv:PATH")


def rows_for_task(source: str, public: PublicTask, label_column: str = "label") -> Dataset:
    """New rows for a rows task from ``csv:PATH`` (the holdout.csv format: the task's feature columns in
    original units and a label column of its class names), quantised as the task quantises."""
    from ml.task import read_feature_csv
    if not source.startswith("csv:"):
        raise TaskError(f"--data {source!r}: expected csv:PATH")
    X, y = read_feature_csv(source[4:], public.spec, label_column=label_column)
    if y is None:
        raise TaskError(f"{source[4:]}: no {label_column!r} column: hidden shards need labels")
    return Dataset(public.spec, X, y)


def shard_world(public: PublicTask, index: int, key: bytes) -> World:
    """The world a generated task's shard ``index`` is drawn from (decrypted with its key and checked against
    its commitment by ml.shards.open_shard first)."""
    import nacl.secret

    from ml.shards import SALT_SIZE, open_shard
    open_shard(public, index, key)          # ShardError unless the key opens a committed shard
    plain = nacl.secret.SecretBox(key).decrypt(public.ciphertexts[index - 1])[SALT_SIZE:]
    f = check_list(unpack(plain, max_size=1 << 20), 4, "shard")
    return World.from_obj(f[2], public.spec)


def _last_world(public: PublicTask, secret: SecretTask, fallback: World) -> World:
    """The world of the package's last shard: an extension drifts on from it."""
    if not public.generated:
        return fallback
    return shard_world(public, public.n_rounds, secret.keys[-1])


def create_task_files(out: Path, genesis: Genesis, sponsor: Keypair, *, task: str = "synthetic",
                      label_column: str = "label", rounds: int | None = None, shard_size: int | None = None,
                      detect: float | None = None, bounty: int = 0, per_crowning: int | None = None,
                      drift_milli: int = 0, public_rows: float | None = None, categorical: tuple[str, ...] = (),
                      rng: Rng = os.urandom) -> dict[str, Any]:
    """Write task.announce (public, sponsor-signed), task.secret (0600) and holdout.csv into ``out``; return
    a summary (sizes, the improvement the shards detect, the bounty split)."""
    from consensus.protocol.tasks import make_task_announcement
    from ml.model import encode_model
    from ml.shards import baseline_model
    announce_path, secret_path, holdout_path = out / ANNOUNCE_FILE, out / SECRET_FILE, out / HOLDOUT_FILE
    _refuse_existing(announce_path, secret_path)
    if bounty < 0 or (per_crowning is not None and per_crowning < 0):
        raise TaskError("--bounty and --per-crowning must not be negative")
    public, secret, holdout, sizing = build_package(task, genesis, label_column=label_column, rounds=rounds,
                                                    shard_size=shard_size, detect=detect,
                                                    drift_milli=drift_milli, public_rows=public_rows,
                                                    categorical=categorical, rng=rng)
    per = per_crowning if per_crowning is not None else (bounty // sizing.rounds if bounty else 0)
    if bounty and per == 0:
        raise TaskError(f"--bounty {bounty} over {sizing.rounds} rounds pays 0 per crowning: raise it or set "
                        "--per-crowning")
    blobs: dict[BlobRef, bytes] = {}
    if public.version == ROWS_VERSION:          # rows travel as blobs beside the announcement (§3.15)
        _refuse_existing(out / BLOB_DIR)
        public, blobs = externalise(public)
    package = public.encode()
    material = seal_for_committee(genesis, secret.secret.keys, vrf=public.vrf, rng=rng)
    # the initial champion from the package in memory (its public rows may be a blob now: not in ``package``)
    champion = encode_model(baseline_model(public))
    msg = make_task_announcement([], sponsor, genesis.chain_id, package, champion,
                                 bounty=bounty, per_crowning=per, keyholder_material=material)
    out.mkdir(parents=True, exist_ok=True)
    announce_path.write_bytes(msg.encode())
    if genesis.committee is None:      # the single keyholder needs the keys; a committee needs nothing
        write_secret(secret_path, secret.encode())
    write_feature_csv(holdout_path, holdout)
    blob_dir = BlobDir(out / BLOB_DIR)
    for ref, data in blobs.items():
        blob_dir.put(ref, data)
    warning = public_dataset_warning(task)
    warnings = ([warning] if warning else []) + sizing_warnings(sizing, generated=public.generated,
                                                                n_train=len(public.training))
    return {"task": public.spec.name, "chain_id": genesis.chain_id, "generated": public.generated,
            "rounds": sizing.rounds, "shard_size": sizing.shard_size, "rounds_allowed": sizing.rounds_allowed,
            "detectable": sizing.detectable, "max_entries": genesis.params.max_entries,
            "alpha": list(genesis.params.alpha), "n_train": len(public.training), "n_holdout": len(holdout),
            "bounty": bounty, "per_crowning": per, "sponsor": sponsor.public.hex(), "message_id": msg.msg_hash.hex(),
            "message_bytes": len(msg.encode()), "announcement": str(announce_path),
            "secret": str(secret_path) if genesis.committee is None else None, "vrf": public.vrf,
            "committee": genesis.committee is not None, "holdout": str(holdout_path), "warnings": warnings,
            # issue 21: a drifting task's champion is judged on its forward holdout, not on holdout.csv (its start)
            "drift_milli": drift_milli, "judged_on": "forward" if drift_milli else "holdout",
            "blobs": len(blobs), "blob_bytes": sum(map(len, blobs.values())),
            "blob_dir": str(out / BLOB_DIR) if blobs else None,
            "columns": public.spec.encoding.describe() if public.spec.encoding is not None else []}


def seal_for_committee(genesis: Genesis, keys: Sequence[bytes], *, vrf: bool = False,
                       rng: Rng = os.urandom) -> bytes:
    """On a committee chain: a new batch's shard keys sealed to the committee's group key (PROTOCOL §3.14), the
    message's ``keyholder_material`` — nothing at all for a VRF-generated batch; b"" on a single-keyholder
    chain (its keyholder gets the keys in the task secret file)."""
    if genesis.committee is None or vrf:
        return b""
    from consensus.protocol.release import seal_keys
    return seal_keys(genesis.committee.group_key, keys, rng)


@dataclass(frozen=True)
class ShardBatch:
    commitments: tuple[bytes, ...]
    ciphertexts: tuple[bytes, ...]
    secret: TaskSecret


def build_extension(public: PublicTask, task_id: int, first_index: int, rounds: int, *,
                    world: World | None = None, drift_milli: int = 0, data: Dataset | None = None,
                    anchor: World | None = None, rng: Rng = os.urandom) -> ShardBatch:
    """``rounds`` new shards of a task whose package is ``public``, indices first_index … (the task's shards so
    far + 1), sealed by ml.shards: a generated task draws them from ``world`` drifting on by ``drift_milli`` a
    shard (mean-reverting towards ``anchor``, the task's first shard's world: without it an extended drifting
    task's concept would walk freely, PROTOCOL §5.6); a rows task cuts them from ``data`` (rows of the same spec,
    none of which may be public already)."""
    from ml.shards import MAX_ROUNDS, extend_generated, extend_rows, vrf_labels
    check_int(rounds, 1, MAX_ROUNDS, "--rounds")
    if public.vrf:       # nothing to seal: the new shards' keys will be the committee's VRF outputs
        assert public.world is not None
        if drift_milli:
            raise TaskError("--drift-milli: a VRF-generated task does not drift (PROTOCOL §5.5)")
        labels = vrf_labels(public.world, public.shard_size, first_index, rounds)
        return ShardBatch(labels, (b"",) * rounds, TaskSecret(task_id, first_index, SecretTask((), ())))
    if public.generated:
        if world is None:
            raise TaskError("a generated task's extension needs the world of one of its shards")
        if world.spec != public.spec:
            raise TaskError("the world does not belong to this task (its spec differs)")
        (commits, cts, keys), last = extend_generated(world, first_index, rounds, rng=rng,
                                                      drift_milli=drift_milli, anchor=anchor)
        return ShardBatch(commits, cts, TaskSecret(task_id, first_index, keys, last, drift_milli))
    if data is None:
        raise TaskError("a rows task (digits, csv, ...) is extended with new rows: --data csv:PATH")
    if data.spec.n_features != public.spec.n_features or data.spec.classes != public.spec.classes:
        raise TaskError(f"--data: {data.spec.n_features} features and classes {list(data.spec.classes)} do "
                        f"not match the task's {public.spec.n_features} and {list(public.spec.classes)}")
    commits, cts, keys = extend_rows(data, first_index, rounds, public.shard_size, rng=rng)
    return ShardBatch(commits, cts, TaskSecret(task_id, first_index, keys))


def extension_paths(out: Path, task_id: int, seq: int) -> tuple[Path, Path]:
    return out / f"task{task_id}-ext{seq}.announce", out / f"task{task_id}-ext{seq}.secret"


def create_extension_files(out: Path, chain_id: str, task_id: int, seq: int, batch: ShardBatch,
                           genesis: Genesis | None = None, rng: Rng = os.urandom) -> dict[str, Any]:
    """Write the extension message (unsigned: ``task announce`` co-signs it) and its secret keys (0600); on a
    committee chain (``genesis`` given) the new keys are sealed to the committee in the message instead, and
    the secret file keeps only what ``task extend`` needs next time (the task's source, no key)."""
    from consensus.protocol.tasks import make_task_extension
    msg_path, secret_path = extension_paths(out, task_id, seq)
    _refuse_existing(msg_path, secret_path)
    committee = genesis is not None and genesis.committee is not None
    vrf = not any(batch.ciphertexts)       # a VRF-generated task's shards: nothing to seal
    material = (seal_for_committee(genesis, batch.secret.secret.keys, vrf=vrf, rng=rng) if genesis is not None
                else b"")
    msg = make_task_extension([], chain_id, task_id, seq, batch.commitments, batch.ciphertexts,
                              keyholder_material=material)
    out.mkdir(parents=True, exist_ok=True)
    msg_path.write_bytes(msg.encode())
    kept = (TaskSecret(batch.secret.task_id, batch.secret.first_index, SecretTask((), ()), batch.secret.world,
                       batch.secret.drift_milli) if committee else batch.secret)
    write_secret(secret_path, kept.encode())
    return {"task_id": task_id, "seq": seq, "rounds": len(batch.commitments),
            "first_shard": batch.secret.first_index, "message_id": msg.msg_hash.hex(),
            "message_bytes": len(msg.encode()), "extension": str(msg_path), "secret": str(secret_path),
            "committee": committee}


class SigningError(PopError, ValueError):
    """The keyholder file cannot sign this message for this chain (wrong chain, no governance key, too few)."""


def governance_sign(msg: Any, keyholder_raw: bytes, genesis: Genesis, *, partial: bool = False) -> Any:
    """``msg`` (announcement or extension) with the signatures of the keyholder file's governance keys added.
    Raises SigningError unless the result reaches the chain's threshold (``partial``: any progress is fine)."""
    from consensus.keyholder import load_keyholder_file
    from consensus.protocol.tasks import cosign
    if msg.chain_id != genesis.chain_id:
        raise SigningError(f"the message is for chain {msg.chain_id!r}, not {genesis.chain_id!r}")
    from consensus.keyholder import is_member_file, load_member_file
    if is_member_file(keyholder_raw):      # a committee member's keyholder-i.secret: its one signing key
        keypairs: tuple[Keypair, ...] = (load_member_file(keyholder_raw).keypair,)
    else:
        _, keypairs = load_keyholder_file(keyholder_raw)
    governance = [kp for kp in keypairs if kp.public in genesis.keyholders]
    if not governance:
        raise SigningError("the keyholder file holds none of this chain's governance (genesis keyholder) keys")
    signed = cosign(msg, governance)
    if not partial and not signed.verify(genesis.keyholders, genesis.threshold):
        have = sum(1 for pub, _ in signed.signatures if pub in genesis.keyholders)
        raise SigningError(f"{have} of the {genesis.threshold} governance signatures this chain needs: have the "
                           "other keyholders sign too (--sign-only writes the file with yours added)")
    return signed


def secret_keys_of(secret_raw: bytes) -> bytes:
    """The ml SecretTask bytes (shard keys) inside a task secret file, for the keyholder."""
    return TaskSecret.decode(secret_raw).secret.encode()
