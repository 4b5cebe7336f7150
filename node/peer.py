"""One peer connection *(policy)*: handshake, a reader, a writer and a pinger under one TaskGroup.

A Peer knows nothing of consensus: it decodes frames (node.wire), enforces flood limits and timeouts, and hands
every message to ``handler(peer, msg)`` (the node). Violations are reported to ``on_offence``; a score of
BAN_SCORE or more closes the connection. No exception escapes ``run``.

Its tables are its share of the node's global budgets (node.budgets): the ids it is known to have, the bytes
queued for it (a frame counts until the socket took it), and — checked before a frame is even decoded
(``precheck``: node.connections) — the objects its INV/GETDATA/NOTFOUND frames name. It also keeps what inbound eviction weighs
(node.eviction): when it connected, its best ping, when it last brought us a new block or transfer.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from chain.errors import PopError
from node import wire
from node.budgets import Budgets, KnownInventory, SendBudget
from node.errors import WireError
from node.limits import (
    BAD_HANDSHAKE,
    BAN_SCORE,
    FLOOD,
    MALFORMED,
    OVERSIZE,
    WRONG_CHAIN,
    Offence,
    TokenBucket,
    ban_key,
)

log = logging.getLogger("popchain.peer")

HANDSHAKE_TIMEOUT_S = 5.0
PING_INTERVAL_S = 15.0
PING_TIMEOUT_S = 20.0
SEND_QUEUE = 2000                            # frames queued for one peer: beyond, the peer is dropped (slow)
SEND_SLACK_BYTES = 512 * 1024               # small frames (INV, HEADERS, PONG) a peer may owe beyond its share
WRITABLE_TIMEOUT_S = 10.0                    # a peer whose own queue does not drain this long is cut (slow)
READING_S = 5.0                              # a peer that took a frame this recently is reading
MSG_RATE, MSG_BURST = 200.0, 2000.0          # frames per second
BYTE_RATE, BYTE_BURST = 64e6, 256e6          # bytes per second (blocks with models are large)
FLOOD_DROPS_PER_OFFENCE = 100


@dataclass(frozen=True)
class LocalIdentity:
    chain_id: str
    genesis_hash: bytes
    nonce: int
    listen_host: str
    listen_port: int
    agent: str = "popchain/0.1"


class PeerClosed(PopError):
    """Raised inside a peer's tasks to end the connection (with a reason); never leaves ``Peer.run_with``."""


WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class Peer:
    def __init__(self, ws: WebSocket, *, inbound: bool, host: str, port: int,
                 handler: Callable[[Peer, wire.Message], Awaitable[None]],
                 on_offence: Callable[[Peer, Offence, str], None],
                 hello_factory: Callable[[], wire.Hello], identity: LocalIdentity,
                 is_duplicate: Callable[[int], bool], budgets: Budgets | None = None,
                 precheck: Callable[[Peer, bytes], bool] | None = None,
                 sending: SendBudget | None = None) -> None:
        self.ws = ws
        self.inbound = inbound
        self.host = host
        self.port = port
        self.handler = handler
        self.on_offence = on_offence
        self.hello_factory = hello_factory
        self.identity = identity
        self.is_duplicate = is_duplicate
        self.hello: wire.Hello | None = None
        budgets = budgets if budgets is not None else Budgets.for_slots(32, 8)
        self.known = KnownIds(budgets.known_per_peer)
        self.precheck = precheck                  # the node's budgets, asked before a frame is decoded
        self.send_share = budgets.send_share
        self.sending = sending if sending is not None else SendBudget()   # shared by all peers of the node
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(SEND_QUEUE)
        self.queued_bytes = 0                     # frames queued or being written (a frame counts until written)
        self.largest_queued = 0                   # the largest of them (reset when the queue empties)
        self.drained_at = 0.0                     # when the socket last took one of its frames
        self._writable = asyncio.Event()
        self._writable.set()
        now = time.monotonic()
        self.msg_bucket = TokenBucket(MSG_RATE, MSG_BURST, now)
        self.byte_bucket = TokenBucket(BYTE_RATE, BYTE_BURST, now)
        self.score = 0
        self.dropped = 0
        self.close_reason = ""
        self.connected_at = time.time()
        self.connected_mono = now
        self.last_recv = now
        self.ping_nonce: int | None = None
        self.ping_sent = 0.0
        self.rtt_ms: float | None = None
        self.min_rtt_ms: float | None = None      # node.eviction: the best ping it ever gave
        self.last_block_at = 0.0                  # ... when it last brought a block new to us (monotonic)
        self.last_tx_at = 0.0                     # ... a transfer new to us
        self.best_height = 0
        self.bytes_in = 0
        self.bytes_out = 0

    # ------------------------------------------------------------ identity

    @property
    def key(self) -> str:
        """For logs and the API: the advertised listen address if any, else the remote address."""
        if self.hello is not None and self.hello.listen_port:
            return f"{self.host}:{self.hello.listen_port}"
        return f"{self.host}:{self.port}"

    @property
    def ban_key(self) -> str:
        """What this peer is judged by (node.limits.ban_key): its IP or /64, never a port."""
        return ban_key(self.host)

    @property
    def listen_addr(self) -> tuple[str, int] | None:
        if self.hello is None or not self.hello.listen_port:
            return None
        return (self.host, self.hello.listen_port)

    def __repr__(self) -> str:
        return f"<Peer {'in' if self.inbound else 'out'} {self.host}:{self.port}>"

    # ------------------------------------------------------------ sending

    def send(self, msg: wire.Message) -> None:
        """Queue a message; a peer that does not drain its queue is dropped (it cannot slow us down)."""
        if not self.close_reason:
            self.send_frame(wire.encode(msg))

    def send_frame(self, frame: bytes) -> None:
        """Queue an encoded frame (one bytes object may be queued for many peers: a relayed block is encoded
        once). Beyond its send share plus its largest frame and SEND_SLACK_BYTES of small ones, the peer is
        dropped: a block larger than the share (being written) leaves room for the PONG or ROUNDS after it."""
        if self.close_reason:
            return
        largest = max(self.largest_queued, len(frame))
        if self.queued_bytes + len(frame) > self.send_share + SEND_SLACK_BYTES + largest:
            self.close(f"slow-peer: send queue over its share ({self.queued_bytes} bytes queued)")
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.close("slow-peer: send queue full")
            return
        self.queued_bytes += len(frame)
        self.largest_queued = largest
        self.sending.queued += len(frame)
        if self.queued_bytes > self.send_share:
            self._writable.clear()

    @property
    def is_writable(self) -> bool:
        """More may be queued for it now: within its share while all peers' queues are within the node's send
        budget (node.budgets.SendBudget) — or, beyond that budget, if its queue is empty and it is reading (it
        took a frame in the last READING_S): peers that stop reading cannot keep a peer that reads from being
        served."""
        if self.close_reason:
            return False
        if self.queued_bytes <= self.send_share and self.sending.queued <= self.sending.cap:
            return True
        return self.queued_bytes == 0 and time.monotonic() - self.drained_at < READING_S

    async def writable(self) -> None:
        """Wait until more may be queued for this peer (its own reading speed, and the node's send budget, pace
        what it asks of us); a peer whose own queue does not drain within WRITABLE_TIMEOUT_S is closed."""
        while not self.is_writable and not self.close_reason:
            if self.queued_bytes > 0:   # its own queue must drain first
                self._writable.clear()
                try:
                    async with asyncio.timeout(WRITABLE_TIMEOUT_S):
                        await self._writable.wait()
                except TimeoutError:
                    self.close("slow-peer: not reading")
                    return
            else:
                await asyncio.sleep(0.02)   # the others' queues hold the budget: they drain or are cut

    def close(self, reason: str) -> None:
        if not self.close_reason:
            self.close_reason = reason
            while not self.queue.empty():
                self.queue.get_nowait()
            self.sending.queued -= self.queued_bytes
            self.queued_bytes = 0
            self.largest_queued = 0
            self._writable.set()
            self.queue.put_nowait(None)

    def offend(self, offence: Offence, detail: str) -> None:
        self.score += offence.score
        self.on_offence(self, offence, detail)
        if self.score >= BAN_SCORE:
            self.close(f"{offence.reason}: {detail}")

    # ------------------------------------------------------------ lifecycle

    async def run_with(self, on_ready: Callable[[Peer], Awaitable[None]] | None = None) -> None:
        """Handshake, ``on_ready``, then serve until closed. Never raises (except CancelledError on shutdown)."""
        try:
            await self._handshake()
            if on_ready is not None:
                await on_ready(self)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._writer())
                tg.create_task(self._pinger())
                await self._reader()
                self.close(self.close_reason or "connection closed by peer")
        except (TimeoutError, PeerClosed, aiohttp.ClientError, ConnectionError, OSError) as exc:
            self.close(str(exc) if isinstance(exc, PeerClosed) else f"network error: {exc!r}")
        except BaseExceptionGroup as eg:
            # the TaskGroup wraps its tasks' errors; a PeerClosed or network error just ends this peer
            first = _leaf(eg)
            if isinstance(first, asyncio.CancelledError):
                raise
            if isinstance(first, (PeerClosed, aiohttp.ClientError, ConnectionError, OSError, asyncio.TimeoutError)):
                self.close(str(first) if isinstance(first, PeerClosed) else f"network error: {first!r}")
            else:
                log.exception("peer %s: internal error", self.key, exc_info=first)
                self.close(f"internal error: {first!r}")
        finally:
            if not self.close_reason:
                self.close("closed")
            try:
                if not self.ws.closed:
                    async with asyncio.timeout(2):
                        await self.ws.close()
            except Exception:  # noqa: BLE001, S110 -- closing a broken socket may fail; cancellation propagates
                pass

    async def _handshake(self) -> None:
        await self.ws.send_bytes(wire.encode(self.hello_factory()))
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                frame = await self._next_frame()
        except TimeoutError:
            raise PeerClosed("handshake timeout") from None
        try:
            msg = wire.decode(frame)
        except WireError as exc:
            self.offend(MALFORMED if exc.reason != "oversize" else OVERSIZE, str(exc))
            raise PeerClosed(str(exc)) from None
        if not isinstance(msg, wire.Hello):
            self.offend(BAD_HANDSHAKE, f"expected HELLO, got {type(msg).__name__}")
            raise PeerClosed("expected HELLO first")
        me = self.identity
        refusal = None
        if msg.version != wire.PROTOCOL_VERSION:
            refusal = f"protocol version {msg.version}, we speak {wire.PROTOCOL_VERSION}"
        elif msg.chain_id != me.chain_id or msg.genesis_hash != me.genesis_hash:
            refusal = f"wrong chain: {msg.chain_id} genesis {msg.genesis_hash.hex()[:16]}"
        if refusal:
            await self._try_send(wire.Reject(refusal))
            self.hello = msg
            self.offend(WRONG_CHAIN, refusal)
            raise PeerClosed(refusal)
        if msg.nonce == me.nonce:
            await self._try_send(wire.Reject("self-connection"))
            raise PeerClosed("self-connection")
        if self.is_duplicate(msg.nonce):
            await self._try_send(wire.Reject("duplicate connection"))
            raise PeerClosed("duplicate connection")
        self.hello = msg
        self.best_height = msg.best_height

    async def _try_send(self, msg: wire.Message) -> None:
        try:
            async with asyncio.timeout(2):
                await self.ws.send_bytes(wire.encode(msg))
        except Exception:  # noqa: BLE001, S110 -- best effort: the connection is being refused or closed anyway
            pass

    async def _next_frame(self) -> bytes:
        msg = await self.ws.receive()
        if msg.type == aiohttp.WSMsgType.BINARY:
            data: bytes = msg.data
            self.bytes_in += len(data)
            return data
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            raise PeerClosed("closed by peer")
        if msg.type == aiohttp.WSMsgType.ERROR:
            # aiohttp reports frames over max_msg_size here
            exc = self.ws.exception()
            self.offend(OVERSIZE if "size" in str(exc).lower() else MALFORMED, f"websocket error: {exc}")
            raise PeerClosed(f"websocket error: {exc}")
        self.offend(MALFORMED, f"non-binary websocket message ({msg.type.name})")
        raise PeerClosed("non-binary message")

    async def _reader(self) -> None:
        while not self.close_reason:
            frame = await self._next_frame()
            now = time.monotonic()
            self.last_recv = now
            if not self.msg_bucket.take(now) or not self.byte_bucket.take(now, len(frame)) or (
                    self.precheck is not None and frame and not self.precheck(self, frame)):
                # floods are throttled (dropped before decoding), and only a sustained flood ends the connection
                self.dropped += 1
                if self.dropped % FLOOD_DROPS_PER_OFFENCE == 0:
                    self.offend(FLOOD, f"{self.dropped} frames dropped by rate limit")
                continue
            try:
                msg = wire.decode(frame)
            except WireError as exc:
                self.offend(OVERSIZE if exc.reason == "oversize" else MALFORMED, str(exc))
                return
            if isinstance(msg, wire.Hello):
                self.offend(BAD_HANDSHAKE, "second HELLO")
                return
            if isinstance(msg, wire.Ping):
                self.send(wire.Pong(msg.nonce))
                continue
            if isinstance(msg, wire.Pong):
                if msg.nonce == self.ping_nonce:
                    self.rtt_ms = (now - self.ping_sent) * 1000
                    self.min_rtt_ms = self.rtt_ms if self.min_rtt_ms is None else min(self.min_rtt_ms, self.rtt_ms)
                    self.ping_nonce = None
                continue
            if isinstance(msg, wire.Reject):
                raise PeerClosed(f"peer rejected us: {msg.reason}")
            await self.handler(self, msg)
            # one frame per turn: a reader whose socket holds many frames must not keep the event loop from the
            # other peers and the API (receive() returns buffered frames without yielding)
            await asyncio.sleep(0)

    async def _writer(self) -> None:
        while True:
            frame = await self.queue.get()
            if frame is None:
                # the reason travels to the other side, which logs it (PROTOCOL §4.5: disconnect reasons)
                if self.hello is not None and not self.close_reason.startswith("peer rejected us"):
                    await self._try_send(wire.Reject(self.close_reason))
                raise PeerClosed(self.close_reason)
            await self.ws.send_bytes(frame)
            self.bytes_out += len(frame)
            self.drained_at = time.monotonic()
            if not self.close_reason:   # close() has already given the whole queue back
                self.queued_bytes -= len(frame)
                self.sending.queued -= len(frame)
                if self.queued_bytes == 0:
                    self.largest_queued = 0
            self._writable.set()        # progress: writable() looks again

    async def _pinger(self) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL_S)
            now = time.monotonic()
            if self.ping_nonce is not None and now - self.ping_sent > PING_TIMEOUT_S:
                raise PeerClosed("ping timeout")
            if self.ping_nonce is None:
                self.ping_nonce = int.from_bytes(os.urandom(8), "big")
                self.ping_sent = now
                self.send(wire.Ping(self.ping_nonce))


class KnownIds:
    """The ids a peer is known to have, by id alone (ids of different kinds are hashes of different
    encodings): node.budgets.KnownInventory keyed by the 32-byte id of an inventory key."""

    __slots__ = ("_ids",)

    def __init__(self, cap: int) -> None:
        self._ids: KnownInventory[bytes] = KnownInventory(cap)

    def add(self, key: tuple[wire.InvKind, bytes]) -> None:
        self._ids.add(key[1])

    def add_ids(self, ids: Iterable[bytes]) -> None:
        """``add`` for several objects, by id."""
        self._ids.add_many(ids)

    def add_unknown_ids(self, ids: Iterable[bytes]) -> list[bytes]:
        """The ids not known yet (in order, each once), now marked known: what to announce to the peer."""
        return self._ids.add_unknown(ids)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 2 and key[1] in self._ids

    def __len__(self) -> int:
        return len(self._ids)


def _leaf(eg: BaseExceptionGroup) -> BaseException:
    first = eg.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first
