"""Shared pieces of the ``popchain`` command line: the user-facing error, output (text or ``--json``), password
and wallet loading, node calls with one-line connection errors, and the common argparse options.

It does no command's work; the cli_* modules do, each over chain/, ml/, consensus/ and the node's API.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from chain.errors import PopError

DEFAULT_NODE = "http://127.0.0.1:9445"
PASSWORD_ENV = "POPCHAIN_PASSWORD"
RETRY_S = 300.0     # how long miner / wallet send wait for a node that went away (a restart)
T = TypeVar("T")


class CliError(PopError):
    """A user-facing error: printed as one line, exit status 1."""


def emit(args: argparse.Namespace, data: Any, lines: Sequence[str] | str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(lines if isinstance(lines, str) else "\n".join(lines))


def kv(data: dict[str, Any], keys: Sequence[str] | None = None) -> list[str]:
    keys = list(keys or data.keys())
    width = max(len(k) for k in keys) if keys else 0
    return [f"{k.ljust(width)}  {'-' if data.get(k) is None else data.get(k)}" for k in keys]


def read_secret_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise CliError(f"cannot read {what} file {path}: {exc.strerror}") from None


def password(args: argparse.Namespace, *, confirm: bool = False) -> str:
    """The wallet password from --password-file, $POPCHAIN_PASSWORD or a prompt. A new password (``confirm``)
    must not be empty: an empty password would encrypt the keys under a key anyone can derive."""
    if getattr(args, "password_file", None):
        value = read_secret_file(args.password_file, "password")
    elif PASSWORD_ENV in os.environ:
        value = os.environ[PASSWORD_ENV]
    elif not sys.stdin.isatty():
        raise CliError(f"no password given: use --password-file FILE or set {PASSWORD_ENV}")
    else:
        value = getpass.getpass("wallet password: ")
        if confirm and value and getpass.getpass("repeat password: ") != value:
            raise CliError("passwords do not match")
    if confirm and not value:
        raise CliError("refusing an empty wallet password: choose one (it encrypts your keys)")
    return value


def client(args: argparse.Namespace, *, retry_s: float = 0.0):
    from node.tools.client import NodeClient
    cookie = read_secret_file(args.cookie, "cookie").strip().split(":", 1)[-1] if args.cookie else None
    return NodeClient(args.node, cookie=cookie, timeout_s=30.0, retry_s=retry_s,
                      on_retry=lambda line: print(line, file=sys.stderr, flush=True))


def call(args: argparse.Namespace, fn: Callable[[Any], Awaitable[T]], *, retry_s: float = 0.0) -> T:
    """Run ``fn(client)`` against the node, turning connection problems into one-line errors."""
    return asyncio.run(acall(args, fn, retry_s=retry_s))


async def acall(args: argparse.Namespace, fn: Callable[[Any], Awaitable[T]], *, retry_s: float = 0.0) -> T:
    import aiohttp

    from node.tools.client import ApiCallError
    try:
        async with client(args, retry_s=retry_s) as c:
            return await fn(c)
    except ApiCallError as exc:
        raise CliError(f"node said {exc.code}: {exc.message}") from None
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise CliError(f"cannot reach the node at {args.node} ({type(exc).__name__}); is it running? "
                       "(--node URL)") from None
    except aiohttp.ClientError as exc:
        raise CliError(f"bad answer from the node at {args.node}: {exc}") from None


def address(text: str, what: str) -> bytes:
    from chain.address import decode_address
    from chain.errors import DecodeError
    try:
        return decode_address(text)
    except DecodeError as exc:
        raise CliError(f"{what}: {text!r} is not a valid popchain address ({exc})") from None


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_node(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", default=os.environ.get("POPCHAIN_NODE", DEFAULT_NODE),
                   help=f"node API URL (default: $POPCHAIN_NODE or {DEFAULT_NODE})")
    p.add_argument("--cookie", help="API cookie file of a node started with --api-listen (write calls)")


def add_wallet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wallet", default=os.environ.get("POPCHAIN_WALLET", "wallet.popkeys"),
                   help="wallet keyfile (default: $POPCHAIN_WALLET or ./wallet.popkeys)")
    p.add_argument("--password-file", help=f"read the password from this file (else ${PASSWORD_ENV}, else a prompt)")


def load_wallet(args: argparse.Namespace):
    from chain.wallet import Wallet
    if not Path(args.wallet).exists():
        raise CliError(f"no wallet at {args.wallet}: create one with 'popchain wallet new --wallet {args.wallet}'")
    return Wallet.load(args.wallet, password(args))


def pick_key(wallet, label: str | None):
    keys = wallet.keys()
    if not keys:
        raise CliError("the wallet has no keys: add one with 'popchain wallet new'")
    if label is None:
        return keys[0]
    for k in keys:
        if label in (k.label, k.address):
            return k
    raise CliError(f"no key '{label}' in the wallet (see 'popchain wallet list')")


class Commands:
    """Adds leaf commands to a group: ``leaf(name, help, fn, node=, wallet=, js=)`` returns the parser."""

    def __init__(self, sub: argparse._SubParsersAction) -> None:
        self.sub = sub

    def group(self, name: str, help_text: str) -> Commands:
        p = self.sub.add_parser(name, help=help_text, description=help_text)
        return Commands(p.add_subparsers(dest="action", required=True, metavar="ACTION"))

    def leaf(self, name: str, help_text: str, fn: Callable[[argparse.Namespace], Any], *, node: bool = False,
             wallet: bool = False, js: bool = True, description: str | None = None) -> argparse.ArgumentParser:
        p = self.sub.add_parser(name, help=help_text, description=description or help_text)
        p.set_defaults(fn=fn)
        if node:
            add_node(p)
        if wallet:
            add_wallet(p)
        if js:
            add_json(p)
        return p
