"""Pending transfers *(policy)*: fee-ordered, capped with eviction, expired by age, re-checked on tip change.

Validity comes from chain.state (check_tx_stateless / check_tx_stateful): the mempool only decides what to keep.
A sender's pending txs form a gap-free nonce sequence starting at its account nonce; the cumulative amount + fee
must fit the balance. When full, the lowest-fee *tail* tx (the last of its sender's sequence, so no gap appears)
is evicted if the newcomer pays more.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, KeysView
from dataclasses import dataclass

from chain.errors import RuleError
from chain.state import Account, LedgerParams, check_tx_fields
from chain.tx import Transfer

DEFAULT_MAX_TXS = 5000
DEFAULT_MAX_PER_SENDER = 100
DEFAULT_EXPIRY_S = 3600.0


@dataclass(frozen=True)
class PoolEntry:
    tx: Transfer
    added: float


class Mempool:
    def __init__(self, params: LedgerParams, max_txs: int = DEFAULT_MAX_TXS,
                 max_per_sender: int = DEFAULT_MAX_PER_SENDER, expiry_s: float = DEFAULT_EXPIRY_S) -> None:
        self.params = params
        self.max_txs = max_txs
        self.max_per_sender = max_per_sender
        self.expiry_s = expiry_s
        self._by_id: dict[bytes, PoolEntry] = {}
        self._by_sender: dict[bytes, dict[int, bytes]] = {}   # sender pubkey -> nonce -> txid
        self._spend: dict[bytes, int] = {}                    # sender pubkey -> amount + fee of its pending txs
        # (fee, txid) of every sender's last tx, lazily cleaned: the eviction candidate in O(log n), not a scan
        # of all senders per tx once the pool is full (at thousands of tx/s that scan was the bottleneck)
        self._tails: list[tuple[int, bytes]] = []

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, txid: object) -> bool:
        return txid in self._by_id

    def ids(self) -> KeysView[bytes]:
        """A live read-only view of the txids, for membership tests in hot loops."""
        return self._by_id.keys()

    def get(self, txid: bytes) -> Transfer | None:
        entry = self._by_id.get(txid)
        return entry.tx if entry else None

    def encodings(self, txids: Iterable[bytes]) -> list[bytes | None]:
        """The encoded transfer of each txid held (None for the others), in order."""
        by_id = self._by_id
        out: list[bytes | None] = []
        for txid in txids:
            entry = by_id.get(txid)
            out.append(entry.tx.encode() if entry is not None else None)
        return out

    def txids(self) -> list[bytes]:
        return list(self._by_id)

    def txs(self) -> list[Transfer]:
        return [e.tx for e in self._by_id.values()]

    def add(self, tx: Transfer, account: Account, now: float, *, fields_checked: bool = False) -> list[bytes]:
        """Admit ``tx`` (signature already checked by the caller, off the loop). Returns the evicted txids.

        ``account`` is the sender's confirmed account at the tip; ``fields_checked``: the caller applied
        chain.state.check_tx_fields with these params already (chain.admission does). Raises RuleError (stable
        code) if refused.
        """
        if not fields_checked:
            check_tx_fields(tx, self.params)
        txid = tx.txid
        if txid in self._by_id:
            raise RuleError("duplicate", "tx already in the mempool")
        seq = self._by_sender.get(tx.sender, {})
        next_nonce = account.nonce + len(seq)
        if tx.nonce < account.nonce:
            raise RuleError("bad-nonce", f"tx nonce {tx.nonce} already used (account nonce {account.nonce})")
        replacing = seq.get(tx.nonce)
        if replacing is not None:
            old = self._by_id[replacing].tx
            if tx.fee <= old.fee or tx.nonce != max(seq):
                raise RuleError("replacement-rejected", "a replacement must pay more and be the sender's last tx")
        elif tx.nonce != next_nonce:
            raise RuleError("nonce-gap", f"tx nonce {tx.nonce}, expected {next_nonce} (gap)")
        elif len(seq) >= self.max_per_sender:
            raise RuleError("too-many-pending", f"sender already has {len(seq)} pending txs")
        # what the sender's pending txs below this nonce spend: a running total (a replacement is the last tx,
        # so it is the total without the replaced one), never re-summed per add
        pending = self._spend.get(tx.sender, 0)
        if replacing is not None:
            pending -= old.amount + old.fee
        if account.balance < pending + tx.amount + tx.fee:
            raise RuleError("insufficient-funds", "balance does not cover this and the sender's pending txs")
        evicted: list[bytes] = []
        if replacing is not None:
            self._remove(replacing)
            evicted.append(replacing)
        elif len(self._by_id) >= self.max_txs:
            victim = self._lowest_tail()
            if victim is None or self._by_id[victim].tx.fee >= tx.fee:
                raise RuleError("mempool-full", "mempool full and this tx does not pay more than the cheapest")
            self._remove(victim)
            evicted.append(victim)
        self._by_id[txid] = PoolEntry(tx, now)
        sender = tx.sender
        self._by_sender.setdefault(sender, {})[tx.nonce] = txid
        self._spend[sender] = self._spend.get(sender, 0) + tx.amount + tx.fee
        if replacing is None and not evicted:   # appended at the end of its sender's run: it is the tail
            heapq.heappush(self._tails, (tx.fee, txid))
            if len(self._tails) > 4 * len(self._by_sender) + 1024:
                self._push_tail(sender)   # rebuilds the stale heap
        else:
            self._push_tail(sender)
        return evicted

    def _is_tail(self, txid: bytes) -> bool:
        entry = self._by_id.get(txid)
        if entry is None:
            return False
        seq = self._by_sender.get(entry.tx.sender)
        return seq is not None and bool(seq) and seq[max(seq)] == txid

    def _push_tail(self, sender: bytes) -> None:
        seq = self._by_sender.get(sender)
        if seq:
            txid = seq[max(seq)]
            heapq.heappush(self._tails, (self._by_id[txid].tx.fee, txid))
        if len(self._tails) > 4 * len(self._by_sender) + 1024:   # too many stale entries: rebuild
            self._tails = [(self._by_id[q[max(q)]].tx.fee, q[max(q)]) for q in self._by_sender.values() if q]
            heapq.heapify(self._tails)

    def _lowest_tail(self) -> bytes | None:
        """The cheapest last-of-its-sender tx, ties by txid (the same choice as a scan of every sender)."""
        while self._tails:
            fee, txid = self._tails[0]
            if self._is_tail(txid) and self._by_id[txid].tx.fee == fee:
                return txid
            heapq.heappop(self._tails)
        return None

    def _remove(self, txid: bytes) -> None:
        entry = self._by_id.pop(txid, None)
        if entry is None:
            return
        seq = self._by_sender.get(entry.tx.sender)
        if seq is not None:
            seq.pop(entry.tx.nonce, None)
            if not seq:
                del self._by_sender[entry.tx.sender]
                self._spend.pop(entry.tx.sender, None)
            else:
                self._spend[entry.tx.sender] -= entry.tx.amount + entry.tx.fee
                self._push_tail(entry.tx.sender)   # its previous tx may be the tail now

    def remove(self, txids: Iterable[bytes]) -> None:
        for txid in txids:
            self._remove(txid)

    def expire(self, now: float) -> list[bytes]:
        """Drop txs older than the expiry age, and the later nonces of their senders (they could never apply)."""
        gone: list[bytes] = []
        for txid, entry in list(self._by_id.items()):
            if txid in self._by_id and now - entry.added > self.expiry_s:
                seq = self._by_sender.get(entry.tx.sender, {})
                for n in sorted(k for k in seq if k >= entry.tx.nonce):
                    gone.append(seq[n])
                    self._remove(seq[n])
        return gone

    def revalidate(self, get_account: Callable[[bytes], Account]) -> list[bytes]:
        """After the tip changed: keep each sender's gap-free affordable run from its account nonce; drop the rest."""
        dropped: list[bytes] = []
        for sender in list(self._by_sender):
            account = get_account(sender)
            seq = self._by_sender[sender]
            expected, spent = account.nonce, 0
            for nonce in sorted(seq):
                tx = self._by_id[seq[nonce]].tx
                ok = nonce == expected and spent + tx.amount + tx.fee <= account.balance
                if ok:
                    expected += 1
                    spent += tx.amount + tx.fee
                elif nonce >= account.nonce or not ok:
                    dropped.append(seq[nonce])
            for txid in dropped:
                if txid in self._by_id and self._by_id[txid].tx.sender == sender:
                    self._remove(txid)
        return dropped

    def select(self, limit: int) -> list[Transfer]:
        """Up to ``limit`` txs, highest fee first, each sender's txs in nonce order (what a block template takes)."""
        queues = {s: [self._by_id[seq[n]].tx for n in sorted(seq)] for s, seq in self._by_sender.items()}
        heap = [(-q[0].fee, q[0].txid, s, 0) for s, q in queues.items()]
        heapq.heapify(heap)
        out: list[Transfer] = []
        while heap and len(out) < limit:
            _, _, sender, i = heapq.heappop(heap)
            queue = queues[sender]
            out.append(queue[i])
            if i + 1 < len(queue):
                heapq.heappush(heap, (-queue[i + 1].fee, queue[i + 1].txid, sender, i + 1))
        return out
