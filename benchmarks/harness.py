"""The popchain benchmark harness: runs every figure next to its raw baseline and prints one table.

Each benchmark module exposes ``run(quick: bool = False) -> list[dict]`` where every dict is a figure
``{"name", "value", "unit", "baseline", "ratio", "goal"}`` measured as the median of several runs, with the
baseline (bare pynacl, plain float64 numpy, websocket RTT, local connect rate, ...) measured in the same run.
The harness only collects, orders and prints; it holds no measurement logic of its own.
"""
from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from chain.errors import PopError

# (module, figures it is expected to produce) — the order of the printed table.
MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("benchmarks.tx_admission", ("tx_admission",)),
    ("benchmarks.block_connect", ("block_connect_5000",)),
    ("benchmarks.shards", ("shard_open_generated_13k", "genesis_task_bytes_13k")),
    ("benchmarks.scoring", ("score_linear_10k", "score_linear_10k_raw", "score_mlp_10k", "score_trees_10k",
                            "score_gbdt_10k", "sklearn_agreement")),
    ("benchmarks.network", ("relay_hop_ms", "sync_blocks_per_s", "round_latency_s")),
    ("benchmarks.load", ("e2e_tx_per_s", "relay_cpu_per_tx_ratio", "load_honest_bans", "mempool_converge_s")),
    ("benchmarks.flood", ("flood_rss_growth_mb", "flood_api_p99_ms")),
    ("benchmarks.eviction", ("eviction_newcomer_ok",)),
    ("benchmarks.liar", ("liar_sync_slowdown",)),
    ("benchmarks.fd_exhaustion", ("fd_exhaustion_survived",)),
    ("benchmarks.lan", ("netns_converge_s",)),
    ("benchmarks.living_chain", ("chain_rounds_beyond_genesis",)),
    ("benchmarks.committee", ("committee_round_latency_s", "keyholder_failover_s")),
    ("benchmarks.keyholders", ("dkg_time_s", "share_verify_us", "dealer_open_before_reveal", "sponsor_peek_gain")),
    ("benchmarks.simulation", ("sim_false_crown_round", "sim_power_1pp", "sim_copycat_share", "sim_squatter_cost",
                               "sim_champion_regressions", "sim_champion_test_acc", "sim_crowned_share",
                               "sim_wins_copy_noise", "sim_wins_copy_flip", "sim_wins_sybil_copy",
                               "sim_wins_squatter", "sim_wins_finetune", "sim_wins_late_timestamp",
                               "sim_late_timestamp_stalls")),
    ("benchmarks.sim_drift", ("demo_crowned_share_50", "champion_bayes_gap_pp", "forward_gap_pp",
                              "drift_gap_1pp_share")),
    ("benchmarks.ledger_liveness", ("tx_confirm_rounds_p99",)),
    ("benchmarks.miner_memory", ("miner_rss_growth",)),
    ("benchmarks.long_chain", ("block_cost_growth", "status_ms_at_100k")),
    ("benchmarks.prune_disk", ("disk_per_block_pruned",)),
    ("benchmarks.real_task", ("real_task_gap_pp",)),
    ("benchmarks.attacks.live_figures", ("live_censored_blocks", "live_honest_penalties", "live_stolen_crowns",
                                         "late_stamp_stall_s", "live_withheld_blocks", "live_split_recovery_s")),
    ("benchmarks.attacks.sim_figures", ("squat_cost_per_void_round", "bond_dodge_escaped_share", "slot_grind_share",
                                        "copy_crown_rate")),
    ("benchmarks.blob_fetch", ("genesis_bytes_adult", "shard_fetch_s")),
)

FIGURE_KEYS = ("name", "value", "unit", "baseline", "ratio", "goal")


def expected_figures() -> list[str]:
    return [name for _, names in MODULES for name in names]


class UnknownFigure(PopError):
    """``only`` names a figure no benchmark module produces (``popchain bench --only``): the message lists the
    known ones."""


def check_only(only: Sequence[str]) -> None:
    """UnknownFigure unless every name in ``only`` is a figure some benchmark module produces."""
    known = expected_figures()
    unknown = [name for name in only if name not in known]
    if unknown:
        raise UnknownFigure(f"--only: unknown figure{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                            f"known figures: {', '.join(known)}")


def _normalise(fig: dict[str, Any]) -> dict[str, Any]:
    """The figure's standard keys; a figure with several cases keeps them in ``fields`` (e.g.
    ``tx_confirm_rounds_p99``: ``saturated``, ``closed`` and ``committee_closed``, each with its own baseline)."""
    out = {key: fig.get(key) for key in FIGURE_KEYS}
    if fig.get("fields") is not None:
        out["fields"] = fig["fields"]
    return out


def collect(quick: bool, progress: Callable[[str], None] | None = None,
            only: Sequence[str] = ()) -> tuple[list[dict[str, Any]], list[str]]:
    """Run every benchmark module; return (figures, errors). A failing module is reported, not fatal.
    ``only`` (figure names): run just the modules that produce them — each module whole, as its figures are
    measured together — and return just those figures."""
    figures: list[dict[str, Any]] = []
    errors: list[str] = []
    for module_name, names in MODULES:
        if only and not any(n in only for n in names):
            continue
        started = time.perf_counter()
        if progress:
            progress(f"running {module_name} ({', '.join(names)}) ...")
        try:
            module = importlib.import_module(module_name)
            produced = [_normalise(f) for f in module.run(quick=quick)]
        except Exception as exc:  # noqa: BLE001 -- a broken benchmark must not hide the others' figures
            errors.append(f"{module_name}: {type(exc).__name__}: {exc}")
            continue
        figures.extend(f for f in produced if not only or f["name"] in only)
        if progress:
            progress(f"  done in {time.perf_counter() - started:.1f} s")
    return figures, errors


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    return str(value)


def format_table(figures: Sequence[dict[str, Any]]) -> str:
    header = ("figure", "value", "unit", "baseline", "ratio", "goal")
    rows = [header] + [
        (f["name"], _fmt(f["value"]), str(f["unit"] or ""), _fmt(f["baseline"]), _fmt(f["ratio"]), str(f["goal"] or ""))
        for f in figures
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) if i in (0, 2, 5) else cell.rjust(widths[i])
                               for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, *, quick: bool = False, as_json: bool = False,
         only: Sequence[str] = ()) -> int:
    check_only(only)
    figures, errors = collect(quick, progress=None if as_json else (lambda m: print(m, file=sys.stderr)), only=only)
    if as_json:
        print(json.dumps({"figures": figures, "errors": errors}, indent=2))
    else:
        print(format_table(figures))
        for err in errors:
            print(f"error: {err}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main(quick="--quick" in sys.argv, as_json="--json" in sys.argv))
