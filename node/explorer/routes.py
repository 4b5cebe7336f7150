"""The explorer's HTTP routes: HTML pages (one shell page; the scripts in static/ render each view from the
node's JSON API), the explorer's own JSON (leaderboard with accuracies per task, the task list and each task's
competition page, miner records, round phase timeline), search, the SSE endpoint, and the friendly HTML 404 page.

Every page has a stable URL (``/block/<height, hash or prefix>``, ``/tx/<txid or prefix>``, ``/round/<r>``,
``/account/<addr>``, ``/miner/<addr>``, ``/leaderboard``, ``/tasks``, ``/task/<id>``, ``/peers``; ``?task=ID``
filters the leaderboard, miner and account pages; ``?static=1`` renders once without the event stream, for
headless screenshots). Unknown ids are checked here, before the page is served, so a bookmark to a missing
object is a 404 with a readable page (never a traceback). Nothing here writes.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import NoReturn

from aiohttp import web

from chain.address import decode_address
from chain.errors import DecodeError
from node.events import events_handler
from node.explorer.deps import ExplorerDeps

STATIC = Path(__file__).parent / "static"
PAGES = ("/", "/leaderboard", "/peers", "/tasks")
SECURITY_HEADERS = {
    # the pages run only our own script and talk only to this node; data is never interpreted as markup
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _shell(not_found: str | None = None) -> str:
    text = (STATIC / "index.html").read_text()
    if not_found is None:
        return text
    message = (f'<section class="notfound"><h1>Not found</h1><p>{html.escape(not_found)}</p>'
               '<p><a href="/">Back to the overview</a></p></section>')
    return text.replace('<main id="main"></main>', f'<main id="main" data-notfound="1">{message}</main>')


def page(status: int = 200, not_found: str | None = None) -> web.Response:
    return web.Response(text=_shell(not_found), status=status, content_type="text/html", charset="utf-8",
                        headers=SECURITY_HEADERS)


def not_found_page(what: str) -> web.Response:
    return page(404, what)


def _address(text: str) -> bytes | None:
    try:
        return decode_address(text)
    except (DecodeError, ValueError):
        return None


class Explorer:
    def __init__(self, deps: ExplorerDeps) -> None:
        self.deps = deps

    async def shell(self, request: web.Request) -> web.Response:
        return page()

    async def block(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        if ref.isdigit() and len(ref) < 11:
            if await self.deps.block_exists(int(ref)):
                return page()
            return not_found_page(f"There is no block {ref} on this node.")
        found, why = await self.deps.resolve("block", ref)
        if found is None or not await self.deps.block_exists(found):
            return not_found_page(why or f"There is no block {ref} on this node.")
        return page() if found.hex() == ref.lower() else _redirect(f"/block/{found.hex()}", request)

    async def tx(self, request: web.Request) -> web.Response:
        text = request.match_info["txid"]
        found, why = await self.deps.resolve("tx", text)
        if found is None or not await self.deps.tx_exists(found):
            return not_found_page(why or f"No transfer {text} is pending or confirmed on this node.")
        return page() if found.hex() == text.lower() else _redirect(f"/tx/{found.hex()}", request)

    async def round(self, request: web.Request) -> web.Response:
        text = request.match_info["r"]
        last = await self.deps.last_round()
        if not (text.isdigit() and len(text) < 12 and 0 < int(text) <= last):
            return not_found_page(f"There is no round {text} yet: this chain has rounds 1 to {last} so far.")
        return page()

    async def task(self, request: web.Request) -> web.Response:
        text = request.match_info["id"]
        if not (text.isdigit() and len(text) < 10 and await self.deps.task_exists(int(text))):
            return not_found_page(f"There is no task {text} on this chain (see the task list at /tasks).")
        return page()

    async def account(self, request: web.Request) -> web.Response:
        text = request.match_info["address"]
        if _address(text) is None:
            return not_found_page(f"{text} is not a popchain address (pop1…).")
        return page()

    async def search(self, request: web.Request) -> web.Response:
        q = request.query.get("q", "").strip()
        target = await self.resolve(q)
        if target is None:
            return not_found_page(f"Nothing matches “{q}”: try a height, a block hash, a txid or a pop1 address.")
        raise web.HTTPFound(target)

    async def resolve(self, q: str) -> str | None:
        """The page a search term names: height → block; 64 hex or a unique prefix (at least 4 hex digits) →
        block, transfer or the block that crowned a model; pop1… → account; "task N" → the task."""
        ql = q.lower()
        if q.isdigit() and len(q) < 12 and await self.deps.block_exists(int(q)):
            return f"/block/{int(q)}"
        if ql.startswith("task ") and ql[5:].strip().isdigit() and await self.deps.task_exists(int(ql[5:])):
            return f"/task/{int(ql[5:])}"
        if ql.startswith("pop1") and _address(ql) is not None:
            return f"/account/{ql}"
        for kind, path in (("block", "/block/"), ("tx", "/tx/")):
            found, _ = await self.deps.resolve(kind, ql)
            if found is not None and (await self.deps.block_exists(found) if kind == "block"
                                      else await self.deps.tx_exists(found)):
                return path + found.hex()
        return None

    async def search_json(self, request: web.Request) -> web.Response:
        q = request.query.get("q", "").strip()
        target = await self.resolve(q)
        if target is None:
            return web.json_response({"error": {"code": "not-found", "message": f"nothing matches {q!r}"}},
                                     status=404)
        return web.json_response({"query": q, "url": target})

    async def leaderboard(self, request: web.Request) -> web.Response:
        task = _task_query(request)
        if isinstance(task, web.Response):
            return task
        return web.json_response(await self.deps.leaderboard(task))

    async def tasks_json(self, request: web.Request) -> web.Response:
        return web.json_response(await self.deps.tasks())

    async def task_json(self, request: web.Request) -> web.Response:
        text, before = request.match_info["id"], request.query.get("before")
        if not (text.isdigit() and len(text) < 10) or (before is not None and not (before.isdigit()
                                                                                     and len(before) < 11)):
            return _json_error(400, "bad-request", "task: a task id; before: a round number")
        if not await self.deps.task_exists(int(text)):
            return _json_error(404, "unknown-task", f"no task {text} on this chain")
        return web.json_response(await self.deps.task_page(int(text), int(before) if before else None))

    async def miner(self, request: web.Request) -> web.Response:
        text = request.match_info["address"]
        account = _address(text)
        if account is None:
            return _json_error(400, "bad-request", "not a pop1 address")
        task = _task_query(request)
        if isinstance(task, web.Response):
            return task
        return web.json_response(await self.deps.miner(account, task))

    async def timeline(self, request: web.Request) -> web.Response:
        text = request.match_info["r"]
        if not (text.isdigit() and len(text) < 12):
            return web.json_response({"error": {"code": "bad-request", "message": "round: a number"}}, status=400)
        phases = self.deps.publisher.timeline.get(int(text), {})
        return web.json_response({"round": int(text), "phases": [{"phase": p, "time_ms": t}
                                                               for p, t in sorted(phases.items(), key=lambda kv: kv[1])]})


def _json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _task_query(request: web.Request) -> int | None | web.Response:
    text = request.query.get("task")
    if text is None or text == "":
        return None
    if not (text.isdigit() and len(text) < 10):
        return _json_error(400, "bad-request", f"task: expected a task id, got {text[:40]!r}")
    return int(text)


def _redirect(path: str, request: web.Request) -> NoReturn:
    """A prefix names one object: send the reader to its canonical URL (the query string kept)."""
    raise web.HTTPFound(path + (f"?{request.query_string}" if request.query_string else ""))


STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml",
                ".txt": "text/plain"}


async def static_file(request: web.Request) -> web.Response:
    """The package's static files, by name only (no paths: nothing outside static/ can be named)."""
    name = request.match_info["name"]
    path = STATIC / name
    ctype = STATIC_TYPES.get(path.suffix)
    if "/" in name or name.startswith(".") or ctype is None or not path.is_file():
        return not_found_page(f"This node has no file /static/{name}.")
    return web.Response(body=path.read_bytes(), content_type=ctype, charset="utf-8",
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


def _html_404_middleware():
    @web.middleware
    async def html_404(request: web.Request, handler):
        api = request.path.startswith("/api/") or request.path == "/metrics"
        try:
            resp: web.StreamResponse = await handler(request)
        except web.HTTPNotFound:
            if api:
                raise
            return not_found_page(f"This node has no page {request.path}.")
        return resp
    return html_404


def register(app: web.Application, deps: ExplorerDeps) -> None:
    """Add the explorer pages, its JSON, ``/api/events`` and the static files to the API application."""
    ex = Explorer(deps)
    r = app.router
    for path in PAGES:
        r.add_get(path, ex.shell)
    r.add_get("/block/{ref}", ex.block)
    r.add_get("/tx/{txid}", ex.tx)
    r.add_get("/round/{r}", ex.round)
    r.add_get("/task/{id}", ex.task)
    r.add_get("/account/{address}", ex.account)
    r.add_get("/miner/{address}", ex.account)
    r.add_get("/search", ex.search)
    r.add_get("/api/explorer/search", ex.search_json)
    r.add_get("/api/explorer/leaderboard", ex.leaderboard)
    r.add_get("/api/explorer/tasks", ex.tasks_json)
    r.add_get("/api/explorer/tasks/{id}", ex.task_json)
    r.add_get("/api/explorer/miners/{address}", ex.miner)
    r.add_get("/api/explorer/rounds/{r}/timeline", ex.timeline)
    r.add_get("/api/events", events_handler(deps.bus, _snapshot(deps)))
    r.add_get("/static/{name}", static_file)
    app.middlewares.append(_html_404_middleware())

    async def close_streams(app: web.Application) -> None:
        deps.bus.close()
    app.on_shutdown.append(close_streams)


def _snapshot(deps: ExplorerDeps):
    async def snapshot() -> dict:
        return deps.publisher.snapshot()
    return snapshot
