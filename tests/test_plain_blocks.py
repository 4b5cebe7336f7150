"""Issue 21's validity rules as properties (hypothesis, exact integers): what a plain block is, what it earns,
and where it ranks.

- the payload's crowning record says "crowned" exactly when the §3.7 rule crowns (``is_crowned`` against
  ``stats.crowns``), so every node classifies a block as crowning or plain alike;
- fork choice: any crowning block beats any plain block; plain blocks rank by slot value alone — nothing the
  block carries (b, c, salt, txs) moves it;
- earnings: over any sequence of crowning and plain blocks, each credited block_reward + fees by chain/ when
  sealed, the child's ``parent_moves`` leave exactly: a plain block's miner its fees, a crowning block's
  miner block_reward + fees; the burn holds block_reward per plain block; total supply stays Σ allocations +
  block_reward × blocks (the ledger's own move and credit code, chain.state.apply_txs).
"""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.address import address_of
from chain.block import Header
from chain.errors import RuleError
from chain.state import BURN_ACCOUNT, Account, LedgerParams, apply_txs
from chain.tx import make_transfer
from consensus.protocol.genesis import GenesisParams
from consensus.protocol.messages import make_beacon, make_payload
from consensus.protocol.registry import ChampionRecord, genesis_registry
from consensus.protocol.rules import ScoredBlock, crowning_bar, fork_key, is_crowned, parent_moves
from consensus.protocol.stats import crowns
from consensus.protocol.tasks import escrow_account
from tests.test_consensus_helpers import CHAIN_ID, KEYHOLDER, MINERS, world

PER, ESCROW = 7_000_000, 20_000_000     # the escrow runs dry after 2 crownings and a partial third


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 300), st.data(), st.integers(1, 16), st.integers(50, 20_000), st.integers(0, 300))
def test_the_payload_record_says_crowned_exactly_when_the_rule_crowns(n, data, m, rows, gain):
    b = data.draw(st.integers(0, n))
    params = GenesisParams(min_gain_bp=gain)
    bar = crowning_bar(b, n - b, m, params, rows)
    assert is_crowned(b, n - b, bar) == crowns(b, n - b, m, rows, params.alpha, gain)


def _scored(crowned: bool, b: int, c: int, slot: int, salt: int) -> ScoredBlock:
    from chain.block import Block
    h = Header(1, CHAIN_ID, 1, bytes(32), 1, 1, MINERS[0].public, bytes(32), bytes(32), bytes(32),
               salt.to_bytes(32, "big"))
    bar = max(1, b) if crowned else 0
    return ScoredBlock(Block(h, (), b"", b""), max(b, bar) if crowned else b, c if not crowned else 0, bar,
                       slot=slot)


blocks = st.builds(_scored, st.booleans(), st.integers(0, 500), st.integers(0, 500), st.integers(0, 2**256 - 1),
                   st.integers(0, 2**64))


@settings(max_examples=300, deadline=None)
@given(blocks, blocks)
def test_any_crowning_block_beats_any_plain_block_and_plain_ones_rank_by_slot(x, y):
    if x.crowned != y.crowned:
        best = max(x, y, key=fork_key)
        assert best.crowned
    elif not x.crowned and x.slot != y.slot:
        assert max(x, y, key=fork_key).slot == max(x.slot, y.slot)     # b, c and the salt play no part
    same = x.hash == y.hash and x.crowned == y.crowned and (
        (x.b - x.c, x.b) == (y.b - y.c, y.b) if x.crowned else x.slot == y.slot)
    assert (fork_key(x) == fork_key(y)) == same          # a total order: only equal blocks tie


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.integers(0, 3).map(lambda k: k * 1_000)),
                min_size=1, max_size=12))
def test_a_plain_block_earns_its_fees_only_and_supply_is_conserved(chain):
    g = world().genesis
    reward = g.params.block_reward
    ledger = LedgerParams(CHAIN_ID, reward, 1_000)
    user = MINERS[4]
    escrow = escrow_account(0)
    start = {address_of(user.public): 10**12, escrow: ESCROW}      # a task bounty: PER per crowning
    accounts: dict[bytes, Account] = {a: Account(v, 0) for a, v in start.items()}
    beacon = make_beacon([KEYHOLDER], CHAIN_ID, 1, bytes(32), [], bytes(32))
    champion = ChampionRecord(g.hash, 0, 0, bytes(32), g.header.model_hash, 0, 0, 0, 0)
    registry = genesis_registry(g.hash, 100, champion)
    registry = dataclasses.replace(registry, tasks=(dataclasses.replace(
        registry.tasks[0], sponsor=MINERS[3].public, bounty=ESCROW, per_crowning=PER),))
    parent, parent_payload = g.header, None
    earned = {address_of(m.public): 0 for m in MINERS[:3]}
    burnt_expected, nonce, left = 0, 0, ESCROW
    for height, (crowned, who, fee) in enumerate(chain, start=1):
        miner = MINERS[who]
        moves = parent_moves(g, parent, parent_payload, registry)
        txs = ()
        if fee:
            txs = (make_transfer(user, CHAIN_ID, address_of(MINERS[3].public), 1, fee, nonce),)
            nonce += 1
        delta = apply_txs(lambda a: accounts.get(a), txs, miner.public, ledger, moves=moves)
        accounts.update(delta.after)
        if parent_payload is not None:   # the parent's fate is settled by this block
            pm = address_of(parent.miner)
            if parent_payload.bar:
                earned[pm] += reward + min(PER, left)     # the crowning's bounty comes with its child
                left -= min(PER, left)
            else:
                burnt_expected += reward
        earned[address_of(miner.public)] += fee
        parent = Header(1, CHAIN_ID, height, parent.hash, height, height, miner.public, bytes(32), bytes(32),
                        bytes(32), bytes(32))
        parent_payload = make_payload(beacon, 10, 0, 5) if crowned else make_payload(beacon, 0, 0, 0)
    pending = address_of(parent.miner)      # the last block's reward waits for its child
    total = sum(a.balance for a in accounts.values())
    assert total == sum(start.values()) + reward * len(chain)
    assert accounts[escrow].balance == left
    assert accounts.get(BURN_ACCOUNT, Account()).balance == burnt_expected
    for m, e in earned.items():
        got = accounts.get(m, Account()).balance
        assert got == e + (reward if m == pending else 0)


@pytest.fixture(scope="module")
def closed_chain(tmp_path_factory):
    """An exhausted chain (every round of the genesis task void) whose ledger round is open."""
    from tests.test_consensus_engine import T0, exhaust, open_engine
    store, engine, kh = open_engine(tmp_path_factory.mktemp("closed") / "db")
    exhaust(engine, kh, T0)
    yield store, engine
    store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.binary(max_size=64), b=st.integers(0, 9), c=st.integers(0, 9), bar=st.integers(0, 9))
def test_a_ledger_round_block_carries_no_model_and_no_score(closed_chain, model, b, c, bar):
    """§3.6, ledger rounds: a block with model bytes is `bad-model` (whatever the bytes), a payload claiming a
    score is a corrupt copy (`bad-score`); only the empty model with b = c = bar = 0 is a (plain) block."""
    from consensus.engine import validate_block
    from consensus.mining import seal
    from consensus.protocol.messages import possession
    from consensus.protocol.rules import CorruptCopy
    store, engine = closed_chain
    r = engine.ledger_round()
    notice = engine.notice(r)
    tpl = engine.build_template(MINERS[0].public, [], int(notice.entry_deadline_ms // 1000))
    block, entry = seal(tpl, model, MINERS[0], bytes(32))
    listed = [(block.hash, MINERS[0].public, entry.model_hash, possession(MINERS[0].public, model))]
    beacon = make_beacon([KEYHOLDER], CHAIN_ID, r, notice.anchor_hash, listed, b"\x07" * 32,
                         opened_ms=notice.entry_deadline_ms - 4000, time_ms=notice.entry_deadline_ms,
                         settlement=notice.settlement, task_id=0, shard_index=0)
    opened = dataclasses.replace(block, payload=make_payload(beacon, b, c, bar).encode())
    try:
        scored = validate_block(opened, genesis=world().genesis, store=store, index=engine.index, book=engine.book)
    except CorruptCopy as err:
        assert not model and (b, c, bar) != (0, 0, 0) and err.code == "bad-score"
    except RuleError as err:
        assert model and err.code == "bad-model", err
    else:
        assert not model and (b, c, bar) == (0, 0, 0) and not scored.crowned
