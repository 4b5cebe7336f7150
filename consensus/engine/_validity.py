"""Block validity for a round (PROTOCOL §3.6) against a chain store: the copy rules (consensus.protocol.rules.
check_copy), then the listing and its claim, parent, height, round and time, stake (the bond account), the
schedule (§3.13), the settlement window, txs and state root after the settlement (§3.9), model caps, whose
model it is (champions, opened models, first listings: ``check_attribution``), the shard against its
commitment, and the crowning test (consensus.protocol.stats: sign test and margin) by scoring the model.

``validate_block`` runs the checks in the order of §3.6 — copy rules first, then cheap ones, the model scoring
last — and raises ``CorruptCopy`` when a copy's unbound bytes are wrong (the payload's b, c and bar included,
checked after scoring), else chain.errors.RuleError with the stable reject code of the first broken rule. A
block whose parent is unknown is not invalid: ``OrphanBlock`` says so. ``ScoringCache`` keeps the opened
shards and the champion's per-row results a round's blocks share. Everything that decides is integers.

What it does NOT do: the store-free steps (consensus.protocol.rules: payload, bar, timestamp window, fork
order), fork choice or finality (the engine), or write anything.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from chain.block import Block, Header, model_hash
from chain.errors import PopError, RuleError, StoreError
from chain.store import ChainStore
from consensus.engine._index import CONTESTED, ChainIndex
from consensus.engine._taskbook import TaskBook
from consensus.protocol.genesis import Genesis
from consensus.protocol.messages import Beacon, RoundPayload, Settlement, possession
from consensus.protocol.registry import ChampionRecord, TaskRecord, minted_reward
from consensus.protocol.release import check_release, ledger_point
from consensus.protocol.rules import (
    CorruptCopy,
    ScoredBlock,
    check_copy,
    check_header,
    crowning_bar,
    moves_for,
    parent_moves,
    plain_slot,
    timestamp_window,
)
from consensus.protocol.settlement import bond_of
from consensus.protocol.stats import crowns
from consensus.protocol.tasks import TaskMessage
from ml.blobs import BlobUnavailable
from ml.errors import MLError, ShardError
from ml.model import Model, decode_model
from ml.score import Features, paired, prepare, score
from ml.shards import PublicTask, open_shard
from ml.task import Dataset

__all__ = ["BlobPending", "OrphanBlock", "ScoringCache", "check_attribution", "check_ledger_release", "check_round_release", "parent_payload",
           "validate_block"]


# one thread: the champion's re-score beside the challenger's (validate_block step 9); shared by the engines of
# one process, whose blocks it serves in turn
_SCORER = ThreadPoolExecutor(1, thread_name_prefix="popchain-score")


class OrphanBlock(PopError):
    """The block's parent is not known yet: fetch it, do not punish the sender."""

    def __init__(self, parent_hash: bytes) -> None:
        super().__init__(f"unknown parent {parent_hash.hex()}")
        self.parent_hash = parent_hash


# ---------------------------------------------------------------- scoring cache


class ScoringCache:
    """Bounded memo of opened shards (with their features prepared once for scoring, ``ml.score.prepare``) and
    decoded champions with their per-row correctness (both are costly and identical for every block of a round)."""

    def __init__(self, max_items: int = 8) -> None:
        self._shards: OrderedDict[tuple[bytes, bytes], tuple[Dataset, Features]] = OrderedDict()
        self._correct: OrderedDict[tuple[bytes, bytes, bytes], np.ndarray] = OrderedDict()
        self._max = max_items

    def _put(self, table: OrderedDict, key, value) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self._max:
            table.popitem(last=False)

    # ``task`` is the task's package (genesis.task, or consensus.engine.TaskBook.package_of); ``index`` the
    # task-local shard index; entries are keyed by the shard's commitment, which names it uniquely.

    def _opened(self, task: PublicTask, index: int, key: bytes) -> tuple[Dataset, Features]:
        ck = (task.commitments[index - 1] if 1 <= index <= task.n_rounds else b"", key)
        hit = self._shards.get(ck)
        if hit is None:
            shard = open_shard(task, index, key)
            hit = (shard, prepare(shard.X))
            self._put(self._shards, ck, hit)
        return hit

    def shard(self, task: PublicTask, index: int, key: bytes) -> Dataset:
        return self._opened(task, index, key)[0]

    def features(self, task: PublicTask, index: int, key: bytes) -> Features:
        """The shard's X prepared once: the champion and every challenger of the round are scored on it."""
        return self._opened(task, index, key)[1]

    def champion_correct(self, genesis: Genesis, champion_bytes: bytes, task: PublicTask, index: int,
                         key: bytes) -> np.ndarray:
        ck = (model_hash(champion_bytes), task.commitments[index - 1] if 1 <= index <= task.n_rounds else b"", key)
        hit = self._correct.get(ck)
        if hit is None:
            shard, feats = self._opened(task, index, key)
            model = decode_model(champion_bytes, task.spec, genesis.model_caps)
            hit = score(model, feats, shard.y).correct
            self._put(self._correct, ck, hit)
        return hit


class BlobPending(OrphanBlock):
    """The round's shard blob is not available locally (ml.blobs.BlobUnavailable): park the block, retry later."""

    def __init__(self, parent_hash: bytes, why: str) -> None:
        super().__init__(parent_hash)
        self.args = (why,)


_default_cache = ScoringCache()


# ---------------------------------------------------------------- validate_block


def validate_block(block: Block, *, genesis: Genesis, store: ChainStore, beacon: Beacon | None = None,
                   index: ChainIndex | None = None, cache: ScoringCache | None = None,
                   book: TaskBook | None = None) -> ScoredBlock:
    """Every rule of §3.6, the copy rules first, then cheap rules before scoring. ``beacon`` (optional) is the
    node's accepted beacon for the round: the payload's beacon must carry the same content. ``index`` is the
    engine's (champions, opened models, first listings, unbond requests; a fresh one on ``store`` if None),
    ``book`` its task book. Raises CorruptCopy (this copy's unbound bytes are wrong: not a verdict on the
    block), RuleError(code) (the block is invalid: every intact copy gets the same code) or OrphanBlock."""
    cache = cache or _default_cache
    book = book or TaskBook(store, genesis)
    index = index or ChainIndex(store)
    params = genesis.params
    h = block.header
    # 1. the copy: size (re-encoding gives the canonical size), then every byte the header hash does not bind
    size = len(block.encode())
    if size > params.max_block_bytes:
        raise CorruptCopy("block-too-large", f"{size} bytes, cap {params.max_block_bytes}")
    payload = check_copy(block, genesis)
    beacon_in = payload.beacon
    if beacon is not None and beacon.sighash != beacon_in.sighash:
        raise CorruptCopy("bad-beacon", f"payload beacon differs from the accepted beacon of round {h.round}")
    # 2. the header's own fields
    check_header(block, genesis)
    # 3. sealed entry, its claim, and anchor
    item = beacon_in.listing_of(h.hash)
    if item is None or item[1] != h.miner:
        raise RuleError("not-entered", f"header {h.hash.hex()[:16]} by this miner is not listed in beacon {h.round}")
    if item[2] != h.model_hash or item[3] != possession(h.miner, block.model):
        raise RuleError("bad-claim", "the listed model hash or proof of possession does not match the block")
    if h.prev_hash != beacon_in.anchor_hash:
        raise RuleError("bad-anchor", "prev_hash is not the beacon's anchor")
    # 4. parent, height, round, time
    parent = store.get_header(h.prev_hash)
    if parent is None:
        raise OrphanBlock(h.prev_hash)
    if h.height != parent.height + 1:
        raise RuleError("bad-height", f"height {h.height} after parent height {parent.height}")
    if not parent.round < h.round:
        raise RuleError("bad-round", f"round {h.round} after parent round {parent.round}")
    lo, hi = timestamp_window(params, beacon_in, parent)
    if not lo <= h.timestamp <= hi:
        raise RuleError("bad-timestamp", f"timestamp {h.timestamp} outside [{lo}, {hi}] (after the parent, "
                                         f"within the beacon's keyholder times ± {params.time_slack_s} s)")
    # 5. stake (the miner's bond account at the parent) and the schedule
    try:
        stake = store.state_view(h.prev_hash).get_account(bond_of(h.miner)).balance
    except StoreError:
        raise RuleError("stale-parent", "parent is no longer on the main chain within reach") from None
    if stake < params.entry_bond or index.unbonding(h.miner, parent.height):
        raise RuleError("insufficient-stake", f"miner bond {stake} < the entry bond {params.entry_bond}, or its "
                                              f"bond is being released")
    # the schedule (§3.13): the activations it carries and the void rounds since the anchor give the (task,
    # shard) this round serves; the beacon must name exactly that
    messages = book.payload_messages(payload.activations, beacon_in.activations)
    parent_registry = book.registry_at(parent)
    adv = book.advance(parent_registry, parent, h.round, beacon_in.activations, messages)
    if adv.served != beacon_in.served:
        raise RuleError("bad-schedule", f"round {h.round} serves {adv.served}, the beacon says {beacon_in.served}")
    task_id, index_in_task = beacon_in.served or (0, 0)
    if beacon_in.served is not None and h.miner == adv.before.tasks[task_id].sponsor:
        raise RuleError("sponsor-entry", f"the sponsor of task {task_id} cannot enter it (it knows its rows)")
    # 6. settlement window, txs and state root (the ledger rules and their codes come from chain.state); a
    # sponsored task's round mints nothing (§3.9): its crownings are paid from the task's escrow and fees
    settlement = beacon_in.settlement
    if settlement.first != index.settled_through(parent) + 1:
        raise RuleError("bad-settlement", f"settlement starts at round {settlement.first}, the parent settled "
                                          f"through round {index.settled_through(parent)}")
    reward = (minted_reward(adv.before, task_id, genesis.params.block_reward) if beacon_in.served is not None
              else genesis.params.block_reward)
    ledger = dataclasses.replace(genesis.ledger_params, block_reward=reward)
    if len(block.txs) > ledger.max_block_txs:
        raise RuleError("too-many-txs", f"{len(block.txs)} txs, limit {ledger.max_block_txs}")
    moves = (parent_moves(genesis, parent, parent_payload(store, parent), parent_registry,
                          store.ledger_params_of(parent.hash).block_reward)
             + moves_for(genesis, beacon_in, index.releases(parent, settlement.last)) + adv.moves)
    delta = store.preview_txs(h.prev_hash, h.miner, block.txs, ledger, moves)
    if delta.state_root != h.state_root:
        raise RuleError("bad-state-root", "state root does not match the state after settlement + txs + reward + fees")
    if beacon_in.served is None:
        # a LEDGER round (every task exhausted, §3.13): no shard, no model, nothing to crown — a plain block
        if block.model:
            raise RuleError("bad-model", "a block of a round that serves no task carries no model")
        if (payload.b, payload.c, payload.bar) != (0, 0, 0):
            raise CorruptCopy("bad-score", "a ledger round's payload says b = c = bar = 0")
        check_ledger_release(genesis, beacon_in)     # on a committee chain its key is the threshold VRF's
        return ScoredBlock(block, 0, 0, 0, moves, 0, adv.before,
                           tuple(messages[hh] for _, hh in beacon_in.activations), slot=plain_slot(beacon_in, h.miner),
                           reward=reward)
    task_rec = adv.before.tasks[task_id]
    task = book.package_of(task_rec, messages)
    # 7. model: caps, and whose it is
    if len(block.model) > params.model_max_bytes:
        raise RuleError("model-too-large", f"{len(block.model)} bytes, cap {params.model_max_bytes}")
    try:
        challenger: Model = decode_model(block.model, task.spec, genesis.model_caps)
    except MLError as exc:
        raise RuleError("bad-model", str(exc)) from None
    check_attribution(h, settlement, index, parent.height)
    # 8. shard: on a committee chain the beacon's key is what its release combines to (§3.14), then it opens
    check_round_release(genesis, book, beacon_in, task_rec, messages)
    try:
        shard = cache.shard(task, index_in_task, beacon_in.shard_key)
    except BlobUnavailable as exc:
        # §3.15: the shard's blob is not on this node yet -- the block is neither valid nor invalid here until
        # it is fetched: parked like an orphan, never rejected (rejecting would split us from nodes that have it)
        raise BlobPending(h.prev_hash, str(exc)) from None
    except ShardError as exc:
        raise RuleError("bad-shard-commitment", str(exc)) from None
    # 9. the crowning test against the champion of the round's task: exact sign test, Bonferroni over the
    # m listed entries, and the margin of min_gain_bp basis points of the shard's rows
    champion_bytes = book.champion_model(task_rec, messages)
    features = cache.features(task, index_in_task, beacon_in.shard_key)  # the shard's X, prepared once per round
    # the champion's per-row correctness (memoised per round; re-scored whenever the champion changed, e.g. on
    # every block of a sync) on the second core while this thread scores the challenger: numpy releases the
    # GIL for most of both. Pure functions of the bytes and the shard: the order changes nothing.
    champion_job = _SCORER.submit(cache.champion_correct, genesis, champion_bytes, task, index_in_task,
                                  beacon_in.shard_key)
    try:
        challenger_ok = score(challenger, features, shard.y).correct
    finally:
        champion_ok = champion_job.result()
    b, c = paired(challenger_ok, champion_ok)
    m, rows = len(beacon_in.listed), len(shard.y)
    bar = crowning_bar(b, c, m, params, rows)
    if (payload.b, payload.c, payload.bar) != (b, c, bar):
        raise CorruptCopy("bad-score", f"payload says b={payload.b} c={payload.c} bar={payload.bar}, "
                                       f"recomputed b={b} c={c} bar={bar}")
    if not crowns(b, c, m, rows, params.alpha, params.min_gain_bp):
        # a PLAIN block (§3.6 step 9): valid, confirms its txs, leaves the champion where it is
        return ScoredBlock(block, b, c, bar, moves, task_id, adv.before.consume((task_id, index_in_task)),
                           tuple(messages[hh] for _, hh in beacon_in.activations), slot=plain_slot(beacon_in, h.miner),
                           reward=reward)
    record = ChampionRecord(h.hash, h.height, h.round, h.miner, h.model_hash, b, c, bar, task_id)
    after = adv.before.consume((task_id, index_in_task)).crown(task_id, record)
    return ScoredBlock(block, b, c, bar, moves, task_id, after, tuple(messages[hh] for _, hh in beacon_in.activations),
                       reward=reward)


def check_round_release(genesis: Genesis, book: TaskBook, beacon: Beacon, task_rec: TaskRecord,
                        messages: Mapping[bytes, TaskMessage] = {}) -> None:
    """§3.4/§3.14: a committee chain's beacon carries t proven shares of the round's point that combine to its
    shard key (RuleError("bad-key-share") naming the member whose share fails); a single-keyholder chain's
    beacon carries none."""
    if genesis.committee is None:
        if beacon.release:
            raise RuleError("bad-beacon", "a single keyholder's beacon carries no released shares")
        return
    if not beacon.release:
        raise RuleError("bad-key-share", f"beacon {beacon.round} carries no released shares")
    point, sealed = book.round_secret(task_rec, beacon.shard_index, messages)
    check_release(genesis.committee, genesis.hash, point, beacon.release, sealed, beacon.shard_key)


def check_ledger_release(genesis: Genesis, beacon: Beacon) -> None:
    """§3.4/§3.14 for a LEDGER round's beacon (it serves no shard): on a committee chain its key is the threshold
    VRF output of the round's ledger point (round, anchor), proven by t released shares — so no member chose
    the key that ranks the round's entries and plain blocks; a single keyholder's carries none."""
    if genesis.committee is None:
        if beacon.release:
            raise RuleError("bad-beacon", "a single keyholder's beacon carries no released shares")
        return
    if not beacon.release:
        raise RuleError("bad-key-share", f"beacon {beacon.round} carries no released shares")
    check_release(genesis.committee, genesis.hash, ledger_point(genesis.hash, beacon.round, beacon.anchor_hash),
                  beacon.release, None, beacon.shard_key)


def parent_payload(store: ChainStore, parent: Header) -> RoundPayload | None:
    """The round payload of a non-genesis ``parent`` (its crowning record says what its miner earned, §3.9)."""
    if parent.height == 0:
        return None
    raw = store.get_payload(parent.hash)
    if raw is None:
        raise StoreError(f"payload of block {parent.hash.hex()} is missing")
    return RoundPayload.decode(raw)


def check_attribution(h: Header, settlement: Settlement, index: ChainIndex, limit: int) -> None:
    """§3.6 step 7 (duplicate-model): the model is no champion and was never recorded opened (on the chain up
    to height ``limit``, or in this block's settlement), and no other key listed it first — by the earliest
    round of its listings, from the index or from this block's settlement records (void rounds; a round there
    may be older than any the index holds); listings in the block's own round do not count (nobody was
    first)."""
    mh = h.model_hash
    if index.past_model(mh, limit) or mh in settlement.opened:
        raise RuleError("duplicate-model", "model is byte-identical to a champion or to a model opened earlier")
    first = index.first_listing(mh, limit)
    recs = sorted((q, m) for q, m, rmh, _ in settlement.records if rmh == mh)
    if recs and (first is None or recs[0][0] < first[0]):
        # a settlement may carry rounds older than what the chain recorded so far (a long void streak is
        # settled over several blocks): the earliest round wins, wherever it comes from
        miners = {m for q, m in recs if q == recs[0][0]}
        first = (recs[0][0], recs[0][1] if len(miners) == 1 else CONTESTED)
    if first is not None and first[0] < h.round and first[1] != h.miner:
        whose = "two keys" if first[1] == CONTESTED else f"key {first[1].hex()[:16]}"
        raise RuleError("duplicate-model", f"model first listed by {whose} in round {first[0]}")
