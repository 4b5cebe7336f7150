"""A liar peer during sync: figure ``liar_sync_slowdown``.

A source node holds a chain of real-size blocks. The liar (benchmarks/hostile.py ``liar``, its own process on
127.0.0.77) copied the source's real headers and extended them with made-up ones; it announces that longer chain
to whoever connects and answers no GETDATA. A fresh node syncs with ``--peer source`` (clean) or ``--peer source
--peer liar`` (the liar present), alternately, on empty datadirs; each time is from the node's ports file to the
source's height on its API. The figure is median(with liar) ÷ median(clean), same run; and the node's log is
searched for a disconnect of the source (an honest peer dropped: must be 0).
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._attack import spawn_hostile, status, stop_now, until
from benchmarks._bigchain import build_big_chain
from benchmarks._nodeproc import NodeProc
from node.tools.testing import TestChain, make_test_chain

LIAR_IP = "127.0.0.77"
SYNC_TIMEOUT_S = 120.0
GOAL = 1.5


async def sync_once(tmp: Path, chain: TestChain, source: NodeProc, height: int, name: str,
                    liar: tuple[str, int] | None) -> tuple[float | None, int]:
    """(seconds to reach ``height`` or None, times the honest source was disconnected)."""
    peers = [source.p2p_addr] + ([liar] if liar is not None else [])
    node = NodeProc(tmp / name, genesis=chain.genesis_path, peers=peers, log_level="INFO").start()
    try:
        await node.ready()

        async def synced() -> bool:
            return int((await status(node))["height"]) >= height
        took = await until(synced, SYNC_TIMEOUT_S, 0.05)
        if liar is not None and took is not None:
            await asyncio.sleep(1.0)   # give the node time to notice the liar stalled (its penalty shows in the log)
    finally:
        await asyncio.to_thread(node.stop)
    log = (tmp / name / "node.log").read_text(errors="replace")
    dropped = sum(1 for line in log.splitlines()
                  if f"peer {source.p2p_addr[0]}:{source.p2p_addr[1]} disconnected" in line and "shutting down" not in line)
    return took, dropped


async def run_trials(tmp: Path, runs: int, n_blocks: int) -> tuple[list[float | None], list[float | None], int, dict[str, Any]]:
    chain = make_test_chain(tmp / "chain", rounds=4 * n_blocks + 8)
    await asyncio.to_thread(build_big_chain, tmp / "source", chain, n_blocks)
    source = NodeProc(tmp / "source", genesis=None).start()
    clean: list[float | None] = []
    lied: list[float | None] = []
    dropped = 0
    liar_counts: dict[str, Any] = {}
    try:
        await source.ready()
        height = int((await status(source))["height"])
        port_file = tmp / "liar.port"
        url = f"http://{source.p2p_addr[0]}:{source.p2p_addr[1]}/p2p"
        liar = await spawn_hostile("liar", "--genesis", str(chain.genesis_path), "--listen", LIAR_IP,
                                   "--port-file", str(port_file), "--copy-from", url, "--fake", "300",
                                   "--seconds", "900")
        try:
            async def listening() -> bool:
                return port_file.exists() and port_file.read_text().strip() != ""
            if await until(listening, 60) is None:
                raise RuntimeError("the liar did not start")
            liar_addr = (LIAR_IP, int(port_file.read_text()))
            for k in range(runs):
                took, _ = await sync_once(tmp, chain, source, height, f"clean{k}", None)
                clean.append(took)
                took, d = await sync_once(tmp, chain, source, height, f"lied{k}", liar_addr)
                lied.append(took)
                dropped += d
        finally:
            [liar_counts] = await stop_now([liar])
    finally:
        await asyncio.to_thread(source.stop)
    return clean, lied, dropped, liar_counts


def run(quick: bool = False) -> list[dict[str, Any]]:
    runs = 3 if quick else 5   # sub-second syncs: one run is mostly noise
    n_blocks = 6 if quick else 16
    with tempfile.TemporaryDirectory(prefix="popchain-bench-liar-") as tmp:
        clean, lied, dropped, liar = asyncio.run(run_trials(Path(tmp), runs, n_blocks))
    ok_clean = [t for t in clean if t is not None]
    ok_lied = [t for t in lied if t is not None]
    t_clean = statistics.median(ok_clean) if ok_clean else float("nan")
    t_lied = statistics.median(ok_lied) if len(ok_lied) == runs else float("inf")
    value = t_lied / t_clean if ok_clean else float("nan")
    fmt = ", ".join("failed" if t is None else f"{t:.2f}" for t in lied)
    return [{"name": "liar_sync_slowdown", "value": value, "unit": "x", "baseline": 1.0, "ratio": value,
             "goal": f"<= {GOAL} and 0 honest peers dropped; dropped {dropped}; sync of {n_blocks} blocks of "
                     f"0.4-1 MB: clean median {t_clean:.2f} s, with the liar {fmt} s ({runs} runs each); the liar "
                     f"was asked for {liar.get('getdata_ids', 0)} blocks and served none, "
                     f"{liar.get('connections', 0)} connections"}]


if __name__ == "__main__":
    from benchmarks.harness import format_table
    print(format_table(run(quick="--quick" in sys.argv)))
