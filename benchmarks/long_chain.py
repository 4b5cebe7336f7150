"""Flat cost per block (issue 23 item 1): a long chain's per-block and per-request cost does not grow with height.

block_cost_growth   ms per block at height 25,000 ÷ the same at 1,000 (quick: 1,000 ÷ 100, CI-sized), on one chain
                    built fast for the purpose: Engine + Keyholder on a simulated clock, a generated task of tiny
                    16-row shards, one miner whose tiny decision tree is fitted on the round's shard (the builder
                    holds the shard keys), so about every round crowns; a round the tree loses is void (~0.1 % of
                    rounds: far fewer void rounds than a real chain has — each costs a node less than a block). A
                    block's cost is what a node does per block: ``add_block``
                    (full validity: the champion and the challenger re-scored, the ledger, the synced WriteBatch)
                    plus the event stream's chain view (``node.events.read_chain_view``) and round sync's
                    handshake cursor. Median over a window of 50 blocks at each height. Goal <= 1.1. The issue
                    asks for ~100,000: one genesis task's 8 MiB payload holds ~26,500 shards, and building the task
                    extensions a longer chain needs is left for later (the figure's name stays).
status_ms_at_100k   GET /api/status on a node process serving that datadir at the top height; the baseline is the
                    same request on the same chain at ~1,000 blocks (the node is started on the datadir at both).

The chain lives on /dev/shm (tmpfs: a synced write costs no disk flush there, the builder's time is CPU), removed
afterwards. Sync from a peer at both heights is not measured here (network.py's ``sync_blocks_per_s`` is).
`python -m benchmarks.long_chain [--quick]`.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 50
MAX_GENESIS_ROUNDS = 26_500     # generated 16-row shards of this world: ~303 bytes each in the genesis payload
SHARD = 16


class _Builder:
    """Engine + Keyholder + one miner on a simulated clock over a datadir (``genesis.bin`` + ``chain/``)."""

    def __init__(self, datadir: Path, n_rounds: int) -> None:
        from consensus.protocol.genesis import GenesisParams, create_genesis
        from consensus.protocol.settlement import miner_funding
        from ml.generator import world_from_seed
        from ml.shards import SecretTask
        from node.tools.testing import seeded_keypair
        world = world_from_seed(b"long-chain-bench", n_features=6, n_classes=2, n_informative=4)
        self.kh_key, self.miner = seeded_keypair("keyholder"), seeded_keypair("miner0")
        params = GenesisParams(entry_window_s=1, opening_window_s=1, alpha_num=99, alpha_den=100)
        self.genesis, secret = create_genesis(world, chain_id="popchain-long", rounds=n_rounds, shard_size=SHARD,
                                              allocations=miner_funding(self.miner.public, 10**12, 10**12),
                                              keyholder_pubkeys=[self.kh_key.public], params=params,
                                              timestamp=1_700_000_000, n_train=200)
        self.secret_bytes = secret
        self.secret = SecretTask.decode(secret)
        self.datadir = datadir
        datadir.mkdir(parents=True, exist_ok=True)
        (datadir / "genesis.bin").write_bytes(self.genesis.encode())
        self.now = float(self.genesis.timestamp + 100)
        self.open()

    def open(self) -> None:
        from chain.store import ChainStore
        from consensus.engine import Engine
        from consensus.keyholder import Keyholder
        self.store = ChainStore.open(self.datadir / "chain")
        self.engine = Engine(self.store, self.genesis)
        self.keyholder = Keyholder(self.engine, self.secret_bytes, [self.kh_key])

    def close(self) -> None:
        self.store.close()

    def round(self) -> float | None:
        """Play one round; the node's per-block work in ms when it connected a block (None: void)."""
        from sklearn.tree import DecisionTreeClassifier

        from consensus.mining import open_block, seal
        from ml.export import from_sklearn
        from ml.model import encode_model
        from ml.shards import open_shard
        from node.events import read_chain_view
        g, engine = self.genesis, self.engine
        self.keyholder.step(self.now)
        r = engine.open_round()
        served = engine.round_task(r)
        if r == 0 or served is None:
            raise RuntimeError("the long chain ran out of rounds")
        shard = open_shard(g.task, served[1], self.secret.key(served[1]))
        train = g.task.training
        X = np.vstack([train.X[:64], shard.X]).astype(float)
        y = np.concatenate([train.y[:64], shard.y])
        weights = np.r_[np.ones(64), np.full(len(shard.y), 50.0)]
        tree = DecisionTreeClassifier(max_depth=8, random_state=r).fit(X, y, sample_weight=weights)
        model = encode_model(from_sklearn(tree, train.spec, caps=g.model_caps))
        block, entry = seal(engine.build_template(self.miner.public, [], int(self.now)), model, self.miner,
                            os.urandom(32))
        self.keyholder.on_entry(entry)
        self.now += g.params.entry_window_s
        self.keyholder.step(self.now)
        beacon = engine.beacon(r)
        assert beacon is not None
        opened = open_block(block, beacon, genesis=g, champion_bytes=engine.champion_model())
        started = time.perf_counter()
        verdict = engine.add_block(opened)
        read_chain_view(engine, g.params.opening_window_s)
        engine.first_missing_round()
        spent = (time.perf_counter() - started) * 1000
        self.now += g.params.opening_window_s
        return spent if verdict.status == "tip-changed" else None

    def grow_to(self, height: int, sample: int = 0) -> list[float]:
        """Play rounds until the tip is at ``height``; the per-block ms of the last ``sample`` blocks."""
        out: list[float] = []
        while self.engine.tip().height < height:
            ms = self.round()
            if ms is not None and self.engine.tip().height > height - sample:
                out.append(ms)
        return out


def _status_ms(datadir: Path, n: int = 20) -> float:
    """Median ms of GET /api/status on a node process serving ``datadir``."""
    from benchmarks._nodeproc import NodeProc
    node = NodeProc(datadir, genesis=None).start()
    try:
        asyncio.run(node.ready(timeout=300))
        url = f"{node.api_url}/api/status"
        urllib.request.urlopen(url, timeout=120).read()      # the first request warms the round index
        times = []
        for _ in range(n):
            t = time.perf_counter()
            urllib.request.urlopen(url, timeout=60).read()
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)
    finally:
        node.stop()


def run(quick: bool = False) -> list[dict[str, Any]]:
    # full: as long as one genesis task allows — its 8 MiB payload holds ~26,500 of these generated shards (a void
    # round spends one too); ~100,000 needs task extensions (not built here). quick: CI runs every quick figure
    low, high = (100, 1_000) if quick else (1_000, 25_000)
    if os.environ.get("POPCHAIN_LONG_CHAIN"):      # smoke runs: "LOW,HIGH"
        low, high = map(int, os.environ["POPCHAIN_LONG_CHAIN"].split(","))
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="popchain-long-", dir=base))
    try:
        b = _Builder(work / "node", n_rounds=min(MAX_GENESIS_ROUNDS, int(high * 1.2) + 100))
        started = time.perf_counter()
        at_low = b.grow_to(low, WINDOW)
        b.close()
        status_low = _status_ms(work / "node")
        b.open()
        at_high = b.grow_to(high, WINDOW)
        rounds = b.engine.current_round()
        b.close()
        built_s = time.perf_counter() - started
        status_high = _status_ms(work / "node")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ms_low, ms_high = statistics.median(at_low), statistics.median(at_high)
    growth = ms_high / ms_low
    return [{"name": "block_cost_growth", "value": round(growth, 3), "unit": f"ms/block at {high:,} ÷ at {low:,}",
             "baseline": round(ms_low, 2), "ratio": round(growth, 3),
             "goal": f"<= 1.1; {ms_low:.2f} -> {ms_high:.2f} ms/block (add_block + chain view + sync cursor, "
                     f"median of {WINDOW}); {high:,} blocks in {rounds:,} rounds built in {built_s:.0f} s"},
            {"name": "status_ms_at_100k", "value": round(status_high, 2), "unit": f"ms, GET /api/status at {high:,}",
             "baseline": round(status_low, 2), "ratio": round(status_high / status_low, 3),
             "goal": f"report (flat: ratio ~1); baseline the same request at {low:,} blocks"}]


if __name__ == "__main__":
    for fig in run(quick="--quick" in sys.argv):
        print(fig)
