"""Flood RSS: one hostile peer floods a real node process; figure ``flood_rss_growth_mb``.

The hostile peer speaks the wire protocol (node.wire; handshake as node/peer.py: HELLO both ways, the right chain
id and genesis hash) and sends, for ``seconds`` per class, 100 frames/s — inside the node's frame rate limit — of:

- INV: 1,000 random transfer ids per frame (the node would fetch them all);
- GETDATA: 1,000 random ids per frame, transfers and blocks alternately (the node looks each up, answers NOTFOUND);
- ADDR: 256 random addresses per frame on 127.88.0.0/16 at ports this process holds bound and closed (a dial
  never leaves the machine and never reaches another process);
- TX: validly signed transfers from unfunded keys (cheap to make, a signature check each to refuse).

After a disconnect it reconnects at once, each time advertising another listen port (the way an attacker evades a
ban keyed by port); each class comes from its own loopback address (nodes ban by IP), so that a ban earned by one
class does not spare the node the next. Frames the node sends are read and counted (a peer that does not read would just be dropped
as slow). Per class: the node's VmRSS growth (peak during the class − at its start, /proc/PID/status), frames
sent, connections made/refused, ids the node requested (GETDATA) and the worst API latency seen meanwhile.
The figure is the worst class's growth; its baseline is the 64 MB budget (ratio ≤ 1 meets the goal), and the
growth of the same node over the same time with one idle connection is reported next to it.
"""
from __future__ import annotations

import asyncio
import os
import random
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgpack

from benchmarks._nodeproc import NodeProc, metric_sum
from chain.crypto import Keypair
from chain.tx import make_transfer
from node import wire
from node.tools.client import NodeClient
from node.tools.testing import TestChain, make_test_chain, peer_session
from node.wire import InvKind

FRAMES_PER_S = 100
GOAL_MB = 64.0
CLASSES = ("inv", "getdata", "addr", "tx")


@dataclass
class FloodStats:
    kind: str
    frames_sent: int = 0
    connections: int = 0
    refused: int = 0               # connection attempts the node answered with an HTTP error (e.g. 503)
    getdata_ids: int = 0           # ids the node asked us for
    frames_received: int = 0
    close_reasons: list[str] = field(default_factory=list)
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    api_worst_ms: float = 0.0
    api_failures: int = 0

    @property
    def growth_mb(self) -> float:
        return max(0.0, self.rss_peak_mb - self.rss_start_mb)


class HostilePeer:
    """One connection to a node's /p2p, past the handshake; ``frames()`` makes the next frame to send."""

    def __init__(self, session: aiohttp.ClientSession, url: str, chain: TestChain, stats: FloodStats) -> None:
        self.session = session
        self.url = url
        self.chain = chain
        self.stats = stats
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None
        self._pongs: dict[int, asyncio.Event] = {}

    async def barrier(self, timeout: float = 60.0) -> None:
        """PING and wait for its PONG: the node's reader has handled every frame sent before it."""
        nonce = int.from_bytes(os.urandom(8), "big")
        self._pongs[nonce] = asyncio.Event()
        assert self.ws is not None
        await self.ws.send_bytes(wire.encode(wire.Ping(nonce)))
        async with asyncio.timeout(timeout):
            await self._pongs[nonce].wait()

    async def connect(self) -> bool:
        """Handshake with a fresh nonce and advertised port. False if the node refused the connection."""
        g = self.chain.genesis
        try:
            ws = await self.session.ws_connect(self.url, autoping=False, max_msg_size=wire.MAX_FRAME, compress=0)
        except aiohttp.WSServerHandshakeError:
            self.stats.refused += 1
            return False
        hello = wire.Hello(wire.PROTOCOL_VERSION, g.chain_id, g.hash, 0, 0, "127.0.0.1",
                           random.randint(20000, 60000), int.from_bytes(os.urandom(8), "big"), "flood/0.1")
        await ws.send_bytes(wire.encode(hello))
        msg = await ws.receive(timeout=10)
        if msg.type != aiohttp.WSMsgType.BINARY or not isinstance(wire.decode(msg.data), wire.Hello):
            await ws.close()
            self.stats.refused += 1
            return False
        self.ws = ws
        self.stats.connections += 1
        self._reader = asyncio.create_task(self._drain(ws))
        return True

    async def _drain(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                continue
            self.stats.frames_received += 1
            try:
                decoded = wire.decode(msg.data)
            except Exception:
                continue
            if isinstance(decoded, wire.GetData):
                self.stats.getdata_ids += len(decoded.items)
            elif isinstance(decoded, wire.Pong) and decoded.nonce in self._pongs:
                self._pongs[decoded.nonce].set()
            elif isinstance(decoded, wire.Ping):
                await ws.send_bytes(wire.encode(wire.Pong(decoded.nonce)))
            elif isinstance(decoded, wire.Reject):
                self.stats.close_reasons.append(decoded.reason)

    @property
    def open(self) -> bool:
        return self.ws is not None and not self.ws.closed

    async def send(self, frame: bytes) -> bool:
        try:
            assert self.ws is not None
            await self.ws.send_bytes(frame)
            self.stats.frames_sent += 1
            return True
        except (ConnectionError, aiohttp.ClientError, RuntimeError, AssertionError):
            return False

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass


def _inventory_frame(mtype: wire.MsgType, kind: InvKind) -> bytes:
    """An INV/GETDATA frame of MAX_INV_ITEMS random ids, packed straight with msgpack (3x faster than building
    the wire dataclass; the bytes are the same canonical frame, checked in tests/test_node_flood.py)."""
    raw = os.urandom(32 * wire.MAX_INV_ITEMS)
    return bytes([mtype]) + msgpack.packb([[[int(kind), raw[i:i + 32]] for i in range(0, len(raw), 32)]],
                                          use_bin_type=True)


def frame_maker(kind: str, chain: TestChain, closed_ports: list[int]) -> Callable[[], bytes]:
    """The flood class's next frame (fresh random content each time)."""
    if kind == "inv":
        return lambda: _inventory_frame(wire.MsgType.INV, InvKind.TX)
    if kind == "getdata":
        flip = [InvKind.TX]

        def getdata() -> bytes:
            flip[0] = InvKind.BLOCK if flip[0] == InvKind.TX else InvKind.TX
            return _inventory_frame(wire.MsgType.GETDATA, flip[0])
        return getdata
    if kind == "addr":
        return lambda: wire.encode(wire.Addr(tuple(
            (f"127.88.{random.randint(0, 255)}.{random.randint(1, 254)}", random.choice(closed_ports))
            for _ in range(wire.MAX_ADDRS))))
    if kind == "tx":
        cid = chain.genesis.chain_id
        sink = bytes(20)

        def tx() -> bytes:
            k = Keypair.from_seed(os.urandom(32))   # unfunded: a valid signature the node must check to refuse
            return wire.encode(wire.Object(InvKind.TX, make_transfer(k, cid, sink, 1, 1_000, 0).encode()))
        return tx
    raise ValueError(f"unknown flood class {kind!r}")


def reserve_closed_ports(n: int) -> list[socket.socket]:
    """Sockets bound (not listening) on 127.0.0.1: nothing else can listen on those ports while we hold them."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    return socks


async def _probe_api(client: NodeClient, stats: FloodStats, stop: asyncio.Event) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        try:
            await client.status()
            stats.api_worst_ms = max(stats.api_worst_ms, (time.perf_counter() - t) * 1000)
        except Exception:
            stats.api_failures += 1
        await asyncio.sleep(0.2)


async def _sample_rss(node: NodeProc, stats: FloodStats, stop: asyncio.Event) -> None:
    while not stop.is_set():
        stats.rss_peak_mb = max(stats.rss_peak_mb, node.rss_mb())
        await asyncio.sleep(0.1)


async def flood(node: NodeProc, chain: TestChain, kind: str, seconds: float, closed_ports: list[int],
                *, frames: int | None = None, source_ip: str = "127.0.0.2") -> FloodStats:
    """One flood class against ``node`` for ``seconds`` (or until ``frames`` frames were sent), from
    ``source_ip`` (nodes ban by IP: each class gets its own address, so one class's ban does not end the next)."""
    stats = FloodStats(kind, rss_start_mb=node.rss_mb())
    stats.rss_peak_mb = stats.rss_start_mb
    make = frame_maker(kind, chain, closed_ports)
    url = f"http://{node.p2p_addr[0]}:{node.p2p_addr[1]}/p2p"
    stop = asyncio.Event()
    async with peer_session(source_ip) as session, NodeClient(node.api_url, timeout_s=30) as api:
        side = [asyncio.create_task(_probe_api(api, stats, stop)), asyncio.create_task(_sample_rss(node, stats, stop))]
        peer: HostilePeer | None = None
        start = time.perf_counter()
        sent = 0
        try:
            while time.perf_counter() - start < seconds and (frames is None or sent < frames):
                if peer is None or not peer.open:
                    if peer is not None:
                        await peer.close()
                    peer = HostilePeer(session, url, chain, stats)
                    try:
                        if not await peer.connect():
                            await asyncio.sleep(0.1)
                            continue
                    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                        stats.refused += 1
                        stats.close_reasons.append(f"connect: {exc!r}"[:80])
                        await asyncio.sleep(0.1)
                        continue
                if await peer.send(make()):
                    sent += 1
                # hold the class's frame rate (schedule from the start, so slow sends do not lower it)
                delay = start + sent / FRAMES_PER_S - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await asyncio.sleep(0.5)   # let the node process what it has read
        finally:
            stop.set()
            for t in side:
                await t
            if peer is not None:
                await peer.close()
    return stats


async def idle_growth(node: NodeProc, chain: TestChain, seconds: float) -> float:
    """RSS growth of the node over ``seconds`` with one connected peer that sends nothing."""
    stats = FloodStats("idle", rss_start_mb=node.rss_mb())
    stats.rss_peak_mb = stats.rss_start_mb
    stop = asyncio.Event()
    async with peer_session("127.0.0.9") as session:
        peer = HostilePeer(session, f"http://{node.p2p_addr[0]}:{node.p2p_addr[1]}/p2p", chain, stats)
        sampler = asyncio.create_task(_sample_rss(node, stats, stop))
        try:
            await peer.connect()
            await asyncio.sleep(seconds)
        finally:
            stop.set()
            await sampler
            await peer.close()
    return stats.growth_mb


async def settle(node: NodeProc, timeout: float = 20.0) -> None:
    """Wait (bounded) until the node answers its API quickly again, so one class's backlog is not the next's."""
    async with NodeClient(node.api_url, timeout_s=timeout) as api:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                await api.status()
            except Exception:
                pass
            if time.perf_counter() - t < 0.05:
                return
            await asyncio.sleep(0.2)


async def run_floods(tmp: Path, seconds: float, classes: tuple[str, ...] = CLASSES) -> tuple[list[FloodStats], float,
                                                                                             dict]:
    chain = make_test_chain(tmp / "chain", rounds=5)
    node = NodeProc(tmp / "victim", genesis=chain.genesis_path).start()
    held = reserve_closed_ports(8)
    try:
        await node.ready()
        await asyncio.sleep(1.0)   # start-up allocations settle
        idle = await idle_growth(node, chain, min(seconds, 5.0))
        results = []
        for k, kind in enumerate(classes):
            await settle(node)
            results.append(await flood(node, chain, kind, seconds, [s.getsockname()[1] for s in held],
                                       source_ip=f"127.0.0.{10 + k}"))
        async with NodeClient(node.api_url) as api:
            peers = await api.peers()
            metrics = (await api._request("GET", "/metrics", raw=True)).decode()
        after = {"alive": node.alive(), "discouraged": len(peers["discouraged"]),
                 "offences": metric_sum(metrics, "popchain_peer_offences_total"), "rss_mb": node.rss_mb()}
        return results, idle, after
    finally:
        for s in held:
            s.close()
        await asyncio.to_thread(node.stop)


def run(quick: bool = False) -> list[dict]:
    seconds = 2.0 if quick else 30.0
    with tempfile.TemporaryDirectory(prefix="popchain-bench-flood-") as tmp:
        results, idle, after = asyncio.run(run_floods(Path(tmp), seconds))
    worst = max(results, key=lambda s: s.growth_mb)
    detail = "; ".join(f"{s.kind} +{s.growth_mb:.0f} MB ({s.frames_sent} frames, {s.connections} conn, "
                       f"{s.refused} refused, api <= {s.api_worst_ms:.0f} ms)" for s in results)
    return [{"name": "flood_rss_growth_mb", "value": worst.growth_mb, "unit": "MB", "baseline": GOAL_MB,
             "ratio": worst.growth_mb / GOAL_MB,
             "goal": f"<= {GOAL_MB:.0f} MB; {seconds:.0f} s per class at {FRAMES_PER_S} frames/s: {detail}; "
                     f"idle +{idle:.1f} MB; offences {after['offences']:.0f}, node alive {after['alive']}"}]


if __name__ == "__main__":
    import sys

    from benchmarks.harness import format_table
    print(format_table(run(quick="--quick" in sys.argv)))
