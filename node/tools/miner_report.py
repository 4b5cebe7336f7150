"""What the network miner tells its user: one RoundReport per round (a line for people, a dict for --json)
and a TrainingProgress line while a candidate fits (a live bar on a terminal, only the final line otherwise).

Does not: decide anything about a round (node.tools.miner_loop) or print on its own (callers pass ``show``).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


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


def progress_printer(stream: TextIO) -> Callable[[str, bool], None]:
    """A live line on a terminal; only the final line of each fit otherwise (logs stay readable)."""
    live = stream.isatty()

    def show(text: str, final: bool) -> None:
        if live:
            print(f"\r{text}\033[K", end="\n" if final else "", file=stream, flush=True)
        elif final:
            print(text, file=stream, flush=True)
    return show
