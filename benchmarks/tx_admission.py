"""tx_admission: decode + stateless checks (incl. signature) + state check of signed transfers per second on
2 threads, against bare pynacl verifying the same signatures on 2 threads in the same run. Goal ≥ 0.8×."""
from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks._chain_common import (PARAMS, THREADS, bare_verify_seconds, funded_keys, genesis_for,
                                      paired_medians, print_table, transfers)
from chain.address import address_of
from chain.state import check_tx_stateful, check_tx_stateless
from chain.store import ChainStore
from chain.tx import Transfer


def _admit_chunk(view, raw: list[bytes]) -> int:
    admitted = 0
    for data in raw:
        tx = Transfer.decode(data)
        check_tx_stateless(tx, PARAMS)
        check_tx_stateful(tx, view.get_account(address_of(tx.sender)))
        admitted += 1
    return admitted


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
        view = store.state_view()
        size = -(-n // (THREADS * 8))

        def admission() -> float:
            start = time.perf_counter()
            futures = [pool.submit(_admit_chunk, view, raw[i:i + size]) for i in range(0, n, size)]
            assert sum(f.result() for f in futures) == n
            return time.perf_counter() - start

        bare, ours, ratio = paired_medians(runs, lambda: bare_verify_seconds(items, pool), admission)
        store.close()
    value, baseline = n / ours, n / bare
    return [{"name": "tx_admission", "value": value, "unit": "tx/s", "baseline": baseline,
             "ratio": 1 / ratio, "goal": ">= 0.8 x bare pynacl verify, 2 threads"}]


if __name__ == "__main__":
    import sys
    print_table(run(quick="--quick" in sys.argv))
