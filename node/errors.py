"""node/ errors and the process exit codes — one table for every popchain command (README "exit codes").

Errors: WireError (a peer sent bytes we refuse: disconnect + discourage), NodeError (the node cannot start or
was misused), TaskFailed (an essential task died), ApiError. Every one derives from chain.errors.PopError, as do
chain's StoreError / StateMismatch and ml's MLError: the one error tree.

``exit_code_of`` maps an error that ends ``node run`` (or ``node verify`` / ``node reindex``) to its documented
exit code; anything it does not know is a bug and keeps its traceback. Each exit code has exactly one constant.
"""
from __future__ import annotations

import errno

from chain.errors import PopError, StateMismatch, StoreError

EXIT_OK = 0
EXIT_FAILURE = 1          # any other expected error of the CLI (bad input, unreachable node, ...)
EXIT_CONFIG = 2           # the node cannot start: bad configuration or input file, datadir in use, port taken
EXIT_STORE = 3            # storage fault: the database is unreadable or lost records, or the disk is full
EXIT_INCONSISTENT = 4     # a check failed: the stored state does not match the chain (`node reindex` rebuilds
#                           it); `model eval`: the model would not pass
EXIT_TASK_FAILED = 5      # an essential task died while running (a bug: see the CRITICAL log line)
EXIT_NO_OPEN_TASK = 6     # `miner run` stopped: no task of the chain is open
EXIT_INTERRUPTED = 130    # Ctrl-C in a client command (128 + SIGINT)
EXIT_BROKEN_PIPE = 141    # stdout closed under a client command (128 + SIGPIPE), as coreutils do

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok", EXIT_FAILURE: "failure", EXIT_CONFIG: "cannot start", EXIT_STORE: "storage fault",
    EXIT_INCONSISTENT: "state does not match the chain", EXIT_TASK_FAILED: "essential task failed",
    EXIT_NO_OPEN_TASK: "no open task", EXIT_INTERRUPTED: "interrupted", EXIT_BROKEN_PIPE: "broken pipe",
}

# OS errors that mean the datadir's storage failed (not the configuration): a storage fault, exit 3
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


class WireError(PopError):
    """A frame is malformed, oversize or of the wrong shape. ``reason`` is a short stable code for logs/metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class NodeError(PopError):
    """The node cannot start or was misused (bad datadir, locked datadir, bad config, bad genesis file)."""


class TaskFailed(NodeError):
    """An essential task of a running node failed; the node stopped. The task's exception is ``__cause__``:
    a storage fault there (StoreError, a disk-full OSError) maps to the store's exit code, a bug to
    EXIT_TASK_FAILED."""


class ApiError(PopError):
    """An API request failed; carries the HTTP status and a stable code for the JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def is_storage_fault(exc: BaseException) -> bool:
    """A StoreError, or an OSError of the storage itself (disk full, quota, I/O error, read-only)."""
    return isinstance(exc, StoreError) or (isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS)


def exit_code_of(exc: BaseException) -> int | None:
    """The documented exit code for an error that ends the node (looking inside exception groups and at the
    cause of TaskFailed), or None if it is not one we expect (a bug: let it raise)."""
    if isinstance(exc, BaseExceptionGroup):
        codes = [exit_code_of(e) for e in exc.exceptions]
        known = [c for c in codes if c is not None]
        return max(known) if known and len(known) == len(codes) else None
    if isinstance(exc, TaskFailed):
        cause = exc.__cause__
        if cause is not None and (isinstance(cause, StateMismatch) or is_storage_fault(cause)):
            return exit_code_of(cause)
        return EXIT_TASK_FAILED
    if isinstance(exc, StateMismatch):
        return EXIT_INCONSISTENT
    if is_storage_fault(exc):
        return EXIT_STORE
    if isinstance(exc, PopError):   # NodeError, or a bad input file (DecodeError, MLError, ...) at start-up
        return EXIT_CONFIG
    if isinstance(exc, OSError) and exc.errno is not None:   # a file or port we cannot use at start-up
        return EXIT_CONFIG
    return None


def first_line(exc: BaseException) -> str:
    """One line describing ``exc`` (the first leaf of an exception group; an OSError by its strerror)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
