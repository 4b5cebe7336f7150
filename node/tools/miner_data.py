"""What a miner keeps of a task's rows, bounded whatever the number of revealed shards (issue 23 item 3).

``TaskRows`` is fed the task's revealed shard keys each round and opens only the shards it has not seen
(incremental: every shard is decrypted and decoded once). It keeps:
  * on a **stationary** task (a dataset task — its shards are a stratified random split of one table — or a
    generated task whose revealed shards share one world): the public rows and the revealed rows in one bounded
    uniform sample (a reservoir, Vitter's algorithm R, ``max_rows`` rows by default 200,000): every row seen so
    far is equally likely to be in it, so more shards keep improving the fit up to the cap, and memory stays
    flat after it;
  * on a **drifting** task (a generated task whose shard worlds differ): only the newest ``window_rows`` rows,
    since older shards describe a concept that has moved on.
Of the newest shard the second half is held back (``check``): the miner's honest estimate of how a candidate
does on the next shard and against the champion; it joins the training rows when the next shard arrives. Before
any shard is revealed the check rows are a slice of the public rows. Rows are stored as int32 (task features
are bounded by 2^31 - 1, ml.task.MAX_ABS_LIMIT), half the int64 footprint.

What it does NOT do: talk to a node, train, or decide anything consensus-relevant.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ml.shards import PublicTask, generated_world_digest, open_shard
from ml.task import Dataset
from node.tools.mining import DEFAULT_MAX_ROWS, WINDOW_ROWS

PUBLIC_CHECK_SHARE = 0.2        # before any shard is revealed: the share of public rows held back for the check
MAX_PUBLIC_CHECK = 5_000


@dataclass(frozen=True)
class TrainingSet:
    """Rows to fit on and rows to check on (never the same rows)."""
    X: np.ndarray                   # int32 (n, d)
    y: np.ndarray                   # int64 (n,)
    check: Dataset | None           # held-back rows (int64), or None when there are too few rows
    revealed: int                   # shards revealed so far (the data's version)
    stationary: bool

    def all_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Training rows plus the check rows: what the candidate actually entered is fitted on."""
        if self.check is None:
            return self.X, self.y
        return (np.concatenate([self.X, self.check.X.astype(np.int32)]),
                np.concatenate([self.y, self.check.y]))


class TaskRows:
    def __init__(self, public: PublicTask, *, max_rows: int = DEFAULT_MAX_ROWS, window_rows: int = WINDOW_ROWS,
                 seed: int = 0) -> None:
        if max_rows < 1 or window_rows < 1:
            raise ValueError("max_rows and window_rows must be positive")
        self.public = public
        self.max_rows, self.window_rows = max_rows, window_rows
        self._rng = np.random.default_rng(seed)
        self._seen: set[int] = set()             # shard indexes opened (only their count matters for memory)
        self._world: bytes | None = None         # generated tasks: the first revealed shard's world digest
        self.stationary = True
        d = public.spec.n_features
        # the reservoir (stationary), filled from the front -- starts with the public rows. np.empty maps pages
        # lazily: memory grows with the rows written, up to max_rows
        self._res_X = np.empty((max_rows, d), dtype=np.int32)
        self._res_y = np.empty(max_rows, dtype=np.int64)
        self._res_n = 0                           # slots filled
        self._res_seen = 0                        # rows ever offered to the reservoir
        self._window: deque[tuple[np.ndarray, np.ndarray]] = deque()   # drifting: newest parts, oldest first
        self._held: Dataset | None = None         # the newest shard's second half (check rows)
        pub = public.training
        n_check = min(MAX_PUBLIC_CHECK, int(len(pub) * PUBLIC_CHECK_SHARE)) if len(pub) >= 50 else 0
        order = self._rng.permutation(len(pub))
        self._public_check = pub.subset(order[:n_check]) if n_check else None
        self._offer(pub.X[order[n_check:]], pub.y[order[n_check:]])

    # ------------------------------------------------------------ feeding it

    def update(self, public: PublicTask, revealed: list[tuple[int, bytes]]) -> bool:
        """Open the newly revealed shards (index, key) in order; True if the training data changed."""
        self.public = public                      # an extension may have grown the package
        fresh = [(i, k) for i, k in revealed if i not in self._seen and i <= public.n_rounds]
        for index, key in fresh:
            shard = open_shard(public, index, key)
            if public.generated:
                digest = generated_world_digest(public, index, key)
                if self._world is None:
                    self._world = digest
                elif digest != self._world and self.stationary:
                    self._become_drifting()
            self._seen.add(index)
            if self._held is not None:            # the previous newest shard's check half: now training rows
                self._offer(self._held.X, self._held.y)
            half = len(shard) // 2
            self._offer(shard.X[:half], shard.y[:half])
            self._held = shard.subset(np.arange(half, len(shard))) if half else None
        return bool(fresh)

    def _offer(self, X: np.ndarray, y: np.ndarray) -> None:
        X = X.astype(np.int32)
        if not self.stationary:
            self._window.append((X, y))
            total = sum(len(b) for _, b in self._window)
            while self._window and total - len(self._window[0][1]) >= self.window_rows:
                total -= len(self._window.popleft()[1])
            return
        take = min(self.max_rows - self._res_n, len(y))
        self._res_X[self._res_n:self._res_n + take] = X[:take]
        self._res_y[self._res_n:self._res_n + take] = y[:take]
        self._res_n += take
        rest_X, rest_y = X[take:], y[take:]
        base = self._res_seen + take
        self._res_seen += len(y)
        if len(rest_y):   # algorithm R: the row numbered s (0-based) replaces slot j ~ U[0, s] when j < capacity
            slots = self._rng.integers(0, base + np.arange(len(rest_y)) + 1)
            keep = slots < self.max_rows
            self._res_X[slots[keep]] = rest_X[keep]
            self._res_y[slots[keep]] = rest_y[keep]

    def _become_drifting(self) -> None:
        """The concept moves: keep only the newest rows from now on (the window starts from the reservoir's
        last rows, which are the newest ones offered while it was not yet full, or a sample otherwise)."""
        self.stationary = False
        keep = min(self.window_rows, self._res_n)
        n = self._res_n
        self._window = deque([(self._res_X[n - keep:n].copy(), self._res_y[n - keep:n].copy())])
        self._res_X, self._res_y, self._res_n = self._res_X[:0].copy(), self._res_y[:0].copy(), 0

    # ------------------------------------------------------------ reading it

    @property
    def revealed(self) -> int:
        return len(self._seen)

    def rows_kept(self) -> int:
        held = len(self._held) if self._held is not None else 0
        if self.stationary:
            return self._res_n + held
        return sum(len(b) for _, b in self._window) + held

    def check_rows(self) -> Dataset | None:
        """The held-back rows: the newest shard's second half, or a slice of the public rows before any reveal."""
        return self._held if self._held is not None else self._public_check

    def training_set(self) -> TrainingSet:
        if self.stationary or not self._window:
            X, y = self._res_X[:self._res_n], self._res_y[:self._res_n]
        else:
            X = np.concatenate([a for a, _ in self._window])
            y = np.concatenate([b for _, b in self._window])
        check = self.check_rows()
        return TrainingSet(X.copy(), y.copy(), check, self.revealed, self.stationary)   # copies: fits run in a thread
