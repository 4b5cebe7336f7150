"""A client for the node's ``GET /api/events`` stream (Server-Sent Events, docs/API.md "Events").

``follow(base_url)`` yields each event as a dict (``kind``, ``id`` and the event's fields; ``hello`` first) and
reconnects with ``Last-Event-ID`` when the stream ends (a dropped slow reader, a restarted node); callers that
want polling as a fallback catch ``EventsUnavailable`` (the node has no event stream, or it keeps failing).
``wait_until(base_url, predicate)`` waits for the first event satisfying a predicate. Everything read is data:
a line longer than ``MAX_LINE`` or a non-JSON data field ends the connection.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from chain.errors import PopError

MAX_LINE = 64 * 1024
RECONNECT_S = 0.5
MAX_FAILURES = 3


class EventsUnavailable(PopError):
    """The node does not serve /api/events (or not reachably): fall back to polling."""


async def _read_stream(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    event, event_id = "message", None
    data: list[str] = []
    while True:
        line_bytes = await resp.content.readline()
        if not line_bytes:
            return
        if len(line_bytes) > MAX_LINE:
            raise EventsUnavailable("event line too long")
        line = line_bytes.decode("utf-8", "replace").rstrip("\r\n")
        if line == "":
            if data:
                try:
                    body = json.loads("\n".join(data))
                except ValueError:
                    raise EventsUnavailable("event data is not JSON") from None
                if isinstance(body, dict):
                    body.setdefault("kind", event)
                    if event_id is not None:
                        body.setdefault("id", event_id)
                    yield body
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id" and value.isdigit():
                event_id = int(value)


async def follow(base_url: str, *, kinds: tuple[str, ...] = (), session: aiohttp.ClientSession | None = None,
                 last_id: int | None = None) -> AsyncIterator[dict[str, Any]]:
    own = session is None
    s = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
    failures = 0
    try:
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = str(last_id)
            params = {"kinds": ",".join(kinds)} if kinds else None
            try:
                async with s.get(base_url.rstrip("/") + "/api/events", headers=headers, params=params) as resp:
                    if resp.status != 200 or not resp.content_type.startswith("text/event-stream"):
                        raise EventsUnavailable(f"HTTP {resp.status} from /api/events")
                    failures = 0
                    async for ev in _read_stream(resp):
                        if isinstance(ev.get("id"), int) and ev.get("kind") != "hello":
                            last_id = ev["id"]
                        yield ev
            except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError):
                failures += 1
                if failures >= MAX_FAILURES:
                    raise EventsUnavailable("cannot reach /api/events") from None
            await asyncio.sleep(RECONNECT_S)
    finally:
        if own:
            await s.close()


async def wait_until(base_url: str, predicate: Callable[[dict[str, Any]], bool], *,
                     kinds: tuple[str, ...] = ()) -> dict[str, Any]:
    """The first event (``hello`` included) for which ``predicate`` is true."""
    async for ev in follow(base_url, kinds=kinds):
        if predicate(ev):
            return ev
    raise EventsUnavailable("event stream ended")


class ChangeSignal:
    """Wakes a poll loop when the node publishes an event, so clients stop polling on a fixed short interval.

    ``async with ChangeSignal(url) as changes: ... await changes.wait(fallback_s)`` returns as soon as an event
    (of ``kinds``, any if empty) arrives, or after ``fallback_s`` — so the caller re-reads the API either way and
    a node without ``/api/events`` (or a broken stream) degrades to plain polling every ``fallback_s``.
    ``live`` tells whether the stream is up (callers pick a long fallback when it is, a short one otherwise)."""

    def __init__(self, base_url: str, kinds: tuple[str, ...] = ()) -> None:
        self.base_url = base_url
        self.kinds = kinds
        self.live = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "ChangeSignal":
        self._task = asyncio.create_task(self._follow(), name="events-follow")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _follow(self) -> None:
        try:
            async for ev in follow(self.base_url, kinds=self.kinds):
                self.live = True
                if ev.get("kind") != "hello":
                    self._changed.set()
        except EventsUnavailable:
            pass
        finally:
            self.live = False

    async def wait(self, fallback_s: float) -> None:
        try:
            async with asyncio.timeout(fallback_s):
                await self._changed.wait()
        except TimeoutError:
            pass
        self._changed.clear()

    def interval(self, polling_s: float, live_s: float = 2.0) -> float:
        """The fallback to pass to ``wait``: long while events flow, the old polling interval otherwise."""
        return live_s if self.live else polling_s
