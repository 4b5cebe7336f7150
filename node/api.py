"""HTTP JSON API (docs/API.md): the application, its routes and its error handling, and the consensus-side
endpoints — status, rounds, entries, openings, committee leaks, peers, the genesis task, templates, task
messages and shard blobs.

Read endpoints are open; write endpoints need the datadir cookie when the API listens beyond 127.0.0.1
(``--api-listen``). Errors are ``{"error": {"code", "message"}}`` with an HTTP status. Engine calls go through
the node's worker thread. The API sees the node only through node.api_deps.ApiDeps (typed, narrow).
Does not: serve the ledger (blocks, transfers, accounts, mempool: node.api_ledger, lock-free store reads) or
the task pages (node.api_tasks); bounded bodies and hex fields are node.api_body's.
"""
from __future__ import annotations

import hmac
import logging
import time

from aiohttp import web

from chain.errors import DecodeError, PopError, RuleError
from consensus.protocol.messages import AnchorNotice, Beacon
from node.api_body import MAX_BODY, MAX_SMALL_BODY, hex_field, json_body
from node.api_deps import ApiDeps
from node.api_ledger import MAX_BATCH_TXS, LedgerHandlers
from node.api_rounds import dataclass_view, round_json
from node.api_tasks import (
    MAX_REVEALED,
    MAX_TASK_BODY,
    TaskHandlers,
    chain_phase,
    champion_json,
    round_task_of,
    status_fields,
    task_rows,
)
from node.engine_api import to_json
from node.errors import ApiError
from node.gossip import decode_object, object_id
from node.rounds_index import RoundIndex
from node.wire import InvKind

__all__ = ["MAX_BATCH_TXS", "Api", "build_api_app"]   # and _signed_both, which tests check directly

log = logging.getLogger("popchain.api")


def build_api_app(deps: ApiDeps) -> web.Application:
    """The API application over ``deps`` (node.api_deps.api_deps(node) for a running node)."""
    @web.middleware
    async def errors(request: web.Request, handler):
        try:
            cookie = deps.cookie()
            if request.method == "POST" and cookie is not None:
                _check_cookie(request, cookie)
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
    api = Api(deps)
    ledger = LedgerHandlers(deps)
    tasks = TaskHandlers(deps, api.rounds)
    r = app.router
    r.add_get("/api/status", api.status)
    r.add_get("/api/blocks/{ref}", ledger.block)
    r.add_get("/api/txs/{txid}", ledger.tx)
    r.add_post("/api/txs", ledger.post_tx)
    r.add_get("/api/accounts/{address}", ledger.account)
    r.add_get("/api/accounts/{address}/txs", ledger.account_txs)
    r.add_get("/api/mempool", ledger.mempool)
    r.add_get("/api/champion", tasks.champion)
    r.add_get("/api/models/{hash}", tasks.model)
    r.add_get("/api/rounds/current", api.round_current)
    r.add_get("/api/rounds/{r}", api.round)
    r.add_post("/api/entries", api.post_entry)
    r.add_post("/api/openings", api.post_opening)
    r.add_post("/api/committee/leak", api.post_leak)
    r.add_get("/api/peers", api.peers)
    r.add_get("/api/task", api.task)
    r.add_get("/api/tasks", tasks.tasks)
    r.add_get("/api/tasks/{id}", tasks.task_detail)
    r.add_get("/api/tasks/{id}/rounds", tasks.task_rounds)
    r.add_post("/api/tasks", api.post_task)
    r.add_get("/api/template", api.template)
    r.add_get("/api/genesis", api.genesis_file)
    r.add_get("/api/blobs/{id}", api.blob_file)
    r.add_post("/api/blobs", api.post_blob)
    return app


def _signed_both(a: bytes, b: bytes) -> list[str]:
    """Keyholder keys that signed both statements of an equivocation (with t > n/2 at least one: the culprits)."""
    def signers(raw: bytes) -> set[bytes]:
        for cls in (Beacon, AnchorNotice):
            try:
                return {pub for pub, _ in cls.decode(raw).signatures}
            except DecodeError:
                continue
        return set()
    return sorted(k.hex() for k in signers(a) & signers(b))

def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _check_cookie(request: web.Request, cookie: str) -> None:
    auth = request.headers.get("Authorization", "")
    expected = "Bearer " + cookie
    if not hmac.compare_digest(auth.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "write endpoints need 'Authorization: Bearer <cookie secret>'")


class Api:
    """The consensus-side request handlers (status, rounds, entries, openings, leaks, peers, the genesis task,
    templates, task messages, blobs). Engine calls go through ``deps.engine_call`` (the engine worker thread)."""

    def __init__(self, deps: ApiDeps) -> None:
        self.deps = deps
        self.rounds = deps.rounds if deps.rounds is not None else RoundIndex(deps.engine, deps.store)

    async def call(self, fn, *args):
        return await self.deps.engine_call(fn, *args)

    async def status(self, request: web.Request) -> web.Response:
        d = self.deps
        engine = d.engine

        def read():
            tip = engine.tip()
            r = engine.current_round()
            info = engine.round_info(r) if r else None
            return (tip, r, info, engine.open_round() or 0, engine.champion(), engine.equivocations(),
                    task_rows(engine), round_task_of(engine, r), engine.committee_evidence(), engine.ledger_round())
        tip, r, info, open_r, champ, equiv, rows, round_task, cevid, ledger_r = await self.call(read)
        facts = d.facts()
        phase = chain_phase(info.status if info else None, rows)
        out = {
            "chain_id": d.genesis.chain_id, "genesis": d.genesis.hash.hex(),
            "height": tip.height, "tip": tip.hash.hex(), "state_root": tip.state_root.hex(),
            "round": r, "round_phase": phase, "open_round": open_r if phase != "closed" else 0,
            # every task exhausted: the round open for plain blocks that confirm transfers (issue 21), or 0
            "ledger_round": ledger_r,
            "rounds_total": sum(t.shards_total for t in rows), "champion": champion_json(champ),
            **status_fields(rows, round_task),
            "peers": len(d.peers()), "mempool": len(d.mempool), "syncing": facts["syncing"],
            "prune": facts.get("prune"),
            "keyholder": facts["keyholder"], "p2p_port": facts["p2p_port"], "api_port": facts["api_port"],
            "equivocations": [{"round": rr, "kept": k.hex(), "refused": x.hex(), "signed_both": _signed_both(k, x)}
                              for rr, k, x in equiv],
            # keyholder-committee members caught signing two contents or dropping an entry (PROTOCOL §3.10)
            "committee_evidence": [{"round": ev.round, "signer": ev.signer.hex(), "what": ev.what,
                                    "first": ev.first.hex(), "second": ev.second.hex()} for ev in cevid],
            "committee": facts.get("committee"),
        }
        if d.health is not None:
            out["health"] = d.health()
        return web.json_response(out)

    async def _submit(self, kind: InvKind, raw: bytes) -> web.Response:
        ok, reason = await self.deps.submit(kind, raw)
        if not ok:
            status = 409 if reason == "orphan" else 422
            raise ApiError(status, reason.split(":")[0], f"{kind.name.lower()} rejected: {reason}")
        obj_id = object_id(kind, raw, decode_object(kind, raw))
        return web.json_response({"accepted": True, "id": obj_id.hex(), "status": reason})

    async def post_task(self, request: web.Request) -> web.Response:
        """A task announcement or extension ``{"message": hex}``: validated, stored and gossiped by the node.
        ``"secret"`` (hex ml SecretTask, keyholder nodes only): the batch's shard keys, kept before the message
        is submitted so that the keyholder can activate it at once."""
        body = await json_body(request, MAX_TASK_BODY)
        submit = self.deps.submit_task
        if submit is None:
            raise ApiError(501, "not-supported", "this node does not take task messages")
        raw = hex_field(body.get("message"), "message")
        secret = hex_field(body["secret"], "secret") if body.get("secret") is not None else None
        if secret is not None and not self.deps.facts()["keyholder"]:
            raise ApiError(409, "not-keyholder", "this node is not the keyholder: it takes no shard keys")
        ok, reason, obj_id = await submit(raw, secret)
        if not ok:
            status = 409 if reason.split(":")[0] in ("duplicate", "task-replay", "no-keyholder") else 422
            raise ApiError(status, reason.split(":")[0], f"task message rejected: {reason}")
        return web.json_response({"accepted": True, "id": obj_id, "status": reason})

    async def _round(self, r: int) -> dict:
        return await self.call(round_json, self.deps.engine, self.rounds, r)

    async def round(self, request: web.Request) -> web.Response:
        text = request.match_info["r"]
        if not text.isdigit() or len(text) > 10:
            raise ApiError(400, "bad-request", f"round: expected a round number or 'current', got {text[:40]!r}")
        # every genesis round has a (future) answer; tasks and extensions add rounds after those, up to the next
        last = max(self.deps.genesis.n_rounds, await self.call(self.deps.engine.current_round) + 1)
        if not 0 < int(text) <= last:
            raise ApiError(404, "not-found", f"no round {text} yet (rounds 1..{last} so far)")
        return web.json_response(await self._round(int(text)))

    async def round_current(self, request: web.Request) -> web.Response:
        r = await self.call(self.deps.engine.current_round)
        if r == 0:
            return web.json_response({"round": 0, "status": "not-started"})
        return web.json_response(await self._round(r))

    async def post_entry(self, request: web.Request) -> web.Response:
        body = await json_body(request, MAX_SMALL_BODY)
        return await self._submit(InvKind.ENTRY, hex_field(body.get("entry"), "entry"))

    async def post_opening(self, request: web.Request) -> web.Response:
        body = await json_body(request, MAX_BODY)
        return await self._submit(InvKind.BLOCK, hex_field(body.get("block"), "block"))

    async def post_leak(self, request: web.Request) -> web.Response:
        """A keyholder's share of a shard not yet revealed (consensus.protocol.release.Leak, hex): anyone who
        was handed one posts it here; if its proof holds it becomes evidence on every node (PROTOCOL §3.14)."""
        body = await json_body(request, MAX_SMALL_BODY)
        raw = hex_field(body.get("leak"), "leak")
        if self.deps.submit_leak is None:
            raise ApiError(404, "not-found", "this chain has no keyholder committee")
        try:
            evidence = await self.deps.submit_leak(raw)
        except RuleError as exc:
            raise ApiError(422, exc.code, f"leak refused: {exc.message}") from None
        return web.json_response({"accepted": True, "evidence": evidence})

    async def peers(self, request: web.Request) -> web.Response:
        d = self.deps
        now = time.time()
        return web.json_response({
            "peers": [{"address": p.key, "inbound": p.inbound, "height": p.best_height, "agent": p.agent,
                       "score": p.score, "rtt_ms": round(p.rtt_ms, 1) if p.rtt_ms is not None else None, "connected_s": round(now - p.connected_at, 1),
                       "bytes_in": p.bytes_in, "bytes_out": p.bytes_out} for p in d.peers()],
            "known": d.known_addrs(), "discouraged": d.discouraged()})

    async def task(self, request: web.Request) -> web.Response:
        """The public task package (training data + commitments) and the shard keys revealed so far."""
        engine = self.deps.engine
        g = self.deps.genesis

        def revealed():     # the newest MAX_REVEALED rounds (per-task pages: /api/tasks/{id})
            out = []
            current = engine.current_round()
            for r in range(max(1, current - MAX_REVEALED + 1), current + 1):
                b = engine.beacon(r)
                if b is not None:
                    out.append({"round": r, "shard_key": b.shard_key.hex(), "task_id": b.task_id,
                                "shard": b.shard_index})
            return out
        keys = await self.call(revealed)
        spec = g.task.spec
        return web.json_response({"name": spec.name, "n_features": spec.n_features, "classes": list(spec.classes),
                                  "rounds": g.n_rounds, "revealed": keys,
                                  "task": g.task.encode().hex() if request.query.get("package") else None})

    async def template(self, request: web.Request) -> web.Response:
        miner = hex_field(request.query.get("miner"), "miner", 32)
        d = self.deps
        txs = d.mempool.select(d.genesis.params.max_block_txs)
        tpl = await self.call(d.engine.build_template, miner, txs, int(time.time()))
        out = to_json(dataclass_view(tpl, drop=("txs",)))
        out["txs"] = [t.encode().hex() for t in tpl.txs]
        return web.json_response(out)

    async def genesis_file(self, request: web.Request) -> web.Response:
        return web.Response(body=self.deps.genesis.encode(), content_type="application/octet-stream")

    async def blob_file(self, request: web.Request) -> web.StreamResponse:
        """A shard blob this node holds (checked when stored), streamed from disk; the client checks it against
        the reference in the package (PROTOCOL §3.15) — tools (miners, audit) fetch blobs here."""
        blob_id = request.match_info["id"]
        if len(blob_id) != 64 or any(ch not in "0123456789abcdef" for ch in blob_id):
            raise ApiError(400, "bad-request", "a blob id is 64 lower-case hex digits")
        path = self.deps.blob_dir / blob_id if self.deps.blob_dir is not None else None
        if path is None or not path.is_file():
            raise ApiError(404, "not-found", f"this node has no blob {blob_id}")
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})

    async def post_blob(self, request: web.Request) -> web.Response:
        """A shard blob's raw bytes (a task sponsor's ``task announce`` uploads its announcement's blobs): kept
        only if genesis or a stored announcement references exactly these bytes (422 otherwise)."""
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise ApiError(413, "body-too-large", f"body is {request.content_length} bytes, limit {MAX_BODY}: "
                                                  "give larger blobs to the node with --blob-dir")
        offer = self.deps.offer_blob
        if offer is None:
            raise ApiError(501, "not-supported", "this node takes no blobs")
        ref = await offer(await request.read())
        if ref is None:
            raise ApiError(422, "unknown-blob", "no task of this chain references these bytes")
        return web.json_response({"accepted": True, "id": ref.hex_id, "size": ref.size})
