"""Accuracies for the explorer and the metrics: a model's (correct, n) on a round's revealed shard, scored with
the consensus scoring code against the round's own task (its package, spec and shard index) and cached.

Does: plan scoring jobs on the engine thread (shard key, task package, model bytes), score them on an executor
thread, and remember every result — a failure too, so that a model that cannot be scored on a round (a key that
does not open the shard, a model of another spec) is tried and logged once, as one line without a traceback,
and never re-scored on every page load. Does not: decide anything (consensus scored these already; these are
figures for people).
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from chain.errors import PopError
from consensus.engine import EngineApi, ScoringCache
from ml.errors import MLError

log = logging.getLogger("popchain.explorer")

MAX_RESULTS = 8192          # (round, model) results kept (a failure costs the same slot)
Key = tuple[int, bytes]     # (round, model hash)


class Models(Protocol):
    def get_model(self, model_hash_: bytes) -> bytes | None: ...


@dataclass(frozen=True)
class Accuracy:
    correct: int
    n: int

    def to_json(self) -> dict[str, int]:
        return {"correct": self.correct, "n": self.n}

    @property
    def value(self) -> float:
        return self.correct / self.n if self.n else 0.0


@dataclass(frozen=True)
class Job:
    round: int
    model_hash: bytes
    task_id: int
    shard_index: int
    shard_key: bytes
    model: bytes
    package: Any            # ml.shards.PublicTask of the round's task (extensions included)


class AccuracyBook:
    """Results by (round, model hash): Accuracy, or the reason it could not be scored."""

    def __init__(self, genesis: Any, engine: EngineApi, store: Models, run_engine: Callable[..., Awaitable[Any]]) -> None:
        self.genesis = genesis
        self.engine = engine             # read only inside ``run_engine`` (the engine worker thread)
        self.store = store
        self._run_engine = run_engine
        self._results: OrderedDict[Key, Accuracy | str] = OrderedDict()
        self._scoring = ScoringCache(max_items=4)
        self._lock = asyncio.Lock()

    def get(self, r: int, model_hash: bytes) -> Accuracy | None:
        value = self._results.get((r, model_hash))
        return value if isinstance(value, Accuracy) else None

    def known(self, key: Key) -> bool:
        return key in self._results

    async def ensure(self, wanted: Iterable[Key]) -> None:
        """Score every (round, model) not scored (or failed) yet; one batch at a time, the rest from memory."""
        todo = sorted({k for k in wanted if k not in self._results})
        if not todo:
            return
        async with self._lock:
            todo = [k for k in todo if k not in self._results]
            if not todo:
                return
            jobs, failed = await self._run_engine(self._plan, todo)
            for key, why in failed.items():
                self._remember(key, why)
            if jobs:
                scored = await asyncio.get_running_loop().run_in_executor(None, self._score, jobs)
                for key, value in scored.items():
                    self._remember(key, value)

    def _remember(self, key: Key, value: Accuracy | str) -> None:
        if isinstance(value, str):
            log.warning("explorer: cannot score model %s on round %d: %s (not retried)", key[1].hex()[:16],
                        key[0], value)
        self._results[key] = value
        while len(self._results) > MAX_RESULTS:
            self._results.popitem(last=False)

    def _plan(self, keys: list[Key]) -> tuple[list[Job], dict[Key, str]]:
        """Engine thread: what each job needs, or why it cannot run."""
        engine = self.engine
        jobs, failed = [], {}
        for r, mh in keys:
            beacon = engine.beacon(r)
            if beacon is None:
                failed[(r, mh)] = "the round's shard is not revealed"
                continue
            data = self.store.get_model(mh)
            if data is None:
                data = _current_champion_bytes(engine, mh)
            if data is None:
                failed[(r, mh)] = "the model's bytes are not stored on this node"
                continue
            try:
                package = engine.task_package(beacon.task_id)
            except PopError as exc:
                failed[(r, mh)] = f"task {beacon.task_id}'s package: {exc}"
                continue
            jobs.append(Job(r, mh, beacon.task_id, beacon.shard_index, beacon.shard_key, data, package))
        return jobs, failed

    def _score(self, jobs: list[Job]) -> dict[Key, Accuracy | str]:
        """Executor thread: (correct, n) of each model on its round's shard, under the round's task."""
        out: dict[Key, Accuracy | str] = {}
        for job in jobs:
            try:
                correct = self._scoring.champion_correct(self.genesis, job.model, job.package, job.shard_index,
                                                         job.shard_key)
                out[(job.round, job.model_hash)] = Accuracy(int(correct.sum()), int(correct.shape[0]))
            except (MLError, PopError, ValueError) as exc:
                out[(job.round, job.model_hash)] = f"{type(exc).__name__}: {exc}"
        return out


def _current_champion_bytes(engine: EngineApi, model_hash: bytes) -> bytes | None:
    """An announced task's initial champion is in no block until one carries its activation."""
    for t in engine.tasks():
        if t.champion.model_hash == model_hash:
            try:
                return bytes(engine.champion_model(t.task_id))
            except PopError:
                return None
    return None
