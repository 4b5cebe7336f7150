"""`popchain bench --only NAME[,NAME...]`: the figure selector. An unknown (or empty) selection is one line on
stderr naming the known figures; a known one runs only the module that produces it and prints only that
figure, with --quick and --json. The cheapest figure is measured (benchmarks.shards, a few seconds); the whole
harness runs in tests/test_cli_e2e.py."""
from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli_e2e import assert_one_line_error, popchain


def test_bench_only_refuses_unknown_figures_and_names_the_known_ones(tmp_path: Path) -> None:
    proc = popchain("bench", "--only", "genesis_task_bytes_13k,no_such_figure", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert_one_line_error(proc, "unknown figure no_such_figure; known figures: tx_admission, ")
    assert "genesis_task_bytes_13k" in proc.stderr           # listed among the known ones, not as unknown
    assert_one_line_error(popchain("bench", "--quick", "--only", " , ", cwd=tmp_path, check=False),
                          "at least one figure name")


def test_bench_only_quick_json_measures_just_the_named_figure(tmp_path: Path) -> None:
    proc = popchain("bench", "--quick", "--json", "--only", "genesis_task_bytes_13k", cwd=tmp_path, timeout=600)
    data = json.loads(proc.stdout)
    assert data["errors"] == []
    [fig] = data["figures"]          # benchmarks.shards makes two figures: only the one asked for is shown
    assert fig["name"] == "genesis_task_bytes_13k" and fig["value"] is not None and fig["baseline"] is not None
