"""What the attack harness knows of the protocol: the ONE module of benchmarks/attacks that encodes today's rules.

Everything an attacker, a benchmark or a test of this package needs to know about consensus lives here, written
against PROTOCOL §2.2, §3.3-§3.9 as they stand on main e466b38:

- **identity** - what a node remembers a block by (today the header hash, which binds neither the header
  signature, nor the payload, nor the model bytes against ``model_hash``, nor the txs against ``tx_root``);
- **tamper** - the four corrupt copies of a genuine block that keep that identity (issue 18, *Why* 1);
- **entries** - how an entrant commits to a model (today: an entry seals only the header hash; issue 18 may make
  it carry the model hash) and opens it after the beacon;
- **listing** - how the keyholder ranks entries when more than E arrive (stake, then the lower header hash);
- **timestamps** - the latest stamp a miner can give a block of the open round, and the stall it causes;
- **attribution** - who first listed a model, from blocks and beacons (what ``live_stolen_crowns`` counts).

When the rules change (a block identity over all its bytes, entries with a model hash, an ungrindable tie-break,
bonds per key, a stamp bound), change this module and the attackers, figures and tests follow; each function
says which rule it encodes. No I/O here: pure functions over chain/ and consensus/ objects.
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
from consensus.protocol.messages import AnchorNotice, Beacon, Entry, RoundPayload, make_entry
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
    payload, and the entry to post. Today the entry reveals only the header hash."""
    return seal(template, model, keypair, salt if salt is not None else os.urandom(32))


def bare_entry(keypair: Keypair, chain_id: str, round_: int, anchor: bytes, header_hash: bytes) -> Entry:
    """An entry for a block the entrant never opens (a squatter's): today an entry commits to nothing but a
    header hash, so no block, template or model is needed to make one (§3.3)."""
    return make_entry(keypair, chain_id, round_, anchor, header_hash)


def open_entry(sealed: Block, beacon: Beacon, *, genesis: Genesis, champion: bytes, task: PublicTask | None = None,
               activations: Sequence[bytes] = ()) -> Block:
    """The opening of a sealed block once ``beacon`` lists it (§3.5): payload = beacon + b, c, bar."""
    return open_block(sealed, beacon, genesis=genesis, champion_bytes=champion, task=task, activations=activations)


# ---------------------------------------------------------------- listing


def listing_rank(stake: int, header_hash: bytes) -> tuple[int, int]:
    """The keyholder's rank of an entry when more than E arrive (§3.3; larger is kept): stake at the anchor,
    then the LOWER header hash - which the entrant chooses through its salt."""
    return (stake, -int.from_bytes(header_hash, "big"))


def listed_by_rank(entries: Iterable[tuple[int, bytes, bytes]], capacity: int) -> list[bytes]:
    """The miners a listing keeps out of (stake, header hash, miner) triples: the ``capacity`` best ranks."""
    ranked = sorted(entries, key=lambda e: listing_rank(e[0], e[1]), reverse=True)
    return [miner for _, _, miner in ranked[:capacity]]


def grind_salt(template: Template, model: bytes, tries: int, rng: Callable[[int], bytes] = os.urandom) -> bytes:
    """The salt, of ``tries`` random ones, giving the header hash that ranks best in a stake tie (§3.3)."""
    mh = model_hash(model)
    best_salt, best = b"", None
    for _ in range(max(1, tries)):
        salt = rng(32)
        rank = listing_rank(0, template.header(mh, salt).hash)
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
    next notice's open time - (this round's reveal + O). Today the keyholder opens no earlier than the anchor's
    timestamp (§3.7), so a late stamp shows up here. Both times are keyholder-signed."""
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
    that their round's beacon lists: today a beacon names header hashes only, so the model a listing committed to
    is known from the block's header."""
    out = []
    for x in seen:
        beacon = beacons.get(x.round)
        if beacon is not None and (x.header_hash, x.miner) in set(beacon.listed):
            out.append(x)
    return out


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
