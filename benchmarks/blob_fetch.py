"""Shard blobs (issue 22 item 1): figures ``genesis_bytes_adult`` and ``shard_fetch_s``.

``genesis_bytes_adult``: ``popchain genesis create --task csv:../shared/data/adult.csv --label-column income``
(the owner's default split and sizing) — bytes of the genesis file, shards in blobs. Baseline, same run: the same
genesis with its rows inline (package version 1: the blob references replaced by the ciphertexts and the public
rows, which is what genesis carried before; exact up to the few bytes of msgpack length headers).

``shard_fetch_s``: on an adult chain sized ``--shard-size 13000 --rounds 1`` (the issue's 13,000-row shard; the
default sizing above makes smaller ones), a fresh node process (``--peer`` the owner's node, which started with
``--blob-dir``) fetches and verifies the shard blob; timed from the fresh node's ports
file to the checked blob being in its datadir. Baseline, same run: reading and verifying that blob from the
owner's own disk (ml.blobs.BlobDir.get). Median over the trials.
"""
from __future__ import annotations

import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._nodeproc import NodeProc, stop_all
from chain.address import address_of
from consensus.protocol.genesis import load_genesis
from ml.blobs import BlobDir, BlobRef, add_blob_source
from ml.shards import VERSION, PublicTask
from node.tools.testing import seeded_keypair

ADULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "adult.csv"
ADULT_FALLBACK = Path("/work/shared/data/adult.csv")
FETCH_TIMEOUT_S = 120.0


def adult_path() -> Path:
    return ADULT if ADULT.exists() else ADULT_FALLBACK


def make_adult_chain(out: Path, **sizing: Any) -> dict[str, Any]:
    """genesis create on adult.csv (the defaults unless ``sizing`` says otherwise); the summary dict."""
    from node.tools.genesis_setup import create_genesis_files
    owner = seeded_keypair("blob-bench-owner")
    return create_genesis_files(out, task=f"csv:{adult_path()}", label_column="income",
                                allocations=[(address_of(owner.public), 10**9)], **sizing)


def inline_genesis_bytes(genesis_file: Path, blob_dir: Path) -> int:
    """What the genesis would weigh with its shards inline (version 1 package, same everything else)."""
    data = genesis_file.read_bytes()
    store = BlobDir(blob_dir, writable=False)
    add_blob_source(store)
    task = load_genesis(data).task.hydrate()          # the public rows, if they are a blob too
    cts = []
    for ref in task.ciphertexts:
        blob = store.get(BlobRef.parse(bytes(ref)))
        assert blob is not None, "the owner's blob directory lacks a blob"
        cts.append(blob)
    inline: PublicTask = dataclasses.replace(task, ciphertexts=tuple(cts), version=VERSION, train_ref=None)
    return len(data) - len(task.encode()) + len(inline.encode())


async def _fetch_once(work: Path, genesis: Path, owner: NodeProc, ref: BlobRef, name: str) -> float | None:
    node = NodeProc(work / name, genesis=genesis, peers=[owner.p2p_addr]).start()
    target = work / name / "blobs" / ref.hex_id
    try:
        await node.ready()
        start = time.perf_counter()
        while time.perf_counter() - start < FETCH_TIMEOUT_S:
            if target.exists():
                return time.perf_counter() - start
            await asyncio.sleep(0.005)
        return None
    finally:
        await asyncio.to_thread(node.stop)


async def _fetch_trials(work: Path, summary: dict[str, Any], trials: int) -> tuple[list[float | None], BlobRef]:
    genesis = Path(summary["genesis"])
    ref = BlobRef.parse(bytes(load_genesis(genesis.read_bytes()).task.ciphertexts[0]))   # round 1's shard
    owner = NodeProc(work / "owner", genesis=genesis, extra_args=["--blob-dir", summary["blob_dir"]]).start()
    try:
        await owner.ready()
        return [await _fetch_once(work, genesis, owner, ref, f"fresh{k}") for k in range(trials)], ref
    finally:
        await asyncio.to_thread(stop_all, [owner])


def run(quick: bool = False) -> list[dict[str, Any]]:
    trials = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="popchain-blobs-") as tmp:
        work = Path(tmp)
        summary = make_adult_chain(work / "chain")
        blob_dir = Path(summary["blob_dir"])
        inline = inline_genesis_bytes(Path(summary["genesis"]), blob_dir)
        big = make_adult_chain(work / "chain13k", shard_size=13_000, rounds=1)
        took, ref = asyncio.run(_fetch_trials(work, big, trials))
        blob_dir = Path(big["blob_dir"])
        store = BlobDir(blob_dir, writable=False)
        disk = []
        for _ in range(max(3, trials)):
            t = time.perf_counter()
            assert store.get(ref) is not None
            disk.append(time.perf_counter() - t)
    done = [t for t in took if t is not None]
    value = round(statistics.median(done), 4) if done else None
    base = statistics.median(disk)
    return [
        {"name": "genesis_bytes_adult", "value": summary["genesis_bytes"], "unit": "bytes",
         "baseline": inline, "ratio": round(summary["genesis_bytes"] / inline, 3),
         "goal": f"<= 1 MiB (baseline: the same genesis with its public rows and {summary['rounds']} shards "
                 f"inline)"},
        {"name": "shard_fetch_s", "value": value, "unit": f"s ({big['shard_size']:,}-row shard, "
                                                           f"{ref.size:,} bytes, {len(done)}/{trials} fetched)",
         "baseline": round(base, 4), "ratio": round(value / base, 1) if value else None,
         "goal": "report (baseline: read + verify the blob from own disk)"},
    ]


if __name__ == "__main__":
    import json
    print(json.dumps(run(quick=True), indent=1))
