"""``popchain genesis create``, ``node run``, ``miner run``, ``demo`` and ``bench``: argument parsing over
node.tools.genesis_setup, node.config / node.__main__, node.tools.miner, node.tools.demo, benchmarks.harness."""
from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from node.tools.cli_common import RETRY_S, CliError, Commands, add_json, address, emit, load_wallet, pick_key
from node.tools.forward import holdout_line
from node.tools.mining import DEFAULT_MAX_ROWS, FAMILY_CHOICES

if TYPE_CHECKING:
    from consensus.protocol.dkg import CommitteeKey

# --------------------------------------------------------------------------- genesis


def cmd_genesis_create(args: argparse.Namespace) -> None:
    import sys

    from consensus.protocol.genesis import GenesisParams
    from node.tools.genesis_setup import create_genesis_files
    allocations = []
    for item in args.alloc:
        addr, sep, amount = item.partition("=")
        if not sep or not amount.isdigit():
            raise CliError(f"--alloc {item!r}: expected ADDRESS=AMOUNT (amount in grains)")
        allocations.append((address(addr, f"--alloc {item!r}"), int(amount)))
    if not allocations:
        raise CliError("no --alloc ADDRESS=AMOUNT: nobody could hold the entrant balance, so no miner could "
                       "ever enter a round")
    bonds = []
    for item in args.bond:
        addr, sep, amount = item.partition("=")
        if not sep or not amount.isdigit():
            raise CliError(f"--bond {item!r}: expected ADDRESS=AMOUNT (amount in grains)")
        bonds.append((address(addr, f"--bond {item!r}"), int(amount)))
    try:
        params = GenesisParams(entry_window_s=args.entry_window, opening_window_s=args.opening_window)
    except ValueError as exc:
        raise CliError(str(exc).replace("GenesisParams.entry_window_s", "--entry-window")
                       .replace("GenesisParams.opening_window_s", "--opening-window")) from None
    committee, sponsor = _committee_args(args)
    if sys.stderr.isatty():  # progress for a person; scripts get stdout and, on failure, one error line
        print("sizing hidden shards (exact sign test, 80 % power) and building genesis ...", file=sys.stderr)
    out = create_genesis_files(Path(args.out), task=args.task, label_column=args.label_column, rounds=args.rounds,
                               shard_size=args.shard_size, detect=args.detect, allocations=allocations,
                               bonds=bonds or None,
                               chain_id=args.chain_id, params=params, drift_milli=args.drift_milli,
                               committee=committee, sponsor=sponsor, bounty=args.bounty,
                               per_crowning=args.per_crowning, public_rows=args.public_rows,
                               categorical=categorical_columns(args))
    for warning in out["warnings"]:
        print(f"popchain: warning: {warning}", file=sys.stderr)
    det = out["detectable"]
    alpha = out["alpha"][0] / out["alpha"][1]
    detect_text = (f"+{det:.2%} accuracy with 80 % power (10 % disagreement, α = {alpha:.1%} over E = "
                   f"{out['max_entries']} entries)" if det is not None else
                   "no improvement reaches 80 % power at this shard size")
    allowed = ("generated shards: as many as genesis lists" if out["rounds_allowed"] is None
               else f"the data allows {out['rounds_allowed']}")
    emit(args, out, [
        f"genesis hash   {out['genesis_hash']}",
        f"chain id       {out['chain_id']}",
        (f"task           {out['task']} ({out['rounds']} rounds x {out['shard_size']} hidden samples"
        f"{', generated' if out['generated'] else ''}, {out['n_train']} public training rows)"),
        *([(f"drift          {out['drift_milli']}/1000 units per shard (the concept moves; public rows are "
           f"its start)")] if out.get("drift_milli") else []),
        *[f"column         {line}" for line in out["columns"]],
        f"detects        {detect_text}",
        f"rounds         {out['rounds']} ({allowed}); genesis is {out['genesis_bytes']:,} bytes",
        f"genesis file   {out['genesis']}    -> give to every node operator",
        *([(f"blobs          {out['blobs']} (hidden shards + public rows beyond 256 KiB), {out['blob_bytes']:,} bytes in {out['blob_dir']}  -> your node "
            f"serves them (popchain node --blob-dir {out['blob_dir']}); other nodes fetch them from peers")]
          if out.get("blobs") else []),
        *([(f"keyholder file {out['keyholder']}  -> give ONLY to the keyholder (secret; mode 0600; the trusted "
            f"single keyholder sees every shard key)")]
          if not out["committee"] else
          [(f"committee      {out['threshold']}-of-{out['keyholders']} from the keyholders' key generation: any "
            f"{out['threshold']} keyholders reveal a shard, fewer learn nothing; no secret file was written")]
          + ([("task           VRF-generated: nobody, you included, can compute a shard before the committee "
               "releases it")] if out["vrf"] else
             [(f"sponsor        {out['sponsor']}: you know these rows, so the task is paid only from its escrow "
               f"({out['bounty']:,} grains, {out['per_crowning']:,} per crowning) and your key cannot enter it")])),
        holdout_line(out, "keep: untouched test split to judge the champion", "the champion"),
        (f"bonds          {len(out['bonds'])} miner key(s) bonded at genesis (a miner's stake, PROTOCOL §3.9); "
         f"crowning needs +{out['min_gain_bp'] / 100:.2f} pp on top of the sign test"),
    ])


def _committee_args(args: argparse.Namespace) -> tuple[CommitteeKey | None, bytes | None]:
    """(the committee key record of --committee, the --sponsor pubkey) for a committee genesis."""
    from chain.errors import PopError
    from consensus.protocol.dkg import decode_committee_key
    committee: CommitteeKey | None = None
    if args.committee:
        try:
            committee = decode_committee_key(_read(args.committee, "committee key"))
        except PopError as exc:
            raise CliError(f"--committee {args.committee}: {exc}") from None
    sponsor = None
    if args.sponsor:
        try:
            sponsor = bytes.fromhex(args.sponsor)
        except ValueError:
            sponsor = b""
        if len(sponsor) != 32:
            raise CliError(f"--sponsor {args.sponsor[:70]!r}: expected the sponsor's 64-hex public key")
    return committee, sponsor


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {what} file {path}: {exc.strerror}") from None


# --------------------------------------------------------------------------- node, miner


def cmd_node_run(args: argparse.Namespace) -> int:
    from node.__main__ import start
    return start(args, "popchain: error: ")


def _progress_printer(verb: str):
    """Progress on stderr: a rewritten line on a terminal, else a line per 10 % (logs stay short)."""
    import sys
    import time
    tty = sys.stderr.isatty()
    state = {"shown": -1, "t": 0.0}

    def show(height: int, tip: int) -> None:
        pct = 100 * height // max(tip, 1)
        now = time.monotonic()
        if tty and (now - state["t"] > 0.2 or height == tip):
            print(f"\r{verb}: block {height:,}/{tip:,} ({pct}%)", end="\n" if height == tip else "", file=sys.stderr,
                  flush=True)
            state["t"] = now
        elif not tty and pct // 10 > state["shown"]:
            print(f"{verb}: block {height:,}/{tip:,} ({pct}%)", file=sys.stderr, flush=True)
            state["shown"] = pct // 10
    return show


def _cmd_node_check(args: argparse.Namespace, rebuild: bool) -> int:
    import sys

    from chain.errors import StoreError
    from node.errors import EXIT_CONFIG, EXIT_STORE, NodeError
    from node.maintenance import check_datadir, report_exit_code
    verb = "reindex" if rebuild else "verify"
    try:
        report = check_datadir(args.datadir, rebuild=rebuild,
                               progress=None if args.json else _progress_printer(verb))
    except NodeError as exc:
        print(f"popchain: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        print(f"popchain: error: {exc}", file=sys.stderr)
        return EXIT_STORE
    data = {"ok": report.ok, "height": report.height, "state_root": report.state_root.hex(),
            "problems": list(report.problems), "readable": report.readable}
    if report.ok:
        lines = [f"{verb}: ok: {report.height:,} blocks replay to state root {report.state_root.hex()}"
                 + ("; accounts, undo records and indexes rebuilt" if rebuild else "")]
    else:
        lines = [f"{verb}: FAILED: {p}" for p in report.problems]
        if not rebuild and report.readable:
            lines.append(f"repair: popchain node reindex --datadir {args.datadir}")
    emit(args, data, lines)
    return report_exit_code(report)


def cmd_node_verify(args: argparse.Namespace) -> int:
    return _cmd_node_check(args, rebuild=False)


def cmd_node_reindex(args: argparse.Namespace) -> int:
    return _cmd_node_check(args, rebuild=True)


def cmd_miner_run(args: argparse.Namespace) -> int:
    from node.tools.miner import make_source, run_miner_cli
    from node.tools.miner_models import SourceError
    if args.rounds < 0:
        raise CliError("--rounds must not be negative")
    if args.max_rows < 1_000:
        raise CliError("--max-rows: at least 1,000 rows")
    try:    # user code (--trainer) is imported here, in the miner's own process, before any wallet is opened
        source = make_source(family=args.model, trainer=args.trainer, model_file=args.model_file)
    except SourceError as exc:
        raise CliError(str(exc)) from None
    wallet = load_wallet(args)
    key = pick_key(wallet, args.key)
    return asyncio.run(run_miner_cli(args.node, wallet.keypair(key.account), source=source, rounds=args.rounds,
                                     as_json=args.json, retry_s=args.retry, max_rows=args.max_rows,
                                     enter=args.enter))


# --------------------------------------------------------------------------- demo and bench


def cmd_demo(args: argparse.Namespace) -> int:
    from node.tools.demo import run_demo
    if not 1 <= args.nodes <= 16:
        raise CliError("--nodes must be between 1 and 16")
    if not 1 <= args.rounds <= 100:
        raise CliError("--rounds must be between 1 and 100")
    return run_demo(rounds=args.rounds, nodes=args.nodes, keep=args.keep, workdir=args.dir)


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.harness import main as bench_main
    only: list[str] = []
    if args.only is not None:
        only = list(dict.fromkeys(name.strip() for name in args.only.split(",") if name.strip()))
        if not only:
            raise CliError("--only: give at least one figure name (NAME[,NAME...])")
    return bench_main(quick=args.quick, as_json=args.json, only=only)   # UnknownFigure: one line, exit 1


def add_sizing_options(p: argparse.ArgumentParser) -> None:
    """The data and sizing options ``genesis create`` and ``task create`` share."""
    p.add_argument("--label-column", default="label", help="label column of a csv: task (default 'label')")
    p.add_argument("--categorical", default="", metavar="COL,COL",
                   help="csv: columns to treat as categories although they look numeric (codes, ids); text "
                        "columns are categorical anyway")
    p.add_argument("--public-rows", type=float, metavar="N|FRACTION",
                   help="rows kept public for training: a count, or a fraction of the rows left after the holdout "
                        "(default: 0.4 for a dataset, 4000 for synthetic); the rest become hidden shards")
    p.add_argument("--rounds", type=int, help="hidden shards = rounds (default: 100 for synthetic; for a dataset, as "
                                              "many as the hidden rows give, at least 3 when they allow)")
    p.add_argument("--shard-size", type=int, help="samples per hidden shard (default: sized by --detect)")
    p.add_argument("--detect", type=float, default=None,
                   help="size shards so that a challenger this much more accurate (0.01 = +1 pp, at 10 %% "
                        "disagreement) is crowned with 80 %% power (default 0.01; a dataset too small for 3 "
                        "such rounds gets 3 coarser ones)")


def categorical_columns(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(c.strip() for c in args.categorical.split(",") if c.strip())


def register(cmds: Commands) -> None:
    g = cmds.group("genesis", "create a new chain")
    p = g.leaf("create", "write a genesis file (+ the single keyholder's secret) from a task", cmd_genesis_create)
    p.add_argument("--task", default="synthetic",
                   help="synthetic | digits | breast_cancer | wine | iris | csv:PATH (default synthetic)")
    add_sizing_options(p)
    p.add_argument("--drift-milli", type=int, default=None,
                   help="synthetic task only: move the generator's cluster centres by ~N/1000 units from shard to "
                        "shard, pulled back towards the start (default 0: one fixed concept, whose Bayes-optimal "
                        "accuracy the summaries show as the champion's limit). A drifting champion is one shard staler than "
                        "a fresh fit: one shard of drift costs ~0.5 pp at 200, ~2.8 pp at 500")
    p.add_argument("--alloc", action="append", default=[], metavar="ADDRESS=AMOUNT",
                   help="genesis allocation (at least one: miners need the entrant balance)")
    p.add_argument("--bond", action="append", default=[], metavar="ADDRESS=AMOUNT",
                   help="genesis allocation to ADDRESS's bond account: the stake its key enters rounds with, "
                        "forfeited bond by bond for listed entries it never opens (default: 8 entry bonds for "
                        "every --alloc address)")
    p.add_argument("--committee", metavar="FILE",
                   help="the committee.key the keyholders' key generation wrote ('popchain keyholder dkg'): a "
                        "committee chain, no secret file written (default: one trusted keyholder.secret holding "
                        "every shard key)")
    p.add_argument("--sponsor", metavar="PUBKEY",
                   help="committee chain with a dataset: your public key as the task's sponsor (you know its rows: "
                        "it is paid only from --bounty, and your key cannot enter it)")
    p.add_argument("--bounty", type=int, default=0, help="grains allocated to the sponsored task's escrow")
    p.add_argument("--per-crowning", type=int, default=None,
                   help="grains each crowning on the sponsored task is paid from its escrow (default: the block "
                        "reward)")
    p.add_argument("--chain-id", help="chain id (default: popchain-<random>)")
    p.add_argument("--entry-window", type=int, default=4, help="entry window W in seconds (default 4)")
    p.add_argument("--opening-window", type=int, default=4, help="opening window O in seconds (default 4)")
    p.add_argument("--out", required=True, help="output directory")

    g = cmds.group("node", "run a node; verify or reindex its datadir")
    from node.config import add_node_run_arguments
    p = g.leaf("run", "run a node (Ctrl-C stops it cleanly)", cmd_node_run, js=False)
    add_node_run_arguments(p)
    exit_codes = "exit 0 consistent, 2 datadir missing or in use, 3 database unreadable, 4 inconsistent"
    p = g.leaf("verify", "replay the stored chain and compare state roots, accounts and indexes (node stopped; "
                         + exit_codes + ")", cmd_node_verify)
    p.add_argument("--datadir", required=True, type=Path, help="the node's data directory")
    p = g.leaf("reindex", "rebuild accounts, undo records and tx/address indexes from the stored blocks (node "
                          "stopped; " + exit_codes + ")", cmd_node_reindex)
    p.add_argument("--datadir", required=True, type=Path, help="the node's data directory")

    g = cmds.group("miner", "compete for blocks with models")
    p = g.leaf("run", "train models, enter rounds, open after the beacon, report verdicts", cmd_miner_run,
               node=True, wallet=True)
    p.add_argument("--model", default="auto", choices=FAMILY_CHOICES,
                   help="auto (default: each time new rows arrive, the family that does best on the newest "
                        "revealed rows: gradient-boosted trees, forests, linear, mlp) or one family")
    p.add_argument("--trainer", metavar="MODULE:FUNCTION",
                   help="bring your own model: FUNCTION(X, y, spec) in MODULE (importable from the current "
                        "directory) returns a fitted scikit-learn estimator; it runs in this miner process only")
    p.add_argument("--model-file", metavar="FILE", help="enter this .popmodel (made for this task) every round "
                                                         "its check expects it to win")
    p.add_argument("--enter", default="expected", choices=("expected", "always"),
                   help="expected (default): enter a round only when the check against the champion gives the "
                        "crowning test even odds, or nobody else entered; always: every round (the check is only "
                        "reported)")
    p.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, metavar="N",
                   help=f"rows kept for training on a stationary task: a uniform sample of the public rows and "
                        f"every revealed shard (default {DEFAULT_MAX_ROWS:,}; memory stays flat beyond it)")
    p.add_argument("--rounds", type=int, default=0, help="stop after this many rounds (default: until the end)")
    p.add_argument("--key", help="mining key label or address (default: first key)")
    p.add_argument("--retry", type=float, default=RETRY_S, metavar="SECONDS",
                   help=f"keep retrying an unreachable node this long (default {RETRY_S:.0f}; 0 = fail at once)")

    p = cmds.sub.add_parser("demo", help="run a local multi-node network producing blocks",
                            description="Start a fresh local network (nodes, keyholder, miners, wallet transfers) "
                                        "and show a live table per round. Ctrl-C stops everything.")
    p.add_argument("--rounds", type=int, default=10, help="rounds to play (default 10)")
    p.add_argument("--nodes", type=int, default=3, help="node processes (default 3)")
    p.add_argument("--keep", action="store_true", help="leave the network running at the end")
    p.add_argument("--dir", help="working directory (default: a new temporary directory)")
    p.set_defaults(fn=cmd_demo)

    p = cmds.sub.add_parser("bench", help="run the benchmark harness",
                            description="Measure every figure next to its raw baseline.")
    p.add_argument("--quick", action="store_true", help="CI smoke run (under a minute)")
    p.add_argument("--only", metavar="NAME[,NAME...]",
                   help="measure only these figures (names as the table and --json print them; an unknown name "
                        "lists the known ones); the modules that produce them run whole, so a figure measured "
                        "with others takes their time too")
    add_json(p)
    p.set_defaults(fn=cmd_bench)
