"""The chain store's meta keys that consensus/ writes: one table, and the one encoding of a round or a height
in a key (``u32``: 4 bytes, big-endian, so that a prefix scan lists rounds and heights in order).

Three owners, three prefixes: ``c/`` the engine (consensus state, champions, task registries and messages;
each written in the same synced WriteBatch as the block or statement that changes it), ``k/`` the single
keyholder's journal, ``m/`` a committee member's journal. No prefix here is a prefix of another, so a scan of
one never lists another's keys. Nothing outside consensus/ reads these keys: node/ asks the engine.

What it does NOT do: read or write the store, or say what a value holds beyond the comments below.
"""
from __future__ import annotations

__all__ = [
    "K_STATE", "P_BEACON", "P_CEVID", "P_CHAMP", "P_CMODEL", "P_EQUIV", "P_KH_ENTRY", "P_KH_OPEN",
    "P_KH_REVEAL", "P_KH_SECRET", "P_MEMBER_ENTRY", "P_MEMBER_SIGNED", "P_NOTICE", "P_OMODEL", "P_OPENING",
    "P_TID", "P_TMSG", "P_TREG", "P_WAIT", "u32",
]


def u32(n: int) -> bytes:
    """A round or a height as it appears in a key."""
    return n.to_bytes(4, "big")


# ---------------------------------------------------------------- the engine (consensus.engine)
K_STATE = b"c/state"          # pack([final_hash, current_round])
P_BEACON = b"c/beacon/"       # + u32 round -> beacon bytes (the first valid one)
P_NOTICE = b"c/notice/"       # + u32 round -> notice bytes
P_EQUIV = b"c/equiv/"         # + u32 round + sighash -> pack([kept bytes, refused bytes])
P_CHAMP = b"c/champ/"         # + u32 height -> champion record (main chain)
P_CMODEL = b"c/cmodel/"       # + model hash -> u32 height (model hashes of every champion)
P_OMODEL = b"c/omodel/"       # + model hash -> u32 height of the block whose beacon recorded it as opened
# + u32 round + header hash -> pack([miner, model hash, b, c, bar]) of a listed block seen opened (records kept
# before the round test's figures were have the first two fields only)
P_OPENING = b"c/opening/"
P_CEVID = b"c/cevid/"         # + u32 round + signer + what -> committee evidence bytes (protocol.committee)
# the engine's task book (§3.13)
P_TREG = b"c/treg/"           # + u32 height -> Registry after that main-chain block
P_TMSG = b"c/tmsg/"           # + message id -> task message bytes
P_TID = b"c/tid/"             # + message id -> b"" (the ids alone: listing them reads no package bytes)

# ---------------------------------------------------------------- the single keyholder's journal
P_KH_OPEN = b"k/open/"        # + u32 round -> pack([opened_ms, notice bytes])
P_KH_ENTRY = b"k/entry/"      # + u32 round + miner -> entry bytes (accepted, first come)
P_KH_REVEAL = b"k/revealed/"  # + u32 round -> pack([revealed_ms, beacon bytes])
P_KH_SECRET = b"k/tsecret/"   # + task message id -> ml SecretTask bytes (the shard keys of that batch)
# + u32 round -> pack([ms]): the entry window ran out empty; then when the first entry came. Written by the
# single keyholder AND by a committee member (a node runs one of the two; a member always used this k/ key)
P_WAIT = b"k/wait/"

# ---------------------------------------------------------------- a committee member's journal
P_MEMBER_SIGNED = b"m/signed/"  # + class byte (n|b) + u32 round -> content signed (notice / beacon draft)
P_MEMBER_ENTRY = b"m/entry/"    # + u32 round + miner -> pack([received_ms, entry bytes])
