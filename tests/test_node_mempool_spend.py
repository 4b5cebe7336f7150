"""The mempool's running pending total per sender (issue 23 item 5: no re-summing of a sender's pending txs per add)
keeps exactly the verdicts of the definition — the balance must cover every pending tx below the nonce plus the
new one — through adds, replacements, evictions, expiry and revalidation."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chain.address import address_of
from chain.crypto import Keypair
from chain.errors import RuleError
from chain.state import Account, LedgerParams
from chain.tx import make_transfer
from node.mempool import Mempool

PARAMS = LedgerParams("popchain-mempool-test", 50, 1)
KEYS = [Keypair.from_seed(bytes([i + 1]) * 32) for i in range(3)]
TO = address_of(KEYS[0].public)


def _expected_spend(pool: Mempool) -> dict[bytes, int]:
    out: dict[bytes, int] = {}
    for tx in pool.txs():
        out[tx.sender] = out.get(tx.sender, 0) + tx.amount + tx.fee
    return out


def _definition_refuses_funds(pool: Mempool, tx, account: Account) -> bool:
    below = sum(t.amount + t.fee for t in pool.txs() if t.sender == tx.sender and t.nonce < tx.nonce)
    return account.balance < below + tx.amount + tx.fee


ops = st.lists(st.tuples(st.sampled_from(["add", "expire", "revalidate"]), st.integers(0, 2), st.integers(0, 4),
                         st.integers(1, 40), st.integers(1, 30)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(ops, st.integers(30, 200))
def test_running_pending_total_matches_the_definition(steps, balance):
    pool = Mempool(PARAMS, max_txs=6, max_per_sender=4, expiry_s=100.0)
    now = 0.0
    for op, who, nonce, amount, fee in steps:
        now += 7.0
        key = KEYS[who]
        account = Account(balance, 0)
        if op == "add":
            tx = make_transfer(key, PARAMS.chain_id, TO, amount, fee, nonce)
            refused_by_funds = _definition_refuses_funds(pool, tx, account)
            try:
                pool.add(tx, account, now)
            except RuleError as err:
                if err.code == "insufficient-funds":
                    assert refused_by_funds
            else:
                assert not refused_by_funds
        elif op == "expire":
            pool.expire(now)
        else:
            pool.revalidate(lambda _s: Account(balance, 0))
        assert pool._spend == _expected_spend(pool)
