"""Batch admission of transfers: decode, field rules, signature, sender's account — for the mempool.

``admit_txs`` gives each tx exactly the verdict of the careful per-tx path

    tx = Transfer.decode(raw); check_tx_stateless(tx, params); check_tx_stateful(tx, tip account of sender)

(same error class, code and message, checks in the same order), with the signatures of the whole batch
checked at once on the verification pool and the Python work done in bulk around it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import NamedTuple

from chain.address import address_of
from chain.crypto import submit_verify_many
from chain.errors import DecodeError, PopError, RuleError
from chain.state import Account, LedgerParams, check_tx_fields, check_tx_stateful
from chain.tx import TX_VERSION, Transfer, decode_many_trusted

# sender ids -> their tip accounts, in order; called once per batch, from the calling thread.
# ChainStore.tip_account_reader() reads the in-memory tip without waiting for the store lock, which a block
# being connected holds for its whole connect.
AccountsReader = Callable[[Sequence[bytes]], Sequence[Account]]


class TxVerdict(NamedTuple):  # a tuple: built once per tx on the hot path
    """One tx's admission verdict. ``tx`` is None only if the bytes did not decode; ``account`` is the
    sender's tip account (None if the tx failed before the state check); ``error`` is the first failure in
    rule order (None: admitted)."""
    tx: Transfer | None
    account: Account | None
    error: PopError | None

    @property
    def ok(self) -> bool:
        return self.error is None


def admit_txs(items: Sequence[bytes | Transfer], params: LedgerParams, accounts: AccountsReader, *,
              executor: Executor | None = None, check_state: bool = True) -> list[TxVerdict]:
    """Verdicts for ``items`` (encoded txs, or Transfers already decoded), in order.

    Each tx is judged alone against the tip, like check_tx_stateless + check_tx_stateful: two txs of one
    sender with consecutive nonces do not see each other. ``check_state=False`` skips the nonce/balance rule
    (the mempool judges a sender's pending sequence itself, from ``verdict.account``). ``accounts``: see
    AccountsReader; each account is the tip's as of its reading. Do not call this from a verification-pool
    thread. Never raises PopError: errors are verdicts.

    Three phases: decode and field rules in this thread; the signatures on the pool, in tight loops; the
    state rules in this thread. Mixing the Python work into the pool threads costs more than it saves: a
    thread back from libsodium that finds the GIL taken sleeps, and waking it up takes longer here than the
    Python work it waited for."""
    return start_admission(items, params, executor).finish(accounts, check_state=check_state)


def start_admission(items: Sequence[bytes | Transfer], params: LedgerParams,
                    executor: Executor | None = None) -> PendingAdmission:
    """``admit_txs`` in two steps, for an event loop: the decode and field rules now (in this thread), the
    signatures started on the pool. Await ``futures`` (asyncio.wrap_future), then call ``finish``: the same
    verdicts as ``admit_txs``, without parking a thread of its own to wait for the pool."""
    return PendingAdmission(items, params, executor)


class PendingAdmission:
    """A batch whose signatures are being checked on the verification pool (see ``start_admission``)."""

    __slots__ = ("_errors", "_pending", "_pending_txs", "_txs", "_wait")

    def __init__(self, items: Sequence[bytes | Transfer], params: LedgerParams,
                 executor: Executor | None) -> None:
        self._txs, self._errors, self._pending, self._pending_txs = _stateless(items, params)
        self._wait = submit_verify_many([(t.sender, t.sighash, t.signature) for t in self._pending_txs], executor)

    @property
    def futures(self) -> list[Future[None]]:
        """The pool's tasks for this batch (empty if it was small enough to check inline)."""
        return self._wait.futures

    def finish(self, accounts: AccountsReader, *, check_state: bool = True) -> list[TxVerdict]:
        """The verdicts (waits for the pool if ``futures`` are not done yet). Call once."""
        txs, errors = self._txs, self._errors
        passed: list[int] = []
        passed_txs: list[Transfer] = []
        for i, tx, ok in zip(self._pending, self._pending_txs, self._wait(), strict=True):
            if ok:
                passed.append(i)
                passed_txs.append(tx)
            else:
                errors[i] = RuleError("bad-tx-sig", f"bad signature on tx {tx.txid.hex()[:16]}")
        tip: list[Account | None] = [None] * len(txs)
        if passed:
            senders = [address_of(tx.sender) for tx in passed_txs]
            for i, tx, account in zip(passed, passed_txs, accounts(senders), strict=True):
                tip[i] = account
                if check_state and (tx.nonce != account.nonce or account.balance < tx.amount + tx.fee):
                    try:
                        check_tx_stateful(tx, account)
                    except RuleError as err:
                        errors[i] = err
        return list(map(TxVerdict, txs, tip, errors))


def _stateless(items: Sequence[bytes | Transfer], params: LedgerParams,
               ) -> tuple[list[Transfer | None], list[PopError | None], list[int], list[Transfer]]:
    """Decode and field rules for each item, sighashes of the survivors: (txs, errors, indexes to verify and
    their txs — two lists, not pairs: fewer objects for the cyclic GC)."""
    chain_id, min_fee = params.chain_id, params.min_fee
    txs: list[Transfer | None] = [item if type(item) is Transfer else None for item in items]
    errors: list[PopError | None] = [None] * len(items)
    fast = decode_many_trusted([item for item in items if type(item) is not Transfer])
    fast.reverse()
    pending: list[int] = []
    pending_txs: list[Transfer] = []
    for i, item in enumerate(items):
        tx = txs[i]
        if tx is None:
            tx = fast.pop()  # None: not plainly well-formed; the checked decoder says what is wrong
            if tx is None:
                try:
                    tx = Transfer.decode(item)  # type: ignore[arg-type]
                except DecodeError as err:
                    errors[i] = err
                    continue
            txs[i] = tx
        if tx.version != TX_VERSION or tx.chain_id != chain_id or tx.amount < 1 or tx.fee < min_fee:
            try:
                check_tx_fields(tx, params)
            except RuleError as err:
                errors[i] = err
                continue
        tx.sighash  # noqa: B018 - computed now, in bulk, so the pool threads only verify
        pending.append(i)
        pending_txs.append(tx)
    return txs, errors, pending, pending_txs
