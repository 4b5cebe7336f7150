"""LeafCache: the tip's account leaf hashes in id order, so a state root costs one pass of node hashes
instead of a database scan plus a leaf hash per account. Pure cache: always rebuildable from the accounts."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from chain.crypto import merkle_root_of_hashes
from chain.state import _LEAF_PREFIX, _LEAF_STATE, account_leaf_hash

# a merged state: (ascending ids, leaf hashes in that order, id -> position)
Merged = tuple[list[bytes], list[bytes], dict[bytes, int]]


class LeafCache:
    def __init__(self, ids: list[bytes], level: list[bytes], values: dict[bytes, bytes]) -> None:
        self._ids = ids          # ascending account ids
        self._level = level      # their leaf hashes, in the same order (the Merkle tree's bottom level)
        self._pos = {a: i for i, a in enumerate(ids)}
        self._values = values    # id -> encoded Account (tip state; saves a LevelDB read per touched account)
        # the last merge: (changes, merged, deletes) — valid only until apply() changes the base
        self._memo: tuple[dict[bytes, bytes | None], Merged, bool] | None = None

    @classmethod
    def load(cls, items: Iterable[tuple[bytes, bytes]]) -> LeafCache:
        values = dict(items)
        ids = sorted(values)
        return cls(ids, [account_leaf_hash(a, values[a]) for a in ids], values)

    def get(self, account: bytes) -> bytes | None:
        """Encoded tip Account of ``account`` (None = absent). Lock-free: ``apply`` changes one entry at a
        time, each to a committed value."""
        return self._values.get(account)

    def _merged(self, changes: Mapping[bytes, bytes | None]) -> tuple[Merged, bool]:
        """The bottom level after ``changes``, and whether they delete accounts. Changes to existing accounts
        (every block's senders, most recipients) rewrite their slots in a copy of the level; a block that adds
        or deletes accounts re-sorts."""
        memo = self._memo
        if memo is not None and memo[0] == changes:
            return memo[1], memo[2]
        pos = self._pos
        level = self._level.copy()
        leaf_copy, prefix = _LEAF_STATE.copy, _LEAF_PREFIX
        hashed: dict[bytes, bytes | None] = {}  # accounts outside the level (new), or deleted (None)
        for account, value in changes.items():
            if value is None:
                hashed[account] = None
                continue
            h = leaf_copy()  # = account_leaf_hash(account, value), inlined: ~10,000 calls per block
            h.update(prefix + account + value)
            i = pos.get(account)
            if i is None:
                hashed[account] = h.digest()
            else:
                level[i] = h.digest()
        merged: Merged = (self._ids, level, pos)
        deletes = None in hashed.values()
        if hashed:
            leaves = dict(zip(self._ids, level, strict=True))
            for account, leaf in hashed.items():
                if leaf is None:
                    leaves.pop(account, None)
                else:
                    leaves[account] = leaf
            ids = sorted(leaves) if deletes else sorted(self._ids + [a for a in hashed if a not in pos])
            merged = (ids, [leaves[a] for a in ids], {a: i for i, a in enumerate(ids)})
        # root_with then apply with the same changes (preview, then connect): merge and hash only once
        self._memo = (dict(changes), merged, deletes)
        return merged, deletes

    def root_with(self, changes: Mapping[bytes, bytes | None]) -> bytes:
        """State root if ``changes`` (id -> encoded Account, None = absent) were applied."""
        (_, level, _), _ = self._merged(changes)
        return merkle_root_of_hashes(level)

    def apply(self, changes: Mapping[bytes, bytes | None]) -> None:
        (self._ids, self._level, self._pos), deletes = self._merged(changes)
        self._memo = None
        if deletes:
            for account, value in changes.items():
                if value is None:
                    self._values.pop(account, None)
                else:
                    self._values[account] = value
        else:
            self._values.update(changes)  # type: ignore[arg-type]  # a connect: no deletions, one C-level update
