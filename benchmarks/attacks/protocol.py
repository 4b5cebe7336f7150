"""What the attack harness knows of the protocol: the ONE module of benchmarks/attacks that encodes the rules.

Everything an attacker, a benchmark or a test of this package needs to know about consensus lives here, written
against PROTOCOL §2.2, §3.3-§3.9 (issue 18's rules; what changed from main e466b38 is said per function):

- **identity** - what a node remembers a block by: the header hash, which binds neither the header signature
  nor the payload; since issue 18 a copy whose unbound bytes are wrong is a *corrupt copy* (§3.6 step 1), never
  a verdict on the block;
- **tamper** - the four corrupt copies of a genuine block that keep that identity (issue 18, *Why* 1);
- **entries** - how an entrant commits to a model (an entry seals the header hash, names the model hash and
  proves possession of the bytes, §3.3) and opens it after the beacon;
- **stake** - a miner key's stake is its bond account (§3.9): funding a key means funding both accounts;
- **listing** - how the keyholder ranks entries when more than E arrive (stake, then the slot value of the
  round's shard key, which no entrant knows before the beacon);
- **timestamps** - the latest stamp a miner can give a block of the open round, and the stall it causes;
- **attribution** - who first listed a model, from beacons (what ``live_stolen_crowns`` counts).

When the rules change, change this module and the attackers, figures and tests follow; each function says which
rule it encodes. No I/O here: pure functions over chain/ and consensus/ objects.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from chain.block import Block, model_hash
from chain.crypto import Keypair
from chain.tx import make_transfer
from consensus.mining import Template, open_block, seal
from consensus.protocol.genesis import Genesis, GenesisParams
from consensus.protocol.listing import slot_value
from consensus.protocol.messages import AnchorNotice, Beacon, Entry, RoundPayload, make_entry
from consensus.protocol.settlement import miner_funding
from ml.shards import PublicTask

TAMPER_KINDS = ("sig", "bar", "model", "tx")
"""sig: one bit of the header signature flipped; bar: the payload's ``bar`` raised by 1 (the payload is not bound
by the header hash); model: one model byte flipped (bytes no longer match ``model_hash``); tx: the last tx
dropped (txs no longer match ``tx_root``; a block without txs gets one appended instead)."""


class TamperError(ValueError):
    """The block cannot carry this tamper kind (e.g. the genesis block has no round payload)."""


def identity(block: Block) -> bytes:
    """What a node remembers a block by - its verdict memory, its inventory id (PROTOCOL §2.2, §4.1): today
    the header hash over the 11 unsigned header fields."""
    return block.header.hash


def is_round_block(block: Block) -> bool:
    """A block of a round (an opening, crowned or not), i.e. not genesis: the racer's targets."""
    return block.header.height > 0 and bool(block.payload)


def tamper(block: Block, kind: str) -> Block:
    """A corrupt copy of ``block`` with the same ``identity`` that every honest node refuses (a violation:
    bad-header-sig, bad-score, bad-model-hash, bad-tx-root). The copy is canonical bytes: it decodes."""
    if not is_round_block(block):
        raise TamperError("only a round block can be tampered")
    h = block.header
    if kind == "sig":
        sig = bytearray(h.signature)
        sig[0] ^= 0x01
        return dataclasses.replace(block, header=dataclasses.replace(h, signature=bytes(sig)))
    if kind == "bar":
        p = RoundPayload.decode(block.payload)
        return dataclasses.replace(block, payload=dataclasses.replace(p, bar=p.bar + 1).encode())
    if kind == "model":
        model = bytearray(block.model)
        model[-1] ^= 0x01
        return dataclasses.replace(block, model=bytes(model))
    if kind == "tx":
        if block.txs:
            return dataclasses.replace(block, txs=block.txs[:-1])
        stranger = Keypair.from_seed(os.urandom(32))
        extra = make_transfer(stranger, h.chain_id, bytes(20), 1, 1_000, 0)
        return dataclasses.replace(block, txs=(extra,))
    raise TamperError(f"unknown tamper kind {kind!r}; choose from {TAMPER_KINDS}")


# ---------------------------------------------------------------- entries


def seal_entry(template: Template, model: bytes, keypair: Keypair, salt: bytes | None = None) -> tuple[Block, Entry]:
    """An entrant's commitment to ``model`` for the template's round (§3.3): the signed block without its
    payload, and the entry to post (header hash, model hash, proof of possession of the model bytes)."""
    return seal(template, model, keypair, salt if salt is not None else os.urandom(32))


def bare_entry(keypair: Keypair, chain_id: str, round_: int, anchor: bytes, header_hash: bytes) -> Entry:
    """An entry for a block the entrant never opens (a squatter's): no block, template or model is needed to make
    one — its model hash and proof are made up (it can never open them: §3.3, §3.9)."""
    return make_entry(keypair, chain_id, round_, anchor, header_hash, os.urandom(32), os.urandom(32))


def stake_allocations(pubkey: bytes, grains: int) -> list[tuple[bytes, int]]:
    """Genesis allocations that give a key ``grains`` to spend and ``grains`` of stake (its bond account, §3.9;
    until issue 18 the stake was the account itself)."""
    return miner_funding(pubkey, grains, grains)


def open_entry(sealed: Block, beacon: Beacon, *, genesis: Genesis, champion: bytes, task: PublicTask | None = None,
               activations: Sequence[bytes] = ()) -> Block:
    """The opening of a sealed block once ``beacon`` lists it (§3.5): payload = beacon + b, c, bar."""
    return open_block(sealed, beacon, genesis=genesis, champion_bytes=champion, task=task, activations=activations)


# ---------------------------------------------------------------- listing


def listing_rank(stake: int, shard_key: bytes, miner: bytes) -> tuple[int, int]:
    """The beacon's rank of an entry when more than E arrive (§3.3; larger is kept): stake at the anchor, then
    the slot value of the round's shard key — secret until the beacon (until issue 18: the LOWER header hash,
    which the entrant chose through its salt)."""
    return (stake, slot_value(shard_key, miner))


def listed_by_rank(entries: Iterable[tuple[int, bytes]], shard_key: bytes, capacity: int) -> list[bytes]:
    """The miners a listing keeps out of (stake, miner) pairs under ``shard_key``: the ``capacity`` best ranks."""
    ranked = sorted(entries, key=lambda e: listing_rank(e[0], shard_key, e[1]), reverse=True)
    return [miner for _, miner in ranked[:capacity]]


def grind_salt(template: Template, model: bytes, tries: int, rng: Callable[[int], bytes] = os.urandom) -> bytes:
    """The grinder's best effort: the salt, of ``tries`` random ones, giving the lowest header hash — what ranked
    a stake tie until issue 18. The rank no longer reads it (nothing the entrant chooses is in it), so this is
    the attack as it was, measured against the rule as it is."""
    mh = model_hash(model)
    best_salt, best = b"", None
    for _ in range(max(1, tries)):
        salt = rng(32)
        rank = -int.from_bytes(template.header(mh, salt).hash, "big")
        if best is None or rank > best:
            best_salt, best = salt, rank
    return best_salt


# ---------------------------------------------------------------- timestamps


def latest_stamp(notice: AnchorNotice, params: GenesisParams, now_s: float = 0.0) -> int:
    """The latest header timestamp a miner entering at ``now_s`` can give a block of ``notice``'s round and be sure
    every beacon of the round accepts it (§3.6 step 4: ≤ reveal + slack). The round is still open when it enters,
    so the reveal comes no earlier than the entry deadline, nor than now (a window that ran out empty reveals W
    after the first entry)."""
    return max(notice.entry_deadline_ms // 1000, int(now_s)) + params.time_slack_s


def stamp_stall_ms(beacon: Beacon, next_notice: AnchorNotice, params: GenesisParams) -> int:
    """How much later the next round opened than its keyholders would have opened it on their own clock: the
    next notice's open time - (this round's reveal + O). Until issue 18 the keyholder opened no earlier than the
    anchor's timestamp, so a late stamp showed up here; now it opens ≥ 1 s after the anchor's reveal (§3.4).
    Both times are keyholder-signed."""
    opened_ms = next_notice.entry_deadline_ms - params.entry_window_s * 1000
    return opened_ms - (beacon.time_ms + params.opening_window_s * 1000)


# ---------------------------------------------------------------- attribution


@dataclass(frozen=True)
class Listing:
    """A block whose header hash a beacon listed: (round, header hash, miner, model hash)."""
    round: int
    header_hash: bytes
    miner: bytes
    model_hash: bytes


def listings(seen: Iterable[Listing], beacons: Mapping[int, Beacon]) -> list[Listing]:
    """The blocks seen (as Listing candidates: round, header hash, miner, model hash from each block's header)
    that their round's beacon lists (a beacon names the model hash too since issue 18: ``beacon_listings``)."""
    out = []
    for x in seen:
        beacon = beacons.get(x.round)
        if beacon is not None and (x.header_hash, x.miner) in {(h, m) for h, m, *_ in beacon.listed}:
            out.append(x)
    return out


def beacon_listings(beacons: Mapping[int, Beacon]) -> list[Listing]:
    """Every listing the beacons name, with its model hash (§3.3 since issue 18; void rounds included)."""
    return [Listing(r, h, m, mh) for r, b in beacons.items() for h, m, mh, _ in b.listed]


def listing_of(block: Block) -> Listing:
    h = block.header
    return Listing(h.round, h.hash, h.miner, h.model_hash)


def first_lister(model: bytes, seen: Iterable[Listing]) -> Listing | None:
    """The earliest listing of a model hash (ties in a round: the lower header hash)."""
    mine = [x for x in seen if x.model_hash == model]
    return min(mine, key=lambda x: (x.round, x.header_hash)) if mine else None


def stolen(crowned: Iterable[tuple[int, bytes, bytes]], seen: Iterable[Listing]) -> list[tuple[int, bytes, Listing]]:
    """Crownings (round, miner, model hash) of model bytes first listed by ANOTHER key: (round, thief, first)."""
    seen = list(seen)
    out = []
    for r, miner, mh in crowned:
        first = first_lister(mh, seen)
        if first is not None and first.miner != miner and first.round <= r:
            out.append((r, miner, first))
    return out
