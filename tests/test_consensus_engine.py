"""Engine + Keyholder on a real LevelDB store: rounds, fork choice, finality, void rounds, equivocation,
keyholder restart, sync from scratch, templates."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.address import address_of
from chain.errors import RuleError
from chain.store import ChainStore
from consensus.engine import Engine
from consensus.keyholder import Keyholder, RoundClosed, keyholder_file, load_keyholder_file
from consensus.mining import open_block, seal
from consensus.protocol.messages import AnchorNotice, Beacon, make_beacon
from consensus.protocol.rules import fork_key
from tests.test_consensus_helpers import KEYHOLDER, MINERS, ROUNDS, kp, trained, transfer, world

T0 = 1_700_000_100.0


def models() -> list[bytes]:
    return [trained("linear", 0), trained("linear", 1), trained("mlp", 0), trained("tree", 0)]


def open_engine(path) -> tuple[ChainStore, Engine, Keyholder]:
    store = ChainStore.open(path)
    engine = Engine(store, world().genesis)
    return store, engine, Keyholder(engine, world().secret_bytes, [KEYHOLDER])


def enter(engine: Engine, kh: Keyholder, entrants, now: float):
    """Each (miner, model) seals a block on the open round's template and enters; returns the sealed blocks."""
    sealed = []
    for miner, model in entrants:
        template = engine.build_template(miner.public, [], int(now))
        block, entry = seal(template, model, miner, hashlib.sha256(miner.public + model).digest())
        assert engine.add_entry(entry)
        assert kh.on_entry(entry)
        sealed.append(block)
    return sealed


def reveal(kh: Keyholder, now: float) -> Beacon:
    return next(a for a in kh.step(now) if isinstance(a, Beacon))


def opened(engine: Engine, sealed, beacon: Beacon, champion: bytes):
    return [open_block(b, beacon, genesis=world().genesis, champion_bytes=champion) for b in sealed]


@pytest.fixture()
def node(tmp_path):
    store, engine, kh = open_engine(tmp_path / "db")
    yield store, engine, kh
    store.close()


def test_round_crowns_the_best_block_and_finalises_it(node):
    store, engine, kh = node
    w = world()
    kh.step(T0)
    assert engine.open_round() == 1 and engine.final_hash() == w.genesis.hash
    champion = engine.champion_model()
    sealed = enter(engine, kh, list(zip(MINERS, models())), T0)
    beacon = reveal(kh, T0 + 4)
    assert engine.open_round() == 0 and len(beacon.entries) == 4
    verdicts = [engine.add_block(b) for b in opened(engine, sealed, beacon, champion)]
    valid = [v.scored for v in verdicts if v.ok]
    assert valid, [v.code for v in verdicts]
    best = max(valid, key=fork_key)
    assert engine.tip().hash == best.hash and engine.final_hash() == w.genesis.hash
    actions = kh.step(T0 + 8)
    closed = next(a for a in actions if isinstance(a, RoundClosed))
    assert closed.winner == best.hash and engine.final_hash() == best.hash and engine.open_round() == 2
    rec = engine.champion()
    assert (rec.hash, rec.round, rec.b, rec.c) == (best.hash, 1, best.b, best.c)
    assert [r.round for r in engine.champion_history()] == [0, 1]
    assert engine.round_info(1).status == "crowned" and engine.round_info(2).status == "open"
    miner_balance = store.get_account(address_of(best.block.header.miner)).balance
    assert miner_balance == 10**9 + w.genesis.params.block_reward


def constant_model() -> bytes:
    from ml.model import LinearModel, encode_model
    spec = world().genesis.task.spec
    return encode_model(LinearModel(np.zeros((spec.n_features, spec.n_classes), dtype=np.int64),
                                    np.array([1] + [0] * (spec.n_classes - 1), dtype=np.int64)))


def test_void_round_keeps_the_anchor(node):
    """A listed entry that never opens: no block, round 1 is void and round 2 builds on genesis again."""
    store, engine, kh = node
    g = world().genesis
    kh.step(T0)
    enter(engine, kh, [(MINERS[0], constant_model())], T0)
    reveal(kh, T0 + 4)
    kh.step(T0 + 8)          # close: nobody opened, void
    assert engine.round_info(1).status == "void" and engine.final_hash() == g.hash
    assert engine.open_round() == 2
    template = engine.build_template(MINERS[0].public, [], int(T0 + 9))
    assert template.prev_hash == g.hash and template.round == 2


def test_a_block_that_does_not_crown_is_a_plain_block(node):
    """Issue 21: a listed block valid except for the crowning test anchors its round as a PLAIN block — it
    confirms its transfers, leaves the champion where it was, and the next block burns the block reward its
    miner was credited (a plain block earns its fees only). Old code: verdict `opened`, round void, the
    transfer still pending."""
    store, engine, kh = node
    g = world().genesis
    kh.step(T0)
    champion = engine.champion_model()
    before = engine.champion()
    payer, payee = MINERS[1], MINERS[2]
    tx = transfer(payer, 0, amount=5_000, fee=2_000, recipient=address_of(payee.public))
    template = engine.build_template(MINERS[0].public, [tx], int(T0))
    assert template.txs == (tx,)
    block, entry = seal(template, constant_model(), MINERS[0], b"\x01" * 32)
    assert engine.add_entry(entry) and kh.on_entry(entry)
    beacon = reveal(kh, T0 + 4)
    [verdict] = [engine.add_block(b) for b in opened(engine, [block], beacon, champion)]
    assert verdict.status == "tip-changed" and verdict.scored is not None and not verdict.scored.crowned
    kh.step(T0 + 8)          # close: the plain block anchors round 2
    assert engine.round_info(1).status == "plain" and engine.final_hash() == block.hash
    assert engine.champion() == before and engine.champion_at(1) is None
    assert [r.round for r in engine.champion_history()] == [0]
    assert store.find_tx(tx.txid) is not None           # confirmed
    miner = address_of(MINERS[0].public)
    credited = store.get_account(miner).balance
    assert credited == 10**9 + g.params.block_reward + 2_000      # sealed as chain/ credits every block
    # round 2: the child burns the plain block's reward first; its miner keeps the fees
    template = engine.build_template(MINERS[3].public, [], int(T0 + 9))
    child, entry = seal(template, trained("linear", 3), MINERS[3], b"\x02" * 32)
    assert engine.add_entry(entry) and kh.on_entry(entry)
    beacon = reveal(kh, T0 + 13)
    [verdict] = [engine.add_block(b) for b in opened(engine, [child], beacon, engine.champion_model())]
    assert verdict.ok, verdict
    assert store.get_account(miner).balance == 10**9 + 2_000
    from chain.state import BURN_ACCOUNT
    assert store.get_account(BURN_ACCOUNT).balance >= g.params.block_reward


def test_round_without_entries_waits_and_keeps_its_shard(node):
    """Old keyholder: an empty beacon at W revealed (burnt) shard 1 with nobody entered. Now round 1 waits."""
    store, engine, kh = node
    kh.step(T0)
    for t in (T0 + 4, T0 + 8, T0 + 100, T0 + 1000):
        assert not [a for a in kh.step(t) if isinstance(a, Beacon)]
    assert engine.beacon(1) is None and engine.open_round() == 1 and kh.waiting()
    assert kh.next_deadline() is None            # nothing to do until an entry comes
    enter(engine, kh, [(MINERS[0], models()[0])], T0 + 1001)
    assert not [a for a in kh.step(T0 + 1002) if isinstance(a, Beacon)]   # W runs again from the first entry
    assert kh.next_deadline() == pytest.approx(T0 + 1002 + 4)
    beacon = reveal(kh, T0 + 1006)
    assert beacon.round == 1 and len(beacon.listed) == 1


def test_engine_refuses_an_empty_beacon(node):
    store, engine, kh = node
    kh.step(T0)
    empty = make_beacon([KEYHOLDER], world().genesis.chain_id, 1, world().genesis.hash, [],
                        world().secret.key(1))
    with pytest.raises(RuleError) as exc:
        engine.add_beacon(empty)
    assert exc.value.code == "bad-beacon" and engine.beacon(1) is None


def test_second_beacon_is_refused_and_reported(node):
    store, engine, kh = node
    kh.step(T0)
    enter(engine, kh, [(MINERS[0], models()[0])], T0)
    first = reveal(kh, T0 + 4)
    other = make_beacon([KEYHOLDER], first.chain_id, 1, first.anchor_hash,
                        [(b"\x09" * 32, MINERS[1].public, bytes(32), bytes(32))], first.shard_key,
                        opened_ms=first.opened_ms, time_ms=first.time_ms)
    with pytest.raises(RuleError) as exc:
        engine.add_beacon(other)
    assert exc.value.code == "equivocation"
    assert engine.beacon(1) == first
    [(r, kept, refused)] = engine.equivocations()
    assert r == 1 and kept == first.encode() and refused == other.encode()
    assert engine.add_beacon(first) is False      # the kept one is just a duplicate


def test_unsigned_or_foreign_beacon_is_not_equivocation(node):
    store, engine, kh = node
    kh.step(T0)
    forged = make_beacon([kp("impostor")], world().genesis.chain_id, 1, world().genesis.hash,
                         [(bytes(32), MINERS[0].public, bytes(32), bytes(32))], bytes(32))
    with pytest.raises(RuleError) as exc:
        engine.add_beacon(forged)
    assert exc.value.code == "bad-beacon-sig" and engine.equivocations() == []


def test_keyholder_restart_never_reveals_twice(tmp_path):
    store, engine, kh = open_engine(tmp_path / "db")
    kh.step(T0)
    sealed = enter(engine, kh, [(MINERS[0], models()[0])], T0)
    beacon = reveal(kh, T0 + 4)
    store.close()
    # restart: a new process, new objects, same datadir; an extra entry arriving now must not change round 1
    store, engine, kh = open_engine(tmp_path / "db")
    late = enter_late = None
    with pytest.raises(RuleError):
        enter(engine, kh, [(MINERS[1], models()[1])], T0 + 5)   # round 1 is closed for entries
    resent = [a for a in kh.step(T0 + 5) if isinstance(a, Beacon)]
    assert [b.encode() for b in resent] == [beacon.encode()]
    for t in (T0 + 6, T0 + 7):
        assert not [a for a in kh.step(t) if isinstance(a, Beacon) and a.round == 1]
    assert engine.beacon(1) == beacon and engine.equivocations() == []
    del late, enter_late, sealed
    store.close()


def test_keyholder_crash_between_journal_and_engine(tmp_path):
    """Journal written, engine not updated (crash): on restart the same beacon is re-applied and re-sent."""
    store, engine, kh = open_engine(tmp_path / "db")
    kh.step(T0)
    enter(engine, kh, [(MINERS[0], models()[0])], T0)
    original = engine.add_beacon
    engine.add_beacon = lambda b: (_ for _ in ()).throw(SystemExit("crash"))
    with pytest.raises(SystemExit):
        kh.step(T0 + 4)
    engine.add_beacon = original
    journaled = kh._revealed(1)[1]
    store.close()
    store, engine, kh = open_engine(tmp_path / "db")
    assert engine.beacon(1) is None
    resent = [a for a in kh.step(T0 + 4.5) if isinstance(a, Beacon)]
    assert resent == [journaled] and engine.beacon(1) == journaled
    store.close()


def test_keyholder_file_roundtrip():
    data = keyholder_file(world().secret_bytes, [KEYHOLDER])
    secret, keys = load_keyholder_file(data)
    assert secret == world().secret and [k.public for k in keys] == [KEYHOLDER.public]


def _play(engine, kh, now, entrants):
    champion = engine.champion_model()
    sealed = enter(engine, kh, entrants, now)
    beacon = reveal(kh, now + 4)
    blocks = opened(engine, sealed, beacon, champion)
    return beacon, blocks


def test_sync_from_scratch_and_stale_blocks(tmp_path):
    store, engine, kh = open_engine(tmp_path / "a")
    now, all_blocks = T0, []
    kh.step(now)
    # every round fresh models (issue 18: a model another key listed first can never be entered again)
    ms = models() + [trained("mlp", seed) for seed in (7, 9, 13, 14, 15)]   # linear fits ignore their seed
    for r in range(1, 4):
        entrants = [(MINERS[i], ms[3 * (r - 1) + i]) for i in range(3)]
        _, blocks = _play(engine, kh, now, entrants)
        for b in blocks:
            engine.add_block(b)
        all_blocks += blocks
        now += 8
        kh.step(now)
    chain = [store.get_block(h) for h in range(1, store.tip().height + 1)]
    history = [(r.hash, r.round, r.b, r.c, r.bar) for r in engine.champion_history()]
    # a non-winning block of a finalised round is stale, not invalid
    loser = next(b for b in all_blocks if not store.is_main_chain(b.hash))
    assert engine.add_block(loser).status == "stale"
    # a fresh node gets the main chain newest-first: orphans until the oldest arrives, then all connect
    fresh_store = ChainStore.open(tmp_path / "b")
    fresh = Engine(fresh_store, world().genesis)
    verdicts = [fresh.add_block(b) for b in reversed(chain)]
    assert [v.status for v in verdicts[:-1]] == ["orphan"] * (len(chain) - 1)
    assert verdicts[-1].ok and set(verdicts[-1].connected) >= {b.hash for b in chain[1:-1]}
    assert fresh.tip().hash == chain[-1].hash
    assert [(r.hash, r.round, r.b, r.c, r.bar) for r in fresh.champion_history()] == history
    fresh_store.close()
    store.close()


def test_template_selects_txs_by_nonce_and_balance(node):
    store, engine, kh = node
    kh.step(T0)
    rich, poor = MINERS[1], kp("nobody")
    txs = [transfer(rich, 1), transfer(rich, 0), transfer(poor, 0), transfer(rich, 1), transfer(rich, 2)]
    t = engine.build_template(MINERS[0].public, txs, int(T0))
    assert [tx.nonce for tx in t.txs] == [0, 1, 2][: world().genesis.params.max_block_txs]
    assert all(tx.sender == rich.public for tx in t.txs)
    block, _ = seal(t, models()[0], MINERS[0], bytes(32))
    assert store.preview_block(block, world().genesis.ledger_params).state_root == t.state_root


@pytest.fixture(scope="module")
def round_one_blocks(tmp_path_factory):
    store, engine, kh = open_engine(tmp_path_factory.mktemp("r1") / "db")
    kh.step(T0)
    beacon, blocks = _play(engine, kh, T0, list(zip(MINERS, models())))
    store.close()
    return beacon, blocks


@given(st.permutations(range(4)), st.lists(st.integers(0, 3), max_size=3))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fork_choice_independent_of_arrival_and_finality_never_reverts(tmp_path_factory, round_one_blocks,
                                                                      order, repeats):
    beacon, blocks = round_one_blocks
    store = ChainStore.open(tmp_path_factory.mktemp("perm") / "db")
    try:
        engine = Engine(store, world().genesis)
        kh = Keyholder(engine, world().secret_bytes, [KEYHOLDER])
        kh.step(T0)
        finals = [engine.final_hash()]
        engine.add_beacon(beacon)
        for i in list(order) + list(repeats):
            engine.add_block(blocks[i])
            finals.append(engine.final_hash())
        valid = [s for s in engine.candidates()]
        assert engine.tip().hash == max(valid, key=fork_key).hash
        kh._revealed = lambda r: (int(T0 * 1000), beacon) if r == 1 else None  # keyholder saw this beacon
        kh.step(T0 + 9)
        finals.append(engine.final_hash())
        # finality only moves forward: every later final hash descends from (or equals) the earlier ones
        heights = [store.get_header(h).height for h in finals]
        assert heights == sorted(heights) and all(store.is_main_chain(h) for h in finals)
        for b in blocks:   # nothing of round 1 can displace the final anchor any more
            engine.add_block(b)
            assert engine.final_hash() == finals[-1] and engine.tip().hash == finals[-1]
    finally:
        store.close()


def test_keyholder_stops_cleanly_when_shards_run_out(node):
    from consensus.keyholder import Done
    store, engine, kh = node
    now, seen = T0, []
    for _ in range(3 * ROUNDS + 3):
        seen += kh.step(now)
        if engine.open_round():
            # one key re-enters its own model: a model another key listed first is refused (issue 18)
            enter(engine, kh, [(MINERS[0], constant_model())], now)
        now += 4
    assert kh.done and any(isinstance(a, Done) for a in seen)
    assert engine.current_round() == ROUNDS + 1 and engine.open_round() == 0
    assert [engine.round_info(r).status for r in range(1, ROUNDS + 1)] == ["void"] * ROUNDS
    assert kh.next_deadline() is None
    # issue 21: the exhausted chain's current round is a LEDGER round: a template for a plain block, no task
    assert engine.ledger_round() == ROUNDS + 1
    template = engine.build_template(MINERS[0].public, [], int(now))
    assert (template.round, template.task_id, template.shard_index) == (ROUNDS + 1, 0, 0)


def exhaust(engine: Engine, kh: Keyholder, now: float) -> float:
    """Play every round of the genesis task void (one listed entry that never opens); returns the clock."""
    for _ in range(3 * ROUNDS + 3):
        kh.step(now)
        if engine.open_round():
            enter(engine, kh, [(MINERS[0], constant_model())], now)
        now += 4
    return now


def test_a_closed_chain_still_confirms_transfers_in_ledger_rounds(node):
    """Issue 21: every task exhausted, the keyholder's idle notice opens a LEDGER round; a staked miner enters
    a block without a model, the beacon lists it (no shard revealed), it anchors the round as a plain block
    and confirms the transfer; the next notice is idle again, on that block. A block with a model in a ledger
    round is `bad-model`. Old code: the closing notice opened nothing, the template was refused
    (`no-open-round`) and a transfer waited for a new task."""
    store, engine, kh = node
    now = exhaust(engine, kh, T0)
    assert kh.done and engine.open_round() == 0
    r = engine.ledger_round()
    assert r == ROUNDS + 1 and engine.round_info(r).status == "idle"
    before = engine.champion()
    tx = transfer(MINERS[1], 0, amount=7_000, fee=3_000, recipient=address_of(MINERS[2].public))
    template = engine.build_template(MINERS[3].public, [tx], int(now))
    assert template.txs == (tx,) and (template.task_id, template.shard_index) == (0, 0)
    block, entry = seal(template, b"", MINERS[3], b"\x04" * 32)
    other = engine.build_template(MINERS[2].public, [], int(now))
    modelled, entry2 = seal(other, trained("linear", 2), MINERS[2], b"\x05" * 32)
    for e in (entry, entry2):
        assert engine.add_entry(e) and kh.on_entry(e)
    kh.step(now)
    beacon = reveal(kh, now + 5)
    assert beacon.idle and beacon.served is None and len(beacon.listed) == 2
    bad = engine.add_block(open_block(modelled, beacon, genesis=world().genesis, champion_bytes=b""))
    assert (bad.status, bad.code) == ("rejected", "bad-model")
    verdict = engine.add_block(open_block(block, beacon, genesis=world().genesis, champion_bytes=b""))
    assert verdict.status == "tip-changed" and verdict.scored is not None and not verdict.scored.crowned
    actions = kh.step(now + 10)
    notice = next(a for a in actions if isinstance(a, AnchorNotice))
    assert notice.idle and notice.round == r + 1 and notice.anchor_hash == block.hash
    assert engine.round_info(r).status == "plain" and engine.champion() == before
    assert store.find_tx(tx.txid) is not None
    assert engine.ledger_round() == r + 1 and store.verify().ok
