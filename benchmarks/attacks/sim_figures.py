"""The in-process attack figures of ``popchain bench`` (issue 18), each beside its same-run baseline:

- ``squat_cost_per_void_round``: the past-cap squatter (> 1,100 keys, ≥ 200 void rounds at E = 16 in full mode);
  baseline: the naive squatter (the same E keys every round) over the same rounds. Goal ≥ 1.
- ``bond_dodge_escaped_share``: bonds a dodger's squatting keys forfeited but were not charged for, having spent
  their balance in a block of the dodger's own; baseline: none (an honest entrant forfeits nothing). Goal 0.
- ``slot_grind_share``: the equal-stake salt grinder's share of the listed slots (1,000 salts per entry) ÷ its
  fair share — the share the same keys get in the same rounds with one salt each (the chain's slot lottery,
  identical but for the grinding); baseline: the share ÷ the grinder's key fraction. Goal ≤ 1.1.
- ``copy_crown_rate``: the exact per-round crowning probability of 16 tied near-copies of the champion (5 %
  disagreement, the default 13,121-row shard, α = 1/20, the 75 bp margin), computed in integers
  (consensus.protocol.stats.copy_crown_exact: a rigorous upper bound); baseline: the same without the margin
  (the rule until issue 18). Simulated checks in the goal text: a Monte Carlo on the real ``crowns`` function
  (benchmarks.sim_rule.copy_crown) and the sybil's real rounds (16 listed, drifting default task, ≥ 200 rounds in
  full mode: rounds in which its opened copy passed the test). Goal ≤ 0.001.

``--quick`` sizes: squatter E = 256 for 6 rounds (1,280 keys: the same 1,024-entry cap, passed in 4 rounds),
grinder 12 rounds at E = 4, copies 12 rounds on 3,264-row shards.
"""
from __future__ import annotations

import sys
from typing import Any

from benchmarks.attacks import copycat, grinder, squatter
from benchmarks.sim_rule import copy_crown
from benchmarks.simulation import DEFAULT_SHARD_ROWS
from consensus.protocol.genesis import GenesisParams
from consensus.protocol.stats import copy_crown_exact
from node.tools.sizing import COPY_D


def run(quick: bool = False) -> list[dict[str, Any]]:
    cfg = squatter.QUICK if quick else squatter.FULL
    naive, past = squatter.squat(cfg, "naive"), squatter.squat(cfg, "past-cap")
    d = squatter.dodge(1 if quick else 3)
    gcfg = grinder.QUICK if quick else grinder.FULL
    fair, ground = grinder.grind(gcfg, 1), grinder.grind(gcfg)
    copies = copycat.copy_rounds(12, shard_size=3_264) if quick else copycat.copy_rounds(200)
    params = GenesisParams()
    rows = DEFAULT_SHARD_ROWS
    exact = float(copy_crown_exact(rows, COPY_D, params.max_entries, params.alpha, params.min_gain_bp)[1])
    without = float(copy_crown_exact(rows, COPY_D, params.max_entries, params.alpha, 0)[1])
    mc = copy_crown(rows, trials=20_000 if quick else 200_000)
    return [
        {"name": "squat_cost_per_void_round", "value": past.cost_per_void_round, "unit": "rewards",
         "baseline": naive.cost_per_void_round,
         "ratio": past.cost_per_void_round / naive.cost_per_void_round if naive.cost_per_void_round else None,
         "goal": f">= 1; {past.keys} keys, E = {cfg.max_entries}, {past.voided} void rounds: burnt "
                 f"{past.burnt:,} of {past.listed_unopened * past.entry_bond:,} grains owed (charged "
                 f"{past.charged_share:.3f}); naive ({naive.keys} keys) {naive.cost_per_void_round:.3f}"},
        {"name": "bond_dodge_escaped_share", "value": d.escaped_share, "unit": "share", "baseline": 0.0,
         "ratio": None,
         "goal": f"0; {d.forfeited} bonds forfeited in {d.rounds} rounds, {d.charged:,} grains charged, "
                 f"{d.unsettled} in rounds not settled yet (owed, not escaped); honest "
                 f"entries shut out {d.shut_out}; the dodger crowned {d.crowned_by_dodger}"},
        {"name": "slot_grind_share", "value": round(ground.share / fair.share, 4) if fair.share else None,
         "unit": "x fair", "baseline": round(ground.ratio, 4), "ratio": None,
         "goal": f"<= 1.1; the grinder's share of the contested slots with {gcfg.tries} salts/entry ÷ the same keys' "
                 f"share in the same rounds with one salt (its fair share of this chain's slot lottery): "
                 f"{ground.share:.3f} / {fair.share:.3f}; identical listings: {ground.listings == fair.listings}; "
                 f"{gcfg.grinder_keys} grinder + {gcfg.honest_keys} honest keys of equal stake for "
                 f"{gcfg.max_entries} slots, {ground.contested} contested rounds; baseline: share ÷ key fraction "
                 f"{ground.fair:.3f} (the lottery's noise)"},
        {"name": "copy_crown_rate", "value": round(exact, 6), "unit": "per round", "baseline": round(without, 6),
         "ratio": exact / without if without else None,
         "goal": f"<= 0.001; exact (integers) for 16 copies at {float(COPY_D):.0%} disagreement, {rows} rows, margin "
                 f"{params.min_gain_bp} bp (baseline: no margin); Monte Carlo {mc.summary}; the sybil's real "
                 f"rounds (drifting task, {copies.shard_size} rows): a copy passed in {copies.passed}/{copies.rounds}, "
                 f"crowned {copies.crowned}, honest passed {copies.honest_passed}, strongest copy {copies.worst}"},
    ]


if __name__ == "__main__":
    from benchmarks.harness import format_table
    print(format_table(run(quick="--quick" in sys.argv)))
