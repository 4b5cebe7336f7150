"""Model pruning (issue 23 item 2): a pruned store drops the model bytes of old main-chain blocks, ~98 % of a
chain's bytes, and keeps everything else.

Does: delete, in one synced WriteBatch per step, the stored models of main-chain blocks from the last pruned
height + 1 up to a height the caller gives, except the models it says to keep (the standing champions: the next
block is scored against them), and move the store's pruned height (``K_PRUNED``) in the same batch — a crash
leaves either the old or the new pruned height with exactly the models it implies. Headers, bodies (txs),
payloads (beacons), undo records, moves, indexes and every consensus record stay: ``verify``/``reindex`` replay
the ledger from them alone, and a block whose model is pruned reads with an empty model (``StoreReader.get_block``)
and is not served to peers (``block_encoding`` answers None: they ask an archive node). ``restore_model`` puts
back a model fetched from an archive peer once it matches the header's hash.

Does not: decide the window (node/ passes ``tip - N``), prune blocks off the main chain (a disconnected sibling
keeps its model; a later step may), or fetch anything.
"""
from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from chain.block import model_hash
from chain.errors import StoreError
from chain.store import ChainStore
from chain.store_read import K_PRUNED, P_MODEL

__all__ = ["PRUNE_STEP", "PruneStep", "prune_models", "restore_model"]

PRUNE_STEP = 1000     # heights per batch: a node catching up on its window never holds the store lock for long


class PruneStep(NamedTuple):
    through: int        # the store's pruned height after the step
    models: int         # models deleted
    freed: int          # their bytes


def prune_models(store: ChainStore, through: int, keep: Collection[bytes], step: int = PRUNE_STEP) -> PruneStep:
    """Prune main-chain models up to height ``through`` (at most ``step`` heights per call), keeping ``keep``."""
    start = store.pruned_through() + 1
    stop = min(through, start + step - 1, store.tip().height)
    if stop < start:
        return PruneStep(start - 1, 0, 0)
    changes: dict[bytes, bytes | None] = {}
    freed = 0
    for height in range(start, stop + 1):
        header = store.get_header(height)
        if header is None:
            raise StoreError(f"no main-chain header at height {height} while pruning")
        if header.model_hash in keep:
            continue
        raw = store.get_model(header.model_hash)
        if raw is not None:
            changes[P_MODEL + header.model_hash] = None
            freed += len(raw)
    changes[K_PRUNED] = stop.to_bytes(4, "big")
    store.raw_write(changes)
    return PruneStep(stop, sum(1 for v in changes.values() if v is None), freed)


def restore_model(store: ChainStore, expected_hash: bytes, data: bytes) -> bool:
    """Store ``data`` as the model with hash ``expected_hash`` if it hashes to it (a model fetched on demand from
    an archive peer); False (nothing written) if it does not."""
    if model_hash(data) != expected_hash:
        return False
    store.put_model(data)
    return True
