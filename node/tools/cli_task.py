"""``popchain task …``: keep a chain alive with new work — create a task or a shard batch, have the governance
keys sign and announce it, and list/show the chain's tasks (over node.tools.task_setup and the node API).

The flow (README "Keeping a chain alive"): the sponsor runs ``task create`` (writes the public announcement,
signed by the sponsor's wallet key, and the task's secret shard keys); the keyholder runs ``task announce``
with the chain's keyholder file (co-signs with the governance keys and posts it to a node, which gossips it;
the next anchor notice activates it). ``task extend`` writes a batch of new shards for a live task, announced
the same way. Each command checks what it can before it writes or posts anything, and fails with one line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.tools.cli_chain import champion_line
from node.tools.cli_common import CliError, Commands, add_node, call, emit, kv, password, pick_key
from node.tools.cli_node import add_sizing_options, categorical_columns
from node.tools.forward import holdout_line, judged_holdout

if TYPE_CHECKING:
    from ml.generator import World
    from ml.shards import PublicTask
    from node.tools.task_setup import TaskSecret


def _genesis(args: argparse.Namespace):
    """The chain's genesis: --genesis FILE, else fetched from --node."""
    from consensus.protocol.genesis import load_genesis
    if getattr(args, "genesis", None):
        try:
            return load_genesis(Path(args.genesis).read_bytes())
        except OSError as exc:
            raise CliError(f"cannot read genesis file {args.genesis}: {exc.strerror}") from None
    return load_genesis(call(args, lambda c: c.genesis()))


def _sponsor(args: argparse.Namespace):
    from chain.wallet import Wallet
    if not Path(args.sponsor_wallet).exists():
        raise CliError(f"no wallet at {args.sponsor_wallet} (--sponsor-wallet): create one with 'popchain wallet "
                       f"new --wallet {args.sponsor_wallet}'")
    wallet = Wallet.load(args.sponsor_wallet, password(args))
    key = pick_key(wallet, args.sponsor_key)
    return key, wallet.keypair(key.account)


def _detect_text(out: dict[str, Any]) -> str:
    det = out["detectable"]
    if det is None:
        return "no improvement reaches 80 % power at this shard size"
    alpha = out["alpha"][0] / out["alpha"][1]
    return (f"+{det:.2%} accuracy with 80 % power (10 % disagreement, α = {alpha:.1%} over E = "
            f"{out['max_entries']} entries)")


def cmd_create(args: argparse.Namespace) -> None:
    from node.tools.task_setup import create_task_files
    if args.bounty < 0 or (args.per_crowning is not None and args.per_crowning < 0):
        raise CliError("--bounty and --per-crowning must not be negative")
    key, sponsor = _sponsor(args)
    genesis = _genesis(args)
    if sys.stderr.isatty():
        print("sizing hidden shards for this chain's crowning test and packaging the task ...", file=sys.stderr)
    out = create_task_files(Path(args.out), genesis, sponsor, task=args.task, label_column=args.label_column,
                            rounds=args.rounds, shard_size=args.shard_size, detect=args.detect, bounty=args.bounty,
                            per_crowning=args.per_crowning, drift_milli=args.drift_milli,
                            public_rows=args.public_rows, categorical=categorical_columns(args))
    out["sponsor_address"] = key.address
    for w in out["warnings"]:
        print(f"popchain: warning: {w}", file=sys.stderr)
    bounty = (f"{out['bounty']:,} grains escrowed from {key.address} at activation, {out['per_crowning']:,} per "
              f"crowning" if out["bounty"] else "none")
    emit(args, out, [
        (f"task           {out['task']} ({out['rounds']} rounds x {out['shard_size']} hidden samples"
        f"{', generated' if out['generated'] else ''}, {out['n_train']} public training rows)"),
        f"chain          {out['chain_id']}",
        *[f"column         {line}" for line in out["columns"]],
        f"detects        {_detect_text(out)}",
        f"bounty         {bounty}",
        *_announce_lines(out, out["announcement"]),
        *([(f"shard blobs    {out['blobs']} blobs, {out['blob_bytes']:,} bytes in {out['blob_dir']}  -> 'task "
            f"announce' hands them to the node (keep them beside {out['announcement']}); announcement "
            f"{out['message_bytes']:,} bytes")] if out.get("blobs") else []),
        holdout_line(out, "keep: untouched test split to judge the task's champion", "the task's champion"),
    ])


def _announce_lines(out: dict[str, Any], message: str) -> list[str]:
    """Who gets which file: a single keyholder takes the whole shard keys; on a committee chain the keys are
    sealed to the committee inside the message (or, for a VRF-generated task, do not exist), so there is nothing
    secret to hand anyone: t keyholders co-sign and post it."""
    if out.get("committee"):
        lines = [(f"announcement   {message}  -> keyholders sign it (popchain task announce {message} --keyholder "
                  "THEIR_MEMBER_FILE --sign-only), the last one posts it (without --sign-only)")]
        if out.get("vrf"):
            return lines + ["shard keys     none: the task is VRF-generated, nobody (you included) can foresee a shard"]
        kept = f" ({out['secret']}: the task's source for the next extension, no key)" if out.get("secret") else ""
        return lines + [(f"shard keys     sealed to the keyholder committee inside the message{kept}; you know "
                         "these rows, so the task pays only from its bounty and your key cannot enter it")]
    return [(f"announcement   {message}  -> the keyholder signs and posts it: popchain task announce {message} "
             "--keyholder KEYHOLDER_FILE --task-secret SECRET --node URL"),
            f"task secret    {out['secret']}  -> give ONLY to the keyholder (shard keys; mode 0600)"]


def _load_message(path: str):
    from chain.errors import DecodeError
    from consensus.protocol.tasks import decode_task_message
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read task message {path}: {exc.strerror}") from None
    try:
        return decode_task_message(data)
    except DecodeError as exc:
        raise CliError(f"{path} is not a task announcement or extension ({exc})") from None


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror}") from None


def cmd_announce(args: argparse.Namespace) -> None:
    from consensus.protocol.tasks import TaskAnnouncement
    from node.tools.task_setup import SigningError, governance_sign, secret_keys_of
    msg = _load_message(args.file)
    keyholder_raw = _read(args.keyholder, "keyholder file")
    keys = secret_keys_of(_read(args.task_secret, "task secret")) if args.task_secret else None
    genesis = _genesis(args)
    try:
        signed = governance_sign(msg, keyholder_raw, genesis, partial=args.sign_only)
    except SigningError as exc:
        raise CliError(f"{args.file}: {exc}") from None
    if args.sign_only:
        Path(args.file).write_bytes(signed.encode())
        emit(args, {"file": args.file, "signatures": len(signed.signatures)},
             f"{args.file}: {len(signed.signatures)} governance signature(s) of the {genesis.threshold} needed")
        return
    kind = "announcement" if isinstance(msg, TaskAnnouncement) else "extension"

    async def post(c):
        status = await c.status()
        if keys is not None and not status.get("keyholder"):
            raise CliError(f"the node at {args.node} is not the keyholder: give the task's shard keys "
                           "(--task-secret) only to the keyholder's own node")
        if keys is not None and status.get("committee"):
            raise CliError("this is a committee chain: no member takes whole shard keys (--task-secret); the keys "
                           "are sealed to the committee inside the message")
        if keys is None and status.get("keyholder") and not status.get("committee"):
            print("popchain: warning: no --task-secret: the keyholder activates the task only once it holds its "
                  "shard keys", file=sys.stderr, flush=True)
        before = await c.tasks()
        res = await c.post_task(signed.encode(), secret=keys)
        res["blobs"] = await _upload_blobs(c, signed, Path(args.file).parent)
        if args.wait:
            res["active"] = await _wait_active(c, signed, before)
        return res
    res = call(args, post)
    what = (f"task announcement {signed.msg_hash.hex()[:16]}" if kind == "announcement" else
            f"extension {getattr(msg, 'seq', '?')} of task {getattr(msg, 'task_id', '?')} "
            f"({len(getattr(msg, 'commitments', ()))} shards)")
    active = res.get("active")
    emit(args, {"kind": kind, "id": res.get("id") or signed.msg_hash.hex(), "status": res.get("status"),
                "signatures": len(signed.signatures), "keys_given": keys is not None, "active": active},
         [f"{what}: {res.get('status', 'accepted')} by {args.node}"
          + (f" ({res['blobs']} shard blobs handed over)" if res.get("blobs") else ""),
          f"active: task {active['task_id']} has {active['shards_total']:,} shards ({active['shards_left']:,} left)"
          if active else "it activates with the keyholder's next anchor notice; follow it with 'popchain task list'"])


async def _upload_blobs(c: Any, msg: Any, folder: Path) -> int:
    """An announcement whose shards are blobs (PROTOCOL §3.15): hand them to the node from ``folder``/blobs
    (what 'task create' wrote); the node keeps them and serves them to its peers."""
    import asyncio

    from consensus.protocol.tasks import TaskAnnouncement
    from ml.blobs import BlobDir
    from ml.shards import PublicTask
    if not isinstance(msg, TaskAnnouncement):
        return 0
    refs = PublicTask.decode(msg.package).blob_refs()
    store = BlobDir(folder / "blobs", writable=False)
    sent = 0
    for ref in refs:
        data = await asyncio.to_thread(store.get, ref)
        if data is None:
            print(f"popchain: warning: blob {ref.hex_id[:16]} is not in {folder / 'blobs'}: give it to a node "
                  "with --blob-dir, or no node can open that shard", file=sys.stderr, flush=True)
            continue
        await c.post_blob(data)
        sent += 1
    return sent


async def _wait_active(c: Any, msg: Any, before: dict[str, Any]) -> dict[str, Any]:
    """Wait until the chain has applied the message: a new task listed, or the task's extension count up."""
    import asyncio

    from consensus.protocol.tasks import TaskAnnouncement
    known = {t["task_id"]: t for t in before["tasks"]}
    tty = sys.stderr.isatty()
    shown = ""
    while True:
        now = await c.tasks()
        for t in now["tasks"]:
            if isinstance(msg, TaskAnnouncement) and t["task_id"] not in known:
                first = (await c.task_info(t["task_id"]))["history"][:1]   # its initial champion's record
                if first and first[0]["hash"] == msg.msg_hash.hex():
                    return dict(t)
            if not isinstance(msg, TaskAnnouncement) and t["task_id"] == msg.task_id and \
                    t["extensions"] >= msg.seq:
                return dict(t)
        s = await c.status()
        line = f"waiting for the keyholders to activate it: round {s['round']} ({s['round_phase']})"
        if tty:
            print(f"\r{line}\033[K", end="", file=sys.stderr, flush=True)
        elif line != shown:
            print(line, file=sys.stderr, flush=True)
        shown = line
        await asyncio.sleep(0.5)


def _task_package(args: argparse.Namespace, task_id: int):
    from ml.shards import PublicTask

    async def fetch(c):
        return await c.status(), await c.task_info(task_id, package=True)
    status, info = call(args, fetch)
    if not info.get("package"):
        raise CliError(f"the node did not send task {task_id}'s package")
    return status, info, PublicTask.decode(bytes.fromhex(info["package"]))


def extension_start(task_id: int, info: dict[str, Any], public: PublicTask, saved: TaskSecret | None,
                    drift_milli: int | None, secret_name: str = "") -> tuple[World | None, int | None]:
    """Where a generated task's extension continues from: (the world its first new shard drifts on from, the
    drift rate). From ``saved`` (the secret of a batch) or else from the latest revealed shard (its world is
    public). Issue 21 item 4: a DRIFTING task continues from its newest scheduled shard, so CliError when only
    an older batch's secret or an older revealed shard is at hand (the concept would jump backwards)."""
    from ml.shards import generated_world_digest
    from node.tools.task_setup import shard_world
    total = info["shards_total"]
    if saved is not None:
        drift_milli = saved.drift_milli if drift_milli is None else drift_milli
        newest = saved.first_index + len(saved.secret.keys) - 1
        if newest != total and (drift_milli or 0):
            raise CliError(f"{secret_name} holds shards {saved.first_index:,}..{newest:,} of task {task_id}, whose "
                           f"newest scheduled shard is {total:,}: pass the secret of its latest batch (the concept "
                           "would jump back otherwise)")
        return saved.world, drift_milli
    revealed = info.get("revealed") or []
    if not revealed:
        raise CliError(f"task {task_id} has no revealed shard yet: pass its secret (--secret task.secret) to "
                       "continue its generator")
    last, first = revealed[-1], revealed[0]   # a revealed shard's world is public: drift on from the latest one
    world = shard_world(public, last["shard_index"], bytes.fromhex(last["shard_key"]))
    drifting = generated_world_digest(public, last["shard_index"], bytes.fromhex(last["shard_key"])) != \
        generated_world_digest(public, first["shard_index"], bytes.fromhex(first["shard_key"]))
    if last["shard_index"] < total and (drifting or drift_milli):
        # until issue 21 the extension drifted on from the latest REVEALED shard while later shards were still
        # pending, so the concept jumped backwards when it started
        raise CliError(f"task {task_id} drifts and has {total - last['shard_index']:,} shard(s) scheduled after "
                       f"its latest revealed one (shard {last['shard_index']:,}): an extension must continue from "
                       "its newest scheduled shard — pass the secret of its latest batch (--secret task.secret), "
                       "or extend once they are revealed")
    return world, drift_milli


def cmd_extend(args: argparse.Namespace) -> None:
    from node.tools.task_setup import (
        TaskSecret,
        build_extension,
        create_extension_files,
        rows_for_task,
        shard_world,
    )
    if args.rounds < 1:
        raise CliError("--rounds must be at least 1")
    status, info, public = _task_package(args, args.task_id)
    first = info["shards_total"] + 1
    seq = info.get("extensions", 0) + 1
    world, drift_milli, saved, data = None, args.drift_milli, None, None
    if public.vrf:
        pass           # a VRF-generated task: its new shards need no world, no key and no rows
    elif public.generated:
        if args.secret:
            try:
                saved = TaskSecret.decode(Path(args.secret).read_bytes())
            except OSError as exc:
                raise CliError(f"cannot read task secret {args.secret}: {exc.strerror}") from None
        world, drift_milli = extension_start(args.task_id, info, public, saved, drift_milli, args.secret or "")
    else:
        if not args.data:
            raise CliError(f"task {args.task_id} is a rows task: give its new rows with --data csv:PATH")
        data = rows_for_task(args.data, public, args.label_column)
    anchor = None   # the drift reverts towards the task's first shard's world (its start is not stored)
    if public.generated and not public.vrf:
        shard1 = info.get("revealed_first")   # shard 1's key (the revealed list holds the newest keys only)
        first_key = bytes.fromhex(shard1["shard_key"]) if shard1 and shard1["shard_index"] == 1 else None
        if first_key is None and saved is not None and saved.first_index == 1:
            first_key = saved.secret.keys[0]
        anchor = shard_world(public, 1, first_key) if first_key is not None else None
    batch = build_extension(public, args.task_id, first, args.rounds, world=world, drift_milli=drift_milli or 0,
                            data=data, anchor=anchor)
    out = create_extension_files(Path(args.out), status["chain_id"], args.task_id, seq, batch,
                                 genesis=_genesis(args))
    emit(args, out, [
        (f"extension      {seq} of task {args.task_id}: shards {first:,}..{first + args.rounds - 1:,} "
        f"({public.shard_size:,} samples each)"),
        *_announce_lines(out, out["extension"]),
    ])


def _bounty(t: dict[str, Any]) -> str:
    if not t.get("bounty_total"):
        return "-"
    return (f"{t['bounty_left']:,} of {t['bounty_total']:,} grains left, {t.get('bounty_paid', 0):,} paid "
            f"({t['bounty_per_crowning']:,} a crowning)")


def _detects(t: dict[str, Any]) -> str:
    d = t.get("detectable")
    return f"+{d:.2%}" if isinstance(d, float) else "-"


def _rounds(t: dict[str, Any]) -> str:
    r = t.get("rounds") or {}
    return f"{r.get('crowned', 0):,}/{r.get('void', 0):,}" + (f"/{r['plain']:,}" if r.get("plain") else "")


def cmd_list(args: argparse.Namespace) -> None:
    data = call(args, lambda c: c.tasks())
    rows = data["tasks"]
    lines = [(f"{'id':>3}  {'name':<16} {'status':<7} {'shards left':>11}  {'revealed':>8}  {'crowned/void':>12}  "
             f"{'detects':>7}  bounty")]
    lines += [f"{t['task_id']:>3}  {t['name'][:16]:<16} {t['status']:<7} {t['shards_left']:>11,}  "
              f"{t['shards_revealed']:>8,}  {_rounds(t):>12}  {_detects(t):>7}  {_bounty(t)}" for t in rows]
    if not data.get("tasks_open"):
        lines.append("no task is open: the chain makes no blocks until a task is announced or extended")
    emit(args, data, lines)


def cmd_show(args: argparse.Namespace) -> None:
    t = call(args, lambda c: c.task_info(args.task_id))
    spec = t.get("spec") or {}
    shown = {**t, "sponsor": t.get("sponsor_address") or "(genesis)", "bounty": _bounty(t),
             "champions": len(t.get("history", [])), "revealed_keys": len(t.get("revealed", [])),
             "shards": f"{t['shards_left']:,} left of {t['shards_total']:,} ({t['shards_revealed']:,} revealed; "
                       f"{t.get('shard_size', 0):,} rows each)",
             "detects": f"{_detects(t)} accuracy with 80 % power" if t.get("detectable") else "-",
             "rounds": f"{_rounds(t)} crowned/void" + ("/plain" if (t.get("rounds") or {}).get("plain") else ""),
             "features": f"{spec.get('n_features', '?')} -> "
                                                                 f"{len(spec.get('classes', []))} classes"}
    lines = kv(shown, ["task_id", "name", "status", "shards", "detects", "rounds", "features", "sponsor", "bounty",
                       "extensions", "champions", "revealed_keys"])
    limit = call(args, lambda c: judged_holdout(c, args.task_id, t))
    if limit is not None:
        t["bayes"] = limit
        lines += _judged_lines(limit)
    emit(args, t, lines + ["champion         " + champion_line(t.get("champion"))])


def _judged_lines(j: dict[str, Any]) -> list[str]:
    """What `task show` says about the holdout a generated task's champion is judged on (node.tools.forward)."""
    if j.get("pending"):
        return [(f"holdout        forward (the task drifts): no shard revealed since the champion was crowned in "
                f"round {j['crowned_round']:,} yet: judged on the next one")]
    where = (f"forward: shard {j['shard_index']:,}, revealed in round {j['round']:,} after the champion was crowned "
             f"in round {j['crowned_round']:,} (the task drifts: rows it never saw, from the concept it faces now; "
             "holdout.csv is the task's start)" if j["drifting"] else
             f"the newest revealed shard {j['shard_index']:,} (round {j['round']:,}; one fixed concept)")
    return [f"holdout        {where}",
            (f"bayes limit    {j['bayes_accuracy']:.3f} (the generated concept's Bayes-optimal accuracy on that shard: "
            "the physical limit)"),
            f"champion gap   {j['gap_pp']:.1f} pp (the champion scores {j['champion_accuracy']:.3f} on that shard)"]


def _task_id(text: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise argparse.ArgumentTypeError(f"expected a task id (0, 1, 2 ...), got {text!r}")
    return int(text)


def register(cmds: Commands) -> None:
    g = cmds.group("task", "add work to a live chain: new tasks, more shards, task views")
    p = g.leaf("create", "package a new task (public announcement signed by the sponsor + secret shard keys)",
               cmd_create)
    p.add_argument("--task", default="synthetic",
                   help="synthetic | digits | breast_cancer | wine | iris | csv:PATH (default synthetic)")
    add_sizing_options(p)
    p.add_argument("--drift-milli", type=int, default=0,
                   help="synthetic task only: move the generator's cluster centres by ~N/1000 units from shard to "
                        "shard (default 0)")
    p.add_argument("--sponsor-wallet", required=True, help="wallet of the sponsor (signs; pays the bounty)")
    p.add_argument("--sponsor-key", help="sponsor key label or address (default: first key)")
    p.add_argument("--password-file", help="read the sponsor wallet's password from this file")
    p.add_argument("--bounty", type=int, default=0,
                   help="grains escrowed from the sponsor at activation, paid out per crowning (default 0)")
    p.add_argument("--per-crowning", type=int,
                   help="bounty paid per crowning on this task (default: bounty / rounds)")
    p.add_argument("--genesis", help="the chain's genesis file (default: fetched from --node)")
    add_node(p)
    p.add_argument("--out", required=True, help="output directory")

    p = g.leaf("announce", "co-sign a task announcement/extension with the governance keys and post it",
               cmd_announce, node=True)
    p.add_argument("file", help="task.announce or taskN-extM.announce (from 'task create' / 'task extend')")
    p.add_argument("--keyholder", required=True, help="the chain's keyholder file (governance keys)")
    p.add_argument("--task-secret", help="the task's secret file (task.secret / taskN-extM.secret): hands its "
                                         "shard keys to the keyholder node --node (must be the keyholder's)")
    p.add_argument("--sign-only", action="store_true",
                   help="add this keyholder's signatures to FILE and stop (chains with several keyholders)")
    p.add_argument("--wait", action="store_true",
                   help="after posting, wait until the chain has activated it (a progress line on stderr)")
    p.add_argument("--genesis", help="the chain's genesis file (default: fetched from --node)")

    p = g.leaf("extend", "write a batch of new hidden shards for a live task", cmd_extend, node=True)
    p.add_argument("task_id", type=_task_id, help="the task to extend (see 'popchain task list')")
    p.add_argument("--rounds", type=int, required=True, help="new shards (= rounds) to add")
    p.add_argument("--secret", help="the task's secret file: continues its generator from its last shard "
                                    "(default: from the latest revealed shard)")
    p.add_argument("--drift-milli", type=int, help="generated tasks: drift per shard (default: as created, or 0)")
    p.add_argument("--data", help="rows tasks: csv:PATH with the new rows (same features and classes)")
    p.add_argument("--label-column", default="label", help="label column of --data (default 'label')")
    p.add_argument("--out", required=True, help="output directory")

    g.leaf("list", "the chain's tasks: status, shards left, bounty", cmd_list, node=True)
    p = g.leaf("show", "one task: shards, bounty, champion and its lineage", cmd_show, node=True)
    p.add_argument("task_id", type=_task_id, help="task id (0 = the genesis task)")

