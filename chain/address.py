"""Account ids and their bech32m text form (hrp "pop": ``pop1…``), per PROTOCOL §1."""
from __future__ import annotations

from chain.crypto import _tag_state
from chain.errors import DecodeError

HRP = "pop"
ACCOUNT_SIZE = 20
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHAR_INDEX = {c: i for i, c in enumerate(_CHARSET)}
_BECH32M_CONST = 0x2BC830A3
MAX_ADDRESS_LEN = 90


_ADDRESS_STATE = _tag_state("popchain/address")


def address_of(pubkey: bytes) -> bytes:
    """The 20-byte account id of an Ed25519 public key: H("popchain/address", pubkey)[:20]."""
    h = _ADDRESS_STATE.copy()  # = tagged_hash without its generic loop (called once per tx sender)
    h.update(len(pubkey).to_bytes(4, "big"))
    h.update(pubkey)
    return h.digest()[:ACCOUNT_SIZE]


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int] | None:
    acc = bits = 0
    out = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & maxv):
        return None  # leftover padding must be short and zero: otherwise two strings decode to one id
    return out


def encode_address(account: bytes) -> str:
    """``pop1…`` bech32m text of a 20-byte account id."""
    if type(account) is not bytes or len(account) != ACCOUNT_SIZE:
        raise ValueError("an account id is 20 bytes")
    data = _convert_bits(account, 8, 5, True)
    assert data is not None
    polymod = _polymod(_hrp_expand(HRP) + data + [0] * 6) ^ _BECH32M_CONST
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return HRP + "1" + "".join(_CHARSET[d] for d in data + checksum)


def decode_address(text: str) -> bytes:
    """The 20-byte account id in a ``pop1…`` address; DecodeError says what is wrong."""
    if not isinstance(text, str):
        raise DecodeError("address must be a string")
    if len(text) > MAX_ADDRESS_LEN:
        raise DecodeError("address too long")
    if text.lower() != text and text.upper() != text:
        raise DecodeError("address mixes upper and lower case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or text[:pos] != HRP:
        raise DecodeError(f"address must start with '{HRP}1'")
    try:
        values = [_CHAR_INDEX[c] for c in text[pos + 1:]]
    except KeyError as exc:
        raise DecodeError(f"address contains an invalid character {exc.args[0]!r}") from None
    if len(values) < 6:
        raise DecodeError("address too short")
    if _polymod(_hrp_expand(HRP) + values) != _BECH32M_CONST:
        raise DecodeError("address checksum mismatch (mistyped?)")
    account = _convert_bits(values[:-6], 5, 8, False)
    if account is None or len(account) != ACCOUNT_SIZE:
        raise DecodeError("address does not hold a 20-byte account id")
    return bytes(account)
