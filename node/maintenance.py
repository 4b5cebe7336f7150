"""Offline operator commands on a stopped node's datadir: ``node verify`` and ``node reindex``.

Does: take the datadir lock (refused while a node runs on it), open the store, replay the main chain from the
stored blocks (chain.store_verify) and either compare (verify) or rewrite accounts, undo records and the
tx/address indexes from it (reindex), reporting progress through a callback.
Does not: repair LevelDB itself (a database LevelDB cannot open is a StoreError: restore or resync), re-check
signatures or consensus records (rounds, beacons, champions), or run while the node runs.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from chain.store import ChainStore, VerifyReport
from node.datadir import Datadir
from node.errors import EXIT_INCONSISTENT, EXIT_OK, EXIT_STORE, NodeError


def check_datadir(path: Path, *, rebuild: bool, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Verify (or, with ``rebuild``, reindex) the datadir at ``path``. Raises NodeError (no such datadir,
    in use) or StoreError (the database cannot be opened)."""
    datadir = Datadir(Path(path))
    if not datadir.chain_dir.is_dir():
        raise NodeError(f"{path} holds no chain database ({datadir.chain_dir} missing): not a node datadir")
    datadir.open()
    try:
        store = ChainStore.open(datadir.chain_dir)
        try:
            if not store.is_initialised():
                raise NodeError(f"the chain database in {path} was never initialised (no genesis)")
            return store.reindex(progress) if rebuild else store.verify(progress)
        finally:
            store.close()
    finally:
        datadir.close()


def report_exit_code(report: VerifyReport) -> int:
    if report.ok:
        return EXIT_OK
    return EXIT_STORE if not report.readable else EXIT_INCONSISTENT
