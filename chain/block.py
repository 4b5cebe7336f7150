"""Headers and blocks (PROTOCOL §2.2). The model bytes and the consensus payload are opaque here."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import msgpack

from chain.crypto import _LEAF, _LEN32, Keypair, _tag_state, merkle_root_of_hashes, tagged_hash, verify_sig
from chain.encoding import (
    check_bytes,
    check_bytes_max,
    check_int,
    check_list,
    check_list_max,
    pack_trusted,
    unpack,
    unpack_uncanonical,
)
from chain.errors import DecodeError
from chain.tx import MAX_TX_SIZE, MAX_VERSION, Transfer, check_chain_id, transfers_from_lists

HEADER_VERSION = 1
MAX_HEADER_SIZE = 512
MAX_BLOCK_TXS = 10_000          # encoding cap; the consensus limit (max_block_txs) is lower
MAX_MODEL_SIZE = 4 * 2**20      # encoding cap; ml/ caps are lower
MAX_PAYLOAD_SIZE = 8 * 2**20    # genesis payload carries the public task
MAX_BLOCK_SIZE = MAX_HEADER_SIZE + MAX_BLOCK_TXS * MAX_TX_SIZE + MAX_MODEL_SIZE + MAX_PAYLOAD_SIZE + 64
MAX_HEIGHT = 2**32 - 1
MAX_TIMESTAMP = 2**40
ZERO_HASH = bytes(32)
NO_SIGNATURE = bytes(64)


def model_hash(model_bytes: bytes) -> bytes:
    return tagged_hash("popchain/model", model_bytes)


def tx_root(txs: Sequence[Transfer]) -> bytes:
    """Merkle root of the txids (txids not yet known are computed and kept on the txs)."""
    leaf = _tag_state(_LEAF)
    leaves: list[bytes] = []
    append = leaves.append
    for tx in txs:
        h = leaf.copy()  # = merkle_leaf(txid), inlined
        h.update(_LEN32 + tx.txid)
        append(h.digest())
    return merkle_root_of_hashes(leaves)


@dataclass(frozen=True)
class Header:
    version: int
    chain_id: str
    height: int
    prev_hash: bytes
    round: int
    timestamp: int
    miner: bytes
    tx_root: bytes
    state_root: bytes
    model_hash: bytes
    salt: bytes
    signature: bytes = NO_SIGNATURE

    def __post_init__(self) -> None:
        check_int(self.version, 0, MAX_VERSION, "header.version")
        check_chain_id(self.chain_id, "header.chain_id")
        check_int(self.height, 0, MAX_HEIGHT, "header.height")
        check_bytes(self.prev_hash, 32, "header.prev_hash")
        check_int(self.round, 0, MAX_HEIGHT, "header.round")
        check_int(self.timestamp, 0, MAX_TIMESTAMP, "header.timestamp")
        check_bytes(self.miner, 32, "header.miner")
        check_bytes(self.tx_root, 32, "header.tx_root")
        check_bytes(self.state_root, 32, "header.state_root")
        check_bytes(self.model_hash, 32, "header.model_hash")
        check_bytes(self.salt, 32, "header.salt")
        check_bytes(self.signature, 64, "header.signature")

    def unsigned_fields(self) -> list[Any]:
        return [self.version, self.chain_id, self.height, self.prev_hash, self.round, self.timestamp, self.miner,
                self.tx_root, self.state_root, self.model_hash, self.salt]

    def to_list(self) -> list[Any]:
        return [*self.unsigned_fields(), self.signature]

    def encode(self) -> bytes:
        return pack_trusted(self.to_list())

    @classmethod
    def from_list(cls, fields: Any) -> Header:
        return cls(*check_list(fields, 12, "header"))

    @classmethod
    def decode(cls, data: bytes) -> Header:
        return cls.from_list(unpack(data, max_size=MAX_HEADER_SIZE, typed=True))

    @cached_property
    def hash(self) -> bytes:
        """The block id: hash of the unsigned fields, so it can be sealed before the block is signed."""
        return tagged_hash("popchain/header", pack_trusted(self.unsigned_fields()))

    def sign(self, keypair: Keypair) -> Header:
        if keypair.public != self.miner:
            raise ValueError("header.miner is not this keypair's public key")
        return dataclasses.replace(self, signature=keypair.sign(self.hash))

    def verify_signature(self) -> bool:
        return verify_sig(self.miner, self.hash, self.signature)


@dataclass(frozen=True)
class Block:
    header: Header
    txs: tuple[Transfer, ...]
    model: bytes
    payload: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.header, Header):
            raise DecodeError("block.header: expected a Header")
        if not isinstance(self.txs, tuple) or not all(isinstance(t, Transfer) for t in self.txs):
            raise DecodeError("block.txs: expected a tuple of Transfer")
        if len(self.txs) > MAX_BLOCK_TXS:
            raise DecodeError(f"block.txs: {len(self.txs)} exceeds the cap of {MAX_BLOCK_TXS}")
        check_bytes_max(self.model, MAX_MODEL_SIZE, "block.model")
        check_bytes_max(self.payload, MAX_PAYLOAD_SIZE, "block.payload")

    @property
    def hash(self) -> bytes:
        return self.header.hash

    def encode(self) -> bytes:
        return pack_trusted([self.header.to_list(), [tx.to_list() for tx in self.txs], self.model, self.payload])

    @classmethod
    def decode(cls, data: bytes, *, max_size: int = MAX_BLOCK_SIZE) -> Block:
        """Decode and check a block; txs come with their encodings set (sighash and txid are computed when
        first needed: connecting a block does it on the verification threads). Raises DecodeError."""
        block = cls._decode_fast(data, max_size)
        return block if block is not None else cls._decode_checked(data, max_size)

    @classmethod
    def _decode_fast(cls, data: bytes, max_size: int) -> Block | None:
        """One msgpack pass plus bulk field checks; the canonical check re-assembles the block's bytes from
        the per-tx encodings (needed anyway for txids) instead of re-packing everything. Returns None on any
        doubt, and ``_decode_checked`` then raises exactly the error it always raised."""
        if type(data) is not bytes:
            return None
        try:
            fields = unpack_uncanonical(data, max_size=max_size)
        except DecodeError:
            return None
        if type(fields) is not list or len(fields) != 4:
            return None
        raw_header, raw_txs, model, payload = fields
        if type(raw_txs) is not list or len(raw_txs) > MAX_BLOCK_TXS:
            return None
        if type(model) is not bytes or len(model) > MAX_MODEL_SIZE:
            return None
        if type(payload) is not bytes or len(payload) > MAX_PAYLOAD_SIZE:
            return None
        try:
            header = Header.from_list(raw_header)
        except DecodeError:
            return None
        txs = transfers_from_lists(raw_txs, hashes=False)
        if txs is None:
            return None
        packer = msgpack.Packer(use_bin_type=True)
        canonical = b"".join((b"\x94", packer.pack(raw_header), packer.pack_array_header(len(txs)),
                              *[tx.encode() for tx in txs], packer.pack(model),
                              packer.pack(payload)))
        if canonical != data:
            return None
        block = object.__new__(cls)  # every field checked above, as __post_init__ would
        block.__dict__.update(header=header, txs=tuple(txs), model=model, payload=payload)
        return block

    @classmethod
    def _decode_checked(cls, data: bytes, max_size: int) -> Block:
        fields = check_list(unpack(data, max_size=max_size, typed=True), 4, "block")
        header = Header.from_list(fields[0])
        raw_txs = check_list_max(fields[1], MAX_BLOCK_TXS, "block.txs")
        txs = []
        for raw in raw_txs:
            tx = Transfer.from_list(raw)
            encoding = pack_trusted(raw)
            if len(encoding) > MAX_TX_SIZE:
                raise DecodeError(f"block tx encodes to {len(encoding)} bytes, cap {MAX_TX_SIZE}")
            tx.__dict__["_enc"] = encoding
            txs.append(tx)
        return cls(header, tuple(txs), fields[2], fields[3])
