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
    "K_CINDEX", "K_STATE", "K_THROUGH", "P_BEACON", "P_CEVID", "P_CHAMP", "P_CMINER", "P_CMISS", "P_CMODEL", "P_CROUND",
    "P_CTASK", "P_EQUIV", "P_KH_ENTRY", "P_KH_OPEN", "P_KH_REVEAL", "P_KH_SECRET", "P_LMODEL", "P_MEMBER_ENTRY",
    "P_MEMBER_SIGNED", "P_NOTICE", "P_OMODEL", "P_OPENING", "P_TID", "P_TMSG", "P_TREG", "P_UNBOND", "P_UNBONDH",
    "P_WAIT", "u32",
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
# the champion lineage indexed for flat-cost reads (written and deleted with P_CHAMP, same batch):
P_CROUND = b"c/cround/"       # + u32 round -> u32 height of the round's crowned main-chain block
P_CTASK = b"c/ctask/"         # + u32 task + u32 height -> b"" (a task's lineage, pageable newest first)
P_CMINER = b"c/cminer/"       # + address_of(miner) + u32 height -> b"" (an account's crowned blocks)
K_CINDEX = b"c/cindex"        # b"1": the three indexes above cover every P_CHAMP record (built once on upgrade)
K_THROUGH = b"c/through"      # u32 r: every round below r has its beacon or an idle notice here (a hint, a
#                               lower bound: statements are never deleted, so a stale value is only slower)
P_OMODEL = b"c/omodel/"       # + model hash -> u32 height of the block whose beacon recorded it as opened
# + u32 round + header hash -> pack([miner, model hash, b, c, bar]) of a listed block seen opened (records kept
# before the round test's figures were have the first two fields only)
P_OPENING = b"c/opening/"
P_LMODEL = b"c/lmodel/"       # + model hash + u32 round -> pack([miner or 32 zero bytes if contested, height]):
                              #   who listed the model in that round (attribution, §3.9), written by the block
                              #   that carried the listing (its own beacon's, or a settlement record)
P_UNBOND = b"c/unbond/"       # + miner pubkey -> pack([height, round]): a pending unbond request (§3.9)
P_UNBONDH = b"c/unbondh/"     # + u32 height -> pack([[pubkey…] requested, [[pubkey, height, round]…] released])
P_CEVID = b"c/cevid/"         # + u32 round + signer + what -> committee evidence bytes (protocol.committee)
P_CMISS = b"c/cmiss/"         # + u32 member -> pack([rounds it released nothing in, the last one]) (observed)
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
