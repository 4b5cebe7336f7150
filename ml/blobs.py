"""Content-addressed shard blobs (PROTOCOL §3.15): the reference genesis / a task announcement carries for a
hidden shard kept outside it, the check of fetched bytes against it, and where a process finds blob bytes.

A blob is one shard's ciphertext (ml.shards: 24-byte nonce ‖ SecretBox(salt ‖ S_r)), byte for byte. Its
*reference* is 40 bytes: ``blob_id ‖ u64be(size)`` with blob_id = H("popchain/blob", u64be(size), bytes). The
reference sits where the ciphertext sat in the package (package version 3), so the genesis hash commits to
every blob, and bytes from anywhere — a peer, a directory the owner copied, an HTTP mirror — are accepted only
if they hash to it (``check_blob``). Fetching bytes that match a reference is all a node can be asked to do:
the shard commitment (ml.shards.commitment) still binds the plaintext, so a wrong-but-matching blob cannot
exist short of a hash collision.

Where bytes come from: ``BlobDir`` (one file per blob, written atomically after the check) and a per-process
list of sources (``use_blob_sources``) that ``ml.shards`` asks when a shard is opened. A node registers its
datadir's blob directory (and the owner's ``--blob-dir``); a CLI tool registers the directory it was given.

What it does NOT do: fetch anything over a network (node/blobs.py does, over the peer protocol), decide which
blobs to keep (the node's policy), or decrypt (ml.shards).
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from .codec import tagged_hash
from .errors import ShardError

__all__ = ["BLOB_TAG", "MAX_BLOB_SIZE", "MIN_BLOB_SIZE", "REF_SIZE", "BlobDir", "BlobHasher", "BlobRef", "BlobSource",
           "BlobUnavailable", "add_blob_source", "blob_id", "blob_sources", "check_blob", "find_blob", "make_ref", "use_blob_sources"]

BLOB_TAG = "popchain/blob"
REF_SIZE = 40                     # blob_id (32) ‖ u64be size (8)
MIN_BLOB_SIZE = 1                 # the package decoder checks the real lower bound (a ciphertext's overhead)
MAX_BLOB_SIZE = 256 << 20         # = ml.shards.MAX_TASK_BYTES: no single shard is larger than a whole package


class BlobUnavailable(ShardError):
    """The shard's blob is not on this machine (yet): not a fault of the shard, fetch it and retry."""


def blob_id(data: bytes) -> bytes:
    """H("popchain/blob", u64be(len), data): the length is hashed so a reference names exactly one size."""
    return tagged_hash(BLOB_TAG, len(data).to_bytes(8, "big"), data)


class BlobHasher:
    """``blob_id`` of a blob of a known ``size`` fed in pieces (a blob arriving in chunks is hashed as it comes,
    never held whole): chain.crypto's H spelled out — sha256(sha256(tag) ‖ sha256(tag) ‖ u32be(8) ‖
    u64be(size) ‖ u32be(size) ‖ bytes). ``digest`` is None unless exactly ``size`` bytes came."""

    def __init__(self, size: int) -> None:
        tag = hashlib.sha256(BLOB_TAG.encode()).digest()
        self._h = hashlib.sha256(tag + tag)
        self._h.update((8).to_bytes(4, "big") + size.to_bytes(8, "big") + size.to_bytes(4, "big"))
        self.size = size
        self.seen = 0

    def update(self, piece: bytes) -> None:
        self.seen += len(piece)
        self._h.update(piece)

    def digest(self) -> bytes | None:
        return self._h.digest() if self.seen == self.size else None


class BlobRef(bytes):
    """A 40-byte blob reference ``id ‖ u64be(size)``. It is ``bytes`` so a package's ciphertext list can hold
    inline ciphertexts and references side by side (a task's extensions stay inline); ``isinstance`` tells."""

    @classmethod
    def parse(cls, raw: bytes, field: str = "blob") -> BlobRef:
        if type(raw) is not bytes and not isinstance(raw, BlobRef):
            raise ShardError(f"{field}: expected bytes")
        if len(raw) != REF_SIZE:
            raise ShardError(f"{field}: a blob reference is {REF_SIZE} bytes, got {len(raw)}")
        size = int.from_bytes(raw[32:], "big")
        if not MIN_BLOB_SIZE <= size <= MAX_BLOB_SIZE:
            raise ShardError(f"{field}: blob size {size} outside [{MIN_BLOB_SIZE}, {MAX_BLOB_SIZE}]")
        return cls(raw)

    @property
    def id(self) -> bytes:
        return bytes(self[:32])

    @property
    def size(self) -> int:
        return int.from_bytes(self[32:], "big")

    @property
    def hex_id(self) -> str:
        return self[:32].hex()


def make_ref(data: bytes) -> BlobRef:
    if not MIN_BLOB_SIZE <= len(data) <= MAX_BLOB_SIZE:
        raise ShardError(f"blob of {len(data)} bytes outside [{MIN_BLOB_SIZE}, {MAX_BLOB_SIZE}]")
    return BlobRef(blob_id(data) + len(data).to_bytes(8, "big"))


def check_blob(ref: BlobRef, data: bytes) -> bool:
    """True iff ``data`` is the blob ``ref`` names (size first: a wrong size costs no hashing)."""
    return len(data) == ref.size and blob_id(data) == ref.id


class BlobSource(Protocol):
    """Somewhere blob bytes may be found. ``get`` returns checked bytes or None (never unchecked bytes)."""

    def get(self, ref: BlobRef) -> bytes | None: ...


class BlobDir:
    """One file per blob, ``<dir>/<hex id>``, written to a temporary name, fsynced and renamed after the check:
    a crash leaves either the whole checked blob or nothing (a stray ``.part`` / ``.put`` file is ignored and
    overwritten). A file that no longer matches (disk corruption, a hand edit) is never returned."""

    def __init__(self, path: str | os.PathLike[str], *, writable: bool = True) -> None:
        self.path = Path(path)
        self.writable = writable

    def file(self, ref: BlobRef) -> Path:
        return self.path / ref.hex_id

    def has(self, ref: BlobRef) -> bool:
        try:
            return self.file(ref).stat().st_size == ref.size
        except OSError:
            return False

    def get(self, ref: BlobRef) -> bytes | None:
        try:
            data = self.file(ref).read_bytes()
        except OSError:
            return None
        return data if check_blob(ref, data) else None

    def read_range(self, ref: BlobRef, offset: int, length: int) -> bytes | None:
        """``length`` bytes from ``offset`` of a stored blob (serving a peer: no whole-file read)."""
        try:
            with open(self.file(ref), "rb") as f:
                f.seek(offset)
                return f.read(length)
        except OSError:
            return None

    def part_file(self, ref: BlobRef) -> Path:
        """Where a blob being fetched is assembled (``adopt`` moves it in once its hash was checked)."""
        self.path.mkdir(parents=True, exist_ok=True)
        return self.file(ref).with_name(ref.hex_id + ".part")

    def adopt(self, ref: BlobRef, part: Path) -> None:
        """Move an assembled ``part`` file, whose bytes the caller checked while they arrived, into place."""
        with open(part, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(part, self.file(ref))
        self._sync_dir()

    def put(self, ref: BlobRef, data: bytes) -> None:
        """Store checked bytes (ShardError if they are not the blob ``ref`` names)."""
        if not check_blob(ref, data):
            raise ShardError(f"blob {ref.hex_id[:16]}: bytes do not match the reference")
        if not self.writable:
            raise ShardError(f"blob directory {self.path} is read-only here")
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.file(ref)
        tmp = target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}.put")  # never a fetch's .part
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        self._sync_dir()

    def _sync_dir(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass

    def remove(self, ref: BlobRef) -> None:
        try:
            self.file(ref).unlink()
        except FileNotFoundError:
            pass


_lock = threading.Lock()
_sources: tuple[BlobSource, ...] = ()


def use_blob_sources(sources: Iterable[BlobSource]) -> None:
    """Where this process finds blobs (replaces the list; first match wins). A node calls it once at start."""
    global _sources
    with _lock:
        _sources = tuple(sources)


def add_blob_source(source: BlobSource) -> None:
    """Append a source (kept once). Nodes append, so several in-process test nodes never hide each other's."""
    global _sources
    with _lock:
        if source not in _sources:
            _sources = (*_sources, source)


def blob_sources() -> tuple[BlobSource, ...]:
    return _sources


def find_blob(ref: BlobRef) -> bytes:
    """The blob's checked bytes from the first source that has them; BlobUnavailable if none has."""
    for source in _sources:
        data = source.get(ref)
        if data is not None:
            return data
    raise BlobUnavailable(f"shard blob {ref.hex_id[:16]}… ({ref.size} bytes) is not available here: a node "
                          f"fetches it from its peers; a tool needs --blob-dir")
