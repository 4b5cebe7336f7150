"""A hostile peer against pruned nodes, as a real process on the real wire protocol:
``python -m benchmarks.model_forger --genesis G --copy-from-api URL --listen ADDR --port-file F``.

It listens as a peer (announcing no blocks) and answers every GETDATA for a block by fetching the real block from
an archive node's API (``--copy-from-api``) and sending it with forged model bytes: the real header (so the real
block hash, the one a pruned node asked for) and a model that does not hash to the header's ``model_hash``. A
pruned node fetching an old model must store nothing of it and penalise the sender. Prints one JSON object of
counts on stdout when it ends (SIGTERM). Never imports node internals beyond the wire format and the decoders.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

from benchmarks._fakepeer import p2p_server, until_signalled
from benchmarks.hostile import hello
from chain.block import Block
from consensus.protocol.genesis import load_genesis
from node import wire
from node.wire import InvKind


async def serve(args: argparse.Namespace, counts: dict[str, int]) -> None:
    genesis = load_genesis(Path(args.genesis).read_bytes())
    port_box = [0]

    async def forged(session: aiohttp.ClientSession, block_hash: bytes) -> bytes | None:
        async with session.get(f"{args.copy_from_api}/api/blocks/{block_hash.hex()}", params={"raw": "1"}) as resp:
            if resp.status != 200:
                return None
            raw = (await resp.json()).get("raw")
        if not raw:
            return None
        real = Block.decode(bytes.fromhex(raw))
        return Block(real.header, real.txs, real.model[:-1] + bytes([real.model[-1] ^ 1]), real.payload).encode()

    async def p2p(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=wire.MAX_FRAME, autoping=False, compress=False)
        await ws.prepare(request)
        counts["connections"] += 1
        await ws.send_bytes(hello(genesis, port_box[0], host=args.listen))
        async with aiohttp.ClientSession() as session:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                m = wire.decode(msg.data)
                if isinstance(m, wire.Ping):
                    await ws.send_bytes(wire.encode(wire.Pong(m.nonce)))
                elif isinstance(m, wire.GetHeaders):
                    await ws.send_bytes(wire.encode(wire.Headers(())))
                elif isinstance(m, wire.GetData):
                    for kind, h in m.items:
                        data = await forged(session, h) if kind == InvKind.BLOCK else None
                        if data is not None:
                            await ws.send_bytes(wire.encode(wire.Object(InvKind.BLOCK, data)))
                            counts["forged_sent"] += 1
                elif isinstance(m, wire.Reject):
                    counts["rejected"] += 1
        counts["closed_by_node"] += 1
        return ws

    async with p2p_server(p2p, args.listen, 0, args.port_file) as port_box[0]:
        await asyncio.Event().wait()


async def _main(args: argparse.Namespace) -> dict[str, int]:
    counts = {"connections": 0, "forged_sent": 0, "rejected": 0, "closed_by_node": 0}
    await until_signalled(serve(args, counts))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model_forger")
    parser.add_argument("--genesis", required=True)
    parser.add_argument("--copy-from-api", required=True, help="an archive node's API URL (real blocks to forge)")
    parser.add_argument("--listen", default="127.0.0.2")
    parser.add_argument("--port-file", required=True)
    counts = asyncio.run(_main(parser.parse_args(argv)))
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
