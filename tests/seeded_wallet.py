"""A CLI wallet file holding make_test_chain's seeded keys (shared by the live ledger tests)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import nacl.pwhash

PASSWORD = "live test password"


def seeded_wallet(directory: Path, labels: tuple[str, ...] = ("miner0",)) -> list[str]:
    """Create ``directory/w.popkeys`` with the seeded keys ``labels`` (fast KDF); the CLI flags that open it."""
    from chain.wallet import Wallet
    (directory / "pw").write_text(PASSWORD + "\n")
    w = Wallet.create(directory / "w.popkeys", PASSWORD, opslimit=nacl.pwhash.argon2id.OPSLIMIT_MIN,
                      memlimit=nacl.pwhash.argon2id.MEMLIMIT_MIN)
    for label in labels:
        w.import_seed(hashlib.sha256(b"popchain/testing/" + label.encode()).digest(), label)
    return ["--wallet", str(directory / "w.popkeys"), "--password-file", str(directory / "pw")]
