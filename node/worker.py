"""The one thread that talks to consensus.engine.Engine (not thread-safe) and the store, off the event loop.

Every Engine/Keyholder/ChainStore call goes through ``EngineWorker.call``: calls are serialised in submission
order on a single dedicated thread, so scoring and batch signature checks never block the loop and the Engine
never sees two callers at once.
"""
from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class EngineWorker:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="popchain-engine")
        self.busy_seconds = 0.0
        self.calls = 0

    def _timed(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.busy_seconds += time.perf_counter() - started
            self.calls += 1

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._timed, fn, *args, **kwargs))

    def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """For start-up and shutdown, outside the loop's lifetime: run on the worker thread and wait."""
        result: T = self._executor.submit(self._timed, fn, *args, **kwargs).result()
        return result

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
