"""The round simulator's honest miner as users run it: `popchain miner run --model auto` (issue 21 figures).

``UserMiner`` keeps its rows exactly as the real miner does (node.tools.miner_data.TaskRows: on a stationary
task every public and revealed row in a ``--max-rows`` reservoir; on a drifting one the newest WINDOW_ROWS rows;
the newest shard's second half held back as the check) and builds its candidate with the real miner's source
(node.tools.miner_models.Families, ``auto``: the family tournament re-run every TOURNAMENT_EVERY shards, the
winner refitted in between, the entered model refitted on the check rows too). Same seeds as the miner: rows
sampled with ``seed``, models fitted with ``seed * 1000 + shards revealed``. It enters every round (the real
miner's ``--enter always``): whether an entry crowns is the Engine's decision, not the miner's estimate.

What it does NOT do: talk to a node, or train in any way the real miner does not.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.sim_attackers import Proposal, RoundView, SimMiner
from ml.task import TaskSpec
from node.tools.miner_data import TaskRows
from node.tools.miner_models import Candidate, Families
from node.tools.mining import DEFAULT_MAX_ROWS


@dataclass
class UserMiner(SimMiner):
    """An honest miner running node.tools' training code (``--model auto``, ``--max-rows max_rows``)."""
    max_rows: int = DEFAULT_MAX_ROWS
    kind: str = "honest"
    last: Candidate | None = None
    _rows: TaskRows | None = None
    _spec: TaskSpec | None = None      # the first package's spec object: Families keys its tournament by it
    _source: Families = field(default_factory=Families)

    def propose(self, view: RoundView) -> list[Proposal]:
        if view.package is None:
            raise ValueError("UserMiner needs the round's task package (RoundView.package)")
        if self._rows is None or self._spec is None:
            self._rows = TaskRows(view.package, max_rows=self.max_rows, seed=self.seed)
            self._spec = view.package.spec
        rows = self._rows
        if rows.update(view.package, list(view.shard_keys)) or self.last is None:
            data = rows.training_set()
            self.last = self._source.build(data, self._spec, view.genesis.model_caps,
                                           self.seed * 1000 + data.revealed)
        return [Proposal(self.keys[0], self.last.model)]
