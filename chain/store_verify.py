"""Replay of the main chain from the stored blocks: what ChainStore.verify compares and ChainStore.reindex writes.

Does: recompute, from the genesis allocations and every stored main-chain block, the accounts after each block
(comparing each header's state root), the undo records and the tx/address index records, reporting progress
through a callback; compare the result with what the store holds (accounts, the contents of every undo record,
indexes).
Does not: write (ChainStore.reindex writes the replay in one synced batch), judge consensus rules beyond the
ledger (signatures were checked when the blocks connected; models, beacons and rounds are consensus/'s), or
hold the store lock (the caller does).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from chain.encoding import pack_trusted, unpack
from chain.errors import DecodeError, RuleError, StoreError
from chain.state import Account, apply_allocations, apply_txs, state_root_of
from chain.store_index import P_ADDRINDEX, P_TXINDEX, index_records
from chain.store_read import MAX_RECORD, P_ACCOUNT, P_MOVES, P_UNDO, StoreReader

Progress = Callable[[int, int], None]   # (height done, tip height)


@dataclass
class Replay:
    accounts: dict[bytes, bytes] = field(default_factory=dict)
    undos: dict[bytes, bytes] = field(default_factory=dict)
    index: dict[bytes, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    height: int = 0               # the last height replayed without a problem


def replay(store: StoreReader, progress: Progress | None = None) -> Replay:
    """Replay the main chain; stops at the first block that cannot be read or applied (a problem, not a raise,
    unless the datadir's records are unreadable: StoreError / DecodeError)."""
    out = Replay()
    out.accounts = {a: acc.encode() for a, acc in apply_allocations(store.allocations()).items()}
    if state_root_of(sorted(out.accounts.items())) != store.genesis().state_root:
        out.problems.append("genesis state root differs from the allocations")
    tip = store.tip().height
    accounts = out.accounts
    for height in range(1, tip + 1):
        block = store.get_block(height)
        if block is None:
            out.problems.append(f"block at height {height} missing")
            break
        raw_moves = store._kv.get(P_MOVES + block.hash)   # consensus settlement (bond forfeits), applied first
        moves = [] if raw_moves is None else [tuple(m) for m in unpack(raw_moves, max_size=MAX_RECORD)]
        try:
            delta = apply_txs(lambda a: None if a not in accounts else Account.decode(accounts[a]),
                              block.txs, block.header.miner, store.ledger_params_of(block.hash), moves=moves)
        except RuleError as err:
            out.problems.append(f"height {height}: {err}")
            break
        out.undos[block.hash] = pack_trusted([[a, b"" if p is None else p.encode()]
                                              for a, p in sorted(delta.before.items())])
        accounts.update((a, acc.encode()) for a, acc in delta.after.items())
        out.index.update(index_records(block))  # type: ignore[arg-type]  # index records are all puts
        if state_root_of(sorted(accounts.items())) != block.header.state_root:
            out.problems.append(f"height {height}: state root differs from the replay")
            break
        out.height = height
        if progress is not None:
            progress(height, tip)
    return out


def compare(store: StoreReader, r: Replay) -> list[str]:
    """What the store holds that differs from replay ``r`` (accounts, undo records, indexes)."""
    problems = []
    stored = {k[1:]: v for k, v in store._kv.iterator(P_ACCOUNT)}
    if stored != r.accounts:
        diff = len(set(stored.items()) ^ set(r.accounts.items()))
        problems.append(f"stored accounts differ from the replay ({diff} records)")
    bad_undos = []
    for block_hash, replayed in r.undos.items():
        if store._kv.get(P_UNDO + block_hash) is None:
            bad_undos.append(f"undo record of block {block_hash.hex()[:16]} missing")
            continue
        try:
            stored_undo = store._undo(block_hash)
        except (StoreError, DecodeError) as exc:
            bad_undos.append(f"undo record of block {block_hash.hex()[:16]} unreadable: {exc}")
            continue
        # contents, not bytes: a connect writes first-touch order, the replay (and reindex) sorted order
        if stored_undo != {pair[0]: pair[1] or None for pair in unpack(replayed, max_size=MAX_RECORD)}:
            bad_undos.append(f"undo record of block {block_hash.hex()[:16]} differs from the replay")
    if bad_undos:
        problems.append(bad_undos[0] + (f" (and {len(bad_undos) - 1} more)" if len(bad_undos) > 1 else ""))
    index = {k: v for prefix in (P_TXINDEX, P_ADDRINDEX) for k, v in store._kv.iterator(prefix)}
    if index != r.index:
        diff = len(set(index.items()) ^ set(r.index.items()))
        problems.append(f"tx/address indexes differ from the replay ({diff} records): run 'node reindex'")
    return problems
