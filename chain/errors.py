"""The chain/ exception tree: every error we raise on purpose derives from PopError.

RuleError carries a stable reject ``code`` (peers, logs and tests match on it); the other classes say which
kind of input or resource was at fault. Anything else escaping chain/ is a bug. ``need`` is the one way to
read a record that must exist: its absence raises StoreError, never a TypeError further on.
"""
from __future__ import annotations

from typing import TypeVar

_T = TypeVar("_T")


class PopError(Exception):
    """Root of every error popchain raises on purpose."""


class DecodeError(PopError):
    """Bad bytes: wrong type, size, range, or a non-canonical encoding."""


class RuleError(PopError):
    """A consensus or ledger rule was broken; ``code`` is the stable reject code (e.g. "bad-nonce")."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class StoreError(PopError):
    """The datadir is locked, corrupt, missing, or asked for something it does not hold."""


class StorageFault(StoreError):
    """The storage itself failed: LevelDB could not be opened, read or written (corruption, a full disk, an I/O
    error). Never the fault of whoever sent the data being stored: a node stops on it (exit 3) rather than
    blame a peer or serve half-written state."""


class StateMismatch(StoreError):
    """The stored state does not match the stored chain (accounts against the tip's state root, an undo record
    against its block): the database reads fine but must not be served. ``node reindex`` rebuilds it."""


class WalletError(PopError):
    """Wrong password, unreadable keyfile, or unknown key."""


def need(value: _T | None, what: str) -> _T:
    """``value``, or StoreError("missing <what>") if it is None: for a record the datadir must hold by the
    code's own invariants (written with the tip, the genesis, ...), whose absence means a corrupt datadir."""
    if value is None:
        raise StoreError(f"missing {what}")
    return value
