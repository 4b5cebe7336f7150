"""Inbound eviction: can a new honest node get a slot and sync while hostile hosts hold every inbound slot?
Figure ``eviction_newcomer_ok``.

A real victim node holds a chain of real-size blocks. Four attacker processes (benchmarks/hostile.py ``hold``)
from 127.0.0.10–13 open 8 connections each — every one of the 32 inbound slots, up to the per-IP cap — and keep
them (idle, answering pings, reconnecting at once when cut). Then a new honest node (a real ``node run`` process,
``--peer`` the victim, from 127.0.0.1) starts on an empty datadir. A trial succeeds if the newcomer reaches the
victim's height within NEWCOMER_TIMEOUT_S (a liveness bound). The figure is the share of trials that succeed;
its baseline is the same trial with no attackers (same run).
"""
from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._attack import spawn_hostile, status, stop_now, until
from benchmarks._bigchain import build_big_chain
from benchmarks._nodeproc import NodeProc
from node.tools.testing import TestChain, make_test_chain

HOLDERS = (("127.0.0.10", 8), ("127.0.0.11", 8), ("127.0.0.12", 8), ("127.0.0.13", 8))
NEWCOMER_TIMEOUT_S = 60.0
FILL_TIMEOUT_S = 60.0


async def newcomer_syncs(tmp: Path, chain: TestChain, victim: NodeProc, height: int, name: str) -> float | None:
    """Seconds until a fresh node dialling ``victim`` reaches ``height`` (None: it did not, within the bound)."""
    node = NodeProc(tmp / name, genesis=chain.genesis_path, peers=[victim.p2p_addr]).start()
    try:
        await node.ready()
        async def synced() -> bool:
            return int((await status(node))["height"]) >= height
        return await until(synced, NEWCOMER_TIMEOUT_S, 0.2)
    finally:
        await asyncio.to_thread(node.stop)


async def trial(tmp: Path, chain: TestChain, victim: NodeProc, height: int, k: int,
                attacked: bool) -> tuple[float | None, dict[str, Any]]:
    procs = []
    url = f"http://{victim.p2p_addr[0]}:{victim.p2p_addr[1]}/p2p"
    info: dict[str, Any] = {}
    try:
        if attacked:
            procs = [await spawn_hostile("hold", "--url", url, "--genesis", str(chain.genesis_path), "--source", ip,
                                         "--peers", str(n), "--seconds", "600") for ip, n in HOLDERS]

            async def full() -> bool:
                return int((await status(victim))["peers"]) >= sum(n for _, n in HOLDERS)
            info["filled_s"] = await until(full, FILL_TIMEOUT_S, 0.2)
        took = await newcomer_syncs(tmp, chain, victim, height, f"newcomer-{'a' if attacked else 'c'}{k}")
    finally:
        counts = await stop_now(procs) if procs else []
    info["holder_connections"] = sum(int(c.get("connections", 0)) for c in counts)
    return took, info


async def run_trials(tmp: Path, trials: int, n_blocks: int) -> tuple[list[float | None], list[float | None], dict[str, Any]]:
    chain = make_test_chain(tmp / "chain", rounds=4 * n_blocks + 8)
    await asyncio.to_thread(build_big_chain, tmp / "victim", chain, n_blocks)
    victim = NodeProc(tmp / "victim", genesis=None).start()
    attacked: list[float | None] = []
    control: list[float | None] = []
    info: dict[str, Any] = {}
    try:
        await victim.ready()
        height = int((await status(victim))["height"])
        for k in range(trials):
            took, info = await trial(tmp, chain, victim, height, k, attacked=True)
            attacked.append(took)
            took, _ = await trial(tmp, chain, victim, height, k, attacked=False)
            control.append(took)
        info["victim_alive"] = victim.alive()
    finally:
        await asyncio.to_thread(victim.stop)
    return attacked, control, info


def run(quick: bool = False) -> list[dict[str, Any]]:
    trials = 1 if quick else 3
    n_blocks = 3 if quick else 6
    with tempfile.TemporaryDirectory(prefix="popchain-bench-eviction-") as tmp:
        attacked, control, info = asyncio.run(run_trials(Path(tmp), trials, n_blocks))
    ok = sum(t is not None for t in attacked) / trials
    base = sum(t is not None for t in control) / trials
    times = ", ".join("failed" if t is None else f"{t:.1f} s" for t in attacked)
    return [{"name": "eviction_newcomer_ok", "value": ok, "unit": "share", "baseline": base,
             "ratio": ok / base if base else None,
             "goal": f"1.0 (baseline: no attackers); {trials} trials, 32 of 32 inbound slots held from 4 IPs, "
                     f"newcomer synced {n_blocks} blocks in: {times}; victim alive {info.get('victim_alive')}"}]


if __name__ == "__main__":
    from benchmarks.harness import format_table
    print(format_table(run(quick="--quick" in sys.argv)))
