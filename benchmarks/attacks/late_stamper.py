"""Late stamper - position: **a miner that wins a round** and stamps its block as late as the rules accept
(PROTOCOL §3.6 step 4: up to the reveal + ``time_slack_s``; sealed before the beacon, it picks the entry deadline
(or now, if later) + slack: benchmarks.attacks.protocol.latest_stamp). The keyholder (single or committee) opens
the next round no earlier than the anchor's timestamp (§3.7), so the chain waits out the stamp.

``late_stamp_stall_s`` = the worst delay of the next round's open caused by a miner-chosen timestamp: the next
notice's open time − (the round's reveal + O), both keyholder-signed (protocol.stamp_stall_ms). Goal ≤ W.

- in process (``stall_in_arena``): the real Engine + Keyholder on a simulated clock with the default genesis
  parameters (slack 120 s) - the same chain twice, the winner stamping honestly (baseline) and late;
- live (``python -m benchmarks.attacks.late_stamper``, its own process): it trains candidates like an honest
  miner (ml.training, on the public data and revealed shards), enters every round through a node's ordinary API
  with the latest stamp, opens, and writes one JSON line per round (round, stamp, status) to ``--out``; the
  harness reads the stall from the node's notices and beacons (benchmarks.attacks.live_figures).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from benchmarks.attacks.arena import Arena, Sealed, key
from benchmarks.attacks.entrant import ApiEntrant
from benchmarks.attacks.protocol import latest_stamp, stamp_stall_ms
from chain.crypto import Keypair
from consensus.protocol.genesis import GenesisParams, load_genesis
from ml.shards import PublicTask
from node.tools.client import ApiCallError, NodeClient

BALANCE = 10**12


def stall_in_arena(late: bool, seed: bytes = b"popchain-attack-late-stamp",
                   params: GenesisParams | None = None) -> float:
    """Round 1 is won by a linear model stamped honestly (``late=False``) or as late as accepted; returns the
    delay (seconds) of round 2's open, from the keyholder's own notice and beacon."""
    params = params or GenesisParams()
    miner = key(seed, "stamper")
    arena = Arena.create(seed, params=params, rounds=3, balances=[(miner.public, BALANCE)])
    try:
        arena.start_round()
        notice = arena.notice()
        stamp = latest_stamp(notice, params, arena.now) if late else None
        sealed = arena.enter(miner, arena.honest_model(), timestamp=stamp)
        assert isinstance(sealed, Sealed), sealed
        beacon = arena.reveal()
        verdict = arena.open(sealed, beacon)
        assert verdict.status == "tip-changed", verdict
        closed = arena.close()
        nxt = arena.engine.notice(closed.round + 1)
        assert nxt is not None
        return stamp_stall_ms(beacon, nxt, params) / 1000
    finally:
        arena.close_store()


async def run_live(args: argparse.Namespace) -> None:
    """Enter every open round with a freshly trained model stamped as late as accepted; open; log."""
    from ml.model import encode_model
    from ml.shards import open_shard
    from ml.training import train_candidate
    genesis = load_genesis(args.genesis.read_bytes())
    kp = Keypair.from_seed(bytes.fromhex(args.key_seed))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    played: set[int] = set()
    async with NodeClient(args.api) as client:
        entrant = ApiEntrant(client, kp, genesis)
        while not stop.is_set() and (not args.max or len(played) < args.max):
            try:
                r = await entrant.open_round()
                notice = await entrant.notice(r) if r and r not in played else None
            except (ApiCallError, OSError):
                notice = None
            if notice is None:
                await asyncio.sleep(0.05)
                continue
            played.add(r)
            package = await entrant.package()
            info = await client.task_info(0)
            keys = [(k["shard_index"], bytes.fromhex(k["shard_key"])) for k in info["revealed"]]

            def train(keys: list[tuple[int, bytes]] = keys, r: int = r, package: PublicTask = package) -> bytes:
                shards = [open_shard(package, i, k) for i, k in keys]
                family = args.family
                return encode_model(train_candidate(family, package.training, shards, seed=r, caps=genesis.model_caps,
                                                    recent_rows=4_000))
            model = await asyncio.to_thread(train)
            stamp = latest_stamp(notice, genesis.params, time.time())
            attempt = await entrant.enter(model, timestamp=stamp)
            if attempt is not None:
                attempt = await entrant.open(attempt)
            with args.out.open("a") as f:
                f.write(json.dumps({"t": time.time(), "round": r, "stamp": stamp,
                                    "block": attempt.block.hash.hex() if attempt else None,
                                    "status": attempt.status if attempt else "no-template"}) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.attacks.late_stamper", description=__doc__.split("\n")[0])
    ap.add_argument("--genesis", type=Path)
    ap.add_argument("--api", help="live: the node API to mine through (without it: the in-process measurement)")
    ap.add_argument("--key-seed", help="live: the stamper's funded key (32-byte seed, hex)")
    ap.add_argument("--family", default="mlp", help="live: ml.training family (default mlp)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--max", type=int, default=0, help="live: rounds to play (0: until SIGTERM)")
    args = ap.parse_args(argv)
    if args.api is None:
        honest, late = stall_in_arena(False), stall_in_arena(True)
        print(f"next round opened {late:.1f} s late after a late stamp; {honest:.1f} s after an honest one "
              f"(W = {GenesisParams().entry_window_s} s)")
        return 0
    if args.genesis is None or args.key_seed is None or args.out is None:
        ap.error("live mode needs --genesis, --key-seed and --out")
    asyncio.run(run_live(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
