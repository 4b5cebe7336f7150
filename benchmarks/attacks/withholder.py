"""Withholder - position: **a peer on the wire with many connections**, a variant the issue does not list: it
sends nothing invalid, so no node ever penalises it.

It hears each genuine round block from a source node (as the racer does) and at once announces it (INV) to each
victim from ``--per-victim`` connections, then never answers the GETDATA. A node asks one announcer at a time,
remembers at most two others and waits 15 s per announcer (PROTOCOL §4.3): with three connections announcing
first, the honest relay's own INV finds no room and is dropped, and the victim goes 45 s without the block -
longer than the opening window O, so a committee member that never got the block whole misses the opening.
With ``--hog NAME=HOST:PORT`` it also keeps ``--hog-connections`` idle connections to an honest relay: a node
pushes a validated block whole to only 3 of its peers (in arbitrary order) and announces it to the rest, so the
more of its connections the withholder holds, the fewer honest peers get the block whole - and a hog connection
that is only announced a block is dropped and dialled again (it held no push slot), so the withholder converges
on the relay's push slots.

One JSON line per block to ``--out`` (block, round, announced-to per victim); ``<out>.ready`` appears once all
its connections are up. Run it as its own process::

    python -m benchmarks.attacks.withholder --genesis G --source H=HOST:PORT --victim M1=HOST:PORT ... --out F
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from benchmarks.attacks.protocol import identity, is_round_block
from benchmarks.attacks.racer import parse_endpoint
from benchmarks.attacks.wire_peer import AddressPool, Handler, WirePeer
from chain.block import Block
from chain.errors import DecodeError
from consensus.protocol.genesis import load_genesis
from node import wire
from node.wire import InvKind


class Withholder:
    def __init__(self, args: argparse.Namespace) -> None:
        self.genesis = load_genesis(args.genesis.read_bytes())
        first, _, last = args.addresses.partition("-")
        self.pool = AddressPool(first, last)
        self.sources = [parse_endpoint(s) for s in args.source]
        self.victims = [parse_endpoint(v) for v in args.victim]
        self.hogs = [parse_endpoint(h) for h in args.hog]
        self.per_victim, self.hog_connections, self.out = args.per_victim, args.hog_connections, args.out
        self.rotate = args.rotate
        self.links: dict[str, list[WirePeer]] = {}
        self.held: list[WirePeer] = []
        self.done: set[bytes] = set()
        self.stop = asyncio.Event()
        self.churned = 0

    def _peer(self, host: str, port: int, on_message: Handler | None = None) -> WirePeer:
        g = self.genesis
        return WirePeer(host, port, g.chain_id, g.hash, source_ip=self.pool.take(), on_message=on_message,
                        agent="withholder/0.1")

    async def on_hog(self, peer: WirePeer, msg: wire.Message) -> None:
        """A hog connection that is announced a block (not pushed it) holds no push slot of that relay: drop it
        and dial again - the replacement lands elsewhere in the relay's peer order (churning until it holds the
        slots)."""
        if isinstance(msg, wire.Inv) and any(k == InvKind.BLOCK for k, _ in msg.items):
            self.churned += 1
            asyncio.get_running_loop().create_task(peer.close())

    async def on_source(self, peer: WirePeer, msg: wire.Message) -> None:
        if isinstance(msg, wire.Inv):
            want = tuple((k, h) for k, h in msg.items if k == InvKind.BLOCK and h not in self.done)
            if want:
                await peer.send(wire.GetData(want))
            return
        if not (isinstance(msg, wire.Object) and msg.kind == InvKind.BLOCK):
            return
        try:
            block = Block.decode(msg.data)
        except (DecodeError, ValueError):
            return
        h = identity(block)
        if h in self.done or not is_round_block(block):
            return
        self.done.add(h)
        inv = wire.encode(wire.Inv(((InvKind.BLOCK, h),)))
        sent = {}
        i = len(self.done) - 1
        for j, (name, links) in enumerate(self.links.items()):
            if self.rotate and j != i % len(self.links):
                continue                     # --rotate: one victim per block, in turn
            sent[name] = sum([await p.send(inv) for p in links if p.open])
        with self.out.open("a") as f:
            f.write(json.dumps({"t": time.time(), "block": h.hex(), "round": block.header.round,
                                "announced": sent, "churned": self.churned}) + "\n")

    async def keep(self, host: str, port: int, n: int, links: list[WirePeer],
                   on_message: Handler | None = None) -> None:
        """Hold ``n`` connections to a node in ``links`` (reconnecting any that drop)."""
        while not self.stop.is_set():
            links[:] = [p for p in links if p.open]
            if len(links) < n:
                peer = self._peer(host, port, on_message)
                if await peer.connect():
                    links.append(peer)
                    self.held.append(peer)
                else:
                    await asyncio.sleep(0.5)
                continue
            await asyncio.sleep(0.5)

    async def _ready(self, hogged: list[list[WirePeer]]) -> None:
        """Write ``<out>.ready`` once every connection is up (the harness judges only what comes after)."""
        while not self.stop.is_set():
            full = all(len(v) >= self.per_victim for v in self.links.values()) and all(
                len(h) >= self.hog_connections for h in hogged)
            if full:
                self.out.with_suffix(".ready").write_text("ready\n")
                return
            await asyncio.sleep(0.1)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        tasks = [asyncio.create_task(self.keep(h, p, 1, [], self.on_source)) for _, h, p in self.sources]
        tasks += [asyncio.create_task(self.keep(h, p, self.per_victim, self.links.setdefault(n, [])))
                  for n, h, p in self.victims]
        hogged: list[list[WirePeer]] = [[] for _ in self.hogs]
        tasks += [asyncio.create_task(self.keep(h, p, self.hog_connections, hogged[i], self.on_hog))
                  for i, (_, h, p) in enumerate(self.hogs)]
        tasks.append(asyncio.create_task(self._ready(hogged)))
        await self.stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for p in self.held:
            await p.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.attacks.withholder", description=__doc__.split("\n")[0])
    ap.add_argument("--genesis", type=Path, required=True)
    ap.add_argument("--source", action="append", default=[], help="NAME=HOST:PORT of a node to hear blocks from")
    ap.add_argument("--victim", action="append", default=[], help="NAME=HOST:PORT of a node to announce to")
    ap.add_argument("--per-victim", type=int, default=3, help="announcing connections per victim (default 3)")
    ap.add_argument("--hog", action="append", default=[], help="NAME=HOST:PORT of a relay whose push slots to take")
    ap.add_argument("--hog-connections", type=int, default=16)
    ap.add_argument("--rotate", action="store_true", help="announce each block to one victim, in turn")
    ap.add_argument("--addresses", default="127.0.10.1-127.0.15.254", help="loopback source range FIRST-LAST")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    asyncio.run(Withholder(args).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
