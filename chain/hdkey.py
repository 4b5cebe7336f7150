"""SLIP-0010 key derivation for Ed25519 (https://github.com/satoshilabs/slips/blob/master/slip-0010.md).

Does: parse a derivation path (``m``, ``m/44'/9444'/0'``; ``'``, ``h`` or ``H`` mark a hardened index), and
derive the (private key, chain code) of a path from a BIP-39 seed: the master key is HMAC-SHA512 keyed
``"ed25519 seed"`` over the seed, each child HMAC-SHA512 keyed by the parent chain code over
``0x00 || key || ser32(index)``. Ed25519 has only hardened children, so an unhardened index is refused rather than
silently hardened. The private key is the Ed25519 seed (RFC 8032) of the key pair.

Does not: BIP-39 (chain.wallet uses the ``mnemonic`` package for phrases and seeds), public-key derivation, or
extended-key serialisation (xprv strings).
"""
from __future__ import annotations

import hashlib
import hmac

from chain.errors import WalletError

HARDENED = 0x8000_0000
MAX_DEPTH = 32                 # far deeper than any wallet uses; bounds the work a typo can cause
DEFAULT_PATH = "m"             # the master key: what every phrase made before paths existed derives to
MASTER_KEY = b"ed25519 seed"


def parse_path(text: str) -> tuple[int, ...]:
    """The child indexes of a path, hardened (``m`` -> ()). WalletError for anything else."""
    parts = text.strip().split("/")
    if parts[0] != "m":
        raise WalletError(f"derivation path {text!r}: must start with 'm' (e.g. m or m/44'/9444'/0')")
    if len(parts) - 1 > MAX_DEPTH:
        raise WalletError(f"derivation path {text!r}: deeper than {MAX_DEPTH} levels")
    out = []
    for part in parts[1:]:
        if part[-1:] not in ("'", "h", "H"):
            raise WalletError(f"derivation path {text!r}: level {part!r} is not hardened; Ed25519 (SLIP-0010) "
                              f"has hardened children only: write {part}'")
        number = part[:-1]
        if not number.isdigit() or int(number) >= HARDENED:
            raise WalletError(f"derivation path {text!r}: {part!r} is not an index 0..{HARDENED - 1}")
        out.append(int(number) + HARDENED)
    return tuple(out)


def format_path(indexes: tuple[int, ...]) -> str:
    """The canonical text of a path (``'`` for hardened)."""
    return "/".join(["m", *(f"{i - HARDENED}'" for i in indexes)])


def master_key(seed: bytes) -> tuple[bytes, bytes]:
    """(private key, chain code) of the master node of ``seed`` (16..64 bytes: BIP-39 seeds are 64)."""
    if not 16 <= len(seed) <= 64:
        raise WalletError(f"a SLIP-0010 seed has 16 to 64 bytes, got {len(seed)}")
    digest = hmac.new(MASTER_KEY, seed, hashlib.sha512).digest()
    return digest[:32], digest[32:]


def child_key(key: bytes, chain_code: bytes, index: int) -> tuple[bytes, bytes]:
    """(private key, chain code) of hardened child ``index`` (>= 2^31) of a node."""
    if index < HARDENED:
        raise WalletError("Ed25519 (SLIP-0010) derives hardened children only")
    digest = hmac.new(chain_code, b"\x00" + key + index.to_bytes(4, "big"), hashlib.sha512).digest()
    return digest[:32], digest[32:]


def derive(seed: bytes, path: str | tuple[int, ...] = DEFAULT_PATH) -> tuple[bytes, bytes]:
    """(private key = Ed25519 seed, chain code) of ``path`` under ``seed``."""
    indexes = parse_path(path) if isinstance(path, str) else path
    key, chain_code = master_key(seed)
    for index in indexes:
        key, chain_code = child_key(key, chain_code, index)
    return key, chain_code
