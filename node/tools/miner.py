"""The network miner: competes for blocks through a node's HTTP API only (no local chain state).

Each round: train a candidate (scikit-learn, in a worker thread) on the newest revealed rows (RECENT_ROWS: the
latest shards, then older ones and the public data; on a drifting task the concept has moved on from old
shards), holding back the second half of the most recent shard, check it against the champion on that half, enter the round with a sealed
entry, open the block once the beacon lists it, and report the round's verdict. The consensus work (sealing,
scoring, payload) is consensus.mining's; this module only drives it over the API.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from chain.crypto import Keypair
from chain.tx import Transfer
from consensus.mining import Template, open_block, seal
from consensus.protocol.genesis import Genesis, load_genesis
from consensus.protocol.messages import Beacon
from ml.shards import PublicTask
from ml.task import Dataset
from node.tools.client import ApiCallError, NodeClient
from node.tools.events_client import ChangeSignal

log = logging.getLogger("popchain.miner")

AUTO_FAMILIES = ("forest", "mlp", "extra", "linear")
POLL_S = 0.05
EXIT_NO_OPEN_TASK = 6   # `miner run` stopped: no task of the chain is open (README, miner section)
NO_OPEN_TASK = ("no task is open on this chain (every task has spent its hidden shards): nothing to mine; "
                "run the miner again once a task is announced or extended ('popchain task list')")


def template_from_json(obj: dict) -> Template:
    b = bytes.fromhex
    return Template(obj["chain_id"], obj["height"], b(obj["prev_hash"]), obj["round"], obj["timestamp"],
                    b(obj["miner"]), tuple(Transfer.decode(b(t)) for t in obj["txs"]), b(obj["tx_root"]),
                    b(obj["state_root"]), obj["entry_bond"], b(obj["champion_model_hash"]))


# the newest rows a candidate fits on: about two default-sized shards (or the demo's last ~2.5): on the drifting
# default task a shard one round old already costs a model ~1-2 pp on the next (benchmarks.sim_drift), so older
# rows mostly teach a concept that has gone; on a stationary task 8,000 rows are most of what a small model gains
RECENT_ROWS = 8_000


def split_for_check(revealed: list[Dataset]) -> tuple[list[Dataset], Dataset | None]:
    """(shards to fit on, rows to check on): every revealed shard with the most recent one's *second half* held
    back for `Miner._check`. A check on rows the model was fitted to would report the training fit, not what
    the round will see; holding back the whole newest shard instead would leave the candidate a round staler,
    which on a drifting task is what decides whether it beats the champion."""
    if not revealed:
        return [], None
    last = revealed[-1]
    half = len(last) // 2
    if half < 1:
        return revealed[:-1], last
    idx = np.arange(len(last))
    return revealed[:-1] + [last.subset(idx[:half])], last.subset(idx[half:])


class TrainingProgress:
    """A progress line while a candidate trains: scikit-learn reports nothing while it fits, so the bar is an
    estimate from this family's last fit (seconds per row), capped below 100% until the fit returns."""

    WIDTH = 20

    def __init__(self, family: str, rows: int, seconds_per_row: float | None,
                 show: Callable[[str, bool], None] | None) -> None:
        self.family, self.rows, self.show = family, rows, show
        self.expected = seconds_per_row * rows if seconds_per_row else None
        self.started = time.monotonic()

    def line(self, elapsed: float) -> str:
        text = f"training {self.family} on {self.rows:,} rows"
        if self.expected:
            filled = min(self.WIDTH - 1, int(self.WIDTH * elapsed / self.expected))
            text += f" [{'#' * filled}{'.' * (self.WIDTH - filled)}]"
        return f"{text} {elapsed:.1f} s"

    async def tick(self, every: float = 0.25) -> None:
        assert self.show is not None
        while True:
            self.show(self.line(time.monotonic() - self.started), False)
            await asyncio.sleep(every)

    def done(self) -> float:
        """Report the finished fit; returns its seconds per row (the next estimate)."""
        elapsed = time.monotonic() - self.started
        if self.show is not None:
            self.show(f"trained {self.family} on {self.rows:,} rows in {elapsed:.1f} s", True)
        return elapsed / max(1, self.rows)


@dataclass
class RoundReport:
    """What happened to this miner in one round (printed by the CLI, collected by tests and the demo)."""
    round: int
    family: str = ""
    status: str = "skipped"         # skipped | entry-refused | not-listed | opened | rejected:<code>
    check: tuple[int, int] | None = None   # (b, c) of the local check on the last revealed shard
    b: int | None = None
    c: int | None = None
    bar: int | None = None
    won: bool = False
    winner: str | None = None
    task: int = 0                   # the task the round served

    def line(self) -> str:
        parts = [f"round {self.round:>3}", f"task {self.task}", f"{self.family or '-':<7}"]
        if self.check is not None:
            parts.append(f"check b-c {self.check[0] - self.check[1]:+d}")
        if self.b is not None:
            parts.append(f"b {self.b} c {self.c} bar {self.bar}")
        parts.append("WON" if self.won else self.status if self.status != "opened" else "lost")
        return "  ".join(parts)


def next_task(status: dict) -> int | None:
    """The task worth training for now: the current round's, else the first open one (None: none is open)."""
    if status.get("round_task") is not None:
        return status["round_task"]
    return next((t["task_id"] for t in status.get("tasks", ()) if t["status"] != "closed"), None)


@dataclass
class TaskState:
    """A task as the miner sees it: its public package (extension shards included) and its revealed shards."""
    task_id: int
    public: PublicTask
    revealed: list[tuple[int, bytes]]        # (task-local shard index, key), in reveal order


@dataclass
class Miner:
    """Mines every open task of the chain: each round it trains for the task the round serves (that task's
    public data + its revealed shards), checks against that task's champion, and opens with that package."""
    client: NodeClient
    keypair: Keypair
    genesis: Genesis
    family: str = "auto"
    seed: int = 0
    on_report: Callable[[RoundReport], None] | None = None
    reports: list[RoundReport] = field(default_factory=list)
    _trained: dict[tuple[int, str], tuple[int, bytes]] = field(default_factory=dict)  # (task, family) -> model
    _advantage: dict[tuple[int, str], int] = field(default_factory=dict)   # (task, family) -> last local b - c
    on_progress: Callable[[str, bool], None] | None = None   # (text, final) training progress lines
    _train_rate: dict[str, float] = field(default_factory=dict)           # family -> seconds per row, last fit
    changes: ChangeSignal | None = None   # the node's event stream: wake on events instead of polling
    closed: bool = False                  # run() stopped because no task of the chain is open
    _packages: dict[int, PublicTask] = field(default_factory=dict)          # task -> package (cached)

    async def _pause(self, polling_s: float) -> None:
        """Until the node publishes an event (SSE), or ``polling_s`` when there is no stream (fallback)."""
        if self.changes is None:
            await asyncio.sleep(polling_s)
        else:
            await self.changes.wait(self.changes.interval(polling_s))

    def _family_for(self, task_id: int = 0) -> str:
        if self.family != "auto":
            return self.family
        untried = [f for f in AUTO_FAMILIES if (task_id, f) not in self._advantage]
        if untried:
            return untried[0]
        return max(AUTO_FAMILIES, key=lambda f: (self._advantage[(task_id, f)], -AUTO_FAMILIES.index(f)))

    async def _task(self, task_id: int, min_shards: int = 0) -> TaskState:
        """The task's package (fetched again when it grew: an extension, or fewer shards than ``min_shards``)
        and its revealed shard keys."""
        info = await self.client.task_info(task_id)
        public = self._packages.get(task_id)
        if public is None or public.n_rounds < max(info["shards_total"], min_shards):
            full = await self.client.task_info(task_id, package=True)
            public = PublicTask.decode(bytes.fromhex(full["package"]))
            self._packages[task_id] = public
        revealed = [(k["shard_index"], bytes.fromhex(k["shard_key"])) for k in info["revealed"]
                    if k["shard_index"] <= public.n_rounds]
        return TaskState(task_id, public, revealed)

    async def _model_for(self, family: str, task: TaskState) -> bytes:
        """Train ``family`` on the newest RECENT_ROWS of the task's public data + revealed shards, less the half
        of the newest shard kept back for the check; cached per (task, family) until another shard is revealed."""
        key = (task.task_id, family)
        cached = self._trained.get(key)
        if cached is not None and cached[0] == len(task.revealed):
            return cached[1]
        from ml.model import encode_model
        from ml.shards import open_shard
        from ml.training import train_candidate
        g, public, revealed = self.genesis, task.public, task.revealed
        held_back = (public.shard_size + 1) // 2 if revealed else 0
        rows = min(RECENT_ROWS, len(public.training.y) + public.shard_size * len(revealed) - held_back)

        def train() -> bytes:
            shards = [open_shard(public, i, k) for i, k in revealed]
            model = train_candidate(family, public.training, split_for_check(shards)[0],
                                    seed=self.seed * 1000 + len(shards), caps=g.model_caps, recent_rows=RECENT_ROWS)
            return encode_model(model)
        progress = TrainingProgress(family, rows, self._train_rate.get(family), self.on_progress)
        async with asyncio.TaskGroup() as tg:
            ticker = tg.create_task(progress.tick()) if self.on_progress else None
            try:
                model_bytes = await asyncio.to_thread(train)
            finally:
                if ticker is not None:
                    ticker.cancel()
        self._train_rate[family] = progress.done()
        self._trained[key] = (len(revealed), model_bytes)
        return model_bytes

    async def _check(self, family: str, model_bytes: bytes, task: TaskState) -> tuple[int, int] | None:
        """(b, c) against the task's current champion on the held-back half of its most recent revealed shard."""
        if not task.revealed:
            return None
        from ml.model import decode_model
        from ml.score import paired, score
        from ml.shards import open_shard
        g, public = self.genesis, task.public
        champ = (await self.client.get("/api/champion", task=str(task.task_id)))["champion"]
        champion = await self.client.model(champ["model_hash"])

        def check() -> tuple[int, int]:
            shard = split_for_check([open_shard(public, *task.revealed[-1])])[1]
            assert shard is not None
            mine = score(decode_model(model_bytes, public.spec, g.model_caps), shard.X, shard.y).correct
            theirs = score(decode_model(champion, public.spec, g.model_caps), shard.X, shard.y).correct
            return paired(mine, theirs)
        b, c = await asyncio.to_thread(check)
        self._advantage[(task.task_id, family)] = b - c
        return b, c

    async def play_round(self, r: int, task_id: int = 0) -> RoundReport:
        report = RoundReport(r, family=self._family_for(task_id), task=task_id)
        task = await self._task(task_id)
        model = await self._model_for(report.family, task)
        report.check = await self._check(report.family, model, task)
        try:
            tpl = template_from_json(await self.client.template(self.keypair.public))
        except ApiCallError as exc:   # training outlasted the entry window: try the next round
            report.status = f"missed:{exc.code}"
            return report
        if tpl.round != r:
            report.status = "round-moved-on"
            return report
        block, entry = seal(tpl, model, self.keypair, os.urandom(32))
        try:
            await self.client.send_entry(entry.encode())
        except ApiCallError as exc:
            report.status = f"entry-refused:{exc.code}"
            return report
        found = await self._wait_beacon(r)
        if found is None or block.hash not in found[0].entries:
            report.status = "not-listed"
            return report
        beacon, activations = found
        champion = await self.client.model(tpl.champion_model_hash.hex())
        if beacon.shard_index > task.public.n_rounds:     # an extension activated with this round's notice
            task = await self._task(task_id, beacon.shard_index)
        opened = await asyncio.to_thread(open_block, block, beacon, genesis=self.genesis, champion_bytes=champion,
                                         task=task.public, activations=activations)
        from consensus.protocol.messages import RoundPayload
        payload = RoundPayload.decode(opened.payload)
        report.b, report.c, report.bar = payload.b, payload.c, payload.bar
        try:
            await self.client.send_opening(opened.encode())
            report.status = "opened"
        except ApiCallError as exc:
            report.status = f"rejected:{exc.code}"
            return report
        async with asyncio.TaskGroup() as tg:
            # shard r is public now: train next round's candidate while this round's opening window runs
            tg.create_task(self._prefetch(task_id))
            info = await self._wait_closed(r)
        winner = (info or {}).get("verdict")
        if winner:
            report.winner = winner["hash"]
            report.won = winner["hash"] == block.hash.hex()
        return report

    async def _prefetch(self, task_id: int | None) -> None:
        """Train the next candidate for ``task_id`` (no-op once the cached model is current, or no task)."""
        if task_id is None:
            return
        info = await self.client.task_info(task_id)
        if info["status"] != "closed":
            await self._model_for(self._family_for(task_id), await self._task(task_id))

    async def _wait_beacon(self, r: int, timeout: float = 120.0) -> tuple[Beacon, tuple[bytes, ...]] | None:
        """Round r's beacon and the task message bytes an opening of round r carries, or None (timeout)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    info = await self.client.round(r)
                    if info.get("beacon"):
                        return (Beacon.decode(bytes.fromhex(info["beacon"])),
                                tuple(bytes.fromhex(m) for m in info.get("activations") or ()))
                    await self._pause(POLL_S)
        except TimeoutError:
            return None

    async def _wait_closed(self, r: int, timeout: float = 120.0) -> dict | None:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    info = await self.client.round(r)
                    if info.get("status") in ("crowned", "void"):
                        return info
                    await self._pause(POLL_S * 4)
        except TimeoutError:
            return None

    async def run(self, rounds: int = 0) -> list[RoundReport]:
        """Play ``rounds`` rounds (0 = until no task of the chain is open: ``closed`` is then True). Rounds of
        every open task are played, whichever task the schedule gives them to."""
        played: set[int] = set()
        while not rounds or len(played) < rounds:
            status = await self.client.status()
            r = status["open_round"]
            if r == 0 or r in played:
                if status["round_phase"] == "closed":
                    self.closed = True
                    break
                await self._prefetch(next_task(status))
                await self._pause(POLL_S)
                continue
            played.add(r)
            try:
                report = await self.play_round(r, status.get("round_task") or 0)
            except ApiCallError as exc:     # the node refused something: report it and carry on
                report = RoundReport(r, status=f"error:{exc.code}", task=status.get("round_task") or 0)
            self.reports.append(report)
            if self.on_report:
                self.on_report(report)
        return self.reports


async def run_miner_cli(node_url: str, keypair: Keypair, *, family: str, rounds: int, as_json: bool,
                        retry_s: float = 0.0) -> int:
    """``popchain miner run``: mine until done or Ctrl-C, one line per round. A node that goes away (a restart)
    is retried for ``retry_s`` seconds with one status line on stderr; the round in play may be lost, the
    miner carries on with the next one."""
    import aiohttp
    try:
        async with NodeClient(node_url, retry_s=retry_s,
                              on_retry=lambda line: print(line, file=sys.stderr, flush=True)) as client:
            return await _mine(client, keypair, family=family, rounds=rounds, as_json=as_json)
    except aiohttp.ClientConnectionError as exc:
        print(f"popchain: error: cannot reach the node at {node_url} ({type(exc).__name__}); is it running?",
              file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"popchain: error: the node at {node_url} stopped answering (timeout)", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, OSError, ApiCallError) as exc:
        print(f"popchain: error: node {node_url}: {exc}", file=sys.stderr)
        return 1


def _progress_printer(stream) -> Callable[[str, bool], None]:
    """A live line on a terminal; only the final line of each fit otherwise (logs stay readable)."""
    live = stream.isatty()

    def show(text: str, final: bool) -> None:
        if live:
            print(f"\r{text}\033[K", end="\n" if final else "", file=stream, flush=True)
        elif final:
            print(text, file=stream, flush=True)
    return show


async def _mine(client: NodeClient, keypair: Keypair, *, family: str, rounds: int, as_json: bool) -> int:
    import json

    from chain.address import address_of, encode_address
    genesis = load_genesis(await client.genesis())
    address = encode_address(address_of(keypair.public))
    print(f"mining on {genesis.chain_id} as {address} with model family '{family}'", file=sys.stderr)

    def show(report: RoundReport) -> None:
        if not as_json and sys.stderr.isatty():
            print("\r\033[K", end="", file=sys.stderr, flush=True)   # clear a live training line first
        print(json.dumps(report.__dict__) if as_json else report.line(), flush=True)
    async with ChangeSignal(client.base_url, kinds=("round", "beacon", "verdict")) as changes:
        miner = Miner(client, keypair, genesis, family=family, seed=int.from_bytes(keypair.public[:2], "big"),
                      on_report=show, on_progress=None if as_json else _progress_printer(sys.stderr), changes=changes)
        status = await client.status()
        if status["round_phase"] == "closed":
            print(f"popchain: {NO_OPEN_TASK}", file=sys.stderr)
            return EXIT_NO_OPEN_TASK
        first_task = next_task(status)
        await miner._prefetch(first_task)
        print(f"ready: first candidate trained (task {first_task}, {miner._family_for(first_task or 0)})",
              file=sys.stderr, flush=True)
        reports = await miner.run(rounds)
    won = sum(r.won for r in reports)
    print(f"played {len(reports)} rounds, won {won}", file=sys.stderr)
    if miner.closed:
        print(f"popchain: {NO_OPEN_TASK}", file=sys.stderr)
        return EXIT_NO_OPEN_TASK
    return 0

