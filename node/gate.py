"""The accept gate *(policy)*: which TCP connections a listener keeps, before any HTTP is parsed (PROTOCOL §4.5).

Does: count the node's open file descriptors against its limit (``FdBudget``: the soft RLIMIT_NOFILE, raised
to the hard limit at start-up, less a reserve for LevelDB's table files, the logs, peers.json and outbound
dials), and give each listener a ``Gate`` that admits a new connection only while (a) that reserve stays free,
(b) the connection's IP holds fewer than its per-IP share and (c) the listener holds fewer than its total. When
(b) holds but (a) or (c) does not, the oldest *pending* connection (no websocket yet, no request in progress)
of the IP holding the most connections is cut to make room — so a socket flood (slowloris) from a few
addresses cannot keep the node's descriptors or slots, and a newcomer still gets in. A refused connection is
closed at once (its descriptor is free again before any byte is read).
Does not: parse HTTP, time requests out (aiohttp's keep-alive timeout does: node.node), or choose between
connected peers (inbound eviction: node.eviction).
"""
from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from node.limits import ban_key
from node.metrics import Metrics

log = logging.getLogger("popchain.node")

FD_WANT = 8192           # raise the soft descriptor limit up to this (or the hard limit, if lower)
FD_RESERVE = 192         # descriptors kept free for LevelDB (chain.kv.MAX_OPEN_FILES), logs, files and dials


def raise_fd_limit(want: int = FD_WANT) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``want`` (never above the hard limit); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else want


def count_open_fds() -> int | None:
    """Descriptors this process has open (Linux /proc), or None where that cannot be read."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


class FdBudget:
    """Open descriptors against the limit: measured (``refresh``, once a second from housekeeping) plus the
    connections the gates admitted or closed since."""

    def __init__(self, limit: int, reserve: int = FD_RESERVE) -> None:
        self.limit = limit
        self.reserve = min(reserve, limit // 4)
        self.measured = count_open_fds() or 0
        self.delta = 0

    def refresh(self) -> None:
        n = count_open_fds()
        if n is not None:
            self.measured, self.delta = n, 0

    @property
    def open(self) -> int:
        return self.measured + self.delta

    def room(self) -> int:
        """Descriptors a gate may still give to a new connection."""
        return self.limit - self.reserve - self.open


@dataclass(frozen=True)
class GateLimits:
    total: int      # connections this listener holds at once
    per_ip: int     # ... from one IP (an IPv6 /64: node.limits.ban_key)


class _Conn:
    """One admitted connection: its IP key, when it came, whether it is in use (an upgraded peer, a request)."""

    __slots__ = ("busy", "key", "since", "transport")

    def __init__(self, key: str, transport: asyncio.Transport) -> None:
        self.key = key
        self.since = time.monotonic()
        self.busy = False
        self.transport = transport


class _Gated(asyncio.Protocol):
    """Stands between the event loop's transport and aiohttp's protocol: decides on connection_made, then
    forwards every event to the real protocol, and tells the gate when the connection ends."""

    def __init__(self, gate: Gate, make: Callable[[], asyncio.Protocol]) -> None:
        self.gate = gate
        self.make = make
        self.inner: asyncio.Protocol | None = None
        self.conn: _Conn | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.conn = self.gate.admit(transport)
        if self.conn is None:
            transport.abort()
            return
        self.inner = self.make()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.gate.release(self.conn)
            self.conn = None
        if self.inner is not None:
            self.inner.connection_lost(exc)


class Gate:
    """One listener's admission (see the module doc). ``factory(make)`` wraps aiohttp's protocol factory."""

    def __init__(self, name: str, limits: GateLimits, fds: FdBudget, metrics: Metrics | None = None) -> None:
        self.name = name
        self.limits = limits
        self.fds = fds
        self.metrics = metrics
        self.conns: dict[asyncio.Transport, _Conn] = {}
        self.by_key: dict[str, int] = {}
        self.refused = 0
        self._logged: set[str] = set()

    def factory(self, make: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Gated(self, make)

    def __len__(self) -> int:
        return len(self.conns)

    def _refuse(self, reason: str) -> None:
        self.refused += 1
        if self.metrics is not None:
            self.metrics.inc("popchain_connections_refused_total", listener=self.name, reason=reason)
        if reason not in self._logged:   # once per reason per run: a flood must not flood the log too
            self._logged.add(reason)
            log.warning("%s listener refusing connections (%s): %d open, %d descriptors of %d in use",
                        self.name, reason, len(self.conns), self.fds.open, self.fds.limit)

    def admit(self, transport: asyncio.Transport) -> _Conn | None:
        peer: Any = transport.get_extra_info("peername")
        key = ban_key(str(peer[0])) if isinstance(peer, tuple) and peer else "?"
        mine = self.by_key.get(key, 0)
        if mine >= self.limits.per_ip:
            self._refuse("per-ip")
            return None
        crowded = len(self.conns) >= self.limits.total or self.fds.room() <= 0
        if crowded and not self._evict_pending(mine):
            self._refuse("full" if len(self.conns) >= self.limits.total else "fd-budget")
            return None
        conn = _Conn(key, transport)
        self.conns[transport] = conn
        self.by_key[key] = mine + 1
        self.fds.delta += 1
        return conn

    def _evict_pending(self, newcomer_holds: int) -> bool:
        """Cut the oldest idle connection of the IP holding the most (more than the newcomer's IP holds)."""
        if not self.by_key:
            return False
        heaviest = max(self.by_key, key=lambda k: self.by_key[k])
        if self.by_key[heaviest] <= newcomer_holds + 1:
            return False
        victims = [c for c in self.conns.values() if c.key == heaviest and not c.busy]
        if not victims:
            return False
        victim = min(victims, key=lambda c: c.since)
        self.release(victim)
        victim.transport.abort()
        if self.metrics is not None:
            self.metrics.inc("popchain_connections_evicted_total", listener=self.name)
        return True

    def release(self, conn: _Conn) -> None:
        if self.conns.pop(conn.transport, None) is None:
            return
        left = self.by_key.get(conn.key, 0) - 1
        if left > 0:
            self.by_key[conn.key] = left
        else:
            self.by_key.pop(conn.key, None)
        self.fds.delta -= 1

    def mark_busy(self, transport: asyncio.BaseTransport | None, busy: bool = True) -> None:
        """A connection became (or stopped being) in use: an upgraded peer, a long request. Busy ones are never
        cut to make room (connected peers are chosen between by node.eviction)."""
        conn = self.conns.get(transport) if isinstance(transport, asyncio.Transport) else None
        if conn is not None:
            conn.busy = busy


class GatedSite(web.BaseSite):
    """aiohttp's TCP site with the listener's Gate in front of the runner's protocol factory."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, gate: Gate, backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._gate = gate

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None, "runner.setup() first"
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._gate.factory(server), self._host, self._port,
                                                backlog=self._backlog, reuse_address=True)
