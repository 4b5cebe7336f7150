"""Peer connections *(policy)*: accept (bans, per-IP cap, inbound eviction when full), dial (backoff with jitter,
for the node's life), offences → discouragement by IP, GETADDR/ADDR (PROTOCOL §4.5, §4.6).

Knows nothing of gossip or sync: every message but GETADDR/ADDR goes to ``dispatch``; a peer that passed the
handshake goes to ``on_ready``, one that left to ``on_gone``. Owns the peer set, the address book and the
dialler state; the node reads ``peers``/``book`` for the API and saves the book. When the inbound slots are
full a newcomer evicts the peer node.eviction chooses (Bitcoin Core's rules), so a host holding every slot
cannot keep a new honest node out. ADDR answers carry only addresses we reached ourselves.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp import web

from node import wire
from node.budgets import Budgets, SendBudget
from node.config import NodeConfig
from node.datadir import PeerBook, parse_hostport
from node.dialer import Dialer
from node.errors import NodeError
from node.eviction import Candidate, netgroup, select_to_evict
from node.gate import Gate
from node.limits import DISCOURAGE_SECONDS, Offence, ban_key
from node.metrics import Metrics
from node.peer import LocalIdentity, Peer, WebSocket

log = logging.getLogger("popchain.node")

ADDR_RELAY_MAX = 32
GIVE_UP = 8                  # failed dials in a row before a non-persistent outbound slot is freed
HANDSHAKE_TIMEOUT_S = 5.0    # TCP connect + websocket upgrade of an outbound dial
REFUSE_HEADER = "X-Popchain-Refused"
CONNECTED_RECHECK_S = 5.0    # a dialler whose peer is connected the other way looks again this often
CROSSED_REDIAL_S = (0.05, 0.5)  # after a crossed dial: the node with the lower handshake nonce redials at once ...
CROSSED_YIELD_S = (3.0, 4.0)   # ... the other waits longer, and by then finds the first redial connected
INV_ITEM_BYTES = 36          # an INV/GETDATA/NOTFOUND item on the wire: [kind, bin8 32-byte id]
_INVENTORY_TYPES = frozenset({wire.MsgType.INV, wire.MsgType.GETDATA, wire.MsgType.NOTFOUND})
EVICTED = "evicted: inbound slots full (made room for a newcomer)"


class Connections:
    def __init__(self, config: NodeConfig, metrics: Metrics, *, hello: Callable[[], wire.Hello],
                 identity: Callable[[], LocalIdentity], local_port: Callable[[], int],
                 spawn: Callable[[Coroutine[Any, Any, None], str], Any],
                 dispatch: Callable[[Peer, wire.Message], Awaitable[None]],
                 on_ready: Callable[[Peer], None], on_gone: Callable[[Peer], None],
                 charge: Callable[[Peer, int], bool] | None = None) -> None:
        self.config = config
        self.budgets = Budgets.for_slots(config.max_inbound, config.max_outbound, len(config.peers))
        self.sending = SendBudget()                # bytes queued for all peers together
        self.charge = charge
        self.gate: Gate | None = None              # the p2p listener's accept gate (node.gate), once listening
        self._evict_key = os.urandom(32)
        self.metrics = metrics
        self.hello = hello
        self.identity = identity
        self.local_port = local_port
        self.spawn = spawn
        self.dispatch = dispatch
        self.on_ready = on_ready
        self.on_gone = on_gone
        self.peers: set[Peer] = set()
        self.book = PeerBook()
        self.dialer = Dialer()
        self.stopping = False
        self._session: aiohttp.ClientSession | None = None
        self._outbound_targets: set[tuple[str, int]] = set()
        self._inbound_by_ip: dict[str, int] = {}   # ban_key -> inbound connections (from before the upgrade)
        self._evicting = 0                         # evicted inbound peers still closing (their slots are taken)
        self._addr_asked: set[Peer] = set()        # peers we sent GETADDR and whose ADDR we await

    def open(self) -> None:
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        self.stopping = True
        if self._session is not None:
            await self._session.close()

    def ready_peers(self) -> list[Peer]:
        return [p for p in self.peers if p.hello is not None and not p.close_reason]

    def _is_duplicate(self, nonce: int) -> bool:
        return any(p.hello is not None and p.hello.nonce == nonce and not p.close_reason for p in self.peers)

    def _make_peer(self, ws: WebSocket, inbound: bool, host: str, port: int) -> Peer:
        return Peer(ws, inbound=inbound, host=host, port=port, handler=self.on_message, on_offence=self._on_offence,
                    hello_factory=self.hello, identity=self.identity(), is_duplicate=self._is_duplicate,
                    budgets=self.budgets, precheck=self._precheck, sending=self.sending)

    def _precheck(self, peer: Peer, frame: bytes) -> bool:
        """Before a frame is decoded: is it within the peer's budgets? An INV/GETDATA/NOTFOUND is charged for the
        ids it can hold (its size / INV_ITEM_BYTES) to the object budget; an ADDR we did not ask for is not worth
        decoding. False = drop it (node.peer counts drops towards a flood offence)."""
        kind = frame[0]
        if kind in _INVENTORY_TYPES:
            return self.charge is None or self.charge(peer, max(1, (len(frame) - 8) // INV_ITEM_BYTES))
        if kind == wire.MsgType.ADDR and peer not in self._addr_asked:
            self.metrics.inc("popchain_addr_ignored_total")
            return False
        return True

    def is_discouraged(self, host: str) -> bool:
        """Is this host (an IP, or IPv6 /64 — see node.limits.ban_key) discouraged? Ports play no part."""
        return self.book.is_banned(ban_key(host.rpartition(":")[0] if _has_port(host) else host), time.time())

    def _on_offence(self, peer: Peer, offence: Offence, detail: str) -> None:
        self.metrics.inc("popchain_peer_offences_total", reason=offence.reason)
        log.warning("peer %s %s (+%d -> %d): %s", peer.key, offence.reason, offence.score, peer.score + 0, detail)
        if peer.score >= 100:
            # by IP (/64), not by the port it advertises: another port must not get it back in, and advertising
            # an innocent node's port must not get the innocent refused
            self.book.ban(peer.ban_key, time.time() + DISCOURAGE_SECONDS)
            self.metrics.inc("popchain_discouragements_total", reason=offence.reason)
            log.warning("peer %s discouraged for %.0f s (%s)", peer.ban_key, DISCOURAGE_SECONDS, offence.reason)

    def _evict_one(self) -> Peer | None:
        """The inbound peer to close for a newcomer (node.eviction), or None if all are protected."""
        candidates = [Candidate(p, netgroup(p.host), p.connected_mono, p.min_rtt_ms, p.last_block_at, p.last_tx_at,
                                p.hello is not None)
                      for p in self.peers if p.inbound and not p.close_reason]
        chosen = select_to_evict(candidates, self._evict_key)
        return chosen.peer if chosen is not None else None

    async def _serve_peer(self, peer: Peer) -> None:
        self.peers.add(peer)
        self.metrics.inc("popchain_connections_total", direction="in" if peer.inbound else "out")
        try:
            await peer.run_with(self._after_handshake)
        finally:
            self.peers.discard(peer)
            self._addr_asked.discard(peer)
            self.on_gone(peer)
            log.info("peer %s disconnected: %s", peer.key, peer.close_reason)

    async def _after_handshake(self, peer: Peer) -> None:
        if self.is_discouraged(peer.host):
            peer.close("discouraged: this address misbehaved")
            return
        log.info("peer %s connected (%s, height %d)", peer.key, "in" if peer.inbound else "out",
                 peer.best_height)
        if not peer.inbound:
            self.book.reached(peer.host, peer.port, time.time())   # dialled and answered: a verified address
        if not peer.inbound:
            self._addr_asked.add(peer)   # its ADDR is accepted once, as the answer (PROTOCOL §4.6)
            peer.send(wire.GetAddr())
        self.on_ready(peer)

    def _refuse(self, reason: str) -> web.Response:
        self.metrics.inc("popchain_inbound_refused_total", reason=reason)
        return web.Response(status=503, reason="Refused", text=f"refused: {reason}",
                            headers={REFUSE_HEADER: reason})

    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        host = request.remote or "?"
        port = request.transport.get_extra_info("peername")[1] if request.transport else 0
        key = ban_key(host)
        # cheap checks first, before the upgrade: discouraged IP, per-IP cap, total cap
        if self.stopping:
            return self._refuse("shutting-down")
        if self.book.is_banned(key, time.time()):
            return self._refuse("discouraged")
        if self._inbound_by_ip.get(key, 0) >= self.config.max_inbound_per_ip:
            return self._refuse("too-many-from-your-address")
        if sum(self._inbound_by_ip.values()) - self._evicting >= self.config.max_inbound:
            victim = self._evict_one()
            if victim is None:
                return self._refuse("full")
            self._evicting += 1
            victim.close(EVICTED)
            self.metrics.inc("popchain_evictions_total")
            log.info("evicted inbound peer %s to make room for %s", victim.key, host)
        self._inbound_by_ip[key] = self._inbound_by_ip.get(key, 0) + 1
        if self.gate is not None:
            self.gate.mark_busy(request.transport)   # an upgrading peer: never cut as an idle socket
        peer: Peer | None = None
        try:
            ws = web.WebSocketResponse(max_msg_size=wire.MAX_FRAME, autoping=False, compress=False)
            await ws.prepare(request)
            peer = self._make_peer(ws, True, host, port)
            await self._serve_peer(peer)
            return ws
        finally:
            if peer is not None and peer.close_reason == EVICTED:
                self._evicting -= 1
            left = self._inbound_by_ip[key] - 1
            if left:
                self._inbound_by_ip[key] = left
            else:
                del self._inbound_by_ip[key]

    def connect(self, host: str, port: int, persistent: bool = False) -> asyncio.Task[None] | None:
        """Open (and keep re-opening, with backoff) an outbound connection, as a task in the TaskGroup.
        ``persistent`` (--peer, config.json) ones never give up; the others give up after GIVE_UP failures in a
        row and free their slot — the housekeeping refill dials them again later (every known address keeps
        being retried for the node's whole life, ever more rarely: node.dialer)."""
        if (host, port) in self._outbound_targets or (host, port) == (self.config.listen, self.local_port()):
            return None
        if not persistent and len(self._outbound_targets) >= self.config.max_outbound + len(self.config.peers):
            return None
        self._outbound_targets.add((host, port))
        task: asyncio.Task[None] | None = self.spawn(self._outbound(host, port, persistent), f"peer-{host}:{port}")
        return task

    async def _outbound(self, host: str, port: int, persistent: bool) -> None:
        addr = (host, port)
        failures_in_a_row = 0
        try:
            while not self.stopping:
                refused = False
                if self._connected_to(addr):
                    # it dialled us (two nodes that --peer each other, or found each other by ADDR): a dial now
                    # would only be refused as a duplicate connection; look again when that one has ended
                    await asyncio.sleep(CONNECTED_RECHECK_S)
                    continue
                if self.is_discouraged(host):
                    wait = self.dialer.failed(addr, time.monotonic(), refused=True)
                else:
                    served = False
                    try:
                        assert self._session is not None, "run() opens the session before connecting"
                        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                            ws = await self._session.ws_connect(f"http://{host}:{port}/p2p", autoping=False,
                                                                max_msg_size=wire.MAX_FRAME, compress=0)
                    except aiohttp.WSServerHandshakeError as exc:
                        refused = True
                        why = exc.headers.get(REFUSE_HEADER, f"HTTP {exc.status}") if exc.headers else exc.status
                        log.info("peer %s:%d refused us: %s", host, port, why)
                    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                        log.debug("connect %s:%d failed: %r", host, port, exc)
                    else:
                        if self.stopping:
                            await ws.close()
                            return
                        peer = self._make_peer(ws, False, host, port)
                        await self._serve_peer(peer)
                        if "self-connection" in peer.close_reason:
                            return
                        if "duplicate connection" in peer.close_reason:
                            # already connected to that node the other way: not a failure, no backoff games
                            await self._while_connected(peer.hello.nonce if peer.hello else None, addr)
                            # two dials that crossed are refused on both sides. The node with the higher handshake
                            # nonce steps back for longer, so the redials cannot cross again: the lower one's dial
                            # lands alone and the other finds it connected (random pauses alone crossed again under
                            # load: 94 refusals in one test run, 4 in another)
                            theirs = peer.hello.nonce if peer.hello is not None else None
                            yields = theirs is not None and self.identity().nonce > theirs
                            await asyncio.sleep(random.uniform(*(CROSSED_YIELD_S if yields else CROSSED_REDIAL_S)))
                            continue
                        served = peer.hello is not None and "peer rejected us" not in peer.close_reason
                        refused = "peer rejected us" in peer.close_reason
                    now = time.monotonic()
                    wait = self.dialer.succeeded(addr, now) if served else self.dialer.failed(addr, now, refused)
                    failures_in_a_row = 0 if served else failures_in_a_row + 1
                if not persistent and failures_in_a_row >= GIVE_UP:
                    return
                await asyncio.sleep(wait)
        finally:
            self._outbound_targets.discard(addr)

    def _connected_to(self, addr: tuple[str, int]) -> bool:
        return any(p.listen_addr == addr for p in self.ready_peers())

    async def _while_connected(self, nonce: int | None, addr: tuple[str, int]) -> None:
        """Wait while a ready peer is that node (same handshake nonce, or listening at ``addr``)."""
        while not self.stopping and any(p.listen_addr == addr or (nonce is not None and p.hello is not None
                                                                  and p.hello.nonce == nonce)
                                        for p in self.ready_peers()):
            await asyncio.sleep(CONNECTED_RECHECK_S)

    def refill_outbound(self) -> None:
        """Dial known addresses (most recently seen first) whose backoff has passed, up to max_outbound."""
        if not self.config.peer_exchange or self.stopping:
            return
        room = self.config.max_outbound + len(self.config.peers) - len(self._outbound_targets)
        if room <= 0 or self.outbound_count() >= self.config.max_outbound:
            return
        now = time.monotonic()
        connected = {p.listen_addr for p in self.peers}
        for text, _ in sorted(self.book.addrs.items(), key=lambda kv: -kv[1]):
            if room <= 0:
                break
            try:
                addr = parse_hostport(text)
            except NodeError:
                continue
            if addr in self._outbound_targets or addr in connected or self.is_discouraged(addr[0]) \
                    or not self.dialer.is_due(addr, now):
                continue
            if self.connect(*addr) is not None:
                room -= 1

    def offer_peer(self, host: str, port: int) -> None:
        """A peer we heard of (discovery): dial it if it is new, not discouraged, and there is outbound room."""
        if any(p.listen_addr == (host, port) for p in self.peers) or self.is_discouraged(host):
            return
        if self.outbound_count() < self.config.max_outbound:
            self.connect(host, port)

    def outbound_count(self) -> int:
        return sum(not p.inbound for p in self.peers)

    async def on_message(self, peer: Peer, msg: wire.Message) -> None:
        if isinstance(msg, wire.GetAddr):
            # only addresses we dialled and completed a handshake with: an inbound peer's advertised listen
            # port is unverified, and relaying it would let one host fill a newcomer's address book (§4.6)
            asker = f"{peer.host}:{peer.listen_addr[1]}" if peer.listen_addr else ""
            addrs = []
            for text in self.book.verified():
                if text == asker or self.is_discouraged(text):
                    continue
                try:
                    addrs.append(parse_hostport(text))
                except NodeError:
                    continue
                if len(addrs) >= ADDR_RELAY_MAX:
                    break
            peer.send(wire.Addr(tuple(addrs)))
        elif isinstance(msg, wire.Addr):
            if peer not in self._addr_asked:
                # unsolicited (or a second answer): ignored, so a peer cannot fill our book at will
                self.metrics.inc("popchain_addr_ignored_total")
                return
            self._addr_asked.discard(peer)
            now = time.time()
            for host, port in msg.addrs[:ADDR_RELAY_MAX]:
                if self.is_discouraged(host):
                    continue
                self.book.add(host, port, now)
            self.refill_outbound()
        else:
            await self.dispatch(peer, msg)


def _has_port(text: str) -> bool:
    """``host:port`` (IPv4 or a name) rather than a bare host or an IPv6 literal."""
    return text.count(":") == 1 and text.rpartition(":")[2].isdigit()
