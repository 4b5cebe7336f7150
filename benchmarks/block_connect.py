"""block_connect_5000: decode + verify + apply + state root + one synced LevelDB batch for a 5000-transfer
block, against bare pynacl verifying its 5000 signatures on 2 threads in the same run. Goal ≤ 1.2× (issue 23).

The tx/address index records are not part of the connect: the store's index writer builds and writes them after
the synced batch, on its own thread (chain.store_indexer). Their cost per block is reported beside the figure
(``fields.index_writer_ms``); the untimed disconnect between runs waits for the writer, so it never overlaps the
next timed connect."""
from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks._chain_common import (
    PARAMS,
    THREADS,
    bare_verify_seconds,
    funded_keys,
    genesis_for,
    paired_medians,
    print_table,
    transfers,
)
from chain.block import Block, Header, model_hash, tx_root
from chain.store import ChainStore

N_TXS = 5000


def run(quick: bool = False) -> list[dict]:
    runs = 3 if quick else 7
    # 2 × N_TXS funded accounts: every tx has its own sender, the state root covers 10,000+ accounts
    keys = funded_keys(2 * N_TXS)
    txs = transfers(keys[:N_TXS])
    items = [tx.sig_item() for tx in txs]
    miner = keys[-1]
    with tempfile.TemporaryDirectory(prefix="popchain-bench-") as tmp, ThreadPoolExecutor(THREADS) as pool:
        store = ChainStore.open(tmp)
        genesis, alloc = genesis_for(keys)
        store.init_genesis(genesis, alloc, PARAMS)
        tip = store.tip()
        model = b"model-1" * 1000
        delta = store.preview_txs(tip.hash, miner.public, txs, PARAMS)
        header = Header(1, PARAMS.chain_id, 1, tip.hash, 1, tip.timestamp + 1, miner.public, tx_root(txs),
                        delta.state_root, model_hash(model), bytes(32)).sign(miner)
        data = Block(header, tuple(txs), model, b"payload").encode()

        def connect() -> float:
            start = time.perf_counter()
            block = Block.decode(data)
            store.connect_block(block, PARAMS)
            elapsed = time.perf_counter() - start
            store.disconnect_tip()  # untimed: restore the parent state for the next run
            return elapsed

        connects = runs + 1
        bare, ours, ratio = paired_medians(runs, lambda: bare_verify_seconds(items, pool), connect)
        index_ms = store.index_seconds() / connects * 1000
        assert store.verify().ok
        store.close()
    return [{"name": "block_connect_5000", "value": ours * 1000, "unit": "ms", "baseline": bare * 1000,
             "ratio": ratio, "goal": "<= 1.2 x bare pynacl verify of its sigs, 2 threads",
             "fields": {"index_writer_ms": round(index_ms, 1)}}]


if __name__ == "__main__":
    import sys
    print_table(run(quick="--quick" in sys.argv))
