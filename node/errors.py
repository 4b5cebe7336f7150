"""node/ errors: WireError (a peer sent bytes we refuse: disconnect + discourage) and NodeError (local misuse);
the process exit codes of ``node run`` / ``node verify`` / ``node reindex`` (README, operator section)."""
from __future__ import annotations

from chain.errors import PopError, StoreError

EXIT_OK = 0
EXIT_FAILURE = 1        # any other expected error of the CLI (bad input, unreachable node, ...)
EXIT_CONFIG = 2         # NodeError: bad configuration, bad or mismatching genesis file, datadir in use
EXIT_STORE = 3          # StoreError: the datadir's database is unreadable or corrupt (try `node reindex`)
EXIT_INCONSISTENT = 4   # `node verify` / `node reindex`: the stored chain does not replay to its state


def exit_code_of(exc: BaseException) -> int | None:
    """The documented exit code for an error that ends the node (looking inside exception groups), or None
    if it is not one we expect (a bug: let it raise)."""
    if isinstance(exc, BaseExceptionGroup):
        codes = [exit_code_of(e) for e in exc.exceptions]
        known = [c for c in codes if c is not None]
        return max(known) if known and len(known) == len(codes) else None
    if isinstance(exc, StoreError):
        return EXIT_STORE
    if isinstance(exc, NodeError):
        return EXIT_CONFIG
    return None


def first_line(exc: BaseException) -> str:
    """One line describing ``exc`` (the first leaf of an exception group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class WireError(PopError):
    """A frame is malformed, oversize or of the wrong shape. ``reason`` is a short stable code for logs/metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class NodeError(PopError):
    """The node cannot start or was misused (bad datadir, locked datadir, bad config, bad genesis file)."""


class ApiError(PopError):
    """An API request failed; carries the HTTP status and a stable code for the JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
