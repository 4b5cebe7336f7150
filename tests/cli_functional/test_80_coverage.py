"""The walkers: every leaf command of cli's argparse tree has a functional test (the ``covers`` registry of
helpers.py, filled by importing every test file of this package) and every documented option appears in a test
or in README's walkthrough."""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli_functional.helpers import COVERED
from tests.test_cli_e2e import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
OTHER_CLI_TESTS = ("tests/test_cli_e2e.py", "tests/test_living_chain.py", "tests/test_task_end.py",
                   "tests/test_task_cli.py", "tests/cli_net.py", "tests/test_miner_field.py",
                   "tests/test_dataset_tasks.py", "tests/test_node_keyholders.py", "tests/test_node_storage_honesty.py",
                   "tests/test_node_prune.py", "tests/test_blobs_net.py", "tests/test_bench_only.py")
HERE = Path(__file__).resolve().parent


def _package_tests() -> list[Path]:
    """Every test file of this package, imported (so that its ``covers`` marks are registered even when this
    file runs alone)."""
    for info in pkgutil.iter_modules([str(HERE)]):
        if info.name.startswith("test_"):
            importlib.import_module(f"{__package__}.{info.name}")
    return sorted(HERE.glob("*.py"))


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
    _package_tests()
    leaves = dict(_leaves(build_parser()))
    missing = sorted(set(leaves) - set(COVERED))
    assert not missing, f"leaf commands without a functional test: {missing}"
    assert not set(COVERED) - set(leaves), "registry names a command that does not exist"
    for command, tests in COVERED.items():
        for t in tests:
            path, _, name = t.rpartition("::")
            assert f"def {name}(" in (ROOT / path).read_text(), (command, t)


def test_every_documented_flag_appears_in_a_test() -> None:
    from cli import build_parser
    from tests.walkthrough import script_text
    text = "".join(p.read_text() for p in _package_tests()) + "".join((ROOT / f).read_text() for f in OTHER_CLI_TESTS)
    readme = script_text().replace("\\\n", " ").splitlines()     # the walkthrough's commands, one a line

    def in_readme(command: str, opt: str) -> bool:
        return any(f"popchain {command} " in line and f" {opt}" in line for line in readme)
    missing = []
    for command, parser in _leaves(build_parser()):
        for action in parser._actions:
            for opt in action.option_strings:
                if opt.startswith("--") and opt != "--help" and f'"{opt}"' not in text and not in_readme(command, opt):
                    missing.append(f"{command} {opt}")
    assert not missing, f"options no test passes: {missing}"
