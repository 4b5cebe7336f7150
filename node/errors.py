"""node/ errors: WireError (a peer sent bytes we refuse: disconnect + discourage) and NodeError (local misuse)."""
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


class ApiError(PopError):
    """An API request failed; carries the HTTP status and a stable code for the JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
