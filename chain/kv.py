"""The small key-value interface ChainStore needs: LevelKV (plyvel, the node's store) and MemoryKV (unit tests).

Writes go through ``write(changes, sync=...)``: one atomic batch where a value of None deletes the key.
Every LevelDB failure (plyvel.Error and its IOError / CorruptionError, or an OSError underneath) surfaces as a
StoreError with a one-line message, also from iterators, which LevelDB may fail lazily half-way.

A database is created only in a directory that holds nothing: LevelDB's ``create_if_missing`` on a directory
that lost its ``CURRENT`` file would start an empty database and delete the old tables as obsolete. Reads
verify LevelDB's block checksums and the database runs with paranoid checks, so a flipped bit in a table is a
StoreError, never a wrong value.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import plyvel

from chain.errors import StorageFault, StoreError


class KVReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def iterator(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...
    def before(self, prefix: bytes, stop: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` items with key in [prefix, stop), highest key first."""
        ...


_FAULTS = (plyvel.Error, OSError)


def _line(exc: BaseException) -> str:
    arg = exc.args[0] if len(exc.args) == 1 else None
    text = (arg.decode(errors="replace") if isinstance(arg, bytes) else str(exc)).strip()  # plyvel gives bytes
    return text.splitlines()[0] if text else type(exc).__name__


def _fault(exc: BaseException, what: str) -> StorageFault:
    return StorageFault(f"LevelDB {what} failed: {_line(exc)}")


def _guarded(items: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    try:
        yield from items
    except _FAULTS as exc:
        raise _fault(exc, "read") from None


def _before(it: Iterator[tuple[bytes, bytes]], limit: int) -> list[tuple[bytes, bytes]]:
    out = []
    try:
        for item in it:
            out.append(item)
            if len(out) >= limit:
                break
    except _FAULTS as exc:
        raise _fault(exc, "read") from None
    return out


class KV(KVReader, Protocol):
    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool) -> None: ...
    def snapshot(self) -> KVReader: ...
    def close(self) -> None: ...


class _LevelSnapshot:
    def __init__(self, snap: plyvel.Snapshot) -> None:
        self._snap = snap

    def get(self, key: bytes) -> bytes | None:
        try:
            value: bytes | None = self._snap.get(key, verify_checksums=True)
            return value
        except _FAULTS as exc:
            raise _fault(exc, "read") from None

    def iterator(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return _guarded(self._snap.iterator(prefix=prefix, verify_checksums=True))

    def before(self, prefix: bytes, stop: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        return _before(self._snap.iterator(start=prefix, stop=stop, reverse=True, verify_checksums=True), limit)


MAX_OPEN_FILES = 128   # LevelDB's table cache holds at most this many files open (its default 1000 would take
#                        every descriptor under `ulimit -n 1024`; node.gate keeps a reserve for it)


def _holds_files(path: Path) -> bool:
    try:
        return any(path.iterdir())
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot read the database directory {path}: {exc.strerror or exc}") from None


class LevelKV:
    """LevelDB through plyvel. Every ``write`` is one WriteBatch (synced when asked). A new database is created
    only where the directory is missing or empty; a directory with files must open as the database it holds."""

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        existing = _holds_files(path)
        if existing and not (path / "CURRENT").exists():
            raise StoreError(f"the LevelDB database in {path} lost its CURRENT file (its pointer to the table "
                             "manifest); it was not re-created: restore the datadir from a backup, or move "
                             f"{path.parent} away and let the node resync from its peers")
        try:
            self._db = plyvel.DB(str(path), create_if_missing=not existing, paranoid_checks=True,
                                 bloom_filter_bits=10, write_buffer_size=32 * 2**20, lru_cache_size=64 * 2**20,
                                 max_open_files=MAX_OPEN_FILES)
        except (plyvel.Error, OSError) as exc:
            raise StorageFault(f"cannot open LevelDB at {path}: {_line(exc)}") from None

    def get(self, key: bytes) -> bytes | None:
        try:
            value: bytes | None = self._db.get(key, verify_checksums=True)
            return value
        except _FAULTS as exc:
            raise _fault(exc, "read") from None

    def iterator(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return _guarded(self._db.iterator(prefix=prefix, verify_checksums=True))

    def before(self, prefix: bytes, stop: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        return _before(self._db.iterator(start=prefix, stop=stop, reverse=True, verify_checksums=True), limit)

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool) -> None:
        try:
            batch = self._db.write_batch(sync=sync)
            put, delete = batch.put, batch.delete
            for key, value in changes.items():
                if value is None:
                    delete(key)
                else:
                    put(key, value)
            batch.write()
        except _FAULTS as exc:
            raise _fault(exc, "write") from None

    def snapshot(self) -> KVReader:
        try:
            return _LevelSnapshot(self._db.snapshot())
        except _FAULTS as exc:
            raise _fault(exc, "snapshot") from None

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()


class _MemorySnapshot:
    def __init__(self, data: dict[bytes, bytes]) -> None:
        self._data = data

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def iterator(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter([(k, self._data[k]) for k in sorted(self._data) if k.startswith(prefix)])

    def before(self, prefix: bytes, stop: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        keys = sorted((k for k in self._data if prefix <= k < stop), reverse=True)[:limit]
        return [(k, self._data[k]) for k in keys]


class MemoryKV(_MemorySnapshot):
    """In-memory twin of LevelKV for unit tests of logic only; never the node's store."""

    def __init__(self) -> None:
        super().__init__({})
        self._lock = threading.Lock()

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool) -> None:
        with self._lock:
            data = dict(self._data)  # copy-on-write keeps snapshots and readers consistent
            for key, value in changes.items():
                if value is None:
                    data.pop(key, None)
                else:
                    data[key] = bytes(value)
            self._data = data

    def snapshot(self) -> KVReader:
        return _MemorySnapshot(self._data)

    def close(self) -> None:
        pass
