"""The network miner: competes for blocks through a node's HTTP API only (no local chain state).

Each round: train a candidate (scikit-learn, in a worker thread) on the newest revealed rows (RECENT_ROWS: the
latest shards, then older ones and the public data; on a drifting task the concept has moved on from old
shards), holding back the second half of the most recent shard, check it against the champion on that half, enter the round with a sealed
entry, open the block once the beacon lists it, and report the round's verdict. The consensus work (sealing,
scoring, payload) is consensus.miner's; this module only drives it over the API.
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
from consensus.genesis import Genesis, load_genesis
from consensus.messages import Beacon
from consensus.miner import open_block, seal
from consensus.template import Template
from ml.task import Dataset
from node.tools.client import ApiCallError, NodeClient
from node.tools.events_client import ChangeSignal

log = logging.getLogger("popchain.miner")

AUTO_FAMILIES = ("forest", "mlp", "extra", "linear")
POLL_S = 0.05


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

    def line(self) -> str:
        parts = [f"round {self.round:>3}", f"{self.family or '-':<7}"]
        if self.check is not None:
            parts.append(f"check b-c {self.check[0] - self.check[1]:+d}")
        if self.b is not None:
            parts.append(f"b {self.b} c {self.c} bar {self.bar}")
        parts.append("WON" if self.won else self.status if self.status != "opened" else "lost")
        return "  ".join(parts)


@dataclass
class Miner:
    client: NodeClient
    keypair: Keypair
    genesis: Genesis
    family: str = "auto"
    seed: int = 0
    on_report: Callable[[RoundReport], None] | None = None
    reports: list[RoundReport] = field(default_factory=list)
    _trained: dict[str, tuple[int, bytes]] = field(default_factory=dict)   # family -> (n shards, model)
    _advantage: dict[str, int] = field(default_factory=dict)              # family -> last local b - c
    on_progress: Callable[[str, bool], None] | None = None   # (text, final) training progress lines
    _train_rate: dict[str, float] = field(default_factory=dict)           # family -> seconds per row, last fit
    changes: ChangeSignal | None = None   # the node's event stream: wake on events instead of polling

    async def _pause(self, polling_s: float) -> None:
        """Until the node publishes an event (SSE), or ``polling_s`` when there is no stream (fallback)."""
        if self.changes is None:
            await asyncio.sleep(polling_s)
        else:
            await self.changes.wait(self.changes.interval(polling_s))

    def _family_for(self, r: int) -> str:
        if self.family != "auto":
            return self.family
        untried = [f for f in AUTO_FAMILIES if f not in self._advantage]
        if untried:
            return untried[0]
        return max(AUTO_FAMILIES, key=lambda f: (self._advantage[f], -AUTO_FAMILIES.index(f)))

    async def _revealed(self) -> list[tuple[int, bytes]]:
        task = await self.client.task()
        return [(k["round"], bytes.fromhex(k["shard_key"])) for k in task["revealed"]]

    async def _model_for(self, family: str, revealed: list[tuple[int, bytes]]) -> bytes:
        """Train ``family`` on the newest RECENT_ROWS of public data + revealed shards, less the half of the
        newest shard kept back for the check; cached per family until another shard is revealed."""
        cached = self._trained.get(family)
        if cached is not None and cached[0] == len(revealed):
            return cached[1]
        from ml.model import encode_model
        from ml.shards import open_shard
        from ml.training import train_candidate
        g = self.genesis
        held_back = (g.task.shard_size + 1) // 2 if revealed else 0
        rows = min(RECENT_ROWS, len(g.task.training.y) + g.task.shard_size * len(revealed) - held_back)

        def train() -> bytes:
            shards = [open_shard(g.task, r, key) for r, key in revealed]
            model = train_candidate(family, g.task.training, split_for_check(shards)[0],
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
        self._trained[family] = (len(revealed), model_bytes)
        return model_bytes

    async def _check(self, family: str, model_bytes: bytes,
                     revealed: list[tuple[int, bytes]]) -> tuple[int, int] | None:
        """(b, c) against the current champion on the held-back half of the most recent revealed shard."""
        if not revealed:
            return None
        from ml.model import decode_model
        from ml.score import paired, score
        from ml.shards import open_shard
        g = self.genesis
        champion = await self.client.model((await self.client.champion())["champion"]["model_hash"])

        def check() -> tuple[int, int]:
            shard = split_for_check([open_shard(g.task, *revealed[-1])])[1]
            assert shard is not None
            mine = score(decode_model(model_bytes, g.task.spec, g.model_caps), shard.X, shard.y).correct
            theirs = score(decode_model(champion, g.task.spec, g.model_caps), shard.X, shard.y).correct
            return paired(mine, theirs)
        b, c = await asyncio.to_thread(check)
        self._advantage[family] = b - c
        return b, c

    async def play_round(self, r: int) -> RoundReport:
        report = RoundReport(r, family=self._family_for(r))
        revealed = await self._revealed()
        model = await self._model_for(report.family, revealed)
        report.check = await self._check(report.family, model, revealed)
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
        beacon = await self._wait_beacon(r)
        if beacon is None or block.hash not in beacon.entries:
            report.status = "not-listed"
            return report
        champion = await self.client.model(tpl.champion_model_hash.hex())
        opened = await asyncio.to_thread(open_block, block, beacon, genesis=self.genesis, champion_bytes=champion)
        from consensus.messages import RoundPayload
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
            tg.create_task(self._prefetch(r + 1))
            info = await self._wait_closed(r)
        winner = (info or {}).get("verdict")
        if winner:
            report.winner = winner["hash"]
            report.won = winner["hash"] == block.hash.hex()
        return report

    async def _prefetch(self, next_round: int) -> None:
        if next_round <= self.genesis.n_rounds:
            await self._model_for(self._family_for(next_round), await self._revealed())

    async def _wait_beacon(self, r: int, timeout: float = 120.0) -> Beacon | None:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = (await self.client.round(r)).get("beacon")
                    if raw:
                        return Beacon.decode(bytes.fromhex(raw))
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
        """Play ``rounds`` rounds (0 = until the chain's shards run out)."""
        played: set[int] = set()
        while not rounds or len(played) < rounds:
            status = await self.client.status()
            r = status["open_round"]
            if r == 0 or r in played:
                if status["round"] >= self.genesis.n_rounds and status["round_phase"] in ("crowned", "void"):
                    break
                await self._prefetch(status["round"] + 1)   # no-op once the cached model is current
                await self._pause(POLL_S)
                continue
            played.add(r)
            try:
                report = await self.play_round(r)
            except ApiCallError as exc:     # the node refused something: report it and carry on
                report = RoundReport(r, status=f"error:{exc.code}")
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
        await miner._prefetch(status["round"] + 1)
        print(f"ready: first candidate trained ({miner._family_for(status['round'] + 1)})", file=sys.stderr,
              flush=True)
        reports = await miner.run(rounds)
    won = sum(r.won for r in reports)
    print(f"played {len(reports)} rounds, won {won}", file=sys.stderr)
    return 0

