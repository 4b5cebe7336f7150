"""The ledger's HTTP endpoints: blocks (by height, hash or prefix), transfers (looked up, or submitted one at a
time or as a batch of at most MAX_BATCH_TXS), accounts with their pending transfers and bond, an address's
confirmed history (paged, newest first) and the mempool; and the JSON views of headers, transfers and confirmed
locations they answer with.

Does: serve these from lock-free store reads on the default executor (never the engine worker: a lookup must not
queue in front of block validation) and the node's mempool and submission callbacks (node.api_deps.ApiDeps).
Does not: route requests, check the write cookie or turn errors into responses (node.api), or serve rounds,
tasks, models or blobs (node.api, node.api_tasks).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web

from chain.address import address_of, decode_address, encode_address
from chain.block import Header
from chain.errors import DecodeError
from chain.store_index import MAX_PAGE, RECEIVED, SENT, TxLocation, parse_cursor
from chain.tx import MAX_TX_SIZE, Transfer, txid_of_encoding
from consensus.protocol.settlement import bond_account
from node.api_body import MAX_TX_BODY, hex_field, json_body
from node.api_deps import ApiDeps, StoreReads
from node.api_lookup import resolve
from node.engine_api import to_json
from node.errors import ApiError
from node.gossip import decode_object, object_id
from node.wire import InvKind

_T = TypeVar("_T")

MAX_BATCH_TXS = 1000  # transfers per POST /api/txs batch


def header_json(h: Header) -> dict[str, Any]:
    out: dict[str, Any] = to_json(h)
    out["hash"] = h.hash.hex()
    out["miner_address"] = encode_address(address_of(h.miner)) if any(h.miner) else None
    return out


def tx_json(tx: Transfer) -> dict[str, Any]:
    out: dict[str, Any] = to_json(tx)
    out.update(txid=tx.txid.hex(), from_address=encode_address(address_of(tx.sender)),
               to_address=encode_address(tx.recipient), raw=tx.encode().hex())
    return out


def location_json(loc: TxLocation, timestamp: int | None = None, tip_height: int | None = None) -> dict[str, Any]:
    """A confirmed transfer: its block and position, the block's time (unix seconds) and its confirmations
    (1 = in the tip block)."""
    out: dict[str, Any] = {"height": loc.height, "block": loc.block_hash.hex(), "position": loc.position,
                           "tx": tx_json(loc.tx)}
    if timestamp is not None:
        out["time"] = timestamp
    if tip_height is not None:
        out["confirmations"] = tip_height - loc.height + 1
    return out


def _times(store: StoreReads, heights: Iterable[int]) -> tuple[dict[int, int], int]:
    """(height -> block timestamp, tip height) for a page of confirmed transfers (lock-free store reads)."""
    out = {}
    for h in set(heights):
        header = store.get_header(h)
        if header is not None:
            out[h] = header.timestamp
    return out, store.tip().height


_DIRECTIONS = {SENT: "sent", RECEIVED: "received", SENT | RECEIVED: "self"}


def _account_id(text: str) -> bytes:
    """An account id from a pop1 address or a 32-byte hex public key."""
    return decode_address(text) if text.startswith("pop1") else address_of(hex_field(text, "pubkey", 32))

def _is_height(text: str) -> bool:
    """A block reference of decimal digits only (at most 10) is a height; anything else a hash or its prefix."""
    return text.isdigit() and len(text) <= 10


def _txid(raw: bytes) -> bytes | None:
    try:
        return object_id(InvKind.TX, raw, decode_object(InvKind.TX, raw))
    except (DecodeError, ValueError):
        return None


def _verdict_error(obj_id: str | None, status: int, code: str, message: str) -> dict[str, Any]:
    """One refused item of a batch: what the single path would answer as an HTTP error, as a JSON value."""
    return {"accepted": False, "id": obj_id, "error": {"status": status, "code": code, "message": message}}

class LedgerHandlers:
    """The ledger's request handlers over ``deps``; every store read goes through ``read``."""

    def __init__(self, deps: ApiDeps) -> None:
        self.deps = deps

    async def read(self, fn: Callable[..., _T], *args: Any) -> _T:
        """A lock-free store read (indexes, blocks by hash) on the default executor, never the engine worker:
        an unauthenticated lookup must not queue in front of block validation."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def block(self, request: web.Request) -> web.Response:
        """A block by height (decimal digits), full hash or unique hash prefix (at least 4 hex digits;
        a prefix of decimal digits only is read as a height: give a longer one)."""
        ref = request.match_info["ref"]
        store = self.deps.store
        key: int | bytes = int(ref) if _is_height(ref) else await resolve(store, "block", ref, what="block hash")
        block = await self.read(store.get_block, key)
        if block is None:
            raise ApiError(404, "not-found", f"no block {ref}")
        main = await self.read(store.is_main_chain, block.hash)
        tip = await self.read(store.tip)
        return web.json_response({"header": header_json(block.header), "hash": block.hash.hex(),
                                  "txs": [tx_json(t) for t in block.txs], "model_hash": block.header.model_hash.hex(),
                                  "model_size": len(block.model), "payload_size": len(block.payload),
                                  # a pruned node keeps the model hash, not the bytes (GET /api/models/{hash}
                                  # fetches them from a peer)
                                  "model_pruned": not block.model,
                                  "main_chain": main, "confirmations": tip.height - block.header.height + 1
                                  if main else 0, "fees": sum(t.fee for t in block.txs),
                                  "raw": request.query.get("raw") and block.model and block.encode().hex()})

    async def tx(self, request: web.Request) -> web.Response:
        """A transfer by txid or unique prefix: pending (in the mempool) or confirmed, with its block's time
        and its confirmations."""
        mempool = self.deps.mempool
        txid = await resolve(self.deps.store, "tx", request.match_info["txid"], what="txid",
                             extra=lambda: [t.txid for t in mempool.txs()])
        pending = mempool.get(txid)
        if pending is not None:
            return web.json_response({"status": "pending", "tx": tx_json(pending), "confirmations": 0})
        loc = await self.read(self.deps.store.find_tx, txid)
        if loc is None:
            raise ApiError(404, "not-found", "unknown tx (neither pending nor confirmed on the main chain)")
        times, tip = await self.read(_times, self.deps.store, [loc.height])
        return web.json_response({"status": "confirmed", **location_json(loc, times.get(loc.height), tip)})

    async def account_txs(self, request: web.Request) -> web.Response:
        """An address's confirmed transfers, newest first: ``?limit=N`` (1..500, default 50) and
        ``?before=CURSOR`` (the ``next`` of the previous page, or a height)."""
        account_id = _account_id(request.match_info["address"])
        limit_text = request.query.get("limit", "50")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
            raise ApiError(400, "bad-request", f"limit: expected an integer 1..{MAX_PAGE}")
        before_text = request.query.get("before")
        before = parse_cursor(before_text) if before_text else None  # ValueError -> 400
        limit = int(limit_text)
        items = await self.read(self.deps.store.address_history, account_id, before, limit)
        times, tip = await self.read(_times, self.deps.store, [it.location.height for it in items])
        return web.json_response({
            "address": encode_address(account_id),
            "txs": [{**location_json(it.location, times.get(it.location.height), tip),
                     "direction": _DIRECTIONS[it.direction]} for it in items],
            "next": items[-1].cursor if len(items) == limit else None})

    async def post_tx(self, request: web.Request) -> web.Response:
        """One transfer ``{"tx": hex}`` or a batch ``{"txs": [hex, ...]}`` (at most MAX_BATCH_TXS): a batch is
        answered 200 with one verdict per tx, in order; a single tx goes through the same code and its verdict
        becomes the HTTP answer, so both paths answer the same codes by construction."""
        body = await json_body(request, MAX_TX_BODY)
        if "txs" not in body:
            [verdict] = await self._submit_txs([body.get("tx")], "tx")
            if not verdict["accepted"]:
                e = verdict["error"]
                raise ApiError(e["status"], e["code"], e["message"])
            return web.json_response(verdict)
        items = body["txs"]
        if "tx" in body or not isinstance(items, list) or not items:
            raise ApiError(400, "bad-request", "txs: expected a non-empty list of hex strings (and no 'tx')")
        if len(items) > MAX_BATCH_TXS:
            raise ApiError(413, "batch-too-large", f"{len(items)} txs in one batch, limit {MAX_BATCH_TXS}")
        results = await self._submit_txs(items, "txs")
        return web.json_response({"results": results, "accepted": sum(1 for r in results if r["accepted"])})

    async def _submit_txs(self, items: list[Any], name: str) -> list[dict[str, Any]]:
        """Verdicts for hex-encoded transfers, in order. A tx already confirmed on the main chain is answered
        ``already-confirmed`` (409), not "accepted, duplicate": it was not accepted anew."""
        results: list[dict[str, Any] | None] = [None] * len(items)
        raws: list[tuple[int, bytes]] = []
        for i, item in enumerate(items):
            try:
                raws.append((i, hex_field(item, name if len(items) == 1 and name == "tx" else f"{name}[{i}]")))
            except ApiError as exc:
                results[i] = _verdict_error(None, exc.status, exc.code, exc.message)
        verdicts = await self.deps.submit_txs([raw for _, raw in raws])
        recheck: list[tuple[int, bytes]] = []
        for (i, raw), (ok, reason) in zip(raws, verdicts, strict=True):
            # accepted => raw is a canonical encoding: hash it (no second decode on the batch's hot path)
            txid = txid_of_encoding(raw) if ok and len(raw) <= MAX_TX_SIZE else _txid(raw)
            if txid is not None and (not ok or reason == "duplicate") and txid not in self.deps.mempool:
                recheck.append((i, txid))
            hex_id = txid.hex() if txid is not None else None
            if ok:
                results[i] = {"accepted": True, "id": hex_id, "status": reason}
            else:
                results[i] = _verdict_error(hex_id, 422, reason.split(":")[0], f"tx rejected: {reason}")
        if recheck:
            store = self.deps.store
            found = await self.read(lambda: [(i, store.find_tx(t)) for i, t in recheck])
            for i, loc in found:
                if loc is not None:
                    v = _verdict_error(loc.txid.hex(), 409, "already-confirmed",
                                       f"tx already confirmed in block {loc.block_hash.hex()} at height {loc.height}")
                    results[i] = {**v, "status": "confirmed", "height": loc.height, "block": loc.block_hash.hex()}
        return [r for r in results if r is not None]

    async def account(self, request: web.Request) -> web.Response:
        account_id = _account_id(request.match_info["address"])
        acc = await self.read(self.deps.store.get_account, account_id)
        bond = await self.read(self.deps.store.get_account, bond_account(account_id))
        pending = [tx_json(t) for t in self.deps.mempool.txs() if address_of(t.sender) == account_id]
        next_nonce = acc.nonce + len(pending)
        return web.json_response({"address": encode_address(account_id), "balance": acc.balance,
                                  "nonce": acc.nonce, "next_nonce": next_nonce, "pending": pending,
                                  "bond": bond.balance, "bond_address": encode_address(bond_account(account_id))})

    async def mempool(self, request: web.Request) -> web.Response:
        txs = self.deps.mempool.select(len(self.deps.mempool))
        return web.json_response({"size": len(txs), "txs": [tx_json(t) for t in txs[:1000]]})
