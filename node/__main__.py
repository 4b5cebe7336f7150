"""``python -m node run ...``: run a popchain node (see node.config for the options)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from node.config import NodeConfig, add_node_run_arguments, config_from_args
from node.datadir import Datadir
from node.errors import EXIT_START_FAILED, EXIT_TASK_FAILED, NodeError, TaskFailed

if TYPE_CHECKING:
    from node.node import Node


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


async def run_node(config: NodeConfig, node: "Node | None" = None) -> int:
    """Run a node (``node``, or a new one from ``config``) until SIGINT/SIGTERM. Returns a process exit code:
    0 after a clean stop, EXIT_START_FAILED (2) if it could not start, EXIT_TASK_FAILED (5) if an essential
    task died (node.supervisor)."""
    from node.node import Node
    node = node if node is not None else Node(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, node.stop)
        except (NotImplementedError, RuntimeError):  # not the main thread (embedded use)
            pass
    try:
        await node.run()
    except TaskFailed as exc:
        logging.getLogger("popchain.node").critical("node stopped: %s (exit %d)", exc, EXIT_TASK_FAILED)
        return EXIT_TASK_FAILED
    except NodeError as exc:
        logging.getLogger("popchain.node").error("%s", exc)
        return EXIT_START_FAILED
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
        return 2
    setup_logging(config)
    return asyncio.run(run_node(config))


if __name__ == "__main__":
    raise SystemExit(main())
