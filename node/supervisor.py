"""Supervision of the node's long-lived tasks *(policy)*: essential ones stop the node, optional ones restart.

An *essential* task (the block queue, the tx queue, housekeeping, the keyholder loop) is one the node cannot
live without: if it raises — or returns, which a service loop never does — the supervisor records the reason
and asks the node to stop; ``Node.run`` then raises TaskFailed and ``python -m node`` exits with the code of
the cause (node.errors: 3 for a storage fault, 5 for a bug, which is logged at CRITICAL with its traceback) —
a node that no longer processes blocks must not keep answering ``/api/status`` as if it did. Resource
exhaustion is not a reason to stop: an OSError of EXHAUSTION_ERRNOS (no descriptors, buffers or memory left)
restarts even an essential task, like an *optional* one (announcement trickle,
discovery): after RESTART_MIN_S, doubling up to RESTART_MAX_S, logged once per distinct error, with its state
visible in ``health()``. One-off tasks (a peer connection, a header request) are not supervised: their errors
are logged and end only themselves.
"""
from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from node.errors import is_storage_fault
from node.metrics import Metrics

log = logging.getLogger("popchain.node")

# no descriptors, buffers or memory left: transient, retried — never a reason for the node to stop
EXHAUSTION_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EAGAIN})
RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0

Spawn = Callable[[Coroutine[Any, Any, None], str], object]


@dataclass
class TaskState:
    essential: bool
    state: str = "starting"     # starting | running | restarting | failed | stopped
    restarts: int = 0
    last_error: str = ""


class Supervisor:
    def __init__(self, on_fatal: Callable[[str], None], metrics: Metrics) -> None:
        self.on_fatal = on_fatal          # node.stop after recording the reason
        self.metrics = metrics
        self.tasks: dict[str, TaskState] = {}
        self.failure: str | None = None
        self.failure_exc: BaseException | None = None
        self.stopping = False

    def supervise(self, spawn: Spawn, factory: Callable[[], Awaitable[None]], name: str, *, essential: bool) -> None:
        self.tasks[name] = TaskState(essential)
        spawn(self._run(factory, name), name)

    async def _run(self, factory: Callable[[], Awaitable[None]], name: str) -> None:
        st = self.tasks[name]
        delay = RESTART_MIN_S
        while True:
            st.state = "running"
            try:
                await factory()
                if self.stopping:
                    st.state = "stopped"
                    return
                raise RuntimeError("the task returned (a service loop never does)")
            except asyncio.CancelledError:
                st.state = "stopped"
                raise
            except Exception as exc:
                if self.stopping:
                    st.state = "stopped"
                    return
                error = f"{type(exc).__name__}: {exc}"
                exhausted = isinstance(exc, OSError) and exc.errno in EXHAUSTION_ERRNOS
                if st.essential and not exhausted:
                    st.last_error = error
                    st.state = "failed"
                    self.failure = f"essential task {name!r} failed: {st.last_error}"
                    self.failure_exc = exc
                    if is_storage_fault(exc):   # expected: run_node says it in one line (exit 3)
                        log.debug("%s — stopping the node", self.failure, exc_info=exc)
                    else:                                       # a bug: keep its traceback
                        log.critical("%s — stopping the node", self.failure, exc_info=exc)
                    self.metrics.inc("popchain_task_failures_total", task=name)
                    self.on_fatal(self.failure)
                    return
                st.state = "restarting"
                st.restarts += 1
                self.metrics.inc("popchain_task_restarts_total", task=name)
                if error != st.last_error:   # once per distinct error
                    log.error("task %s failed (%s); restart %d in %.1f s", name, error, st.restarts, delay,
                              exc_info=None if exhausted else exc)
                st.last_error = error
                await asyncio.sleep(delay)
                delay = min(RESTART_MAX_S, delay * 2)

    def fail(self, where: str, exc: BaseException) -> None:
        """A fault outside the supervised tasks that the node cannot live with (a storage fault while judging a
        peer's object): record it like an essential task's failure and stop the node."""
        if self.failure is None:
            self.failure = f"{where} failed: {type(exc).__name__}: {exc}"
            self.failure_exc = exc
            self.metrics.inc("popchain_task_failures_total", task=where)
            self.on_fatal(self.failure)

    def health(self) -> dict[str, Any]:
        """``{"ok": bool, "tasks": {name: {"state", "essential", "restarts", "error"}}}`` — the shape the API
        renders under ``/api/status`` ``"health"``. ok = no failure and every essential task running."""
        ok = self.failure is None and all(t.state == "running" for t in self.tasks.values() if t.essential)
        return {"ok": ok, "tasks": {n: {"state": t.state, "essential": t.essential, "restarts": t.restarts,
                                        "error": t.last_error or None} for n, t in self.tasks.items()}}
