"""``python -m node run ...``: run a popchain node (see node.config for the options)."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import logging.handlers
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from chain.errors import StoreError
from node.config import NodeConfig, add_node_run_arguments, describe, resolve
from node.errors import (
    EXIT_CONFIG,
    EXIT_STORE,
    EXIT_TASK_FAILED,
    NodeError,
    TaskFailed,
    exit_code_of,
    first_line,
)

if TYPE_CHECKING:
    from node.node import Node


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO 8601, UTC), level, logger, msg (+ exc when there is a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        import datetime
        out = {"ts": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                   timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(config: NodeConfig) -> None:
    """node.log in the datadir, rotated by size (RotatingFileHandler: log_max_bytes, log_backups old files),
    and stderr; text or JSON lines (``--log-format``)."""
    root = logging.getLogger("popchain")
    root.setLevel(config.log_level.upper())
    fmt: logging.Formatter = (JsonFormatter() if config.log_format == "json"
                              else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    config.datadir.mkdir(parents=True, exist_ok=True)
    fh = logging.handlers.RotatingFileHandler(config.datadir / "node.log", maxBytes=config.log_max_bytes,
                                              backupCount=config.log_backups)
    fh.setFormatter(fmt)
    root.addHandler(fh)
    if config.log_to_stderr:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        root.addHandler(sh)


def start(args: argparse.Namespace, error_prefix: str) -> int:
    """``node run``: resolve the settings (or print them with --print-config), set up logging, run."""
    try:
        config, sources = resolve(args)
    except NodeError as exc:
        print(f"{error_prefix}{exc}", file=sys.stderr)
        return EXIT_CONFIG
    if getattr(args, "print_config", False):
        print("\n".join(describe(config, sources)))
        return 0
    setup_logging(config)
    return asyncio.run(run_node(config))


async def run_node(config: NodeConfig, node: "Node | None" = None) -> int:
    """Run a node (``node``, or a new one from ``config``) until SIGINT/SIGTERM. Returns a process exit code
    (node.errors: 0 after a clean stop, 2 configuration or genesis, 3 storage fault, 5 an essential task died)
    with the reason as one log line, never a traceback."""
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
        if isinstance(exc.__cause__, StoreError):  # an essential task hit a storage fault: the store's code
            logging.getLogger("popchain.node").critical("node stopped: %s (storage fault, exit %d)", exc, EXIT_STORE)
            return EXIT_STORE
        logging.getLogger("popchain.node").critical("node stopped: %s (exit %d)", exc, EXIT_TASK_FAILED)
        return EXIT_TASK_FAILED
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
    return start(args, "error: ")


if __name__ == "__main__":
    raise SystemExit(main())
