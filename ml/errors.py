"""Typed errors of ml/. Every message names the offending field so a reject can be explained.

MLError is a chain.errors.PopError (ml/ may import chain's leaf modules), so the one error tree covers ml/ too:
whoever catches PopError — node start (exit codes), the API (422), the CLI (one line) — catches these.
"""
from __future__ import annotations

from chain.errors import PopError


class MLError(PopError):
    """Root of every error ml/ raises on purpose."""


class ModelError(MLError):
    """Model bytes are malformed, non-canonical, over a cap, the wrong shape for the task, or may overflow."""


class TaskError(MLError):
    """Task data (CSV file, built-in loader arguments, task package bytes) is unusable."""


class ShardError(MLError):
    """A hidden shard does not decrypt with the given key or does not match its commitment."""
