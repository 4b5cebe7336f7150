"""Inbound eviction *(policy)*: which inbound peer makes room when the inbound slots are full (PROTOCOL §4.5).

In the manner of Bitcoin Core (src/node/eviction.cpp), in our own terms: a newcomer is never refused because
the slots are full as long as some inbound peer is not protected. Protected, in this order:
- one peer from each of the 4 network groups that rank highest under a keyed hash (the key is random per
  node run: an attacker cannot tell which groups are safe);
- the 8 with the lowest ping (cannot be faked without moving closer);
- the 4 that most recently brought us a transfer new to us, and the 4 that most recently brought a block new
  to us (cannot be faked without useful work);
- half of the rest: those connected longest (an attack that starts later cannot displace them).
Of the others, peers still in their handshake go first; then the network group holding the most (ties: the
group with the youngest connection) loses its youngest connection.

A network group is an IPv4 /16 or an IPv6 /32 on public addresses, and the address itself (IPv6: its /64) on
private, loopback and link-local ones: on a LAN — where popchain runs — every host is its own group.

Pure selection: no I/O. node.connections builds the candidates from its peers and closes the one chosen.
"""
from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from node.limits import ban_key

T = TypeVar("T")

PROTECT_NETGROUPS = 4
PROTECT_PING = 8
PROTECT_TX = 4
PROTECT_BLOCK = 4


def netgroup(host: str) -> str:
    """The network group of ``host`` (see the module doc)."""
    text = host.strip("[]")
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return "name:" + host.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    local = ip.is_private or ip.is_loopback or ip.is_link_local
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip) if local else str(ipaddress.IPv4Network((ip, 16), strict=False))
    return ban_key(str(ip)) if local else str(ipaddress.IPv6Network((ip, 32), strict=False))


@dataclass(frozen=True)
class Candidate(Generic[T]):
    """What eviction weighs of one inbound peer (times are monotonic seconds; 0 = never)."""

    peer: T
    group: str
    connected: float
    min_ping_ms: float | None
    last_block: float
    last_tx: float
    handshaken: bool


def _keep_last(pool: list[Candidate[T]], order: Callable[[Candidate[T]], Any], k: int,
               eligible: Callable[[Candidate[T]], bool] = lambda c: True) -> list[Candidate[T]]:
    """Sort ``pool`` by ``order`` and protect (remove) the last ``k`` of them that are ``eligible``."""
    ranked = sorted(pool, key=order)
    protected: set[int] = set()
    for c in reversed(ranked):
        if len(protected) >= k:
            break
        if eligible(c):
            protected.add(id(c))
    return [c for c in ranked if id(c) not in protected]


def select_to_evict(candidates: Sequence[Candidate[T]], key: bytes) -> Candidate[T] | None:
    """The inbound peer to evict, or None if every candidate is protected."""
    pool = list(candidates)
    if not pool:
        return None
    # one per network group, for the groups ranking highest under the keyed hash
    rank = {g: hashlib.sha256(key + g.encode()).digest() for g in {c.group for c in pool}}
    top = sorted(rank, key=rank.__getitem__)[-PROTECT_NETGROUPS:]
    keep = {id(min((c for c in pool if c.group == g), key=lambda c: c.connected)) for g in top}
    pool = [c for c in pool if id(c) not in keep]
    inf = float("inf")
    pool = _keep_last(pool, lambda c: -(c.min_ping_ms if c.min_ping_ms is not None else inf), PROTECT_PING,
                      lambda c: c.min_ping_ms is not None)
    pool = _keep_last(pool, lambda c: (c.last_tx, -c.connected), PROTECT_TX, lambda c: c.last_tx > 0)
    pool = _keep_last(pool, lambda c: (c.last_block, -c.connected), PROTECT_BLOCK, lambda c: c.last_block > 0)
    pool = _keep_last(pool, lambda c: -c.connected, len(pool) // 2)   # the longest connected half
    if not pool:
        return None
    waiting = [c for c in pool if not c.handshaken]
    if waiting:
        pool = waiting
    groups: dict[str, list[Candidate[T]]] = {}
    for c in pool:
        groups.setdefault(c.group, []).append(c)
    crowded = max(groups.values(), key=lambda g: (len(g), max(c.connected for c in g)))
    return max(crowded, key=lambda c: c.connected)
