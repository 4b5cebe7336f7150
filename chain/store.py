"""ChainStore: blocks, headers, the main-chain index, accounts, undo records and tx/address indexes in one LevelDB.

The key layout and every read live in chain.store_read (StoreReader, the base class; StateView); this
module holds what changes the database: opening it, genesis, meta writes, connect/disconnect (with the
previews that share their checks) and verify/reindex (the replay itself: chain.store_verify; the index records:
chain.store_index). Connecting or disconnecting a block is ONE synced
WriteBatch, so a crash leaves either the old or the new tip, never a mixture; a connected block's tx/address
index records follow in a second, unsynced batch written off the connect path (chain.store_indexer), caught up
at open if a crash came between the two. A datadir lock (flock) keeps out a second process.
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import msgpack

from chain.block import Block, model_hash, tx_root
from chain.crypto import overlapped_gil
from chain.encoding import pack_trusted
from chain.errors import DecodeError, RuleError, StoreError, need
from chain.kv import KV, LevelKV, MemoryKV
from chain.state import (
    EncodedAccounts,
    Failure,
    LedgerParams,
    Move,
    StateDelta,
    apply_allocations,
    apply_block_txs,
    decode_account_pair,
    delta_of,
    encode_accounts,
    first_failure,
    state_root_of,
)
from chain.state_cache import LeafCache
from chain.store_check import check_after_open, check_before_open, check_state, read_witness, write_witness
from chain.store_index import (
    INDEX_VERSION,
    K_INDEX_VERSION,
    P_ADDRINDEX,
    P_TXINDEX,
    HistoryItem,
    TxLocation,
    unindex_records,
)
from chain.store_indexer import K_INDEXED, IndexWriter, catch_up, marker_value, read_marker
from chain.store_preview import PreviewMemo
from chain.store_read import (
    K_ALLOC,
    K_GENESIS,
    K_PARAMS,
    K_TIP,
    P_ACCOUNT,
    P_BODY,
    P_HEADER,
    P_META,
    P_MODEL,
    P_MOVES,
    P_PAYLOAD,
    P_REWARD,
    P_UNDO,
    StateView,
    StoreReader,
    _height_key,
)
from chain.store_verify import Progress, compare, replay
from chain.tx import Transfer, submit_verify_transfers

__all__ = ["ChainStore", "StateView", "VerifyReport"]  # the public API (docs/ARCHITECTURE.md)

LOCK_FILE = "popchain.lock"


def _pack_txs(txs: Sequence[Transfer]) -> bytes:
    """Canonical encoding of the tx list: array header + each tx's (cached) encoding, no re-packing."""
    return b"".join((_array_header(len(txs)), *[tx.encode() for tx in txs]))


_array_header = msgpack.Packer(use_bin_type=True).pack_array_header
_BIN8 = [b"\xc4" + bytes([n]) for n in range(256)]


def _pack_undo(before: Mapping[bytes, bytes | None]) -> bytes:
    """The undo record: canonical encoding of [[id, value before or b""], ...] in first-touch order
    (deterministic; readers build a dict) — = pack_trusted of that list, assembled from bin8 pieces without
    ~10,000 pair objects (ids are 20 bytes, values 16 or absent)."""
    bin8 = _BIN8
    return b"".join((_array_header(len(before)),
                     *[b"\x92" + bin8[len(a)] + a + (b"\xc4\x00" if v is None else bin8[len(v)] + v)
                       for a, v in before.items()]))


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    height: int
    state_root: bytes
    problems: tuple[str, ...]
    readable: bool = True    # False: records could not be read or decoded (a damaged database, not a bad chain)


class ChainStore(StoreReader):
    """The ledger database. Methods are thread-safe (one re-entrant lock around every state change). The reads
    (tip, headers, blocks, accounts, state_view, meta_get/meta_items, ...) come from StoreReader."""

    def __init__(self, kv: KV, lock_fd: int | None = None, directory: Path | None = None) -> None:
        super().__init__(kv)
        self._lock_fd = lock_fd
        self._dir = directory          # where the tip witness lives (chain.store_check); None for MemoryKV
        self._witnessed: bytes | None = None
        self._indexer = IndexWriter(kv)  # the tx/address index records, after each connect's synced batch
        self._previewed = PreviewMemo()  # so that connecting a block just previewed does not check its txs again

    # ------------------------------------------------------------ opening

    @classmethod
    def open(cls, datadir: Path | str) -> ChainStore:
        """Open (or, in an empty directory, create) the store in ``datadir`` and take its lock. A directory that
        held a chain but lost its database, its records or blocks is a StoreError (chain.store_check), never
        a fresh start."""
        datadir = Path(datadir)
        try:
            datadir.mkdir(parents=True, exist_ok=True)
            fd = os.open(datadir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot use the chain directory {datadir}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError(f"datadir {datadir} is in use by another process") from None
        try:
            witness = check_before_open(datadir, datadir / "chain.ldb")
            kv = LevelKV(datadir / "chain.ldb")
        except StoreError:
            os.close(fd)
            raise
        store = cls(kv, fd, datadir)
        try:
            check_after_open(store, datadir, witness)
            if witness is None and store.is_initialised():
                store.note_tip()   # a datadir from before witnesses: start keeping one
        except (StoreError, DecodeError, OSError) as exc:
            store.close()
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write the tip witness in {datadir}: {exc.strerror or exc}") from None
            raise
        store._witnessed = witness[1] if witness is not None else store._witnessed
        if store.is_initialised():
            tip = store.tip()
            try:
                catch_up(kv, (tip.hash, tip.height), store.block_hash_at, store.get_block, store.reindex)
            except BaseException:
                store.close()
                raise
        return store

    @classmethod
    def memory(cls) -> ChainStore:
        """A store over MemoryKV: unit tests of logic only."""
        return cls(MemoryKV())

    def note_tip(self) -> bool:
        """Write the tip witness for the current (synced) tip if it changed; True if written. Raises OSError
        (disk full, no descriptors: the caller logs and retries later)."""
        if self._dir is None or not self.is_initialised():
            return False
        with self._lock:
            tip = self.tip()
        if tip.hash == self._witnessed:
            return False
        write_witness(self._dir, tip.height, tip.hash)
        self._witnessed = tip.hash
        return True

    def witness(self) -> tuple[int, bytes] | None:
        """The tip witness on disk (height, hash), if any."""
        return read_witness(self._dir) if self._dir is not None else None

    def check_state(self, budget_s: float = 2.0, blocks: int = 6) -> int:
        """The tip's state against the stored accounts and the last undo records (chain.store_check.check_state):
        raises StateMismatch rather than let a state that does not match its chain be served."""
        with self._lock:
            return check_state(self, budget_s, blocks)

    def close(self) -> None:
        with self._lock:
            self._indexer.drain()   # (its thread never takes the lock) the last block's index records first
            self._kv.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing the descriptor releases the flock
                self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ meta writes (consensus/ and node/)

    def put_model(self, data: bytes) -> bytes:
        """Store model bytes by their hash (content-addressed, like a block's model): for models that no block
        carries, e.g. an announced task's initial champion. Returns the model hash."""
        mh = model_hash(data)
        with self._lock:
            if self._kv.get(P_MODEL + mh) is None:
                self._kv.write({P_MODEL + mh: data}, sync=True)
        return mh

    def meta_put(self, key: bytes, value: bytes) -> None:
        self.meta_write({key: value})

    def meta_delete(self, key: bytes) -> None:
        self.meta_write({key: None})

    def raw_write(self, changes: Mapping[bytes, bytes | None]) -> None:
        """One synced batch of raw store keys, under the store lock — for chain.store_prune only."""
        with self._lock:
            self._kv.write(changes, sync=True)

    def meta_write(self, changes: Mapping[bytes, bytes | None]) -> None:
        """Several meta puts (None deletes) in one synced batch."""
        with self._lock:
            self._kv.write({P_META + k: v for k, v in changes.items()}, sync=True)

    # ------------------------------------------------------------ genesis

    def init_genesis(self, block: Block, allocations: Sequence[tuple[bytes, int]], params: LedgerParams) -> None:
        """Store the height-0 block and apply the allocations; the header's state root must match them."""
        with self._lock:
            if self.is_initialised():
                raise StoreError("store already initialised")
            header = block.header
            if header.height != 0 or block.txs:
                raise RuleError("bad-genesis", "genesis must have height 0 and no txs")
            if header.chain_id != params.chain_id:
                raise RuleError("bad-chain-id", "genesis chain id differs from the ledger params")
            if model_hash(block.model) != header.model_hash:
                raise RuleError("bad-model-hash", "genesis model does not match header.model_hash")
            accounts = apply_allocations(allocations)
            encoded = {a: accounts[a].encode() for a in accounts}
            root = state_root_of((a, encoded[a]) for a in sorted(encoded))
            if root != header.state_root:
                raise RuleError("bad-state-root", "genesis state root does not match the allocations")
            changes: dict[bytes, bytes | None] = {P_ACCOUNT + a: v for a, v in encoded.items()}
            changes.update({
                K_PARAMS: pack_trusted([params.chain_id, params.block_reward, params.min_fee, params.max_block_txs]),
                K_ALLOC: pack_trusted([[a, n] for a, n in allocations]),
                K_GENESIS: header.hash,
                **self._block_records(block),
                K_TIP: header.hash,
                K_INDEX_VERSION: INDEX_VERSION,
                K_INDEXED: marker_value(header.hash, 0),
            })
            self._kv.write(changes, sync=True)
            self._tip, self._leaves, self._params = header, None, params
        try:
            self.note_tip()   # from now on this directory is known to hold a chain
        except OSError as exc:
            raise StoreError(f"cannot write the tip witness in {self._dir}: {exc.strerror or exc}") from None

    def _block_records(self, block: Block) -> dict[bytes, bytes | None]:
        h = block.header
        return {
            P_HEADER + h.hash: h.encode(),
            P_BODY + h.hash: _pack_txs(block.txs),
            P_MODEL + h.model_hash: block.model,
            P_PAYLOAD + h.hash: block.payload,
            _height_key(h.height): h.hash,
        }

    # ------------------------------------------------------------ connect / disconnect

    def preview_txs(self, prev_hash: bytes, miner: bytes, txs: Sequence[Transfer],
                    params: LedgerParams, moves: Sequence[Move] = ()) -> StateDelta:
        """Apply settlement ``moves``, then ``txs`` + reward, on the state after ``prev_hash``; returns the delta
        with its state root. Writes nothing. Raises RuleError (first failing tx) or StoreError (unknown/too-old
        parent). The delta is remembered (chain.store_preview) for ``connect_block`` of the same ``txs`` tuple on
        the same parent, miner, params and moves: its txs are not checked twice."""
        with self._lock:
            delta = self._check_txs(prev_hash, miner, txs, params, moves=moves)[0]
            self._previewed.remember(prev_hash, miner, txs, params, moves, delta)
            return delta

    def preview_block(self, block: Block, params: LedgerParams, moves: Sequence[Move] = ()) -> StateDelta:
        """Validate the ledger part of ``block`` against the state at its parent: chain id, height, model hash,
        tx count, tx root, every tx, state root. Raises RuleError; writes nothing."""
        with self._lock:
            self._check_header(block, params)
            h = block.header
            return self._check_txs(h.prev_hash, h.miner, block.txs, params, tx_root_=h.tx_root,
                                   state_root=h.state_root, moves=moves)[0]

    def _check_header(self, block: Block, params: LedgerParams) -> None:
        """The block checks that come before its txs (PROTOCOL §2: cheap ones first)."""
        h = block.header
        if h.version != 1:
            raise RuleError("bad-version", f"header version {h.version}")
        if h.chain_id != params.chain_id:
            raise RuleError("bad-chain-id", f"block for chain {h.chain_id!r}")
        parent = self.get_header(h.prev_hash)
        if parent is None:
            raise StoreError(f"unknown parent {h.prev_hash.hex()}")
        if h.height != parent.height + 1:
            raise RuleError("bad-height", f"height {h.height} after parent height {parent.height}")
        if len(block.txs) > params.max_block_txs:
            raise RuleError("too-many-txs", f"{len(block.txs)} txs, limit {params.max_block_txs}")
        if model_hash(block.model) != h.model_hash:
            raise RuleError("bad-model-hash", "model bytes do not match header.model_hash")

    def _check_txs(self, prev_hash: bytes, miner: bytes, txs: Sequence[Transfer], params: LedgerParams, *,
                   tx_root_: bytes | None = None, state_root: bytes | None = None,
                   then: Callable[[StateDelta], Any] | None = None,
                   moves: Sequence[Move] = ()) -> tuple[StateDelta, Any]:
        """Check ``txs`` on the state after ``prev_hash`` (with ``tx_root_`` / ``state_root``: compare those
        too); returns the delta and ``then(delta)``, which runs while the pool may still verify (its result
        must not be used if this raises). The caller holds the lock. Raises the first failure in rule order:
        tx root, then per tx field rules, signature, nonce/balance, then the state root.

        The pool starts on the signatures at once while this thread does the ledger work; when that finds a
        failure at tx i, signatures past the ones rule order puts before it are not started (an invalid block
        costs little verification)."""
        reader = self._kv.snapshot()
        try:
            overlay, _ = self._overlay_to(prev_hash, reader)  # unknown/too-old parent: fail before verifying
        except StoreError:
            if tx_root_ is not None and tx_root(txs) != tx_root_:
                raise RuleError("bad-tx-root", "tx root does not match the txs") from None
            raise
        cache = self._leaf_cache()  # tip accounts in memory: no LevelDB read per account
        limit = [len(txs)]
        with overlapped_gil():   # the ledger work below and the pool's signature checks run side by side
            pending = submit_verify_transfers(txs, limit=limit)
            try:
                delta, failure = self._apply_checked(overlay, cache, miner, txs, params, tx_root_, state_root,
                                                     moves)
            except BaseException:
                limit[0] = 0  # e.g. a corrupt stored account: stop the pool, let the error through
                raise
            if failure is not None:
                limit[0] = failure[0]
            extra = then(delta) if then is not None and failure is None and delta is not None else None
            sig_ok = pending()
        error = first_failure(sig_ok, txs, failure)
        if error is not None:
            raise error
        assert delta is not None
        return delta, extra

    @staticmethod
    def _apply_checked(overlay: Mapping[bytes, bytes | None], cache: LeafCache, miner: bytes,
                       txs: Sequence[Transfer], params: LedgerParams, tx_root_: bytes | None,
                       state_root: bytes | None, moves: Sequence[Move] = ()) -> tuple[StateDelta | None, Failure | None]:
        """``_check_txs``' work besides the signatures: tx root, apply, state root. Returns (delta, failure);
        the delta is None if the failure comes before the state root."""
        if tx_root_ is not None and tx_root(txs) != tx_root_:
            return None, (0, RuleError("bad-tx-root", "tx root does not match the txs"))
        before_raw: dict[bytes, bytes | None] = {}
        cache_get, from_bytes = cache.get, int.from_bytes

        def load(account: bytes) -> int:
            value = overlay[account] if account in overlay else cache_get(account)
            before_raw[account] = value
            if value is None:
                return 0
            if len(value) != 16:
                decode_account_pair(value)  # raises the DecodeError of a corrupt value
            return from_bytes(value, "big")  # the account word: balance << 64 | nonce

        applied = apply_block_txs(load, txs, miner, params, moves)
        if applied.failure is not None:
            return None, applied.failure
        encoded = encode_accounts(applied.state)
        root = cache.root_with({**overlay, **encoded} if overlay else encoded)
        delta = delta_of(applied.state, EncodedAccounts(before_raw), applied.fees, len(txs), root, encoded,
                         before_raw)
        if state_root is not None and root != state_root:
            error = RuleError("bad-state-root", "state root does not match the state after the block")
            return delta, (len(txs), error)
        return delta, None

    def connect_block(self, block: Block, params: LedgerParams,
                      extra: Mapping[bytes, bytes | None] = {}, moves: Sequence[Move] = ()) -> StateDelta:
        """Validate and connect ``block`` on the tip in ONE synced WriteBatch, together with the caller's meta
        keys ``extra`` (None deletes). ``moves`` (consensus settlement, applied before the txs) are recorded
        with the block so that verify/reindex replay them. Raises RuleError / StoreError and then writes
        nothing."""
        with self._lock:
            self._indexer.check()   # a failed index writer stops connects (a storage fault) before any write
            if block.header.prev_hash != self.tip().hash:
                raise StoreError("block does not extend the tip")
            self._check_header(block, params)
            h = block.header
            model_known = self.get_model(h.model_hash) is not None

            def batch(delta: StateDelta) -> dict[bytes, bytes | None]:
                # built while the pool may still verify; written only once every check has passed
                changes = self._block_records(block)
                if model_known:
                    del changes[P_MODEL + h.model_hash]  # already stored: skip rewriting up to MiBs
                encoded = delta.encoded_after()
                changes.update(zip([P_ACCOUNT + a for a in encoded], encoded.values(), strict=True))
                changes[P_UNDO + h.hash] = _pack_undo(delta.encoded_before())
                changes[K_TIP] = h.hash
                changes[P_MOVES + h.hash] = pack_trusted([list(m) for m in moves]) if moves else None
                minted = params.block_reward
                changes[P_REWARD + h.hash] = (None if minted == self.params().block_reward
                                              else minted.to_bytes(8, "big"))
                changes.update((P_META + k, v) for k, v in extra.items())
                return changes

            previewed = self._previewed.take(h.prev_hash, h.miner, block.txs, params, moves)
            if previewed is not None and previewed.state_root == h.state_root and tx_root(block.txs) == h.tx_root:
                # the preview's checks hold (chain.store_preview); only the header's roots are left to compare
                delta = previewed
                changes = batch(delta)
            else:
                delta, changes = self._check_txs(h.prev_hash, h.miner, block.txs, params, tx_root_=h.tx_root,
                                                 state_root=h.state_root, then=batch, moves=moves)
            self._kv.write(changes, sync=True)
            self._tip = h
            if self._leaves is not None:
                self._leaves.apply(delta.encoded_after())
            # its index records: a second, unsynced batch on the writer's thread (which never takes this lock)
            self._indexer.submit(block)
            return delta

    def disconnect_tip(self, extra: Mapping[bytes, bytes | None] = {}) -> Block:
        """Undo the tip block in ONE synced WriteBatch (accounts restored byte for byte); returns it.
        The block, header, model and payload stay stored (a reorg may reconnect them). Its index records go in
        the same batch (the index writer is drained first), with the index marker if it named the block."""
        with self._lock:
            self._indexer.drain()
            tip = self.tip()
            if tip.height == 0:
                raise StoreError("cannot disconnect genesis")
            block = need(self.get_block(tip.hash), f"tip block {tip.hash.hex()}")
            undo = self._undo(tip.hash)
            changes: dict[bytes, bytes | None] = {P_ACCOUNT + a: v for a, v in undo.items()}
            changes[P_UNDO + tip.hash] = None
            changes[_height_key(tip.height)] = None
            changes[K_TIP] = tip.prev_hash
            changes.update(unindex_records(block))
            marker = read_marker(self._kv)
            if marker is not None and marker[0] == tip.hash:
                changes[K_INDEXED] = marker_value(tip.prev_hash, tip.height - 1)
            changes.update((P_META + k, v) for k, v in extra.items())
            self._kv.write(changes, sync=True)
            self._tip = None
            if self._leaves is not None:
                self._leaves.apply(undo)
            return block

    # ------------------------------------------------------------ verify / reindex

    def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Replay the main chain from genesis (chain.store_verify) and compare every state root, the stored
        accounts, undo records and indexes. Never raises for a damaged datadir: unreadable records are a
        problem in the report."""
        with self._lock:
            self._indexer.drain()   # under the lock: no connect queues more meanwhile
            try:
                r = replay(self, progress)
                problems = r.problems + compare(self, r)
                tip = self.tip()
            except (DecodeError, StoreError) as exc:
                return VerifyReport(False, -1, b"", (f"unreadable: {exc}",), readable=False)
            root = state_root_of(sorted(r.accounts.items()))
            if not r.problems and root != tip.state_root:
                problems.append("tip state root differs from the replay")
            return VerifyReport(not problems, tip.height, root, tuple(problems))

    def reindex(self, progress: Progress | None = None) -> VerifyReport:
        """Rebuild accounts, undo records and the tx/address indexes from the stored blocks (one synced batch),
        then verify. Writes nothing if the blocks themselves do not replay (the report says why)."""
        with self._lock:
            self._indexer.drain()   # under the lock: no connect queues more meanwhile
            try:
                r = replay(self, progress)
            except (DecodeError, StoreError) as exc:
                return VerifyReport(False, -1, b"", (f"unreadable: {exc}",), readable=False)
            if r.problems:
                return VerifyReport(False, r.height, b"", tuple(r.problems))
            changes: dict[bytes, bytes | None] = {}
            for prefix in (P_ACCOUNT, P_TXINDEX, P_ADDRINDEX):
                changes.update((k, None) for k, _ in self._kv.iterator(prefix))
            changes.update((P_ACCOUNT + a, v) for a, v in r.accounts.items())
            changes.update((P_UNDO + h, u) for h, u in r.undos.items())
            changes.update(r.index)
            changes[K_INDEX_VERSION] = INDEX_VERSION
            tip = self.tip()
            changes[K_INDEXED] = marker_value(tip.hash, tip.height)
            self._kv.write(changes, sync=True)
            self._leaves = None
        return self.verify()

    def find_tx(self, txid: bytes) -> TxLocation | None:
        """StoreReader.find_tx once the index writer has caught up with the tip (StoreError if it failed)."""
        self._indexer.flush()
        return super().find_tx(txid)

    def address_history(self, account: bytes, before: tuple[int, int] | None = None,
                        limit: int = 50) -> list[HistoryItem]:
        """StoreReader.address_history once the index writer has caught up with the tip."""
        self._indexer.flush()
        return super().address_history(account, before, limit)

    def index_seconds(self) -> float:
        """Seconds the index writer has spent building and writing index records (for the benchmarks)."""
        return self._indexer.written_s

    def has_indexes(self) -> bool:
        """False for a datadir written before the indexes existed (build them with ``reindex``)."""
        return self._kv.get(K_INDEX_VERSION) == INDEX_VERSION
