"""tx_admission: decode + stateless checks (incl. signature) + state check of signed transfers per second on
2 threads, against bare pynacl verifying the same signatures on 2 threads in the same run. Goal ≥ 0.95× (issue 23).

Measures chain.admission.admit_txs — the batch path for the node's gossip/mempool — with the store's
tip_account_reader() as the state source; every verdict must be "admitted"."""
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
from chain.admission import admit_txs
from chain.store import ChainStore


def run(quick: bool = False) -> list[dict]:
    n = 3000 if quick else 12000
    runs = 3 if quick else 7
    keys = funded_keys(n)
    txs = transfers(keys)
    raw = [tx.encode() for tx in txs]
    items = [tx.sig_item() for tx in txs]
    with tempfile.TemporaryDirectory(prefix="popchain-bench-") as tmp, \
            ThreadPoolExecutor(THREADS) as pool:
        store = ChainStore.open(tmp)
        genesis, alloc = genesis_for(keys)
        store.init_genesis(genesis, alloc, PARAMS)

        def admission() -> float:
            start = time.perf_counter()
            verdicts = admit_txs(raw, PARAMS, store.tip_account_reader(), executor=pool)
            elapsed = time.perf_counter() - start
            assert all(v.ok for v in verdicts)
            return elapsed

        bare, ours, ratio = paired_medians(runs, lambda: bare_verify_seconds(items, pool), admission)
        store.close()
    value, baseline = n / ours, n / bare
    return [{"name": "tx_admission", "value": value, "unit": "tx/s", "baseline": baseline,
             "ratio": 1 / ratio, "goal": ">= 0.95 x bare pynacl verify, 2 threads"}]


if __name__ == "__main__":
    import sys
    print_table(run(quick="--quick" in sys.argv))
