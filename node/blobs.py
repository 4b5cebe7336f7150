"""Shard blobs over the peer protocol *(policy)* (PROTOCOL §4.9): serve the blobs this node holds, fetch the
ones its chain's tasks reference, check every byte against the reference before it is kept.

Fetching: one blob at a time, node-wide, from one peer at a time, in chunks of at most MAX_BLOB_CHUNK with at
most WINDOW chunk requests in flight — so the blob bytes any peer can make this node hold in memory are at most
WINDOW x MAX_BLOB_CHUNK (1 MiB) in total, whatever the number of peers. Chunks are hashed as they arrive
(ml.blobs.BlobHasher) and appended to ``<blobs>/<id>.part``, whose size is bounded by the reference (genesis
or an announcement fixed it, not the peer). A blob whose hash does not match is deleted, its peer scored
INVALID_OBJECT (a ban: serving bytes that contradict a committed hash is never an accident) and another peer
asked; a peer that says "not found" or is slow is simply skipped for that blob for a while.

Serving: a GETBLOB names the whole 40-byte reference; we answer from checked blobs only (those we fetched and
checked, or the owner's ``--blob-dir`` blobs, checked when imported at start-up). At most SERVE_PER_PEER
requests of one peer are being answered (beyond: dropped and scored as a flood), at most SERVE_TOTAL chunk
reads run at once for all peers, and an answer waits until the peer may be sent more (its send share).

Which blobs: every blob reference in genesis and in the task announcements this node stores (``wanted_refs``,
run on the engine worker), fetched as soon as it is known — long before its round reveals the key. Policy
(``--blob-keep``): ``all`` (default: an archive node, it serves syncing peers every shard) or ``unrevealed``: a
shard's blob is deleted, and no longer wanted, once its round is final on this node (``final_shard_refs``,
incremental from the last round it looked at: no scan from genesis after start-up). The public-rows blob is
always kept (miners need it).

What it does NOT do: decrypt or open shards (ml.shards does, from the blob directory registered with
ml.blobs), judge blocks, or decide anything consensus-relevant.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from chain.errors import PopError
from consensus.engine import EngineApi
from consensus.protocol.tasks import TaskAnnouncement
from ml.blobs import MAX_BLOB_SIZE, MIN_BLOB_SIZE, BlobDir, BlobHasher, BlobRef, add_blob_source, make_ref
from ml.errors import MLError
from ml.shards import PublicTask
from node import wire
from node.limits import FLOOD, INVALID_OBJECT, MALFORMED, UNSOLICITED
from node.metrics import Metrics
from node.peer import Peer

__all__ = ["CHUNK", "INFLIGHT_TOTAL", "SERVE_PER_PEER", "SERVE_TOTAL", "WINDOW", "BlobHost", "BlobService",
           "final_shard_refs", "import_owner_blobs", "start_blob_service", "wanted_refs"]

log = logging.getLogger("popchain.blobs")

CHUNK = wire.MAX_BLOB_CHUNK
WINDOW = 4                          # chunk requests in flight to the peer a blob is fetched from
INFLIGHT_TOTAL = WINDOW * CHUNK     # blob bytes peers can make this node hold in memory, all peers together
CHUNK_TIMEOUT_S = 15.0              # a chunk not answered by then: the peer is skipped for this blob
SERVE_PER_PEER = 4                  # GETBLOBs of one peer being answered at once (beyond: dropped, scored)
SERVE_TOTAL = 8                     # chunk reads in progress for all peers together
SCAN_S = 2.0                        # how often the wanted list is looked at while blobs are missing ...
IDLE_SCAN_S = 30.0                  # ... and when none is (a new task or peer wakes the loop at once)
MIN_RATE = 256 << 10                # bytes/s: a peer serving a blob slower than this (after the first
                                    # CHUNK_TIMEOUT_S) is given up for this blob, so a drip-feeder cannot hold it
SKIP_S = 30.0                       # a peer that failed a blob (slow, wrong size) is not asked for it this long
NOT_FOUND_SKIP_S = 3.0              # ... one that said "not found" (it may get it soon: a sponsor's upload)
MAX_SKIPS = 4096
NOT_FOUND = "peer does not have it"


class BlobHost(Protocol):
    metrics: Metrics

    def ready_peers(self) -> list[Peer]: ...
    async def wanted_blobs(self) -> list[BlobRef]: ...
    async def blob_arrived(self) -> None: ...       # blocks parked for want of a blob are judged again
    async def final_shards(self, after: int) -> tuple[list[BlobRef], int]: ...   # final_shard_refs on the worker


def wanted_refs(engine: EngineApi, cache: dict[bytes, tuple[BlobRef, ...]]) -> list[BlobRef]:
    """Every blob reference of genesis and of the stored task announcements (genesis first, in shard order).
    Runs on the engine worker; ``cache`` keeps each announcement's references (decoded once)."""
    refs = list(engine.genesis.task.blob_refs())
    for h in engine.task_message_ids():
        hit = cache.get(h)
        if hit is None:
            msg = engine.task_message(h)
            hit = ()
            if isinstance(msg, TaskAnnouncement):
                try:
                    hit = PublicTask.decode(msg.package).blob_refs()
                except MLError:
                    hit = ()
            cache[h] = hit
        refs += hit
    return list(dict.fromkeys(refs))


KEEP_ALL, KEEP_UNREVEALED = "all", "unrevealed"


def final_shard_refs(engine: EngineApi, after: int) -> tuple[list[BlobRef], int]:
    """(the shard blobs of rounds after … the final round, that round): what ``--blob-keep unrevealed`` may
    delete. Runs on the engine worker; the caller passes the returned round next time."""
    final = engine.final_header().round
    out = []
    for r in range(after + 1, final + 1):
        served = engine.round_task(r)
        if served is None:
            continue
        task_id, shard = served
        try:
            ct = engine.task_package(task_id).ciphertexts[shard - 1]
        except (PopError, IndexError):     # a task the engine cannot rebuild: nothing to prune
            continue
        if isinstance(ct, BlobRef):
            out.append(ct)
    return out, max(after, final)


def import_owner_blobs(store: BlobDir, owner: Sequence[Path], refs: Sequence[BlobRef]) -> int:
    """Copy the wanted blobs found in the owner's directories into the node's store, each checked against its
    reference (a wrong file is skipped with a warning). Returns how many were imported."""
    n = 0
    for ref in refs:
        if store.has(ref):
            continue
        for d in owner:
            data = BlobDir(d, writable=False).get(ref)
            if data is not None:
                store.put(ref, data)
                n += 1
                break
            if (Path(d) / ref.hex_id).exists():
                log.warning("blob %s in %s does not match its reference: ignored", ref.hex_id[:16], d)
    return n


async def start_blob_service(host: BlobHost, path: Path, owner_dir: Path | None,
                             keep: str = KEEP_ALL) -> BlobService:
    """The node's blob store at ``path`` (registered with ml.blobs: the engine opens shards from it), the owner's
    wanted blobs imported from ``owner_dir`` (``--blob-dir``), and the service that serves and fetches."""
    store = BlobDir(path)
    add_blob_source(store)
    owner = [owner_dir] if owner_dir is not None else []
    if owner:
        n = await asyncio.to_thread(import_owner_blobs, store, owner, await host.wanted_blobs())
        log.info("imported %d shard blobs from %s", n, owner_dir)
    return BlobService(host, store, owner, keep)


class BlobService:
    def __init__(self, host: BlobHost, store: BlobDir, owner: Sequence[Path] = (), keep: str = KEEP_ALL) -> None:
        self.host = host
        self.store = store
        self.keep = keep
        self.pruned: set[BlobRef] = set()     # --blob-keep unrevealed: deleted, never fetched again
        self._have: set[BlobRef] = set()      # known to be stored (a scan stats only the others)
        self._final_seen = 0
        self.owner = tuple(owner)         # the owner's --blob-dir: looked in before any peer is asked
        self._serving: dict[Peer, int] = {}
        self._reads = asyncio.Semaphore(SERVE_TOTAL)
        self._pending: dict[tuple[Peer, bytes, int], asyncio.Future[bytes]] = {}
        self._skip: dict[tuple[bytes, str], float] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.missing = 0
        self.fetched = 0

    def wake(self) -> None:
        """Something new may be wanted or a new peer may have it (a task message, a peer connected)."""
        self._wake.set()

    # ------------------------------------------------------------ wire

    async def handle(self, peer: Peer, msg: wire.GetBlob | wire.Blob) -> None:
        if isinstance(msg, wire.GetBlob):
            self._on_getblob(peer, msg)
        else:
            self._on_blob(peer, msg)

    def peer_gone(self, peer: Peer) -> None:
        self._serving.pop(peer, None)
        for key in [k for k in self._pending if k[0] is peer]:
            fut = self._pending.pop(key)
            if not fut.done():
                fut.set_result(b"")

    def _on_getblob(self, peer: Peer, msg: wire.GetBlob) -> None:
        try:
            ref = BlobRef.parse(msg.ref, "getblob.ref")
        except MLError as exc:
            peer.offend(MALFORMED, str(exc))
            return
        if msg.offset >= ref.size:
            peer.offend(MALFORMED, f"getblob: offset {msg.offset} beyond the blob's {ref.size} bytes")
            return
        busy = self._serving.get(peer, 0)
        if busy >= SERVE_PER_PEER:
            self.host.metrics.inc("popchain_blob_requests_dropped_total")
            peer.offend(FLOOD, f"more than {SERVE_PER_PEER} blob requests waiting for their answers")
            return
        self._serving[peer] = busy + 1
        task = asyncio.get_running_loop().create_task(self._answer(peer, ref, msg.offset, msg.length))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, peer: Peer, ref: BlobRef, offset: int, length: int) -> None:
        try:
            await peer.writable()               # its send share: a peer that does not read is not fed
            if peer.close_reason:
                return
            async with self._reads:
                data = (await asyncio.to_thread(self.store.read_range, ref, offset, length)
                        if self.store.has(ref) else None)
            peer.send(wire.Blob(ref.id, offset, data or b""))
            if data:
                self.host.metrics.inc("popchain_blob_bytes_served_total", len(data))
        finally:
            left = self._serving.get(peer, 1) - 1
            if left > 0:
                self._serving[peer] = left
            else:
                self._serving.pop(peer, None)

    def _on_blob(self, peer: Peer, msg: wire.Blob) -> None:
        fut = self._pending.pop((peer, msg.blob_id, msg.offset), None)
        if fut is None or fut.done():
            peer.offend(UNSOLICITED, "a blob chunk we did not ask for")
            return
        fut.set_result(msg.data)

    async def prune(self) -> int:
        """Delete the shard blobs whose rounds became final since the last call (``--blob-keep unrevealed``)."""
        done, self._final_seen = await self.host.final_shards(self._final_seen)
        for ref in done:
            self.pruned.add(ref)
            self._have.discard(ref)
            await asyncio.to_thread(self.store.remove, ref)
        if done:
            self.host.metrics.inc("popchain_blobs_pruned_total", len(done))
        return len(done)

    async def offer(self, data: bytes) -> BlobRef | None:
        """Bytes handed to this node (``POST /api/blobs``, by a task's sponsor): stored if they are a blob that
        genesis or a stored announcement references, else refused (None). Nothing unreferenced is kept."""
        if not MIN_BLOB_SIZE <= len(data) <= MAX_BLOB_SIZE:
            return None
        ref = make_ref(data)
        if ref not in set(await self.host.wanted_blobs()):
            return None
        if not self.store.has(ref):
            await asyncio.to_thread(self.store.put, ref, data)
            await self.host.blob_arrived()
        return ref

    # ------------------------------------------------------------ fetching

    async def run(self) -> None:
        """The fetch loop (a supervised service): whatever is wanted and missing, one blob at a time."""
        while True:
            if self.keep == KEEP_UNREVEALED:
                await self.prune()
            refs = [r for r in await self.host.wanted_blobs() if r not in self.pruned and r not in self._have]
            self._have.update(r for r in refs if self.store.has(r))
            missing = [r for r in refs if r not in self._have]
            if missing and self.owner:
                if await asyncio.to_thread(import_owner_blobs, self.store, self.owner, missing):
                    await self.host.blob_arrived()
                missing = [r for r in missing if not self.store.has(r)]
            self.missing = len(missing)
            for ref in missing:
                if await self.fetch(ref):
                    self._have.add(ref)
                    self.missing -= 1
            self._wake.clear()
            try:
                async with asyncio.timeout(SCAN_S if self.missing else IDLE_SCAN_S):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def fetch(self, ref: BlobRef) -> bool:
        """Fetch ``ref`` from the first peer that serves it correctly; True once it is stored."""
        now = time.monotonic()
        self._skip = {k: t for k, t in self._skip.items() if t > now}
        peers = [p for p in self.host.ready_peers() if (ref.id, p.key) not in self._skip]
        peers.sort(key=lambda p: (p.score, p.min_rtt_ms if p.min_rtt_ms is not None else 1e9))
        for peer in peers:
            outcome = await self._fetch_from(peer, ref)
            if outcome == "ok":
                self.fetched += 1
                self.host.metrics.inc("popchain_blobs_fetched_total")
                log.info("blob %s (%d bytes) fetched from %s and checked", ref.hex_id[:16], ref.size, peer.key)
                await self.host.blob_arrived()
                return True
            if len(self._skip) < MAX_SKIPS:
                wait = NOT_FOUND_SKIP_S if outcome == NOT_FOUND else SKIP_S
                self._skip[(ref.id, peer.key)] = time.monotonic() + wait
            log.info("blob %s not fetched from %s: %s", ref.hex_id[:16], peer.key, outcome)
        return False

    async def _fetch_from(self, peer: Peer, ref: BlobRef) -> str:
        part = self.store.part_file(ref)
        hasher = BlobHasher(ref.size)
        inflight: deque[tuple[int, int, asyncio.Future[bytes]]] = deque()
        f = await asyncio.to_thread(part.open, "wb")
        refused = ""
        try:
            async with asyncio.timeout(CHUNK_TIMEOUT_S + ref.size / MIN_RATE):
                await self._receive(peer, ref, f, hasher, inflight)
        except TimeoutError:
            refused = "too slow"
        except _Refused as why:
            refused = str(why)
        finally:
            f.close()
            for _, _, fut in inflight:
                fut.cancel()
            for key in [k for k in self._pending if k[0] is peer and k[1] == ref.id]:
                self._pending.pop(key, None)
            if refused or hasher.digest() != ref.id:    # (a cancelled fetch leaves no part file either)
                part.unlink(missing_ok=True)
        if refused:
            return refused
        if hasher.digest() != ref.id:
            self.host.metrics.inc("popchain_blobs_refused_total")
            peer.offend(INVALID_OBJECT, f"blob {ref.hex_id[:16]} does not match its committed hash")
            return "bytes do not match the reference (peer scored)"
        await asyncio.to_thread(self.store.adopt, ref, part)
        return "ok"

    async def _receive(self, peer: Peer, ref: BlobRef, f: BinaryIO, hasher: BlobHasher,
                       inflight: deque[tuple[int, int, asyncio.Future[bytes]]]) -> None:
        """Ask ``peer`` for the blob's ranges (WINDOW at a time) and append each answer in order, hashing it.
        Raises _Refused (with the reason) when the peer times out, has no such blob or sends a wrong size."""
        loop = asyncio.get_running_loop()
        next_offset = 0
        while next_offset < ref.size or inflight:
            while next_offset < ref.size and len(inflight) < WINDOW:
                length = min(CHUNK, ref.size - next_offset)
                fut: asyncio.Future[bytes] = loop.create_future()
                self._pending[(peer, ref.id, next_offset)] = fut
                peer.send(wire.GetBlob(bytes(ref), next_offset, length))
                inflight.append((next_offset, length, fut))
                next_offset += length
            _, length, fut = inflight.popleft()
            try:
                async with asyncio.timeout(CHUNK_TIMEOUT_S):
                    data = await fut
            except TimeoutError:
                raise _Refused("timed out") from None
            if not data:
                raise _Refused(NOT_FOUND)
            if len(data) != length:
                peer.offend(INVALID_OBJECT, f"blob chunk of {len(data)} bytes, asked for {length}")
                raise _Refused("wrong chunk size")
            hasher.update(data)
            await asyncio.to_thread(f.write, data)


class _Refused(PopError):
    """This peer will not give us this blob now (its reason is the message); never leaves this module."""
