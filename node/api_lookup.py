"""Git-style abbreviated ids for the API and the explorer: a block hash, txid or model hash may be given as any
unique prefix of at least MIN_PREFIX hex digits (``9f948638d8834ff1`` as ``model history`` prints it).

Does: tell a full id from a prefix, resolve a prefix against the store (chain.store ``ids_with_prefix``: headers,
the confirmed-tx index, stored models) and, for transfers, the mempool; an ambiguous prefix is an error that
lists the candidates, an unknown one a 404. Does not: decide what a page shows for the id.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Protocol

from node.errors import ApiError

MIN_PREFIX = 4          # as git: shorter abbreviations are refused, not guessed
MAX_CANDIDATES = 8
HEX = frozenset("0123456789abcdef")


def is_hex(text: str) -> bool:
    return bool(text) and set(text.lower()) <= HEX


def full_id(text: str) -> bytes | None:
    """The 32 bytes of a full 64-hex id, else None."""
    return bytes.fromhex(text) if len(text) == 64 and is_hex(text) else None


def check_prefix(text: str, what: str) -> str:
    """A usable abbreviation (lower case) or ApiError 400."""
    if not is_hex(text) or not MIN_PREFIX <= len(text) <= 64:
        raise ApiError(400, "bad-request", f"{what}: expected 64 hex digits or a unique prefix of at least "
                                           f"{MIN_PREFIX}, got {text[:70]!r}")
    return text.lower()


def pick(matches: list[bytes], text: str, what: str) -> bytes:
    """The one id a prefix names; 404 when none, 400 ``ambiguous-prefix`` (with the candidates) when several."""
    unique = sorted(set(matches))
    if not unique:
        raise ApiError(404, "not-found", f"no {what} starts with {text}")
    if len(unique) > 1:
        shown = ", ".join(m.hex()[:max(len(text) + 4, 16)] for m in unique[:MAX_CANDIDATES])
        raise ApiError(400, "ambiguous-prefix", f"{what} prefix {text} is ambiguous: {shown} — give more digits")
    return unique[0]



class PrefixIndex(Protocol):
    """The store's id index by hex prefix (chain.store.ChainStore.ids_with_prefix)."""

    def ids_with_prefix(self, kind: str, prefix_hex: str, limit: int = 8) -> list[bytes]: ...


async def resolve(store: PrefixIndex, kind: str, text: str, *, extra: Callable[[], Iterable[bytes]] | None = None,
                  what: str | None = None) -> bytes:
    """The full id ``text`` names (itself when it is a full id): kind ``block``, ``tx`` or ``model``; ``extra``
    adds ids the store does not hold (pending transfers). Store reads run on the default executor."""
    label = what or kind
    full = full_id(text)
    if full is not None:
        return full
    prefix = check_prefix(text, label)
    loop = asyncio.get_running_loop()
    matches = await loop.run_in_executor(None, store.ids_with_prefix, kind, prefix, MAX_CANDIDATES)
    if extra is not None:
        matches += [i for i in extra() if i.hex().startswith(prefix)]
    return pick(matches, prefix, label)
