"""The engine's per-model and per-key indexes over the main chain (PROTOCOL §3.6 step 7, §3.9): lookups by key,
never a scan from genesis.

- champions (``c/cmodel/``) and opened models (``c/omodel/``): a model hash → the height of the block that
  recorded it; such a model is never crowned again;
- first listings (``c/lmodel/``): a model hash → (round, miner) of its earliest listing — from each block's own
  beacon and from the settlement records its beacon carries (void rounds included, whose beacons are in no
  block), so every node, a syncing one included, knows who listed a model first; a model listed by two keys
  in its first round is *contested* (miner = 32 zero bytes): it belongs to nobody;
- pending unbond requests (``c/unbond/``): a miner key → (height, round) of the block with its request; the
  first block whose settlement reaches that round releases it (``c/unbondh/<height>`` keeps what a block
  requested and released, so disconnecting it restores the index exactly).

Each record carries the height of the block that wrote it; a lookup counts only records at or below a height
(the node's final block), so a sibling candidate's records never count for another. ``connect_extra`` and
``disconnect_extra`` give the meta changes that go into the block's own WriteBatch.

What it does NOT do: decide validity (consensus.engine._validity asks it), or write anything itself.
"""
from __future__ import annotations

from collections import OrderedDict

from chain.address import address_of
from chain.block import Block, Header
from chain.encoding import pack, unpack
from chain.store import ChainStore
from consensus._meta import P_CMODEL, P_LMODEL, P_OMODEL, P_UNBOND, P_UNBONDH, u32
from consensus.protocol.messages import Beacon, RoundPayload
from consensus.protocol.settlement import unbond_account

__all__ = ["CONTESTED", "ChainIndex"]

CONTESTED = bytes(32)
Changes = dict[bytes, bytes | None]


class ChainIndex:
    """Reads and the per-block changes of the indexes above (see the module docstring)."""

    def __init__(self, store: ChainStore) -> None:
        self.store = store
        self._settled: OrderedDict[bytes, int] = OrderedDict()   # block hash -> its settlement's last round

    # ------------------------------------------------------------ reads (records at heights ≤ limit)

    def _height_of(self, raw: bytes | None) -> int | None:
        return None if raw is None else int.from_bytes(raw, "big")

    def past_model(self, mh: bytes, limit: int) -> bool:
        """A champion (genesis's included), or a model recorded as opened, on the chain up to height ``limit``."""
        if mh == self.store.genesis().model_hash:
            return True
        for prefix in (P_CMODEL, P_OMODEL):
            h = self._height_of(self.store.meta_get(prefix + mh))
            if h is not None and h <= limit:
                return True
        return False

    def first_listing(self, mh: bytes, limit: int) -> tuple[int, bytes] | None:
        """(round, miner or CONTESTED) of the model's earliest listing recorded up to height ``limit``. Records
        are keyed by (model hash, round): a long void streak is settled over several blocks, so a later block
        may record an earlier round; the scan lists the model's listed rounds in order (a handful: each one is
        an opening or a forfeited bond)."""
        for key, raw in self.store.meta_items(P_LMODEL + mh):
            miner, height = unpack(raw, max_size=128)
            if height <= limit:
                return int.from_bytes(key[-4:], "big"), miner
        return None

    def pending_unbonds(self, limit: int) -> list[tuple[bytes, int, int]]:
        """(miner, height, round) of every unbond request pending at height ``limit``."""
        out = []
        for key, raw in self.store.meta_items(P_UNBOND):
            height, q = unpack(raw, max_size=64)
            if height <= limit:
                out.append((key[len(P_UNBOND):], height, q))
        return out

    def unbonding(self, miner: bytes, limit: int) -> bool:
        raw = self.store.meta_get(P_UNBOND + miner)
        return raw is not None and unpack(raw, max_size=64)[0] <= limit

    def releases(self, parent: Header, last: int) -> tuple[bytes, ...]:
        """The miner keys a block on ``parent`` whose settlement ends at round ``last`` releases (§3.9)."""
        return tuple(sorted(m for m, _, q in self.pending_unbonds(parent.height) if q <= last))

    def settled_through(self, header: Header) -> int:
        """The last round the settlement of block ``header`` covered (genesis: 0)."""
        if header.height == 0:
            return 0
        hit = self._settled.get(header.hash)
        if hit is None:
            raw = self.store.get_payload(header.hash)
            hit = 0 if raw is None else RoundPayload.decode(raw).beacon.settlement.last
            self._settled[header.hash] = hit
            while len(self._settled) > 64:
                self._settled.popitem(last=False)
        return hit

    # ------------------------------------------------------------ what a block changes

    def connect_extra(self, block: Block, beacon: Beacon, champion_models: tuple[bytes, ...] = (),
                      crowned: bool = True) -> Changes:
        """The index changes of connecting ``block`` (its beacon ``beacon``) at its height: the champion (and
        any initial champions it activated) — a plain block's model is recorded opened instead —, the models
        its settlement records as opened, first listings from the settlement records and from its own listing
        (in round order), and unbond requests / releases."""
        h = block.header
        height, here = h.height, u32(h.height)
        extra: Changes = {}
        if not crowned and self.store.meta_get(P_OMODEL + h.model_hash) is None:
            extra[P_OMODEL + h.model_hash] = here
        for mh in (h.model_hash, *champion_models) if crowned else champion_models:
            if self.store.meta_get(P_CMODEL + mh) is None and P_CMODEL + mh not in extra:
                extra[P_CMODEL + mh] = here
        for mh in beacon.settlement.opened:
            if self.store.meta_get(P_OMODEL + mh) is None:
                extra[P_OMODEL + mh] = here
        # listings by (model hash, round): who listed it in that round (two keys: contested). A round's listing
        # comes whole (its own beacon, or one settlement window), so one already recorded is not rewritten
        listed: dict[tuple[bytes, int], bytes] = {}
        listings = [(q, m, mh) for q, m, mh, _ in beacon.settlement.records]
        listings += [(h.round, m, mh) for _, m, mh, _ in beacon.listed]
        for q, miner, mh in listings:
            seen = listed.get((mh, q))
            listed[(mh, q)] = miner if seen is None or seen == miner else CONTESTED
        for (mh, q), miner in listed.items():
            if self.store.meta_get(P_LMODEL + mh + u32(q)) is None:
                extra[P_LMODEL + mh + u32(q)] = pack([miner, height])
        requested = sorted({tx.sender for tx in block.txs if tx.recipient == unbond_account(address_of(tx.sender))
                            and self.store.meta_get(P_UNBOND + tx.sender) is None})
        released = [(m, rh, q) for m, rh, q in self.pending_unbonds(height - 1) if q <= beacon.settlement.last]
        for m, _, _ in released:
            extra[P_UNBOND + m] = None
        for m in requested:
            extra[P_UNBOND + m] = pack([height, h.round])
        if requested or released:
            extra[P_UNBONDH + here] = pack([requested, [list(x) for x in released]])
        return extra

    def disconnect_extra(self, block: Block, champion_models: tuple[bytes, ...] = ()) -> Changes:
        """Undo ``connect_extra`` of ``block`` (the chain's tip; ``champion_models`` as it was connected with)."""
        h = block.header
        here = u32(h.height)
        extra: Changes = {}
        payload = RoundPayload.decode(block.payload) if h.height > 0 and block.payload else None
        models = [h.model_hash, *champion_models]
        if payload is not None:
            models += [x[2] for x in payload.beacon.listed] + [r[2] for r in payload.beacon.settlement.records]
        for mh in set(models):
            for prefix in (P_CMODEL, P_OMODEL):
                if self.store.meta_get(prefix + mh) == here:
                    extra[prefix + mh] = None
        listed = {(r[2], r[0]) for r in payload.beacon.settlement.records} if payload is not None else set()
        listed |= {(x[2], h.round) for x in payload.beacon.listed} if payload is not None else set()
        for mh, q in listed:
            raw = self.store.meta_get(P_LMODEL + mh + u32(q))
            if raw is not None and unpack(raw, max_size=128)[1] == h.height:
                extra[P_LMODEL + mh + u32(q)] = None
        raw = self.store.meta_get(P_UNBONDH + here)
        if raw is not None:
            requested, released = unpack(raw, max_size=1 << 24)
            for m in requested:
                extra[P_UNBOND + m] = None
            for m, rh, q in released:
                extra[P_UNBOND + m] = pack([rh, q])
            extra[P_UNBONDH + here] = None
        return extra
