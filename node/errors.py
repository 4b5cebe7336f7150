"""node/ errors: WireError (a peer sent bytes we refuse: disconnect + discourage), NodeError (local misuse),
TaskFailed (an essential task died), ApiError; and the process exit codes of ``python -m node run``."""
from __future__ import annotations

from chain.errors import PopError


class WireError(PopError):
    """A frame is malformed, oversize or of the wrong shape. ``reason`` is a short stable code for logs/metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class NodeError(PopError):
    """The node cannot start or was misused (bad datadir, locked datadir, bad config)."""


EXIT_START_FAILED = 2      # the node could not start (NodeError: bad datadir, config, genesis, ...)
EXIT_TASK_FAILED = 5       # an essential task died while running (TaskFailed): see the CRITICAL log line
# (3 and 4 are the store's: an unreadable database, a chain that does not replay — see the README)


class TaskFailed(NodeError):
    """An essential task of a running node failed; the node stopped (exit code EXIT_TASK_FAILED). The task's
    exception is ``__cause__`` (a StoreError there is a storage fault: map it to the store's exit code)."""


class ApiError(PopError):
    """An API request failed; carries the HTTP status and a stable code for the JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
