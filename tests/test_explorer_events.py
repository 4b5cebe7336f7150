"""The event bus and GET /api/events over real sockets: increasing ids, Last-Event-ID resume from the bounded
ring (and a reset event when the ring no longer has them), a slow reader dropped (never buffered without limit)
while a fast reader on the same bus keeps everything, the subscriber cap, and hostile Last-Event-ID values."""
from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from node import events as ev
from node.events import EventBus, events_handler
from node.tools.events_client import follow

pytestmark = pytest.mark.timeout(120)


class Server:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> "Server":
        async def snapshot() -> dict:
            return {"height": 0}
        app = web.Application()
        app.router.add_get("/api/events", events_handler(self.bus, snapshot))
        self.runner = web.AppRunner(app, handle_signals=False)
        app.on_shutdown.append(self._close)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def _close(self, app: web.Application) -> None:
        self.bus.close()

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def _take(url: str, n: int, **kw) -> list[dict]:
    out = []
    stream = follow(url, **kw)
    try:
        async for e in stream:
            out.append(e)
            if len(out) == n:
                break
    finally:
        await stream.aclose()
    return out


async def _until_subscribed(bus: EventBus, n: int) -> None:
    while len(bus.subscribers) < n:
        await asyncio.sleep(0.01)


def test_ids_increase_and_last_event_id_resumes_from_the_ring():
    async def scenario():
        bus = EventBus(ring=8)
        async with Server(bus) as srv:
            for h in range(1, 6):
                bus.publish("tip", {"height": h})
            # a fresh client gets hello (the snapshot, with the last id) and then live events only
            task = asyncio.create_task(_take(srv.url, 3))
            await _until_subscribed(bus, 1)
            bus.publish("tip", {"height": 6})
            bus.publish("round", {"round": 2, "phase": "open"})
            hello, a, b = await task
            assert hello["kind"] == "hello" and hello["last_id"] == 5 and hello["height"] == 0
            assert (a["id"], a["kind"], a["height"]) == (6, "tip", 6) and (b["id"], b["kind"]) == (7, "round")
            # resume after id 3: exactly 4, 5, 6, 7 replayed, in order, then live
            got = await _take(srv.url, 5, last_id=3)
            assert [e["id"] for e in got[1:]] == [4, 5, 6, 7]
            assert [e.get("height") for e in got[1:4]] == [4, 5, 6]
            # the ring keeps 8: after 20 more, id 3's successors are gone -> one reset event, no silent gap
            for h in range(20):
                bus.publish("mempool", {"size": h})
            got = await _take(srv.url, 2, last_id=3)
            assert got[1]["kind"] == "reset"
            # an id from the future (a restarted node's earlier stream) is a gap too
            got = await _take(srv.url, 2, last_id=10**6)
            assert got[1]["kind"] == "reset"
            # kinds filter (first let the earlier streams notice their clients left)
            while bus.subscribers:
                await asyncio.sleep(0.05)
            task = asyncio.create_task(_take(srv.url, 2, kinds=("verdict",)))
            await _until_subscribed(bus, 1)
            bus.publish("tip", {"height": 99})
            bus.publish("verdict", {"round": 2, "outcome": "void", "block": None})
            got = await task
            assert got[1]["kind"] == "verdict"
    asyncio.run(scenario())


def test_slow_reader_is_dropped_fast_reader_keeps_everything():
    async def scenario():
        bus = EventBus(ring=64, client_queue=16)
        pad = "x" * 8192  # big events fill the slow client's socket buffers quickly
        async with Server(bus) as srv:
            # the slow client: a raw socket that sends the request and never reads
            host, port = srv.url.removeprefix("http://").split(":")
            slow = socket.create_connection((host, int(port)))
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            await _until_subscribed(bus, 1)
            fast_events: list[int] = []
            total = 3000

            async def fast():
                async for e in follow(srv.url):
                    if e["kind"] == "tip":
                        fast_events.append(e["id"])
                        if len(fast_events) == total:
                            return
            fast_task = asyncio.create_task(fast())
            await _until_subscribed(bus, 2)
            for i in range(total):
                bus.publish("tip", {"height": i, "pad": pad})
                if i % 8 == 7:  # a burst of 8, then wait for the fast reader: it keeps up, the slow one never reads
                    while len(fast_events) < i + 1 and not fast_task.done():
                        await asyncio.sleep(0.001)
            await asyncio.wait_for(fast_task, 60)
            assert fast_events == sorted(fast_events) and len(set(fast_events)) == total
            assert bus.dropped_total == 1  # the slow one, and only it
            assert not any(sub.dropped for sub in bus.subscribers)  # the slow one is gone: nothing kept for it
            while bus.subscribers:  # the fast one's stream notices its client left (POLL_S)
                await asyncio.sleep(0.05)
            # the slow connection was cut: reading drains at most what the kernel held, then EOF/reset
            slow.settimeout(10)
            received = 0
            try:
                while chunk := slow.recv(65536):
                    received += len(chunk)
            except (ConnectionResetError, TimeoutError):
                pass
            slow.close()
            assert received < total * len(pad)  # it never got (or queued) the whole stream
    asyncio.run(scenario())


def test_subscriber_cap_and_bad_last_event_id():
    async def scenario():
        bus = EventBus(max_subscribers=2)
        async with Server(bus) as srv:
            async with aiohttp.ClientSession() as s:
                held = [await s.get(srv.url + "/api/events") for _ in range(2)]
                await _until_subscribed(bus, 2)
                async with s.get(srv.url + "/api/events") as resp:
                    assert resp.status == 503
                for r in held:
                    r.close()
                for bad in ("-1", "abc", "1" * 40, "1e5"):
                    async with s.get(srv.url + "/api/events", headers={"Last-Event-ID": bad}) as resp:
                        assert resp.status == 400, bad
                async with s.get(srv.url + "/api/events", params={"kinds": "tip,<script>"}) as resp:
                    assert resp.status == 400
    asyncio.run(scenario())


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 60), ring=st.integers(1, 16), last=st.one_of(st.none(), st.integers(0, 80)))
def test_replay_is_exactly_the_missed_events_or_a_declared_gap(n, ring, last):
    """For any history and any Last-Event-ID: the replay is every kept event after it, in order, or a gap is
    declared; never a silent hole."""
    async def scenario():
        bus = EventBus(ring=ring)
        for i in range(n):
            bus.publish("mempool", {"size": i})
        sub, replay, gap = bus.subscribe(last)
        ids = [e.id for e in replay]
        assert ids == sorted(ids)
        if last is None:
            assert replay == [] and not gap
        elif gap:
            assert replay == [] and (last > n or last < n - ring)
        else:
            assert ids == list(range(last + 1, n + 1))
        bus.unsubscribe(sub)
    asyncio.run(scenario())


def test_constants_bound_memory():
    assert ev.RING * 1 <= 4096 and ev.CLIENT_QUEUE <= ev.RING and ev.MAX_SUBSCRIBERS <= 256


def test_change_signal_wakes_on_events_and_falls_back_to_polling():
    from node.tools.events_client import ChangeSignal

    async def scenario():
        bus = EventBus()
        async with Server(bus) as srv:
            async with ChangeSignal(srv.url, kinds=("tip",)) as changes:
                await _until_subscribed(bus, 1)
                while not changes.live:
                    await asyncio.sleep(0.01)
                waiter = asyncio.create_task(changes.wait(3600))  # only an event can end this
                await asyncio.sleep(0.05)
                bus.publish("tip", {"height": 1})
                await asyncio.wait_for(waiter, 30)
                assert changes.interval(0.05) == 2.0  # events flow: polling becomes a slow safety net
            # a node without /api/events: the signal is never live, wait() is the plain polling interval
            async with aiohttp.ClientSession() as s:
                async with s.get(srv.url + "/nope") as resp:
                    assert resp.status == 404
        app = web.Application()
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            async with ChangeSignal(url) as changes:
                for _ in range(3):
                    await changes.wait(0.01)
                assert not changes.live and changes.interval(0.05) == 0.05
        finally:
            await runner.cleanup()
    asyncio.run(scenario())
