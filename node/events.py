"""The node's event bus and ``GET /api/events`` (Server-Sent Events, docs/API.md "Events").

What it does: ``EventBus.publish(kind, data)`` stamps an event with the next id (1, 2, 3, … per node run) and
the node's wall clock, keeps the last ``RING`` events for ``Last-Event-ID`` resume, and hands it to every
subscriber's bounded queue. A subscriber whose queue is full is *dropped* (its stream ends with a ``dropped``
event and the client reconnects with ``Last-Event-ID``): a slow reader costs at most ``CLIENT_QUEUE`` events of
memory, never an unbounded buffer, and never slows the publisher. The stream slots are shared fairly: one IP
holds at most ``MAX_PER_IP`` of the ``MAX_SUBSCRIBERS``, and when all are taken a client from an IP holding
fewer takes the oldest stream of the IP holding the most (that stream ends with ``dropped``). ``StatePublisher`` turns the node's state into
events: it is poked by the node after a tip change or a round event (a callback, no node object), diffs what it
reads against what it last published and emits ``tip``, ``round`` (phase change), ``beacon``, ``verdict``
(crowned/void) and ``mempool`` events.

What it does not do: events are a notification channel, not consensus; a client that needs the truth re-reads
the JSON API (every event names what to re-read). Ids restart at 1 when the node restarts (``hello`` carries a
per-run ``stream`` id so a client can tell a resumed stream from a new one).
"""
from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import socket
import struct
import sys
import termios
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from consensus.engine import EngineApi
from node.limits import ban_key

log = logging.getLogger("popchain.events")

RING = 1024            # events kept for Last-Event-ID resume
CLIENT_QUEUE = 256     # events buffered per subscriber before it is dropped
MAX_SUBSCRIBERS = 64   # concurrent SSE clients per node ...
MAX_PER_IP = 8         # ... of which one IP (IPv6: /64) holds at most this many (503 beyond)
HEARTBEAT_S = 15.0     # an SSE comment line keeps proxies and idle clients from timing out
WRITE_TIMEOUT_S = 10.0  # a client that takes no bytes for this long is dropped (its socket buffer is full)
POLL_S = 1.0           # how often an idle stream checks that its client is still connected
DROP_GRACE_S = 1.0     # a dropped client's connection is aborted if its handler is still stuck in a write
KINDS = ("hello", "tip", "round", "beacon", "verdict", "mempool", "reset", "dropped")


async def _flushed(transport: asyncio.BaseTransport | None, within_s: float) -> bool:
    """Whether the client took every byte written to it (our buffer and the kernel's send queue) within
    ``within_s``. A dropped slow reader would otherwise hold its socket and megabytes of kernel buffer while
    the rest trickles out at its pace; one that is merely behind gets its ``dropped`` note before the close."""
    deadline = time.monotonic() + within_s
    while True:
        if transport is None or transport.is_closing():
            return True
        pending = transport.get_write_buffer_size() if isinstance(transport, asyncio.WriteTransport) else 0
        sock = transport.get_extra_info("socket")
        if pending == 0 and sock is not None:
            pending = _unsent_bytes(sock.fileno())
        if pending == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close with a reset: the kernel discards what the client has not taken (a plain close would still send
    it, megabytes at a slow reader's pace)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


def _unsent_bytes(fd: int) -> int:
    """Bytes the kernel still holds for the peer (Linux SIOCOUTQ); 0 where that cannot be asked."""
    try:
        buf = fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(buf, sys.byteorder)


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    time_ms: int
    data: dict[str, Any]

    def sse(self) -> bytes:
        body = json.dumps({"id": self.id, "kind": self.kind, "time_ms": self.time_ms, **self.data},
                          separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.kind}\ndata: {body}\n\n".encode()


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE))
    ip: str = "?"                             # node.limits.ban_key of the client
    since: float = field(default_factory=time.monotonic)
    dropped: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    abort: Callable[[], None] | None = None   # closes the client's connection (set by the handler)


async def _next(sub: Subscriber) -> Event | None:
    """The subscriber's next event, or None once it is dropped."""
    if not sub.queue.empty():
        return sub.queue.get_nowait()
    get = asyncio.ensure_future(sub.queue.get())
    wake = asyncio.ensure_future(sub.wake.wait())
    try:
        done, _ = await asyncio.wait({get, wake}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (get, wake):
            t.cancel()
    if get in done and not get.cancelled():
        return get.result()
    return None


class EventBus:
    """Bounded fan-out with resume. Lives on the node's event loop; ``publish`` never blocks or awaits."""

    def __init__(self, ring: int = RING, client_queue: int = CLIENT_QUEUE,
                 max_subscribers: int = MAX_SUBSCRIBERS, max_per_ip: int = MAX_PER_IP) -> None:
        self.ring: deque[Event] = deque(maxlen=ring)
        self.client_queue = client_queue
        self.max_subscribers = max_subscribers
        self.max_per_ip = max_per_ip
        self.subscribers: set[Subscriber] = set()
        self.last_id = 0
        self.dropped_total = 0
        self.stream = os.urandom(8).hex()
        self.closed = False

    def close(self) -> None:
        """The server is shutting down: end every stream now (aiohttp waits for open handlers otherwise)."""
        self.closed = True
        for sub in list(self.subscribers):
            sub.wake.set()

    def publish(self, kind: str, data: dict[str, Any]) -> Event:
        assert kind in KINDS, kind
        self.last_id += 1
        event = Event(self.last_id, kind, int(time.time() * 1000), data)
        self.ring.append(event)
        for sub in list(self.subscribers):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:  # a slow reader: drop it rather than buffer without limit
                self._drop(sub)
        return event

    def _drop(self, sub: Subscriber) -> None:
        sub.dropped = True
        sub.wake.set()
        self.subscribers.discard(sub)
        self.dropped_total += 1
        if sub.abort is not None:  # if the handler is blocked writing to a full socket, cut it off
            asyncio.get_running_loop().call_later(DROP_GRACE_S, sub.abort)

    def subscribe(self, last_id: int | None, ip: str = "?") -> tuple[Subscriber, list[Event], bool]:
        """A new subscriber from ``ip``, the ring events after ``last_id`` to replay, and whether a gap was lost
        (``last_id`` older than the ring, or from the future: ids of an earlier run of the node)."""
        if self.closed:
            raise web.HTTPServiceUnavailable(text="shutting down")
        held: dict[str, list[Subscriber]] = {}
        for sub in self.subscribers:
            held.setdefault(sub.ip, []).append(sub)
        mine = len(held.get(ip, ()))
        if mine >= self.max_per_ip:
            raise web.HTTPServiceUnavailable(text=f"too many event streams from your address ({mine})")
        if len(self.subscribers) >= self.max_subscribers:
            heaviest = max(held.values(), key=len)
            if len(heaviest) <= mine + 1:
                raise web.HTTPServiceUnavailable(text="too many event subscribers")
            self._drop(min(heaviest, key=lambda s: s.since))   # the crowded IP's oldest stream makes room
        sub = Subscriber(asyncio.Queue(self.client_queue), ip)
        self.subscribers.add(sub)
        if last_id is None:
            return sub, [], False
        oldest = self.ring[0].id if self.ring else self.last_id + 1
        gap = last_id > self.last_id or last_id < oldest - 1
        replay = [] if gap else [e for e in self.ring if e.id > last_id]
        return sub, replay, gap

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)


def _last_event_id(request: web.Request) -> int | None:
    text = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if text is None or text == "":
        return None
    if not text.isdigit() or len(text) > 18:
        raise web.HTTPBadRequest(text="Last-Event-ID: expected a decimal event id")
    return int(text)


def events_handler(bus: EventBus, snapshot: Callable[[], Awaitable[dict[str, Any]]]
                   ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``GET /api/events``: ``hello`` (the current state snapshot, id-less), then the replayed ring events after
    ``Last-Event-ID`` (or one ``reset`` event when they are gone), then live events. Optional ``?kinds=a,b``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        last_id = _last_event_id(request)
        kinds_text = request.query.get("kinds")
        kinds = set(kinds_text.split(",")) if kinds_text else None
        if kinds is not None and not kinds <= set(KINDS):
            raise web.HTTPBadRequest(text=f"kinds: choose among {','.join(KINDS)}")
        sub, replay, gap = bus.subscribe(last_id, ban_key(request.remote or "?"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        finished = False

        def abort() -> None:
            if not finished and request.transport is not None:
                _reset(request.transport)
        sub.abort = abort

        async def send(data: bytes) -> None:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await resp.write(data)
        try:
            await resp.prepare(request)
            state = await snapshot()
            hello = {"kind": "hello", "last_id": bus.last_id, "stream": bus.stream, **state}
            # retry: EventSource's reconnect delay; hello has no id so it does not move Last-Event-ID
            await send(f"retry: 1000\nevent: hello\ndata: {json.dumps(hello)}\n\n".encode())
            if gap:
                reset = Event(bus.last_id, "reset", int(time.time() * 1000),
                              {"reason": "events after Last-Event-ID are no longer kept: re-read the API"})
                await send(reset.sse())
            for event in replay:
                if kinds is None or event.kind in kinds:
                    await send(event.sse())
            idle = 0.0
            while not sub.dropped and not bus.closed:
                try:
                    async with asyncio.timeout(POLL_S):
                        live = await _next(sub)
                except TimeoutError:
                    # aiohttp does not cancel a handler whose client left: notice it here, not at the next write
                    if request.transport is None or request.transport.is_closing():
                        break
                    idle += POLL_S
                    if idle >= HEARTBEAT_S:
                        idle = 0.0
                        await send(b": keep-alive\n\n")
                    continue
                if live is not None and (kinds is None or live.kind in kinds):
                    await send(live.sse())
            if not sub.dropped:
                return resp
            note = {"kind": "dropped", "reason": "client too slow; reconnect with Last-Event-ID"}
            await send(f"event: dropped\ndata: {json.dumps(note)}\n\n".encode())
            if not await _flushed(request.transport, DROP_GRACE_S):
                abort()   # what it has not taken yet (kernel buffers: megabytes) is discarded, not trickled out
        except (ConnectionError, TimeoutError):
            if sub in bus.subscribers:  # a write stalled for WRITE_TIMEOUT_S: a slow reader too
                bus._drop(sub)
            abort()
        finally:
            finished = True
            bus.unsubscribe(sub)
        return resp

    return handler


@dataclass(frozen=True)
class ChainView:
    """What the publisher reads from the node in one engine hop (built by the node's reader callback)."""
    height: int
    tip: str
    round: int
    phase: str
    open_round: int
    beacon_rounds: frozenset[int]
    verdicts: tuple[tuple[int, str, str | None], ...]   # (round, crowned|void, winner block hash) closed rounds
    entry_deadline_ms: int | None
    opening_window_s: int


class StatePublisher:
    """Diffs the node's state against what was last published and emits the events (see module doc).

    ``read`` returns a ChainView (it runs the engine reads on the node's worker); ``mempool_size`` is a cheap
    synchronous count. ``request()`` after any tip change or round event (``watch()``, the publisher's task, then
    re-reads once per burst); ``watch()`` also re-checks the mempool every ``MEMPOOL_POLL_S`` (transfers arrive
    through several paths; a count read costs nothing)."""

    MEMPOOL_POLL_S = 0.25

    def __init__(self, bus: EventBus, read: Callable[[], Awaitable[ChainView]],
                 mempool_size: Callable[[], int], on_round_closed: Callable[[int, float], None] | None = None
                 ) -> None:
        self.bus = bus
        self.read = read
        self.mempool_size = mempool_size
        self.on_round_closed = on_round_closed
        self.view: ChainView | None = None
        self.mempool = -1
        self.timeline: dict[int, dict[str, int]] = {}   # round -> phase -> first time seen (unix ms)
        self._lock = asyncio.Lock()
        self._wanted = asyncio.Event()
        self._opened_at: dict[int, float] = {}

    def _mark(self, r: int, phase: str, now_ms: int) -> None:
        if r <= 0:
            return
        self.timeline.setdefault(r, {}).setdefault(phase, now_ms)
        while len(self.timeline) > RING:
            del self.timeline[min(self.timeline)]

    async def poke(self) -> None:
        async with self._lock:  # pokes from several tasks: one diff at a time, in order
            try:
                view = await self.read()
            except Exception:  # a read during shutdown; the next poke catches up
                log.debug("state read failed", exc_info=True)
                return
            self._diff(view)
            self.check_mempool()

    def _diff(self, view: ChainView) -> None:
        old = self.view
        self.view = view
        bus = self.bus
        now_ms = int(time.time() * 1000)
        if old is None:  # first read: the baseline (a client gets it in hello), no events
            self._mark(view.round, view.phase, now_ms)
            return
        if (view.height, view.tip) != (old.height, old.tip):
            bus.publish("tip", {"height": view.height, "tip": view.tip, "round": view.round})
        for r in sorted(view.beacon_rounds - old.beacon_rounds):
            self._mark(r, "revealed", now_ms)
            bus.publish("beacon", {"round": r})
        known = {v[0] for v in old.verdicts}
        for r, outcome, winner in view.verdicts:
            if r not in known:
                self._mark(r, outcome, now_ms)
                bus.publish("verdict", {"round": r, "outcome": outcome, "block": winner})
                started = self._opened_at.pop(r, None)
                if started is not None and self.on_round_closed is not None:
                    self.on_round_closed(r, time.monotonic() - started)
        if (view.round, view.phase, view.open_round) != (old.round, old.phase, old.open_round):
            self._mark(view.round, view.phase, now_ms)
            if view.phase == "open":
                self._opened_at.setdefault(view.round, time.monotonic())
            bus.publish("round", self.round_data(view))

    @staticmethod
    def round_data(view: ChainView) -> dict[str, Any]:
        return {"round": view.round, "phase": view.phase, "open_round": view.open_round,
                "entry_deadline_ms": view.entry_deadline_ms, "opening_window_s": view.opening_window_s}

    def check_mempool(self) -> None:
        size = self.mempool_size()
        if size != self.mempool:
            first = self.mempool < 0
            self.mempool = size
            if not first:
                self.bus.publish("mempool", {"size": size})

    def snapshot(self) -> dict[str, Any]:
        view = self.view
        base: dict[str, Any] = {"mempool": max(0, self.mempool), "now_ms": int(time.time() * 1000)}
        if view is not None:
            base.update(height=view.height, tip=view.tip, **self.round_data(view),
                        revealed_ms=self.timeline.get(view.round, {}).get("revealed"))
        return base

    def request(self) -> None:
        """Ask for a re-read soon (the node's hook after a tip change or a round event). Requests coalesce: a
        burst of blocks during sync costs one read, not one per block."""
        self._wanted.set()

    async def watch(self) -> None:
        """The publisher's task: a re-read per batch of requests, and the mempool count every MEMPOOL_POLL_S."""
        await self.poke()
        while True:
            try:
                async with asyncio.timeout(self.MEMPOOL_POLL_S):
                    await self._wanted.wait()
            except TimeoutError:
                self.check_mempool()
                continue
            self._wanted.clear()
            await self.poke()


VIEW_ROUNDS = 16   # rounds the event stream re-reads per state change (beacons, verdicts)


def read_chain_view(engine: EngineApi, opening_window_s: int) -> ChainView:
    """On the worker thread: what the event stream diffs (the last VIEW_ROUNDS rounds' beacons and verdicts)."""
    tip = engine.tip()
    r = engine.current_round()
    first = max(1, r - VIEW_ROUNDS)
    crowned = {x: rec.hash.hex() for x, rec in engine.crowned_rounds(first, r - 1).items()}
    phase = engine.round_info(r).status if r else "not-started"
    if phase == "idle":          # every task spent: the chain is closed (what /api/status and the CLI say)
        phase = "closed"
    notice = engine.notice(r) if r else None
    return ChainView(tip.height, tip.hash.hex(), r, phase, engine.open_round(),
                     frozenset(x for x in range(first, r + 1) if engine.beacon(x) is not None),
                     tuple((x, "crowned" if x in crowned else "void", crowned.get(x)) for x in range(first, r)),
                     notice.entry_deadline_ms if notice is not None and phase == "open" else None,
                     opening_window_s)
