"""The `popchain` command line end to end, as a user runs it: real processes, real nodes on 127.0.0.1."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.slow


def popchain(*args: str, cwd: Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"popchain {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.pop("POPCHAIN_PASSWORD", None)
    return env


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("popchain: error:"), proc.stderr
    assert fragment in lines[0], lines[0]


@contextlib.contextmanager
def background(args: list[str], cwd: Path, log: Path) -> Iterator[subprocess.Popen]:
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, *args], cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                env=_env(), start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_file_text(path: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        assert proc.poll() is None, f"process exited early:\n{path.read_text(errors='replace')}"
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {path}:\n{path.read_text(errors='replace')}")


def wait_until(predicate: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if predicate():
                return
        assert proc.poll() is None, f"process exited before {what}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _get_json(url: str) -> Any:
    import urllib.request
    with urllib.request.urlopen(url, timeout=10) as resp:   # loopback only
        return json.loads(resp.read())


def ports_of(datadir: Path, proc: subprocess.Popen, timeout: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return json.loads((datadir / "ports.json").read_text())
        assert proc.poll() is None, "node exited before listening"
        time.sleep(0.05)
    raise AssertionError("node never wrote its ports")


def test_cli_end_to_end(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    wallet = ["--wallet", str(tmp_path / "w.popkeys"), "--password-file", str(pw)]
    for label in ("alice", "miner"):
        popchain("wallet", "new", "--label", label, *wallet, cwd=tmp_path)
    keys = {k["label"]: k["address"] for k in json.loads(popchain("wallet", "list", "--json", *wallet,
                                                                  cwd=tmp_path).stdout)}
    bob_wallet = ["--wallet", str(tmp_path / "bob.popkeys"), "--password-file", str(pw)]
    bob = json.loads(popchain("wallet", "new", "--label", "bob", "--json", *bob_wallet, cwd=tmp_path).stdout)["address"]

    out = json.loads(popchain("genesis", "create", "--out", "chain", "--rounds", "30", "--shard-size", "100",
                              "--alloc", f"{keys['alice']}=1000000000", "--alloc", f"{keys['miner']}=1000000000",
                              "--entry-window", "2", "--opening-window", "3", "--json", cwd=tmp_path).stdout)
    assert (tmp_path / "chain" / "keyholder.secret").stat().st_mode & 0o777 == 0o600
    genesis = str(tmp_path / "chain" / "genesis.bin")

    node_b = ["-m", "cli", "node", "run", "--datadir", str(tmp_path / "b"), "--genesis", genesis,
              "--port", "0", "--api-port", "0"]
    with background(node_b, tmp_path, tmp_path / "b.log") as b:
        b_ports = ports_of(tmp_path / "b", b)
        url_b = f"http://127.0.0.1:{b_ports['api']}"
        node_a = ["-m", "cli", "node", "run", "--datadir", str(tmp_path / "a"), "--genesis", genesis,
                  "--keyholder", str(tmp_path / "chain" / "keyholder.secret"), "--port", "0", "--api-port", "0",
                  "--peer", f"127.0.0.1:{b_ports['p2p']}"]
        with background(node_a, tmp_path, tmp_path / "a.log") as a:
            url_a = f"http://127.0.0.1:{ports_of(tmp_path / 'a', a)['api']}"
            # The sender waits for its confirmation (the progress path of `wallet send`) while a miner plays.
            # A sealed entry commits to its txs, so the transfer must reach the miner's node (B) before the
            # miner seals its first entry: otherwise only a second crowned round could confirm it.
            send = ["-m", "cli", "wallet", "send", "--to", bob, "--amount", "12345", "--key", "alice",
                    "--node", url_a, "--timeout", "240", "--json", *wallet]
            with background(send, tmp_path, tmp_path / "send.log") as sender:
                wait_until(lambda: _get_json(f"{url_b}/api/mempool")["size"] == 1, sender, "tx relayed to B")
                miner = ["-m", "cli", "miner", "run", "--node", url_b, *wallet, "--key", "miner", "--model",
                         "forest", "--rounds", "4"]
                with background(miner, tmp_path, tmp_path / "miner.log") as m:
                    assert sender.wait(300) == 0, (tmp_path / "send.log").read_text()
                    send_log = (tmp_path / "send.log").read_text()
                    sent = json.loads(send_log[send_log.index("{"):])
                    assert sent["status"] == "confirmed"
                    bal = json.loads(popchain("wallet", "balance", "--node", url_b, "--json", *bob_wallet,
                                              cwd=tmp_path).stdout)
                    assert bal[0]["balance"] == 12345
                    assert m.wait(300) == 0
            miner_log = (tmp_path / "miner.log").read_text()
            assert "WON" in miner_log, miner_log

            champion = json.loads(popchain("model", "champion", "--node", url_b, "--json", cwd=tmp_path).stdout)
            assert champion["round"] >= 1 and champion["miner_address"] == keys["miner"]
            pred = json.loads(popchain("model", "predict", "--node", url_b, "--input", "chain/holdout.csv",
                                       "--out", "y.csv", "--json", cwd=tmp_path).stdout)
            assert pred["champion"] == champion["model_hash"]
            lines = (tmp_path / "y.csv").read_text().splitlines()
            assert lines[0] == "prediction" and len(lines) == pred["rows"] + 1 == out["n_holdout"] + 1
            # the CLI's predictions are exactly the champion's integer scoring on the same rows
            assert pred["accuracy"] == pytest.approx(_champion_accuracy(tmp_path, champion["model_hash"], url_b))

            info = json.loads(popchain("chain", "info", "--node", url_b, "--json", cwd=tmp_path).stdout)
            assert info["height"] >= 1 and info["genesis"] == out["genesis_hash"]
            assert_one_line_error(popchain("wallet", "send", "--to", "pop1notanaddress", "--amount", "5",
                                           "--node", url_b, *wallet, cwd=tmp_path, check=False), "address")
            wrong_pw = tmp_path / "wrong"
            wrong_pw.write_text("nope\n")
            assert_one_line_error(popchain("wallet", "balance", "--node", url_b, "--wallet", str(tmp_path / "w.popkeys"),
                                           "--password-file", str(wrong_pw), cwd=tmp_path, check=False), "password")


def _champion_accuracy(tmp_path: Path, model_hash: str, url: str) -> float:
    import urllib.request

    from consensus.protocol.genesis import load_genesis
    from ml.model import decode_model
    from ml.score import score
    from ml.task import read_feature_csv
    genesis = load_genesis((tmp_path / "chain" / "genesis.bin").read_bytes())
    with urllib.request.urlopen(f"{url}/api/models/{model_hash}") as resp:   # loopback only
        model = decode_model(resp.read(), genesis.task.spec, genesis.model_caps)
    X, y = read_feature_csv(tmp_path / "chain" / "holdout.csv", genesis.task.spec)
    return score(model, X, y).accuracy


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b,label\n1,2,x\n3,4\n")
    assert_one_line_error(popchain("genesis", "create", "--task", f"csv:{bad_csv}", "--out", "g", "--alloc",
                                   "pop1akn5hzhv924nluzxhp48h7wuuuajkkxsglxtyj=5",
                                   cwd=tmp_path, check=False), "row 3 has 2 columns")
    assert_one_line_error(popchain("genesis", "create", "--alloc", "pop1qqqq=5", "--out", "g",
                                   cwd=tmp_path, check=False), "pop1qqqq")
    assert_one_line_error(popchain("wallet", "list", "--wallet", str(tmp_path / "none.popkeys"),
                                   "--password-file", "/dev/null", cwd=tmp_path, check=False), "no wallet")
    missing = popchain("node", "run", "--datadir", str(tmp_path / "d"), "--genesis", str(tmp_path / "nope.bin"),
                       "--port", "0", "--api-port", "0", cwd=tmp_path, check=False, timeout=60)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "nope.bin" in missing.stderr
    unreachable = popchain("chain", "info", "--node", "http://127.0.0.1:9", cwd=tmp_path, check=False)
    assert_one_line_error(unreachable, "cannot reach the node")


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


def test_demo_runs_and_leaves_no_process(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = popchain("demo", "--rounds", "3", "--dir", str(workdir), cwd=tmp_path, timeout=600)
    assert "summary: 3 rounds" in proc.stdout, proc.stdout
    assert "node0 up: explorer http://127.0.0.1:" in proc.stdout and "explorers (leaderboard" in proc.stdout
    assert "round" in proc.stdout and "acc test" in proc.stdout
    # b and c side by side with bar (a threshold on b), never b-c next to bar (issue 20 item 10)
    header = next(ln for ln in proc.stdout.splitlines() if "acc fwd" in ln).split()
    # issue 21: each round's outcome (crowned / plain / void) and its miner, the champion's gap to the Bayes limit
    assert header[:6] == ["round", "outcome", "miner", "b", "c", "bar"] and "b-c" not in proc.stdout
    assert "bayes" in header and "Bayes-optimal accuracy" in proc.stdout and "transfers confirmed" in proc.stdout
    assert "champion accuracy on the latest shard" in proc.stdout
    # each row counts the transfers of its own block, labelled so; no "try: popchain ... --node" hint for a
    # network that stops right after it (the hint is printed with --keep only)
    assert "txs in block" in proc.stdout and "try: popchain" not in proc.stdout
    assert "stopping the network" in proc.stdout
    time.sleep(0.5)
    assert _processes_mentioning(str(workdir)) == []


@pytest.mark.timeout(900)   # every quick module in turn, on a busy 2-core runner
def test_bench_quick_json_emits_every_figure(tmp_path: Path) -> None:
    from benchmarks.harness import expected_figures
    proc = popchain("bench", "--quick", "--json", cwd=tmp_path, timeout=840)
    data = json.loads(proc.stdout)
    names = {f["name"] for f in data["figures"]}
    assert set(expected_figures()) <= names, (names, data.get("errors"))
    for fig in data["figures"]:
        assert fig["value"] is not None and fig["unit"], fig
