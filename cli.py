"""popchain command line: the argparse tree and the error policy; the commands live in node/tools/cli_*.py.

Every command's work is done by the packages; the cli_* modules only turn arguments into calls and results into
text (or JSON with ``--json``). Expected failures — every error popchain raises on purpose is a
chain.errors.PopError (the one error tree), plus the OS's own (a missing file) — print one line ``popchain:
error: ...`` and exit EXIT_FAILURE (1); a traceback would be a bug. Commands with documented exit codes of their
own (``node run``, ``node verify``/``reindex``, ``miner run``) return them; every code is one constant in
node.errors. A closed stdout (``popchain … | head``) ends the command quietly with status 141, as coreutils do
(128 + SIGPIPE).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from chain.errors import PopError
from node.errors import EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_INTERRUPTED
from node.tools.cli_common import Commands


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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        result = args.fn(args)
        sys.stdout.flush()
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except PopError as exc:
        print(f"popchain: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:   # "No such file or directory: x.csv"
        print(f"popchain: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("popchain: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
