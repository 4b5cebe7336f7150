"""Previewed deltas: what ChainStore.preview_txs found for a tx tuple, kept for the connect that follows.

Consensus validation previews every block's transfers (signatures, nonces, balances, state root) on its parent's
state, then connects the block: without this memo the connect checked all of them again (a 5,000-transfer block
verified its 5,000 signatures twice). The state after a block hash never changes, so a delta computed for the
same parent, miner, ledger params, settlement moves and the very same tx tuple (by identity: a tuple cannot
change, and the memo keeps it alive so that its id is not reused) is the delta the connect would compute.

Does: remember the last KEPT previews, hand one out once. Does not: compare the header's tx root or state root
(ChainStore.connect_block still does), or hold any lock (the store's lock covers every call).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from chain.state import LedgerParams, Move, StateDelta
from chain.tx import Transfer

KEPT = 2     # validate, then connect: the next connect uses it (a 5,000-transfer block's delta is a few MB)

_Key = tuple[object, ...]


def _key(prev_hash: bytes, miner: bytes, txs: Sequence[Transfer], params: LedgerParams,
         moves: Sequence[Move]) -> _Key:
    return (prev_hash, miner, id(txs), params, tuple(tuple(m) for m in moves))


class PreviewMemo:
    def __init__(self) -> None:
        self._kept: OrderedDict[_Key, tuple[Sequence[Transfer], StateDelta]] = OrderedDict()

    def remember(self, prev_hash: bytes, miner: bytes, txs: Sequence[Transfer], params: LedgerParams,
                 moves: Sequence[Move], delta: StateDelta) -> None:
        if type(txs) is not tuple:   # a list could change between the preview and the connect
            return
        self._kept[_key(prev_hash, miner, txs, params, moves)] = (txs, delta)
        while len(self._kept) > KEPT:
            self._kept.popitem(last=False)

    def take(self, prev_hash: bytes, miner: bytes, txs: Sequence[Transfer], params: LedgerParams,
             moves: Sequence[Move]) -> StateDelta | None:
        """The delta previewed for exactly these arguments (forgotten once taken), or None."""
        kept = self._kept.pop(_key(prev_hash, miner, txs, params, moves), None)
        return kept[1] if kept is not None and kept[0] is txs else None
