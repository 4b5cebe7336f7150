"""A stopped node's datadir whose blocks are real-size: each carries a model of ≥ 300 KB (48 extra trees; ~400 KB
at height 1, growing with the training data to ~1 MB at height 16), as blocks on a real chain do — for the attack
benchmarks and tests that need GETDATA answers of realistic weight.

Drives Engine + Keyholder on a simulated clock (no network), like node.tools.testing.build_chain_offline, with
one miner entering a big model per round (the test chain's easy crowning rule crowns it).
"""
from __future__ import annotations

import os
from pathlib import Path

from node.tools.testing import TestChain

TREES = 48          # ≈ 400 KB encoded at height 1 on the test chain's synthetic task, ~1 MB by height 16


def build_big_chain(datadir: Path, chain: TestChain, n_blocks: int) -> list[bytes]:
    """Fill ``datadir`` with ``n_blocks`` crowned real-size blocks; returns their hashes (height order)."""
    from sklearn.ensemble import ExtraTreesClassifier

    from chain.errors import need
    from chain.store import ChainStore
    from consensus.engine import Engine
    from consensus.keyholder import Keyholder, load_keyholder_file
    from consensus.mining import open_block, seal
    from ml.export import from_sklearn
    from ml.model import encode_model
    from ml.shards import open_shard
    from ml.task import Dataset
    from ml.training import training_data

    datadir.mkdir(parents=True, exist_ok=True)
    (datadir / "genesis.bin").write_bytes(chain.genesis_path.read_bytes())
    g = chain.genesis
    store = ChainStore.open(datadir / "chain")
    try:
        engine = Engine(store, g)
        secret, keypairs = load_keyholder_file(chain.keyholder_path.read_bytes())
        keyholder = Keyholder(engine, secret, keypairs)
        now = float(g.timestamp + 100)
        shards: list[Dataset] = []
        miner = chain.miners[0]
        while engine.tip().height < n_blocks:
            keyholder.step(now)
            r = engine.open_round()
            if r == 0:
                raise RuntimeError("chain ran out of rounds before reaching the block count")
            X, y = training_data(g.task.training, shards)
            est = ExtraTreesClassifier(n_estimators=TREES, max_depth=12, min_samples_leaf=2, random_state=r)
            model = from_sklearn(est.fit(X.astype(float), y), g.task.training.spec, X_ref=X, caps=g.model_caps)
            block, entry = seal(engine.build_template(miner.public, [], int(now)), encode_model(model), miner,
                                os.urandom(32))
            keyholder.on_entry(entry)
            now += g.params.entry_window_s
            keyholder.step(now)
            beacon = engine.beacon(r)
            assert beacon is not None, "the keyholder published beacon r after the entry window"
            engine.add_block(open_block(block, beacon, genesis=g, champion_bytes=engine.champion_model()))
            shards.append(open_shard(g.task, r, beacon.shard_key))
            now += g.params.opening_window_s
            keyholder.step(now)
        tip = engine.tip().height
        return [need(store.block_hash_at(h), f"block {h}") for h in range(1, tip + 1)]
    finally:
        store.close()
