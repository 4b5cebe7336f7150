"""``python -m node run ...``: run a popchain node (see node.config for the options)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from node.config import NodeConfig, add_node_run_arguments, config_from_args
from node.datadir import Datadir
from node.errors import EXIT_CONFIG, EXIT_STORE, NodeError, exit_code_of, first_line


def setup_logging(config: NodeConfig) -> None:
    root = logging.getLogger("popchain")
    root.setLevel(config.log_level.upper())
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    config.datadir.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(config.datadir / "node.log")
    fh.setFormatter(fmt)
    root.addHandler(fh)
    if config.log_to_stderr:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        root.addHandler(sh)


async def run_node(config: NodeConfig) -> int:
    """Run a node until SIGINT/SIGTERM. Returns a process exit code (node.errors: 0, 2 configuration or
    genesis, 3 storage fault) with the reason as one log line, never a traceback."""
    from node.node import Node
    node = Node(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, node.stop)
        except (NotImplementedError, RuntimeError):  # not the main thread (embedded use)
            pass
    try:
        await node.run()
    except Exception as exc:  # noqa: BLE001 -- only the documented ones are caught, see exit_code_of
        code = exit_code_of(exc)
        if code is None:
            raise
        hint = (f" (storage fault: see `popchain node verify --datadir {config.datadir}`; a database LevelDB "
                "cannot read must be restored from a backup or moved away and resynced)") if code == EXIT_STORE else ""
        logging.getLogger("popchain.node").error("%s%s", first_line(exc), hint)
        return code
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node", description="popchain node")
    sub = parser.add_subparsers(dest="command", required=True)
    add_node_run_arguments(sub.add_parser("run", help="run a node"))
    args = parser.parse_args(argv)
    try:
        file_config = Datadir(args.datadir).load_config() if args.datadir.exists() else {}
        config = config_from_args(args, file_config)
    except NodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config)
    return asyncio.run(run_node(config))


if __name__ == "__main__":
    raise SystemExit(main())
