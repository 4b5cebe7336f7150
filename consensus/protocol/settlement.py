"""Entry bonds (PROTOCOL §3.9): bond accounts, and the settlement moves a block applies before its transfers.

A miner's *stake* is the balance of its **bond account** ``H("popchain/bond", account id)[:20]``: an id no key
hashes to, so nothing but a consensus move ever takes grains out of it — not a transfer of the miner's own,
not in any block, its own included. Anyone funds it with an ordinary transfer (or a genesis allocation). The
entry rule asks the bond account to cover this entry's bond and every bond the key still owes; a listed entry
that does not open forfeits one bond, which the settlement of a later block burns from the bond account —
always in full, since the account could not shrink in between. Withdrawal: the key sends a transfer to its
**unbond account** ``H("popchain/unbond", account id)[:20]`` (any amount ≥ 1: a request); from the next anchor
on it cannot enter, and the first block whose settlement reaches the request's round pays both accounts back
to the key, after that settlement's forfeits.

Order of the moves a block applies first (``settlement_moves``): forfeits (bond account → burn, ascending by
miner), then releases (bond and unbond accounts → the key, ascending by key). Pure: no store, no clock.
"""
from __future__ import annotations

from collections.abc import Sequence

from chain.address import ACCOUNT_SIZE, address_of
from chain.crypto import tagged_hash
from chain.state import BURN_ACCOUNT, MAX_BALANCE, Move
from consensus.protocol.messages import Settlement

__all__ = ["BOND_TAG", "UNBOND_TAG", "bond_account", "bond_of", "miner_funding", "settlement_moves",
           "unbond_account"]

BOND_TAG = "popchain/bond"
UNBOND_TAG = "popchain/unbond"


def bond_account(account: bytes) -> bytes:
    """The bond account of an account id (20 bytes): the stake a key enters rounds with."""
    return tagged_hash(BOND_TAG, account)[:ACCOUNT_SIZE]


def unbond_account(account: bytes) -> bytes:
    """Where a key sends a transfer to ask for its bond back (the amount comes back with the bond)."""
    return tagged_hash(UNBOND_TAG, account)[:ACCOUNT_SIZE]


def bond_of(miner: bytes) -> bytes:
    """The bond account of a miner key (32-byte public key)."""
    return bond_account(address_of(miner))


def settlement_moves(*, bond: int, settlement: Settlement, releases: Sequence[bytes] = ()) -> tuple[Move, ...]:
    """The moves (``chain.state.apply_moves``: each takes at most the source's balance) of a settlement and of
    the unbond requests it releases (miner keys)."""
    out: list[Move] = []
    if bond:
        out += [(bond_of(m), BURN_ACCOUNT, bond * k) for m, k in settlement.forfeits]
    for miner in sorted(set(releases)):
        home = address_of(miner)
        out += [(bond_account(home), home, MAX_BALANCE), (unbond_account(home), home, MAX_BALANCE)]
    return tuple(out)


def miner_funding(miner: bytes, balance: int, bond: int) -> list[tuple[bytes, int]]:
    """Genesis allocations for a miner key: ``balance`` to its account, ``bond`` to its bond account."""
    return [(a, n) for a, n in ((address_of(miner), balance), (bond_of(miner), bond)) if n > 0]
