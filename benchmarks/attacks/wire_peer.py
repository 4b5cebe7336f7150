"""An attacker's connection to a node: the real wire protocol (node.wire framing, HELLO both ways as
node/peer.py does), from a source address of its own, with a callback for every frame the node sends.

It answers PINGs (a peer that does not is dropped after 20 s) and keeps the node's REJECT reason; everything
else goes to ``on_message``. It holds no attack logic: the attackers (racer, gateway, thief) decide what to
send. Nodes discourage by IP (PROTOCOL §4.5), so an attacker that misbehaves connects from a fresh loopback
address each time (``AddressPool``), the way a real one would use many addresses.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import os
from collections.abc import Awaitable, Callable, Iterator

import aiohttp

from node import wire
from node.errors import WireError

Handler = Callable[["WirePeer", wire.Message], Awaitable[None] | None]


class AddressPool:
    """Loopback source addresses handed out once each (``first``..``last`` inclusive, e.g. 127.0.2.1-127.0.7.254).
    On Linux every 127.0.0.0/8 address is local, so no setup is needed."""

    def __init__(self, first: str, last: str) -> None:
        lo, hi = int(ipaddress.IPv4Address(first)), int(ipaddress.IPv4Address(last))
        self._it: Iterator[int] = iter(range(lo, hi + 1))
        self.first, self.last = first, last

    def take(self) -> str:
        for n in self._it:
            if n & 0xFF not in (0, 255):
                return str(ipaddress.IPv4Address(n))
        raise RuntimeError(f"address pool {self.first}-{self.last} exhausted")

    @staticmethod
    def contains(first: str, last: str, host: str) -> bool:
        try:
            n = int(ipaddress.IPv4Address(host))
        except ValueError:
            return False
        return int(ipaddress.IPv4Address(first)) <= n <= int(ipaddress.IPv4Address(last))


class WirePeer:
    """One /p2p connection past the handshake. ``connect()`` → True when the node answered HELLO."""

    def __init__(self, host: str, port: int, chain_id: str, genesis_hash: bytes, *, source_ip: str,
                 on_message: Handler | None = None, agent: str = "attack/0.1", best_height: int = 0,
                 best_round: int = 0, listen_port: int = 0) -> None:
        self.host, self.port = host, port
        self.chain_id, self.genesis_hash = chain_id, genesis_hash
        self.source_ip = source_ip
        self.on_message = on_message
        self.agent, self.best_height, self.best_round, self.listen_port = agent, best_height, best_round, listen_port
        self.hello: wire.Hello | None = None
        self.reject_reason = ""
        self.error = ""
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<WirePeer {self.source_ip} -> {self.host}:{self.port}>"

    @property
    def open(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def connect(self, timeout: float = 10.0) -> bool:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(self.source_ip, 0)))
        try:
            async with asyncio.timeout(timeout):
                ws = await self._session.ws_connect(f"http://{self.host}:{self.port}/p2p", autoping=False,
                                                    max_msg_size=wire.MAX_FRAME, compress=0)
                hello = wire.Hello(wire.PROTOCOL_VERSION, self.chain_id, self.genesis_hash, self.best_height,
                                   self.best_round, "", self.listen_port, int.from_bytes(os.urandom(8), "big"),
                                   self.agent)
                await ws.send_bytes(wire.encode(hello))
                msg = await ws.receive()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"[:200]
            await self.close()
            return False
        except asyncio.CancelledError:
            await self.close()
            raise
        decoded = _decode(msg.data) if msg.type == aiohttp.WSMsgType.BINARY else None
        if not isinstance(decoded, wire.Hello):
            self.error = f"no HELLO: {decoded!r}"[:200]
            await ws.close()
            await self.close()
            return False
        self.hello, self._ws = decoded, ws
        self._reader = asyncio.create_task(self._read(ws))
        return True

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                decoded = _decode(msg.data)
                if isinstance(decoded, wire.Ping):
                    await self.send(wire.Pong(decoded.nonce))
                elif isinstance(decoded, wire.Reject):
                    self.reject_reason = decoded.reason
                elif decoded is not None and self.on_message is not None:
                    out = self.on_message(self, decoded)
                    if inspect.isawaitable(out):
                        await out
        except (aiohttp.ClientError, OSError, asyncio.CancelledError):
            pass

    async def send(self, msg: wire.Message | bytes) -> bool:
        """Send a message (or an already encoded frame). False if the connection is gone."""
        if self._ws is None or self._ws.closed:
            return False
        try:
            await self._ws.send_bytes(msg if isinstance(msg, bytes) else wire.encode(msg))
            return True
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            return False

    async def closed(self) -> None:
        """Wait until the node closes the connection."""
        if self._reader is not None:
            await asyncio.shield(self._reader)

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._session is not None:
            await self._session.close()
            self._session = None


def _decode(data: bytes) -> wire.Message | None:
    try:
        return wire.decode(data)
    except WireError:   # a frame we cannot read is not our problem: an attacker ignores it
        return None
