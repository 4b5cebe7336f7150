"""Commands that need no node (or refuse before asking one) and the command line's plumbing: wallet keys and
recovery phrases, genesis create's refusals, node run's configuration (file, environment, --print-config),
demo's argument checks, a closed stdout ending a command quietly, and the node log's rotation and JSON format."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_functional.helpers import covers
from tests.cli_net import Net, env
from tests.test_cli_e2e import ROOT, assert_one_line_error

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@covers("wallet new", "wallet restore", "wallet list", "wallet address")
def test_wallet_keys_and_recovery_phrase(net: Net, tmp_path: Path) -> None:
    listed = net.json("wallet", "list", *net.wallet)
    assert [k["label"] for k in listed] == ["me"]
    assert net.keys["alice"] in net.run("wallet", "list", *net.wallet).stdout
    assert net.run("wallet", "address", "me", *net.wallet).stdout.strip() == net.keys["alice"]
    assert_one_line_error(net.run("wallet", "address", "nobody", *net.wallet, check=False), "no key 'nobody'")
    pw = tmp_path / "pw"
    pw.write_text("another password\n")
    w = ["--wallet", str(tmp_path / "a.popkeys"), "--password-file", str(pw)]
    made = net.run("wallet", "new", "--label", "k", *w).stdout
    assert "recovery phrase:" in made and "wallet restore" in made and "SLIP-0010 ed25519 path m;" in made
    phrase = made.split("recovery phrase:")[1].strip().splitlines()[0].strip()
    assert len(phrase.split()) == 24
    (tmp_path / "phrase").write_text(phrase.upper() + "\n")        # case and spacing do not matter
    w2 = ["--wallet", str(tmp_path / "b.popkeys"), "--password-file", str(pw)]
    restored = net.json("wallet", "restore", "--phrase-file", str(tmp_path / "phrase"), "--label", "r", *w2)
    assert restored["address"] == net.json("wallet", "address", "k", *w)["address"]
    assert_one_line_error(net.run("wallet", "restore", *w2, stdin=phrase + "\n", check=False), "already in the wallet")
    # a rotated phrase whose checksum no longer holds (a rotation keeps a valid checksum 1 time in 256: try on)
    from mnemonic import Mnemonic
    words = phrase.split()
    bad_words = next(w for w in (words[i:] + words[:i] for i in range(1, 24))
                     if not Mnemonic("english").check(" ".join(w)))
    (tmp_path / "bad").write_text(" ".join(bad_words))
    assert_one_line_error(net.run("wallet", "restore", "--phrase-file", str(tmp_path / "bad"), *w2, check=False),
                          "checksum")
    # portable phrases: a SLIP-0010 path and a BIP-39 passphrase, both needed to get the same key back
    (tmp_path / "pp").write_text("a passphrase\n")
    path = "m/44'/9444'/0'"
    made = net.json("wallet", "new", "--label", "hd", "--path", path, "--passphrase-file", str(tmp_path / "pp"), *w)
    assert made["derivation"] == {"standard": "BIP-39 seed -> SLIP-0010 ed25519", "path": path, "passphrase": True}
    (tmp_path / "hdphrase").write_text(made["recovery_phrase"])
    w3 = ["--wallet", str(tmp_path / "c.popkeys"), "--password-file", str(pw), "--phrase-file",
          str(tmp_path / "hdphrase")]
    same = net.json("wallet", "restore", "--path", "m/44h/9444h/0h", "--passphrase-file", str(tmp_path / "pp"), *w3)
    assert same["address"] == made["address"] and same["path"] == path
    assert net.json("wallet", "restore", "--label", "x", *w3)["address"] != made["address"]   # no path, no passphrase
    assert_one_line_error(net.run("wallet", "new", "--path", "m/44/0", *w, check=False), "not hardened")
    assert_one_line_error(net.run("wallet", "restore", "--passphrase", *w3, check=False), "--passphrase-file")


def test_wallet_new_refuses_an_empty_password(net: Net, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    proc = net.run("wallet", "new", "--wallet", str(tmp_path / "x.popkeys"), "--password-file", str(empty),
                   check=False)
    assert_one_line_error(proc, "empty wallet password")
    assert not (tmp_path / "x.popkeys").exists()
    proc = net.run("wallet", "new", "--wallet", str(tmp_path / "x.popkeys"), check=False,
                   env=env(POPCHAIN_PASSWORD=""))
    assert_one_line_error(proc, "empty wallet password")


def test_genesis_create_refusals(net: Net, tmp_path: Path) -> None:
    made = net.run("genesis", "create", "--task", "iris", "--label-column", "label", "--out", str(tmp_path / "g"),
                   "--detect", "0.2", "--alloc", f"{net.keys['bob']}=5", "--chain-id", "popchain-other",
                   "--entry-window", "2", "--opening-window", "3", "--drift-milli", "0", "--rounds", "2",
                   "--shard-size", "20")
    assert "genesis hash" in made.stdout and "keyholder file" in made.stdout and "detects" in made.stdout
    assert made.stderr.startswith("popchain: warning:")      # a public dataset: said so, still created
    # --bond funds a miner's bond account (its stake, PROTOCOL §3.9) in genesis; the plain --alloc above got the
    # default starter bonds
    from chain.address import decode_address
    from consensus.protocol.genesis import load_genesis
    from consensus.protocol.settlement import bond_account
    bob = decode_address(net.keys["bob"])
    alloc = dict(load_genesis((tmp_path / "g" / "genesis.bin").read_bytes()).allocations)
    assert alloc[bond_account(bob)] > 0
    bonded = net.run("genesis", "create", "--task", "iris", "--label-column", "label", "--out", str(tmp_path / "b"),
                     "--detect", "0.2", "--alloc", f"{net.keys['bob']}=5", "--bond", f"{net.keys['bob']}=7",
                     "--rounds", "2", "--shard-size", "20")
    assert "genesis hash" in bonded.stdout
    assert dict(load_genesis((tmp_path / "b" / "genesis.bin").read_bytes()).allocations)[bond_account(bob)] == 7
    assert_one_line_error(net.run("genesis", "create", "--out", str(tmp_path / "n"), check=False), "--alloc")
    assert_one_line_error(net.run("genesis", "create", "--out", str(tmp_path / "g"), "--alloc",
                                  f"{net.keys['bob']}=5", check=False), "already exists")
    assert_one_line_error(net.run("genesis", "create", "--alloc", "nonsense", "--out", str(tmp_path / "h"),
                                  check=False), "ADDRESS=AMOUNT")


@covers("node run")
def test_node_config_file_env_and_print_config(net: Net, tmp_path: Path) -> None:
    d = tmp_path / "cfg"
    d.mkdir()
    (d / "popchain.toml").write_text('port = 7001\napi_port = 7002\npeers = ["10.0.0.1:9444"]\nlog_level = "debug"\n')
    e = env(POPCHAIN_API_PORT="7003", POPCHAIN_DISCOVER="true", POPCHAIN_PASSWORD="not a node setting")
    out = net.run("node", "run", "--datadir", str(d), "--print-config", "--log-level", "WARNING", "--peer",
                  "10.0.0.2:9444", "--listen", "0.0.0.0", "--api-listen", "127.0.0.1", "--discovery-interface",
                  "127.0.0.1", "--log-format", "json", env=e).stdout
    lines = {ln.split(" = ")[0]: ln for ln in out.splitlines() if " = " in ln}
    assert "7001" in lines["port"] and "popchain.toml" in lines["port"]
    assert "7003" in lines["api_port"] and "environment" in lines["api_port"]
    assert '"WARNING"' in lines["log_level"] and "command line" in lines["log_level"]
    assert "10.0.0.1:9444" in lines["peers"] and "10.0.0.2:9444" in lines["peers"]
    assert "true" in lines["discover"] and "environment" in lines["discover"]
    assert '"json"' in lines["log_format"] and "default" in lines["log_backups"]
    import tomllib
    assert tomllib.loads(out)["port"] == 7001            # the printout is itself a valid config file
    other = tmp_path / "other.toml"
    other.write_text("max_inbound = 3\n")
    shown = net.run("node", "run", "--datadir", str(d), "--config", str(other), "--discover", "--print-config").stdout
    assert "max_inbound = 3" in shown and "port = 9444" in shown      # --config replaces the datadir's file
    (d / "popchain.toml").write_text("prot = 1\n")
    assert_one_line_error(net.run("node", "run", "--datadir", str(d), "--print-config", check=False), "'prot'")
    (d / "popchain.toml").write_text("port = 1\n")
    assert_one_line_error(net.run("node", "run", "--datadir", str(d), "--print-config", check=False,
                                  env=env(POPCHAIN_MAX_OUTBOUND="many")), "POPCHAIN_MAX_OUTBOUND")
    assert_one_line_error(net.run("node", "run", "--datadir", str(d), "--config", str(tmp_path / "none.toml"),
                                  check=False), "does not exist")
    (d / "popchain.toml").write_text("port = [\n")
    assert_one_line_error(net.run("node", "run", "--datadir", str(d), check=False), "not valid TOML")


def test_demo_arguments_are_checked(net: Net) -> None:
    # the demo itself runs in test_cli_e2e.py (a whole network); its argument checks are one-line errors
    assert_one_line_error(net.run("demo", "--nodes", "0", "--keep", check=False), "--nodes")
    assert_one_line_error(net.run("demo", "--rounds", "0", "--dir", "x", check=False), "--rounds")


def test_a_closed_stdout_ends_quietly(net: Net) -> None:
    for args in (["--help"], ["wallet", "list", *net.wallet], ["chain", "info", *net.node]):
        proc = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=net.dir, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env())
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(60) in ((0, 141) if args == ["--help"] else (141,)) and err == "", (args, err)
    proc = subprocess.run(f"'{sys.executable}' -m cli genesis create --help | head -c 10", shell=True, cwd=ROOT,
                          capture_output=True, text=True, env=env(), timeout=60, check=False)
    assert proc.stdout == "usage: pop" and proc.stderr == ""


def test_node_log_rotates_and_is_json(tmp_path: Path) -> None:
    import logging

    from node.__main__ import setup_logging
    from node.config import NodeConfig
    cfg = NodeConfig(datadir=tmp_path, log_max_bytes=4096, log_backups=2, log_to_stderr=False, log_format="json")
    setup_logging(cfg)
    log = logging.getLogger("popchain.test")
    try:
        for i in range(400):
            log.info("line %d %s", i, "x" * 40)
    finally:
        for h in list(logging.getLogger("popchain").handlers):
            if getattr(h, "baseFilename", "").startswith(str(tmp_path)):
                logging.getLogger("popchain").removeHandler(h)
                h.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.log", "node.log.1", "node.log.2"]
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())
    assert {"ts", "level", "logger", "msg"} <= json.loads((tmp_path / "node.log").read_text().splitlines()[0]).keys()
