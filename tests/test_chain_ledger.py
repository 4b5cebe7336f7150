"""Ledger rules: replay protection, tx checks, and a hypothesis state machine over a real LevelDB store."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chain.address import address_of
from chain.errors import RuleError
from chain.state import Account, check_tx_stateful, check_tx_stateless
from chain.store import ChainStore
from chain.tx import make_transfer
from tests.conftest import CHAIN_ID, GENESIS_BALANCE, PARAMS, build_block, keypair, make_genesis


def _reject(store, miner, txs, code):
    with pytest.raises(RuleError) as err:
        build_block(store, miner, txs)
    assert err.value.code == code


def test_replay_rejected(store, keys):
    tx = make_transfer(keys[0], CHAIN_ID, address_of(keys[6].public), 10, 1000, 0)
    _reject(store, keys[5], [tx, tx], "bad-nonce")          # same tx twice in one block
    store.connect_block(build_block(store, keys[5], [tx]), PARAMS)
    _reject(store, keys[5], [tx], "bad-nonce")              # same tx again in a later block
    other = make_transfer(keys[0], "other-chain", address_of(keys[6].public), 10, 1000, 1)
    _reject(store, keys[5], [other], "bad-chain-id")        # signed for another chain
    stale = make_transfer(keys[0], CHAIN_ID, address_of(keys[6].public), 11, 1000, 0)
    _reject(store, keys[5], [stale], "bad-nonce")           # a fresh tx with a spent nonce
    with pytest.raises(RuleError) as err:
        check_tx_stateful(stale, store.get_account(address_of(keys[0].public)))
    assert err.value.code == "bad-nonce"


def test_stateless_checks(keys):
    ok = make_transfer(keys[0], CHAIN_ID, bytes(20), 1, 1000, 0)
    check_tx_stateless(ok, PARAMS)
    cases = [
        (make_transfer(keys[0], CHAIN_ID, bytes(20), 1, 999, 0), "fee-too-low"),
        (make_transfer(keys[0], CHAIN_ID, bytes(20), 0, 1000, 0), "bad-amount"),
        (make_transfer(keys[0], "x", bytes(20), 1, 1000, 0), "bad-chain-id"),
        (ok.__class__(*ok.to_list()[:8], keys[1].sign(ok.sighash)), "bad-tx-sig"),
    ]
    for tx, code in cases:
        with pytest.raises(RuleError) as err:
            check_tx_stateless(tx, PARAMS)
        assert err.value.code == code
    with pytest.raises(RuleError) as err:
        check_tx_stateful(ok, Account(1000, 0))
    assert err.value.code == "insufficient-funds"


def test_bad_signature_reported_before_later_state_error(store, keys):
    good = make_transfer(keys[0], CHAIN_ID, bytes(20), 1, 1000, 0)
    forged = good.__class__(*good.to_list()[:8], bytes(64))
    _reject(store, keys[5], [forged], "bad-tx-sig")
    txs = [make_transfer(keys[1], CHAIN_ID, bytes(20), 1, 1000, n) for n in range(100)]
    txs[40] = txs[40].__class__(*txs[40].to_list()[:8], bytes(64))
    txs[60] = make_transfer(keys[1], CHAIN_ID, bytes(20), 1, 1000, 999)
    _reject(store, keys[5], txs, "bad-tx-sig")  # tx 40 fails first, even though verified in parallel


N_KEYS = 5
KEYS = [keypair(i) for i in range(N_KEYS)]
ACCOUNTS = [address_of(k.public) for k in KEYS]
ALLOC = [(a, 5_000_000) for a in ACCOUNTS[:3]]


class LedgerMachine(RuleBasedStateMachine):
    """Random valid and invalid transfers across blocks, checked against a plain dict model."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="popchain-sm-"))
        self.store = ChainStore.open(self.dir)
        self.store.init_genesis(make_genesis(ALLOC), ALLOC, PARAMS)
        self.model = {a: Account(n, 0) for a, n in ALLOC}
        self.pending: list = []
        self.pending_model = dict(self.model)
        self.history: list[tuple[bytes, dict]] = []  # (state root before, model before) per connected block

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(s=st.integers(0, N_KEYS - 1), r=st.integers(0, N_KEYS - 1), amount=st.integers(1, 3_000_000),
          fee=st.integers(1000, 5000),
          fault=st.sampled_from(["none", "none", "none", "nonce", "chain", "sig", "fee", "funds"]))
    def add_transfer(self, s, r, amount, fee, fault):
        sender = ACCOUNTS[s]
        acc = self.pending_model.get(sender, Account())
        nonce, chain = acc.nonce, CHAIN_ID
        expected = None
        if fault == "nonce":
            nonce, expected = acc.nonce + 1, "bad-nonce"
        elif fault == "chain":
            chain, expected = "other", "bad-chain-id"
        elif fault == "fee":
            fee, expected = 999, "fee-too-low"
        elif fault == "funds":
            amount, expected = acc.balance + 1, "insufficient-funds"
        tx = make_transfer(KEYS[s], chain, ACCOUNTS[r], amount, fee, nonce)
        if fault == "sig":
            tx, expected = tx.__class__(*tx.to_list()[:8], KEYS[(s + 1) % N_KEYS].sign(tx.sighash)), "bad-tx-sig"
        if expected is None and acc.balance < amount + fee:
            expected = "insufficient-funds"
        if expected is not None:
            with pytest.raises(RuleError) as err:
                build_block(self.store, KEYS[4], self.pending + [tx])
            assert err.value.code == expected
            return
        self.pending.append(tx)
        self.pending_model[sender] = Account(acc.balance - amount - fee, acc.nonce + 1)
        rec = self.pending_model.get(ACCOUNTS[r], Account())
        self.pending_model[ACCOUNTS[r]] = Account(rec.balance + amount, rec.nonce)

    @rule(m=st.integers(0, N_KEYS - 1))
    def mine(self, m):
        before_root, before_model = self.store.tip().state_root, dict(self.model)
        block = build_block(self.store, KEYS[m], self.pending)
        self.store.connect_block(block, PARAMS)
        fees = sum(t.fee for t in self.pending)
        miner = self.pending_model.get(ACCOUNTS[m], Account())
        self.pending_model[ACCOUNTS[m]] = Account(miner.balance + PARAMS.block_reward + fees, miner.nonce)
        self.model = dict(self.pending_model)
        self.pending = []
        self.history.append((before_root, before_model))

    @precondition(lambda self: self.history)
    @rule()
    def disconnect(self):
        root, model = self.history.pop()
        self.store.disconnect_tip()
        assert self.store.tip().state_root == root
        assert self.store.state_view().state_root() == root  # byte-identical accounts, not just the header
        self.model = model
        self.pending, self.pending_model = [], dict(model)

    @invariant()
    def supply_conserved_and_state_matches(self):
        height = self.store.tip().height
        assert sum(a.balance for a in self.model.values()) == sum(n for _, n in ALLOC) + height * PARAMS.block_reward
        for account in ACCOUNTS:
            assert self.store.get_account(account) == self.model.get(account, Account())


LedgerMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
test_ledger_state_machine = LedgerMachine.TestCase


def test_verify_after_state_machine_like_run(store, keys):
    for n in range(5):
        txs = [make_transfer(keys[i], CHAIN_ID, address_of(keys[(i + 1) % 4].public), 100 + n, 1000, n)
               for i in range(4)]
        store.connect_block(build_block(store, keys[n % 8], txs), PARAMS)
    report = store.verify()
    assert report.ok and report.height == 5
    assert sum(a.balance for a in (Account.decode(v) for _, v in store.state_view().items())) == \
        4 * GENESIS_BALANCE + 5 * PARAMS.block_reward
