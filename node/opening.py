"""Opening the chain store before anything is served *(policy)*: the checks of PROTOCOL §4.8, on the worker thread.

Does: open the store (chain.store_check refuses a directory that lost its database, records or blocks), build the
tx/address indexes once for a datadir from before them, then check what will be served — ``tip`` (default): the
tip's state root against the stored accounts and the last undo records, seconds at most; ``full``: the whole chain
replayed (``node verify``). A state that does not match raises StateMismatch (exit 4), an unreadable one
StoreError (exit 3). Does not: repair anything (``node reindex`` does) or open the engine (node.node does).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from chain.errors import DecodeError, StateMismatch, StoreError
from chain.store import ChainStore

log = logging.getLogger("popchain.node")


def open_checked_store(chain_dir: Path, check_level: str, datadir: Path) -> ChainStore:
    """The store of ``chain_dir``, checked at ``check_level`` ("tip" or "full") if it holds a chain. A record
    that does not decode is a damaged datadir: StoreError, like a LevelDB fault."""
    try:
        store = ChainStore.open(chain_dir)
    except DecodeError as exc:
        raise StoreError(f"corrupt record in {chain_dir}: {exc}") from None
    try:
        if store.is_initialised():
            if not store.has_indexes():   # a datadir from before the indexes
                log.info("building the tx and address indexes from the stored blocks (once)")
                report = store.reindex()
                if not report.ok:
                    raise StoreError(f"cannot build the indexes: {'; '.join(report.problems)}")
            check_store(store, check_level, datadir)
    except DecodeError as exc:
        store.close()
        raise StoreError(f"corrupt record in {chain_dir}: {exc}") from None
    except BaseException:
        store.close()
        raise
    return store


def check_store(store: ChainStore, check_level: str, datadir: Path) -> None:
    started = time.monotonic()
    if check_level == "full":
        log.info("checking the whole chain (--check-level full): replaying %d blocks", store.tip().height)
        report = store.verify(lambda h, n: log.info("check: block %d/%d", h, n) if h % 1000 == 0 else None)
        if not report.readable:
            raise StoreError(f"the chain database cannot be read: {report.problems[0]}")
        if not report.ok:
            raise StateMismatch(f"the stored chain does not replay: {report.problems[0]}; run "
                                f"`popchain node reindex --datadir {datadir}`")
        return
    checked = store.check_state()
    log.info("store checked: tip state matches the stored accounts, %d undo records (%.2f s)", checked,
             time.monotonic() - started)
