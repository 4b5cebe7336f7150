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
from typing import TYPE_CHECKING, Any

from node.config import NodeConfig, add_node_run_arguments, describe, resolve
from node.errors import (
    EXIT_CONFIG,
    EXIT_INCONSISTENT,
    EXIT_STORE,
    EXIT_TASK_FAILED,
    NodeError,
    TaskFailed,
    exit_code_of,
    first_line,
)

if TYPE_CHECKING:
    from node.node import Node


async def _freeze_startup_heap(node: Node) -> None:
    """Once the node is up, move everything it allocated so far (imported modules, the chain's caches) out of
    the cyclic GC's reach (gc.freeze): a full collection then scans what the node allocates while running, not
    the ~1M long-lived startup objects every time (20-40 ms a collection otherwise, in the middle of relaying).
    Only in the node process (not InProcessNode: a test process would freeze its own garbage)."""
    import gc
    await node.started.wait()
    gc.freeze()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO 8601, UTC), level, logger, msg (+ exc when there is a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        import datetime
        out = {"ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                   timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class _LogFile(logging.handlers.RotatingFileHandler):
    """node.log; a write that fails (disk full, no descriptors) is reported once on stderr as one line, not as
    a traceback per record, and the node keeps logging to stderr."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.failed = True
            exc = sys.exc_info()[1]
            why = (exc.strerror if isinstance(exc, OSError) else None) or exc or "unknown error"
            try:
                print(f"popchain: cannot write {self.baseFilename} ({why}); logging to stderr only",
                      file=sys.stderr)
            except OSError:
                pass


def setup_logging(config: NodeConfig) -> None:
    """node.log in the datadir, rotated by size (RotatingFileHandler: log_max_bytes, log_backups old files),
    and stderr; text or JSON lines (``--log-format``)."""
    root = logging.getLogger("popchain")
    root.setLevel(config.log_level.upper())
    fmt: logging.Formatter = (JsonFormatter() if config.log_format == "json"
                              else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    config.datadir.mkdir(parents=True, exist_ok=True)
    fh = _LogFile(config.datadir / "node.log", maxBytes=config.log_max_bytes, backupCount=config.log_backups)
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
    from node.memory import tune
    tune()   # before any thread starts (node.memory)
    try:
        setup_logging(config)
    except OSError as exc:
        code = exit_code_of(exc) or EXIT_CONFIG
        print(f"{error_prefix}cannot set up logging in {config.datadir}: {first_line(exc)}", file=sys.stderr)
        return code
    return asyncio.run(run_node(config, freeze_heap=True))


def _loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's own errors (an accept() that ran out of descriptors, a transport that failed) as one log line
    each, once per kind of message: the node goes on (node.gate keeps descriptors free)."""
    exc = context.get("exception")
    text = f"{context.get('message', 'asyncio error')}: {first_line(exc) if exc is not None else ''}".rstrip(": ")
    if text not in _LOOP_ERRORS_SEEN and len(_LOOP_ERRORS_SEEN) < 100:
        _LOOP_ERRORS_SEEN.add(text)
        logging.getLogger("popchain.node").warning("event loop: %s", text)


_LOOP_ERRORS_SEEN: set[str] = set()


def _advice(code: int, config: NodeConfig, line: str) -> str:
    """What to do, unless the message already says it."""
    if "popchain node" in line or "restore" in line or "start it again" in line:
        return ""
    if code == EXIT_STORE and "No space left" in line:
        return "; the disk is full: free some space and start the node again (what was stored is intact)"
    if code == EXIT_STORE:
        return (f"; see `popchain node verify --datadir {config.datadir}` — a database LevelDB cannot read must "
                "be restored from a backup, or moved away and resynced")
    if code == EXIT_INCONSISTENT:
        return f"; run `popchain node reindex --datadir {config.datadir}`"
    return ""


async def run_node(config: NodeConfig, node: Node | None = None, *, freeze_heap: bool = False) -> int:
    """Run a node (``node``, or a new one from ``config``) until SIGINT/SIGTERM. Returns a process exit code
    (node.errors: 0 after a clean stop, 2 cannot start, 3 storage fault, 4 state does not match the chain,
    5 an essential task died) with the reason as one log line; a traceback only for a bug. ``freeze_heap``: the
    node owns this process (``python -m node run``): freeze its startup heap once it is up (_freeze_startup_heap)."""
    from node.node import Node
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_loop_exception_handler)
    log = logging.getLogger("popchain.node")
    try:
        node = node if node is not None else Node(config)
    except Exception as exc:
        code = exit_code_of(exc)
        if code is None:
            raise
        log.error("%s%s", first_line(exc), _advice(code, config, first_line(exc)))
        return code
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, node.stop)
        except (NotImplementedError, RuntimeError):  # not the main thread (embedded use)
            pass
    freezer = asyncio.create_task(_freeze_startup_heap(node)) if freeze_heap else None
    try:
        await node.run()
    except Exception as exc:
        code = exit_code_of(exc)
        if code is None:
            raise
        if isinstance(exc, TaskFailed):
            cause = exc.__cause__
            line = first_line(cause) if code != EXIT_TASK_FAILED and cause is not None else first_line(exc)
            log.error("node stopped: %s%s (exit %d)", line, _advice(code, config, line), code)
        else:
            line = first_line(exc)
            log.error("%s%s", line, _advice(code, config, line))
        return code
    finally:
        if freezer is not None:
            freezer.cancel()
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
