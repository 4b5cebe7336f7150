"""The champion lineage, indexed so that every read costs O(what it returns), never O(chain length).

The engine keeps one champion record per crowned main-chain block (``c/champ/<u32 height>``, §3.6) and, in the
SAME synced WriteBatch that connects or disconnects the block, three keyed indexes over it: round → height,
(task, height) and (miner, height) (consensus._meta). A reorg disconnects the tip with the deletions this module
computes, so the indexes always describe exactly the main chain — across restarts, crashes and reorgs alike.

Reads page newest first through ``ChainStore.meta_before`` (a reverse range read): a round's winner, the crowned
rounds of a window, the newest N records of the whole lineage / of one task / of one miner below a height; and,
for the engine's restart, the round-keyed statements above a round (``rounds_above``).

What it does NOT do: decide anything (the engine writes the records), know about initial champions of announced
tasks (TaskQueries adds them), or cache: LevelDB's block cache is the cache.
"""
from __future__ import annotations

from chain.address import address_of
from chain.store import ChainStore
from consensus._meta import K_CINDEX, P_CHAMP, P_CMINER, P_CROUND, P_CTASK, u32
from consensus.protocol.registry import ChampionRecord

__all__ = ["crowned_rounds", "ensure_indexed", "index_extra", "page", "round_winner", "unindex_extra"]


def index_extra(rec: ChampionRecord) -> dict[bytes, bytes | None]:
    """The index keys of a main-chain champion record (written beside ``c/champ/<height>``)."""
    return {P_CROUND + u32(rec.round): u32(rec.height), P_CTASK + u32(rec.task_id) + u32(rec.height): b"",
            P_CMINER + address_of(rec.miner) + u32(rec.height): b""}


def unindex_extra(rec: ChampionRecord) -> dict[bytes, bytes | None]:
    """The deletions that undo ``index_extra(rec)`` (the tip's block is disconnected)."""
    return {key: None for key in index_extra(rec)}


def ensure_indexed(store: ChainStore) -> None:
    """Build the indexes once for a datadir written before they existed (one pass, one synced batch)."""
    if store.meta_get(K_CINDEX) is not None:
        return
    changes: dict[bytes, bytes | None] = {K_CINDEX: b"1"}
    for _, value in store.meta_items(P_CHAMP):
        rec = ChampionRecord.decode(value)
        if rec.height > 0:
            changes.update(index_extra(rec))
    store.meta_write(changes)


def record_at(store: ChainStore, height: int) -> ChampionRecord | None:
    raw = store.meta_get(P_CHAMP + u32(height))
    return None if raw is None else ChampionRecord.decode(raw)


def round_winner(store: ChainStore, r: int) -> ChampionRecord | None:
    """The record of round ``r``'s crowned main-chain block (None: the round crowned nothing). Two key reads."""
    raw = store.meta_get(P_CROUND + u32(r))
    rec = None if raw is None else record_at(store, int.from_bytes(raw, "big"))
    return rec if rec is not None and rec.round == r else None


def crowned_rounds(store: ChainStore, first: int, last: int) -> dict[int, ChampionRecord]:
    """round -> record for every crowned round in [first, last] (reads at most last - first + 1 index keys)."""
    if last < first:
        return {}
    out = {}
    for key, value in store.meta_before(P_CROUND, u32(last + 1), last - first + 1):
        r = int.from_bytes(key[-4:], "big")
        if r < first:
            break
        rec = record_at(store, int.from_bytes(value, "big"))
        if rec is not None and rec.round == r:
            out[r] = rec
    return out


def page(store: ChainStore, *, task_id: int | None = None, account: bytes | None = None,
         before: int | None = None, limit: int) -> list[ChampionRecord]:
    """The newest ``limit`` crowned records below height ``before`` (None: all), of one task or one miner's
    account (``address_of`` its key) or of
    the whole chain (the genesis record, height 0, included), oldest first."""
    stop = None if before is None else u32(before)
    if task_id is None and account is None:
        return [ChampionRecord.decode(v) for _, v in reversed(store.meta_before(P_CHAMP, stop, limit))]
    prefix = P_CTASK + u32(task_id) if task_id is not None else P_CMINER + (account or b"")
    heights = [int.from_bytes(k[-4:], "big") for k, _ in store.meta_before(prefix, stop, limit)]
    recs = [record_at(store, h) for h in reversed(heights)]
    if task_id is None:   # genesis (height 0) is no miner's win
        return [r for r in recs if r is not None]
    genesis = [] if task_id != 0 or (before is not None and before <= 0) or len(heights) >= limit else \
        [rec for rec in [record_at(store, 0)] if rec is not None]
    return genesis + [r for r in recs if r is not None]


def rounds_above(store: ChainStore, prefix: bytes, r0: int) -> list[tuple[int, bytes]]:
    """(round, value) of the round-keyed records under ``prefix`` above round ``r0``, paging down from the
    newest (what a restart re-reads: the statements not applied yet, never the whole history)."""
    out: list[tuple[int, bytes]] = []
    stop: bytes | None = None
    while True:
        items = store.meta_before(prefix, stop, 256)
        for key, value in items:
            r = int.from_bytes(key[-4:], "big")
            if r <= r0:
                return out
            out.append((r, value))
        if len(items) < 256:
            return out
        stop = items[-1][0][-4:]
