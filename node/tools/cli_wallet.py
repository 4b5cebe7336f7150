"""``popchain wallet …``: keys (with BIP-39 recovery phrases) and transfers, over chain.wallet and the node API.

``send`` rides out a node restart (NodeClient retries connection errors with backoff and prints one status
line); ``history`` pages through the node's address index (``/api/accounts/<addr>/txs``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from chain.hdkey import DEFAULT_PATH
from node.tools.cli_common import (
    RETRY_S,
    CliError,
    Commands,
    address,
    call,
    emit,
    load_wallet,
    password,
    pick_key,
    read_secret_file,
)

DEFAULT_FEE = 1_000
NO_TASK_OPEN = ("no task is open on this chain (every task has spent its hidden shards): the transfer confirms in "
                "a ledger round once a staked miner enters one ('popchain miner run' serves them), or when a new "
                "task or an extension is announced")
PHRASE_WARNING = ("write these words down and keep them offline: they rebuild this key "
                  "('popchain wallet restore'); anyone who has them can spend its coins")


def _open_or_create(args: argparse.Namespace):
    from chain.wallet import Wallet
    path = Path(args.wallet)
    if path.exists():
        return Wallet.load(path, password(args))
    return Wallet.create(path, password(args, confirm=True))


def _passphrase(args: argparse.Namespace, *, confirm: bool) -> str:
    """The optional BIP-39 passphrase (the "25th word"): --passphrase-file FILE, --passphrase (a prompt), or ""."""
    if args.passphrase_file:
        return read_secret_file(args.passphrase_file, "passphrase")
    if not args.passphrase:
        return ""
    if not sys.stdin.isatty():
        raise CliError("--passphrase prompts for the BIP-39 passphrase: use --passphrase-file FILE without a terminal")
    import getpass
    value = getpass.getpass("BIP-39 passphrase: ")
    if confirm and getpass.getpass("repeat passphrase: ") != value:
        raise CliError("passphrases do not match")
    return value


def _path(args: argparse.Namespace) -> str:
    from chain.hdkey import format_path, parse_path
    return format_path(parse_path(args.path))       # WalletError (one line) for a malformed path


def cmd_new(args: argparse.Namespace) -> None:
    path = _path(args)
    passphrase = _passphrase(args, confirm=True)
    wallet = _open_or_create(args)
    key, phrase = wallet.new_key_with_phrase(args.label or f"key{len(wallet.keys())}", passphrase=passphrase,
                                             path=path)
    restore = f"popchain wallet restore{'' if path == DEFAULT_PATH else f' --path {path!r}'}" + (
        " --passphrase" if passphrase else "")
    emit(args, {"address": key.address, "label": key.label, "wallet": str(wallet.path), "recovery_phrase": phrase,
                "derivation": {"standard": "BIP-39 seed -> SLIP-0010 ed25519", "path": path,
                               "passphrase": bool(passphrase)}},
         [f"new key '{key.label}': {key.address}", f"wallet: {wallet.path}", "", "recovery phrase:", f"  {phrase}",
          "", (f"derivation: BIP-39 seed{' with your passphrase' if passphrase else ' (no passphrase)'} -> "
               f"SLIP-0010 ed25519 path {path}; restore with '{restore}' (or any SLIP-0010 ed25519 wallet)"),
          PHRASE_WARNING + ("; the passphrase is needed too" if passphrase else "")])


def cmd_restore(args: argparse.Namespace) -> None:
    path = _path(args)
    if args.phrase_file:
        phrase = read_secret_file(args.phrase_file, "phrase")
    elif not sys.stdin.isatty():
        phrase = sys.stdin.readline()
    else:
        import getpass
        phrase = getpass.getpass("recovery phrase (words separated by spaces): ")
    from chain.wallet import seed_from_phrase
    seed_from_phrase(phrase)   # validate the words before asking for anything else
    seed = seed_from_phrase(phrase, _passphrase(args, confirm=False), path)
    wallet = _open_or_create(args)
    key = wallet.import_seed(seed, args.label or f"key{len(wallet.keys())}")
    emit(args, {"address": key.address, "label": key.label, "wallet": str(wallet.path), "path": path},
         [f"restored key '{key.label}': {key.address} (SLIP-0010 path {path})", f"wallet: {wallet.path}"])


def cmd_list(args: argparse.Namespace) -> None:
    keys = load_wallet(args).keys()
    emit(args, [{"label": k.label, "address": k.address} for k in keys],
         [f"{k.label:<12} {k.address}" for k in keys] or ["(no keys)"])


def cmd_address(args: argparse.Namespace) -> None:
    key = pick_key(load_wallet(args), args.key)
    emit(args, {"label": key.label, "address": key.address}, key.address)


def cmd_balance(args: argparse.Namespace) -> None:
    keys = load_wallet(args).keys()

    async def fetch(client):
        return [await client.account(k.address) for k in keys]
    accounts = call(args, fetch)
    rows = [{"label": k.label, **a} for k, a in zip(keys, accounts)]
    emit(args, rows, [f"{r['label']:<12} {r['address']}  balance {r['balance']:>16,} grains  nonce {r['nonce']:,}"
                      + (f"  ({len(r['pending'])} pending)" if r["pending"] else "") for r in rows]
         or ["(no keys)"])


def chain_closed(status: dict) -> bool:
    """True when /api/status says no task is open: no block can be made until a task is announced/extended."""
    return status.get("round_phase") == "closed"


def cmd_send(args: argparse.Namespace) -> None:
    recipient = address(args.to, "--to")
    if args.amount <= 0:
        raise CliError("--amount must be a positive number of grains")
    if args.fee < 0:
        raise CliError("--fee must not be negative")
    if len(args.memo.encode()) > 64:
        raise CliError("--memo: at most 64 bytes")
    wallet = load_wallet(args)
    key = pick_key(wallet, args.key)
    out = sys.stderr if args.json else sys.stdout
    live = out.isatty()

    async def send(client):
        status = await client.status()
        account = await client.account(key.address)
        tx = wallet.transfer(key.account, status["chain_id"], recipient, args.amount, args.fee,
                             account["next_nonce"], args.memo.encode())
        await client.send_tx(tx.encode())
        txid = tx.txid.hex()
        print(f"sent {args.amount:,} grains to {args.to} (fee {args.fee:,} grains, total {args.amount + args.fee:,}; "
              f"nonce {account['next_nonce']})\ntxid {txid}", file=out, flush=True)
        if args.no_wait:
            if chain_closed(status):
                print(NO_TASK_OPEN, file=out, flush=True)
            return {"txid": txid, "status": "pending", "amount": args.amount, "fee": args.fee}
        started = time.monotonic()
        from node.tools.events_client import ChangeSignal
        async with ChangeSignal(client.base_url, kinds=("tip",)) as changes:  # wake on blocks; polls without SSE
            return await wait_confirmed(client, txid, started, changes)

    async def wait_confirmed(client, txid, started, changes):
        last = ""
        while True:
            info = await client.tx(txid)
            if info["status"] == "confirmed":
                print(("\r\033[K" if live else "") + f"confirmed in block {info['height']:,} after "
                      f"{time.monotonic() - started:.0f} s ({info.get('confirmations', 1):,} confirmation(s); "
                      f"fee {args.fee:,} grains paid)", file=out, flush=True)
                return {"txid": txid, "status": "confirmed", "height": info["height"], "block": info.get("block"),
                        "amount": args.amount, "fee": args.fee, "time": info.get("time"),
                        "confirmations": info.get("confirmations")}
            s = await client.status()
            closed = chain_closed(s)
            if time.monotonic() - started > args.timeout:
                why = f"; {NO_TASK_OPEN}" if closed else ""
                raise CliError(f"not confirmed after {args.timeout:.0f} s (still {info['status']}{why}); txid {txid}")
            line = (NO_TASK_OPEN if closed else
                    f"waiting for a block: round {s['round']} ({s['round_phase']}), height {s['height']}")
            if live:
                print(f"\r{line}, {time.monotonic() - started:.0f} s\033[K", end="", file=out, flush=True)
            elif line != last:     # a log or a pipe: one line per change, not a line per poll
                print(line, file=out, flush=True)
            last = line
            await changes.wait(changes.interval(0.5, live_s=1.0))
    result = call(args, send, retry_s=args.retry)
    if args.json:
        emit(args, result, "")


def cmd_history(args: argparse.Namespace) -> None:
    """The wallet keys' confirmed transfers, newest first, from the node's address index (one request per
    page of --limit rows per key; --before CURSOR continues where a previous listing stopped)."""
    keys = load_wallet(args).keys()
    if args.limit < 1:
        raise CliError("--limit must be at least 1")

    async def fetch(client):
        rows = []
        for k in keys:
            page = await client.account_txs(k.address, limit=args.limit, before=args.before)
            rows += [{"key": k.label, "address": k.address, "next": page["next"], **t} for t in page["txs"]]
        rows.sort(key=lambda r: (r["height"], r["position"]), reverse=True)
        return rows[:args.limit]
    rows = call(args, fetch)
    arrow = {"sent": "->", "received": "<-", "self": "<>"}

    def line(r: dict) -> str:
        tx = r["tx"]
        other = tx["to_address"] if r["direction"] == "sent" else tx["from_address"]
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"])) if r.get("time") else "-"
        return (f"{r['height']:>8,}  {stamp}  {r.get('confirmations', 0):>6,} conf.  {tx['txid'][:16]}  "
                f"{r['key']:<10} {arrow[r['direction']]} {other}  {tx['amount']:>14,} grains  fee {tx['fee']:,}")
    emit(args, rows, [line(r) for r in rows] or ["(no confirmed transfers)"])


def _phrase_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--path", default=DEFAULT_PATH,
                   help=f"SLIP-0010 ed25519 derivation path, hardened levels only (default {DEFAULT_PATH!r}: the "
                        "master key of the phrase's BIP-39 seed; e.g. m/44'/9444'/0')")
    p.add_argument("--passphrase", action="store_true", help="prompt for an optional BIP-39 passphrase")
    p.add_argument("--passphrase-file", metavar="FILE", help="read the BIP-39 passphrase from this file")


def register(cmds: Commands) -> None:
    g = cmds.group("wallet", "keys and transfers (encrypted keyfile)")
    p = g.leaf("new", "create the wallet if needed and add a key (shows its recovery phrase)", cmd_new, wallet=True)
    p.add_argument("--label", help="a name for the key")
    _phrase_options(p)
    p = g.leaf("restore", "rebuild a key from its recovery phrase into the wallet", cmd_restore, wallet=True)
    p.add_argument("--phrase-file", help="read the phrase from this file (else stdin or a prompt)")
    p.add_argument("--label", help="a name for the key")
    _phrase_options(p)
    g.leaf("list", "list the wallet's keys", cmd_list, wallet=True)
    p = g.leaf("address", "print a key's address", cmd_address, wallet=True)
    p.add_argument("key", nargs="?", help="label or address (default: first key)")
    g.leaf("balance", "balances and nonces of the wallet's keys", cmd_balance, node=True, wallet=True)
    p = g.leaf("send", "send a transfer and wait for its confirmation", cmd_send, node=True, wallet=True)
    p.add_argument("--to", required=True, help="recipient address (pop1...)")
    p.add_argument("--amount", required=True, type=int, help="amount in grains")
    p.add_argument("--fee", type=int, default=DEFAULT_FEE, help=f"fee in grains (default {DEFAULT_FEE})")
    p.add_argument("--memo", default="", help="memo (at most 64 bytes)")
    p.add_argument("--key", help="sending key label or address (default: first key)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the confirmation")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the confirmation")
    p.add_argument("--retry", type=float, default=RETRY_S, metavar="SECONDS",
                   help=f"keep retrying an unreachable node this long (default {RETRY_S:.0f}; 0 = fail at once)")
    p = g.leaf("history", "confirmed transfers of the wallet's keys, newest first", cmd_history, node=True,
               wallet=True)
    p.add_argument("--limit", type=int, default=50, help="rows to show (default 50, at most 500)")
    p.add_argument("--before", metavar="CURSOR", help="continue before this cursor (a row's 'next' in --json) or "
                                                      "below this height")
