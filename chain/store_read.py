"""StoreReader: the read side of ChainStore (chain.store) — the key layout and every read of the database.

Layout (one-byte prefixes): h header · b block body · n height index · a account · u undo record ·
m model by hash · p consensus payload · s settlement moves · x meta (consensus/node keys) · t tip · g genesis hash ·
c params · l genesis allocations · i tx index · y address index · v index version (the last three: chain.store_index).

Does: decode headers, blocks, accounts, params and meta keys; answer main-chain questions through the height
index; give accounts as of the tip or a recent main-chain ancestor (undo records read back as overlays on a KV
snapshot: StateView); look txs and address histories up in the indexes (lock-free); keep the in-memory tip and the tip accounts' leaf cache that ChainStore updates.
Does not: write anything, validate blocks, or open and lock a datadir — ChainStore (chain/store.py) owns every
write (one synced WriteBatch per connect/disconnect), the undo record encoding and the datadir lock. Not used
on its own: ChainStore is the class to construct.
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from chain.block import Block, Header
from chain.encoding import check_list, check_list_max, unpack
from chain.errors import StoreError, need
from chain.kv import KV, KVReader
from chain.state import _ACCOUNT_STRUCT, EMPTY_ACCOUNT, Account, LedgerParams, _account, state_root_of
from chain.state_cache import LeafCache
from chain.store_index import P_TXINDEX, HistoryItem, TxLocation, address_page, find_tx
from chain.tx import Transfer, transfers_from_lists

P_HEADER, P_BODY, P_HEIGHT, P_ACCOUNT, P_UNDO = b"h", b"b", b"n", b"a", b"u"
P_MODEL, P_PAYLOAD, P_META = b"m", b"p", b"x"
P_MOVES = b"s"           # + block hash -> the block's settlement moves (consensus-computed, replayed by verify)
P_REWARD = b"r"          # + block hash -> u64 minted reward, only where it differs from the params' (verify replays it)
K_TIP, K_GENESIS, K_PARAMS, K_ALLOC = b"t", b"g", b"c", b"l"
K_PRUNED = b"r"          # u32 height: the models of main-chain blocks at or below it may be pruned (chain.store_prune)
MAX_VIEW_DEPTH = 256     # how far back state_view / preview_block may look (via undo records)
MAX_RECORD = 64 * 2**20  # cap when decoding our own records (corruption must not explode memory)


def _BIN_HEADER(n: int) -> bytes:
    if n < 1 << 8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def _height_key(height: int) -> bytes:
    return P_HEIGHT + height.to_bytes(4, "big")


class StateView:
    """Read-only accounts as of one block (tip, or an ancestor through undo overlays), on a KV snapshot."""

    def __init__(self, reader: KVReader, overlay: Mapping[bytes, bytes | None], header: Header) -> None:
        self._reader = reader
        self._overlay = overlay
        self.header = header

    @property
    def block_hash(self) -> bytes:
        return self.header.hash

    def get_raw(self, account: bytes) -> Account | None:
        if account in self._overlay:
            value = self._overlay[account]
        else:
            value = self._reader.get(P_ACCOUNT + account)
        return None if value is None else Account.decode(value)

    def get_account(self, account: bytes) -> Account:
        acc = self.get_raw(account)
        return EMPTY_ACCOUNT if acc is None else acc

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """(account id, encoded Account) in ascending id order."""
        base = {k[1:]: v for k, v in self._reader.iterator(P_ACCOUNT)}
        for key, value in self._overlay.items():
            if value is None:
                base.pop(key, None)
            else:
                base[key] = value
        return iter([(k, base[k]) for k in sorted(base)])

    def state_root(self) -> bytes:
        return state_root_of(self.items())


class StoreReader:
    """Reads of the ledger database; the base of ChainStore, which adds the writes. ``_lock`` is the store's
    one re-entrant lock, taken here only where a read must not interleave with a write (a snapshot together
    with its tip, loading the leaf cache)."""

    def __init__(self, kv: KV) -> None:
        self._kv = kv
        self._lock = threading.RLock()
        self._tip: Header | None = None
        self._leaves: LeafCache | None = None
        self._params: LedgerParams | None = None

    # ------------------------------------------------------------ reading

    def is_initialised(self) -> bool:
        return self._kv.get(K_TIP) is not None

    def _need(self, key: bytes, what: str) -> bytes:
        return need(self._kv.get(key), what)

    def params(self) -> LedgerParams:
        if self._params is None:
            f = check_list(unpack(self._need(K_PARAMS, "ledger params"), max_size=256), 4, "params")
            self._params = LedgerParams(*f)
        return self._params

    def tip(self) -> Header:
        if self._tip is None:
            self._tip = self._header(self._need(K_TIP, "tip (store not initialised)"))
        return self._tip

    def allocations(self) -> list[tuple[bytes, int]]:
        """The genesis allocations as stored at init_genesis."""
        raw = check_list_max(unpack(self._need(K_ALLOC, "allocations"), max_size=MAX_RECORD), 2**20, "allocations")
        out = []
        for pair in raw:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], bytes)
                    and isinstance(pair[1], int)):
                raise StoreError("corrupt allocations record")
            out.append((pair[0], pair[1]))
        return out

    def genesis(self) -> Header:
        return self._header(self._need(K_GENESIS, "genesis"))

    def _header(self, block_hash: bytes) -> Header:
        return Header.decode(self._need(P_HEADER + block_hash, f"header {block_hash.hex()}"))

    def get_header(self, h: bytes | int) -> Header | None:
        block_hash = self.block_hash_at(h) if isinstance(h, int) else h
        if block_hash is None:
            return None
        data = self._kv.get(P_HEADER + block_hash)
        return None if data is None else Header.decode(data)

    def has_block(self, block_hash: bytes) -> bool:
        return self._kv.get(P_BODY + block_hash) is not None

    def get_block(self, h: bytes | int) -> Block | None:
        header = self.get_header(h)
        if header is None:
            return None
        body = self._kv.get(P_BODY + header.hash)
        if body is None:
            return None
        raw_txs = unpack(body, max_size=MAX_RECORD, typed=True)  # every tx's fields are checked below
        if not isinstance(raw_txs, list):
            raise StoreError("corrupt block body")
        model = self.get_model(header.model_hash)
        payload = self._kv.get(P_PAYLOAD + header.hash)
        if model is None and payload is not None and self.is_pruned(header):
            model = b""     # pruned (chain.store_prune): the header keeps its hash; an archive peer has the bytes
        if model is None or payload is None:
            raise StoreError(f"block {header.hash.hex()} is missing its model or payload")
        txs = transfers_from_lists(raw_txs, hashes=False)  # None: some tx is bad; from_list says which
        return Block(header, tuple(txs if txs is not None else map(Transfer.from_list, raw_txs)), model, payload)

    def get_txs(self, block_hash: bytes) -> tuple[Transfer, ...] | None:
        """A stored block's transfers alone (its model and payload are not read: an explorer's fee sums)."""
        body = self._kv.get(P_BODY + block_hash)
        if body is None:
            return None
        raw_txs = unpack(body, max_size=MAX_RECORD, typed=True)
        if not isinstance(raw_txs, list):
            raise StoreError("corrupt block body")
        txs = transfers_from_lists(raw_txs, hashes=False)
        return tuple(txs if txs is not None else map(Transfer.from_list, raw_txs))

    def block_encoding(self, block_hash: bytes) -> bytes | None:
        """The stored block's canonical encoding (= ``get_block(h).encode()``), assembled from its stored parts
        without decoding them: serving a block to a peer costs its reads, not a decode and a re-encode. None if
        the block is not stored."""
        kv = self._kv
        header = kv.get(P_HEADER + block_hash)
        body = kv.get(P_BODY + block_hash)
        if header is None or body is None:
            return None
        decoded = Header.decode(header)
        model = kv.get(P_MODEL + decoded.model_hash)
        payload = kv.get(P_PAYLOAD + block_hash)
        if model is None and self.is_pruned(decoded):
            return None     # its model was pruned: not served (a peer asks an archive node)
        if model is None or payload is None:
            raise StoreError(f"block {block_hash.hex()} is missing its model or payload")
        return b"".join((b"\x94", header, body, _BIN_HEADER(len(model)), model, _BIN_HEADER(len(payload)), payload))

    def pruned_through(self) -> int:
        """The height at or below which main-chain blocks' models may be pruned (0: an archive store)."""
        raw = self._kv.get(K_PRUNED)
        return 0 if raw is None else int.from_bytes(raw, "big")

    def is_pruned(self, header: Header) -> bool:
        """Whether ``header``'s model may be missing because this store pruned it (a main-chain block at or
        below the pruned height)."""
        return 0 < header.height <= self.pruned_through() and self.block_hash_at(header.height) == header.hash

    def block_hash_at(self, height: int) -> bytes | None:
        """Main-chain block hash at ``height`` (None above the tip)."""
        if not 0 <= height < 2**32:
            return None
        return self._kv.get(_height_key(height))

    def is_main_chain(self, block_hash: bytes) -> bool:
        header = self.get_header(block_hash)
        return header is not None and self.block_hash_at(header.height) == block_hash

    def get_model(self, model_hash_: bytes) -> bytes | None:
        return self._kv.get(P_MODEL + model_hash_)

    def get_payload(self, block_hash: bytes) -> bytes | None:
        return self._kv.get(P_PAYLOAD + block_hash)

    def get_moves(self, block_hash: bytes) -> list[tuple[bytes, bytes, int]]:
        """The consensus moves recorded with a connected block (applied before its txs), in order."""
        raw = self._kv.get(P_MOVES + block_hash)
        return [] if raw is None else [tuple(m) for m in unpack(raw, max_size=MAX_RECORD)]

    def ledger_params_of(self, block_hash: bytes) -> LedgerParams:
        """The ledger parameters a connected block applied: the chain's, with the minted reward recorded for
        that block if consensus minted another one (a sponsored task's crowning mints nothing, PROTOCOL §3.9)."""
        raw = self._kv.get(P_REWARD + block_hash)
        params = self.params()
        return params if raw is None else dataclasses.replace(params, block_reward=int.from_bytes(raw, "big"))

    def get_account(self, account: bytes) -> Account:
        value = self._kv.get(P_ACCOUNT + account)
        return EMPTY_ACCOUNT if value is None else Account.decode(value)

    def tip_account_reader(self) -> Callable[[Sequence[bytes]], list[Account]]:
        """A reader of tip accounts (ids -> Accounts in order, EMPTY_ACCOUNT if absent) from the in-memory tip
        cache, that never takes the store lock: safe on verification-pool threads even while a block is being
        connected (which holds the lock and waits for that pool). Each account is read as of one committed
        tip — before or after a block that connects meanwhile. Take a fresh reader per batch: after reindex()
        an old one keeps reading the tip it started from."""
        with self._lock:
            get = self._leaf_cache().get
        unpack_account = _ACCOUNT_STRUCT.unpack

        def read(accounts: Sequence[bytes]) -> list[Account]:
            out = []
            for value in map(get, accounts):
                if value is None:
                    out.append(EMPTY_ACCOUNT)
                elif len(value) == 16:
                    out.append(_account(*unpack_account(value)))
                else:
                    out.append(Account.decode(value))  # raises the precise DecodeError
            return out
        return read

    def _undo(self, block_hash: bytes) -> dict[bytes, bytes | None]:
        data = unpack(self._need(P_UNDO + block_hash, f"undo record {block_hash.hex()}"), max_size=MAX_RECORD)
        if not isinstance(data, list) or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], bytes) and isinstance(p[1], bytes)
                for p in data):
            raise StoreError(f"corrupt undo record of block {block_hash.hex()[:16]}")
        return {pair[0]: (pair[1] or None) for pair in data}

    def _overlay_to(self, at: bytes | None, reader: KVReader) -> tuple[dict[bytes, bytes | None], Header]:
        """Undo overlay turning tip state into the state after block ``at`` (which must be on the main chain)."""
        tip = self.tip()
        overlay: dict[bytes, bytes | None] = {}
        if at is None or at == tip.hash:
            return overlay, tip
        header = tip
        for _ in range(MAX_VIEW_DEPTH):
            undo = reader.get(P_UNDO + header.hash)
            if undo is None:
                break
            for pair in unpack(undo, max_size=MAX_RECORD):
                overlay[pair[0]] = pair[1] or None  # older blocks overwrite: their "before" is earlier
            header = self._header(header.prev_hash)
            if header.hash == at:
                return overlay, header
        raise StoreError(f"block {at.hex()} is not the tip or a main-chain ancestor within {MAX_VIEW_DEPTH}")

    def state_view(self, at: bytes | None = None) -> StateView:
        """Accounts as of block ``at`` (default tip); read-only, consistent even while blocks connect."""
        with self._lock:
            reader = self._kv.snapshot()
            overlay, header = self._overlay_to(at, reader)
            return StateView(reader, overlay, header)

    # ------------------------------------------------------------ indexes (chain.store_index)

    def find_tx(self, txid: bytes) -> TxLocation | None:
        """Where ``txid`` is confirmed on the main chain (and the tx); None if it is not. Lock-free."""
        return find_tx(self._kv, txid)

    def address_history(self, account: bytes, before: tuple[int, int] | None = None,
                        limit: int = 50) -> list[HistoryItem]:
        """``account``'s transfers (sent and received), newest first, before (height, position). Lock-free."""
        return address_page(self._kv, account, before, limit)

    def ids_with_prefix(self, kind: str, prefix_hex: str, limit: int = 8) -> list[bytes]:
        """Up to ``limit`` 32-byte ids that start with ``prefix_hex`` (a git-style abbreviation, at least two hex
        digits): kind ``block`` (stored headers, any branch), ``tx`` (confirmed on the main chain) or ``model``
        (stored models). Lock-free; reads at most ``limit`` + the keys sharing the prefix's whole bytes."""
        space = {"block": P_HEADER, "tx": P_TXINDEX, "model": P_MODEL}[kind]
        text = prefix_hex.lower()
        if len(text) < 2 or len(text) > 64:
            return []
        whole = bytes.fromhex(text[:len(text) - len(text) % 2])
        out = []
        for key, _ in self._kv.iterator(space + whole):
            ident = key[len(space):]
            if len(ident) == 32 and ident.hex().startswith(text):
                out.append(ident)
                if len(out) >= limit:
                    break
        return out

    # ------------------------------------------------------------ meta keys (consensus/ and node/)

    def meta_get(self, key: bytes) -> bytes | None:
        return self._kv.get(P_META + key)

    def meta_items(self, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        n = len(P_META)
        return [(k[n:], v) for k, v in self._kv.iterator(P_META + prefix)]

    def meta_before(self, prefix: bytes, stop: bytes | None = None, limit: int = 1) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` meta items whose key starts with ``prefix`` and sorts below ``prefix + stop``
        (None: no bound), highest key first: the newest records of a height- or round-keyed table without
        reading the older ones (flat cost: the node's per-request and per-block paths page with this)."""
        n = len(P_META)
        end = P_META + (prefix + stop if stop is not None else prefix[:-1] + bytes([prefix[-1] + 1]))
        return [(k[n:], v) for k, v in self._kv.before(P_META + prefix, end, limit)]

    # ------------------------------------------------------------ state root cache

    def _leaf_cache(self) -> LeafCache:
        if self._leaves is None:
            self._leaves = LeafCache.load((k[1:], v) for k, v in self._kv.iterator(P_ACCOUNT))
        return self._leaves
