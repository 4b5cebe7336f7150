"""The keyholders' ceremony board (PROTOCOL §3.14): an untrusted relay where the n keyholders of a distributed key
generation post their signed messages and read each other's (``popchain keyholder dkg-board``).

HTTP JSON, three routes: ``GET /dkg/session`` (the session every member checks against what it was told out of
band: the member keys and the threshold), ``POST /dkg/messages {"msg": hex}`` (a consensus.protocol.dkg.DkgMsg
of the session, signed by its member; the first one per (phase, member) is kept, anything else is refused), and
``GET /dkg/messages?phase=P`` (every message of that phase). Whoever runs it learns nothing secret: shares
travel encrypted to their member, and every message is signed. It can withhold or delay (the ceremony then
fails and is run again), and it cannot make two members agree on different transcripts: each signs the
transcript hash, and the committee key needs every signature.

What it does NOT do: take part in the key generation, or keep anything after it stops.
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from aiohttp import web

from chain.errors import DecodeError
from consensus.protocol.dkg import MAX_DKG_MSG_SIZE, PHASES, SIGN, DkgMsg, Session

__all__ = ["Board", "serve_board"]

MAX_BODY = 2 * MAX_DKG_MSG_SIZE + 64


class Board:
    """One session's messages, bounded by n per phase."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.msgs: dict[tuple[int, int], bytes] = {}
        self.complete = asyncio.Event()

    def post(self, raw: bytes) -> bool:
        """Keep a valid message of the session (first per phase and member). True if new; DecodeError if it is
        not the session's or its member did not sign it."""
        msg = DkgMsg.decode(raw)
        msg.check(self.session)
        key = (msg.phase, msg.member)
        if key in self.msgs:
            return False
        self.msgs[key] = raw
        if sum(1 for p, _ in self.msgs if p == SIGN) == self.session.n:
            self.complete.set()
        return True

    def phase(self, phase: int) -> list[bytes]:
        return [raw for (p, _), raw in sorted(self.msgs.items()) if p == phase]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/dkg/session", self._session)
        app.router.add_post("/dkg/messages", self._post)
        app.router.add_get("/dkg/messages", self._get)
        return app

    async def _session(self, request: web.Request) -> web.Response:
        s = self.session
        return web.json_response({"session": s.encode().hex(), "id": s.id.hex(), "label": s.label,
                                  "threshold": s.threshold, "keyholders": [k.hex() for k in s.keyholders]})

    async def _post(self, request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
            raw = bytes.fromhex(body["msg"]) if isinstance(body, dict) and isinstance(body.get("msg"), str) else b""
            new = self.post(raw)
        except (ValueError, KeyError, DecodeError) as exc:
            return web.json_response({"error": {"code": "bad-dkg-msg", "message": str(exc)}}, status=400)
        return web.json_response({"accepted": True, "new": new})

    async def _get(self, request: web.Request) -> web.Response:
        text = request.query.get("phase", "")
        if not text.isdigit() or int(text) not in PHASES:
            return web.json_response({"error": {"code": "bad-request", "message": "phase: 1 to 4"}}, status=400)
        return web.json_response({"messages": [raw.hex() for raw in self.phase(int(text))]})


def new_session(keyholders: list[bytes], threshold: int, label: str) -> Session:
    """A fresh session (32 random bytes of nonce) over the sorted member keys."""
    return Session(label, tuple(sorted(set(keyholders))), threshold, os.urandom(32))


async def serve_board(session: Session, host: str, port: int, *, linger_s: float = 30.0,
                      ready: Callable[[str], None] | None = None) -> Board:
    """Serve ``session`` until every member posted its SIGN message, then ``linger_s`` more seconds (so the
    last members can read them), and stop. ``ready(url)`` is called once it listens."""
    board = Board(session)
    runner = web.AppRunner(board.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        server: Any = site._server
        sockets = server.sockets if server is not None else []
        bound = sockets[0].getsockname()[1] if sockets else port
        if ready is not None:
            ready(f"http://{host}:{bound}")
        await board.complete.wait()
        await asyncio.sleep(linger_s)
    finally:
        await runner.cleanup()
    return board
