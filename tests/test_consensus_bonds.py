"""Attacks on the round rules (issue 9), each written as the attacker first: squatting every entry slot,
crowding out honest entrants, stealing a model another miner opened, stamping a timestamp that halts the chain.
Real Engine + Keyholder + LevelDB, real Ed25519; the clock is explicit."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.block import Header, model_hash
from chain.errors import RuleError
from chain.state import BURN_ACCOUNT, Account
from consensus.keyholder import RoundClosed
from consensus.mining import open_block, seal, template_timestamp
from consensus.protocol.genesis import GenesisParams
from consensus.protocol.messages import Beacon
from consensus.protocol.rules import timestamp_window
from consensus.protocol.settlement import bond_of
from tests.test_consensus_engine import T0, constant_model, enter, models, open_engine, opened, reveal
from tests.test_consensus_helpers import BOND, MINERS, SQUATTERS, trained, world


@pytest.fixture()
def node(tmp_path):
    store, engine, kh = open_engine(tmp_path / "db")
    yield store, engine, kh
    store.close()


def squat(engine, kh, squatters, now):
    """Each squatter seals a junk block and enters; none will ever open."""
    for sq in squatters:
        tpl = engine.build_template(sq.public, [], int(now))
        _, entry = seal(tpl, b"never-opened" + sq.public, sq, hashlib.sha256(sq.public).digest())
        engine.add_entry(entry)
        kh.on_entry(entry)


def total_supply(store) -> int:
    return sum(Account.decode(v).balance for _, v in store.state_view().items())


def test_squatting_every_slot_costs_at_least_one_block_reward_per_voided_round(node):
    """Old rules: 16 keys with 1 000 grains each filled all 16 slots of a round, never opened, and voided it for
    free. Now each listed, unopened entry forfeits its bond, burnt by the next crowned block."""
    store, engine, kh = node
    g = world().genesis
    bond, reward = g.params.entry_bond, g.params.block_reward
    supply0 = total_supply(store)
    kh.step(T0)
    squat(engine, kh, SQUATTERS, T0)
    beacon = reveal(kh, T0 + 4)
    assert {x[1] for x in beacon.listed} == {s.public for s in SQUATTERS}
    closed = next(a for a in kh.step(T0 + 8) if isinstance(a, RoundClosed))
    assert closed.winner is None                                   # voided ...
    notice = engine.notice(2)
    assert dict(notice.forfeits) == {s.public: 1 for s in SQUATTERS}   # ... and charged
    # a squatter holding one bond, already owing it, cannot enter the next round
    with pytest.raises(RuleError) as exc:
        squat(engine, kh, SQUATTERS[:1], T0 + 9)
    assert exc.value.code == "insufficient-stake"
    # an honest miner crowns round 2; its block burns the forfeits before its txs
    champion = engine.champion_model()
    sealed = enter(engine, kh, [(MINERS[0], models()[0])], T0 + 9)
    b2 = reveal(kh, T0 + 13)
    assert b2.settlement == notice.settlement
    [verdict] = [engine.add_block(b) for b in opened(engine, sealed, b2, champion)]
    assert verdict.status == "tip-changed", verdict
    next(a for a in kh.step(T0 + 17) if isinstance(a, RoundClosed))
    burnt = store.get_account(BURN_ACCOUNT).balance
    assert burnt == len(SQUATTERS) * bond and burnt >= reward       # the bound: >= 1 block reward
    assert all(store.get_account(bond_of(s.public)).balance == 0 for s in SQUATTERS)
    # supply accounting stays exact: allocations + reward per block (the burn account is part of it)
    assert total_supply(store) == supply0 + reward * store.tip().height
    assert store.verify().ok                                        # replay re-applies the recorded moves


def test_opened_entries_keep_their_bond(node):
    store, engine, kh = node
    g = world().genesis
    kh.step(T0)
    champion = engine.champion_model()
    sealed = enter(engine, kh, [(MINERS[0], models()[0]), (MINERS[1], constant_model())], T0)
    beacon = reveal(kh, T0 + 4)
    verdicts = [engine.add_block(b) for b in opened(engine, sealed, beacon, champion)]
    assert [v.status for v in verdicts] == ["tip-changed", "accepted"]   # the loser: a plain block, not best
    kh.step(T0 + 8)
    assert engine.notice(2).forfeits == ()                          # the loser opened: nothing forfeited
    assert set(engine.notice(2).opened) == {model_hash(models()[0]), model_hash(constant_model())}
    assert store.get_account(bond_of(MINERS[1].public)).balance == BOND
    assert g.params.entry_bond > 0


def test_more_entries_than_slots_keep_the_largest_stakes_not_the_first(node):
    """Old rules: first come, first listed — squatters entering early crowded honest miners out."""
    store, engine, kh = node
    kh.step(T0)
    squat(engine, kh, SQUATTERS, T0)                               # all 16 slots taken first
    enter(engine, kh, [(MINERS[0], models()[0])], T0)              # a richer honest miner arrives last
    beacon = reveal(kh, T0 + 4)
    miners = {x[1] for x in beacon.listed}
    assert MINERS[0].public in miners and len(miners) == world().genesis.params.max_entries
    # one squatter is dropped: equal stakes, so the lowest slot value of the round's shard key (issue 18)
    from consensus.protocol.listing import slot_value
    dropped = [s for s in SQUATTERS if s.public not in miners]
    assert len(dropped) == 1
    assert slot_value(beacon.shard_key, dropped[0].public) == min(slot_value(beacon.shard_key, s.public)
                                                                  for s in SQUATTERS)


def _steal(engine, kh, thief, model, now):
    """The thief's entry: the keyholder refuses it (issue 18: it names a model opened or listed first by another
    key); a keyholder that lists it anyway (the policy bypassed) leaves it to the validity rule."""
    tpl = engine.build_template(thief.public, [], int(now))
    block, entry = seal(tpl, model, thief, hashlib.sha256(thief.public + model + b"x").digest())
    engine.add_entry(entry)
    with pytest.raises(RuleError) as exc:
        kh.on_entry(entry)
    assert exc.value.code == "duplicate-model"
    real, kh.check_claim = kh.check_claim, lambda _entry: None
    try:
        assert kh.on_entry(entry)
    finally:
        kh.check_claim = real
    return block


def test_a_loser_resubmitted_by_another_miner_is_refused(node):
    """Old rules: duplicate-model covered champions only, so a model that lost (or was beaten) in round r
    could be entered by another key in a later round and crowned for it."""
    store, engine, kh = node
    kh.step(T0)
    champion = engine.champion_model()
    beaten = trained("linear", 1)
    sealed = enter(engine, kh, [(MINERS[0], trained("mlp")), (MINERS[1], constant_model()),
                                (MINERS[3], beaten)], T0)
    beacon = reveal(kh, T0 + 4)
    verdicts = {v.block_hash: v for v in (engine.add_block(b) for b in opened(engine, sealed, beacon, champion))}
    winner = max((v for v in verdicts.values() if v.ok), key=lambda v: (v.scored.b - v.scored.c, v.scored.b))
    assert engine.tip().hash == winner.block_hash
    kh.step(T0 + 8)
    losers = [m for m in (constant_model(), beaten, trained("mlp")) if model_hash(m) != engine.tip().model_hash]
    # round 2: thieves enter the round-1 losers (recorded as opened by beacon 2's settlement)
    champion = engine.champion_model()
    thieves = [MINERS[2], MINERS[4]]
    stolen = [_steal(engine, kh, t, m, T0 + 9) for t, m in zip(thieves, losers)]
    honest = enter(engine, kh, [(MINERS[0], trained("linear", 2))], T0 + 9)
    b2 = reveal(kh, T0 + 13)
    assert {model_hash(m) for m in losers} <= set(b2.opened)
    for blk in stolen:
        v = engine.add_block(open_block(blk, b2, genesis=world().genesis, champion_bytes=champion))
        assert (v.status, v.code) == ("rejected", "duplicate-model")
    for blk in opened(engine, honest, b2, champion):
        engine.add_block(blk)
    kh.step(T0 + 17)
    # the thieves' entries did not open validly: their bonds are forfeit
    assert {m for m, _ in engine.notice(3).forfeits} == {t.public for t in thieves}
    # and round 3 (after a crowning or not) still refuses them, through the chain's record
    champion = engine.champion_model()
    late = _steal(engine, kh, MINERS[3], losers[0], T0 + 18)
    enter(engine, kh, [(MINERS[1], trained("linear", 3))], T0 + 18)
    b3 = reveal(kh, T0 + 22)
    v = engine.add_block(open_block(late, b3, genesis=world().genesis, champion_bytes=champion))
    assert (v.status, v.code) == ("rejected", "duplicate-model")


# ---------------------------------------------------------------- timestamps


def _beacon(opened_ms: int, time_ms: int) -> Beacon:
    return Beacon(3, "popchain-x", 1, bytes(32), opened_ms, time_ms, (), bytes(32))


def _header(ts: int) -> Header:
    return Header(1, "popchain-x", 1, bytes(32), 1, ts, bytes(32), bytes(32), bytes(32), bytes(32), bytes(32))


@given(st.integers(0, 2**34), st.lists(st.tuples(st.integers(-10**9, 10**9), st.integers(0, 10**7),
                                                 st.integers(0, 2**20), st.integers(0, 3)), min_size=1, max_size=40),
       st.integers(1, 600))
@settings(max_examples=300, deadline=None)
def test_after_any_accepted_blocks_a_valid_child_is_constructible(genesis_ts, steps, slack):
    """Whatever timestamps miners pick among those the rules accept, and however the keyholder's clock jumps
    (backwards too), the next round's window is never empty and the template's timestamp lies in it. The
    keyholder opens a round at least 1 s after its anchor's reveal — never later because of a miner's stamp
    (issue 18: until then it opened no earlier than the anchor's timestamp, and a late stamp stalled ~116 s)."""
    params = GenesisParams(time_slack_s=slack)
    parent_ts, clock_ms, floor_ms = genesis_ts, genesis_ts * 1000, genesis_ts * 1000
    for jump_ms, reveal_after_ms, pick, mode in steps:
        clock_ms = max(0, clock_ms + jump_ms)
        opened_ms = max(clock_ms, floor_ms)                          # the keyholder's floor at open
        tpl_ts = template_timestamp(world().genesis, _header(parent_ts), opened_ms, clock_ms // 1000 + pick)
        time_ms = max(clock_ms + reveal_after_ms, opened_ms)         # ... and at reveal
        floor_ms = time_ms + 1000                                    # the next round: 1 s after this reveal
        lo, hi = timestamp_window(params, _beacon(opened_ms, time_ms), _header(parent_ts))
        assert lo <= hi, (lo, hi)
        g_slack = world().genesis.params.time_slack_s
        if g_slack == slack:
            assert lo <= tpl_ts <= hi
        # the miner stamps anything accepted: the lowest, the highest, or in between
        parent_ts = [lo, hi, (lo + hi) // 2, min(hi, lo + pick)][mode]


@given(st.lists(st.tuples(st.binary(min_size=32, max_size=32), st.integers(0, 10**10), st.integers(1, 34)),
                max_size=30, unique_by=lambda t: t[0]), st.integers(0, 10**8))
@settings(max_examples=200, deadline=None)
def test_settlement_conserves_supply_and_never_overdraws(keys, bond):
    """Any forfeits on any bond accounts: each loses min(k · bond, balance), the burn account gains exactly the
    sum, nothing goes negative, nonces are untouched."""
    from chain.state import apply_moves
    from consensus.protocol.messages import make_settlement
    from consensus.protocol.settlement import settlement_moves
    start = {bond_of(pub): bal << 64 | 7 for pub, bal, _ in keys}
    state: dict[bytes, int] = {}
    settlement = make_settlement(1, 70, [(q, pub, bytes(32), 0) for pub, _, k in keys for q in range(1, k + 1)])
    moves = settlement_moves(bond=bond, settlement=settlement)
    assert apply_moves(state, lambda a: start.get(a, 0), moves) is None
    burnt = 0
    for pub, bal, k in keys:
        acc = bond_of(pub)
        after = state.get(acc, start[acc])
        assert after & (2**64 - 1) == 7 and after >> 64 == bal - min(bal, k * bond)
        burnt += min(bal, k * bond)
    assert (state.get(BURN_ACCOUNT, 0) >> 64) == burnt


def test_a_beacon_settling_otherwise_than_its_notice_is_equivocation(node):
    """Miners seal their state roots on the notice's settlement; a beacon that changes it is keyholder fault."""
    from consensus.protocol.messages import make_beacon
    from tests.test_consensus_helpers import KEYHOLDER
    store, engine, kh = node
    kh.step(T0)
    n1 = engine.notice(1)
    # round 1 can only settle the empty window: differ in what it serves instead
    forged = make_beacon([KEYHOLDER], n1.chain_id, 1, n1.anchor_hash,
                         [(bytes(32), MINERS[0].public, bytes(32), bytes(32))], world().secret.key(1),
                         opened_ms=int(T0 * 1000), time_ms=int(T0 * 1000) + 4000, shard_index=2)
    with pytest.raises(RuleError) as exc:
        engine.add_beacon(forged)
    assert exc.value.code == "equivocation" and engine.beacon(1) is None and len(engine.equivocations()) == 1


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(-2**20, 0)), min_size=0, max_size=60, unique=True),
       st.integers(1, 20), st.randoms())
@settings(max_examples=300, deadline=None)
def test_listing_is_the_top_E_stakes_whatever_the_arrival_order(ranks, capacity, rnd):
    from consensus.keyholder import admit_ranked
    order = list(ranks)
    rnd.shuffle(order)
    kept: list[tuple[int, int]] = []
    for r in order:
        admit, evict = admit_ranked(kept, r, capacity)
        if admit:
            if evict is not None:
                kept.pop(evict)
            kept.append(r)
    assert sorted(kept) == sorted(ranks)[-capacity:] if ranks else kept == []


def test_an_entry_its_keyholder_refuses_does_not_lock_the_key_out_of_the_round(node):
    """test_miner_field timed out on the rules branch: the node kept an entry its keyholder refused (the
    champion's own bytes, duplicate-model), so the key's next entry of the round was refused as duplicate-entry
    and the round waited for an entry forever. The refused entry is forgotten; the key enters again."""
    _, engine, kh = node
    kh.step(T0)
    tpl = engine.build_template(MINERS[0].public, [], T0)
    _, refused = seal(tpl, engine.champion_model(), MINERS[0], b"\x03" * 32)
    assert engine.add_entry(refused)                 # every node relays it: the claim is the keyholder's rule
    with pytest.raises(RuleError) as exc:
        kh.on_entry(refused)
    assert exc.value.code == "duplicate-model"
    _, entry = seal(tpl, trained("mlp"), MINERS[0], b"\x04" * 32)
    assert engine.add_entry(entry) and kh.on_entry(entry)
    assert [x[1] for x in reveal(kh, T0 + 4).listed] == [MINERS[0].public]
