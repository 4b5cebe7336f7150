"""Signed transfers (PROTOCOL §2.1): canonical encoding, sighash, txid, signature check.

Decoding checks types and ranges of the encoding; rule checks that need ledger parameters (version, chain id,
minimum fee, amount ≥ 1) live in chain.state so the mempool and block validation share them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from chain.address import ACCOUNT_SIZE
from chain.crypto import Keypair, tagged_hash, verify_sig
from chain.encoding import (check_bytes, check_bytes_max, check_int, check_list, check_str, pack_trusted,
                            unpack)
from chain.errors import DecodeError

TX_VERSION = 1
MAX_TX_SIZE = 256
MAX_MEMO = 64
MAX_AMOUNT = 2**62
MAX_NONCE = 2**63 - 1
MAX_CHAIN_ID = 32
MAX_VERSION = 255
NO_SIGNATURE = bytes(64)


_KNOWN_CHAIN_IDS: set[str] = set()  # ids already checked: a block repeats one id thousands of times


def check_chain_id(value: Any, name: str = "chain_id") -> str:
    """A chain id: 1–32 printable ASCII characters (so it has one obvious spelling)."""
    if type(value) is str and value in _KNOWN_CHAIN_IDS:
        return value
    check_str(value, MAX_CHAIN_ID, name)
    if not value or not all(33 <= ord(c) <= 126 for c in value):
        raise DecodeError(f"{name}: must be 1-{MAX_CHAIN_ID} printable ASCII characters without spaces")
    if len(_KNOWN_CHAIN_IDS) < 64:
        _KNOWN_CHAIN_IDS.add(value)
    return value


@dataclass(frozen=True)
class Transfer:
    version: int
    chain_id: str
    sender: bytes      # 32-byte Ed25519 public key
    recipient: bytes   # 20-byte account id
    amount: int
    fee: int
    nonce: int
    memo: bytes
    signature: bytes

    def __post_init__(self) -> None:
        check_int(self.version, 0, MAX_VERSION, "tx.version")
        check_chain_id(self.chain_id, "tx.chain_id")
        check_bytes(self.sender, 32, "tx.sender")
        check_bytes(self.recipient, ACCOUNT_SIZE, "tx.recipient")
        check_int(self.amount, 0, MAX_AMOUNT, "tx.amount")
        check_int(self.fee, 0, MAX_AMOUNT, "tx.fee")
        check_int(self.nonce, 0, MAX_NONCE, "tx.nonce")
        check_bytes_max(self.memo, MAX_MEMO, "tx.memo")
        check_bytes(self.signature, 64, "tx.signature")

    def unsigned_fields(self) -> list[Any]:
        return [self.version, self.chain_id, self.sender, self.recipient, self.amount, self.fee, self.nonce,
                self.memo]

    def to_list(self) -> list[Any]:
        return [*self.unsigned_fields(), self.signature]

    @cached_property
    def _encoding(self) -> bytes:
        data = pack_trusted(self.to_list())
        if len(data) > MAX_TX_SIZE:
            raise DecodeError(f"tx encodes to {len(data)} bytes, cap {MAX_TX_SIZE}")
        return data

    def encode(self) -> bytes:
        return self._encoding

    @classmethod
    def from_list(cls, fields: Any) -> "Transfer":
        f = check_list(fields, 9, "tx")
        return cls(*f)

    @classmethod
    def decode(cls, data: bytes) -> "Transfer":
        tx = cls.from_list(unpack(data, max_size=MAX_TX_SIZE, typed=True))
        tx.__dict__["_encoding"] = bytes(data)  # canonical, so identical to re-encoding
        return tx

    @cached_property
    def sighash(self) -> bytes:
        return tagged_hash("popchain/tx-sig", self.chain_id.encode(), pack_trusted(self.unsigned_fields()))

    @cached_property
    def txid(self) -> bytes:
        return tagged_hash("popchain/txid", self.encode())

    def verify_signature(self) -> bool:
        return verify_sig(self.sender, self.sighash, self.signature)

    def sig_item(self) -> tuple[bytes, bytes, bytes]:
        """(pubkey, message, signature) for chain.crypto.verify_many."""
        return (self.sender, self.sighash, self.signature)


def make_transfer(keypair: Keypair, chain_id: str, recipient: bytes, amount: int, fee: int, nonce: int,
                  memo: bytes = b"") -> Transfer:
    """Build and sign a transfer from ``keypair``. Raises DecodeError on out-of-range fields."""
    unsigned = Transfer(TX_VERSION, chain_id, keypair.public, recipient, amount, fee, nonce, memo, NO_SIGNATURE)
    signed = Transfer(TX_VERSION, chain_id, keypair.public, recipient, amount, fee, nonce, memo,
                      keypair.sign(unsigned.sighash))
    signed.encode()  # enforce the size cap now, not later at the receiver
    return signed
