"""Bounded helpers for peer policy *(policy)*: token buckets, bounded LRU sets/maps, misbehaviour scores, and
the address a peer is judged by (``ban_key``: its IP, an IPv6 peer's /64 — never a port it advertises)."""
from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Hashable, KeysView
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take`` never blocks (the caller decides what to do)."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def take_debt(self, now: float, cost: float) -> bool:
        """Take ``cost`` if any token is left, going into debt for the rest (for costs above the burst, like a
        large block): the next take waits until the debt is paid back at ``rate``."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens > 0:
            self.tokens -= cost
            return True
        return False

    def refund(self, cost: float) -> None:
        """Give back what ``take`` took for something that did not happen after all."""
        self.tokens = min(self.burst, self.tokens + cost)


class BoundedSet(Generic[K]):
    """A set that forgets its oldest members beyond ``cap`` (per-peer known inventory, seen-recently filters)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._items: OrderedDict[K, None] = OrderedDict()

    def add(self, key: K) -> None:
        self._items[key] = None
        self._items.move_to_end(key)
        while len(self._items) > self.cap:
            self._items.popitem(last=False)

    def discard(self, key: K) -> None:
        self._items.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def members(self) -> KeysView[K]:
        """A live read-only view for membership tests in hot loops (``key in view`` without a Python call)."""
        return self._items.keys()

    def __len__(self) -> int:
        return len(self._items)


class BoundedMap(Generic[K, V]):
    """A dict that drops its oldest entries beyond ``cap``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._items: OrderedDict[K, V] = OrderedDict()

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.cap:
            self._items.popitem(last=False)

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def pop(self, key: K) -> V | None:
        return self._items.pop(key, None)

    def items(self) -> list[tuple[K, V]]:
        return list(self._items.items())

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def members(self) -> KeysView[K]:
        """A live read-only view of the keys, for membership tests in hot loops."""
        return self._items.keys()

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class Offence:
    """How bad a peer behaviour is. score ≥ BAN_SCORE: disconnect + discourage (Core: a protocol violation = gone)."""

    reason: str
    score: int


BAN_SCORE = 100
DISCOURAGE_SECONDS = 24 * 3600.0

# protocol violations: one is enough
MALFORMED = Offence("malformed-frame", 100)
OVERSIZE = Offence("oversize-frame", 100)
WRONG_CHAIN = Offence("wrong-chain", 100)
INVALID_BLOCK = Offence("invalid-block", 100)
INVALID_OBJECT = Offence("invalid-object", 100)
BAD_HANDSHAKE = Offence("bad-handshake", 100)
# soft offences: accumulate
UNSOLICITED = Offence("unsolicited", 10)
STALE_OBJECT = Offence("stale-object", 1)
FLOOD = Offence("flood", 20)
STALL = Offence("stall", 50)


def ban_key(host: str) -> str:
    """What discouragement, bans and the per-IP inbound cap are keyed by: the remote IP (an IPv4-mapped IPv6
    address as IPv4), an IPv6 peer's /64 (one customer's allocation: a fresh address per connection must not
    evade a ban). Never a port: ports are free to choose, and advertised ones are not even checked. A host that
    is not an IP literal (a name from --peer or config) is keyed by its lower-cased name."""
    text = host.strip("[]")
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return host.lower()
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
