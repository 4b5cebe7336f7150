"""The network miner: competes for blocks through a node's HTTP API only (no local chain state).

Each round, for the task the round serves: bring the task's rows up to date (node.tools.miner_data: each newly
revealed shard opened once; a bounded reservoir of every row on a stationary task, the newest rows on a drifting
one; the newest shard's second half held back for the check), build a candidate (node.tools.miner_models: the
``auto`` tournament over the built-in families with gradient-boosted trees, one family, the user's
``--trainer module:function`` or a ``--model-file``; in a worker thread), check it against the task's champion on
the held-back rows and enter it when that check gives the crowning test even odds — or, whatever the check says,
when transfers are pending (a block that does not crown is a plain block that confirms them, PROTOCOL §3.6
step 9) —, open the block once the beacon lists it, and report the round's verdict. The consensus work (sealing, scoring, payload) is
consensus.mining's; this module only drives it over the API.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chain.block import model_hash
from chain.crypto import Keypair
from chain.tx import Transfer
from consensus.mining import Template, open_block, seal
from consensus.protocol.genesis import Genesis, load_genesis
from consensus.protocol.messages import AnchorNotice, Beacon
from ml.shards import PublicTask
from node.errors import EXIT_NO_OPEN_TASK  # `miner run` stopped: no task of the chain is open
from node.tools.blob_cache import ensure_blobs
from node.tools.client import ApiCallError, NodeClient
from node.tools.events_client import ChangeSignal
from node.tools.miner_data import DEFAULT_MAX_ROWS, TaskRows
from node.tools.miner_models import (
    Candidate,
    CandidateSource,
    Families,
    ModelFile,
    SourceError,
    UserTrainer,
    check_against,
    expects_to_pass,
)

log = logging.getLogger("popchain.miner")

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


BOND_TARGET_BONDS = 8   # what `miner run` tops its bond account up to, in entry bonds, when it is short


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
    status: str = "skipped"         # skipped | bonding | no-bond | check-says-no | entry-refused:<code> |
                                    # not-listed | opened | plain (our block anchors the round, no crown) | ...
    check: tuple[int, int] | None = None   # (b, c) of the local check against the champion
    odds: float | None = None       # the check's estimated crowning probability on the round's shard
    b: int | None = None
    c: int | None = None
    bar: int | None = None
    won: bool = False
    winner: str | None = None
    task: int = 0                   # the task the round served
    detail: str = ""                # why (an entry refused, a source that failed)

    def line(self) -> str:
        parts = [f"round {self.round:>3}", f"task {self.task}", f"{self.family or '-':<7}"]
        if self.check is not None:
            parts.append(f"check b-c {self.check[0] - self.check[1]:+d}"
                         + (f" (odds {self.odds:.0%})" if self.odds is not None else ""))
        if self.b is not None:
            parts.append(f"b {self.b} c {self.c} bar {self.bar}")
        parts.append("WON" if self.won else self.status if self.status != "opened" else "lost")
        if self.detail:
            parts.append(f"-- {self.detail}")
        return "  ".join(parts)


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
            report.status = await self._deposit_bond(tpl)
            if report.status == "no-bond":
                report.detail = await self._stake_text(tpl.entry_bond)
            return report
        block, entry = seal(tpl, model, self.keypair, os.urandom(32))
        try:
            await self.client.send_entry(entry.encode())
        except ApiCallError as exc:
            report.status = f"entry-refused:{exc.code}"
            report.detail = (await self._stake_text(tpl.entry_bond) if exc.code == "insufficient-stake"
                             else exc.message)
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
            tg.create_task(self._prefetch(task_id))
            info = await self._wait_closed(r)
        winner = (info or {}).get("block")     # the round's main-chain block: crowning or plain
        if winner:
            report.winner = winner
            mine = winner == block.hash.hex()
            report.won = mine and info is not None and info.get("status") == "crowned"
            if mine and not report.won:
                report.status = "plain"      # our block anchors the round without crowning (issue 21)
        return report

    async def _deposit_bond(self, tpl: Template) -> str:
        """Send one transfer from the miner's account to its bond account (up to BOND_TARGET_BONDS bonds):
        "bonding" (it confirms with the next block; the miner enters once it has), or "no-bond" (no funds)."""
        from chain.address import address_of, encode_address
        from chain.tx import make_transfer
        from consensus.protocol.settlement import bond_of
        fee, bond_account = self.genesis.params.min_fee, bond_of(self.keypair.public)
        acct = await self.client.account(encode_address(address_of(self.keypair.public)))
        if any(p.get("recipient") == bond_account.hex() for p in acct["pending"]):
            return "bonding"
        amount = min(BOND_TARGET_BONDS * tpl.entry_bond - tpl.stake, acct["balance"] - fee)
        if amount < tpl.entry_bond - tpl.stake:
            log.warning("miner: the bond account holds %d grains, an entry needs %d, and the account cannot cover "
                        "it: fund this key", tpl.stake, tpl.entry_bond)
            return "no-bond"
        tx = make_transfer(self.keypair, self.genesis.chain_id, bond_account, amount, fee, acct["next_nonce"])
        await self.client.send_tx(tx.encode())
        log.info("miner: bond account short (%d < %d grains): deposited %d grains", tpl.stake, tpl.entry_bond, amount)
        return "bonding"

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

    async def _stake_text(self, bond: int) -> str:
        """Issue 20 item 16: say what the bond is and what this miner holds."""
        from chain.address import address_of, encode_address
        address = encode_address(address_of(self.keypair.public))
        try:
            acct = await self.client.account(address)
        except ApiCallError:
            acct = {}
        staked, bond_address = int(acct.get("bond", 0)), acct.get("bond_address", "its bond account")
        return (f"entering a round needs an entry bond of {bond:,} grains in this key's bond account, plus one per "
                f"listed entry it still owes (kept when the block is opened, PROTOCOL §3.9); {bond_address} holds "
                f"{staked:,}: send it at least {max(0, bond - staked):,} more "
                f"(popchain wallet send --to {bond_address} --amount {max(bond - staked, 1)}; the miner tops it up "
                f"from {address} itself when that holds enough)")

    async def _prefetch(self, task_id: int | None) -> None:
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
            report.status = await self._deposit_bond(tpl)
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
                await self._prefetch(next_task(status))
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


def make_source(*, family: str = "auto", trainer: str | None = None, model_file: str | None = None
                ) -> CandidateSource:
    """The candidate source ``miner run`` options ask for (SourceError in words otherwise)."""
    if trainer and model_file:
        raise SourceError("--trainer and --model-file exclude each other")
    if (trainer or model_file) and family != "auto":
        raise SourceError("--model chooses a built-in family; it cannot be combined with --trainer or --model-file")
    if trainer:
        return UserTrainer(trainer)
    if model_file:
        return ModelFile(model_file)
    return Families(family)


async def run_miner_cli(node_url: str, keypair: Keypair, *, source: CandidateSource, rounds: int, as_json: bool,
                        retry_s: float = 0.0, max_rows: int = DEFAULT_MAX_ROWS, enter: str = "expected") -> int:
    """``popchain miner run``: mine until done or Ctrl-C, one line per round. A node that goes away (a restart)
    is retried for ``retry_s`` seconds with one status line on stderr; the round in play may be lost, the
    miner carries on with the next one."""
    import aiohttp
    try:
        async with NodeClient(node_url, retry_s=retry_s,
                              on_retry=lambda line: print(line, file=sys.stderr, flush=True)) as client:
            return await _mine(client, keypair, source=source, rounds=rounds, as_json=as_json, max_rows=max_rows,
                               enter=enter)
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


async def _mine(client: NodeClient, keypair: Keypair, *, source: CandidateSource, rounds: int, as_json: bool,
                max_rows: int, enter: str) -> int:
    import json

    from chain.address import address_of, encode_address
    genesis = load_genesis(await client.genesis())
    address = encode_address(address_of(keypair.public))
    print(f"mining on {genesis.chain_id} as {address} with {source.label}", file=sys.stderr)

    def show(report: RoundReport) -> None:
        if not as_json and sys.stderr.isatty():
            print("\r\033[K", end="", file=sys.stderr, flush=True)   # clear a live training line first
        print(json.dumps(report.__dict__) if as_json else report.line(), flush=True)
    async with ChangeSignal(client.base_url, kinds=("round", "beacon", "verdict")) as changes:
        miner = Miner(client, keypair, genesis, source=source, seed=int.from_bytes(keypair.public[:2], "big"),
                      max_rows=max_rows, enter=enter, on_report=show,
                      on_progress=None if as_json else _progress_printer(sys.stderr), changes=changes)
        status = await client.status()
        if status["round_phase"] == "closed":
            print(f"no task is open yet: waiting up to {WAIT_ROUNDS} rounds ({WAIT_ROUNDS * miner.round_seconds():.0f} "
                  "s) for an announced task to activate ...", file=sys.stderr, flush=True)
            status = await miner.wait_for_open_task(status)
            if status["round_phase"] == "closed":
                print(f"popchain: {NO_OPEN_TASK}", file=sys.stderr)
                return EXIT_NO_OPEN_TASK
        first_task = next_task(status)
        await miner._prefetch(first_task)
        built = miner._built.get(first_task or 0)
        print(f"ready: first candidate trained (task {first_task}, {built[1].family if built else '-'})",
              file=sys.stderr, flush=True)
        reports = await miner.run(rounds)
    won = sum(r.won for r in reports)
    print(f"played {len(reports)} rounds, won {won}", file=sys.stderr)
    if miner.closed:
        print(f"popchain: {NO_OPEN_TASK}", file=sys.stderr)
        return EXIT_NO_OPEN_TASK
    return 0
