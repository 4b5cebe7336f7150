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

MAX_LINE = 64 * 1024
RECONNECT_S = 0.5
MAX_FAILURES = 3


class EventsUnavailable(Exception):
    """The node does not serve /api/events (or not reachably): fall back to polling."""


async def _read_stream(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    event, data, event_id = "message", [], None
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
