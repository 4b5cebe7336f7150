"""Entry bonds (PROTOCOL §3.9): the settlement moves a crowned block applies before its transfers.

A block B of round r whose parent A was crowned in round a (A may be genesis, a = 0) charges, before its
transfers, the bonds forfeited in rounds a … r−1: for each (miner, k) of beacon r's ``forfeits`` (k = that key's
listed entries there that never opened), min(k × entry_bond, its balance) goes to the burn account. The
keyholder fixes that settlement when round r opens (its anchor notice carries it, the beacon repeats it), so a
miner seals its state root knowing it. A bond is not moved at entry: the entry rule requires the balance, and
nothing changes balances between the anchor and the next crowned block (void rounds have no blocks), so what a
key showed at the anchor is still there when B charges it. Pure: no store, no clock.
"""
from __future__ import annotations

from chain.address import address_of
from chain.state import BURN_ACCOUNT, Move
from consensus.protocol.messages import Forfeits

__all__ = ["settlement_moves"]


def settlement_moves(*, bond: int, forfeits: Forfeits) -> tuple[Move, ...]:
    """The moves (``chain.state.apply_moves``: each takes at most the source's balance) for ``forfeits``."""
    if bond == 0:
        return ()
    return tuple((address_of(m), BURN_ACCOUNT, bond * k) for m, k in forfeits)
