"""The network miner's own decisions (no node needed)."""
from __future__ import annotations

import numpy as np

from ml.task import Dataset, TaskSpec
from ml.training import training_data
from node.tools.miner import RECENT_ROWS, split_for_check

SPEC = TaskSpec("t", 2, 0, ("a", "b"), max_abs=1000)


def _shard(tag: int, n: int) -> Dataset:
    return Dataset(SPEC, np.full((n, 2), tag, dtype=np.int64), np.arange(n, dtype=np.int64) % 2)


def test_candidate_never_trains_on_the_rows_it_is_checked_on() -> None:
    # regression: with one revealed shard the miner used to fit on it and then "check" on it (b-c +25 locally,
    # +2 in the round), so the check reported the training fit instead of an honest estimate
    assert split_for_check([]) == ([], None)
    for shards in ([_shard(1, 10)], [_shard(1, 10), _shard(2, 9), _shard(3, 11)]):
        fit, check = split_for_check(shards)
        assert check is not None and len(check) == len(shards[-1]) - len(shards[-1]) // 2
        newest_fit = fit[-1]
        assert len(newest_fit) + len(check) == len(shards[-1])     # the newest shard: half fit, half check
        rows = {r.tobytes() + bytes([i]) for i, r in enumerate(shards[-1].X)}
        assert len(rows) == len(shards[-1])
        assert fit[:-1] == shards[:-1]


def test_a_drifting_task_trains_on_the_newest_rows() -> None:
    """The fit keeps the newest rows (latest shard first), not a mix weighted towards the public start."""
    public, shards = _shard(0, 50), [_shard(r, 30) for r in range(1, 5)]
    X, y = training_data(public, shards, recent_rows=45)
    assert len(y) == 45 and set(X[:, 0]) == {3, 4} and (X[-30:, 0] == 4).all()
    X, _ = training_data(public, shards, recent_rows=10_000)
    assert len(X) == 50 + 4 * 30
    assert RECENT_ROWS >= 4_000
