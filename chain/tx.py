"""Signed transfers (PROTOCOL §2.1): canonical encoding, sighash, txid, signature check.

Decoding checks types and ranges of the encoding; rule checks that need ledger parameters (version, chain id,
minimum fee, amount ≥ 1) live in chain.state so the mempool and block validation share them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from chain.address import ACCOUNT_SIZE
from chain.crypto import Keypair, _tag_state, tagged_hash, verify_sig
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
        fields = unpack(data, max_size=MAX_TX_SIZE, typed=True)
        built = transfers_from_lists([fields], [bytes(data)], with_txid=False)
        if built is not None:
            return built[0]
        tx = cls.from_list(fields)  # raises the precise DecodeError
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


# ---------------------------------------------------------------- bulk construction (hot path)
#
# A canonical tx encoding is fixarray(9) ‖ 8 unsigned fields ‖ bin8(64) signature, so the encoding of the
# unsigned fields (what the sighash covers) is 0x98 ‖ encoding[1:-66]: sighash and txid come straight from the
# bytes, with the tag (and chain id) already absorbed into a copied sha256 state.

_SIG_TAIL = 2 + 64                  # bin8 header + signature, the last bytes of every tx encoding
_LEN_PREFIX = [n.to_bytes(4, "big") for n in range(MAX_TX_SIZE + 1)]
_UNSIGNED_PREFIX = [n.to_bytes(4, "big") + b"\x98" for n in range(MAX_TX_SIZE + 1)]
_TXID_STATE = _tag_state("popchain/txid")
_SIGHASH_STATES: dict[str, Any] = {}  # chain id -> sha256 state with tag and chain id absorbed


def _sighash_state(chain_id: str) -> Any:
    state = _SIGHASH_STATES.get(chain_id)
    if state is None:
        cid = chain_id.encode()
        state = _tag_state("popchain/tx-sig").copy()
        state.update(len(cid).to_bytes(4, "big") + cid)
        if len(_SIGHASH_STATES) < 64:
            _SIGHASH_STATES[chain_id] = state
    return state


def transfers_from_lists(raws: list[Any], encodings: list[bytes] | None = None, *,
                         with_txid: bool = True) -> list[Transfer] | None:
    """Transfers from decoded field lists, with encoding, sighash (and txid) precomputed: the same result as
    ``Transfer.from_list`` plus ``encode()``/``sighash``/``txid`` for each, in about a tenth of the time.

    ``encodings`` (optional) are the canonical bytes of each raw list, already known to the caller. Returns
    None if any item fails a check (the caller then takes the slow path, which raises the precise error), so
    this never decides what is valid on its own: it only accepts what the field checks would accept."""
    out: list[Transfer] = []
    append = out.append
    new = object.__new__
    pack = pack_trusted
    txid_copy = _TXID_STATE.copy
    len_prefix, unsigned_prefix = _LEN_PREFIX, _UNSIGNED_PREFIX
    chain_id: Any = None
    sig_copy = None
    max_amount, max_nonce, tx_cls = MAX_AMOUNT, MAX_NONCE, Transfer
    for i, raw in enumerate(raws):
        if type(raw) is not list or len(raw) != 9:
            return None
        version, cid, sender, recipient, amount, fee, nonce, memo, signature = raw
        if cid != chain_id:
            try:
                check_chain_id(cid)
            except DecodeError:
                return None
            chain_id, sig_copy = cid, _sighash_state(cid).copy
        if not (type(version) is int and 0 <= version <= MAX_VERSION
                and type(sender) is bytes and len(sender) == 32
                and type(recipient) is bytes and len(recipient) == ACCOUNT_SIZE
                and type(amount) is int and 0 <= amount <= max_amount
                and type(fee) is int and 0 <= fee <= max_amount
                and type(nonce) is int and 0 <= nonce <= max_nonce
                and type(memo) is bytes and len(memo) <= MAX_MEMO
                and type(signature) is bytes and len(signature) == 64):
            return None
        enc = pack(raw) if encodings is None else encodings[i]
        size = len(enc)
        if size > MAX_TX_SIZE:
            return None
        tx = new(tx_cls)
        d = tx.__dict__
        d["version"] = version
        d["chain_id"] = cid
        d["sender"] = sender
        d["recipient"] = recipient
        d["amount"] = amount
        d["fee"] = fee
        d["nonce"] = nonce
        d["memo"] = memo
        d["signature"] = signature
        d["_encoding"] = enc
        h = sig_copy()  # type: ignore[misc]
        h.update(unsigned_prefix[size - _SIG_TAIL] + enc[1:-_SIG_TAIL])
        d["sighash"] = h.digest()
        if with_txid:
            h = txid_copy()
            h.update(len_prefix[size] + enc)
            d["txid"] = h.digest()
        append(tx)
    return out


def make_transfer(keypair: Keypair, chain_id: str, recipient: bytes, amount: int, fee: int, nonce: int,
                  memo: bytes = b"") -> Transfer:
    """Build and sign a transfer from ``keypair``. Raises DecodeError on out-of-range fields."""
    unsigned = Transfer(TX_VERSION, chain_id, keypair.public, recipient, amount, fee, nonce, memo, NO_SIGNATURE)
    signed = Transfer(TX_VERSION, chain_id, keypair.public, recipient, amount, fee, nonce, memo,
                      keypair.sign(unsigned.sighash))
    signed.encode()  # enforce the size cap now, not later at the receiver
    return signed
