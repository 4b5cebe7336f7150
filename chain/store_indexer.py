"""The index writer: the tx/address index records of connected blocks, written after the block, off its path.

Why: the indexes (chain.store_index) are a lookup service, not consensus — nothing in them is hashed into a
state root and they can always be rebuilt from the stored blocks. Building and writing them took ~30 % of a
5,000-transfer block's connect beyond its signatures. So ChainStore.connect_block writes only the consensus
records in its ONE synced WriteBatch and hands the block to this writer, which builds the index records on its
own thread and writes them in a second, unsynced batch together with the marker ``K_INDEXED`` (hash + height
of the last block whose records are in the database), in the manner of Bitcoin Core's background txindex.

Crash safety: the consensus batch is synced before the index batch is written, so the marker is never ahead of
the tip; LevelDB's log is append-only, so a lost index batch (power loss) loses at most the blocks after the
marker. ``catch_up`` (run by ChainStore.open) indexes the main-chain blocks from the marker to the tip; a
marker that is not a main-chain block (or is missing on a datadir from before the marker) means a full rebuild
(ChainStore.reindex). Disconnecting a block first waits for the writer (``flush``) and removes its records in
the disconnect's synced batch, moving the marker back with them.

Does: queue blocks (at most ``MAX_PENDING``; a connect waits beyond that, so memory is bounded), write their
records in order, retry failed writes (then fail loudly: index reads and the next connect raise StorageFault),
wait for the queue to drain (``flush``, called before every index read, disconnect, verify, reindex and
close). Does not: decide what the records are (chain.store_index), take the
store lock (the writer touches only index keys and the marker; LevelDB orders the writes), or judge blocks.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from chain.block import Block
from chain.errors import StorageFault, StoreError
from chain.kv import KV
from chain.store_index import INDEX_VERSION, K_INDEX_VERSION, index_records

log = logging.getLogger("popchain.chain")

K_INDEXED = b"w"        # -> hash(32) + height(4) of the last block whose index records are written
MAX_PENDING = 8         # blocks queued at most (a 5,000-transfer block's records are ~1.5 MB)
_RETRIES = 5
RETRY_PAUSE_S = 0.1     # doubled after each failed attempt


def marker_value(block_hash: bytes, height: int) -> bytes:
    return block_hash + height.to_bytes(4, "big")


def read_marker(kv: KV) -> tuple[bytes, int] | None:
    raw = kv.get(K_INDEXED)
    if raw is None or len(raw) != 36:
        return None
    return raw[:32], int.from_bytes(raw[32:], "big")


class IndexWriter:
    """One writer thread (started on demand, gone when the queue is empty) that writes the index records of the
    blocks ``submit`` hands it, in order, each batch with the marker."""

    def __init__(self, kv: KV) -> None:
        self._kv = kv
        self._queue: deque[Block] = deque()
        self._cond = threading.Condition()
        self._busy = False          # a writer thread is running (it may hold a popped block)
        self._failure: str | None = None
        self.written_s = 0.0        # seconds the writer spent (the bench reports it beside block_connect_5000)

    def submit(self, block: Block) -> None:
        """Queue ``block`` (just connected on the main chain) for indexing; waits while MAX_PENDING are queued.
        Raises StorageFault once the writer gave up: a failing LevelDB write stops the node like any other
        (node.node: exit 3), and the next start catches the indexes up."""
        with self._cond:
            if self._failure is not None:
                raise StorageFault(self._failure_text())
            while len(self._queue) >= MAX_PENDING and self._failure is None:
                self._cond.wait()
            self._queue.append(block)
            if not self._busy:
                self._busy = True
                threading.Thread(target=self._run, name="popchain-index", daemon=False).start()

    def check(self) -> None:
        """Raise StorageFault if the writer gave up (ChainStore.connect_block asks before writing anything)."""
        if self._failure is not None:
            raise StorageFault(self._failure_text())

    def drain(self) -> bool:
        """Wait until every queued block's records are written; False if the writer gave up (the indexes are
        then behind the tip until the next start catches them up)."""
        with self._cond:
            while self._busy:
                self._cond.wait()
            return self._failure is None

    def flush(self) -> None:
        """``drain``, raising StoreError if the writer gave up: for index reads, which must not answer from a
        stale index."""
        if not self.drain():
            raise StorageFault(self._failure_text())

    def _failure_text(self) -> str:
        return (f"the tx/address index writer failed: {self._failure}; the next start rebuilds the missing "
                "index records")

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue or self._failure is not None:
                    self._queue.clear()
                    self._busy = False
                    self._cond.notify_all()
                    return
                block = self._queue[0]
            started = time.perf_counter()
            try:
                self._write(block)
            except Exception as exc:  # noqa: BLE001 -- an essential task fails loudly, never silently
                log.error("tx/address index writer stopped at block %d: %s", block.header.height, exc)
                with self._cond:
                    self._failure = f"{type(exc).__name__}: {exc}"
                continue
            self.written_s += time.perf_counter() - started
            with self._cond:
                self._queue.popleft()
                self._cond.notify_all()

    def _write(self, block: Block) -> None:
        changes = index_records(block)
        changes[K_INDEXED] = marker_value(block.header.hash, block.header.height)
        for attempt in range(_RETRIES):
            try:
                self._kv.write(changes, sync=False)
                return
            except (OSError, StorageFault) as exc:   # e.g. a full disk: retried, then the failure above
                if attempt == _RETRIES - 1:
                    raise
                log.warning("index write failed (%s); retrying", exc)
                time.sleep(RETRY_PAUSE_S * 2 ** attempt)


def catch_up(kv: KV, tip: tuple[bytes, int], hash_at: Callable[[int], bytes | None],
             block_at: Callable[[int], Block | None], reindex: Callable[[], object]) -> int:
    """Index the main-chain blocks above the marker (after a crash between a block's consensus batch and its
    index batch); returns how many blocks were indexed. A datadir without the marker whose indexes exist was
    written when the records went into the consensus batch: its indexes are complete, the marker is set to the
    tip. A marker that is not on the main chain means a full rebuild through ``reindex``. Writes one unsynced
    batch per block."""
    marker = read_marker(kv)
    tip_height = tip[1]
    if marker is None:
        if kv.get(K_INDEX_VERSION) == INDEX_VERSION:
            kv.write({K_INDEXED: marker_value(*tip)}, sync=True)
        return 0       # (no indexes at all: node.opening builds them with ChainStore.reindex)
    if marker[1] <= tip_height and hash_at(marker[1]) == marker[0]:   # (one key read when nothing is behind)
        for height in range(marker[1] + 1, tip_height + 1):
            block = block_at(height)
            if block is None:
                raise StoreError(f"main-chain block at height {height} missing: cannot index it")
            changes = index_records(block)
            changes[K_INDEXED] = marker_value(block.header.hash, height)
            kv.write(changes, sync=False)
        return tip_height - marker[1]
    log.warning("rebuilding the tx/address indexes from the stored blocks (index marker off the main chain)")
    reindex()
    return tip_height
