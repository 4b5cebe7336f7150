"""Shared plumbing of the network-attack benchmarks (flood, eviction, liar, fd exhaustion) and their tests:
attacker processes (benchmarks/hostile.py) at the lowest CPU priority, their counts, and waiting on a node's
API. No measurement logic of its own."""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks._nodeproc import ROOT, NodeProc
from node.tools.client import NodeClient


async def spawn_hostile(*args: str) -> asyncio.subprocess.Process:
    """``python -m benchmarks.hostile ARGS`` as a child process (its JSON counts on stdout), at the lowest CPU
    priority: on this machine the attackers share the node's cores, where real ones would bring their own — the
    node must not lose its CPU to the attackers' frame making, only to what the frames make it do."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec("nice", "-n", "19", sys.executable, "-m", "benchmarks.hostile", *args,
                                                cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)


async def collect(procs: list[asyncio.subprocess.Process], timeout: float) -> list[dict[str, Any]]:
    """Wait for the attacker processes (SIGTERM after ``timeout``, SIGKILL 10 s later) and parse their counts."""
    async def one(proc: asyncio.subprocess.Process) -> dict[str, Any]:
        try:
            stdout, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.terminate()
            try:
                stdout, _ = await asyncio.wait_for(proc.communicate(), 10)
            except TimeoutError:
                proc.kill()
                stdout, _ = await proc.communicate()
        try:
            return dict(json.loads(stdout.decode().strip().splitlines()[-1]))
        except (ValueError, IndexError):
            return {}
    return list(await asyncio.gather(*(one(p) for p in procs)))


async def stop_now(procs: list[asyncio.subprocess.Process]) -> list[dict[str, Any]]:
    """SIGTERM the attackers now and collect what they counted."""
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
    return await collect(procs, 10)


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until ``predicate`` held, or None if it did not within ``timeout`` (a liveness bound)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if await predicate():
                return time.monotonic() - start
        except Exception:  # noqa: BLE001, S110 -- a node still starting or busy: ask again
            pass
        await asyncio.sleep(interval)
    return None


async def status(node: NodeProc, timeout_s: float = 10.0) -> dict[str, Any]:
    async with NodeClient(node.api_url, timeout_s=timeout_s) as api:
        return dict(await api.status())
