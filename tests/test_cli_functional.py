"""Every `popchain` leaf command and documented flag, run as a subprocess against ONE real network shared by the
module (a keyholder node + a forest miner on 127.0.0.1): human output, --json output, exit codes, and each error
path as one line on stderr without a traceback. The walker tests at the end fail if a leaf command of cli's
argparse tree has no functional test here (the ``covers`` registry) or an option appears in no test.

The last test restarts the node under a running miner and a waiting `wallet send`: both ride it out.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli_e2e import ROOT, _get_json, assert_one_line_error, ports_of

pytestmark = pytest.mark.slow
PASSWORD = "functional suite password"
COVERED: dict[str, list[str]] = {
    # heavy commands run once in test_cli_e2e.py (kept out of this module's time budget)
    "demo": ["tests/test_cli_e2e.py::test_demo_runs_and_leaves_no_process"],
    "bench": ["tests/test_cli_e2e.py::test_bench_quick_json_emits_every_figure"],
    # the task commands run on their own networks (a chain that runs out of work, then lives on)
    "task create": ["tests/test_living_chain.py::test_task_runs_out_then_a_new_task_revives_the_chain_and_the_"
                    "pending_send_confirms", "tests/test_task_cli.py::test_cli_create_and_sign_only_offline"],
    "task announce": ["tests/test_living_chain.py::test_task_runs_out_then_a_new_task_revives_the_chain_and_the_"
                      "pending_send_confirms", "tests/test_task_cli.py::test_cli_create_and_sign_only_offline"],
    "task extend": ["tests/test_living_chain.py::test_an_extension_adds_rounds_to_a_live_task",
                    "tests/test_task_end.py::test_task_extend_of_a_rows_task_takes_new_rows"],
    "task list": ["tests/test_task_end.py::test_task_list_and_show_say_closed"],
    "task show": ["tests/test_task_end.py::test_task_list_and_show_say_closed"],
}
OTHER_CLI_TESTS = ("tests/test_cli_e2e.py", "tests/test_living_chain.py", "tests/test_task_end.py",
                   "tests/test_task_cli.py")


def covers(*commands: str) -> Callable:
    def mark(fn: Callable) -> Callable:
        for c in commands:
            COVERED.setdefault(c, []).append(fn.__name__)
        return fn
    return mark


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POPCHAIN_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class Net:
    dir: Path
    url: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    genesis_out: dict[str, Any] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True, timeout: float = 300, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "cli", *args], cwd=self.dir, capture_output=True, text=True,
                              timeout=timeout, env=env or _env(), input=stdin)
        assert "Traceback" not in proc.stderr, proc.stderr
        if check and proc.returncode != 0:
            raise AssertionError(f"popchain {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.run(*args, "--json", **kw).stdout)

    @property
    def wallet(self) -> list[str]:
        return ["--wallet", str(self.dir / "w.popkeys"), "--password-file", str(self.dir / "pw")]

    @property
    def node(self) -> list[str]:
        return ["--node", self.url]

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = (self.dir / f"{name}.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=self.dir, stdout=log,
                                stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def node_args(self, *extra: str) -> list[str]:
        return ["node", "run", "--datadir", str(self.dir / "kh"), "--genesis", str(self.dir / "chain/genesis.bin"),
                "--keyholder", str(self.dir / "chain/keyholder.secret"), *extra]

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                if predicate():
                    return
            for name, p in self.procs.items():
                assert p.poll() is None, f"{name} exited early:\n{self.log(name)[-3000:]}"
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def status(self) -> dict:
        return _get_json(f"{self.url}/api/status")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    n = Net(tmp_path_factory.mktemp("cli-functional"))
    (n.dir / "pw").write_text(PASSWORD + "\n")
    # the shared wallet uses a light KDF (opened by ~40 commands); `wallet new` itself is tested on others
    from chain.wallet import Wallet
    shared = Wallet.create(n.dir / "w.popkeys", PASSWORD, opslimit=1, memlimit=8 * 2**20)
    for label in ("alice", "miner"):
        n.keys[label] = shared.new_key_with_phrase(label)[0].address
    bob = ["--wallet", str(n.dir / "bob.popkeys"), "--password-file", str(n.dir / "pw")]
    n.keys["bob"] = n.json("wallet", "new", "--label", "bob", *bob)["address"]
    n.genesis_out = n.json("genesis", "create", "--task", "synthetic", "--out", "chain", "--rounds", "100",
                           "--shard-size", "100", "--alloc", f"{n.keys['alice']}=1000000000",
                           "--alloc", f"{n.keys['miner']}=1000000000", "--chain-id", "popchain-functional",
                           "--entry-window", "2", "--opening-window", "3", "--drift-milli", "0")
    kh = n.dir / "kh"
    kh.mkdir()
    # the node's own config file: rotate node.log early so the suite sees a rotation happen in a real run
    (kh / "popchain.toml").write_text('log_max_bytes = 4096\nlog_backups = 2\nlog_format = "json"\n')
    node = n.spawn("node", n.node_args("--port", "0", "--api-port", "0"))
    n.ports = ports_of(kh, node)
    n.url = f"http://127.0.0.1:{n.ports['api']}"
    # a transfer waiting for its confirmation while the rest of the suite runs; it must be in the mempool
    # before the miner seals its first entry (an entry commits to its txs)
    n.spawn("send1", ["wallet", "send", "--to", n.keys["bob"], "--amount", "12345", "--fee", "1000", "--memo", "hi",
                      "--key", "alice", "--timeout", "280", "--json", *n.node, *n.wallet])
    n.wait(lambda: _get_json(f"{n.url}/api/mempool")["size"] == 1, "the transfer in the mempool", timeout=60)
    n.spawn("miner", ["miner", "run", *n.node, *n.wallet, "--key", "miner", "--model", "forest", "--retry", "120"])
    try:
        yield n
    finally:
        for name in list(n.procs):
            n.stop(name)


def crowned(n: Net, at_least: int = 1) -> list[dict]:
    n.wait(lambda: len(_get_json(f"{n.url}/api/champion")["history"]) > at_least, f"{at_least} crowned round(s)")
    return _get_json(f"{n.url}/api/champion")["history"]


# --------------------------------------------------------------------------- offline commands


@covers("wallet new", "wallet restore", "wallet list", "wallet address")
def test_wallet_keys_and_recovery_phrase(net: Net, tmp_path: Path) -> None:
    listed = net.json("wallet", "list", *net.wallet)
    assert [k["label"] for k in listed] == ["alice", "miner"]
    human = net.run("wallet", "list", *net.wallet).stdout
    assert net.keys["alice"] in human and "alice" in human
    assert net.run("wallet", "address", "miner", *net.wallet).stdout.strip() == net.keys["miner"]
    assert net.json("wallet", "address", *net.wallet)["label"] == "alice"      # default: the first key
    assert_one_line_error(net.run("wallet", "address", "nobody", *net.wallet, check=False), "no key 'nobody'")
    # a new key shows its phrase; restoring the phrase into another wallet gives the same address
    pw = tmp_path / "pw"
    pw.write_text("another password\n")
    w = ["--wallet", str(tmp_path / "a.popkeys"), "--password-file", str(pw)]
    made = net.run("wallet", "new", "--label", "k", *w).stdout
    assert "recovery phrase:" in made and "wallet restore" in made
    phrase = made.split("recovery phrase:")[1].strip().splitlines()[0].strip()
    assert len(phrase.split()) == 24
    (tmp_path / "phrase").write_text(phrase.upper() + "\n")        # case and spacing do not matter
    w2 = ["--wallet", str(tmp_path / "b.popkeys"), "--password-file", str(pw)]
    restored = net.json("wallet", "restore", "--phrase-file", str(tmp_path / "phrase"), "--label", "r", *w2)
    assert restored["address"] == net.json("wallet", "address", "k", *w)["address"]
    again = net.run("wallet", "restore", *w2, stdin=phrase + "\n", check=False)      # phrase on stdin
    assert_one_line_error(again, "already in the wallet")
    words = phrase.split()
    (tmp_path / "bad").write_text(" ".join(words[1:] + words[:1]))
    assert_one_line_error(net.run("wallet", "restore", "--phrase-file", str(tmp_path / "bad"), *w2, check=False),
                          "checksum")


def test_wallet_new_refuses_an_empty_password(net: Net, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    proc = net.run("wallet", "new", "--wallet", str(tmp_path / "x.popkeys"), "--password-file", str(empty),
                   check=False)
    assert_one_line_error(proc, "empty wallet password")
    assert not (tmp_path / "x.popkeys").exists()
    proc = net.run("wallet", "new", "--wallet", str(tmp_path / "x.popkeys"), check=False,
                   env=_env(POPCHAIN_PASSWORD=""))
    assert_one_line_error(proc, "empty wallet password")


@covers("genesis create")
def test_genesis_create_outputs(net: Net, tmp_path: Path) -> None:
    out = net.genesis_out
    assert out["chain_id"] == "popchain-functional" and out["rounds"] == 100 and out["shard_size"] == 100
    made = net.run("genesis", "create", "--task", "iris", "--label-column", "label", "--out", str(tmp_path / "g"),
                   "--detect", "0.2", "--alloc", f"{net.keys['bob']}=5")
    assert "genesis hash" in made.stdout and "keyholder file" in made.stdout and "detects" in made.stdout
    assert made.stderr.startswith("popchain: warning:")      # a public dataset: said so, still created
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
    env = _env(POPCHAIN_API_PORT="7003", POPCHAIN_DISCOVER="true", POPCHAIN_PASSWORD="not a node setting")
    out = net.run("node", "run", "--datadir", str(d), "--print-config", "--log-level", "WARNING", "--peer",
                  "10.0.0.2:9444", "--listen", "0.0.0.0", "--api-listen", "127.0.0.1", "--discovery-interface",
                  "127.0.0.1", "--log-format", "json", env=env).stdout
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
    # refused with the key's name, one line, no traceback
    (d / "popchain.toml").write_text("prot = 1\n")
    assert_one_line_error(net.run("node", "run", "--datadir", str(d), "--print-config", check=False), "'prot'")
    (d / "popchain.toml").write_text('port = "abc"\n')
    assert_one_line_error(net.run("node", "run", "--datadir", str(d), "--print-config", check=False), "port")
    (d / "popchain.toml").write_text("port = 1\n")
    assert_one_line_error(net.run("node", "run", "--datadir", str(d), "--print-config", check=False,
                                  env=_env(POPCHAIN_MAX_OUTBOUND="many")), "POPCHAIN_MAX_OUTBOUND")
    assert_one_line_error(net.run("node", "run", "--datadir", str(d), "--config", str(tmp_path / "none.toml"),
                                  check=False), "does not exist")
    (d / "popchain.toml").write_text("port = [\n")
    assert_one_line_error(net.run("node", "run", "--datadir", str(d), check=False), "not valid TOML")


def test_node_log_rotates_and_is_json(net: Net) -> None:
    import logging

    from node.__main__ import setup_logging
    from node.config import NodeConfig
    kh = net.dir / "kh"
    first = (kh / "node.log").read_text().splitlines()[0]
    assert {"ts", "level", "logger", "msg"} <= json.loads(first).keys()
    # in-process, the same handler setup: size-based rotation keeps log_backups old files
    d = net.dir / "logtest"
    cfg = NodeConfig(datadir=d, log_max_bytes=4096, log_backups=2, log_to_stderr=False)
    setup_logging(cfg)
    log = logging.getLogger("popchain.test")
    try:
        for i in range(400):
            log.info("line %d %s", i, "x" * 40)
    finally:
        for h in list(logging.getLogger("popchain").handlers):
            if getattr(h, "baseFilename", "").startswith(str(d)):
                logging.getLogger("popchain").removeHandler(h)
                h.close()
    assert sorted(p.name for p in d.iterdir()) == ["node.log", "node.log.1", "node.log.2"]
    assert all(p.stat().st_size <= 4096 for p in d.iterdir())


# --------------------------------------------------------------------------- chain reads


@covers("chain info")
def test_chain_info(net: Net) -> None:
    info = net.json("chain", "info", *net.node)
    assert info["chain_id"] == "popchain-functional" and info["genesis"] == net.genesis_out["genesis_hash"]
    human = net.run("chain", "info", *net.node).stdout
    assert "chain_id" in human and "popchain-functional" in human and "champion" in human
    assert_one_line_error(net.run("chain", "info", "--node", "http://127.0.0.1:9", check=False),
                          "cannot reach the node")
    assert_one_line_error(net.run("chain", "info", *net.node, "--cookie", "/nonexistent/.cookie", check=False),
                          "cookie file")


def test_demo_arguments_are_checked(net: Net) -> None:
    # the demo itself runs in test_cli_e2e.py (a whole network); its argument checks are one-line errors
    assert_one_line_error(net.run("demo", "--nodes", "0", "--keep", check=False), "--nodes")
    assert_one_line_error(net.run("demo", "--rounds", "0", "--dir", "x", check=False), "--rounds")


def test_a_closed_stdout_ends_quietly(net: Net) -> None:
    # `popchain … | head`: the reader is gone before popchain writes; exit 141 (128 + SIGPIPE), no message
    # (it used to end with "popchain: error: Broken pipe", or a traceback from --help)
    for args in (["--help"], ["wallet", "list", *net.wallet], ["chain", "info", *net.node]):
        proc = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=net.dir, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=_env())
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(60) in ((0, 141) if args == ["--help"] else (141,)) and err == "", (args, err)
    proc = subprocess.run(f"'{sys.executable}' -m cli genesis create --help | head -c 10", shell=True, cwd=ROOT,
                          capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.stdout == "usage: pop" and proc.stderr == ""


@covers("wallet send", "wallet balance", "wallet history", "chain tx", "chain block")
def test_send_balance_history_tx_block(net: Net) -> None:
    bob_w = ["--wallet", str(net.dir / "bob.popkeys"), "--password-file", str(net.dir / "pw")]
    sender = net.procs["send1"]
    assert sender.wait(300) == 0, net.log("send1")
    del net.procs["send1"]
    log = net.log("send1")
    sent = json.loads(log[log.index("{"):])
    assert sent["status"] == "confirmed" and sent["height"] >= 1
    assert "waiting for a block" in log and f"txid {sent['txid']}" in log
    bal = net.json("wallet", "balance", *net.node, *bob_w)
    assert bal[0]["balance"] == 12345
    assert "balance" in net.run("wallet", "balance", *net.node, *bob_w).stdout
    # wallet history: a block holding a transfer used to crash with KeyError 'from'
    hist = net.json("wallet", "history", "--limit", "20", *net.node, *net.wallet)
    row = next(r for r in hist if r["tx"]["txid"] == sent["txid"])
    assert (row["direction"], row["key"], row["height"]) == ("sent", "alice", sent["height"])
    assert (row["tx"]["from_address"], row["tx"]["to_address"], row["tx"]["amount"]) == (
        net.keys["alice"], net.keys["bob"], 12345)
    human = net.run("wallet", "history", *net.node, *bob_w).stdout
    assert sent["txid"][:16] in human and f"<- {net.keys['alice']}" in human
    older = net.json("wallet", "history", "--before", str(sent["height"]), *net.node, *bob_w)
    assert all(r["height"] < sent["height"] for r in older)
    assert_one_line_error(net.run("wallet", "history", "--limit", "0", *net.node, *bob_w, check=False), "--limit")
    tx = net.json("chain", "tx", sent["txid"], *net.node)
    assert tx["status"] == "confirmed"
    txh = net.run("chain", "tx", sent["txid"], *net.node).stdout
    assert net.keys["alice"] in txh and net.keys["bob"] in txh
    # chain block: the miner as an address, the block's transfers listed
    blk = net.run("chain", "block", str(sent["height"]), *net.node).stdout
    miner_line = next(ln for ln in blk.splitlines() if ln.startswith("miner "))
    assert net.keys["miner"] in miner_line
    assert sent["txid"][:16] in blk
    assert net.json("chain", "block", sent["block"], *net.node)["header"]["height"] == sent["height"]
    assert "(genesis: no miner)" in net.run("chain", "block", "0", *net.node).stdout
    assert_one_line_error(net.run("chain", "tx", "zz", *net.node, check=False), "node said")
    # error paths of send
    for bad, frag in ((["--to", "pop1notanaddress", "--amount", "5"], "address"),
                      (["--to", net.keys["bob"], "--amount", "0"], "positive"),
                      (["--to", net.keys["bob"], "--amount", "5", "--memo", "m" * 65], "64 bytes")):
        assert_one_line_error(net.run("wallet", "send", *bad, *net.node, *net.wallet, check=False), frag)
    wrong = net.dir / "wrongpw"
    wrong.write_text("nope\n")
    assert_one_line_error(net.run("wallet", "balance", *net.node, "--wallet", str(net.dir / "w.popkeys"),
                                  "--password-file", str(wrong), check=False), "password")


@covers("chain round")
def test_chain_round_prints_verdict_and_entries(net: Net) -> None:
    history = crowned(net)
    rec = history[1]
    r = net.json("chain", "round", str(rec["round"]), *net.node)
    assert r["verdict"]["hash"] == rec["hash"] and r["entries"]
    human = net.run("chain", "round", str(rec["round"]), *net.node).stdout
    assert "{" not in human, human                                      # no dict repr
    assert f"entries {len(r['entries'])} (listed in the beacon)" in " ".join(human.split())
    assert "entries_seen" not in human
    verdict = next(ln for ln in human.splitlines() if ln.startswith("verdict"))
    assert rec["hash"][:16] in verdict and rec["miner_address"] in verdict and f"b {rec['b']}" in verdict
    assert "round" in net.run("chain", "round", "current", *net.node).stdout
    assert_one_line_error(net.run("chain", "round", "abc", *net.node, check=False), "round number")


# --------------------------------------------------------------------------- models


@covers("model champion", "model history", "model get", "model predict")
def test_model_champion_history_get_predict(net: Net) -> None:
    history = crowned(net)
    champ = net.json("model", "champion", *net.node)
    assert champ["round"] >= 1 and champ["miner_address"] == net.keys["miner"]
    assert "model_hash" in net.run("model", "champion", *net.node).stdout
    hist = net.json("model", "history", *net.node)
    assert [h["hash"] for h in hist[:len(history)]] == [h["hash"] for h in history]
    lines = net.run("model", "history", *net.node).stdout.splitlines()
    assert lines[0].startswith("round 0") and "(genesis)" in lines[0] and net.keys["miner"] in lines[1]
    rec = history[1]
    got = net.json("model", "get", rec["model_hash"], "--out", "m.popmodel", *net.node)
    assert got["bytes"] == (net.dir / "m.popmodel").stat().st_size and not got["raw"]
    net.run("model", "get", rec["model_hash"], "--out", "m.raw", "--raw", *net.node)
    from chain.block import model_hash
    assert model_hash((net.dir / "m.raw").read_bytes()).hex() == rec["model_hash"]
    assert_one_line_error(net.run("model", "get", "abcd", "--out", "x", *net.node, check=False), "not a model hash")
    # predict with the node's champion, and with the downloaded file (no node)
    pred = net.json("model", "predict", *net.node, "--input", "chain/holdout.csv", "--out", "y.csv")
    assert pred["rows"] == net.genesis_out["n_holdout"] and 0 < pred["accuracy"] <= 1
    assert (net.dir / "y.csv").read_text().splitlines()[0] == "prediction"
    net.run("model", "get", pred["champion"], "--out", "c.popmodel", *net.node)
    local = net.json("model", "predict", "--model", "c.popmodel", "--input", "chain/holdout.csv",
                     "--label-column", "label", "--node", "http://127.0.0.1:9")   # the node is never asked
    assert local["accuracy"] == pred["accuracy"]
    assert "predictions by" in net.run("model", "predict", "--model", "c.popmodel", "--input",
                                       "chain/holdout.csv").stdout
    assert_one_line_error(net.run("model", "predict", "--model", "m.raw", "--input", "chain/holdout.csv",
                                  check=False), "not a .popmodel")
    help_text = net.run("model", "predict", "--help").stdout
    assert "original units" in " ".join(help_text.split()) and "integers" not in help_text


@covers("model export")
def test_model_export_onnx_card_and_predict(net: Net) -> None:
    rec = crowned(net)[1]
    out = net.json("model", "export", rec["model_hash"], "--format", "onnx", "--out", "m.onnx",
                   "--check-csv", "chain/holdout.csv", *net.node)
    agree = out["onnx"]["agreement"]
    assert agree["same"] == agree["rows"] > net.genesis_out["n_holdout"]
    card = json.loads((net.dir / "m.card.json").read_text())
    for k in ("chain_id", "genesis_hash", "task", "round", "block_hash", "miner_address", "b", "c",
              "shard_accuracy", "model_hash", "test"):
        assert card[k] is not None, k
    assert (card["round"], card["block_hash"], card["b"], card["c"]) == (rec["round"], rec["hash"], rec["b"],
                                                                         rec["c"])
    assert card["genesis_hash"] == net.genesis_out["genesis_hash"]
    assert {k: card[k] for k in ("z_milli", "bar") if k in card} == {k: rec[k] for k in ("z_milli", "bar") if k in rec}
    import hashlib
    assert card["file"]["sha256"] == hashlib.sha256((net.dir / "m.onnx").read_bytes()).hexdigest()
    via_onnx = net.json("model", "predict", "--model", "m.onnx", "--input", "chain/holdout.csv", "--out", "o.csv")
    net.run("model", "get", rec["model_hash"], "--out", "r.popmodel", *net.node)
    via_pop = net.json("model", "predict", "--model", "r.popmodel", "--input", "chain/holdout.csv", "--out", "p.csv")
    assert (net.dir / "o.csv").read_text() == (net.dir / "p.csv").read_text()
    assert via_onnx["accuracy"] == via_pop["accuracy"]
    human = net.run("model", "export", "champion", "--format", "popmodel", "--out", "e.popmodel", *net.node).stdout
    assert "model card" in human and (net.dir / "e.card.json").exists()
    assert_one_line_error(net.run("model", "export", "00" * 32, "--out", "z.onnx", *net.node, check=False),
                          "not a crowned model")


@covers("model eval")
def test_model_eval_runs_the_round_test(net: Net) -> None:
    rec = crowned(net)[-1]
    net.run("model", "get", rec["model_hash"], "--out", "past.popmodel", *net.node)
    res = net.json("model", "eval", "past.popmodel", "--shards", "2", *net.node)
    assert res["duplicate_of_a_champion"] is True and res["would_pass"] is False   # refused as a duplicate
    assert len(res["shards"]) == 2 and res["next_round"] > rec["round"]
    # a model that is not a champion: the raw genesis-free bytes of a fresh candidate
    from consensus.protocol.genesis import load_genesis
    from ml.model import encode_model
    from ml.training import train_candidate
    g = load_genesis((net.dir / "chain/genesis.bin").read_bytes())
    (net.dir / "cand.raw").write_bytes(encode_model(train_candidate("linear", g.task.training, seed=5,
                                                                    caps=g.model_caps)))
    res = net.json("model", "eval", "cand.raw", *net.node)
    s = res["shards"][-1]
    assert res["duplicate_of_a_champion"] is False
    if "z_milli" in res["rule"]:       # the rule of the day, called directly
        from consensus.protocol.rules import paired_test
        assert res["would_pass"] == paired_test(s["b"], s["c"], res["rule"]["z_milli"])
    else:
        from consensus.protocol.genesis import load_genesis as _lg
        from consensus.protocol.stats import accepts  # type: ignore[attr-defined]
        alpha = _lg((net.dir / "chain/genesis.bin").read_bytes()).params.alpha
        assert res["would_pass"] == accepts(s["b"], s["c"], res["assumed_entries"], alpha)
    human = net.run("model", "eval", "cand.raw", *net.node).stdout
    assert "would pass on the latest revealed shard" in human
    (net.dir / "junk.raw").write_bytes(b"\x93junk")
    assert_one_line_error(net.run("model", "eval", "junk.raw", *net.node, check=False), "model")
    assert_one_line_error(net.run("model", "eval", "cand.raw", "--shards", "0", *net.node, check=False), "--shards")


@covers("audit")
def test_audit_rechecks_every_crowned_model(net: Net) -> None:
    crowned(net, 2)
    report = net.json("audit", "--out", "audit.json", "--html", "--genesis", "chain/genesis.bin", *net.node)
    assert report["ok"] is True and report["crowned"] >= 2
    for r in report["records"][1:]:
        assert r["checks"] and all(r["checks"].values()), r
        assert (r["recomputed"]["b"], r["recomputed"]["c"]) == (r["b"], r["c"])
    assert json.loads((net.dir / "audit.json").read_text())["genesis_hash"] == net.genesis_out["genesis_hash"]
    assert "every record checks out" in (net.dir / "audit.html").read_text()
    assert "all checks pass" in net.run("audit", "--out", "audit2.json", *net.node).stdout
    other = net.dir / "other-genesis"
    net.run("genesis", "create", "--task", "iris", "--detect", "0.2", "--out", str(other), "--alloc",
            f"{net.keys['bob']}=5")
    assert_one_line_error(net.run("audit", "--out", "a3.json", "--genesis", str(other / "genesis.bin"), *net.node,
                                  check=False), "not the expected")


@contextlib.contextmanager
def lying_node(upstream: str, rewrite: Callable[[str, Any], Any]) -> Iterator[str]:
    """A real HTTP server in front of the node that rewrites JSON answers (the attacker an auditor faces)."""
    import asyncio
    import threading

    import aiohttp
    from aiohttp import web
    ready: dict[str, Any] = {}

    async def handle(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as s:
            async with s.get(upstream + request.path_qs) as r:
                body = await r.read()
                if r.content_type == "application/json":
                    return web.json_response(rewrite(request.path, json.loads(body)), status=r.status)
                return web.Response(body=body, status=r.status, content_type=r.content_type)

    def serve() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        ready["port"] = site._server.sockets[0].getsockname()[1]     # type: ignore[union-attr]
        ready["loop"] = loop
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    while "loop" not in ready:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{ready['port']}"
    finally:
        ready["loop"].call_soon_threadsafe(ready["loop"].stop)
        thread.join(10)


def test_audit_catches_a_node_that_lies_about_a_record(net: Net) -> None:
    history = crowned(net)
    target = history[1]["hash"]

    def inflate(path: str, body: Any) -> Any:
        if path == "/api/champion":
            for rec in body["history"]:
                if rec["hash"] == target:
                    rec["b"] += 3            # a better-looking crowning than the one the block carries
        return body
    with lying_node(net.url, inflate) as url:
        proc = net.run("audit", "--out", "lie.json", "--node", url, check=False)
    assert_one_line_error(proc, "audit found problems in 1 of")
    report = json.loads((net.dir / "lie.json").read_text())
    bad = [r for r in report["records"] if not r["ok"]]
    assert [r["hash"] for r in bad] == [target]
    assert bad[0]["checks"]["rescore"] is False and bad[0]["checks"]["payload-record"] is False
    assert "FAILED" in proc.stdout


# --------------------------------------------------------------------------- restart (last: it stops the node)


@covers("miner run")
def test_miner_and_send_ride_out_a_node_restart(net: Net) -> None:
    crowned(net)
    assert "WON" in net.log("miner") or "lost" in net.log("miner")
    net.stop("node")
    proc = net.spawn("send", ["wallet", "send", "--to", net.keys["bob"], "--amount", "7", "--key", "alice",
                              "--no-wait", "--retry", "120", *net.node, *net.wallet])
    net.wait(lambda: "retrying" in net.log("send"), "the sender to notice the node is gone", timeout=60)
    # `miner run` and `wallet send` keep waiting; the node comes back on the same ports
    node = net.spawn("node", net.node_args("--port", str(net.ports["p2p"]), "--api-port", str(net.ports["api"])))
    assert proc.wait(180) == 0, net.log("send")
    del net.procs["send"]
    send_log = net.log("send")
    assert "is back after" in send_log and "txid" in send_log and "Traceback" not in send_log
    assert len([ln for ln in send_log.splitlines() if "unreachable" in ln]) == 1      # one status line
    net.wait(lambda: "is back after" in net.log("miner"), "the miner to reconnect", timeout=120)
    # the chain goes on with the miner's entries: rounds advance (a block needs a model that beats the champion
    # under the strict rule, which a saturated task rarely gives within a test's time)
    before = net.status()["round"]
    net.wait(lambda: net.status()["round"] > before, "a round after the restart", timeout=240)
    assert node.poll() is None and net.procs["miner"].poll() is None
    assert "Cannot connect" not in net.log("miner") and "Traceback" not in net.log("miner")
    # the miner exits with one line when the node stays away past --retry
    net.stop("miner")
    quick = net.run("miner", "run", "--node", "http://127.0.0.1:9", *net.wallet, "--rounds", "1", "--retry", "0",
                    check=False)
    assert_one_line_error(quick, "cannot reach the node")


@covers("node verify", "node reindex")
def test_node_verify_and_reindex_a_stopped_datadir(net: Net) -> None:
    for name in ("miner", "node"):
        net.stop(name)
    kh = str(net.dir / "kh")
    out = net.run("node", "verify", "--datadir", kh).stdout
    assert out.startswith("verify: ok:")
    assert net.json("node", "reindex", "--datadir", kh)["ok"] is True
    assert net.json("node", "verify", "--datadir", kh)["ok"] is True
    missing = net.run("node", "verify", "--datadir", str(net.dir / "nope"), check=False)
    assert missing.returncode == 2
    assert_one_line_error(missing, "nope")


@covers("keyholder add-shares")
def test_committee_genesis_and_keyholder_add_shares(net: Net, tmp_path: Path) -> None:
    # a 2-of-3 genesis writes member files; a new batch's share files install into the member's datadir
    import os

    from consensus.keyholder import SHARE_DIR, MemberShares, deal_batch, load_member_file
    from consensus.protocol.genesis import load_genesis
    out = net.json("genesis", "create", "--out", str(tmp_path / "c"), "--keyholders", "3", "--threshold", "2",
                   "--rounds", "2", "--detect", "0.1", "--alloc", f"{net.keys['bob']}=5")
    assert out["committee"] and len(out["keyholder_files"]) == 3
    genesis = load_genesis((tmp_path / "c" / "genesis.bin").read_bytes())
    shards = [os.urandom(32) for _ in range(2)]
    _, files = deal_batch(genesis, [os.urandom(32) for _ in range(2)], shards)
    for i, data in enumerate(files, 1):
        (tmp_path / f"m{i}.shares").write_bytes(data)
    member1, datadir = out["keyholder_files"][0], str(tmp_path / "kh1")
    done = net.json("keyholder", "add-shares", str(tmp_path / "m1.shares"), "--keyholder", member1,
                    "--datadir", datadir)
    assert done["member"] == 1 and done["shards"] == 2 and Path(done["path"]).stat().st_mode & 0o777 == 0o600
    assert_one_line_error(net.run("keyholder", "add-shares", str(tmp_path / "m2.shares"), "--keyholder", member1,
                                  "--datadir", datadir, check=False), "member 2, this is member 1")
    live = MemberShares(load_member_file(Path(member1).read_bytes()), tmp_path / "kh1" / SHARE_DIR)
    assert live.share_for(shards[1]) is not None      # a running member finds them without a restart


# --------------------------------------------------------------------------- walkers


def _leaves(parser, prefix: str = "") -> Iterator[tuple[str, Any]]:
    import argparse
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix.strip(), parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaves(child, f"{prefix} {name}")


def test_every_leaf_command_has_a_functional_test() -> None:
    from cli import build_parser
    leaves = dict(_leaves(build_parser()))
    missing = sorted(set(leaves) - set(COVERED))
    assert not missing, f"leaf commands without a functional test: {missing}"
    assert not set(COVERED) - set(leaves), "registry names a command that does not exist"
    for command, tests in COVERED.items():
        for t in tests:
            path, _, name = t.rpartition("::")
            assert name in globals() or f"def {name}(" in (ROOT / path).read_text(), (command, t)


def test_every_documented_flag_appears_in_a_test() -> None:
    from cli import build_parser
    text = Path(__file__).read_text() + "".join((ROOT / f).read_text() for f in OTHER_CLI_TESTS)
    missing = []
    for command, parser in _leaves(build_parser()):
        for action in parser._actions:
            for opt in action.option_strings:
                if opt.startswith("--") and opt != "--help" and f'"{opt}"' not in text:
                    missing.append(f"{command} {opt}")
    assert not missing, f"options no test passes: {missing}"
