"""What every keyholder does on its own journal, whether it signs alone (``Keyholder``) or as one member of a
committee (``Member``):

- the entry rule of a round (PROTOCOL §3.3): the engine's entry rule, a bond account that covers this bond
  and every bond the key still owes (its unopened listings in rounds no block has settled yet), a model the key
  may be crowned with (``check_claim``: not first listed by another key, unsettled rounds included), one entry
  per miner; the journal keeps at most MAX_CANDIDATES entries — the largest stakes, ties by a value secret to
  this keyholder — whatever the arrival order;
- the listing (§3.3): of the candidates, the E largest stakes, ties by the slot value of the round's shard key
  (consensus.protocol.listing), which no entrant knows before the beacon;
- the settlement (§3.9): every listed entry of the rounds since the last settled one, as records, whole rounds
  only and at most MAX_SETTLE records (a longer void streak carries over to the next block: nothing is dropped);
- the open time of a round (§3.7 liveness): at least 1 s after its anchor's reveal (genesis: its timestamp) —
  never after a time a miner chose;
- when a round may reveal (§3.10): W after it opened, and only once it has an entry; a window that ran out
  empty is journaled and runs W again from the first entry.

What it does NOT do: decide which round is open or sign anything (the subclasses do), or keep entries in a
format of its own (``accepted_entries`` and ``_entry_key`` are the subclass's journal).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from chain.block import Header
from chain.encoding import pack, unpack
from chain.errors import RuleError
from consensus._meta import P_WAIT, u32
from consensus.engine import Engine
from consensus.protocol.listing import Rank, admit_ranked, select_listing, tie_value
from consensus.protocol.messages import (
    MAX_BEACON_ENTRIES,
    MAX_SETTLE,
    Entry,
    Listed,
    Record,
    RoundPayload,
    Settlement,
    make_settlement,
)

__all__ = ["MAX_CANDIDATES", "KeyholderBase", "Rank", "admit_ranked", "settle_window"]

MAX_CANDIDATES = MAX_BEACON_ENTRIES    # entries a keyholder journals per round (a committee draft lists them)


def settle_window(first: int, r: int, records_of: Callable[[int], list[Record]], cap: int
                  ) -> tuple[int, list[Record]]:
    """(last round, records) of a settlement from round ``first``: whole rounds, in order, up to r − 1 or until
    the next round's records would pass ``cap`` (the rest is the next block's window; a round alone always fits
    since a beacon lists at most MAX_BEACON_ENTRIES ≤ MAX_SETTLE)."""
    last, records = first - 1, list[Record]()
    for q in range(first, r):
        recs = records_of(q)
        if len(records) + len(recs) > cap:
            break
        records += recs
        last = q
    return last, records


class KeyholderBase:
    """The round rules a keyholder applies to its engine's view and its journal (see the module docstring)."""

    def __init__(self, engine: Engine, *, tie_secret: bytes | None = None) -> None:
        self.engine = engine
        self.store = engine.store
        self.genesis = engine.genesis
        self._tie_secret = tie_secret or os.urandom(32)
        self._owed_cache: tuple[tuple[int, int],
                                tuple[dict[bytes, int], dict[bytes, tuple[int, bytes]]]] | None = None

    # ------------------------------------------------------------ the subclass's journal of entries

    def accepted_entries(self, r: int) -> list[Entry]:
        """The entries held for round r."""
        raise NotImplementedError

    def _entry_key(self, r: int, miner: bytes) -> bytes:
        """The journal key of ``miner``'s entry in round r."""
        raise NotImplementedError

    # ------------------------------------------------------------ entries

    def _rank(self, entry: Entry) -> Rank:
        """Larger is kept in a full journal: stake at the anchor, then this keyholder's secret tie value."""
        return (self.engine.stake(entry.miner), tie_value(self._tie_secret, entry.miner))

    def owed(self, r: int) -> dict[bytes, int]:
        """miner -> unopened listings in the rounds no block has settled yet (before round r): the bonds the
        key still owes, which its bond account must cover besides a new entry's."""
        return self._unsettled(r)[0]

    def _unsettled(self, r: int) -> tuple[dict[bytes, int], dict[bytes, tuple[int, bytes]]]:
        """(owed bonds by miner, first listing (round, miner or 32 zero bytes: contested) by model hash) over
        the rounds no block has settled yet, before round r; cached per (first unsettled round, r)."""
        first = self.engine.unsettled_from()
        if self._owed_cache is not None and self._owed_cache[0] == (first, r):
            return self._owed_cache[1]
        owed: dict[bytes, int] = {}
        firsts: dict[bytes, tuple[int, bytes]] = {}
        for q in range(first, r):
            for _, miner, mh, opened in self.records(q):
                if not opened:
                    owed[miner] = owed.get(miner, 0) + 1
                seen = firsts.get(mh)
                if seen is None:
                    firsts[mh] = (q, miner)
                elif seen[0] == q and seen[1] != miner:
                    firsts[mh] = (q, bytes(32))
        self._owed_cache = ((first, r), (owed, firsts))
        return owed, firsts

    def check_claim(self, entry: Entry) -> None:
        """The entry's model must be one this key may be crowned with (§3.6 step 7, applied at listing time): no
        champion, no model recorded opened, and not first listed by another key — rounds no block settled yet
        included, whose listings no block carries yet (a long void streak settles over several blocks), so a
        thief cannot even be listed with such bytes. RuleError("duplicate-model")."""
        mh, r = entry.model_hash, entry.round
        if r == self.engine.ledger_round():
            return             # a ledger round's block carries no model (issue 21): nothing to attribute
        index = self.engine.index
        limit = self.engine.final_header().height
        if index.past_model(mh, limit):
            raise RuleError("duplicate-model", "the entry names a champion's or an opened model's hash")
        first = index.first_listing(mh, limit)
        pending = self._unsettled(r)[1].get(mh)
        if pending is not None and (first is None or pending[0] < first[0]):
            first = pending
        if first is not None and first[0] < r and first[1] != entry.miner:
            raise RuleError("duplicate-model", f"the entry's model was listed first by another key in round "
                                               f"{first[0]}")

    def _keep_entry(self, entry: Entry, record: bytes) -> bool:
        """The entry rule for an entry of the open round: journal ``record`` under the entry's key (synced) if
        it is kept, evicting the entry it outranks. True if kept now; RuleError if the engine's rule or the
        bond cover fails."""
        self.engine.check_entry(entry)
        r = entry.round
        key = self._entry_key(r, entry.miner)
        if self.store.meta_get(key) is not None:
            return False
        try:
            self.check_claim(entry)
            owed = self.owed(r).get(entry.miner, 0)
            if self.engine.stake(entry.miner) < self.genesis.params.entry_bond * (1 + owed):
                raise RuleError("insufficient-stake", f"bond account does not cover this bond and {owed} owed "
                                                      "ones")
        except RuleError:
            self.engine.forget_entry(entry)    # refused here: the key may enter the round again
            raise
        held = self.accepted_entries(r)
        admit, evict = admit_ranked([self._rank(e) for e in held], self._rank(entry), MAX_CANDIDATES)
        if not admit:
            return False
        changes: dict[bytes, bytes | None] = {key: record}
        if evict is not None:
            changes[self._entry_key(r, held[evict].miner)] = None
        self.store.meta_write(changes)
        return True

    def listing(self, entries: Sequence[Entry], shard_key: bytes) -> Listed:
        """The beacon's listing of ``entries`` (the candidates): the E largest stakes, ties by slot value."""
        return select_listing([(e.listing, self.engine.stake(e.miner)) for e in entries], shard_key,
                              self.genesis.params.max_entries)

    # ------------------------------------------------------------ settlement, open and reveal time

    def records(self, q: int) -> list[Record]:
        """Settlement records of round q: the ones a keyholder-signed statement of round q + 1 already carries
        (the network agreed on them: every later settlement repeats them, whatever this keyholder saw), else
        every entry q's beacon lists, opened if this keyholder's engine saw it open. So views of the openings
        can differ only for the round just closed, and a member that missed an opening there converges as soon
        as t others signed the next notice (PROTOCOL §3.9 settlement; §3.10 liveness)."""
        beacon = self.engine.beacon(q)
        if beacon is None:
            return []
        agreed = self.agreed_records(q)
        if agreed is not None:
            return agreed
        seen = self.engine.openings(q)
        return [(q, miner, mh, int(header_hash in seen)) for header_hash, miner, mh, _ in beacon.listed]

    def agreed_records(self, q: int) -> list[Record] | None:
        """Round q's records as the signed notice (or beacon) of round q + 1 settles them, or None if none is
        known or its window stops before q (a long streak: q's records are the next block's)."""
        stmt = self.engine.notice(q + 1) or self.engine.beacon(q + 1)
        if stmt is None or not stmt.settlement.first <= q <= stmt.settlement.last:
            return None
        return [rec for rec in stmt.settlement.records if rec[0] == q]

    def settlement(self, anchor: Header, r: int) -> Settlement:
        """The settlement of round r's blocks on ``anchor``: records of the rounds from the first one the anchor
        has not settled, whole rounds, up to r − 1 or until MAX_SETTLE records (the rest is the next block's)."""
        first = 1 if anchor.height == 0 else self.engine.index.settled_through(anchor) + 1
        last, records = settle_window(first, r, self.records, MAX_SETTLE)
        return make_settlement(first, last, records)

    def open_floor_ms(self, anchor: Header) -> int:
        """The earliest a round on ``anchor`` may open: 1 s after the anchor's reveal (the beacon in its
        payload), genesis's timestamp for genesis. Keyholder times only — a miner's timestamp never delays a
        round (a child's timestamp window stays non-empty: the anchor is stamped ≤ its reveal + slack)."""
        if anchor.height == 0:
            return self.genesis.timestamp * 1000
        raw = self.store.get_payload(anchor.hash)
        if raw is None:
            return 0
        return RoundPayload.decode(raw).beacon.time_ms + 1000

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

