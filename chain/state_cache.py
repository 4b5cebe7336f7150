"""LeafCache: the tip's account leaf hashes in id order, so a state root costs one pass of node hashes
instead of a database scan plus a leaf hash per account. Pure cache: always rebuildable from the accounts."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from chain.crypto import merkle_root_of_hashes
from chain.state import _LEAF_PREFIX, _LEAF_STATE, account_leaf_hash


class LeafCache:
    def __init__(self, ids: list[bytes], leaves: dict[bytes, bytes], values: dict[bytes, bytes]) -> None:
        self._ids = ids          # ascending account ids
        self._leaves = leaves    # id -> leaf hash
        self._values = values    # id -> encoded Account (tip state; saves a LevelDB read per touched account)
        # the last merge: (changes, ids, leaves) — valid only until apply() changes the base
        self._memo: tuple[dict[bytes, bytes | None], list[bytes], dict[bytes, bytes]] | None = None

    @classmethod
    def load(cls, items: Iterable[tuple[bytes, bytes]]) -> "LeafCache":
        values = dict(items)
        leaves = {a: account_leaf_hash(a, v) for a, v in values.items()}
        return cls(sorted(leaves), leaves, values)

    def get(self, account: bytes) -> bytes | None:
        """Encoded tip Account of ``account`` (None = absent)."""
        return self._values.get(account)

    def _merged(self, changes: Mapping[bytes, bytes | None]) -> tuple[list[bytes], dict[bytes, bytes]]:
        memo = self._memo
        if memo is not None and memo[0] == changes:
            return memo[1], memo[2]
        leaves = self._leaves.copy()
        added = removed = False
        leaf_copy, prefix = _LEAF_STATE.copy, _LEAF_PREFIX
        for account, value in changes.items():
            if value is None:
                if leaves.pop(account, None) is not None:
                    removed = True
            else:
                if not added and account not in leaves:
                    added = True
                h = leaf_copy()  # = account_leaf_hash(account, value), inlined: ~10,000 calls per block
                h.update(prefix + account + value)
                leaves[account] = h.digest()
        ids = sorted(leaves) if (added or removed) else self._ids
        # root_with then apply with the same changes (preview, then connect): merge and hash only once
        self._memo = (dict(changes), ids, leaves)
        return ids, leaves

    def root_with(self, changes: Mapping[bytes, bytes | None]) -> bytes:
        """State root if ``changes`` (id -> encoded Account, None = absent) were applied."""
        ids, leaves = self._merged(changes)
        return merkle_root_of_hashes(list(map(leaves.__getitem__, ids)))

    def apply(self, changes: Mapping[bytes, bytes | None]) -> None:
        self._ids, self._leaves = self._merged(changes)
        self._memo = None
        for account, value in changes.items():
            if value is None:
                self._values.pop(account, None)
            else:
                self._values[account] = value
