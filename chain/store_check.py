"""Storage honesty checks: the store never re-creates, forgets or serves what it cannot vouch for.

Does:
- keep a *tip witness* file beside the database (``<chain dir>/TIP``: "height hash", written atomically after
  the database synced that tip): its presence says this directory held a chain, its height how far. On open, a
  database that is missing, empty, uninitialised or behind the witness by more than one block (a truncated or
  lost LevelDB log, a table restored from an older copy) is a StoreError, never a silent fresh start;
- check, on open, that the stored accounts hash to the tip header's state root and that the undo records of the
  last blocks (as many as a time budget allows) turn them back into their parents' state roots
  (``check_state``; StateMismatch when they do not): the cheap part of ``verify``, run on every start.

Does not: replay the chain (chain.store_verify does, for ``node verify`` and ``--check-level full``), repair
anything (``node reindex`` does), or run on MemoryKV stores (no directory, no witness).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from chain.errors import StateMismatch, StoreError
from chain.store_read import P_UNDO, StoreReader

WITNESS = "TIP"
REORG_SLACK = 1          # a tip switch within a round may briefly step back one block (PROTOCOL §3.8)
CHECK_BLOCKS = 6         # undo records checked on open (Core's -checkblocks default is 6 as well)
CHECK_BUDGET_S = 2.0     # ... or as many as fit in this time


def read_witness(chain_dir: Path) -> tuple[int, bytes] | None:
    """(height, hash) of the last tip the directory is known to have held durably, or None (never held one, or
    a directory from before witnesses existed)."""
    try:
        text = (chain_dir / WITNESS).read_text().split()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read the tip witness {chain_dir / WITNESS}: {exc}") from None
    try:
        return int(text[0]), bytes.fromhex(text[1])
    except (IndexError, ValueError):
        raise StoreError(f"the tip witness {chain_dir / WITNESS} is damaged ({' '.join(text)[:40]!r}): restore "
                         f"the datadir from a backup, or move {chain_dir} away and let the node resync") from None


def write_witness(chain_dir: Path, height: int, block_hash: bytes) -> None:
    """Record a tip the database has synced (temp file + fsync + rename: the old or the new witness survives a
    crash, and it never runs ahead of the database). Raises OSError (disk full, ...): the caller retries."""
    path = chain_dir / WITNESS
    tmp = path.with_name(WITNESS + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, f"{height} {block_hash.hex()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _advice(chain_dir: Path) -> str:
    return (f"restore the datadir from a backup, or move {chain_dir} away and let the node resync from its peers "
            "(it was not re-created)")


def check_before_open(chain_dir: Path, db_dir: Path) -> tuple[int, bytes] | None:
    """Refuse a directory that held a chain but lost its database; returns the witness."""
    witness = read_witness(chain_dir)
    if witness is not None:
        try:
            empty = not any(db_dir.iterdir())
        except FileNotFoundError:
            empty = True
        if empty:
            raise StoreError(f"the chain database {db_dir} is missing or empty, but this directory held a chain "
                             f"up to height {witness[0]}: {_advice(chain_dir)}")
    return witness


def check_after_open(store: StoreReader, chain_dir: Path, witness: tuple[int, bytes] | None) -> None:
    """Refuse a database that lost its records or blocks since the witness was written."""
    if witness is None:
        return
    height = witness[0]
    if not store.is_initialised():
        raise StoreError(f"the chain database in {chain_dir} holds no chain, but it held one up to height "
                         f"{height} (a lost or truncated LevelDB log?): {_advice(chain_dir)}")
    tip = store.tip().height
    if tip + REORG_SLACK < height:
        raise StoreError(f"the chain database in {chain_dir} is at height {tip} but held height {height} (a lost "
                         f"or truncated LevelDB log?): {_advice(chain_dir)}")


def check_state(store: StoreReader, budget_s: float = CHECK_BUDGET_S, blocks: int = CHECK_BLOCKS) -> int:
    """The tip's state against the stored accounts, then the last ``blocks`` undo records (within ``budget_s``)
    against their parents' state roots. Returns how many undo records were checked; raises StateMismatch (the
    first mismatch) or StoreError / DecodeError (unreadable records). Loads the tip's leaf cache, which the
    first block connected needs anyway."""
    started = time.monotonic()
    tip = store.tip()
    cache = store._leaf_cache()
    if cache.root_with({}) != tip.state_root:
        raise StateMismatch(f"the stored accounts do not hash to the state root of the tip (height {tip.height} "
                            f"{tip.hash.hex()[:16]}): the state must not be served; run `popchain node reindex`")
    overlay: dict[bytes, bytes | None] = {}
    header = tip
    checked = 0
    while header.height > 0 and checked < blocks and time.monotonic() - started < budget_s:
        raw = store._kv.get(P_UNDO + header.hash)
        if raw is None:
            raise StateMismatch(f"the undo record of block {header.height} {header.hash.hex()[:16]} is missing: "
                                "run `popchain node reindex`")
        overlay.update(store._undo(header.hash))
        parent = store.get_header(header.prev_hash)
        if parent is None:
            raise StoreError(f"the parent of block {header.height} {header.hash.hex()[:16]} is missing")
        if cache.root_with(dict(overlay)) != parent.state_root:
            raise StateMismatch(f"the undo record of block {header.height} {header.hash.hex()[:16]} does not "
                                "restore its parent's state: run `popchain node reindex`")
        header = parent
        checked += 1
    return checked
