"""The champion lineage's keyed indexes (issue 23 item 1) on a real LevelDB store: kept in the block's own
WriteBatch on connect AND on disconnect, so after any sequence of tip switches (the reorgs of fork choice within a
round) they equal a rebuild from the champion records; the paged reads agree with the whole lineage; a datadir
written before the indexes existed is indexed once at start."""
from __future__ import annotations

from chain.address import address_of
from chain.store import ChainStore
from consensus._meta import K_CINDEX, P_CHAMP, P_CMINER, P_CROUND, P_CTASK
from consensus.engine import Engine
from consensus.engine._lineage import index_extra
from consensus.protocol.messages import RoundPayload
from consensus.protocol.registry import ChampionRecord
from consensus.protocol.rules import fork_key, is_crowned
from ml.model import encode_model
from ml.task import Dataset
from ml.training import train_candidate
from tests.test_consensus_engine import MINERS, T0, enter, models, open_engine, opened, reveal
from tests.test_consensus_helpers import world

INDEXES = (P_CROUND, P_CTASK, P_CMINER)


def _indexes(store: ChainStore) -> dict[bytes, bytes]:
    return {k: v for p in INDEXES for k, v in store.meta_items(p)}


def _rebuilt(store: ChainStore) -> dict[bytes, bytes | None]:
    out: dict[bytes, bytes | None] = {}
    for _, v in store.meta_items(P_CHAMP):
        rec = ChampionRecord.decode(v)
        if rec.height > 0:
            out.update(index_extra(rec))
    return out


def _crowned_hashes(store: ChainStore) -> list[bytes]:
    """The main chain's crowning blocks (genesis first): a plain block (issue 21) records no champion."""
    out = [store.block_hash_at(0)]
    for h in range(1, store.tip().height + 1):
        p = RoundPayload.decode(store.get_payload(store.block_hash_at(h)))
        if is_crowned(p.b, p.c, p.bar):
            out.append(store.block_hash_at(h))
    return out


def _fresh(family: str, skip: int) -> bytes:
    """A model nobody entered before: trained on the public rows less the first ``skip`` (distinct bytes)."""
    g = world().genesis
    data = g.task.training
    return encode_model(train_candidate(family, Dataset(data.spec, data.X[skip:], data.y[skip:]), (),
                                        caps=g.model_caps))


def _check(store: ChainStore, engine: Engine) -> None:
    assert [r.hash for r in engine.champion_history()] == _crowned_hashes(store)
    assert _indexes(store) == _rebuilt(store)
    for r in range(1, engine.current_round() + 1):
        win = engine.round_info(r).winner
        assert win is None or store.is_main_chain(win.hash)


def test_lineage_indexes_follow_every_tip_switch_and_restart(tmp_path):
    store, engine, kh = open_engine(tmp_path / "db")
    now, switches = T0, 0
    kh.step(now)
    for r in range(1, 4):
        champion = engine.champion_model()
        # fresh models each round: a model listed, opened or crowned before is nobody's to enter again (§3.6)
        ms = [_fresh(family, 4 * r + i) for i, family in enumerate(("linear", "linear", "mlp", "tree"))]
        sealed = enter(engine, kh, list(zip(MINERS, ms)), now)
        beacon = reveal(kh, now + 4)
        blocks = opened(engine, sealed, beacon, champion)
        scored = {}
        for b in blocks:            # score them all on a scratch order, then feed worst first: the tip switches
            v = engine.add_block(b)
            if v.scored is not None:
                scored[b.hash] = v.scored
        _check(store, engine)
        now += 8
        kh.step(now)
        _check(store, engine)
        if len(scored) > 1:
            switches += 1
    assert switches >= 1, "no round had two valid blocks: the test would not exercise a disconnect"
    full = engine.champion_history()
    # paged reads agree with the whole lineage
    assert engine.champion_history(limit=2) == full[-2:]
    assert engine.champion_history(before=full[-1].height, limit=1) == full[-2:-1]
    assert engine.champion_history(0, limit=1 << 20) == [r for r in full if r.task_id == 0]
    winners = {r.round: r for r in full if r.height > 0}
    assert engine.crowned_rounds(1, engine.current_round()) == winners
    for miner in MINERS:
        mine = [r for r in full if r.height > 0 and r.miner == miner.public]
        assert engine.miner_champions(address_of(miner.public), limit=100) == mine
    assert engine.first_missing_round() == engine.current_round()
    for rec in full:
        assert engine.champion_of_model(rec.model_hash) == (rec if rec.height > 0 else None)
    # /api/tasks/{id} pages its revealed keys (node.api_tasks.revealed_page) newest first, then back to round 1
    from node.api_tasks import revealed_page
    from node.rounds_index import RoundIndex
    index = RoundIndex(engine, store)
    keys = [(r, engine.beacon(r).shard_key.hex()) for r in range(1, engine.current_round() + 1)
            if engine.beacon(r) is not None]
    first = revealed_page(engine, index, 0, None, 2)
    assert [(k["round"], k["shard_key"]) for k in first["revealed"]] == keys[-2:]
    assert first["revealed_next"] == keys[-2][0] and first["revealed_first"]["round"] == keys[0][0]
    rest = revealed_page(engine, index, 0, first["revealed_next"], 1000)
    assert [(k["round"], k["shard_key"]) for k in rest["revealed"]] == keys[:-2] and rest["revealed_next"] is None
    # a datadir from before the indexes: dropped, then rebuilt once at start
    store.meta_write({**{k: None for k in _indexes(store)}, K_CINDEX: None})
    store.close()
    store, engine, kh = open_engine(tmp_path / "db")
    _check(store, engine)
    assert engine.crowned_rounds(1, engine.current_round()) == winners
    store.close()


def test_tip_switch_within_a_round_moves_the_round_winner(tmp_path):
    """Feed round 1's valid blocks worst first: each better one disconnects the tip; the index follows."""
    store, engine, kh = open_engine(tmp_path / "db")
    kh.step(T0)
    champion = engine.champion_model()
    sealed = enter(engine, kh, list(zip(MINERS, models())), T0)
    beacon = reveal(kh, T0 + 4)
    blocks = opened(engine, sealed, beacon, champion)
    # score each on a scratch engine to learn the fork-choice order
    scratch_store = ChainStore.open(tmp_path / "scratch")
    scratch = Engine(scratch_store, world().genesis)
    scratch.add_beacon(beacon)
    for b in blocks:
        scratch.add_block(b)
    order = sorted((s for s in scratch.candidates()), key=fork_key)
    scratch_store.close()
    assert len(order) >= 2
    by_hash = {b.hash: b for b in blocks}
    for s in order:
        assert engine.add_block(by_hash[s.hash]).status == "tip-changed"
        if s.crowned:              # a plain tip (issue 21) is no round winner: the index holds none for it
            assert engine.round_info(1).winner is not None and engine.round_info(1).winner.hash == s.hash
            assert engine.crowned_rounds(1, 1)[1].hash == s.hash
        else:
            assert engine.round_info(1).winner is None and engine.crowned_rounds(1, 1) == {}
        _check(store, engine)
    loser = order[0]
    assert engine.miner_champions(address_of(loser.block.header.miner)) == [] or \
        loser.block.header.miner == order[-1].block.header.miner
    store.close()


class _CountingKV:
    """The store's own LevelDB, counting the records each call reads (instrumentation, not a stand-in)."""

    def __init__(self, kv) -> None:
        self.kv, self.reads = kv, 0

    def get(self, key):
        self.reads += 1
        return self.kv.get(key)

    def iterator(self, prefix):
        for item in self.kv.iterator(prefix):
            self.reads += 1
            yield item

    def before(self, prefix, stop, limit):
        out = self.kv.before(prefix, stop, limit)
        self.reads += len(out) + 1
        return out

    def __getattr__(self, name):
        return getattr(self.kv, name)


def test_per_block_and_per_request_reads_do_not_grow_with_the_lineage(tmp_path):
    """Flat cost, counted in records read (no clock): with 3,000 more champion records stored, what the chain
    view, /api/status, round sync and the paged lineage read per call stays a small constant."""
    from consensus._meta import u32
    from node.events import read_chain_view
    store, engine, kh = open_engine(tmp_path / "db")
    kh.step(T0)
    champion = engine.champion_model()
    sealed = enter(engine, kh, list(zip(MINERS[:2], models()[:2])), T0)
    beacon = reveal(kh, T0 + 4)
    for b in opened(engine, sealed, beacon, champion):
        engine.add_block(b)
    kh.step(T0 + 8)
    # a long lineage's records, far above the real chain (records of heights no block has: never read back)
    g = world().genesis.header
    store.meta_write({P_CHAMP + u32(100_000 + i): ChampionRecord(bytes(32), 100_000 + i, 100_000 + i, g.miner,
                                                                 bytes(32), 1, 0, 0, 0).encode()
                      for i in range(3000)})
    counting = _CountingKV(store._kv)
    store._kv = counting
    calls = {
        "round_info": lambda: engine.round_info(engine.current_round()),
        "chain view": lambda: read_chain_view(engine, 4),
        "champion": engine.champion,
        "sync cursor": engine.first_missing_round,
        "crowned window": lambda: engine.crowned_rounds(1, 16),
        "task lineage page": lambda: engine.champion_history(0, limit=5),
        "miner page": lambda: engine.miner_champions(address_of(MINERS[0].public), limit=5),
    }
    for name, call in calls.items():
        counting.reads = 0
        call()
        assert counting.reads <= 200, (name, counting.reads)
    store._kv = counting.kv
    store.close()
