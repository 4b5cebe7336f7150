"""Tamper racer - position: **a peer on the wire**, connected to a node near the miners (a *source*) and to its
victims, one hop closer to them than the genuine block's honest path.

It receives every round block the source relays (a whole-block push, or INV then GETDATA), and at once sends
each victim a corrupt copy with the same identity (benchmarks.attacks.protocol.tamper: a flipped signature bit,
the payload's bar + 1, a flipped model byte, a dropped tx), so that the copy is judged before the genuine block
arrives from an honest relay. Kinds rotate per victim (victim j gets kind (i + j) mod k for the i-th block), so
every kind hits every victim within k blocks. ``--rotate`` races one victim per block: the k-th block of a round
goes to victim k mod n (so two blocks of one round go to two different victims): aimed at the
members of a 2-of-3 committee it splits them instead of voiding rounds (a variant the issue does not list). A victim disconnects and discourages the address that sent a
corrupt copy, so each victim link keeps spare connections from fresh loopback addresses (AddressPool).

It writes one JSON line per raced block to ``--out`` (block, round, height, miner, txs, kind per victim) and
runs until SIGTERM or ``--max`` blocks. Run it as its own process::

    python -m benchmarks.attacks.racer --genesis G --source H=127.0.1.1:P --victim V=127.0.1.3:P \\
        --victim M1=127.0.1.4:P --out racer.jsonl

What it does not do: forge anything a node could check without the genuine block (signatures, scores), or
judge whether the attack worked - the harness reads the victims' logs and APIs for that (attacks.observe).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from benchmarks.attacks.protocol import TAMPER_KINDS, identity, is_round_block, tamper
from benchmarks.attacks.wire_peer import AddressPool, WirePeer
from chain.block import Block
from chain.errors import DecodeError
from consensus.protocol.genesis import load_genesis
from node import wire
from node.wire import InvKind

SPARES = 2            # ready connections per victim (each is spent by one corrupt copy)
REFILL_S = 0.2


def parse_endpoint(text: str) -> tuple[str, str, int]:
    """``NAME=HOST:PORT`` (or ``HOST:PORT``, named by itself) → (name, host, port)."""
    name, _, addr = text.rpartition("=")
    host, _, port = addr.rpartition(":")
    return (name or addr), host, int(port)


class VictimLink:
    """Spare connections to one victim from fresh addresses; ``take()`` hands out one to spend."""

    def __init__(self, name: str, host: str, port: int, chain_id: str, genesis_hash: bytes,
                 pool: AddressPool) -> None:
        self.name, self.host, self.port = name, host, port
        self.chain_id, self.genesis_hash, self.pool = chain_id, genesis_hash, pool
        self.spares: list[WirePeer] = []
        self.spent: list[WirePeer] = []
        self.refused = 0

    async def refill(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.spares = [p for p in self.spares if p.open]
            if len(self.spares) < SPARES:
                peer = WirePeer(self.host, self.port, self.chain_id, self.genesis_hash, source_ip=self.pool.take(),
                                agent="racer/0.1")
                if await peer.connect():
                    self.spares.append(peer)
                else:
                    self.refused += 1
                continue
            await asyncio.sleep(REFILL_S)

    def take(self) -> WirePeer | None:
        while self.spares:
            peer = self.spares.pop(0)
            if peer.open:
                self.spent.append(peer)
                return peer
        return None

    async def close(self) -> None:
        for peer in self.spares + self.spent:
            await peer.close()


class Racer:
    def __init__(self, genesis_path: Path, sources: list[tuple[str, str, int]], victims: list[tuple[str, str, int]],
                 kinds: tuple[str, ...], out: Path, pool: AddressPool, max_blocks: int = 0,
                 rotate: bool = False) -> None:
        self.genesis = load_genesis(genesis_path.read_bytes())
        self.sources_spec, self.kinds, self.out, self.pool = sources, kinds, out, pool
        g = self.genesis
        self.victims = [VictimLink(n, h, p, g.chain_id, g.hash, pool) for n, h, p in victims]
        self.max_blocks, self.rotate = max_blocks, rotate
        self.per_round: dict[int, int] = {}      # round -> blocks raced in it (--rotate)
        self.raced: dict[bytes, int] = {}
        self.asked: set[bytes] = set()
        self.stop = asyncio.Event()
        self.sources: list[WirePeer] = []

    async def on_source(self, peer: WirePeer, msg: wire.Message) -> None:
        if isinstance(msg, wire.Object) and msg.kind == InvKind.BLOCK:
            await self.race(msg.data, peer)
        elif isinstance(msg, wire.Inv):
            want = [(k, h) for k, h in msg.items if k == InvKind.BLOCK and h not in self.raced and h not in self.asked]
            if want:
                self.asked.update(h for _, h in want)
                await peer.send(wire.GetData(tuple(want)))

    async def race(self, data: bytes, source: WirePeer) -> None:
        try:
            block = Block.decode(data)
        except (DecodeError, ValueError):
            return
        h = identity(block)
        if h in self.raced or not is_round_block(block):
            return
        i = self.raced[h] = len(self.raced)
        k = self.per_round[block.header.round] = self.per_round.get(block.header.round, -1) + 1
        sent: dict[str, str | None] = {}
        frames: dict[str, bytes] = {}
        for j, link in enumerate(self.victims):
            if self.rotate and j != k % len(self.victims):
                sent[link.name] = None      # --rotate: the k-th block of a round goes to victim k mod n
                continue
            kind = self.kinds[(i + j) % len(self.kinds)]
            if kind not in frames:
                frames[kind] = wire.encode(wire.Object(InvKind.BLOCK, tamper(block, kind).encode()))
            peer = link.take()
            ok = peer is not None and await peer.send(frames[kind])
            sent[link.name] = kind if ok else None
        hd = block.header
        record = {"t": time.time(), "block": h.hex(), "round": hd.round, "height": hd.height, "miner": hd.miner.hex(),
                  "model_hash": hd.model_hash.hex(), "txs": len(block.txs), "sent": sent,
                  "source": f"{source.host}:{source.port}"}
        with self.out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.max_blocks and len(self.raced) >= self.max_blocks:
            self.stop.set()

    async def keep_source(self, name: str, host: str, port: int) -> None:
        """Stay connected to a source (it never has a reason to drop us: we send it nothing wrong)."""
        g = self.genesis
        while not self.stop.is_set():
            peer = WirePeer(host, port, g.chain_id, g.hash, source_ip=self.pool.take(), on_message=self.on_source,
                            agent="racer/0.1")
            if await peer.connect():
                self.sources.append(peer)
                waiter = asyncio.create_task(peer.closed())
                stopper = asyncio.create_task(self.stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                await peer.close()
            else:
                await asyncio.sleep(0.5)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        tasks = [asyncio.create_task(link.refill(self.stop)) for link in self.victims]
        tasks += [asyncio.create_task(self.keep_source(*s)) for s in self.sources_spec]
        await self.stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for link in self.victims:
            await link.close()
        for peer in self.sources:
            await peer.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.attacks.racer", description=__doc__.split("\n")[0])
    ap.add_argument("--genesis", type=Path, required=True)
    ap.add_argument("--source", action="append", default=[], help="NAME=HOST:PORT of a node to hear blocks from")
    ap.add_argument("--victim", action="append", default=[], help="NAME=HOST:PORT of a node to race")
    ap.add_argument("--kinds", default=",".join(TAMPER_KINDS))
    ap.add_argument("--addresses", default="127.0.2.1-127.0.7.254", help="loopback source range FIRST-LAST")
    ap.add_argument("--out", type=Path, required=True, help="JSON lines, one per raced block")
    ap.add_argument("--max", type=int, default=0, help="stop after this many blocks (0: until SIGTERM)")
    ap.add_argument("--rotate", action="store_true",
                    help="race one victim per block: the k-th of a round to victim k mod n (split a committee)")
    args = ap.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if not kinds or any(k not in TAMPER_KINDS for k in kinds):
        ap.error(f"--kinds: choose from {','.join(TAMPER_KINDS)}")
    if not args.source:
        ap.error("at least one --source")
    first, _, last = args.addresses.partition("-")
    racer = Racer(args.genesis, [parse_endpoint(s) for s in args.source], [parse_endpoint(v) for v in args.victim],
                  kinds, args.out, AddressPool(first, last), args.max, args.rotate)
    asyncio.run(racer.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
