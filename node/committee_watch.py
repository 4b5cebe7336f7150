"""Watching a keyholder committee from any node (PROTOCOL §3.10 liveness, §3.14 accountability) *(policy)*:
which members this node heard from lately, whether at least the threshold of them are reachable, and which
member released no share in a round that revealed.

Every valid committee message a node relays (a member's heartbeat every ``HEARTBEAT_S``, its proposals,
co-signatures and releases) marks its signer as seen; a member unheard for ``REACH_S`` is unreachable. Below the
threshold no round can reveal: the node says so in a warning log line (on the transition, and again on
recovery), ``popchain_committee_reachable`` / ``popchain_committee_below_threshold`` and ``/api/status``
``committee``. A round that revealed while this node watched, in which a member sent no RELEASE before the
next round opened, counts against that member (``EngineApi.record_missed_release``, shown per member).

What it does NOT do: judge messages (consensus, through the relay) or decide anything: it observes and
reports.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from consensus.engine import EngineApi
from node.metrics import Metrics
from node.worker import EngineWorker

log = logging.getLogger("popchain.committee")

HEARTBEAT_S = 2.0          # a member says "I am up" this often
REACH_S = 3 * HEARTBEAT_S  # unheard for longer: unreachable
MAX_ROUNDS_WATCHED = 16


class CommitteeWatch:
    def __init__(self, keyholders: Sequence[bytes], threshold: int, metrics: Metrics, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keyholders = tuple(keyholders)
        self.threshold = threshold
        self.metrics = metrics
        self.clock = clock
        self.started = clock()
        self.last_seen: dict[bytes, float] = {}
        self.me: bytes | None = None                  # a member node counts itself
        self.releases: dict[int, set[bytes]] = {}     # round -> members seen releasing for it
        self.first_round: int | None = None           # rounds before this one were not watched whole
        self.judged_to = 0                            # rounds up to this one were judged for missed releases
        self.below = False
        self.missed: dict[int, tuple[int, int]] = {}  # member (1-based) -> (count, last round): the engine's
        metrics.gauge("popchain_committee_reachable", lambda: float(self.reachable()),
                      "keyholder-committee members heard from in the last REACH_S seconds")
        metrics.gauge("popchain_committee_below_threshold", lambda: float(self.below),
                      "1 while fewer than the threshold of members are reachable (no round can reveal)")

    # ------------------------------------------------------------ observations

    def seen(self, signer: bytes) -> None:
        if signer in self.keyholders:
            self.last_seen[signer] = self.clock()

    def released(self, r: int, signer: bytes) -> None:
        self.releases.setdefault(r, set()).add(signer)
        for old in [q for q in self.releases if q + MAX_ROUNDS_WATCHED < r]:
            del self.releases[old]

    def reachable_members(self) -> list[bytes]:
        now = self.clock()
        return [k for k in self.keyholders
                if k == self.me or now - self.last_seen.get(k, float("-inf")) <= REACH_S]

    def reachable(self) -> int:
        return len(self.reachable_members())

    # ------------------------------------------------------------ the periodic check

    async def tick(self, worker: EngineWorker, engine: EngineApi) -> None:
        """Transitions below/above the threshold (after a start-up grace of REACH_S), and missed releases of
        the rounds that revealed since the last tick."""
        now = self.clock()
        n = self.reachable()
        below = n < self.threshold and now - self.started > REACH_S
        if below and not self.below:
            log.warning("committee: only %d of %d keyholders reachable, threshold %d: no round can reveal until "
                        "more come back", n, len(self.keyholders), self.threshold)
        elif self.below and not below:
            log.warning("committee: %d of %d keyholders reachable again (threshold %d)", n, len(self.keyholders),
                        self.threshold)
        self.below = below
        current = await worker.call(engine.current_round)
        if self.first_round is None:
            self.first_round = current + 1
            self.judged_to = current
            self.missed = await worker.call(engine.missed_releases)
            return
        for r in range(max(self.judged_to + 1, self.first_round), current):
            beacon = await worker.call(engine.beacon, r)
            self.judged_to = r
            if beacon is None:
                continue          # nothing was released in a round that revealed nothing
            seen = self.releases.get(r, set())
            for i, k in enumerate(self.keyholders, start=1):
                if k not in seen and await worker.call(engine.record_missed_release, r, i):
                    self.metrics.inc("popchain_committee_missed_releases_total", member=str(i))
                    log.warning("committee: keyholder %d (%s) released no share in round %d", i, k.hex()[:16], r)
        self.missed = await worker.call(engine.missed_releases)

    def info(self) -> dict[str, Any]:
        """The committee's liveness as this node sees it (``/api/status`` ``committee``)."""
        now = self.clock()
        reach = set(self.reachable_members())
        members = []
        for i, k in enumerate(self.keyholders, start=1):
            seen = self.last_seen.get(k)
            count, last = self.missed.get(i, (0, 0))
            members.append({"member": i, "pubkey": k.hex(), "reachable": k in reach,
                            "last_seen_s": None if seen is None else round(now - seen, 3),
                            "missed_releases": count, "last_missed_round": last or None})
        return {"n": len(self.keyholders), "threshold": self.threshold, "reachable": len(reach),
                "below_threshold": len(reach) < self.threshold, "members": members}
