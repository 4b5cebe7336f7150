"""The listing of a round (PROTOCOL §3.3): which entries a beacon keeps when more than E arrive.

Entries rank by stake — the balance of the miner's bond account at the round's anchor (§3.9) — and ties in
stake break by the entry's *slot value* ``H("popchain/slot", shard key of the round, miner)``. The shard key is
secret until the beacon reveals it, so no entrant can know or steer its slot value when it enters: grinding
salts changes nothing (the header hash is not in it) and grinding keys only buys more tickets, each worth a
fair share of the tied slots. Anyone holding the beacon recomputes the order from its shard key.

``admit_ranked`` is the bounded-table rule a keyholder (or a node's relay table) applies to entries as they
arrive, before any key is known: ranks there are (stake, a local secret tie value), so what a full table keeps
of equal-stake entries is unpredictable to the entrants too, and never depends on arrival order.

What it does NOT do: read chain state (callers pass stakes), or check entries (consensus.engine).
"""
from __future__ import annotations

from collections.abc import Sequence

from chain.crypto import tagged_hash
from consensus.protocol.messages import Listing

__all__ = ["SLOT_TAG", "Rank", "admit_ranked", "select_listing", "slot_value", "tie_value"]

SLOT_TAG = "popchain/slot"
Rank = tuple[int, int]


def slot_value(shard_key: bytes, miner: bytes) -> int:
    """The round's tie-break value of a miner key (larger wins), from the round's shard key."""
    return int.from_bytes(tagged_hash(SLOT_TAG, shard_key, miner), "big")


def tie_value(secret: bytes, miner: bytes) -> int:
    """A holder-local tie value for bounded tables before the key is known (a secret ``secret`` per process)."""
    return int.from_bytes(tagged_hash("popchain/local-tie", secret, miner), "big")


def select_listing(candidates: Sequence[tuple[Listing, int]], shard_key: bytes, capacity: int) -> tuple[Listing, ...]:
    """The beacon's listing: of (listing item, stake) candidates, the ``capacity`` largest by (stake, slot
    value), sorted by header hash as a beacon lists them."""
    ranked = sorted(candidates, key=lambda c: (c[1], slot_value(shard_key, c[0][1])), reverse=True)
    return tuple(sorted(item for item, _ in ranked[:capacity]))


def admit_ranked(listed: Sequence[Rank], new: Rank, capacity: int) -> tuple[bool, int | None]:
    """(admit, index to evict) for a newcomer of rank ``new`` against the ``listed`` ranks (distinct, larger
    is better). Applied entry by entry in any arrival order, the survivors are exactly the ``capacity``
    largest ranks: the table does not depend on who came first."""
    if len(listed) < capacity:
        return True, None
    worst = min(range(len(listed)), key=listed.__getitem__)
    if new <= listed[worst]:
        return False, None
    return True, worst
