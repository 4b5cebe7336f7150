"""Process memory hygiene *(policy)*: give memory that floods freed back to the operating system (glibc only).

Python frees a flood's frames and tables when they go, but glibc's allocator keeps the freed pages for reuse:
without this the node's RSS after a flood stays at its peak. At start-up ``tune`` fixes the mmap threshold (so
large buffers — received frames, blocks — are mapped and unmapped on their own instead of fragmenting the
heap, which glibc's *dynamic* threshold otherwise allows after the first large free) and caps the number of
allocator arenas (each thread would get one); ``trim`` (from housekeeping) returns free heap pages.

Does nothing where glibc is not the C library (the calls are looked up, never assumed).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("popchain.node")

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024
ARENAS = 2

_libc: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name) if name else None
        except OSError:
            lib = None
        if lib is None or not hasattr(lib, "mallopt") or not hasattr(lib, "malloc_trim"):
            return None
        _libc = lib
    return _libc


def tune() -> bool:
    """Fix the mmap threshold and cap the arenas (call before threads start). True if applied."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_ARENA_MAX, ARENAS))


def trim() -> None:
    """Return free heap pages to the operating system (a few milliseconds at most)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
