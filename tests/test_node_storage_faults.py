"""Storage faults end in one line and a documented exit code (node.errors), never a traceback; `node verify`
and `node reindex` replay a stopped node's datadir; a bad --genesis file never poisons a datadir.
Real corruption on a real LevelDB datadir, real `popchain` processes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chain.errors import StoreError
from chain.state import Account
from chain.store import ChainStore
from node.datadir import Datadir, read_ports
from node.errors import (
    EXIT_CONFIG,
    EXIT_INCONSISTENT,
    EXIT_OK,
    EXIT_STORE,
    NodeError,
    exit_code_of,
)
from node.tools.testing import build_chain_offline, make_test_chain

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(240)


def popchain(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def run_node(datadir: Path, *extra: str) -> subprocess.CompletedProcess:
    return popchain("node", "run", "--datadir", str(datadir), "--port", "0", "--api-port", "0", *extra)


def assert_one_line(proc: subprocess.CompletedProcess, code: int, fragment: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln or ln.startswith("popchain: error:")]
    assert len(errors) == 1 and fragment in errors[0], proc.stderr
    return errors[0]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_test_chain(tmp_path_factory.mktemp("chain"), rounds=5)


@pytest.fixture(scope="module")
def base(chain, tmp_path_factory) -> Path:
    """A stopped node's datadir holding one crowned block, its LevelDB flushed to .ldb tables."""
    d = tmp_path_factory.mktemp("base") / "D"
    build_chain_offline(d, chain, 1)
    for _ in range(2):  # reopening turns the write-ahead log into a table file
        ChainStore.open(d / "chain").close()
    return d


def _copy(base: Path, dest: Path) -> Path:
    shutil.copytree(base, dest)
    return dest


def _ldb(d: Path) -> Path:
    return d / "chain" / "chain.ldb"


def _garble_manifest(d: Path) -> None:
    [manifest] = _ldb(d).glob("MANIFEST-*")
    data = bytearray(manifest.read_bytes())
    data[10:40] = b"\xff" * 30
    manifest.write_bytes(bytes(data))


def _truncate_table(d: Path) -> None:
    table = max(_ldb(d).glob("*.ldb"), key=lambda p: p.stat().st_size)
    os.truncate(table, table.stat().st_size // 2)


def _delete_table(d: Path) -> None:
    for table in _ldb(d).glob("*.ldb"):
        table.unlink()


def test_corrupt_database_one_line_and_exit_code(base, tmp_path):
    for name, damage in (("truncated .ldb", _truncate_table), ("deleted .ldb", _delete_table),
                         ("garbled MANIFEST", _garble_manifest)):
        d = _copy(base, tmp_path / name.replace(" ", "_"))
        damage(d)
        line = assert_one_line(run_node(d), EXIT_STORE, "LevelDB")
        assert "node verify" in line, name
        assert_one_line(popchain("node", "verify", "--datadir", str(d)), EXIT_STORE, "LevelDB")
        assert_one_line(popchain("node", "reindex", "--datadir", str(d)), EXIT_STORE, "LevelDB")


def test_verify_and_reindex_commands(base, tmp_path):
    d = _copy(base, tmp_path / "D")
    proc = popchain("node", "verify", "--datadir", str(d))
    assert proc.returncode == EXIT_OK and "verify: ok: 1 blocks" in proc.stdout, proc.stderr
    assert "verify: block 1/1 (100%)" in proc.stderr  # progress
    with ChainStore.open(d / "chain") as store:  # an account record no block explains
        store._kv.write({b"a" + bytes(20): Account(999, 0).encode()}, sync=True)
    proc = popchain("node", "verify", "--datadir", str(d), "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == EXIT_INCONSISTENT and not report["ok"] and report["readable"]
    assert any("stored accounts differ" in p for p in report["problems"])
    proc = popchain("node", "reindex", "--datadir", str(d))
    assert proc.returncode == EXIT_OK and "rebuilt" in proc.stdout, proc.stderr
    assert popchain("node", "verify", "--datadir", str(d)).returncode == EXIT_OK
    # a running node (its datadir lock) keeps both commands out
    held = Datadir(d).open()
    try:
        assert_one_line(popchain("node", "verify", "--datadir", str(d)), EXIT_CONFIG, "in use")
    finally:
        held.close()
    assert_one_line(popchain("node", "verify", "--datadir", str(tmp_path / "nothing")), EXIT_CONFIG,
                    "no chain database")


def _start_and_stop(d: Path, *extra: str) -> str:
    """Run `node run` on ``d`` until it listens, then SIGTERM it; returns its stderr (exit 0 asserted)."""
    proc = subprocess.Popen([sys.executable, "-m", "cli", "node", "run", "--datadir", str(d), "--port", "0",
                             "--api-port", "0", *extra], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        deadline = time.monotonic() + 60  # a liveness bound for start-up, not a timed assertion
        while read_ports(d) is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert read_ports(d) is not None, proc.stderr.read() if proc.poll() is not None else "no ports.json"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_OK and "Traceback" not in err, err
    return err


def test_node_builds_missing_indexes_once(base, tmp_path):
    from chain.store_index import K_INDEX_VERSION
    d = _copy(base, tmp_path / "old")
    with ChainStore.open(d / "chain") as store:  # as a datadir written before the indexes existed
        store._kv.write({K_INDEX_VERSION: None}, sync=True)
    assert "building the tx and address indexes" in _start_and_stop(d)
    with ChainStore.open(d / "chain") as store:
        assert store.has_indexes() and store.verify().ok


def test_bad_genesis_file_never_poisons_the_datadir(chain, tmp_path):
    good = chain.genesis_path.read_bytes()
    bad = tmp_path / "bad.bin"
    bad.write_bytes(good[:-100] + bytes(100))  # decodes as far as the damage: must be refused, not copied
    d = tmp_path / "D"
    assert_one_line(run_node(d, "--genesis", str(bad)), EXIT_CONFIG, "not a valid genesis file")
    assert not (d / "genesis.bin").exists() and not (d / "chain").exists()
    assert_one_line(run_node(d, "--genesis", str(tmp_path / "missing.bin")), EXIT_CONFIG, "cannot read")
    (d / "genesis.bin").write_bytes(b"junk")  # as an older version left it: the right file replaces it
    _start_and_stop(d, "--genesis", str(chain.genesis_path))
    assert (d / "genesis.bin").read_bytes() == good


def test_exit_codes_look_inside_task_groups():
    assert exit_code_of(StoreError("x")) == EXIT_STORE and exit_code_of(NodeError("x")) == EXIT_CONFIG
    assert exit_code_of(ExceptionGroup("tasks", [StoreError("disk")])) == EXIT_STORE
    assert exit_code_of(ExceptionGroup("tasks", [StoreError("disk"), RuntimeError("bug")])) is None
    assert exit_code_of(RuntimeError("bug")) is None
