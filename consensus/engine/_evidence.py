"""The engine's evidence book, a mixin of Engine: keyholder equivocations (two signed notices or beacons of one
round that disagree, PROTOCOL §3.4: the first kept, both stored) and committee members' misbehaviour (§3.10:
a conflicting second signature, a dropped entry), stored as they come, bounded, listed for the API.

What it does NOT do: detect equivocation (the engine's statement rules do) or judge committee messages
(consensus.protocol.committee). Same threading rule as the engine.
"""
from __future__ import annotations

from chain.encoding import pack, unpack
from chain.store import ChainStore
from consensus._meta import P_CEVID, P_EQUIV, u32
from consensus.protocol.committee import Evidence

__all__ = ["MAX_CEVID", "EvidenceBook"]

MAX_CEVID = 256               # committee evidence records kept (the first ones: a liar cannot flush them)


class EvidenceBook:
    """Mixed into Engine, which provides ``store``."""
    store: ChainStore

    def _record_equivocation(self, r: int, kept: bytes, refused: bytes, tag: bytes) -> None:
        self.store.meta_put(P_EQUIV + u32(r) + tag, pack([kept, refused]))

    def equivocations(self) -> list[tuple[int, bytes, bytes]]:
        """(round, kept message bytes, refused message bytes) for every equivocation seen."""
        out = []
        for key, value in self.store.meta_items(P_EQUIV):
            kept, refused = unpack(value, max_size=1 << 20)
            out.append((int.from_bytes(key[len(P_EQUIV):len(P_EQUIV) + 4], "big"), kept, refused))
        return out

    def add_committee_evidence(self, ev: Evidence) -> bool:
        """Store a committee member's misbehaviour (one record per round, signer and kind). True if new."""
        key = P_CEVID + u32(ev.round) + ev.signer + ev.what.encode()
        if self.store.meta_get(key) is not None or len(self.store.meta_items(P_CEVID)) >= MAX_CEVID:
            return False
        self.store.meta_put(key, ev.encode())
        return True

    def committee_evidence(self) -> list[Evidence]:
        return [Evidence.decode(v) for _, v in self.store.meta_items(P_CEVID)]
