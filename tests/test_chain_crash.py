"""Crash safety: a child process connecting blocks is SIGKILLed at random moments, many of them inside the
synced LevelDB write; every reopen must give a consistent tip whose state root equals a replay from genesis, and
tx/address indexes that describe exactly the main chain (written in the same batch)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from chain.store import ChainStore

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import os, sys
from chain.address import address_of
from chain.store import ChainStore
from chain.tx import make_transfer
from tests.conftest import CHAIN_ID, PARAMS, build_block, keypair, make_genesis

keys = [keypair(i) for i in range(4)]
alloc = [(address_of(k.public), 10**12) for k in keys]
store = ChainStore.open(sys.argv[1])
if not store.is_initialised():
    store.init_genesis(make_genesis(alloc), alloc, PARAMS)
real_write = store._kv.write

def write(changes, *, sync):
    # markers around the batch write: the parent learns whether its kill landed inside it
    print("W", flush=True)
    real_write(changes, sync=sync)
    print("w", flush=True)
store._kv.write = write
while True:
    tip = store.tip()
    txs = [make_transfer(k, CHAIN_ID, address_of(keys[(i + 1) % 4].public), 1 + tip.height, 1000,
                         store.get_account(address_of(k.public)).nonce) for i, k in enumerate(keys)]
    block = build_block(store, keys[tip.height % 4], txs, model=os.urandom(2 * 2**20))
    print("B", tip.height + 1, flush=True)
    store.connect_block(block, PARAMS)
    print("E", tip.height + 1, flush=True)
"""


def _run_and_kill(datadir: Path, rng: random.Random) -> tuple[list[str], bool]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(datadir)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines: list[str] = []
    target = rng.randint(1, 4)  # kill during the target-th block write (or shortly after it)
    writes = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.strip())
        if line.startswith("W") and lines[-2:-1] and lines[-2].startswith("B"):
            writes += 1
            if writes == target:
                time.sleep(rng.uniform(0, 0.004))
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=30)
    lines.extend(x.strip() for x in proc.stdout.read().splitlines() if x.strip())
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    mid_write = bool(lines) and lines[-1] == "W"
    return lines, mid_write


def test_sigkill_during_connect_leaves_consistent_store(tmp_path):
    rng = random.Random(20240601)
    datadir = tmp_path / "crash"
    kills = mid_writes = 0
    for _ in range(20):
        lines, mid_write = _run_and_kill(datadir, rng)
        kills += 1
        mid_writes += mid_write
        finished = [int(x.split()[1]) for x in lines if x.startswith("E ")]
        started = [int(x.split()[1]) for x in lines if x.startswith("B ")]
        with ChainStore.open(datadir) as store:
            report = store.verify()  # also compares the tx/address indexes with the replay
            assert report.ok, report.problems
            tip_block = store.get_block(store.tip().hash)
            assert tip_block is not None
            assert all(store.find_tx(tx.txid) is not None for tx in tip_block.txs)  # indexed with their block
            assert report.state_root == store.tip().state_root
            height = store.tip().height
            # the tip is the last finished block, or the one in flight if its batch landed before the kill
            if started:
                assert height in {max(finished, default=started[-1] - 1), started[-1]}
    assert kills == 20
    print(f"{mid_writes} of {kills} kills landed inside a synced batch write")
    assert mid_writes >= 5, f"only {mid_writes} of {kills} kills landed inside a batch write"
