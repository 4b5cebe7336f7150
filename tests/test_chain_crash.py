"""Crash safety: a child process connecting blocks is SIGKILLed at random moments, many of them inside the
synced LevelDB write; every reopen must give a consistent tip whose state root equals a replay from genesis, and
tx/address indexes that describe exactly the main chain. The index records follow each block in a second,
unsynced batch (chain.store_indexer): a kill between the two leaves the index behind, which the reopen catches up
(the second test holds the index writer back so that every kill lands there)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chain.store import ChainStore

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import os, sys, time
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
INDEX_DELAY = float(sys.argv[2])

def say(*parts):
    os.write(1, (" ".join(map(str, parts)) + "\n").encode())   # one write: lines from two threads never mix

def write(changes, *, sync):
    # markers around the synced (consensus) batch: the parent learns whether its kill landed inside it; the
    # index writer's unsynced batches are marked I/i and may be held back by INDEX_DELAY seconds
    if not sync:
        time.sleep(INDEX_DELAY)
    say("W" if sync else "I")
    real_write(changes, sync=sync)
    say("w" if sync else "i")
store._kv.write = write
while True:
    tip = store.tip()
    txs = [make_transfer(k, CHAIN_ID, address_of(keys[(i + 1) % 4].public), 1 + tip.height, 1000,
                         store.get_account(address_of(k.public)).nonce) for i, k in enumerate(keys)]
    block = build_block(store, keys[tip.height % 4], txs, model=os.urandom(2 * 2**20))
    say("B", tip.height + 1)
    store.connect_block(block, PARAMS)
    say("E", tip.height + 1)
"""


def _child(datadir: Path, index_delay: float = 0.0) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(datadir), str(index_delay)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _run_and_kill(datadir: Path, rng: random.Random) -> tuple[list[str], bool]:
    proc = _child(datadir)
    lines: list[str] = []
    target = rng.randint(1, 4)  # kill during the target-th block write (or shortly after it)
    writes, in_block = 0, False
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.strip())
        in_block = in_block or line.startswith("B")   # (the index writer's I/i lines may come in between)
        if line.startswith("W") and in_block:
            in_block = False
            writes += 1
            if writes == target:
                time.sleep(rng.uniform(0, 0.004))
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=30)
    lines.extend(x.strip() for x in proc.stdout.read().splitlines() if x.strip())
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    mid_write = "W" in lines and lines[len(lines) - 1 - lines[::-1].index("W"):].count("w") == 0
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


@pytest.mark.slow
def test_sigkill_with_the_index_behind_the_tip_catches_up_on_reopen(tmp_path):
    """The index writer is held back (each unsynced batch waits 0.3 s) and the child is killed right after a
    block's synced batch: the database then holds blocks whose index records were never written. The reopen
    must index them (no mismatch with the replay, the marker at the tip, every tip tx findable)."""
    from chain.kv import LevelKV
    from chain.store_indexer import read_marker
    from chain.store_read import K_TIP
    datadir = tmp_path / "behind"
    for round_ in range(3):
        proc = _child(datadir, index_delay=0.3)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("E ") and int(line.split()[1]) >= 2 * (round_ + 1):
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        kv = LevelKV(datadir / "chain.ldb")          # the raw database, before ChainStore.open catches up
        try:
            tip_hash, marker = kv.get(K_TIP), read_marker(kv)
        finally:
            kv.close()
        assert marker is not None and marker[0] != tip_hash, "the kill did not leave the index behind"
        with ChainStore.open(datadir) as store:
            assert read_marker(store._kv) == (store.tip().hash, store.tip().height)
            report = store.verify()   # compares the tx/address indexes with the replay
            assert report.ok, report.problems
            for height in range(1, store.tip().height + 1):
                block = store.get_block(height)
                assert block is not None
                assert all(store.find_tx(tx.txid) is not None for tx in block.txs)
