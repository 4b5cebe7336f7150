"""One error tree (issue 19, *Why* 7): every error popchain raises on purpose derives from chain.errors.PopError,
``node run`` maps each to its documented exit code, and each exit code has exactly one constant.

On e466b38 ml.errors.MLError was not a PopError: a keyholder file with a damaged secret package made `node
run` exit 1 ("popchain: error: ...", from the CLI's catch-all) instead of 2, and node/errors.py defined exit
code 2 twice."""
from __future__ import annotations

import ast
import errno
import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chain.encoding import pack, unpack
from chain.errors import DecodeError, PopError, StateMismatch, StorageFault, StoreError
from ml.errors import MLError, ShardError, TaskError
from node import errors
from node.errors import (
    EXIT_CONFIG,
    EXIT_INCONSISTENT,
    EXIT_STORE,
    EXIT_TASK_FAILED,
    NodeError,
    TaskFailed,
    exit_code_of,
)
from node.housekeeping import DiskFull
from node.tools.testing import make_test_chain

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("chain", "ml", "consensus", "node")


def _error_classes() -> list[type[BaseException]]:
    """Every exception class defined at module level in the packages (found from the source, then imported)."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            names = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
            if not names:
                continue
            module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
            for name in names:
                obj = getattr(module, name, None)
                if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                    found.append(obj)
    return found


def test_every_error_raised_on_purpose_is_a_pop_error():
    classes = _error_classes()
    assert len(classes) > 10
    stray = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, PopError)]
    assert not stray, f"not in the PopError tree: {stray}"
    assert issubclass(MLError, PopError) and issubclass(TaskError, PopError) and issubclass(ShardError, PopError)


def test_one_constant_per_exit_code():
    codes = {name: value for name, value in vars(errors).items() if name.startswith("EXIT_") and isinstance(value, int)}
    assert len(set(codes.values())) == len(codes), codes
    assert set(codes.values()) == set(errors.EXIT_CODES)


def test_node_start_maps_each_error_to_its_documented_exit_code():
    def failed(cause: BaseException) -> TaskFailed:
        exc = TaskFailed("essential task failed")
        exc.__cause__ = cause
        return exc
    assert exit_code_of(NodeError("bad config")) == EXIT_CONFIG
    assert exit_code_of(TaskError("damaged task")) == EXIT_CONFIG         # a bad input file at start-up
    assert exit_code_of(DecodeError("bad genesis")) == EXIT_CONFIG
    assert exit_code_of(OSError(errno.EADDRINUSE, "Address already in use")) == EXIT_CONFIG
    assert exit_code_of(StoreError("unreadable")) == EXIT_STORE
    assert exit_code_of(StorageFault("LevelDB write failed")) == EXIT_STORE
    assert exit_code_of(DiskFull("disk full")) == EXIT_STORE
    assert exit_code_of(OSError(errno.ENOSPC, "No space left on device")) == EXIT_STORE
    assert exit_code_of(StateMismatch("accounts")) == EXIT_INCONSISTENT
    assert exit_code_of(failed(StorageFault("write"))) == EXIT_STORE
    assert exit_code_of(failed(StateMismatch("undo"))) == EXIT_INCONSISTENT
    assert exit_code_of(failed(RuntimeError("bug"))) == EXIT_TASK_FAILED
    assert exit_code_of(ExceptionGroup("tasks", [StoreError("disk")])) == EXIT_STORE
    assert exit_code_of(RuntimeError("bug")) is None                      # a bug keeps its traceback


@pytest.mark.timeout(120)
def test_damaged_keyholder_secret_is_exit_2_with_one_line(tmp_path):
    chain = make_test_chain(tmp_path / "chain", rounds=3)
    f = unpack(chain.keyholder_path.read_bytes(), max_size=1 << 20)
    damaged = tmp_path / "damaged.secret"
    damaged.write_bytes(pack([f[0], b"\x93\x01\x02\x03", f[2]]))   # the envelope is fine, the secret is not
    proc = subprocess.run([sys.executable, "-m", "cli", "node", "run", "--datadir", str(tmp_path / "D"),
                           "--genesis", str(chain.genesis_path), "--keyholder", str(damaged), "--port", "0",
                           "--api-port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=100, check=False,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == EXIT_CONFIG, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if " ERROR " in ln or ln.startswith("popchain: error")]
    assert len(lines) == 1 and "keyholder" in lines[0], proc.stderr
