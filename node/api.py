"""HTTP JSON API (docs/API.md). Read endpoints are open; write endpoints need the datadir cookie when the API
listens beyond 127.0.0.1 (``--api-listen``). Errors are ``{"error": {"code", "message"}}`` with an HTTP status.
Every engine/store read goes through the node's worker thread.
"""
from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from aiohttp import web

from chain.address import address_of, decode_address, encode_address
from chain.errors import DecodeError, PopError
from node.engine_api import to_json
from node.errors import ApiError
from node.explorer import NodeExplorerDeps
from node.explorer import register as register_explorer
from node.gossip import decode_object, object_id
from node.wire import InvKind

log = logging.getLogger("popchain.api")

MAX_BODY = 16 * 2**20
WRITE_STATUS = {"accepted": 200, "tip-changed": 200, "duplicate": 200}


def _hex(value: Any, name: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise ApiError(400, "bad-request", f"{name}: expected a hex string")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise ApiError(400, "bad-request", f"{name}: not hex") from None
    if size is not None and len(data) != size:
        raise ApiError(400, "bad-request", f"{name}: expected {size} bytes")
    return data


def header_json(h) -> dict:
    out = to_json(h)
    out["hash"] = h.hash.hex()
    out["miner_address"] = encode_address(address_of(h.miner)) if any(h.miner) else None
    return out


def tx_json(tx) -> dict:
    out = to_json(tx)
    out.update(txid=tx.txid.hex(), from_address=encode_address(address_of(tx.sender)),
               to_address=encode_address(tx.recipient), raw=tx.encode().hex())
    return out


def champion_json(rec) -> dict:
    out = to_json(rec)
    if rec is not None and any(rec.miner):
        out["miner_address"] = encode_address(address_of(rec.miner))
    return out


def build_api_app(node) -> web.Application:
    @web.middleware
    async def errors(request: web.Request, handler):
        try:
            if request.method == "POST" and node.cookie is not None:
                _check_cookie(request, node.cookie)
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, exc.code, exc.message)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _error(exc.status, exc.reason.lower().replace(" ", "-"), exc.text or exc.reason)
            raise
        except (DecodeError, ValueError) as exc:
            return _error(400, "bad-request", str(exc))
        except PopError as exc:
            return _error(422, getattr(exc, "code", "rejected"), str(exc))
        except Exception as exc:  # never leak a traceback to a client; log it
            log.exception("API %s %s", request.method, request.path)
            return _error(500, "internal", f"{type(exc).__name__}")

    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    api = Api(node)
    r = app.router
    r.add_get("/api/status", api.status)
    r.add_get("/api/blocks/{ref}", api.block)
    r.add_get("/api/txs/{txid}", api.tx)
    r.add_post("/api/txs", api.post_tx)
    r.add_get("/api/accounts/{address}", api.account)
    r.add_get("/api/mempool", api.mempool)
    r.add_get("/api/champion", api.champion)
    r.add_get("/api/models/{hash}", api.model)
    r.add_get("/api/rounds/current", api.round_current)
    r.add_get("/api/rounds/{r}", api.round)
    r.add_post("/api/entries", api.post_entry)
    r.add_post("/api/openings", api.post_opening)
    r.add_get("/api/peers", api.peers)
    r.add_get("/api/task", api.task)
    r.add_get("/api/template", api.template)
    r.add_get("/api/genesis", api.genesis_file)
    register_explorer(app, NodeExplorerDeps(node))  # pages at /, /api/events, /api/explorer/* (node/explorer)
    return app


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _check_cookie(request: web.Request, cookie: str) -> None:
    auth = request.headers.get("Authorization", "")
    expected = "Bearer " + cookie
    if not hmac.compare_digest(auth.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "write endpoints need 'Authorization: Bearer <cookie secret>'")


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad-request", "body must be JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad-request", "body must be a JSON object")
    return body


class Api:
    def __init__(self, node) -> None:
        self.node = node

    async def call(self, fn, *args):
        return await self.node.worker.call(fn, *args)

    async def status(self, request: web.Request) -> web.Response:
        node = self.node
        engine = node.engine

        def read():
            tip = engine.tip()
            r = engine.current_round()
            info = engine.round_info(r) if r else None
            return tip, r, info, engine.open_round(), engine.champion(), engine.equivocations()
        tip, r, info, open_r, champ, equiv = await self.call(read)
        return web.json_response({
            "chain_id": node.genesis.chain_id, "genesis": node.genesis.hash.hex(),
            "height": tip.height, "tip": tip.hash.hex(), "state_root": tip.state_root.hex(),
            "round": r, "round_phase": info.status if info else "not-started", "open_round": open_r,
            "rounds_total": node.genesis.n_rounds, "champion": champion_json(champ),
            "peers": len(node.ready_peers()), "mempool": len(node.mempool), "syncing": len(node.sync.wanted),
            "keyholder": node.keyholder is not None, "p2p_port": node.p2p_port, "api_port": node.api_port,
            "equivocations": [{"round": rr, "kept": k.hex(), "refused": x.hex()} for rr, k, x in equiv],
        })

    async def block(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        store = self.node.store
        key: int | bytes = int(ref) if ref.isdigit() else _hex(ref, "hash", 32)
        block = await self.call(store.get_block, key)
        if block is None:
            raise ApiError(404, "not-found", f"no block {ref}")
        main = await self.call(store.is_main_chain, block.hash)
        return web.json_response({"header": header_json(block.header), "hash": block.hash.hex(),
                                  "txs": [tx_json(t) for t in block.txs], "model_hash": block.header.model_hash.hex(),
                                  "model_size": len(block.model), "payload_size": len(block.payload),
                                  "main_chain": main, "raw": request.query.get("raw") and block.encode().hex()})

    async def tx(self, request: web.Request) -> web.Response:
        txid = _hex(request.match_info["txid"], "txid", 32)
        pending = self.node.mempool.get(txid)
        if pending is not None:
            return web.json_response({"status": "pending", "tx": tx_json(pending)})
        store = self.node.store

        def find():  # recent blocks only: no tx index (the explorer reads blocks)
            tip = store.tip().height
            for height in range(tip, max(0, tip - 2000), -1):
                block = store.get_block(height)
                for tx in block.txs:
                    if tx.txid == txid:
                        return height, block.hash, tx
            return None
        found = await self.call(find)
        if found is None:
            raise ApiError(404, "not-found", "unknown tx (not pending, not in the last 2000 blocks)")
        height, block_hash, tx = found
        return web.json_response({"status": "confirmed", "height": height, "block": block_hash.hex(),
                                  "tx": tx_json(tx)})

    async def post_tx(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        raw = _hex(body.get("tx"), "tx")
        return await self._submit(InvKind.TX, raw)

    async def _submit(self, kind: InvKind, raw: bytes) -> web.Response:
        ok, reason = await self.node.relay.on_object(None, kind, raw)
        if not ok:
            status = 409 if reason == "orphan" else 422
            raise ApiError(status, reason.split(":")[0], f"{kind.name.lower()} rejected: {reason}")
        obj_id = object_id(kind, raw, decode_object(kind, raw))
        return web.json_response({"accepted": True, "id": obj_id.hex(), "status": reason})

    async def account(self, request: web.Request) -> web.Response:
        text = request.match_info["address"]
        account_id = decode_address(text) if text.startswith("pop1") else address_of(_hex(text, "pubkey", 32))
        acc = await self.call(self.node.store.get_account, account_id)
        pending = [tx_json(t) for t in self.node.mempool.txs() if address_of(t.sender) == account_id]
        next_nonce = acc.nonce + len(pending)
        return web.json_response({"address": encode_address(account_id), "balance": acc.balance,
                                  "nonce": acc.nonce, "next_nonce": next_nonce, "pending": pending})

    async def mempool(self, request: web.Request) -> web.Response:
        txs = self.node.mempool.select(len(self.node.mempool))
        return web.json_response({"size": len(txs), "txs": [tx_json(t) for t in txs[:1000]]})

    async def champion(self, request: web.Request) -> web.Response:
        engine = self.node.engine
        champ, history = await self.call(lambda: (engine.champion(), engine.champion_history()))
        return web.json_response({"champion": champion_json(champ), "history": [champion_json(r) for r in history]})

    async def model(self, request: web.Request) -> web.Response:
        h = _hex(request.match_info["hash"], "hash", 32)
        data = await self.call(self.node.store.get_model, h)
        if data is None:
            raise ApiError(404, "not-found", "unknown model hash")
        if request.query.get("format") == "hex":
            return web.json_response({"hash": h.hex(), "model": data.hex()})
        return web.Response(body=data, content_type="application/octet-stream")

    async def _round(self, r: int) -> dict:
        engine = self.node.engine

        def read():
            info = engine.round_info(r)
            cands = engine.candidates() if r == engine.current_round() else []
            return info, cands
        info, cands = await self.call(read)
        out = to_json(dataclass_view(info, drop=("notice", "beacon", "winner")))
        out["notice"] = info.notice.encode().hex() if info.notice else None
        out["beacon"] = info.beacon.encode().hex() if info.beacon else None
        out["entries"] = [e.hex() for e in info.beacon.entries] if info.beacon else []
        out["shard_key"] = info.beacon.shard_key.hex() if info.beacon else None
        out["verdict"] = champion_json(info.winner) if info.winner else None
        out["candidates"] = [{"hash": s.hash.hex(), "b": s.b, "c": s.c, "z_milli": s.z_milli} for s in cands]
        return out

    async def round(self, request: web.Request) -> web.Response:
        text = request.match_info["r"]
        if not text.isdigit() or not 0 < int(text) <= self.node.genesis.n_rounds:
            raise ApiError(404, "not-found", f"no round {text}")
        return web.json_response(await self._round(int(text)))

    async def round_current(self, request: web.Request) -> web.Response:
        r = await self.call(self.node.engine.current_round)
        if r == 0:
            return web.json_response({"round": 0, "status": "not-started"})
        return web.json_response(await self._round(r))

    async def post_entry(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        return await self._submit(InvKind.ENTRY, _hex(body.get("entry"), "entry"))

    async def post_opening(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        return await self._submit(InvKind.BLOCK, _hex(body.get("block"), "block"))

    async def peers(self, request: web.Request) -> web.Response:
        node = self.node
        now = time.time()
        return web.json_response({
            "peers": [{"address": p.key, "inbound": p.inbound, "height": p.best_height,
                       "agent": p.hello.agent if p.hello else None, "score": p.score,
                       "rtt_ms": p.rtt_ms, "connected_s": round(now - p.connected_at, 1),
                       "bytes_in": p.bytes_in, "bytes_out": p.bytes_out} for p in node.ready_peers()],
            "known": sorted(node.book.addrs), "discouraged": {k: v for k, v in node.book.bans.items() if v > now}})

    async def task(self, request: web.Request) -> web.Response:
        """The public task package (training data + commitments) and the shard keys revealed so far."""
        engine = self.node.engine
        g = self.node.genesis

        def revealed():
            out = []
            for r in range(1, engine.current_round() + 1):
                b = engine.beacon(r)
                if b is not None:
                    out.append({"round": r, "shard_key": b.shard_key.hex()})
            return out
        keys = await self.call(revealed)
        spec = g.task.spec
        return web.json_response({"name": spec.name, "n_features": spec.n_features, "classes": list(spec.classes),
                                  "rounds": g.n_rounds, "revealed": keys,
                                  "task": g.task.encode().hex() if request.query.get("package") else None})

    async def template(self, request: web.Request) -> web.Response:
        miner = _hex(request.query.get("miner"), "miner", 32)
        node = self.node
        txs = node.mempool.select(node.genesis.params.max_block_txs)
        tpl = await self.call(node.engine.build_template, miner, txs, int(time.time()))
        out = to_json(dataclass_view(tpl, drop=("txs",)))
        out["txs"] = [t.encode().hex() for t in tpl.txs]
        return web.json_response(out)

    async def genesis_file(self, request: web.Request) -> web.Response:
        return web.Response(body=self.node.genesis.encode(), content_type="application/octet-stream")


def dataclass_view(obj, drop: tuple[str, ...] = ()) -> dict:
    import dataclasses
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name not in drop}
