"""The network miner's round loop: the Miner competes for blocks through a node's HTTP API only (no local chain
state).

Each round, for the task the round serves: bring the task's rows up to date (node.tools.miner_data: each newly
revealed shard opened once; a bounded reservoir of every row on a stationary task, the newest rows on a drifting
one; the newest shard's second half held back for the check), build a candidate (node.tools.miner_models, in a
worker thread), check it against the task's champion on the held-back rows and enter it when that check gives
the crowning test even odds — or, whatever the check says, when transfers are pending (a block that does not
crown is a plain block that confirms them, PROTOCOL §3.6 step 9) —, open the block once the beacon lists it,
and report the round's verdict. On a chain whose tasks are all closed it serves the ledger rounds (issue 21).

Does not: seal, score or build payloads (consensus.mining), keep the bond account (node.tools.miner_bond),
format what it reports (node.tools.miner_report), or parse command lines (node.tools.miner).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chain.block import model_hash
from chain.crypto import Keypair
from chain.tx import Transfer
from consensus.mining import Template, open_block, seal
from consensus.protocol.genesis import Genesis
from consensus.protocol.messages import AnchorNotice, Beacon
from ml.shards import PublicTask
from node.tools.blob_cache import ensure_blobs
from node.tools.client import ApiCallError, NodeClient
from node.tools.events_client import ChangeSignal
from node.tools.miner_bond import deposit_bond, stake_text
from node.tools.miner_data import TaskRows
from node.tools.miner_models import (
    Candidate,
    CandidateSource,
    Families,
    SourceError,
    check_against,
    expects_to_pass,
)
from node.tools.miner_report import RoundReport, TrainingProgress
from node.tools.mining import DEFAULT_MAX_ROWS

POLL_S = 0.05
RESEND_S = 5.0       # an entry waiting for its beacon is sent again this often (a restarted node forgot it)
NO_OPEN_TASK = ("no task is open on this chain (every task has spent its hidden shards): nothing to mine; "
                "run the miner again once a task is announced or extended ('popchain task list')")
WAIT_ROUNDS = 3         # a closed chain: wait this many round lengths for an announced task to activate
NOBODY_GRACE_S = 0.5    # after a round's entry window: time for others' entries to show before entering anyway


def template_from_json(obj: dict) -> Template:
    b = bytes.fromhex
    return Template(obj["chain_id"], obj["height"], b(obj["prev_hash"]), obj["round"], obj["timestamp"],
                    b(obj["miner"]), tuple(Transfer.decode(b(t)) for t in obj["txs"]), b(obj["tx_root"]),
                    b(obj["state_root"]), obj["entry_bond"], b(obj["champion_model_hash"]),
                    obj.get("task_id", 0), obj.get("shard_index", 0), obj.get("stake", 0))


def next_task(status: dict) -> int | None:
    """The task worth training for now: the current round's, else the first open one (None: none is open)."""
    if status.get("round_task") is not None:
        return status["round_task"]
    return next((t["task_id"] for t in status.get("tasks", ()) if t["status"] != "closed"), None)


@dataclass
class TaskState:
    """A task as the miner sees it: its public package (extension shards included), its revealed shard keys and
    the rows the miner keeps of it."""
    task_id: int
    public: PublicTask
    revealed: list[tuple[int, bytes]]        # (task-local shard index, key), in reveal order
    rows: TaskRows


@dataclass
class Miner:
    """Mines every open task of the chain: each round it trains for the task the round serves (that task's
    public data + its revealed shards, bounded by ``max_rows``), checks against that task's champion, and enters
    only a candidate the check expects to be crowned."""
    client: NodeClient
    keypair: Keypair
    genesis: Genesis
    source: CandidateSource = field(default_factory=Families)
    seed: int = 0
    max_rows: int = DEFAULT_MAX_ROWS
    on_report: Callable[[RoundReport], None] | None = None
    reports: list[RoundReport] = field(default_factory=list)
    on_progress: Callable[[str, bool], None] | None = None   # (text, final) training progress lines
    changes: ChangeSignal | None = None   # the node's event stream: wake on events instead of polling
    closed: bool = False                  # run() stopped because no task of the chain is open
    _rows: dict[int, TaskRows] = field(default_factory=dict)               # task -> the rows kept of it
    _built: dict[int, tuple[int, Candidate]] = field(default_factory=dict)  # task -> (data version, candidate)
    _ledger_played: set[int] = field(default_factory=set)   # ledger rounds served (issue 21)
    _packages: dict[int, PublicTask] = field(default_factory=dict)          # task -> package (cached)
    _train_rate: dict[str, float] = field(default_factory=dict)           # source label -> seconds per row
    _listed: int = 1                      # entries the last beacon listed (the crowning test's m, estimated)
    enter: str = "expected"               # "expected": only candidates the check expects to pass; "always"
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)              # one build / data update at a time

    async def _pause(self, polling_s: float) -> None:
        """Until the node publishes an event (SSE), or ``polling_s`` when there is no stream (fallback)."""
        if self.changes is None:
            await asyncio.sleep(polling_s)
        else:
            await self.changes.wait(self.changes.interval(polling_s))

    async def _task(self, task_id: int, min_shards: int = 0) -> TaskState:
        """The task's package (fetched again when it grew: an extension, or fewer shards than ``min_shards``),
        its revealed shard keys, and its rows brought up to date (only new shards are opened)."""
        info = await self.client.task_info(task_id)
        public = self._packages.get(task_id)
        if public is None or public.n_rounds < max(info["shards_total"], min_shards):
            full = await self.client.task_info(task_id, package=True)
            public = PublicTask.decode(bytes.fromhex(full["package"]))
            public = await ensure_blobs(self.client, public)   # blobs (§3.15): fetched from the node once
            self._packages[task_id] = public
        revealed = [(k["shard_index"], bytes.fromhex(k["shard_key"])) for k in info["revealed"]
                    if k["shard_index"] <= public.n_rounds]
        rows = self._rows.get(task_id)
        if rows is None:
            rows = self._rows[task_id] = TaskRows(public, max_rows=self.max_rows, seed=self.seed + task_id)
        async with self._lock:
            await asyncio.to_thread(rows.update, public, revealed)
        return TaskState(task_id, public, revealed, rows)

    async def _candidate(self, task: TaskState) -> Candidate:
        """The task's candidate, built again only when its rows changed (a shard was revealed)."""
        cached = self._built.get(task.task_id)
        if cached is not None and cached[0] == task.rows.revealed:
            return cached[1]
        g = self.genesis
        async with self._lock:
            data = task.rows.training_set()
        progress = TrainingProgress(self.source.label, len(data.y), self._train_rate.get(self.source.label),
                                    self.on_progress)
        async with asyncio.TaskGroup() as tg:
            ticker = tg.create_task(progress.tick()) if self.on_progress else None
            try:
                candidate = await asyncio.to_thread(self.source.build, data, task.public.spec, g.model_caps,
                                                    self.seed * 1000 + data.revealed)
            finally:
                if ticker is not None:
                    ticker.cancel()
        self._train_rate[self.source.label] = progress.done()
        self._built[task.task_id] = (data.revealed, candidate)
        return candidate

    async def _check(self, candidate: Candidate, task: TaskState) -> tuple[tuple[int, int], float, bool] | None:
        """((b, c), odds, enter?) of the candidate against the task's champion on the held-back rows."""
        check = task.rows.check_rows()
        if check is None or len(check) == 0:
            return None
        g, public = self.genesis, task.public
        champ = (await self.client.get("/api/champion", task=str(task.task_id)))["champion"]
        champion = await self.client.model(champ["model_hash"])
        b, c = await asyncio.to_thread(check_against, candidate, champion, check, public.spec, g.model_caps)
        enter, odds = expects_to_pass(b, c, len(check), public.shard_size, min(self._listed, g.params.max_entries),
                                      g.params.alpha)
        return (b, c), odds, enter

    async def play_round(self, r: int, task_id: int = 0) -> RoundReport:
        report = RoundReport(r, task=task_id)
        task = await self._task(task_id)
        try:
            candidate = await self._candidate(task)
        except SourceError as exc:
            report.status, report.detail = "no-candidate", str(exc)
            return report
        report.family = candidate.family
        verdict = await self._check(candidate, task)
        if verdict is not None:
            report.check, report.odds, enter = verdict
        try:
            tpl = template_from_json(await self.client.template(self.keypair.public))
        except ApiCallError as exc:   # training outlasted the entry window: try the next round
            report.status = f"missed:{exc.code}"
            return report
        if verdict is not None and not enter and self.enter != "always":
            if tpl.txs:               # issue 21: a block that does not crown is a plain block: it confirms them
                report.detail = (f"the check expects no crowning; entered for a plain block that confirms "
                                 f"{len(tpl.txs)} pending transfer(s)")
            elif not await self._nobody_entered(r):
                report.status = "check-says-no"
                report.detail = "not entered: the check does not expect the crowning test to pass"
                return report
            else:
                report.detail = ("the check expects no crowning, but nobody entered and a round without entries "
                                 "waits: entered so the chain moves on (the round's shard is revealed)")
                try:
                    tpl = template_from_json(await self.client.template(self.keypair.public))
                except ApiCallError as exc:
                    report.status = f"missed:{exc.code}"
                    return report
        model = candidate.model
        if tpl.round != r:
            report.status = "round-moved-on"
            return report
        if model_hash(model) == tpl.champion_model_hash:   # §3.6 step 7: a champion's bytes never enter again
            report.status = "entry-refused:duplicate-model"
            report.detail = "the candidate is the task's champion itself: its bytes can never be entered again"
            return report
        if tpl.stake < tpl.entry_bond:          # its stake is its bond account (PROTOCOL §3.9): top it up
            report.status = await deposit_bond(self.client, self.keypair, self.genesis, tpl)
            if report.status == "no-bond":
                report.detail = await stake_text(self.client, self.keypair, tpl.entry_bond)
            return report
        block, entry = seal(tpl, model, self.keypair, os.urandom(32))
        try:
            await self.client.send_entry(entry.encode())
        except ApiCallError as exc:
            report.status = f"entry-refused:{exc.code}"
            report.detail = (await stake_text(self.client, self.keypair, tpl.entry_bond)
                             if exc.code == "insufficient-stake" else exc.message)
            return report
        found = await self._wait_beacon(r, entry=entry.encode())
        if found is None or block.hash not in found[0].entries:
            report.status = "not-listed"
            return report
        beacon, activations = found
        self._listed = max(1, len(beacon.entries))
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
            tg.create_task(self.prefetch(task_id))
            info = await self._wait_closed(r)
        winner = (info or {}).get("block")     # the round's main-chain block: crowning or plain
        if winner:
            report.winner = winner
            mine = winner == block.hash.hex()
            report.won = mine and info is not None and info.get("status") == "crowned"
            if mine and not report.won:
                report.status = "plain"      # our block anchors the round without crowning (issue 21)
        return report

    async def _nobody_entered(self, r: int) -> bool:
        """True when round r is still waiting for its first entry once its entry window is over (a round with no
        entries waits for one — the window restarts at the first entry — so if every miner held back, the chain
        would stop). The window's end is the notice's deadline (keyholder clock), at most a round length away."""
        info = await self.client.round(r)
        wait = self.round_seconds()
        if info.get("notice"):
            left = AnchorNotice.decode(bytes.fromhex(info["notice"])).entry_deadline_ms / 1000 - time.time()
            wait = min(wait, max(0.0, left) + NOBODY_GRACE_S)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            info = await self.client.round(r)
            if info.get("beacon") or info.get("status") != "open":
                return False
            if (await self.client.status())["open_round"] != r:
                return False
            await self._pause(POLL_S * 4)
        info = await self.client.round(r)
        return not info.get("beacon") and (await self.client.status())["open_round"] == r

    def built_family(self, task_id: int) -> str | None:
        """The family of the candidate last built for ``task_id`` (None: none built yet)."""
        built = self._built.get(task_id)
        return built[1].family if built else None

    async def prefetch(self, task_id: int | None) -> None:
        """Build the next candidate for ``task_id`` (no-op once the cached one is current, or no task)."""
        if task_id is None:
            return
        info = await self.client.task_info(task_id)
        if info["status"] != "closed":
            try:
                await self._candidate(await self._task(task_id))
            except SourceError as exc:
                print(f"miner: task {task_id}: {exc}", file=sys.stderr, flush=True)

    async def _wait_beacon(self, r: int, timeout: float = 120.0,
                           entry: bytes | None = None) -> tuple[Beacon, tuple[bytes, ...]] | None:
        """Round r's beacon and the task message bytes an opening of round r carries, or None (timeout). With
        ``entry``, it is sent again every RESEND_S while the round waits: a node that restarted (or went down
        before relaying it) forgot it, and a round nobody else entered would wait for it for ever."""
        sent = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    info = await self.client.round(r)
                    if info.get("beacon"):
                        return (Beacon.decode(bytes.fromhex(info["beacon"])),
                                tuple(bytes.fromhex(m) for m in info.get("activations") or ()))
                    if entry is not None and time.monotonic() - sent >= RESEND_S:
                        sent = time.monotonic()
                        with contextlib.suppress(ApiCallError):    # the same entry again: known, or refused
                            await self.client.send_entry(entry)
                    await self._pause(POLL_S)
        except TimeoutError:
            return None

    async def _wait_closed(self, r: int, timeout: float = 120.0) -> dict | None:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    info = await self.client.round(r)
                    if info.get("status") in ("crowned", "plain", "void") or (
                            info.get("status") == "idle" and info.get("final")):
                        return info
                    await self._pause(POLL_S * 4)
        except TimeoutError:
            return None

    def round_seconds(self) -> float:
        p = self.genesis.params
        return float(p.entry_window_s + p.opening_window_s)

    async def wait_for_open_task(self, status: dict) -> dict:
        """Issue 20 item 17: on a closed chain, wait up to WAIT_ROUNDS round lengths for an announced task (or an
        extension) to activate; return the latest status (still closed when none did). Meanwhile it serves
        the chain's ledger rounds (issue 21): each with transfers pending gets a plain block from this miner,
        and a round served restarts the wait (a closed chain with traffic keeps its miner)."""
        deadline = time.monotonic() + WAIT_ROUNDS * self.round_seconds() + 2.0
        while status["round_phase"] == "closed" and time.monotonic() < deadline:
            lr = status.get("ledger_round") or 0
            if lr and lr not in self._ledger_played and status.get("mempool"):
                self._ledger_played.add(lr)
                try:
                    report = await self.play_ledger_round(lr)
                except ApiCallError as exc:
                    report = RoundReport(lr, status=f"error:{exc.code}", task=-1, detail=exc.message)
                self.reports.append(report)
                if self.on_report:
                    self.on_report(report)
                deadline = time.monotonic() + WAIT_ROUNDS * self.round_seconds() + 2.0
            else:
                await self._pause(POLL_S * 4)
            status = await self.client.status()
        return status

    async def play_ledger_round(self, r: int) -> RoundReport:
        """A ledger round (every task exhausted, issue 21): enter a block with no model that confirms the
        pending transfers; it can only be a plain block (fees, no reward, no champion)."""
        report = RoundReport(r, family="ledger", task=-1)
        try:
            tpl = template_from_json(await self.client.template(self.keypair.public))
        except ApiCallError as exc:
            report.status = f"missed:{exc.code}"
            return report
        if tpl.round != r:
            report.status = "round-moved-on"
            return report
        if not tpl.txs:
            report.status = "no-transfers"
            return report
        if tpl.stake < tpl.entry_bond:
            report.status = await deposit_bond(self.client, self.keypair, self.genesis, tpl)
            return report
        block, entry = seal(tpl, b"", self.keypair, os.urandom(32))
        try:
            await self.client.send_entry(entry.encode())
        except ApiCallError as exc:
            report.status, report.detail = f"entry-refused:{exc.code}", exc.message
            return report
        found = await self._wait_beacon(r)
        if found is None or block.hash not in found[0].entries:
            report.status = "not-listed"
            return report
        beacon, activations = found
        opened = open_block(block, beacon, genesis=self.genesis, champion_bytes=b"", activations=activations)
        try:
            await self.client.send_opening(opened.encode())
            report.status = "opened"
        except ApiCallError as exc:
            report.status = f"rejected:{exc.code}"
            return report
        info = await self._wait_closed(r)
        winner = (info or {}).get("block")
        if winner:
            report.winner = winner
            if winner == block.hash.hex():
                report.status = "plain"
        report.detail = f"{len(tpl.txs)} transfer(s) in the block"
        return report

    async def run(self, rounds: int = 0) -> list[RoundReport]:
        """Play ``rounds`` rounds (0 = until no task of the chain is open: ``closed`` is then True). Rounds of
        every open task are played, whichever task the schedule gives them to."""
        played: set[int] = set()
        while not rounds or len(played) < rounds:
            status = await self.client.status()
            r = status["open_round"]
            if r == 0 or r in played:
                if status["round_phase"] == "closed":
                    status = await self.wait_for_open_task(status)
                    if status["round_phase"] == "closed":
                        self.closed = True
                        break
                await self.prefetch(next_task(status))
                await self._pause(POLL_S)
                continue
            played.add(r)
            try:
                report = await self.play_round(r, status.get("round_task") or 0)
            except ApiCallError as exc:     # the node refused something: report it and carry on
                report = RoundReport(r, status=f"error:{exc.code}", task=status.get("round_task") or 0,
                                     detail=exc.message)
            self.reports.append(report)
            if self.on_report:
                self.on_report(report)
        return self.reports
