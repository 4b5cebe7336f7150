"""Shared set-up for the chain benchmarks: funded keys, signed transfers, bare pynacl baseline."""
from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import nacl.bindings

from chain.address import address_of
from chain.block import Block, Header, model_hash, tx_root
from chain.crypto import Keypair
from chain.state import LedgerParams, genesis_state_root
from chain.tx import Transfer, make_transfer

PARAMS = LedgerParams(chain_id="popchain-bench", block_reward=50_000_000, min_fee=1_000)
THREADS = 2


def funded_keys(n: int) -> list[Keypair]:
    return [Keypair.from_seed(hashlib.sha256(b"bench-%d" % i).digest()) for i in range(n)]


def transfers(keys: Sequence[Keypair]) -> list[Transfer]:
    """One transfer per key (nonce 0) to the next key's account."""
    return [make_transfer(k, PARAMS.chain_id, address_of(keys[(i + 1) % len(keys)].public), 1000 + i, 1000, 0)
            for i, k in enumerate(keys)]


def genesis_for(keys: Sequence[Keypair]) -> tuple[Block, list[tuple[bytes, int]]]:
    alloc = [(address_of(k.public), 10**9) for k in keys]
    header = Header(1, PARAMS.chain_id, 0, bytes(32), 0, 1_700_000_000, bytes(32), tx_root([]),
                    genesis_state_root(alloc), model_hash(b"m0"), bytes(32))
    return Block(header, (), b"m0", b""), alloc


def bare_verify_seconds(items: Sequence[tuple[bytes, bytes, bytes]], pool: ThreadPoolExecutor) -> float:
    """Wall time for bare pynacl to verify ``items`` on the pool's threads (chunks, no other work)."""
    open_ = nacl.bindings.crypto_sign_open

    def chunk(part: Sequence[tuple[bytes, bytes, bytes]]) -> None:
        for pub, msg, sig in part:
            open_(sig + msg, pub)
    size = -(-len(items) // (THREADS * 4))
    start = time.perf_counter()
    for fut in [pool.submit(chunk, items[i:i + size]) for i in range(0, len(items), size)]:
        fut.result()
    return time.perf_counter() - start


def median_of(runs: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(runs))


def paired_medians(runs: int, baseline: Callable[[], float], ours: Callable[[], float]) -> tuple[float, float, float]:
    """Alternate baseline and measured runs (after one untimed warm-up of each) so that load from other
    processes on this shared 2-core machine hits both alike. Returns (median baseline, median ours, median of
    the per-pair ratios ours/baseline)."""
    baseline()
    ours()
    pairs = [(baseline(), ours()) for _ in range(runs)]
    return (statistics.median(b for b, _ in pairs), statistics.median(o for _, o in pairs),
            statistics.median(o / b for b, o in pairs))


def print_table(figures: list[dict]) -> None:
    for f in figures:
        print(f"{f['name']:<22} {f['value']:>12,.1f} {f['unit']:<8} baseline {f['baseline']:>12,.1f}  "
              f"ratio {f['ratio']:.3f}  goal {f['goal']}")
