"""popchain command line: a thin layer of parsing, prompts and printing over chain/, ml/, consensus/ and node/.

Every command's work is done by the packages; this module only turns arguments into calls and results into
text (or JSON with ``--json``). Expected failures (bad input, wrong password, unreachable node) print one line
``popchain: error: ...`` and exit 1; a traceback would be a bug.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_NODE = "http://127.0.0.1:9445"
PASSWORD_ENV = "POPCHAIN_PASSWORD"
DEFAULT_FEE = 1_000


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


# --------------------------------------------------------------------------- small helpers


def _emit(args: argparse.Namespace, data: Any, lines: Sequence[str] | str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(lines if isinstance(lines, str) else "\n".join(lines))


def _kv(data: dict[str, Any], keys: Sequence[str] | None = None) -> list[str]:
    keys = list(keys or data.keys())
    width = max(len(k) for k in keys) if keys else 0
    return [f"{k.ljust(width)}  {data.get(k)}" for k in keys]


def _password(args: argparse.Namespace, *, confirm: bool = False) -> str:
    if getattr(args, "password_file", None):
        try:
            return Path(args.password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise CliError(f"cannot read password file {args.password_file}: {exc.strerror}") from None
    if PASSWORD_ENV in os.environ:
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise CliError(f"no password given: use --password-file FILE or set {PASSWORD_ENV}")
    password = getpass.getpass("wallet password: ")
    if confirm and getpass.getpass("repeat password: ") != password:
        raise CliError("passwords do not match")
    return password


def _client(args: argparse.Namespace):
    from node.tools.client import NodeClient
    cookie = Path(args.cookie).read_text().strip().split(":", 1)[-1] if args.cookie else None
    return NodeClient(args.node, cookie=cookie, timeout_s=30.0)


async def _call(args: argparse.Namespace, fn):
    """Run ``fn(client)`` against the node, turning connection problems into one-line errors."""
    import aiohttp

    from node.tools.client import ApiCallError
    try:
        async with _client(args) as client:
            return await fn(client)
    except ApiCallError as exc:
        raise CliError(f"node said {exc.code}: {exc.message}") from None
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise CliError(f"cannot reach the node at {args.node} ({type(exc).__name__}); is it running? "
                       "(--node URL)") from None


def _address(text: str, what: str) -> bytes:
    from chain.address import decode_address
    from chain.errors import DecodeError
    try:
        return decode_address(text)
    except DecodeError as exc:
        raise CliError(f"{what}: {text!r} is not a valid popchain address ({exc})") from None


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _add_node(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", default=os.environ.get("POPCHAIN_NODE", DEFAULT_NODE),
                   help=f"node API URL (default: $POPCHAIN_NODE or {DEFAULT_NODE})")
    p.add_argument("--cookie", help="API cookie file of a node started with --api-listen (write calls)")


def _add_wallet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wallet", default=os.environ.get("POPCHAIN_WALLET", "wallet.popkeys"),
                   help="wallet keyfile (default: $POPCHAIN_WALLET or ./wallet.popkeys)")
    p.add_argument("--password-file", help=f"read the password from this file (else ${PASSWORD_ENV}, else a prompt)")


def _load_wallet(args: argparse.Namespace):
    from chain.wallet import Wallet
    if not Path(args.wallet).exists():
        raise CliError(f"no wallet at {args.wallet}: create one with 'popchain wallet new --wallet {args.wallet}'")
    return Wallet.load(args.wallet, _password(args))


# --------------------------------------------------------------------------- genesis


def cmd_genesis_create(args: argparse.Namespace) -> None:
    from consensus.genesis import GenesisParams
    from node.tools.genesis_setup import create_genesis_files, public_dataset_warning
    allocations = []
    for item in args.alloc:
        address, sep, amount = item.partition("=")
        if not sep or not amount.isdigit():
            raise CliError(f"--alloc {item!r}: expected ADDRESS=AMOUNT (amount in grains)")
        allocations.append((_address(address, f"--alloc {item!r}"), int(amount)))
    if not allocations:
        raise CliError("no --alloc ADDRESS=AMOUNT: nobody could hold the entrant balance, so no miner could "
                       "ever enter a round")
    try:
        params = GenesisParams(entry_window_s=args.entry_window, opening_window_s=args.opening_window)
    except ValueError as exc:
        raise CliError(str(exc).replace("GenesisParams.entry_window_s", "--entry-window")
                       .replace("GenesisParams.opening_window_s", "--opening-window")) from None
    if sys.stderr.isatty():  # progress for a person; scripts get stdout and, on failure, one error line
        print("sizing hidden shards (exact sign test, 80 % power) and building genesis ...", file=sys.stderr)
    out = create_genesis_files(Path(args.out), task=args.task, label_column=args.label_column, rounds=args.rounds,
                               shard_size=args.shard_size, detect=args.detect, allocations=allocations,
                               chain_id=args.chain_id, params=params, drift_milli=args.drift_milli)
    if (warning := public_dataset_warning(args.task)) is not None:
        print(f"popchain: warning: {warning}", file=sys.stderr)
    det = out["detectable"]
    alpha = out["alpha"][0] / out["alpha"][1]
    detect_text = (f"+{det:.2%} accuracy with 80 % power (10 % disagreement, α = {alpha:.1%} over E = "
                   f"{out['max_entries']} entries)" if det is not None else
                   "no improvement reaches 80 % power at this shard size")
    allowed = ("generated shards: as many as genesis lists" if out["rounds_allowed"] is None
               else f"the data allows {out['rounds_allowed']}")
    _emit(args, out, [
        f"genesis hash   {out['genesis_hash']}",
        f"chain id       {out['chain_id']}",
        f"task           {out['task']} ({out['rounds']} rounds x {out['shard_size']} hidden samples"
        f"{', generated' if out['generated'] else ''}, {out['n_train']} public training rows)",
        f"detects        {detect_text}",
        f"rounds         {out['rounds']} ({allowed}); genesis is {out['genesis_bytes']:,} bytes",
        f"genesis file   {out['genesis']}    -> give to every node operator",
        f"keyholder file {out['keyholder']}  -> give ONLY to the keyholder (secret; mode 0600)",
        f"held-out test  {out['holdout']}    -> keep: untouched test split to judge the champion",
    ])


# --------------------------------------------------------------------------- node


def cmd_node_run(args: argparse.Namespace) -> int:
    from node.__main__ import run_node, setup_logging
    from node.config import config_from_args
    from node.datadir import Datadir
    file_config = Datadir(args.datadir).load_config() if args.datadir.exists() else {}
    config = config_from_args(args, file_config)
    setup_logging(config)
    return asyncio.run(run_node(config))


# --------------------------------------------------------------------------- wallet


def cmd_wallet_new(args: argparse.Namespace) -> None:
    from chain.wallet import Wallet
    path = Path(args.wallet)
    wallet = Wallet.load(path, _password(args)) if path.exists() else Wallet.create(path, _password(args, confirm=True))
    key = wallet.new_key(args.label or f"key{len(wallet.keys())}")
    _emit(args, {"address": key.address, "label": key.label, "wallet": str(path)},
          [f"new key '{key.label}': {key.address}", f"wallet: {path}"])


def cmd_wallet_list(args: argparse.Namespace) -> None:
    keys = _load_wallet(args).keys()
    _emit(args, [{"label": k.label, "address": k.address} for k in keys],
          [f"{k.label:<12} {k.address}" for k in keys] or ["(no keys)"])


def _pick_key(wallet, label: str | None):
    keys = wallet.keys()
    if not keys:
        raise CliError("the wallet has no keys: add one with 'popchain wallet new'")
    if label is None:
        return keys[0]
    for k in keys:
        if label in (k.label, k.address):
            return k
    raise CliError(f"no key '{label}' in the wallet (see 'popchain wallet list')")


def cmd_wallet_address(args: argparse.Namespace) -> None:
    key = _pick_key(_load_wallet(args), args.key)
    _emit(args, {"label": key.label, "address": key.address}, key.address)


def cmd_wallet_balance(args: argparse.Namespace) -> None:
    keys = _load_wallet(args).keys()

    async def fetch(client):
        return [await client.account(k.address) for k in keys]
    accounts = asyncio.run(_call(args, fetch))
    rows = [{"label": k.label, **a} for k, a in zip(keys, accounts)]
    _emit(args, rows, [f"{r['label']:<12} {r['address']}  balance {r['balance']:>16,}  nonce {r['nonce']}"
                       + (f"  ({len(r['pending'])} pending)" if r["pending"] else "") for r in rows])


def cmd_wallet_send(args: argparse.Namespace) -> None:
    recipient = _address(args.to, "--to")
    if args.amount <= 0:
        raise CliError("--amount must be a positive number of grains")
    wallet = _load_wallet(args)
    key = _pick_key(wallet, args.key)

    async def send(client):
        status = await client.status()
        account = await client.account(key.address)
        tx = wallet.transfer(key.account, status["chain_id"], recipient, args.amount, args.fee,
                             account["next_nonce"], args.memo.encode())
        await client.send_tx(tx.encode())
        txid = tx.txid.hex()
        print(f"sent {args.amount:,} grains to {args.to}\ntxid {txid}", file=sys.stderr if args.json else sys.stdout)
        if args.no_wait:
            return {"txid": txid, "status": "pending"}
        started = time.monotonic()
        while True:
            info = await client.tx(txid)
            if info["status"] == "confirmed":
                if not args.json:
                    print(f"\rconfirmed in block {info['height']} after {time.monotonic() - started:.0f} s" + " " * 20)
                return {"txid": txid, "status": "confirmed", "height": info["height"]}
            if time.monotonic() - started > args.timeout:
                raise CliError(f"not confirmed after {args.timeout:.0f} s (still {info['status']}); txid {txid}")
            if not args.json:
                s = await client.status()
                print(f"\rwaiting for a block: round {s['round']} ({s['round_phase']}), height {s['height']}, "
                      f"{time.monotonic() - started:.0f} s ", end="", flush=True)
            await asyncio.sleep(0.5)
    result = asyncio.run(_call(args, send))
    if args.json:
        _emit(args, result, "")


def cmd_wallet_history(args: argparse.Namespace) -> None:
    keys = {k.address for k in _load_wallet(args).keys()}

    async def scan(client):
        tip = (await client.status())["height"]
        rows = []
        for height in range(tip, max(0, tip - args.blocks), -1):
            block = await client.block(height)
            for tx in block["txs"]:
                if tx["from"] in keys or tx["to"] in keys:
                    rows.append({"height": height, **tx})
        return rows
    rows = asyncio.run(_call(args, scan))
    _emit(args, rows, [f"{r['height']:>6}  {r['txid'][:16]}  {r['from'][:14]}… -> {r['to'][:14]}…  "
                       f"{r['amount']:>14,}  fee {r['fee']}" for r in rows] or ["(no transfers in the scanned blocks)"])


# --------------------------------------------------------------------------- miner


def cmd_miner_run(args: argparse.Namespace) -> int:
    from node.tools.miner import run_miner_cli
    wallet = _load_wallet(args)
    key = _pick_key(wallet, args.key)
    return asyncio.run(run_miner_cli(args.node, wallet.keypair(key.account), family=args.model,
                                     rounds=args.rounds, as_json=args.json))


# --------------------------------------------------------------------------- model


def _champion_line(c: dict[str, Any]) -> str:
    return (f"round {c.get('round')}  height {c.get('height')}  model {c.get('model_hash', '')[:16]}…  "
            f"b {c.get('b')}  c {c.get('c')}  bar {c.get('bar', 0)}  miner {c.get('miner_address', '')}")


def cmd_model_champion(args: argparse.Namespace) -> None:
    data = asyncio.run(_call(args, lambda c: c.champion()))
    _emit(args, data["champion"], _kv(data["champion"]))


def cmd_model_history(args: argparse.Namespace) -> None:
    data = asyncio.run(_call(args, lambda c: c.champion()))
    _emit(args, data["history"], [_champion_line(c) for c in data["history"]])


def cmd_model_get(args: argparse.Namespace) -> None:
    raw = asyncio.run(_call(args, lambda c: c.model(args.hash)))
    Path(args.out).write_bytes(raw)
    _emit(args, {"hash": args.hash, "out": args.out, "bytes": len(raw)}, f"wrote {len(raw):,} bytes to {args.out}")


def cmd_model_predict(args: argparse.Namespace) -> None:
    from consensus.genesis import load_genesis
    from ml.predictor import PopPredictor
    from ml.task import read_feature_csv

    async def fetch(client):
        genesis = load_genesis(await client.genesis())
        champ = (await client.champion())["champion"]
        return genesis, champ, await client.model(champ["model_hash"])
    genesis, champ, raw = asyncio.run(_call(args, fetch))
    spec = genesis.task.spec
    X, y = read_feature_csv(args.input, spec, label_column=args.label_column)
    predictor = PopPredictor.from_bytes(raw, spec, genesis.model_caps)
    pred = predictor.predict(X)
    names = [spec.classes[i] for i in pred]
    if args.out:
        Path(args.out).write_text("prediction\n" + "".join(f"{n}\n" for n in names))
    result: dict[str, Any] = {"rows": len(names), "champion": champ["model_hash"], "out": args.out}
    lines = [f"{len(names)} predictions by champion {champ['model_hash'][:16]}… (round {champ.get('round')})"]
    if y is not None:
        result["accuracy"] = float((pred == y).mean())
        lines.append(f"accuracy on the labelled rows: {result['accuracy']:.4f}")
    if args.out:
        lines.append(f"written to {args.out}")
    else:
        lines += names[:20] + ([f"... ({len(names) - 20} more; use --out FILE)"] if len(names) > 20 else [])
    _emit(args, result, lines)


# --------------------------------------------------------------------------- chain


def cmd_chain_info(args: argparse.Namespace) -> None:
    s = asyncio.run(_call(args, lambda c: c.status()))
    _emit(args, s, _kv(s, ["chain_id", "genesis", "height", "tip", "round", "round_phase", "rounds_total",
                           "peers", "mempool", "syncing"]) + ["champion      " + _champion_line(s["champion"])])


def cmd_chain_block(args: argparse.Namespace) -> None:
    b = asyncio.run(_call(args, lambda c: c.block(args.id)))
    h = b["header"]
    _emit(args, b, _kv({"hash": b["hash"], **h, "txs": len(b["txs"]), "model_size": b["model_size"]},
                       ["hash", "height", "round", "prev_hash", "timestamp", "miner", "state_root", "model_hash",
                        "txs", "model_size"]))


def cmd_chain_tx(args: argparse.Namespace) -> None:
    t = asyncio.run(_call(args, lambda c: c.tx(args.id)))
    _emit(args, t, _kv({"status": t["status"], "height": t.get("height"), **t["tx"]}))


def cmd_chain_round(args: argparse.Namespace) -> None:
    r = asyncio.run(_call(args, lambda c: c.round(args.round)))
    shown = {k: v for k, v in r.items() if k not in ("notice", "beacon")}
    _emit(args, r, _kv(shown))


# --------------------------------------------------------------------------- demo and bench


def cmd_demo(args: argparse.Namespace) -> int:
    from node.tools.demo import run_demo
    return run_demo(rounds=args.rounds, nodes=args.nodes, keep=args.keep, workdir=args.dir)


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.harness import main as bench_main
    return bench_main(quick=args.quick, as_json=args.json)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="popchain", description="popchain: a proof-of-performance blockchain node")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def group(name: str, help_text: str) -> argparse._SubParsersAction:
        p = sub.add_parser(name, help=help_text, description=help_text)
        return p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def leaf(g: argparse._SubParsersAction, name: str, help_text: str, fn, *, node=False, wallet=False, js=True):
        p = g.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(fn=fn)
        if node:
            _add_node(p)
        if wallet:
            _add_wallet(p)
        if js:
            _add_json(p)
        return p

    g = group("genesis", "create a new chain")
    p = leaf(g, "create", "write a genesis file + keyholder secret from a task", cmd_genesis_create)
    p.add_argument("--task", default="synthetic",
                   help="synthetic | digits | breast_cancer | wine | iris | csv:PATH (default synthetic)")
    p.add_argument("--label-column", default="label", help="label column of a csv: task (default 'label')")
    p.add_argument("--rounds", type=int, help="hidden shards = rounds (default: 100 for synthetic; for a dataset, "
                                              "shards from about half its rows)")
    p.add_argument("--shard-size", type=int, help="samples per hidden shard (default: sized by --detect)")
    p.add_argument("--detect", type=float, default=0.01,
                   help="size shards so that a challenger this much more accurate (0.01 = +1 pp, at 10 %% "
                        "disagreement) is crowned with 80 %% power (default 0.01)")
    p.add_argument("--drift-milli", type=int, default=0,
                   help="synthetic task only: move the generator's cluster centres by ~N/1000 units from shard to "
                        "shard (default 0: one distribution)")
    p.add_argument("--alloc", action="append", default=[], metavar="ADDRESS=AMOUNT",
                   help="genesis allocation (at least one: miners need the entrant balance)")
    p.add_argument("--chain-id", help="chain id (default: popchain-<random>)")
    p.add_argument("--entry-window", type=int, default=4, help="entry window W in seconds (default 4)")
    p.add_argument("--opening-window", type=int, default=4, help="opening window O in seconds (default 4)")
    p.add_argument("--out", required=True, help="output directory")

    g = group("node", "run a node")
    from node.config import add_node_run_arguments
    p = g.add_parser("run", help="run a node (Ctrl-C stops it cleanly)")
    add_node_run_arguments(p)
    p.set_defaults(fn=cmd_node_run)

    g = group("wallet", "keys and transfers (encrypted keyfile)")
    p = leaf(g, "new", "create the wallet if needed and add a key", cmd_wallet_new, wallet=True)
    p.add_argument("--label", help="a name for the key")
    leaf(g, "list", "list the wallet's keys", cmd_wallet_list, wallet=True)
    p = leaf(g, "address", "print a key's address", cmd_wallet_address, wallet=True)
    p.add_argument("key", nargs="?", help="label or address (default: first key)")
    leaf(g, "balance", "balances and nonces of the wallet's keys", cmd_wallet_balance, node=True, wallet=True)
    p = leaf(g, "send", "send a transfer and wait for its confirmation", cmd_wallet_send, node=True, wallet=True)
    p.add_argument("--to", required=True, help="recipient address (pop1...)")
    p.add_argument("--amount", required=True, type=int, help="amount in grains")
    p.add_argument("--fee", type=int, default=DEFAULT_FEE, help=f"fee in grains (default {DEFAULT_FEE})")
    p.add_argument("--memo", default="", help="memo (at most 64 bytes)")
    p.add_argument("--key", help="sending key label or address (default: first key)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the confirmation")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the confirmation")
    p = leaf(g, "history", "transfers of the wallet's keys in recent blocks", cmd_wallet_history, node=True,
             wallet=True)
    p.add_argument("--blocks", type=int, default=500, help="how many recent blocks to scan (default 500)")

    g = group("miner", "compete for blocks with models")
    p = leaf(g, "run", "train models, enter rounds, open after the beacon, report verdicts", cmd_miner_run,
             node=True, wallet=True)
    p.add_argument("--model", default="auto", help="linear | mlp | forest | extra | auto (default auto)")
    p.add_argument("--rounds", type=int, default=0, help="stop after this many rounds (default: until the end)")
    p.add_argument("--key", help="mining key label or address (default: first key)")

    g = group("model", "the champion model: inspect, download, predict")
    leaf(g, "champion", "the current champion", cmd_model_champion, node=True)
    leaf(g, "history", "every crowned model", cmd_model_history, node=True)
    p = leaf(g, "get", "download a model by hash", cmd_model_get, node=True)
    p.add_argument("hash")
    p.add_argument("--out", required=True)
    p = leaf(g, "predict", "predict with the champion on a CSV of task features", cmd_model_predict, node=True)
    p.add_argument("--input", required=True, help="CSV with a header row of feature columns (integers, as in "
                                                   "the task) and optionally the label column")
    p.add_argument("--label-column", default="label", help="label column, if present (default 'label')")
    p.add_argument("--out", help="write predictions here (one per line, header 'prediction')")

    g = group("chain", "inspect the chain")
    leaf(g, "info", "chain status", cmd_chain_info, node=True)
    p = leaf(g, "block", "a block by height or hash", cmd_chain_block, node=True)
    p.add_argument("id")
    p = leaf(g, "tx", "a transfer by txid", cmd_chain_tx, node=True)
    p.add_argument("id")
    p = leaf(g, "round", "a round: anchor, beacon, entries, scores, verdict", cmd_chain_round, node=True)
    p.add_argument("round", help="round number or 'current'")

    p = sub.add_parser("demo", help="run a local multi-node network producing blocks",
                       description="Start a fresh local network (nodes, keyholder, miners, wallet transfers) and "
                                   "show a live table per round. Ctrl-C stops everything.")
    p.add_argument("--rounds", type=int, default=10, help="rounds to play (default 10)")
    p.add_argument("--nodes", type=int, default=3, help="node processes (default 3)")
    p.add_argument("--keep", action="store_true", help="leave the network running at the end")
    p.add_argument("--dir", help="working directory (default: a new temporary directory)")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("bench", help="run the benchmark harness", description="Measure every figure next to its "
                                                                             "raw baseline.")
    p.add_argument("--quick", action="store_true", help="CI smoke run (under a minute)")
    _add_json(p)
    p.set_defaults(fn=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from chain.errors import PopError
    from ml.errors import MLError
    try:
        result = args.fn(args)
    except (CliError, PopError, MLError) as exc:
        print(f"popchain: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"popchain: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("popchain: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
