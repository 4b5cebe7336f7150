"""Outbound dialling schedule *(policy)*: exponential backoff with jitter, per address, for the node's life.

Pure bookkeeping (no I/O): the node asks ``due`` which known addresses to dial now and reports each outcome.
Every address in the peer book keeps being retried, ever more rarely (BASE_S · 2^failures, capped at MAX_S,
times a uniform jitter in [0.5, 1.5) so that nodes that lost the same peer do not all come back at once).
An address that refused us (we are discouraged there, or it is full) counts as REFUSED_PENALTY failures.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

BASE_S = 0.5
MAX_S = 60.0
REFUSED_PENALTY = 4
MAX_TRACKED = 2000


@dataclass
class DialState:
    failures: int = 0
    next_try: float = 0.0


class Dialer:
    def __init__(self, rng: Callable[[], float] = random.random, base_s: float = BASE_S, max_s: float = MAX_S) -> None:
        self.rng = rng
        self.base_s = base_s
        self.max_s = max_s
        self.state: dict[tuple[str, int], DialState] = {}

    def delay(self, failures: int) -> float:
        jitter: float = 0.5 + self.rng()
        return min(self.max_s, self.base_s * 2.0 ** min(failures, 30)) * jitter

    def next_delay(self, addr: tuple[str, int]) -> float:
        return max(0.0, self.state.get(addr, DialState()).next_try)

    def failed(self, addr: tuple[str, int], now: float, refused: bool = False) -> float:
        """Record a failed dial (or a connection that ended before the handshake); returns the wait."""
        st = self.state.setdefault(addr, DialState())
        st.failures += REFUSED_PENALTY if refused else 1
        wait = self.delay(st.failures)
        st.next_try = now + wait
        self._trim()
        return wait

    def succeeded(self, addr: tuple[str, int], now: float) -> float:
        """A connection that passed the handshake ended: retry soon (with jitter), from scratch."""
        st = self.state.setdefault(addr, DialState())
        st.failures = 0
        wait = self.delay(0)
        st.next_try = now + wait
        return wait

    def is_due(self, addr: tuple[str, int], now: float) -> bool:
        st = self.state.get(addr)
        return st is None or st.next_try <= now

    def _trim(self) -> None:
        if len(self.state) > MAX_TRACKED:
            for addr, _ in sorted(self.state.items(), key=lambda kv: kv[1].next_try)[: len(self.state) - MAX_TRACKED]:
                del self.state[addr]
