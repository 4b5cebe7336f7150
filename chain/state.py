"""Account state rules (PROTOCOL §2.3): tx checks, applying a block's txs, and the state root.

Pure functions over a reader (account id -> Account | None); chain.store supplies readers backed by LevelDB.
The same checks serve the mempool (check_tx_stateless / check_tx_stateful) and block validation.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chain.address import _ADDRESS_STATE, ACCOUNT_SIZE, address_of
from chain.crypto import _tag_state, merkle_root_of_hashes, tagged_hash
from chain.errors import DecodeError, RuleError
from chain.tx import TX_VERSION, Transfer, check_chain_id

MAX_BALANCE = 2**64 - 1        # u64 in the state leaf
MAX_TOTAL_ALLOCATION = 2**62   # keeps total supply far below MAX_BALANCE for ~10^10 blocks of reward
ACCOUNT_VALUE_SIZE = 16


@dataclass(frozen=True)
class LedgerParams:
    chain_id: str
    block_reward: int
    min_fee: int
    max_block_txs: int = 5000

    def __post_init__(self) -> None:
        check_chain_id(self.chain_id)
        for name in ("block_reward", "min_fee", "max_block_txs"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= 2**62:
                raise ValueError(f"LedgerParams.{name} must be an integer in [0, 2^62]")


@dataclass(frozen=True, slots=True)  # slots: one GC-tracked object per account, not two (object + dict)
class Account:
    balance: int = 0
    nonce: int = 0

    def encode(self) -> bytes:
        return self.balance.to_bytes(8, "big") + self.nonce.to_bytes(8, "big")

    @classmethod
    def decode(cls, data: bytes) -> Account:
        if len(data) != ACCOUNT_VALUE_SIZE:
            raise DecodeError(f"account value must be {ACCOUNT_VALUE_SIZE} bytes")
        if cls is not Account:
            return cls(int.from_bytes(data[:8], "big"), int.from_bytes(data[8:], "big"))
        return _account(int.from_bytes(data[:8], "big"), int.from_bytes(data[8:], "big"))


EMPTY_ACCOUNT = Account(0, 0)


_ACCOUNT_STRUCT = struct.Struct(">QQ")  # = Account.encode() for in-range values
_PUBKEY_LEN = (32).to_bytes(4, "big")


_set_balance = Account.__dict__["balance"].__set__  # the slots' own setters (the dataclass is frozen)
_set_nonce = Account.__dict__["nonce"].__set__


def _account(balance: int, nonce: int) -> Account:
    """Account(balance, nonce) without the frozen-dataclass __init__ (hot path; Account has no checks)."""
    acc = object.__new__(Account)
    _set_balance(acc, balance)
    _set_nonce(acc, nonce)
    return acc
AccountReader = Callable[[bytes], "Account | None"]

# Bond ledger (PROTOCOL §3.9). The burn account id is a hash output, not the address of any key (finding a
# pubkey whose address equals it is a 160-bit preimage), so nothing can ever spend from it: it holds every
# forfeited bond. Total supply stays Σ allocations + block_reward × blocks; "burned" is its balance.
BURN_ACCOUNT = tagged_hash("popchain/burn")[:ACCOUNT_SIZE]
Move = tuple[bytes, bytes, int]   # (from id, to id, at most this amount): a settlement move before the txs


# ---------------------------------------------------------------- tx checks


def check_tx_fields(tx: Transfer, params: LedgerParams) -> None:
    """Stateless rules except the signature: version, chain id, amount, minimum fee."""
    if tx.version != TX_VERSION:
        raise RuleError("bad-version", f"tx version {tx.version}, expected {TX_VERSION}")
    if tx.chain_id != params.chain_id:
        raise RuleError("bad-chain-id", f"tx for chain {tx.chain_id!r}, this is {params.chain_id!r}")
    if tx.amount < 1:
        raise RuleError("bad-amount", "amount must be at least 1")
    if tx.fee < params.min_fee:
        raise RuleError("fee-too-low", f"fee {tx.fee} below the minimum {params.min_fee}")


def check_tx_stateless(tx: Transfer, params: LedgerParams) -> None:
    """Every rule that needs no account state, signature last (it is the expensive one). Raises RuleError."""
    check_tx_fields(tx, params)
    if not tx.verify_signature():
        raise RuleError("bad-tx-sig", f"bad signature on tx {tx.txid.hex()[:16]}")


def check_tx_stateful(tx: Transfer, account: Account) -> None:
    """Nonce and balance of the sender's account (as the next tx of that account). Raises RuleError."""
    if tx.nonce != account.nonce:
        raise RuleError("bad-nonce", f"tx nonce {tx.nonce}, account nonce {account.nonce}")
    if account.balance < tx.amount + tx.fee:
        raise RuleError("insufficient-funds", f"balance {account.balance} < amount + fee {tx.amount + tx.fee}")


# ---------------------------------------------------------------- applying a block


@dataclass(frozen=True)
class StateDelta:
    """What a block does to the state: accounts after, accounts before (None = absent), the new root."""
    after: Mapping[bytes, Account]
    before: Mapping[bytes, Account | None]
    fees: int
    state_root: bytes = b""
    tx_count: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    # Account.encode() of every ``after`` entry, computed once for the state root, the batch and the cache
    after_encoded: Mapping[bytes, bytes] = field(default_factory=dict, compare=False)

    # the raw stored value of every ``before`` entry (None = absent), when the store read them (undo records)
    before_encoded: Mapping[bytes, bytes | None] = field(default_factory=dict, compare=False)

    def encoded_after(self) -> Mapping[bytes, bytes]:
        """id -> Account.encode() for every account in ``after``."""
        if len(self.after_encoded) == len(self.after):
            return self.after_encoded
        return {a: acc.encode() for a, acc in self.after.items()}

    def encoded_before(self) -> Mapping[bytes, bytes | None]:
        """id -> Account.encode() (None = absent) for every account in ``before``."""
        if len(self.before_encoded) == len(self.before):
            return self.before_encoded
        return {a: None if acc is None else acc.encode() for a, acc in self.before.items()}


def apply_txs(read: AccountReader, txs: Sequence[Transfer], miner: bytes | None, params: LedgerParams,
              sig_results: Callable[[], list[bool]] | None = None, moves: Sequence[Move] = ()) -> StateDelta:
    """Apply ``txs`` in order on top of ``read`` and credit reward + fees to ``miner`` (a pubkey; None = no
    reward, e.g. genesis). ``sig_results`` waits for the signature checks started by the caller (None means
    verify here). Raises RuleError for the first failing tx (stateless checks, then signature, then state)."""
    before: dict[bytes, Account | None] = {}

    def load(account: bytes) -> int:
        prev = read(account)
        before[account] = prev
        return account_word(prev)

    applied = apply_block_txs(load, txs, miner, params, moves)
    error = first_failure(sig_results() if sig_results is not None else None, txs, applied.failure)
    if error is not None:
        raise error
    return delta_of(applied.state, before, applied.fees, len(txs))


# (signatures that must be checked before this error counts, the error): PROTOCOL §2.1's rule order
Failure = tuple[int, RuleError]


@dataclass(frozen=True)
class Applied:
    """``apply_block_txs``' result: accounts after (id -> account word, see ``account_word``), fees, and the
    first rule failure found without signatures (None = none). Meaningless past a failure."""
    state: dict[bytes, int]
    fees: int
    failure: Failure | None


# An account as one int, balance << 64 | nonce: int.from_bytes(Account.encode()) and back with to_bytes(16).
# The hot loop keeps accounts this way because ints are not tracked by the cyclic GC: (balance, nonce) tuples
# for ~10,000 accounts per block cost a dozen collections, and a full one now and then (tens of ms).
_NONCE_MASK = 2**64 - 1


def account_word(account: Account | None) -> int:
    """The account word of ``account`` (None = absent = 0)."""
    return 0 if account is None else account.balance << 64 | account.nonce


def first_failure(sig_ok: Sequence[bool | None] | None, txs: Sequence[Transfer],
                  failure: Failure | None) -> RuleError | None:
    """The block's first failure in rule order: a bad signature among the ones that ``failure`` says come
    first (all of them if there is no failure), else ``failure``'s error. ``sig_ok`` are the verification
    results in tx order (None: verify here, one by one, only as far as needed)."""
    limit, error = failure if failure is not None else (len(txs), None)
    if sig_ok is not None and all(sig_ok[:limit]):  # the usual case, at C speed
        return error
    for i in range(limit):
        ok = sig_ok[i] if sig_ok is not None else txs[i].verify_signature()
        if not ok:
            return RuleError("bad-tx-sig", f"tx {i}: bad signature")
    return error


def apply_moves(state: dict[bytes, int], load: Callable[[bytes], int], moves: Sequence[Move]) -> RuleError | None:
    """Apply settlement moves in order on account words (nonces untouched): each moves min(amount, source
    balance), so it never fails on funds. A malformed move, or one that would overflow its target, is
    ``bad-settlement`` (returned; nothing after it applied)."""
    for i, (src, dst, cap) in enumerate(moves):
        if type(cap) is not int or cap < 0 or len(src) != ACCOUNT_SIZE or len(dst) != ACCOUNT_SIZE:
            return RuleError("bad-settlement", f"move {i}: malformed")
        word = state.get(src)
        if word is None:
            word = load(src)
        amount = min(cap, word >> 64)
        state[src] = word - (amount << 64)
        if amount == 0:
            continue
        word = state.get(dst)
        if word is None:
            word = load(dst)
        if (word >> 64) + amount > MAX_BALANCE:
            return RuleError("bad-settlement", f"move {i}: account {dst.hex()} would overflow")
        state[dst] = word + (amount << 64)
    return None


def apply_block_txs(load: Callable[[bytes], int], txs: Sequence[Transfer], miner: bytes | None,
                    params: LedgerParams, moves: Sequence[Move] = ()) -> Applied:
    """The rules of ``apply_txs`` without signatures. ``load(account)`` returns the account word of an
    account not yet touched (called once per account; the caller records before-values). A failure is
    returned, not raised, with how many signatures come before it in rule order (chain.store then checks
    only those): (i, error) for a field rule of tx i, (i + 1, error) for its nonce/balance/overflow (its own
    signature comes first)."""
    if len(txs) > params.max_block_txs:
        return Applied({}, 0, (0, RuleError("too-many-txs", f"{len(txs)} txs, limit {params.max_block_txs}")))
    state: dict[bytes, int] = {}  # hot loop (5000 txs per block): account words, no objects per tx
    if moves:  # settlement first (§3.9): a bond cannot be moved away by the same block's txs
        error = apply_moves(state, load, moves)
        if error is not None:
            return Applied(state, 0, (0, error))
    version, chain_id, min_fee, mask = TX_VERSION, params.chain_id, params.min_fee, _NONCE_MASK
    get = state.get
    address_copy, pubkey_len = _ADDRESS_STATE.copy, _PUBKEY_LEN
    fees = 0
    for i, tx in enumerate(txs):
        amount, fee = tx.amount, tx.fee
        if tx.version != version or tx.chain_id != chain_id or amount < 1 or fee < min_fee:
            try:
                check_tx_fields(tx, params)
            except RuleError as err:
                return Applied(state, fees, (i, RuleError(err.code, f"tx {i}: {err.message}")))
        h = address_copy()  # = address_of(tx.sender), inlined (sender is 32 bytes: checked at decode)
        h.update(pubkey_len + tx.sender)
        sender = h.digest()[:ACCOUNT_SIZE]
        word = get(sender)
        if word is None:
            word = load(sender)
        cost = amount + fee
        if tx.nonce != word & mask or word >> 64 < cost:
            try:
                check_tx_stateful(tx, Account(word >> 64, word & mask))
            except RuleError as err:
                return Applied(state, fees, (i + 1, RuleError(err.code, f"tx {i}: {err.message}")))
        state[sender] = word - (cost << 64) + 1  # balance - cost, nonce + 1 (< 2^63 + 1: no carry)
        recipient = tx.recipient
        word = get(recipient)
        if word is None:
            word = load(recipient)
        if (word >> 64) + amount > MAX_BALANCE:
            error = RuleError("balance-overflow", f"tx {i}: recipient balance would overflow")
            return Applied(state, fees, (i + 1, error))
        state[recipient] = word + (amount << 64)
        fees += fee
    if miner is not None:
        miner_id = address_of(miner)
        word = get(miner_id)
        if word is None:
            word = load(miner_id)
        credit = params.block_reward + fees
        if (word >> 64) + credit > MAX_BALANCE:
            error = RuleError("balance-overflow", "miner balance would overflow")
            return Applied(state, fees, (len(txs), error))
        state[miner_id] = word + (credit << 64)
    return Applied(state, fees, None)


def encode_accounts(state: Mapping[bytes, int]) -> dict[bytes, bytes]:
    """id -> Account.encode() for ``apply_block_txs``' state (account words: balances ≤ MAX_BALANCE and nonces
    ≤ 2^63 are checked there, so each fits its 16 bytes)."""
    return {a: w.to_bytes(16, "big") for a, w in state.items()}


V = TypeVar("V")


class _Encoded(Mapping[bytes, V]):
    """A read-only id -> value mapping over encoded accounts, decoded on access: a block touches ~10,000
    accounts and the store needs their bytes, rarely the objects."""

    def __init__(self, encoded: Mapping[bytes, Any]) -> None:
        self.encoded = encoded

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.encoded)

    def __len__(self) -> int:
        return len(self.encoded)

    def __contains__(self, account: object) -> bool:
        return account in self.encoded

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self.items())!r})"


class EncodedAccounts(_Encoded["Account | None"]):
    """id -> Account, or None = absent (``StateDelta.before``)."""

    def __getitem__(self, account: bytes) -> Account | None:
        value = self.encoded[account]
        return None if value is None else Account.decode(value)


class EncodedAfter(_Encoded[Account]):
    """id -> Account for accounts that all exist (``StateDelta.after``)."""

    def __getitem__(self, account: bytes) -> Account:
        return Account.decode(self.encoded[account])


def delta_of(state: Mapping[bytes, int], before: Mapping[bytes, Account | None], fees: int,
             tx_count: int, state_root: bytes = b"", encoded: Mapping[bytes, bytes] | None = None,
             before_encoded: Mapping[bytes, bytes | None] | None = None) -> StateDelta:
    """The StateDelta of ``apply_block_txs``' state (``after`` decodes lazily from the encodings)."""
    encoded = encode_accounts(state) if encoded is None else encoded
    return StateDelta(after=EncodedAfter(encoded), before=before, fees=fees, state_root=state_root,
                      tx_count=tx_count, after_encoded=encoded,
                      before_encoded={} if before_encoded is None else before_encoded)


def decode_account_pair(data: bytes) -> tuple[int, int]:
    """(balance, nonce) of an encoded Account; the same checks as Account.decode, no object."""
    if len(data) != ACCOUNT_VALUE_SIZE:
        raise DecodeError(f"account value must be {ACCOUNT_VALUE_SIZE} bytes")
    return _ACCOUNT_STRUCT.unpack(data)


def apply_allocations(allocations: Iterable[tuple[bytes, int]]) -> dict[bytes, Account]:
    """Genesis accounts; each id 20 bytes, appearing once, amount ≥ 1, total ≤ 2^62. Raises RuleError."""
    out: dict[bytes, Account] = {}
    total = 0
    for account, amount in allocations:
        if type(account) is not bytes or len(account) != ACCOUNT_SIZE:
            raise RuleError("bad-allocation", "allocation account must be a 20-byte id")
        if type(amount) is not int or amount < 1:
            raise RuleError("bad-allocation", "allocation amount must be a positive integer")
        if account in out:
            raise RuleError("bad-allocation", f"account {account.hex()} allocated twice")
        total += amount
        if total > MAX_TOTAL_ALLOCATION:
            raise RuleError("bad-allocation", "total allocation exceeds 2^62")
        out[account] = Account(amount, 0)
    return out


# ---------------------------------------------------------------- state root

_LEAF_STATE = _tag_state("popchain/merkle-leaf")
_LEAF_PREFIX = (ACCOUNT_SIZE + ACCOUNT_VALUE_SIZE).to_bytes(4, "big")


def account_leaf_hash(account: bytes, value: bytes) -> bytes:
    """Merkle leaf hash of ``account_id ‖ u64be(balance) ‖ u64be(nonce)`` (value = Account.encode())."""
    h = _LEAF_STATE.copy()
    h.update(_LEAF_PREFIX + account + value)
    return h.digest()


def state_root_of(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """State root over (account id, encoded Account) pairs, which must come in ascending id order."""
    return merkle_root_of_hashes([account_leaf_hash(a, v) for a, v in items])


def genesis_state_root(allocations: Iterable[tuple[bytes, int]]) -> bytes:
    """The state root right after the genesis allocations (what the genesis header must carry)."""
    accounts = apply_allocations(allocations)
    return state_root_of((a, accounts[a].encode()) for a in sorted(accounts))


def total_supply(accounts: Iterable[Account]) -> int:
    return sum(a.balance for a in accounts)


