"""In-process checks of the CLI's building blocks: recovery-phrase derivation vectors, node config resolution
(precedence, sources, refusals naming the key), the client's retry against a real closed port."""
from __future__ import annotations

import argparse
import asyncio
import socket
from pathlib import Path

import pytest

from chain.errors import WalletError
from chain.wallet import Wallet, seed_from_phrase, slip10_ed25519_master
from node.config import add_node_run_arguments, describe, resolve
from node.errors import NodeError

ZERO_PHRASE = " ".join(["abandon"] * 23 + ["art"])     # BIP-39: 256 zero bits of entropy


def test_phrase_vectors() -> None:
    from mnemonic import Mnemonic
    # BIP-39 reference vector (12 words, passphrase TREZOR) and SLIP-0010 ed25519 test vector 1 (master key)
    assert Mnemonic.to_seed(" ".join(["abandon"] * 11 + ["about"]), "TREZOR").hex().startswith("c55257c360c07c72029a")
    assert slip10_ed25519_master(bytes.fromhex("000102030405060708090a0b0c0d0e0f")).hex() == \
        "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7"
    assert seed_from_phrase(ZERO_PHRASE).hex() == "675f1956184972dd0353022d431c6417e8acdce50204de234fd8df9323d152f6"
    assert seed_from_phrase("  " + ZERO_PHRASE.upper().replace(" ", "\n ") + "\n") == seed_from_phrase(ZERO_PHRASE)


def test_same_phrase_same_address(tmp_path: Path) -> None:
    a = Wallet.create(tmp_path / "a", "pw", opslimit=1, memlimit=8 * 2**20)
    key, phrase = a.new_key_with_phrase("k")
    b = Wallet.create(tmp_path / "b", "pw", opslimit=1, memlimit=8 * 2**20)
    assert b.import_phrase(phrase, "r").address == key.address
    assert b.import_phrase(ZERO_PHRASE).address == "pop19u32qyanjk25d4ny7zqtxxfgzq4vld66lm9m3y"
    for bad, frag in ((ZERO_PHRASE.replace("art", "abandon"), "checksum"), ("abandon " * 5, "12-24 words"),
                      (ZERO_PHRASE.replace("art", "artx"), "not a BIP-39 word")):
        with pytest.raises(WalletError, match=frag):
            seed_from_phrase(bad)


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_node_run_arguments(p)
    return p.parse_args(list(argv))


def test_config_precedence_and_sources(tmp_path: Path) -> None:
    (tmp_path / "popchain.toml").write_text('port = 1000\napi_port = 1001\nlisten = "0.0.0.0"\n'
                                            'genesis = "g/genesis.bin"\npeers = ["a:1"]\n')
    cfg, src = resolve(_args("--datadir", str(tmp_path), "--port", "3000", "--peer", "b:2"),
                       env={"POPCHAIN_API_PORT": "2001", "POPCHAIN_PORT": "2000", "POPCHAIN_NODE": "x"})
    assert (cfg.port, cfg.api_port, cfg.listen) == (3000, 2001, "0.0.0.0")
    assert cfg.genesis == tmp_path / "g/genesis.bin"        # relative to the config file's directory
    assert cfg.peers == (("a", 1), ("b", 2))
    assert src["port"] == "command line" and src["api_port"] == "environment" and src["max_inbound"] == "default"
    assert src["listen"].endswith("popchain.toml")
    assert any(line.startswith("port = 3000") for line in describe(cfg, src))


@pytest.mark.parametrize("text,fragment", [
    ("bogus = 1\n", "'bogus'"), ('port = "9"\n', "port: expected an integer"), ("port = true\n", "port"),
    ("port = 70000\n", "port: 70000 is outside"), ('log_level = "LOUD"\n', "log_level"),
    ('peers = "a:1"\n', "peers"), ('peers = ["nohost"]\n', "peers"), ("discover = 1\n", "discover"),
    ("[section]\nport = 1\n", "'section'"), ("port = \n", "not valid TOML"),
])
def test_config_refusals_name_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "popchain.toml").write_text(text)
    with pytest.raises(NodeError, match=fragment.replace("(", r"\(")):
        resolve(_args("--datadir", str(tmp_path)), env={})


def test_env_values_are_checked(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="POPCHAIN_PORT: port"):
        resolve(_args("--datadir", str(tmp_path)), env={"POPCHAIN_PORT": "x"})
    cfg, _ = resolve(_args("--datadir", str(tmp_path)), env={"POPCHAIN_DISCOVER": "yes", "POPCHAIN_PEERS": "h:1,i:2"})
    assert cfg.discover and cfg.peers == (("h", 1), ("i", 2))


def test_legacy_config_json_is_validated_too(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"port": 5, "colour": "red"}')
    with pytest.raises(NodeError, match="'colour'"):
        resolve(_args("--datadir", str(tmp_path)), env={})


def test_client_retries_then_gives_up_with_one_status_line() -> None:
    import aiohttp

    from node.tools.client import NodeClient
    with socket.socket() as s:       # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        lines: list[str] = []

        async def go() -> None:
            async with NodeClient(f"http://127.0.0.1:{port}", retry_s=1.0, on_retry=lines.append) as c:
                with pytest.raises(aiohttp.ClientConnectionError):
                    await c.status()
        asyncio.run(go())
    assert len(lines) == 1 and "retrying for up to 1 s" in lines[0]
