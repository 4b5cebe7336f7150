"""Ed25519 keys and signatures (pynacl), domain-separated sha256 hashing and Merkle roots (PROTOCOL §1).

verify_many spreads signature checks over a thread pool: libsodium runs with the GIL released, so two
threads verify almost twice as fast as one on this machine.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import nacl.bindings
import nacl.signing

# Hot paths hash ~30,000 one- or two-block messages per 5000-tx block (account ids, Merkle leaves and nodes).
# For those, CPython's built-in SHA-256 is faster than OpenSSL's (0.45 vs 0.95 µs for one block here): copy()
# and digest() of an OpenSSL 3 EVP context cost more than the compression. From ~3 blocks on (txids,
# sighashes) OpenSSL's faster compression wins, and tagged_hash keeps it for arbitrary sizes (model bytes:
# MiBs, hashed with the GIL released). Same function, same digests (tests/test_chain_txfast.py checks).
try:
    from _sha256 import sha256 as _small_sha256  # CPython ≤ 3.11
except ImportError:  # pragma: no cover - depends on the interpreter
    try:
        from _sha2 import sha256 as _small_sha256  # CPython ≥ 3.12
    except ImportError:
        _small_sha256 = hashlib.sha256

_TAG_PREFIX: dict[tuple[str, bool], hashlib._Hash] = {}


def _tag_state(tag: str, short: bool = True) -> hashlib._Hash:
    """sha256 state with H(tag, …)'s 64-byte tag prefix absorbed, to copy(); ``short``: for messages of at
    most ~100 bytes (built-in SHA-256), else OpenSSL's."""
    state = _TAG_PREFIX.get((tag, short))
    if state is None:
        t = hashlib.sha256(tag.encode()).digest()
        state = (_small_sha256 if short else hashlib.sha256)(t + t)
        _TAG_PREFIX[(tag, short)] = state
    return state


def tagged_hash(tag: str, *parts: bytes) -> bytes:
    """H(tag, parts…) = sha256(sha256(tag) ‖ sha256(tag) ‖ for each part: u32be(len) ‖ part)."""
    h = _tag_state(tag, short=False).copy()
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


_LEAF = "popchain/merkle-leaf"
_NODE = "popchain/merkle-node"
EMPTY_ROOT = tagged_hash("popchain/merkle-empty")
_LEN32 = (32).to_bytes(4, "big")


def merkle_leaf(leaf: bytes) -> bytes:
    return tagged_hash(_LEAF, leaf)


def merkle_root_of_hashes(level: Sequence[bytes]) -> bytes:
    """Root over already-hashed leaves (each 32 B): node = H(node-tag, left, right); an odd node is promoted."""
    if not level:
        return EMPTY_ROOT
    node = _tag_state(_NODE)
    level = list(level)
    while len(level) > 1:
        nxt: list[bytes] = []
        append = nxt.append
        for i in range(0, len(level) - 1, 2):
            h = node.copy()
            h.update(_LEN32 + level[i] + _LEN32 + level[i + 1])
            append(h.digest())
        if len(level) % 2:
            append(level[-1])
        level = nxt
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Merkle root with leaf/node domain separation; the root of no leaves is H("popchain/merkle-empty")."""
    leaf = _tag_state(_LEAF)
    hashed = []
    for item in leaves:
        h = leaf.copy()
        h.update(len(item).to_bytes(4, "big"))
        h.update(item)
        hashed.append(h.digest())
    return merkle_root_of_hashes(hashed)


@dataclass(frozen=True)
class Keypair:
    """An Ed25519 key pair; ``seed`` is the 32-byte secret, ``public`` the 32-byte verify key."""

    seed: bytes = field(repr=False)
    public: bytes = b""

    def __post_init__(self) -> None:
        if type(self.seed) is not bytes or len(self.seed) != 32:
            raise ValueError("seed must be 32 bytes")
        signing = nacl.signing.SigningKey(self.seed)
        object.__setattr__(self, "_signing", signing)
        object.__setattr__(self, "public", bytes(signing.verify_key))

    @classmethod
    def generate(cls) -> Keypair:
        return cls(os.urandom(32))

    @classmethod
    def from_seed(cls, seed: bytes) -> Keypair:
        return cls(seed)

    def sign(self, msg: bytes) -> bytes:
        signing: nacl.signing.SigningKey = self.__dict__["_signing"]
        signature: bytes = signing.sign(msg).signature
        return signature


_crypto_sign_open = nacl.bindings.crypto_sign_open
try:  # pynacl's own cffi binding of libsodium: crypto_sign_open without the wrapper's per-call allocations
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _sodium
except ImportError:  # pragma: no cover - a pynacl without the private module: the public binding suffices
    _sodium = None
_SMALL_MSG = 448           # messages up to this size use the per-thread buffers (sighashes are 32 bytes)
_thread_bufs = threading.local()


def verify_sig(pubkey: bytes, msg: bytes, sig: bytes) -> bool:
    """True iff ``sig`` is a valid Ed25519 signature of ``msg`` by ``pubkey``; never raises on bad input."""
    if type(pubkey) is not bytes or len(pubkey) != 32 or type(sig) is not bytes or len(sig) != 64:
        return False
    if _sodium is not None and type(msg) is bytes and len(msg) <= _SMALL_MSG:
        # direct libsodium call with this thread's buffers: less GIL-held work per signature
        bufs = _thread_bufs.__dict__.get("bufs")
        if bufs is None:
            bufs = _thread_bufs.bufs = (_ffi.new("unsigned char[]", _SMALL_MSG + 64),
                                        _ffi.new("unsigned long long *"))
        signed = sig + msg
        return bool(_sodium.crypto_sign_open(bufs[0], bufs[1], signed, len(signed), pubkey) == 0)
    try:
        _crypto_sign_open(sig + msg, pubkey)
        return True
    except Exception:  # noqa: BLE001 -- any failure to verify is a bad signature
        return False


def sig_opener() -> Callable[[bytes, bytes, bytes], bool]:
    """A verify_sig for the hot loop of ONE thread: same answers, but it owns one output buffer and expects
    ``pubkey`` of 32 bytes, ``sig`` of 64 and ``msg`` of at most 448 bytes, all ``bytes`` (callers that have
    not checked that use verify_sig). Saves the per-call buffer lookup (~5% of a thread's GIL time)."""
    if _sodium is None:
        return verify_sig
    open_ = _sodium.crypto_sign_open
    out, out_len = _ffi.new("unsigned char[]", _SMALL_MSG + 64), _ffi.new("unsigned long long *")

    def opener(pubkey: bytes, msg: bytes, sig: bytes) -> bool:
        signed = sig + msg
        return bool(open_(out, out_len, signed, len(signed), pubkey) == 0)
    return opener


def _verify_chunk(items: Sequence[tuple[bytes, bytes, bytes]], offset: int = 0) -> list[bool]:
    """verify_sig over ``items``, the libsodium call made directly with one output buffer per chunk, so a pool
    thread holds the GIL for less time per signature."""
    opener = sig_opener()
    results: list[bool] = []
    append = results.append
    for pubkey, msg, sig in items:
        if (type(pubkey) is bytes and len(pubkey) == 32 and type(sig) is bytes and len(sig) == 64
                and type(msg) is bytes and len(msg) <= _SMALL_MSG):
            append(opener(pubkey, msg, sig))
        else:
            append(verify_sig(pubkey, msg, sig))  # odd input: the careful path decides
    return results


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
# While this thread does a block's ledger work (pure Python) the pool threads verify its signatures; each comes
# back from libsodium for the GIL once per signature (~60 µs). With CPython's default 5 ms switch interval a
# pool thread waits up to 5 ms for it, so the signature checks all but stop while the ledger work runs: the
# two ran one after the other, not side by side. A 0.5 ms interval while both run lets them overlap
# (block_connect_5000, issue 23); it is restored as soon as the last such section ends.
OVERLAP_SWITCH_INTERVAL_S = 0.0005
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.005


@contextmanager
def overlapped_gil() -> Iterator[None]:
    """A short GIL switch interval while a thread's Python work overlaps pool verification (nested and
    concurrent uses share it; the interval in force before the first is restored after the last)."""
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, OVERLAP_SWITCH_INTERVAL_S))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


VERIFY_THREADS = max(1, os.cpu_count() or 1)
_MIN_PARALLEL = 64  # below this, thread hand-off costs more than it saves
_BLOCK = 32  # items a pool thread takes at a time: small, so both threads finish within ~one signature batch


def default_executor() -> ThreadPoolExecutor:
    """The shared signature-verification pool (one thread per core)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=VERIFY_THREADS, thread_name_prefix="popchain-verify")
        return _pool


T = TypeVar("T")
R = TypeVar("R")


class ChunkWaiter(Generic[R]):
    """What ``submit_chunks`` returns: call it to wait for the results (in input order). ``futures`` are the
    pool tasks (empty when the work ran inline), for callers that wait without blocking a thread — an event loop
    awaits them (asyncio.wrap_future) and then calls the waiter, which no longer blocks."""

    __slots__ = ("_results", "futures")

    def __init__(self, results: list[R], futures: list[Future[None]]) -> None:
        self._results = results
        self.futures = futures

    def __call__(self) -> list[R]:
        for fut in self.futures:
            fut.result()
        return self._results


def submit_chunks(fn: Callable[[Sequence[T], int], list[R]], items: Sequence[T],
                  executor: Executor | None = None, limit: list[int] | None = None) -> ChunkWaiter[R]:
    """Start ``fn(part, offset)`` over ``items`` on the pool (inline below 64 items); ``fn`` returns one
    result per item of ``part``. Returns a ChunkWaiter: call it to wait and get all results in input order.

    One task per pool thread, each taking the next 32 items until none are left: the threads stay busy to
    the end whatever else slows one of them down (fixed big chunks left one core idle for a whole chunk).
    ``fn`` must release the GIL for most of its time (libsodium) or the pool gains nothing, and hold it
    only briefly between libsodium calls: a pool thread back from libsodium that finds the GIL taken sleeps,
    and waking it takes tens of µs on a VM — Python work mixed in costs more than it saves (measured).
    ``limit``: a one-item list the caller may lower while the pool works; items from ``limit[0]`` on that no
    thread has started yet are skipped (their results stay None). Never call this from a pool thread."""
    items = list(items)
    n = len(items)
    if n < _MIN_PARALLEL:
        return ChunkWaiter(fn(items, 0), [])
    ex = executor or default_executor()
    results: list[R] = [None] * n  # type: ignore[list-item]
    blocks = itertools.count()  # next() is atomic: each block goes to exactly one thread
    stop = limit if limit is not None else [n]

    def work() -> None:
        while True:
            start = next(blocks) * _BLOCK
            if start >= n or start >= stop[0]:
                return
            results[start:start + _BLOCK] = fn(items[start:start + _BLOCK], start)

    return ChunkWaiter(results, [ex.submit(work) for _ in range(min(VERIFY_THREADS, -(-n // _BLOCK)))])


def submit_verify_many(items: Sequence[tuple[bytes, bytes, bytes]], executor: Executor | None = None,
                       ) -> ChunkWaiter[bool]:
    """Start verifying in the pool; returns a callable that waits and yields list[bool] in input order."""
    return submit_chunks(_verify_chunk, items, executor)


def verify_many(items: Sequence[tuple[bytes, bytes, bytes]], executor: Executor | None = None) -> list[bool]:
    """Verify (pubkey, msg, sig) triples on a thread pool; results in input order."""
    return submit_verify_many(items, executor)()
