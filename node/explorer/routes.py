"""The explorer's HTTP routes: HTML pages (one shell page; the script in static/ renders each view from the
node's JSON API), the explorer's own JSON (leaderboard with accuracies, miner wins and rewards, round phase
timeline), search, the SSE endpoint, and the friendly HTML 404 page.

Every page has a stable URL (``/block/<height-or-hash>``, ``/tx/<txid>``, ``/round/<r>``, ``/account/<addr>``,
``/miner/<addr>``, ``/leaderboard``, ``/peers``). Unknown ids are checked here, before the page is served, so a
bookmark to a missing object is a 404 with a readable page (never a traceback). Nothing here writes.
"""
from __future__ import annotations

import html
from pathlib import Path

from aiohttp import web

from chain.address import decode_address
from chain.errors import DecodeError
from node.events import events_handler
from node.explorer.deps import ExplorerDeps

STATIC = Path(__file__).parent / "static"
PAGES = ("/", "/leaderboard", "/peers")
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


def _hash(text: str) -> bytes | None:
    if len(text) != 64:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


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
        key: int | bytes | None = int(ref) if ref.isdigit() and len(ref) < 12 else _hash(ref)
        if key is None or not await self.deps.block_exists(key):
            return not_found_page(f"There is no block {ref} on this node.")
        return page()

    async def tx(self, request: web.Request) -> web.Response:
        text = request.match_info["txid"]
        txid = _hash(text)
        if txid is None or not await self.deps.tx_exists(txid):
            return not_found_page(f"No transfer {text} is pending or in the recent blocks of this node.")
        return page()

    async def round(self, request: web.Request) -> web.Response:
        text = request.match_info["r"]
        if not (text.isdigit() and len(text) < 12 and 0 < int(text) <= self.deps.n_rounds):
            return not_found_page(f"There is no round {text}: this chain has rounds 1 to {self.deps.n_rounds}.")
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
        """The page a search term names: height → block, 64 hex → block or transfer, pop1… → account."""
        if q.isdigit() and len(q) < 12:
            return f"/block/{int(q)}" if await self.deps.block_exists(int(q)) else None
        h = _hash(q.lower())
        if h is not None:
            if await self.deps.block_exists(h):
                return f"/block/{h.hex()}"
            if await self.deps.tx_exists(h):
                return f"/tx/{h.hex()}"
            return None
        if q.lower().startswith("pop1") and _address(q.lower()) is not None:
            return f"/account/{q.lower()}"
        return None

    async def search_json(self, request: web.Request) -> web.Response:
        q = request.query.get("q", "").strip()
        target = await self.resolve(q)
        if target is None:
            return web.json_response({"error": {"code": "not-found", "message": f"nothing matches {q!r}"}},
                                     status=404)
        return web.json_response({"query": q, "url": target})

    async def leaderboard(self, request: web.Request) -> web.Response:
        return web.json_response(await self.deps.leaderboard())

    async def miner(self, request: web.Request) -> web.Response:
        text = request.match_info["address"]
        account = _address(text)
        if account is None:
            return web.json_response({"error": {"code": "bad-request", "message": "not a pop1 address"}},
                                     status=400)
        return web.json_response(await self.deps.miner(account))

    async def timeline(self, request: web.Request) -> web.Response:
        text = request.match_info["r"]
        if not (text.isdigit() and len(text) < 12):
            return web.json_response({"error": {"code": "bad-request", "message": "round: a number"}}, status=400)
        phases = self.deps.publisher.timeline.get(int(text), {})
        return web.json_response({"round": int(text), "phases": [{"phase": p, "time_ms": t}
                                                               for p, t in sorted(phases.items(), key=lambda kv: kv[1])]})


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
    r.add_get("/account/{address}", ex.account)
    r.add_get("/miner/{address}", ex.account)
    r.add_get("/search", ex.search)
    r.add_get("/api/explorer/search", ex.search_json)
    r.add_get("/api/explorer/leaderboard", ex.leaderboard)
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
