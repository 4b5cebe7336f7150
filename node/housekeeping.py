"""The node's once-a-second upkeep *(policy)*: each step on its own schedule, OS errors retried, never fatal.

Does: run the registered steps (expiry, stall checks, outbound refill, persisting peers.json and the tip
witness, counting descriptors, checking free disk space) every HOUSEKEEPING_S. An OSError in a step — no
descriptors left (EMFILE/ENFILE), a full disk writing peers.json — is logged once (again only when it changes
or the step recovers) and the step is retried with exponential backoff; the other steps and the task go on.
A step may raise a StoreError on purpose (``check_disk``: the disk is too full to store blocks without losing
any): that ends the housekeeping task, which is essential, and so stops the node with exit 3 (node.errors).
Does not: decide what the steps do (node.node wires them) or retry anything but OSError.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from chain.errors import StoreError

log = logging.getLogger("popchain.node")

HOUSEKEEPING_S = 1.0
RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0
MIN_FREE_BYTES = 64 * 2**20   # below this much free space on the datadir's disk the node stops (exit 3)


class DiskFull(StoreError):
    """The datadir's filesystem has too little free space to store the next blocks safely."""


Step = Callable[[], Awaitable[None] | None]


@dataclass
class _Scheduled:
    name: str
    fn: Step
    every_s: float
    due: float = 0.0
    failures: int = 0
    last_error: str = ""
    errors: int = field(default=0)


class Housekeeping:
    def __init__(self) -> None:
        self.steps: list[_Scheduled] = []

    def add(self, name: str, fn: Step, every_s: float = HOUSEKEEPING_S) -> None:
        self.steps.append(_Scheduled(name, fn, every_s))

    async def run(self) -> None:
        """The housekeeping task: runs forever; raises only what a step raises on purpose (not an OSError)."""
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            await self.run_due(time.monotonic())

    async def run_due(self, now: float) -> None:
        for step in self.steps:
            if now < step.due:
                continue
            try:
                result = step.fn()
                if result is not None:
                    await result
            except OSError as exc:
                self._failed(step, exc, now)
                continue
            if step.failures:
                log.info("housekeeping: %s works again (after %d failures)", step.name, step.failures)
            step.failures, step.last_error = 0, ""
            step.due = now + step.every_s

    def _failed(self, step: _Scheduled, exc: OSError, now: float) -> None:
        step.failures += 1
        step.errors += 1
        text = exc.strerror or str(exc) or type(exc).__name__
        wait = min(RETRY_MAX_S, RETRY_MIN_S * 2 ** min(step.failures - 1, 10))
        step.due = now + wait
        if text != step.last_error:   # once per distinct error, not once per retry
            step.last_error = text
            log.warning("housekeeping: %s failed (%s); retrying with backoff, the node keeps running",
                        step.name, text)

    def health(self) -> dict[str, str]:
        """Steps that are failing right now: name -> last error."""
        return {s.name: s.last_error for s in self.steps if s.failures}


def check_disk(path: Path, min_free: int = MIN_FREE_BYTES) -> None:
    """Raise DiskFull if ``path``'s filesystem has less than ``min_free`` bytes free (an OSError reading it is
    an ordinary housekeeping failure: retried)."""
    free = shutil.disk_usage(path).free
    if free < min_free:
        raise DiskFull(f"disk full: {free // 2**20} MiB free on the filesystem of {path}, the node needs "
                       f"{min_free // 2**20} MiB to store blocks safely; stopped with nothing lost — free some "
                       "space and start it again")
