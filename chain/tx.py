"""Signed transfers (PROTOCOL §2.1): canonical encoding, sighash, txid, signature check.

Decoding checks types and ranges of the encoding; rule checks that need ledger parameters (version, chain id,
minimum fee, amount ≥ 1) live in chain.state so the mempool and block validation share them.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import msgpack

from chain.address import ACCOUNT_SIZE
from chain.crypto import Keypair, _tag_state, sig_opener, submit_chunks, verify_sig
from chain.encoding import (
    check_bytes,
    check_bytes_max,
    check_int,
    check_list,
    check_str,
    pack_trusted,
    unpack,
)
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
        return str(value)
    check_str(value, MAX_CHAIN_ID, name)
    if not value or not all(33 <= ord(c) <= 126 for c in value):
        raise DecodeError(f"{name}: must be 1-{MAX_CHAIN_ID} printable ASCII characters without spaces")
    text: str = value
    if len(_KNOWN_CHAIN_IDS) < 64:
        _KNOWN_CHAIN_IDS.add(text)
    return text


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
    # + caches in the instance dict, not fields: "_enc", "_sighash", "_txid" (encoding, sighash, txid), each
    # computed when first needed. Plain properties over dict entries: functools.cached_property would take
    # a lock on every first access, ~1 µs each, for 10,000 values per block.

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

    def encode(self) -> bytes:
        d = self.__dict__
        data = d.get("_enc")
        if data is None:
            data = pack_trusted(self.to_list())
            if len(data) > MAX_TX_SIZE:
                raise DecodeError(f"tx encodes to {len(data)} bytes, cap {MAX_TX_SIZE}")
            d["_enc"] = data
        return data

    @classmethod
    def from_list(cls, fields: Any) -> Transfer:
        f = check_list(fields, 9, "tx")
        return cls(*f)

    @classmethod
    def decode(cls, data: bytes) -> Transfer:
        tx = decode_trusted(data)
        if tx is not None:
            return tx
        fields = unpack(data, max_size=MAX_TX_SIZE, typed=True)  # raises the precise DecodeError
        tx = cls.from_list(fields)
        tx.__dict__["_enc"] = bytes(data)  # canonical, so identical to re-encoding
        return tx

    @property
    def sighash(self) -> bytes:
        """H("popchain/tx-sig", chain_id, encoding of the first 8 fields), taken from the encoding's bytes."""
        d = self.__dict__
        h = d.get("_sighash")
        if h is None:
            h = d["_sighash"] = sighash_of_encoding(self.chain_id, self.encode())
        return h

    @property
    def txid(self) -> bytes:
        """H("popchain/txid", encoding)."""
        d = self.__dict__
        h = d.get("_txid")
        if h is None:
            h = d["_txid"] = txid_of_encoding(self.encode())
        return h

    def verify_signature(self) -> bool:
        return verify_sig(self.sender, self.sighash, self.signature)

    def sig_item(self) -> tuple[bytes, bytes, bytes]:
        """(pubkey, message, signature) for chain.crypto.verify_many."""
        return (self.sender, self.sighash, self.signature)


# ---------------------------------------------------------------- hashing from bytes, trusted construction
#
# A transfer's encoding is fixarray(9) ‖ the 8 unsigned fields ‖ bin8(64) signature (every field has a
# fixed msgpack type, the signature is always 64 bytes), so the encoding of the unsigned fields — what
# PROTOCOL §2.1's sighash covers — is fixarray(8) = 0x98 ‖ encoding[1:-66]: no re-packing. The tag (and the
# chain id, the first hashed part) sit in copied sha256 states. tests/test_chain_txfast.py checks both
# against the packed form.

_SIG_TAIL = 2 + 64                  # bin8 header + signature, the last bytes of every tx encoding
_LEN_PREFIX = [n.to_bytes(4, "big") for n in range(MAX_TX_SIZE + 1)]
_UNSIGNED_PREFIX = [n.to_bytes(4, "big") + b"\x98" for n in range(MAX_TX_SIZE + 1)]
_TXID_STATE = _tag_state("popchain/txid", short=False)  # ~200-byte messages
_SIGHASH_STATES: dict[str, Any] = {}  # chain id -> sha256 state with tag and chain id absorbed
_unpackb = msgpack.unpackb   # without options its size limits default to len(data): no huge allocations
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_array_header = msgpack.Packer(use_bin_type=True).pack_array_header
_new = object.__new__


def _sighash_state(chain_id: str) -> Any:
    state = _SIGHASH_STATES.get(chain_id)
    if state is None:
        cid = chain_id.encode()
        state = _tag_state("popchain/tx-sig", short=False).copy()  # ~150-byte messages
        state.update(len(cid).to_bytes(4, "big") + cid)
        if len(_SIGHASH_STATES) < 64:
            _SIGHASH_STATES[chain_id] = state
    return state


def sighash_of_encoding(chain_id: str, encoding: bytes) -> bytes:
    """The sighash of the transfer whose canonical encoding is ``encoding`` (and chain id ``chain_id``)."""
    size = len(encoding)
    h = _sighash_state(chain_id).copy()
    h.update(_UNSIGNED_PREFIX[size - _SIG_TAIL] + encoding[1:-_SIG_TAIL])
    digest: bytes = h.digest()
    return digest


def txid_of_encoding(encoding: bytes) -> bytes:
    """H("popchain/txid", encoding) — the txid of the transfer with this canonical encoding."""
    h = _TXID_STATE.copy()
    h.update(_LEN_PREFIX[len(encoding)] + encoding)
    return h.digest()


def trusted_transfer(raw: Any, encoding: bytes) -> Transfer | None:
    """The Transfer of a decoded field list ``raw`` whose canonical bytes are ``encoding`` (the caller made
    sure of that), built without ``__init__``: the same type and range checks as ``__post_init__``, inline.
    Returns None if any check fails — the caller then takes the checked path, which raises the precise error —
    so this never accepts what ``Transfer.from_list`` would refuse. Sighash and txid stay lazy."""
    if type(raw) is not list or len(raw) != 9:
        return None
    version, cid, sender, recipient, amount, fee, nonce, memo, signature = raw
    if not (type(version) is int and 0 <= version <= MAX_VERSION
            and type(sender) is bytes and len(sender) == 32
            and type(recipient) is bytes and len(recipient) == ACCOUNT_SIZE
            and type(amount) is int and 0 <= amount <= MAX_AMOUNT
            and type(fee) is int and 0 <= fee <= MAX_AMOUNT
            and type(nonce) is int and 0 <= nonce <= MAX_NONCE
            and type(memo) is bytes and len(memo) <= MAX_MEMO
            and type(signature) is bytes and len(signature) == 64
            and len(encoding) <= MAX_TX_SIZE):
        return None
    if type(cid) is not str or cid not in _KNOWN_CHAIN_IDS:
        try:
            check_chain_id(cid)
        except DecodeError:
            return None
    tx = _new(Transfer)
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
    d["_enc"] = encoding
    return tx


def decode_trusted(data: Any) -> Transfer | None:
    """``Transfer.decode`` for well-formed input, or None when anything is off (then the checked decoder says
    what). Canonical because the fields re-pack to exactly ``data``."""
    if type(data) is not bytes or len(data) > MAX_TX_SIZE:
        return None
    try:
        raw = _unpackb(data)
    except Exception:  # noqa: BLE001 -- msgpack raises many types; the checked path turns them into DecodeError
        return None
    tx = trusted_transfer(raw, data)
    if tx is None or _packb(raw) != data:
        return None
    return tx


def decode_many_trusted(datas: Sequence[Any]) -> list[Transfer | None]:
    """``[decode_trusted(d) for d in datas]``, with one canonical check for all: re-packing every decoded
    field list at once must give the concatenation of the inputs. That implies each input is canonical on its
    own, because each one unpacked alone to exactly one object and msgpack is self-delimiting, so the two
    byte strings split into items at the same places. If the joint check fails, each is checked alone."""
    out: list[Transfer | None] = []
    append = out.append
    raws: list[Any] = []
    encodings: list[bytes] = []
    build, unpackb = trusted_transfer, _unpackb
    for data in datas:
        tx = None
        if type(data) is bytes and len(data) <= MAX_TX_SIZE:
            try:
                raw = unpackb(data)
            except Exception:  # noqa: BLE001 -- msgpack raises many types; the checked path turns them into DecodeError
                raw = None
            tx = build(raw, data)
            if tx is not None:
                raws.append(raw)
                encodings.append(data)
        append(tx)
    if raws and _packb(raws) != _array_header(len(raws)) + b"".join(encodings):
        for i, tx in enumerate(out):
            if tx is not None and _packb(tx.to_list()) != tx.encode():
                out[i] = None
    return out


def transfers_from_lists(raws: list[Any], encodings: list[bytes] | None = None, *,
                         hashes: bool = True) -> list[Transfer] | None:
    """Transfers from decoded field lists: the same result as ``Transfer.from_list`` for each, with the
    encoding set (``encodings``: the canonical bytes of each raw list, if the caller knows them) and, with
    ``hashes``, sighash and txid precomputed. Returns None if any item fails a check (the caller then takes
    the slow path, which raises the precise error)."""
    out: list[Transfer] = []
    append = out.append
    build = trusted_transfer
    for i, raw in enumerate(raws):
        enc = _packb(raw) if encodings is None else encodings[i]
        tx = build(raw, enc)
        if tx is None:
            return None
        if hashes:
            d = tx.__dict__
            d["_sighash"] = sighash_of_encoding(tx.chain_id, enc)
            d["_txid"] = txid_of_encoding(enc)
        append(tx)
    return out


def _verify_transfers_chunk(txs: Sequence[Transfer], offset: int) -> list[bool]:
    """Signature check of each tx; a sighash not yet known is computed right before its signature (a short
    hold of the GIL next to the libsodium call) and kept on the tx."""
    opener = sig_opener()  # safe: a Transfer's sender is 32 bytes and its signature 64 (checked when built)
    return [opener(tx.sender, tx.sighash, tx.signature) for tx in txs]


def submit_verify_transfers(txs: Sequence[Transfer], executor: Executor | None = None,
                            limit: list[int] | None = None) -> Callable[[], list[bool]]:
    """Start checking the signatures of ``txs`` on the verification pool (sighashes are computed there too);
    returns a callable that waits for the results in tx order. ``limit``: see chain.crypto.submit_chunks."""
    return submit_chunks(_verify_transfers_chunk, txs, executor, limit)


def make_transfer(keypair: Keypair, chain_id: str, recipient: bytes, amount: int, fee: int, nonce: int,
                  memo: bytes = b"") -> Transfer:
    """Build and sign a transfer from ``keypair``. Raises DecodeError on out-of-range fields."""
    unsigned = Transfer(TX_VERSION, chain_id, keypair.public, recipient, amount, fee, nonce, memo, NO_SIGNATURE)
    signed = Transfer(TX_VERSION, chain_id, keypair.public, recipient, amount, fee, nonce, memo,
                      keypair.sign(unsigned.sighash))
    signed.encode()  # enforce the size cap now, not later at the receiver
    return signed
