"""What the attacker processes themselves share (benchmarks.hostile's liar, benchmarks.blob_liar,
benchmarks.model_forger): a fake peer's ``/p2p`` websocket endpoint served on a port the process reports in a
file, and running the attack until it ends or SIGTERM/SIGINT arrives (so its counts are printed either way).

Does not: speak the wire protocol (each attacker's handler does), spawn attackers or read their counts
(benchmarks._attack does that on the measuring side).
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def p2p_server(handler: Handler, host: str, port: int, port_file: str | Path) -> AsyncIterator[int]:
    """Serve ``handler`` at ``/p2p`` on ``host:port`` (0: any free port) for the body of the ``async with``; the
    port it bound is written to ``port_file`` and yielded before any connection is handled."""
    app = web.Application()
    app.router.add_get("/p2p", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = int(runner.addresses[0][1])
    Path(port_file).write_text(str(bound))
    try:
        yield bound
    finally:
        await runner.cleanup()


async def until_signalled(attack: Awaitable[None]) -> None:
    """Run ``attack`` until it ends or SIGTERM/SIGINT cancels it."""
    task = asyncio.ensure_future(attack)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
