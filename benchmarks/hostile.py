"""Hostile peers as real processes on the real wire protocol: ``python -m benchmarks.hostile MODE ...``.

Modes (each prints one JSON object of counts on stdout when it ends):

- ``flood``: ``--peers`` connections from one source address (``--source``: any 127.0.0.x is local), each past
  the handshake (HELLO with the right chain id and genesis hash, a fresh nonce and a made-up listen port), each
  sending ``--rate`` frames/s of one class: ``inv`` (1,000 made-up transfer ids a frame), ``getdata`` (the real
  ``--blocks`` plus made-up ids, 1,000 a frame — and the peer never reads: what the node sends piles up),
  ``addr`` (256 made-up addresses, unsolicited), ``tx`` (a validly signed transfer from an unfunded key, a
  signature check for the node each). A dropped connection is reopened at once.
- ``hold``: ``--peers`` idle connections that answer PINGs (slot holders for the eviction benchmark); reopened
  when closed, counting how often they were evicted.
- ``slowloris``: ``--conns`` TCP connections spread over ``--sources``, each sending half an HTTP request line
  and then nothing; closed ones are reopened at once.
- ``liar``: listens (``--listen``) as a peer that copies the real headers of ``--copy-from`` (a node's p2p URL)
  and extends them with ``--fake`` made-up ones, announces that chain to whoever connects and serves none of its
  blocks (GETDATA goes unanswered). Writes its port to ``--port-file``.

Shared by benchmarks/flood.py, eviction.py, liar.py, fd_exhaustion.py and their tests. Never imports node
internals beyond the wire format and the genesis decoder.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from benchmarks._fakepeer import p2p_server, until_signalled
from chain.block import Header
from chain.crypto import Keypair
from chain.tx import make_transfer
from consensus.protocol.genesis import Genesis, load_genesis
from node import wire
from node.wire import InvKind, MsgType

ITEM = b"\x92%c\xc4\x20"          # one inventory item: fixarray(2), kind, bin8(32)


@dataclass
class Stats:
    mode: str
    frames_sent: int = 0
    frames_received: int = 0
    connections: int = 0
    refused: int = 0
    closed_by_node: int = 0
    getdata_ids: int = 0
    getheaders: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def reason(self, text: str) -> None:
        key = text.split(":")[0][:40]
        self.reasons[key] = self.reasons.get(key, 0) + 1


def inventory_frame(mtype: MsgType, ids: list[tuple[int, bytes]]) -> bytes:
    """A canonical INV/GETDATA frame built from bytes (the node checks canonical encoding)."""
    n = len(ids)
    head = bytes([mtype, 0x91]) + (bytes([0x90 + n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big"))
    return head + b"".join(ITEM % kind + h for kind, h in ids)


def frame_maker(kind: str, genesis: Genesis, blocks: list[bytes]) -> Callable[[], bytes]:
    if kind == "inv":
        def inv() -> bytes:
            raw = os.urandom(32 * wire.MAX_INV_ITEMS)
            return inventory_frame(MsgType.INV, [(InvKind.TX, raw[i:i + 32]) for i in range(0, len(raw), 32)])
        return inv
    if kind == "getdata":
        def getdata() -> bytes:
            real = [(int(InvKind.BLOCK), h) for h in blocks] * 4
            raw = os.urandom(32 * (wire.MAX_INV_ITEMS - len(real)))
            fake = [(int(InvKind.TX if i % 64 else InvKind.BLOCK), raw[i:i + 32]) for i in range(0, len(raw), 32)]
            return inventory_frame(MsgType.GETDATA, real + fake)
        return getdata
    if kind == "addr":
        frames = [wire.encode(wire.Addr(tuple((f"127.88.{random.randint(0, 255)}.{random.randint(1, 254)}",
                                               random.randint(20000, 60000)) for _ in range(wire.MAX_ADDRS))))
                  for _ in range(32)]
        return lambda: random.choice(frames)
    if kind == "tx":
        cid = genesis.chain_id

        def tx() -> bytes:
            k = Keypair.from_seed(os.urandom(32))   # unfunded: a valid signature the node must check to refuse
            return wire.encode(wire.Object(InvKind.TX, make_transfer(k, cid, bytes(20), 1, 1_000, 0).encode()))
        return tx
    raise ValueError(f"unknown flood class {kind!r}")


def hello(genesis: Genesis, listen_port: int, best_height: int = 0, host: str = "127.0.0.1") -> bytes:
    return wire.encode(wire.Hello(wire.PROTOCOL_VERSION, genesis.chain_id, genesis.hash, best_height, 0, host,
                                  listen_port, int.from_bytes(os.urandom(8), "big"), "hostile/0.1"))


class Conn:
    """One hostile connection past the handshake; ``reader`` drains (or not) what the node sends."""

    def __init__(self, session: aiohttp.ClientSession, url: str, genesis: Genesis, stats: Stats) -> None:
        self.session, self.url, self.genesis, self.stats = session, url, genesis, stats
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.pongs: set[int] = set()      # nonces the node answered (a PING after N frames: all N were read)

    async def open(self, read: bool = True) -> bool:
        try:
            ws = await self.session.ws_connect(self.url, autoping=False, max_msg_size=wire.MAX_FRAME, compress=0)
            await ws.send_bytes(hello(self.genesis, random.randint(20000, 60000)))
            msg = await ws.receive(timeout=10)
        except (TimeoutError, aiohttp.ClientError, OSError):
            self.stats.refused += 1
            return False
        if msg.type != aiohttp.WSMsgType.BINARY or not isinstance(wire.decode(msg.data), wire.Hello):
            self.stats.refused += 1
            await ws.close()
            return False
        self.ws = ws
        self.stats.connections += 1
        self.reader = asyncio.create_task(self._drain(ws, read))
        return True

    async def _drain(self, ws: aiohttp.ClientWebSocketResponse, read: bool) -> None:
        if not read:   # a peer that never reads: the node's frames pile up in its send queue and our socket
            await asyncio.Event().wait()
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                self.stats.frames_received += 1
                try:
                    m = wire.decode(msg.data)
                except Exception:  # noqa: BLE001, S112 -- a hostile client ignores what it cannot parse
                    continue
                if isinstance(m, wire.Ping):
                    await ws.send_bytes(wire.encode(wire.Pong(m.nonce)))
                elif isinstance(m, wire.Pong):
                    self.pongs.add(m.nonce)
                elif isinstance(m, wire.GetData):
                    self.stats.getdata_ids += len(m.items)
                elif isinstance(m, wire.Reject):
                    self.stats.reason(m.reason)
        except (aiohttp.ClientError, OSError, RuntimeError):
            pass
        self.stats.closed_by_node += 1

    @property
    def alive(self) -> bool:
        return self.ws is not None and not self.ws.closed and not (self.reader is not None and self.reader.done())

    async def send(self, frame: bytes) -> bool:
        try:
            assert self.ws is not None
            await self.ws.send_bytes(frame)
            self.stats.frames_sent += 1
            return True
        except (ConnectionError, aiohttp.ClientError, RuntimeError, AssertionError):
            return False

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            try:
                async with asyncio.timeout(2):
                    await self.ws.close()
            except (TimeoutError, aiohttp.ClientError, OSError, RuntimeError):
                pass


async def _flood_one(session: aiohttp.ClientSession, args: argparse.Namespace, genesis: Genesis, stats: Stats,
                     make: Callable[[], bytes], deadline: float) -> None:
    try:
        async with asyncio.timeout(max(0.1, deadline + args.linger - time.monotonic())):   # a send blocked by a node that stopped reading
            await _flood_loop(session, args, genesis, stats, make, deadline)
    except TimeoutError:
        pass


async def _flood_loop(session: aiohttp.ClientSession, args: argparse.Namespace, genesis: Genesis, stats: Stats,
                      make: Callable[[], bytes], deadline: float) -> None:
    conn: Conn | None = None
    start = time.monotonic()
    sent = 0
    read = args.kind != "getdata"
    try:
        while time.monotonic() < deadline and (args.frames <= 0 or sent < args.frames):
            if conn is None or not conn.alive:
                if conn is not None:
                    await conn.close()
                conn = Conn(session, args.url, genesis, stats)
                if not await conn.open(read):
                    conn = None
                    await asyncio.sleep(0.2)
                    continue
            if await conn.send(make()):
                sent += 1
            delay = start + sent / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif sent % 20 == 0:
                await asyncio.sleep(0)
        if conn is not None and conn.alive and args.linger > 0:
            await asyncio.sleep(args.linger)
    finally:
        if conn is not None:
            await conn.close()


async def _hold_one(session: aiohttp.ClientSession, args: argparse.Namespace, genesis: Genesis, stats: Stats,
                    deadline: float) -> None:
    conn: Conn | None = None
    try:
        while time.monotonic() < deadline:
            if conn is None or not conn.alive:
                if conn is not None:
                    await conn.close()
                conn = Conn(session, args.url, genesis, stats)
                if not await conn.open(True):
                    conn = None
                    await asyncio.sleep(0.5)
                    continue
            await asyncio.sleep(0.2)
    finally:
        if conn is not None:
            await conn.close()


def _session(source: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0), limit=0, force_close=True))


async def run_flood(args: argparse.Namespace, stats: Stats) -> None:
    genesis = load_genesis(Path(args.genesis).read_bytes())
    blocks = [bytes.fromhex(h) for h in args.blocks.split(",") if h] if args.blocks else []
    make = frame_maker(args.kind, genesis, blocks)
    deadline = time.monotonic() + args.seconds
    async with _session(args.source) as session:
        await asyncio.gather(*(_flood_one(session, args, genesis, stats, make, deadline) for _ in range(args.peers)))


async def run_hold(args: argparse.Namespace, stats: Stats) -> None:
    genesis = load_genesis(Path(args.genesis).read_bytes())
    deadline = time.monotonic() + args.seconds
    async with _session(args.source) as session:
        await asyncio.gather(*(_hold_one(session, args, genesis, stats, deadline) for _ in range(args.peers)))


async def run_slowloris(args: argparse.Namespace, stats: Stats) -> None:
    sources = args.sources.split(",")
    deadline = time.monotonic() + args.seconds
    ports = [int(p) for p in args.ports.split(",")]

    async def one(i: int) -> None:
        source, port = sources[i % len(sources)], ports[i % len(ports)]
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection(args.host, port, local_addr=(source, 0))
            except OSError:
                stats.refused += 1
                await asyncio.sleep(0.05)
                continue
            stats.connections += 1
            try:
                writer.write(b"GET /p2p HTTP/1.1\r\nHost: x\r\n")   # ... and never the rest
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await reader.read()        # returns when the node closes it
                stats.closed_by_node += 1
            except (TimeoutError, OSError):
                pass
            finally:
                writer.close()

    await asyncio.gather(*(one(i) for i in range(args.conns)))


async def _copy_headers(url: str, genesis: Genesis) -> list[bytes]:
    """The real chain's headers, fetched from a node as any peer may (GETHEADERS from genesis)."""
    out: list[bytes] = []
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, autoping=False, max_msg_size=wire.MAX_FRAME, compress=0)
        await ws.send_bytes(hello(genesis, 0))
        locator = genesis.hash
        while True:
            await ws.send_bytes(wire.encode(wire.GetHeaders((locator,), bytes(32))))
            while True:
                msg = await ws.receive(timeout=30)
                m = wire.decode(msg.data)
                if isinstance(m, wire.Headers):
                    break
            out.extend(m.headers)
            if len(m.headers) < wire.MAX_HEADERS:
                break
            locator = Header.decode(m.headers[-1]).hash
        await ws.close()
    return out


def _fake_headers(genesis: Genesis, after: bytes | None, n: int) -> list[bytes]:
    prev = Header.decode(after) if after is not None else genesis.header
    key = Keypair.from_seed(os.urandom(32))
    out = []
    for _ in range(n):
        h = Header(1, genesis.chain_id, prev.height + 1, prev.hash, prev.round + 1, prev.timestamp + 1, key.public,
                   bytes(32), bytes(32), bytes(32), os.urandom(32)).sign(key)
        out.append(h.encode())
        prev = h
    return out


async def run_liar(args: argparse.Namespace, stats: Stats) -> None:
    genesis = load_genesis(Path(args.genesis).read_bytes())
    real = await _copy_headers(args.copy_from, genesis) if args.copy_from else []
    chain = real + _fake_headers(genesis, real[-1] if real else None, args.fake)
    hashes = [Header.decode(h).hash for h in chain]
    index = {h: i for i, h in enumerate(hashes)}

    async def p2p(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=wire.MAX_FRAME, autoping=False, compress=False)
        await ws.prepare(request)
        stats.connections += 1
        await ws.send_bytes(hello(genesis, port_box[0], best_height=len(chain), host=args.listen))
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                continue
            stats.frames_received += 1
            m = wire.decode(msg.data)
            if isinstance(m, wire.Ping):
                await ws.send_bytes(wire.encode(wire.Pong(m.nonce)))
            elif isinstance(m, wire.GetHeaders):
                stats.getheaders += 1
                start = next((index[h] + 1 for h in m.locator if h in index), 0)
                await ws.send_bytes(wire.encode(wire.Headers(tuple(chain[start:start + wire.MAX_HEADERS]))))
                stats.frames_sent += 1
            elif isinstance(m, wire.GetData):
                stats.getdata_ids += len(m.items)          # ... and never an answer
            elif isinstance(m, wire.Reject):
                stats.reason(m.reason)
        stats.closed_by_node += 1
        return ws

    port_box = [0]
    async with p2p_server(p2p, args.listen, args.port, args.port_file) as port_box[0]:
        await asyncio.sleep(args.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("flood", "hold"):
        p = sub.add_parser(name)
        p.add_argument("--url", required=True)
        p.add_argument("--genesis", required=True)
        p.add_argument("--source", default="127.0.0.2")
        p.add_argument("--peers", type=int, default=8)
        p.add_argument("--seconds", type=float, default=10.0)
    flood = sub.choices["flood"]
    flood.add_argument("--kind", choices=("inv", "getdata", "addr", "tx"), required=True)
    flood.add_argument("--rate", type=float, default=100.0, help="frames per second per connection")
    flood.add_argument("--frames", type=int, default=0, help="stop after this many frames per connection")
    flood.add_argument("--linger", type=float, default=0.0, help="stay connected this long after the last frame")
    flood.add_argument("--blocks", default="", help="real block ids (hex, comma-separated) for getdata")
    p = sub.add_parser("slowloris")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--ports", required=True, help="comma-separated ports (spread over)")
    p.add_argument("--sources", default="127.0.0.20,127.0.0.21,127.0.0.22,127.0.0.23")
    p.add_argument("--conns", type=int, default=1500)
    p.add_argument("--seconds", type=float, default=20.0)
    p = sub.add_parser("liar")
    p.add_argument("--genesis", required=True)
    p.add_argument("--listen", default="127.0.0.77")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", required=True)
    p.add_argument("--copy-from", default="", help="p2p URL of a node whose real headers to copy")
    p.add_argument("--fake", type=int, default=200, help="made-up headers appended to the copied ones")
    p.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    if args.mode == "slowloris":
        import resource
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    runner = {"flood": run_flood, "hold": run_hold, "slowloris": run_slowloris, "liar": run_liar}[args.mode]
    stats = Stats(args.mode + (f"-{args.kind}" if args.mode == "flood" else ""))
    asyncio.run(until_signalled(runner(args, stats)))   # the counts are printed either way
    print(json.dumps(asdict(stats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
