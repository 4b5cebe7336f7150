"""Encrypted keyfile: Ed25519 seeds sealed with SecretBox under an argon2id (nacl.pwhash) key.

File = canonical msgpack ``[version=1, salt:bin16, opslimit, memlimit, box:bin]``; the box holds
``[[label, seed32], …]``. Written atomically (temp file in the same directory, fsync, rename), mode 0600.

Recovery phrases: a new key's Ed25519 seed is derived from a 24-word BIP-39 phrase (``mnemonic`` package,
English list, checksum checked): BIP-39 seed (PBKDF2-HMAC-SHA512 over the phrase and an optional BIP-39
passphrase, default "") -> the SLIP-0010 ed25519 key at a derivation path (chain.hdkey; default ``m``, the master
key, which every phrase made before paths existed derives to). Phrase + passphrase + path always rebuild the same
key, in popchain or any SLIP-0010 wallet; the phrase and the passphrase are never stored.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from chain.address import address_of, decode_address, encode_address
from chain.crypto import Keypair
from chain.encoding import (
    check_bytes,
    check_bytes_max,
    check_int,
    check_list,
    check_list_max,
    check_str,
    pack,
    unpack,
)
from chain.errors import DecodeError, WalletError
from chain.hdkey import DEFAULT_PATH, derive
from chain.tx import Transfer, make_transfer

WALLET_VERSION = 1
MAX_KEYS = 10_000
MAX_LABEL = 64
MAX_WALLET_SIZE = 4 * 2**20
DEFAULT_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
DEFAULT_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
# a hostile keyfile must not make us burn minutes or gigabytes before the password check
MAX_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE
MAX_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE


@dataclass(frozen=True)
class WalletKey:
    label: str
    account: bytes
    public: bytes

    @property
    def address(self) -> str:
        return encode_address(self.account)


PHRASE_WORDS = 24


def new_phrase() -> str:
    """A fresh 24-word BIP-39 phrase (256 bits of entropy from the OS)."""
    from mnemonic import Mnemonic
    return Mnemonic("english").generate(strength=256)


def normalise_phrase(phrase: str) -> str:
    return " ".join(phrase.lower().split())


def bip39_seed(phrase: str, passphrase: str = "") -> bytes:
    """The 64-byte BIP-39 seed of a phrase (checked first: WalletError for an unknown word, a wrong length or
    checksum) and an optional BIP-39 passphrase (NFKD-normalised by ``mnemonic``, as BIP-39 says)."""
    from mnemonic import Mnemonic
    words = normalise_phrase(phrase)
    m = Mnemonic("english")
    if len(words.split()) not in (12, 15, 18, 21, 24):
        raise WalletError(f"a recovery phrase has 12-24 words, got {len(words.split())}")
    unknown = [w for w in words.split() if w not in m.wordlist]
    if unknown:
        raise WalletError(f"not a BIP-39 word: {unknown[0]!r}")
    if not m.check(words):
        raise WalletError("recovery phrase checksum does not match (a word is wrong or out of order)")
    return Mnemonic.to_seed(words, passphrase=passphrase)


def seed_from_phrase(phrase: str, passphrase: str = "", path: str = DEFAULT_PATH) -> bytes:
    """The 32-byte Ed25519 seed of a BIP-39 phrase: the SLIP-0010 ed25519 private key at ``path`` (default
    ``m``) of the phrase's BIP-39 seed under ``passphrase``. WalletError for a bad phrase or path."""
    return derive(bip39_seed(phrase, passphrase), path)[0]


def slip10_ed25519_master(bip39_seed_bytes: bytes) -> bytes:
    """The SLIP-0010 ed25519 master private key (path ``m``) of a seed."""
    return derive(bip39_seed_bytes, "m")[0]


def _derive(password: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, password.encode(), salt,
                                    opslimit=opslimit, memlimit=memlimit)


class Wallet:
    """Keys in memory after a successful load; every change is saved at once."""

    def __init__(self, path: Path, key: bytes, salt: bytes, opslimit: int, memlimit: int,
                 entries: list[tuple[str, Keypair]]) -> None:
        self.path = path
        self._key, self._salt, self._ops, self._mem = key, salt, opslimit, memlimit
        self._entries = entries

    @classmethod
    def create(cls, path: Path | str, password: str, *, opslimit: int = DEFAULT_OPSLIMIT,
               memlimit: int = DEFAULT_MEMLIMIT) -> Wallet:
        path = Path(path)
        if path.exists():
            raise WalletError(f"{path} already exists")
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        wallet = cls(path, _derive(password, salt, opslimit, memlimit), salt, opslimit, memlimit, [])
        wallet._save()
        return wallet

    @classmethod
    def load(cls, path: Path | str, password: str) -> Wallet:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise WalletError(f"cannot read wallet {path}: {exc.strerror}") from None
        try:
            f = check_list(unpack(data, max_size=MAX_WALLET_SIZE), 5, "wallet")
            check_int(f[0], WALLET_VERSION, WALLET_VERSION, "wallet.version")
            salt = check_bytes(f[1], nacl.pwhash.argon2id.SALTBYTES, "wallet.salt")
            ops = check_int(f[2], nacl.pwhash.argon2id.OPSLIMIT_MIN, MAX_OPSLIMIT, "wallet.opslimit")
            mem = check_int(f[3], nacl.pwhash.argon2id.MEMLIMIT_MIN, MAX_MEMLIMIT, "wallet.memlimit")
            box = check_bytes_max(f[4], MAX_WALLET_SIZE, "wallet.box")
        except DecodeError as exc:
            raise WalletError(f"{path} is not a popchain wallet: {exc}") from None
        key = _derive(password, salt, ops, mem)
        try:
            plain = nacl.secret.SecretBox(key).decrypt(box)
        except nacl.exceptions.CryptoError:
            raise WalletError("wrong password (or the wallet file is damaged)") from None
        try:
            raw = check_list_max(unpack(plain, max_size=MAX_WALLET_SIZE), MAX_KEYS, "wallet.keys")
            entries = []
            for item in raw:
                label, seed = check_list(item, 2, "wallet.key")
                entries.append((check_str(label, MAX_LABEL, "label"), Keypair(check_bytes(seed, 32, "seed"))))
        except DecodeError as exc:
            raise WalletError(f"wallet contents are damaged: {exc}") from None
        return cls(path, key, salt, ops, mem, entries)

    def _save(self) -> None:
        plain = pack([[label, kp.seed] for label, kp in self._entries])
        box = bytes(nacl.secret.SecretBox(self._key).encrypt(plain))
        data = pack([WALLET_VERSION, self._salt, self._ops, self._mem, box])
        directory = self.path.parent if str(self.path.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)  # atomic: readers see the old file or the new one, never half
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def new_key(self, label: str = "") -> WalletKey:
        if len(self._entries) >= MAX_KEYS:
            raise WalletError(f"wallet holds the maximum of {MAX_KEYS} keys")
        if len(label.encode()) > MAX_LABEL:
            raise WalletError(f"label longer than {MAX_LABEL} bytes")
        kp = Keypair.generate()
        self._entries.append((label, kp))
        self._save()
        return WalletKey(label, address_of(kp.public), kp.public)

    def new_key_with_phrase(self, label: str = "", *, passphrase: str = "",
                            path: str = DEFAULT_PATH) -> tuple[WalletKey, str]:
        """A new key derived from a fresh recovery phrase (with an optional BIP-39 passphrase, at a SLIP-0010
        path); returns (key, phrase) — show the phrase once."""
        phrase = new_phrase()
        return self.import_seed(seed_from_phrase(phrase, passphrase, path), label), phrase

    def import_phrase(self, phrase: str, label: str = "", *, passphrase: str = "",
                      path: str = DEFAULT_PATH) -> WalletKey:
        return self.import_seed(seed_from_phrase(phrase, passphrase, path), label)

    def import_seed(self, seed: bytes, label: str = "") -> WalletKey:
        if len(label.encode()) > MAX_LABEL:
            raise WalletError(f"label longer than {MAX_LABEL} bytes")
        kp = Keypair(seed)
        if any(k.public == kp.public for _, k in self._entries):
            raise WalletError("key already in the wallet")
        self._entries.append((label, kp))
        self._save()
        return WalletKey(label, address_of(kp.public), kp.public)

    def keys(self) -> list[WalletKey]:
        return [WalletKey(label, address_of(kp.public), kp.public) for label, kp in self._entries]

    def keypair(self, address: bytes | str) -> Keypair:
        """The keypair for an account id (20 B), a ``pop1…`` address, or a label."""
        account = address
        if isinstance(address, str):
            for label, kp in self._entries:
                if label and label == address:
                    return kp
            try:
                account = decode_address(address)
            except DecodeError as exc:
                raise WalletError(f"not a label or address in this wallet: {exc}") from None
        for _, kp in self._entries:
            if address_of(kp.public) == account:
                return kp
        raise WalletError("no such key in this wallet")

    def transfer(self, sender: bytes | str, chain_id: str, recipient: bytes, amount: int, fee: int, nonce: int,
                 memo: bytes = b"") -> Transfer:
        """Build and sign a transfer from ``sender`` with the given next nonce (the account's current nonce)."""
        try:
            return make_transfer(self.keypair(sender), chain_id, recipient, amount, fee, nonce, memo)
        except DecodeError as exc:
            raise WalletError(f"bad transfer: {exc}") from None
