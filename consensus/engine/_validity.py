"""Block validity for a round (PROTOCOL §3.6) against a chain store: parent, height, round and time, stake,
the schedule (§3.13), txs and state root after the bond settlement (§3.9), model hash and caps, duplicate
models, the shard against its commitment, and the crowning test (consensus.protocol.stats) by scoring the
model.

``validate_block`` runs the checks in the order of §3.6 — cheap ones (sizes, signatures, hashes) first, the
model scoring last — and raises chain.errors.RuleError with the stable reject code of the first broken rule. A
block whose parent is unknown is not invalid: ``OrphanBlock`` says so. ``ScoringCache`` keeps the opened
shards and the champion's per-row results a round's blocks share. Everything that decides is integers.

What it does NOT do: the store-free steps (consensus.protocol.rules: payload, bar, timestamp window, fork
order), fork choice or finality (the engine), or write anything.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from chain.address import address_of
from chain.block import Block, Header, model_hash, tx_root
from chain.errors import PopError, RuleError, StoreError
from chain.store import ChainStore
from consensus.engine._taskbook import TaskBook
from consensus.protocol.genesis import Genesis
from consensus.protocol.messages import Beacon
from consensus.protocol.registry import ChampionRecord, payout_move
from consensus.protocol.rules import ScoredBlock, crowning_bar, decode_payload, moves_for, timestamp_window
from consensus.protocol.stats import accepts
from ml.errors import MLError, ShardError
from ml.model import Model, decode_model
from ml.score import Features, paired, prepare, score
from ml.shards import PublicTask, open_shard
from ml.task import Dataset

__all__ = ["OrphanBlock", "ScoringCache", "validate_block"]


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


_default_cache = ScoringCache()


# ---------------------------------------------------------------- validate_block


def _walk_champion_hashes(store: ChainStore, parent: Header) -> Callable[[bytes], bool]:
    """Fallback for ``is_past_champion``: walk the parent's ancestry (the engine passes an index instead)."""
    seen = set()
    header: Header | None = parent
    while header is not None:
        seen.add(header.model_hash)
        header = None if header.height == 0 else store.get_header(header.prev_hash)
    return seen.__contains__


def validate_block(block: Block, *, genesis: Genesis, store: ChainStore,
                   beacon: Beacon | None = None, is_past_champion: Callable[[bytes], bool] | None = None,
                   cache: ScoringCache | None = None, book: TaskBook | None = None) -> ScoredBlock:
    """Every rule of §3.6, cheap first. ``beacon`` (optional) is the node's accepted beacon for the round:
    the payload's beacon must carry the same content. ``book`` holds the chain's task messages and registries
    (the engine's; a fresh one on ``store`` if None). Raises RuleError(code) or OrphanBlock."""
    cache = cache or _default_cache
    book = book or TaskBook(store, genesis)
    params = genesis.params
    h = block.header
    # 1. size (the node decoded the bytes; re-encoding gives the canonical size)
    size = len(block.encode())
    if size > params.max_block_bytes:
        raise RuleError("block-too-large", f"{size} bytes, cap {params.max_block_bytes}")
    payload = decode_payload(block, genesis)  # 1-2
    beacon_in = payload.beacon
    if beacon is not None and beacon.sighash != beacon_in.sighash:
        raise RuleError("bad-beacon", f"payload beacon differs from the accepted beacon of round {h.round}")
    # 3. sealed entry and anchor
    if (h.hash, h.miner) not in beacon_in.listed:
        raise RuleError("not-entered", f"header {h.hash.hex()[:16]} by this miner is not listed in beacon {h.round}")
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
    if beacon_in.time_ms // 1000 < parent.timestamp:
        raise RuleError("bad-beacon", "beacon time is before its anchor's timestamp")
    lo, hi = timestamp_window(params, beacon_in, parent)
    if not lo <= h.timestamp <= hi:
        raise RuleError("bad-timestamp", f"timestamp {h.timestamp} outside [{lo}, {hi}] (after the parent, "
                                         f"within the beacon's keyholder times ± {params.time_slack_s} s)")
    # 5. miner signature and stake
    if not h.verify_signature():
        raise RuleError("bad-header-sig", "miner signature does not verify")
    try:
        stake = store.state_view(h.prev_hash).get_account(address_of(h.miner)).balance
    except StoreError:
        raise RuleError("stale-parent", "parent is no longer on the main chain within reach") from None
    if stake < params.entry_bond:
        raise RuleError("insufficient-stake", f"miner balance {stake} < the entry bond {params.entry_bond}")
    # 5b. the schedule (§3.13): the activations it carries and the void rounds since the anchor give the
    # (task, shard) this round serves; the beacon must name exactly that
    messages = book.payload_messages(payload.activations, beacon_in.activations)
    adv = book.advance(book.registry_at(parent), parent, h.round, beacon_in.activations, messages)
    if adv.served != beacon_in.served:
        raise RuleError("bad-schedule", f"round {h.round} serves {adv.served}, the beacon says {beacon_in.served}")
    task_id, index = beacon_in.served
    task_rec = adv.before.tasks[task_id]
    task = book.package_of(task_rec, messages)
    # 6. txs and state root (the ledger rules and their codes come from chain.state)
    ledger = genesis.ledger_params
    if len(block.txs) > ledger.max_block_txs:
        raise RuleError("too-many-txs", f"{len(block.txs)} txs, limit {ledger.max_block_txs}")
    if tx_root(block.txs) != h.tx_root:
        raise RuleError("bad-tx-root", "tx root does not match the txs")
    moves = moves_for(genesis, beacon_in) + adv.moves + payout_move(adv.before, task_id, h.miner)
    delta = store.preview_txs(h.prev_hash, h.miner, block.txs, ledger, moves)
    if delta.state_root != h.state_root:
        raise RuleError("bad-state-root", "state root does not match the state after settlement + txs + reward + fees")
    # 7. model
    if model_hash(block.model) != h.model_hash:
        raise RuleError("bad-model-hash", "model bytes do not hash to header.model_hash")
    if len(block.model) > params.model_max_bytes:
        raise RuleError("model-too-large", f"{len(block.model)} bytes, cap {params.model_max_bytes}")
    try:
        challenger: Model = decode_model(block.model, task.spec, genesis.model_caps)
    except MLError as exc:
        raise RuleError("bad-model", str(exc)) from None
    past = is_past_champion or _walk_champion_hashes(store, parent)
    if past(h.model_hash) or h.model_hash in beacon_in.opened:
        raise RuleError("duplicate-model", "model is byte-identical to a champion or to a model opened earlier")
    # 8. shard
    try:
        shard = cache.shard(task, index, beacon_in.shard_key)
    except ShardError as exc:
        raise RuleError("bad-shard-commitment", str(exc)) from None
    # 9. the crowning test against the champion of the round's task: exact sign test, Bonferroni over the
    # m listed entries
    champion_bytes = book.champion_model(task_rec, messages)
    champion_ok = cache.champion_correct(genesis, champion_bytes, task, index, beacon_in.shard_key)
    features = cache.features(task, index, beacon_in.shard_key)  # the shard's X, prepared once per round
    b, c = paired(score(challenger, features, shard.y).correct, champion_ok)
    m = len(beacon_in.listed)
    bar = crowning_bar(b, c, m, params)
    if (payload.b, payload.c, payload.bar) != (b, c, bar):
        raise RuleError("bad-score", f"payload says b={payload.b} c={payload.c} bar={payload.bar}, "
                                     f"recomputed b={b} c={c} bar={bar}")
    if not accepts(b, c, m, params.alpha):
        why = (f"no outcome of {b + c} disagreements crowns with {m} entries" if bar == 0
               else f"needs b >= {bar} of {b + c} (alpha {params.alpha_num}/{params.alpha_den} over {m} entries)")
        raise RuleError("not-better-than-champion", f"b={b} c={c}: {why}")
    record = ChampionRecord(h.hash, h.height, h.round, h.miner, h.model_hash, b, c, bar, task_id)
    after = adv.before.consume(beacon_in.served).crown(task_id, record)
    return ScoredBlock(block, b, c, bar, moves, task_id, after, tuple(messages[hh] for _, hh in beacon_in.activations))
