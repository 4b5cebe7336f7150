"""popchain command line: the argparse tree and the error policy; the commands live in node/tools/cli_*.py.

Every command's work is done by the packages; the cli_* modules only turn arguments into calls and results into
text (or JSON with ``--json``). Expected failures (bad input, wrong password, unreachable node) print one line
``popchain: error: ...`` and exit 1; a traceback would be a bug. A closed stdout (``popchain … | head``) ends
the command quietly with status 141, as coreutils do (128 + SIGPIPE).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from node.tools.cli_common import CliError, Commands

EXIT_BROKEN_PIPE = 141


def build_parser() -> argparse.ArgumentParser:
    from node.tools import cli_chain, cli_keyholder, cli_model, cli_node, cli_task, cli_wallet
    parser = argparse.ArgumentParser(prog="popchain", description="popchain: a proof-of-performance blockchain node")
    cmds = Commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    cli_node.register(cmds)      # genesis, node, miner, demo, bench
    cli_wallet.register(cmds)
    cli_model.register(cmds)     # model, audit
    cli_chain.register(cmds)
    cli_task.register(cmds)      # task create/announce/extend/list/show
    cli_keyholder.register(cmds)  # keyholder new/dkg-board/dkg
    return parser


def _quiet_broken_pipe() -> int:
    # stdout's reader went away: point stdout at /dev/null so the interpreter's final flush cannot fail again
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The typed error trees a command may raise for bad input. Only the packages a command has imported can
    raise theirs, so the check imports nothing (``import ml.errors`` alone would load numpy: ~0.5 s a command)."""
    types: list[type[BaseException]] = [CliError]
    for module, name in (("chain.errors", "PopError"), ("ml.errors", "MLError"), ("node.errors", "NodeError"),
                         ("node.tools.provenance", "ProvenanceError")):
        if module in sys.modules:
            types.append(getattr(sys.modules[module], name))
    return tuple(types)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        result = args.fn(args)
        sys.stdout.flush()
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except Exception as exc:
        expected = _expected_errors()
        if not isinstance(exc, expected + (OSError,)):
            raise
        if isinstance(exc, OSError) and not isinstance(exc, expected):   # "No such file or directory: x.csv"
            print(f"popchain: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
            return 1
        print(f"popchain: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("popchain: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
