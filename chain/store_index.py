"""The store's lookup indexes over the main chain: txid -> where it is confirmed, address -> its transfers.

Key layout (prefixes beside chain.store_read's)::

    i + txid(32)                                  -> block hash(32) + height(4) + position(4) + tx encoding
    y + account(20) + height(4) + position(4)     -> txid(32) + direction(1: 1 sent, 2 received, 3 both)
    v                                             -> INDEX_VERSION (absent: indexes not built yet)

Does: build the index records a block adds (``index_records``) or removes (``unindex_records``) — ChainStore
puts them into the same synced WriteBatch as the block's connect / disconnect, so after a crash the indexes
always describe exactly the main chain; read them back (``find_tx``, ``address_page``) without decoding a block.
Does not: write anything itself, or take part in consensus (nothing here is hashed into a state root; a
datadir's indexes can always be rebuilt from its blocks: ChainStore.reindex).
"""
from __future__ import annotations

from dataclasses import dataclass

from chain.address import ACCOUNT_SIZE, address_of
from chain.block import Block
from chain.errors import StoreError
from chain.kv import KVReader
from chain.tx import Transfer

P_TXINDEX, P_ADDRINDEX, K_INDEX_VERSION = b"i", b"y", b"v"
INDEX_VERSION = b"\x01"
SENT, RECEIVED = 1, 2
MAX_PAGE = 500
_POS_MAX = 2**32 - 1


@dataclass(frozen=True)
class TxLocation:
    txid: bytes
    block_hash: bytes
    height: int
    position: int
    tx: Transfer


@dataclass(frozen=True)
class HistoryItem:
    location: TxLocation
    direction: int       # SENT | RECEIVED bits

    @property
    def cursor(self) -> str:
        """Pass as ``before`` to get the items after this one (older)."""
        return f"{self.location.height}:{self.location.position}"


def _addr_key(account: bytes, height: int, position: int) -> bytes:
    return P_ADDRINDEX + account + height.to_bytes(4, "big") + position.to_bytes(4, "big")


_POS = [n.to_bytes(4, "big") for n in range(2**14)]   # positions of a block's txs (max_block_txs <= 10,000)
_SENT, _RECEIVED, _BOTH = bytes([SENT]), bytes([RECEIVED]), bytes([SENT | RECEIVED])


def index_records(block: Block) -> dict[bytes, bytes | None]:
    """The index records of main-chain ``block`` (to add to the batch that connects it). On the connect path
    of a 5,000-tx block: keys are assembled from precomputed pieces and each distinct sender is hashed once."""
    h = block.header
    height = h.height.to_bytes(4, "big")
    head = h.hash + height
    out: dict[bytes, bytes | None] = {}
    senders: dict[bytes, bytes] = {}
    for position, tx in enumerate(block.txs):
        txid, pos = tx.txid, _POS[position] if position < len(_POS) else position.to_bytes(4, "big")
        sender = senders.get(tx.sender)
        if sender is None:
            sender = senders[tx.sender] = address_of(tx.sender)
        recipient = tx.recipient
        out[P_TXINDEX + txid] = head + pos + tx.encode()
        suffix = height + pos
        if sender == recipient:
            out[P_ADDRINDEX + sender + suffix] = txid + _BOTH
        else:
            out[P_ADDRINDEX + sender + suffix] = txid + _SENT
            out[P_ADDRINDEX + recipient + suffix] = txid + _RECEIVED
    return out


def unindex_records(block: Block) -> dict[bytes, bytes | None]:
    """Deletions undoing ``index_records(block)`` (to add to the batch that disconnects it)."""
    return dict.fromkeys(index_records(block), None)


def _location(txid: bytes, value: bytes) -> TxLocation:
    if len(value) < 41:
        raise StoreError(f"corrupt tx index record for {txid.hex()}")
    try:
        tx = Transfer.decode(value[40:])
    except Exception as exc:  # noqa: BLE001 -- a damaged record of our own: say which
        raise StoreError(f"corrupt tx index record for {txid.hex()}: {exc}") from None
    return TxLocation(txid, value[:32], int.from_bytes(value[32:36], "big"),
                      int.from_bytes(value[36:40], "big"), tx)


def find_tx(kv: KVReader, txid: bytes) -> TxLocation | None:
    """Where ``txid`` is confirmed on the main chain, with the tx itself; None if it is not."""
    value = kv.get(P_TXINDEX + txid)
    return None if value is None else _location(txid, value)


def parse_cursor(text: str) -> tuple[int, int]:
    """``before`` of a history page: "HEIGHT" (blocks below HEIGHT) or "HEIGHT:POSITION" (a cursor)."""
    height_text, sep, pos_text = text.partition(":")
    if not height_text.isdigit() or (sep and not pos_text.isdigit()):
        raise ValueError(f"before: expected HEIGHT or HEIGHT:POSITION, got {text[:40]!r}")
    height, position = int(height_text), int(pos_text) if sep else 0
    if height >= 2**32 or position > _POS_MAX:
        raise ValueError("before: out of range")
    return height, position


def address_page(kv: KVReader, account: bytes, before: tuple[int, int] | None,
                 limit: int) -> list[HistoryItem]:
    """Up to ``limit`` transfers of ``account`` (either direction), newest first, strictly before ``before``
    ((height, position); None = from the tip)."""
    if len(account) != ACCOUNT_SIZE:
        raise ValueError("account id must be 20 bytes")
    limit = max(1, min(limit, MAX_PAGE))
    prefix = P_ADDRINDEX + account
    stop = _addr_key(account, *before) if before is not None else prefix + b"\xff" * 9
    out = []
    for key, value in kv.before(prefix, stop, limit):
        if len(key) != len(prefix) + 8 or len(value) != 33:
            raise StoreError(f"corrupt address index record {key.hex()}")
        txid = value[:32]
        record = kv.get(P_TXINDEX + txid)
        if record is None:
            raise StoreError(f"address index names tx {txid.hex()}, which the tx index lacks")
        out.append(HistoryItem(_location(txid, record), value[32]))
    return out
