"""Batch admission of transfers: decode, field rules, signature, sender's account — for the mempool.

``admit_txs`` gives each tx exactly the verdict of the careful per-tx path

    tx = Transfer.decode(raw); check_tx_stateless(tx, params); check_tx_stateful(tx, tip account of sender)

(same error class, code and message, checks in the same order), with the signatures of the whole batch
checked at once on the verification pool and the Python work done in bulk around it.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import NamedTuple

from chain.address import address_of
from chain.crypto import sig_opener, submit_chunks
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

    Two phases: decode, field rules, sighash, signature and sender id on the pool, a block of 32 transfers at a
    time per thread (PendingAdmission); the state rules in this thread. Mixing the Python work into the pool
    *per transfer* cost more than it saved (a thread back from libsodium that finds the GIL taken sleeps, and
    waking it takes longer than the Python work it waited for); per block of 32 there is one such hand-off per
    block, and one thread's Python can overlap the other's signatures. Measured against bare verify, paired
    runs: on the idle machine no gain (median 0.851 against 0.844 with the Python in this thread), under load
    0.90–1.00 against 0.86–0.88. What it does buy a node: the event loop no longer runs the batch's decode and
    sighashes (node.judge awaits ``start_admission``'s futures)."""
    return start_admission(items, params, executor).finish(accounts, check_state=check_state)


def start_admission(items: Sequence[bytes | Transfer], params: LedgerParams,
                    executor: Executor | None = None) -> PendingAdmission:
    """``admit_txs`` in two steps, for an event loop: the decode and field rules now (in this thread), the
    signatures started on the pool. Await ``futures`` (asyncio.wrap_future), then call ``finish``: the same
    verdicts as ``admit_txs``, without parking a thread of its own to wait for the pool."""
    return PendingAdmission(items, params, executor)


class PendingAdmission:
    """A batch being judged on the verification pool (see ``start_admission``).

    Each pool thread takes blocks of the batch and does everything but the state rule for its block: decode,
    field rules, sighash, signature, sender's account id. The Python of one thread's block then runs while the
    other thread is inside libsodium (one GIL hand-off per block of 32, not per transfer), so a batch costs
    about (signatures + Python) ÷ 2 threads instead of signatures ÷ 2 + Python; only the tip-account reads
    and the verdicts stay in the calling thread. Blocks are independent, so the verdicts are exactly those of
    the per-tx path."""

    __slots__ = ("_wait",)

    def __init__(self, items: Sequence[bytes | Transfer], params: LedgerParams,
                 executor: Executor | None) -> None:
        self._wait = submit_chunks(functools.partial(_check_block, params), items, executor)

    @property
    def futures(self) -> list[Future[None]]:
        """The pool's tasks for this batch (empty if it was small enough to check inline)."""
        return self._wait.futures

    def finish(self, accounts: AccountsReader, *, check_state: bool = True) -> list[TxVerdict]:
        """The verdicts (waits for the pool if ``futures`` are not done yet). Call once."""
        checked = self._wait()
        txs = [c[0] for c in checked]
        errors = [c[1] for c in checked]
        passed = [i for i, c in enumerate(checked) if c[2] is not None]
        tip: list[Account | None] = [None] * len(txs)
        if passed:
            senders = [checked[i][2] or b"" for i in passed]
            for i, account in zip(passed, accounts(senders), strict=True):
                tip[i] = account
                tx = txs[i]
                if check_state and tx is not None and (tx.nonce != account.nonce
                                                       or account.balance < tx.amount + tx.fee):
                    try:
                        check_tx_stateful(tx, account)
                    except RuleError as err:
                        errors[i] = err
        return list(map(TxVerdict, txs, tip, errors))


_Checked = tuple[Transfer | None, PopError | None, bytes | None]   # tx, first error, sender's id if it passed


def _check_block(params: LedgerParams, part: Sequence[bytes | Transfer], offset: int) -> list[_Checked]:
    """One pool block: decode, field rules, sighash and signature of each item, and the sender's account id
    of those that pass (on a verification-pool thread: chain.crypto.submit_chunks)."""
    txs, errors, pending, pending_txs = _stateless(part, params)
    ids: list[bytes | None] = [None] * len(part)
    opener = sig_opener()   # a Transfer's sender is 32 bytes, its signature 64 (checked when built)
    for i, tx in zip(pending, pending_txs, strict=True):
        if opener(tx.sender, tx.sighash, tx.signature):
            ids[i] = address_of(tx.sender)
        else:
            errors[i] = RuleError("bad-tx-sig", f"bad signature on tx {tx.txid.hex()[:16]}")
    return list(zip(txs, errors, ids, strict=True))


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
