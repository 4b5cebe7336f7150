"""Wallet keyfile: encryption, wrong password, file mode 0600, atomic writes, transfers."""
from __future__ import annotations

import os
import stat

import pytest

from chain.address import address_of, encode_address
from chain.errors import WalletError
from chain.wallet import Wallet

FAST = {"opslimit": 1, "memlimit": 8192}  # argon2id minimums: the tests exercise the format, not the cost


def test_create_load_and_sign(tmp_path):
    path = tmp_path / "w.popkeys"
    w = Wallet.create(path, "pw", **FAST)
    k1, k2 = w.new_key("alice"), w.new_key("bob")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    w2 = Wallet.load(path, "pw")
    assert w2.keys() == [k1, k2]
    assert w2.keypair("alice").public == k1.public
    assert w2.keypair(encode_address(k2.account)).public == k2.public
    tx = w2.transfer(k1.account, "c", k2.account, 5, 1000, 3, b"hi")
    assert tx.verify_signature() and tx.nonce == 3 and address_of(tx.sender) == k1.account
    with pytest.raises(WalletError):
        w2.keypair(bytes(20))


def test_wrong_password_and_damaged_file(tmp_path):
    path = tmp_path / "w.popkeys"
    Wallet.create(path, "right", **FAST).new_key("a")
    with pytest.raises(WalletError, match="wrong password"):
        Wallet.load(path, "wrong")
    path.write_bytes(b"\x00garbage")
    with pytest.raises(WalletError):
        Wallet.load(path, "right")
    with pytest.raises(WalletError):
        Wallet.load(tmp_path / "missing", "right")
    with pytest.raises(WalletError):
        Wallet.create(path, "x", **FAST)


def test_default_kdf_cost(tmp_path):
    path = tmp_path / "w.popkeys"
    Wallet.create(path, "pw").new_key("a")
    assert len(Wallet.load(path, "pw").keys()) == 1


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "w.popkeys"
    w = Wallet.create(path, "pw", **FAST)
    w.new_key("a")
    before = path.read_bytes()

    def boom(*args):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        w.new_key("b")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.popkeys"]  # no temp file left behind
    assert [k.label for k in Wallet.load(path, "pw").keys()] == ["a"]
