"""A peer serving corrupt shard blobs, as a real process on the real wire protocol:
``python -m benchmarks.blob_liar --genesis G --blob-dir D --port-file F [--listen 127.0.0.78]``.

Position: a peer on the wire. It listens for nodes to connect, completes the handshake (right chain id and
genesis hash), and answers every GETBLOB with the real bytes of that range — read from ``--blob-dir``, the
owner's blobs, so the attack is as close to honest as it gets — with one byte flipped (``--mode flip``, the
default), or with random bytes of the asked length (``--mode random``); with ``--mode flood`` it sends
``--frames`` BLOB frames of 256 KiB nobody asked for as soon as the handshake is done (a buffer-filling attempt).
With ``--mode getflood`` it asks the node for ``--frames`` chunks of a real blob (the first shard of genesis)
back to back, faster than they can be answered: the node answers at most SERVE_PER_PEER at a time, drops and
scores the rest, and cuts it off. It ignores everything else except PING. Its counts (JSON) go to ``--stats-file`` after each connection ends and to stdout when it stops.

Used by tests/test_blobs_net.py. Imports only the wire format, the genesis decoder and ml.blobs.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

import aiohttp
from aiohttp import web

from benchmarks._fakepeer import p2p_server, until_signalled
from consensus.protocol.genesis import load_genesis
from ml.blobs import BlobDir, BlobRef
from node import wire


async def run(args: argparse.Namespace, stats: dict[str, int]) -> None:
    genesis = load_genesis(Path(args.genesis).read_bytes())
    blobs = BlobDir(args.blob_dir, writable=False)
    port_box = [0]

    def save() -> None:
        if args.stats_file:
            Path(args.stats_file).write_text(json.dumps(stats))

    async def p2p(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=wire.MAX_FRAME, autoping=False, compress=False)
        await ws.prepare(request)
        stats["connections"] += 1
        await ws.send_bytes(wire.encode(wire.Hello(wire.PROTOCOL_VERSION, genesis.chain_id, genesis.hash, 0, 0,
                                                   args.listen, port_box[0], int.from_bytes(os.urandom(8), "big"),
                                                   "blob-liar/0.1")))
        if args.mode == "getflood":
            ref = next(iter(genesis.task.blob_refs()))
            for k in range(args.frames):
                try:
                    await ws.send_bytes(wire.encode(wire.GetBlob(bytes(ref), 0, min(ref.size, wire.MAX_BLOB_CHUNK))))
                except (ConnectionError, RuntimeError):
                    break
                stats["getblob_sent"] += 1
            save()
        if args.mode == "flood":
            junk = os.urandom(wire.MAX_BLOB_CHUNK)
            for k in range(args.frames):
                try:
                    await ws.send_bytes(wire.encode(wire.Blob(os.urandom(32), k * len(junk), junk)))
                except (ConnectionError, RuntimeError):
                    break
                stats["unsolicited_sent"] += 1
                save()
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                continue
            m = wire.decode(msg.data)
            if isinstance(m, wire.Ping):
                await ws.send_bytes(wire.encode(wire.Pong(m.nonce)))
            elif isinstance(m, wire.GetBlob):
                ref = BlobRef.parse(m.ref)
                stats["getblob"] += 1
                if args.mode == "random":
                    data = os.urandom(min(m.length, max(0, ref.size - m.offset)))
                else:
                    real = blobs.read_range(ref, m.offset, m.length) or os.urandom(m.length)
                    data = bytes([real[0] ^ 0x01]) + real[1:]     # one flipped byte, right length
                await ws.send_bytes(wire.encode(wire.Blob(ref.id, m.offset, data)))
                stats["corrupt_chunks_sent"] += 1
            save()
        stats["closed_by_node"] += 1
        save()
        return ws

    async with p2p_server(p2p, args.listen, args.port, args.port_file) as port_box[0]:
        await asyncio.sleep(args.seconds)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.blob_liar", description=__doc__.splitlines()[0])
    p.add_argument("--genesis", required=True)
    p.add_argument("--blob-dir", required=True)
    p.add_argument("--listen", default="127.0.0.78")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", required=True)
    p.add_argument("--stats-file", default="")
    p.add_argument("--mode", choices=("flip", "random", "flood", "getflood"), default="flip")
    p.add_argument("--frames", type=int, default=200, help="--mode flood: unsolicited BLOB frames to send")
    p.add_argument("--seconds", type=float, default=300.0)
    args = p.parse_args(argv)
    stats = {"connections": 0, "getblob": 0, "corrupt_chunks_sent": 0, "closed_by_node": 0, "unsolicited_sent": 0,
             "getblob_sent": 0}

    asyncio.run(until_signalled(run(args, stats)))
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
