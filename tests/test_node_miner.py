"""The network miner's own decisions (no node needed)."""
from __future__ import annotations

from node.tools.miner import fit_shards


def test_candidate_never_trains_on_the_shard_it_is_checked_on() -> None:
    # regression: with one revealed shard the miner used to fit on it and then "check" on it (b-c +25 locally,
    # +2 in the round), so the check reported the training fit instead of an honest estimate
    assert fit_shards(["shard1"]) == []
    assert fit_shards(["shard1", "shard2", "shard3"]) == ["shard1", "shard2"]
    assert fit_shards([]) == []
