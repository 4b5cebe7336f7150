"""Disk per block on a pruned node (issue 23 item 2).

disk_per_block_pruned   bytes a block costs a pruned node beyond its keep window: a chain of real-size blocks
                        (benchmarks._bigchain: ~300 KB models, as a real chain's trees are) is copied, pruned with
                        chain.store_prune through its tip − WINDOW (keeping the champion, as ``node run --prune``
                        does), compacted; then a copy without any model, compacted, less the same for the genesis
                        datadir, divided by the block count: what every block leaves behind beyond the window
                        (header, transfers, payload with its beacon, undo, index and consensus records), on disk
                        (LevelDB's snappy blocks). Goal <= 10 KB. Baseline, same run: the archive datadir's
                        bytes per block (compacted, genesis taken off).
`python -m benchmarks.prune_disk [--quick]`.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

WINDOW = 10


def _compacted_bytes(chain_dir: Path) -> int:
    import plyvel
    db_dir = chain_dir / "chain.ldb"
    db = plyvel.DB(str(db_dir))
    try:
        db.compact_range(start=b"\x00", stop=b"\xff" * 8)   # a bounded range: the unbounded call skips tombstones
    finally:
        db.close()
    return sum(f.stat().st_size for f in db_dir.iterdir() if f.is_file() and f.suffix in (".ldb", ".log"))


def _without_models(chain_dir: Path, copy: Path) -> int:
    """Compacted bytes of a copy of ``chain_dir`` with every model deleted: what the non-model records weigh."""
    from chain.store import ChainStore
    from chain.store_read import P_MODEL
    shutil.copytree(chain_dir, copy)
    store = ChainStore.open(copy)
    try:
        store.raw_write({k: None for k, _ in store._kv.iterator(P_MODEL)})
    finally:
        store.close()
    return _compacted_bytes(copy)


def run(quick: bool = False) -> list[dict[str, Any]]:
    from benchmarks._bigchain import build_big_chain
    from chain.store import ChainStore
    from chain.store_prune import prune_models
    from consensus.engine import Engine
    from node.tools.testing import make_test_chain
    n_blocks = 14 if quick else 20     # the bench chain's trees pass the 1 MiB model cap beyond ~20 blocks
    with tempfile.TemporaryDirectory(prefix="popchain-prune-") as tmp:
        base = Path(tmp)
        chain = make_test_chain(base / "chain", rounds=4 * n_blocks + 8)
        store = ChainStore.open(base / "G" / "chain")
        Engine(store, chain.genesis)
        store.close()
        genesis_rest = _without_models(base / "G" / "chain", base / "G0")
        build_big_chain(base / "A", chain, n_blocks)
        shutil.copytree(base / "A", base / "P")
        store = ChainStore.open(base / "P" / "chain")
        try:
            engine = Engine(store, chain.genesis)
            keep = {t.champion.model_hash for t in engine.tasks()}
            tip = store.tip().height
            while prune_models(store, tip - WINDOW, keep).through < tip - WINDOW:
                pass
            sizes = []
            for h in range(tip - WINDOW + 1, tip + 1):
                block = store.get_block(h)
                sizes.append(len(block.model) if block is not None else 0)
            model_avg = sum(sizes) / WINDOW
        finally:
            store.close()
        archive = _compacted_bytes(base / "A" / "chain")
        genesis = _compacted_bytes(base / "G" / "chain")
        pruned = _compacted_bytes(base / "P" / "chain")
        rest = _without_models(base / "P" / "chain", base / "P0")
    per_block = (rest - genesis_rest) / tip
    archive_per_block = (archive - genesis) / tip
    return [{"name": "disk_per_block_pruned", "value": round(per_block), "unit": "bytes/block",
             "baseline": round(archive_per_block), "ratio": round(per_block / archive_per_block, 4),
             "goal": f"<= 10 KB; what a block leaves on disk beyond the window (its non-model records, compacted); "
                     f"{tip} blocks of ~{model_avg / 1024:.0f} KB models, window {WINDOW}: the pruned datadir "
                     f"{pruned / 2**20:.1f} MiB vs archive {archive / 2**20:.1f} MiB (baseline: archive bytes per "
                     f"block, genesis off)"}]


if __name__ == "__main__":
    for fig in run(quick="--quick" in sys.argv):
        print(fig)
