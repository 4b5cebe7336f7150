"""Shard blobs for tools that talk to a node's API (miners, ``popchain audit``, the scripted test miner).

A package of version 3 (PROTOCOL §3.15) lists blob references, not ciphertexts; before such a tool opens a
revealed shard it calls ``ensure_blobs``: every referenced blob not in the tool's cache directory is fetched from
the node (``GET /api/blobs/{id}``), checked against its reference and stored. The cache is registered with
ml.blobs once per process, so ``ml.shards.open_shard`` finds the bytes. Blobs are content-addressed, so one cache
may serve many chains and processes; it is ``$POPCHAIN_BLOB_CACHE`` or ``~/.cache/popchain/blobs``.

What it does NOT do: talk to peers (nodes do, node/blobs.py), or trust the node: bytes that do not match the
reference are refused with an error naming the blob.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol

from ml.blobs import BlobDir, BlobRef, blob_sources, check_blob, use_blob_sources
from ml.errors import ShardError
from ml.shards import PublicTask

__all__ = ["BlobClient", "cache_dir", "ensure_blobs"]


class BlobClient(Protocol):
    async def blob(self, blob_id: bytes) -> bytes: ...


def cache_dir() -> BlobDir:
    """This process's blob cache, registered with ml.blobs (after any source registered before)."""
    path = Path(os.environ.get("POPCHAIN_BLOB_CACHE") or Path.home() / ".cache" / "popchain" / "blobs")
    current = blob_sources()
    for source in current:
        if isinstance(source, BlobDir) and source.path == path:
            return source
    store = BlobDir(path)
    use_blob_sources([*current, store])
    return store


NODE_FETCH_WAIT_S = 60.0     # a node that was just started may still be fetching the blob from its peers


async def _from_node(client: BlobClient, ref: BlobRef) -> bytes:
    """The blob from the node; a 404 is retried for NODE_FETCH_WAIT_S (the node fetches ahead, §4.9)."""
    from node.tools.client import ApiCallError
    loop = asyncio.get_running_loop()
    deadline = loop.time() + NODE_FETCH_WAIT_S
    while True:
        try:
            return await client.blob(ref.id)
        except ApiCallError as exc:
            if exc.status != 404 or loop.time() > deadline:
                raise
        await asyncio.sleep(0.5)


async def ensure_blobs(client: BlobClient, public: PublicTask) -> PublicTask:
    """Fetch the package's blobs this process cannot find yet; returns the package with its public rows
    loaded (``PublicTask.hydrate``) — the package itself if it references no blob."""
    refs = public.blob_refs()
    if not refs:
        return public
    store = cache_dir()
    fetched = 0     # (for a debugger: how many came from the node)
    for ref in refs:
        if any(isinstance(s, BlobDir) and s.has(ref) for s in blob_sources()):
            continue                                  # (sizes only: open_shard checks the bytes when it reads them)
        data = await _from_node(client, ref)
        if not check_blob(ref, data):
            raise ShardError(f"the node sent {len(data)} bytes for blob {ref.hex_id[:16]} that do not match "
                             f"its reference ({ref.size} bytes)")
        await asyncio.to_thread(store.put, ref, data)
        fetched += 1
    return await asyncio.to_thread(public.hydrate)
