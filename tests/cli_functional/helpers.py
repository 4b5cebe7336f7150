"""Helpers the functional CLI tests share: the ``covers`` registry (which leaf command each test exercises, read by
test_80_coverage.py) and ``crowned`` (wait for crowned rounds of a task).

Does not: start anything (conftest.py owns the network) or assert on a command's output.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.cli_net import Net
from tests.test_cli_e2e import ROOT

COVERED: dict[str, list[str]] = {
    # heavy commands run once in test_cli_e2e.py (kept out of this package's time budget)
    "demo": ["tests/test_cli_e2e.py::test_demo_runs_and_leaves_no_process"],
    "bench": ["tests/test_cli_e2e.py::test_bench_quick_json_emits_every_figure"],
    # a keyholder committee's ceremony runs among real processes in its own module (issue 24)
    "keyholder new": ["tests/test_node_keyholders.py::test_the_ceremony_runs_among_real_keyholder_processes"],
    "keyholder dkg-board": ["tests/test_node_keyholders.py::test_the_ceremony_runs_among_real_keyholder_processes"],
    "keyholder dkg": ["tests/test_node_keyholders.py::test_the_ceremony_runs_among_real_keyholder_processes"],
    "keyholder pubkey": ["tests/cli_functional/test_10_walkthrough.py::test_the_readme_walkthrough_ran_verbatim"],
}


def covers(*commands: str) -> Callable:
    """Register the decorated test as covering ``commands`` (as ``path::name``, path from the repository root)."""
    def mark(fn: Callable) -> Callable:
        path = Path(fn.__code__.co_filename).resolve().relative_to(ROOT).as_posix()
        for c in commands:
            COVERED.setdefault(c, []).append(f"{path}::{fn.__name__}")
        return fn
    return mark


def crowned(n: Net, task: int | None = None, at_least: int = 1) -> list[dict]:
    q = "" if task is None else f"?task={task}"
    n.wait(lambda: len([r for r in n.get(f"/api/champion{q}")["history"] if r["round"]]) >= at_least,
           f"{at_least} crowned round(s)" + (f" of task {task}" if task is not None else ""))
    return [r for r in n.get(f"/api/champion{q}")["history"] if r["round"]]
