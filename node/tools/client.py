"""NodeClient: a small async client for the node's HTTP API (used by the CLI wallet, miners and the demo).

With ``retry_s > 0`` a call that cannot reach the node (refused, reset, server gone) is retried with exponential
backoff for up to that many seconds, so a miner or a waiting ``wallet send`` rides out a node restart;
``on_retry`` receives one status line when the node goes away and one when it is back. Re-sending a request
is safe: every write (tx, entry, opening) is idempotent at the node ("duplicate"). API errors are never retried.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from chain.errors import PopError
from node.datadir import read_cookie


class ApiCallError(PopError):
    """The API answered with an error body ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class NodeClient:
    def __init__(self, base_url: str, *, cookie: str | None = None, datadir: Path | None = None,
                 timeout_s: float = 60.0, retry_s: float = 0.0,
                 on_retry: Callable[[str], None] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry_s = retry_s
        self.on_retry = on_retry
        self._down_since: float | None = None
        if cookie is None and datadir is not None:
            raw = read_cookie(datadir)
            cookie = raw.split(":", 1)[1] if raw else None
        self.cookie = cookie
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def __aenter__(self) -> "NodeClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    async def _request(self, method: str, path: str, *, json_body: Any = None, params: dict | None = None,
                       raw: bool = False, raw_body: bytes | None = None) -> Any:
        delay = 0.25
        while True:
            try:
                result = await self._request_once(method, path, json_body=json_body, params=params, raw=raw,
                                                  raw_body=raw_body)
            except aiohttp.ClientConnectionError as exc:
                now = time.monotonic()
                if self._down_since is None:
                    self._down_since = now
                    if self.retry_s > 0 and self.on_retry:
                        self.on_retry(f"node {self.base_url} unreachable ({type(exc).__name__}); retrying for up "
                                      f"to {self.retry_s:.0f} s ...")
                if now - self._down_since >= self.retry_s:
                    raise
                await asyncio.sleep(min(delay, max(0.0, self._down_since + self.retry_s - now)))
                delay = min(delay * 2, 5.0)
                continue
            if self._down_since is not None:
                if self.retry_s > 0 and self.on_retry:
                    self.on_retry(f"node {self.base_url} is back after {time.monotonic() - self._down_since:.0f} s")
                self._down_since = None
            return result

    async def _request_once(self, method: str, path: str, *, json_body: Any, params: dict | None,
                            raw: bool, raw_body: bytes | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.cookie}"} if self.cookie and method == "POST" else {}
        if raw_body is not None:
            headers["Content-Type"] = "application/octet-stream"
        async with self._session.request(method, self.base_url + path, json=json_body, params=params,
                                         data=raw_body, headers=headers) as resp:
            if resp.status >= 400:
                try:
                    err = (await resp.json())["error"]
                    raise ApiCallError(resp.status, err["code"], err["message"])
                except (aiohttp.ContentTypeError, KeyError, TypeError, ValueError):
                    raise ApiCallError(resp.status, "http-error", await resp.text()) from None
            return await resp.read() if raw else await resp.json()

    async def get(self, path: str, **params: Any) -> Any:
        return await self._request("GET", path, params=params or None)

    async def status(self) -> dict:
        return await self.get("/api/status")

    async def block(self, ref: int | str) -> dict:
        return await self.get(f"/api/blocks/{ref}")

    async def tx(self, txid: str) -> dict:
        return await self.get(f"/api/txs/{txid}")

    async def account(self, address: str) -> dict:
        return await self.get(f"/api/accounts/{address}")

    async def account_txs(self, address: str, *, limit: int = 50, before: str | None = None) -> dict:
        """One page of an address's confirmed transfers: ``{"address", "txs": [...], "next": cursor|None}``."""
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        return await self.get(f"/api/accounts/{address}/txs", **params)

    async def mempool(self) -> dict:
        return await self.get("/api/mempool")

    async def champion(self, task: int | None = None) -> dict:
        """The tip's champion and the chain's lineage, or (``task``) that task's champion and lineage."""
        return await self.get("/api/champion", **({"task": str(task)} if task is not None else {}))

    async def model(self, model_hash: str) -> bytes:
        return await self._request("GET", f"/api/models/{model_hash}", raw=True)

    async def round(self, r: int | str = "current") -> dict:
        return await self.get(f"/api/rounds/{r}")

    async def peers(self) -> dict:
        return await self.get("/api/peers")

    async def task(self) -> dict:
        return await self.get("/api/task")

    async def tasks(self) -> dict:
        """``{"tasks": [task record, ...], "tasks_open": n}``."""
        return await self.get("/api/tasks")

    async def task_info(self, task_id: int, *, package: bool = False) -> dict:
        """One task: its record, champion history and revealed shard keys (``package``: its public package)."""
        return await self.get(f"/api/tasks/{task_id}", **({"package": "1"} if package else {}))

    async def post_task(self, message: bytes, *, secret: bytes | None = None) -> dict:
        """Submit a signed task announcement or extension (node gossips it; the next notice activates it).
        ``secret`` (the batch's ml SecretTask bytes) goes only to a keyholder node: it keeps the shard keys."""
        body = {"message": message.hex(), **({"secret": secret.hex()} if secret is not None else {})}
        return await self._request("POST", "/api/tasks", json_body=body)

    async def template(self, miner_pubkey: bytes) -> dict:
        return await self.get("/api/template", miner=miner_pubkey.hex())

    async def genesis(self) -> bytes:
        return await self._request("GET", "/api/genesis", raw=True)

    async def post_blob(self, data: bytes) -> dict[str, Any]:
        """Hand a shard blob to the node (kept only if one of its tasks references it)."""
        answer: dict[str, Any] = await self._request("POST", "/api/blobs", raw_body=data)
        return answer

    async def blob(self, blob_id: bytes) -> bytes:
        """A shard blob's bytes as the node sends them (unchecked: node.tools.blob_cache checks them)."""
        data: bytes = await self._request("GET", f"/api/blobs/{blob_id.hex()}", raw=True)
        return data

    async def send_tx(self, tx_bytes: bytes) -> dict:
        return await self._request("POST", "/api/txs", json_body={"tx": tx_bytes.hex()})

    async def send_txs(self, txs: list[bytes]) -> dict:
        """A batch (at most node.api.MAX_BATCH_TXS): ``{"results": [verdict per tx, in order], "accepted": n}``."""
        return await self._request("POST", "/api/txs", json_body={"txs": [t.hex() for t in txs]})

    async def send_entry(self, entry_bytes: bytes) -> dict:
        return await self._request("POST", "/api/entries", json_body={"entry": entry_bytes.hex()})

    async def post_leak(self, leak_bytes: bytes) -> dict[str, Any]:
        """Post a keyholder's share of a shard not yet revealed (consensus.protocol.release.Leak bytes): it
        becomes evidence of an early release on every node if its proof holds (PROTOCOL §3.14)."""
        out: dict[str, Any] = await self._request("POST", "/api/committee/leak", json_body={"leak": leak_bytes.hex()})
        return out

    async def send_opening(self, block_bytes: bytes) -> dict[str, Any]:
        out: dict[str, Any] = await self._request("POST", "/api/openings", json_body={"block": block_bytes.hex()})
        return out
