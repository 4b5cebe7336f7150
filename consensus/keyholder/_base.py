"""What every keyholder does on its own journal, whether it signs alone (``Keyholder``) or as one member of a
committee (``Member``): the entry rule of a round (PROTOCOL §3.3 — the engine's entry rule, a balance that
covers this bond and the ones the round's notice already charges the key, one entry per miner, and beyond E
entries the E largest stakes at the anchor, ties to the lower header hash, whatever the arrival order), the
settlement of the rounds since an anchor (§3.9), and when a round may reveal (§3.10: W after it opened, and
only once it has an entry; a window that ran out empty is journaled and runs W again from the first entry).

What it does NOT do: decide which round is open or sign anything (the subclasses do), or keep entries in a
format of its own (``accepted_entries`` and ``_entry_key`` are the subclass's journal).
"""
from __future__ import annotations

from collections.abc import Sequence

from chain.encoding import pack, unpack
from chain.errors import RuleError
from consensus._meta import P_WAIT, u32
from consensus.engine import Engine
from consensus.protocol.messages import MAX_SETTLE, Entry, Forfeits

__all__ = ["KeyholderBase", "Rank", "admit_ranked"]

Rank = tuple[int, int]


def admit_ranked(listed: Sequence[Rank], new: Rank, capacity: int) -> tuple[bool, int | None]:
    """(admit, index to evict) for a newcomer of rank ``new`` against the ``listed`` ranks (distinct, larger
    is better). Applied entry by entry in any arrival order, the survivors are exactly the ``capacity``
    largest ranks: the listing does not depend on who came first (§3.3)."""
    if len(listed) < capacity:
        return True, None
    worst = min(range(len(listed)), key=listed.__getitem__)
    if new <= listed[worst]:
        return False, None
    return True, worst


class KeyholderBase:
    """The round rules a keyholder applies to its engine's view and its journal (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store
        self.genesis = engine.genesis

    # ------------------------------------------------------------ the subclass's journal of entries

    def accepted_entries(self, r: int) -> list[Entry]:
        """The entries held for round r."""
        raise NotImplementedError

    def _entry_key(self, r: int, miner: bytes) -> bytes:
        """The journal key of ``miner``'s entry in round r."""
        raise NotImplementedError

    # ------------------------------------------------------------ entries

    def _rank(self, entry: Entry) -> Rank:
        """Larger is kept: stake at the anchor, then the lower header hash."""
        return (self.engine.stake(entry.miner), -int.from_bytes(entry.header_hash, "big"))

    def _keep_entry(self, entry: Entry, forfeits: Forfeits, record: bytes) -> bool:
        """The entry rule for an entry of the open round, ``forfeits`` being what the round's notice charges:
        journal ``record`` under the entry's key (synced) if it is kept, evicting the entry it outranks. True
        if kept now; RuleError if the engine's rule or the bond cover fails."""
        self.engine.check_entry(entry)
        r = entry.round
        key = self._entry_key(r, entry.miner)
        if self.store.meta_get(key) is not None:
            return False
        owed = dict(forfeits).get(entry.miner, 0)
        if self.engine.stake(entry.miner) < self.genesis.params.entry_bond * (1 + owed):
            raise RuleError("insufficient-stake", f"balance does not cover this bond and {owed} forfeited ones")
        held = self.accepted_entries(r)
        admit, evict = admit_ranked([self._rank(e) for e in held], self._rank(entry),
                                    self.genesis.params.max_entries)
        if not admit:
            return False
        changes: dict[bytes, bytes | None] = {key: record}
        if evict is not None:
            changes[self._entry_key(r, held[evict].miner)] = None
        self.store.meta_write(changes)
        return True

    # ------------------------------------------------------------ settlement and reveal time

    def settlement(self, anchor_round: int, r: int) -> tuple[list[bytes], Forfeits]:
        """(models opened, (miner, k) forfeits) over rounds anchor_round … r−1: every listed entry the
        engine saw opened records its model; every other one forfeits a bond (§3.9). Capped at MAX_SETTLE
        each (lowest first), which takes a void streak of MAX_SETTLE / E rounds to reach."""
        opened: set[bytes] = set()
        owed: dict[bytes, int] = {}
        for q in range(max(1, anchor_round), r):
            beacon = self.engine.beacon(q)
            if beacon is None:
                continue
            seen = self.engine.openings(q)
            for header_hash, miner in beacon.listed:
                if header_hash in seen:
                    opened.add(seen[header_hash][1])
                else:
                    owed[miner] = owed.get(miner, 0) + 1
        return sorted(opened)[:MAX_SETTLE], tuple(sorted(owed.items()))[:MAX_SETTLE]

    def _reveal_at(self, r: int, opened_ms: int, now_ms: int) -> int | None:
        """When round r may reveal (ms), or None while it has no entry. A window that ran out empty is
        journaled; the first step that then sees an entry starts W again, so others can still enter."""
        window = self.genesis.params.entry_window_s * 1000
        if now_ms < opened_ms + window:
            return opened_ms + window
        raw = self.store.meta_get(P_WAIT + u32(r))
        has_entries = bool(self.accepted_entries(r))
        if raw is None:
            if has_entries:
                return opened_ms + window
            self.store.meta_put(P_WAIT + u32(r), pack([0]))
            return None
        (first_ms,) = unpack(raw, max_size=32)
        if not has_entries:
            return None
        if first_ms == 0:
            first_ms = now_ms
            self.store.meta_put(P_WAIT + u32(r), pack([first_ms]))
        return first_ms + window
