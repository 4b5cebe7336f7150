"""``popchain status`` and ``popchain chain …``: read the chain through the node API and print it for people (or
``--json`` as is).

Human output names accounts by address (pop1…), prints amounts in grains with thousands separators (one number
format everywhere), a round's outcome as one line — why a void round was void, from its entrants' b, c and bar —
and counts its entries from the beacon (the list every node agrees on). Blocks and transfers may be named by a
unique hash prefix (at least 4 hex digits), as git does.
"""
from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from node.tools.cli_common import CliError, Commands, call, emit, kv


def n(v: Any) -> str:
    """One number format: thousands separators; anything else as is ('-' for none)."""
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    return f"{v:,}" if isinstance(v, int) else str(v)


def grains(v: Any) -> str:
    return f"{v:,} grains" if isinstance(v, int) else "-"


def when(ts: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def rule_text(rec: dict[str, Any]) -> str:
    """A crowning record's rule field: the retargeted z (z_milli) or the sign test's bar."""
    if "z_milli" in rec:
        return f"z {rec['z_milli'] / 1000:.3f}"
    bar = rec.get("bar")
    return f"bar {bar:,}" if isinstance(bar, int) else "bar -"


def champion_line(c: dict[str, Any] | None) -> str:
    if not c:
        return "-"
    who = c.get("miner_address") or ("(genesis)" if not c.get("task_id") else "(announced with the task)")
    return (f"round {c.get('round')}  task {c.get('task_id', 0)}  height {n(c.get('height'))}  model "
            f"{c.get('model_hash', '')[:16]}…  b {n(c.get('b'))}  c {n(c.get('c'))}  {rule_text(c)}  miner {who}")


def status_lines(s: dict[str, Any]) -> list[str]:
    shown = {**s, "height": n(s.get("height")), "mempool": n(s.get("mempool")),
             "round": f"{s.get('round')}" + (f" (task {s['round_task']})" if s.get("round_task") is not None else ""),
             "tasks": f"{s.get('tasks_open', 0)} open of {s.get('tasks_total', 0)}, "
                      f"{n(s.get('shards_left', 0))} shards left",
             "keyholder": ("committee member " + str((s.get("committee") or {})["member"]))
             if "member" in (s.get("committee") or {}) else ("yes" if s.get("keyholder") else "no")}
    lines = kv(shown, ["chain_id", "genesis", "height", "tip", "round", "round_phase", "tasks", "peers", "mempool",
                       "syncing", "keyholder"]) + ["champion      " + champion_line(s["champion"])]
    health = s.get("health")
    if health is not None and not health.get("ok", True):
        lines.append("health        NOT OK: " + ", ".join(k for k, v in health.get("tasks", {}).items()
                                                        if v.get("essential") and v.get("state") != "running"))
    if s.get("equivocations"):
        lines.append(f"ALARM         keyholder equivocation in round {s['equivocations'][0]['round']}")
    if s.get("round_phase") == "closed":
        lines.append("no task is open: blocks resume when a task is announced or extended ('popchain task list')")
    return lines + committee_lines(s)


def cmd_info(args: argparse.Namespace) -> None:
    s = call(args, lambda c: c.status())
    emit(args, s, status_lines(s))


def cmd_status(args: argparse.Namespace) -> None:
    """The node's status; ``--wait S`` waits up to S seconds for a node that is starting (like bitcoin-cli's
    -rpcwait), retrying quietly."""
    if args.wait < 0:
        raise CliError("--wait must not be negative")

    async def fetch(client: Any) -> dict[str, Any]:
        return await client.status()
    if args.wait:
        from node.tools.cli_common import acall
        deadline = time.monotonic() + args.wait
        while True:
            try:
                s = asyncio.run(acall(args, fetch))
                break
            except CliError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
    else:
        s = call(args, fetch)
    emit(args, s, status_lines(s))


def committee_lines(s: dict[str, Any]) -> list[str]:
    """The keyholder committee as this node sees it (PROTOCOL §3.10, §3.14): reachable members against the
    threshold, and the evidence against members."""
    c = s.get("committee")
    if not c or "reachable" not in c:
        return []
    down = [str(m["member"]) for m in c.get("members", []) if not m["reachable"]]
    missed = [f"{m['member']}: {m['missed_releases']}" for m in c.get("members", []) if m.get("missed_releases")]
    lines = [f"committee     {c['reachable']} of {c['n']} keyholders reachable, threshold {c['threshold']}"
             + (f" (unreachable: {', '.join(down)})" if down else "")]
    if c.get("below_threshold"):
        lines.append(f"WARNING       fewer than {c['threshold']} keyholders are reachable: no round can reveal "
                     f"until more come back")
    if missed:
        lines.append(f"missed        rounds with no share released, by keyholder: {', '.join(missed)}")
    evidence = s.get("committee_evidence") or []
    if evidence:
        kinds: dict[str, int] = {}
        for e in evidence:
            kinds[e["what"]] = kinds.get(e["what"], 0) + 1
        lines.append("evidence      " + ", ".join(f"{n} {what}" for what, n in sorted(kinds.items()))
                     + " (see --json committee_evidence)")
    return lines


def cmd_block(args: argparse.Namespace) -> None:
    b = call(args, lambda c: c.block(args.id))
    h = b["header"]
    shown = {"hash": b["hash"], **h, "height": n(h["height"]), "time": f"{when(h['timestamp'])} ({h['timestamp']})",
             "miner": h.get("miner_address") or "(genesis: no miner)", "miner_pubkey": h.get("miner"),
             "txs": n(len(b["txs"])), "fees": grains(b.get("fees")), "model_size": f"{n(b['model_size'])} bytes",
             "main_chain": b.get("main_chain"), "confirmations": n(b.get("confirmations"))}
    lines = kv(shown, ["hash", "height", "round", "prev_hash", "time", "miner", "miner_pubkey", "state_root",
                       "model_hash", "txs", "fees", "model_size", "main_chain", "confirmations"])
    lines += [f"  tx {t['txid'][:16]}…  {t['from_address']} -> {t['to_address']}  {grains(t['amount'])}  fee "
              f"{grains(t['fee'])}" for t in b["txs"]]
    emit(args, b, lines)


def cmd_tx(args: argparse.Namespace) -> None:
    t = call(args, lambda c: c.tx(args.id))
    tx = t["tx"]
    shown = {"txid": tx.get("txid"), "status": t["status"], "height": n(t.get("height")), "block": t.get("block"),
             "time": when(t.get("time")), "confirmations": n(t.get("confirmations", 0)),
             "from": tx.get("from_address"), "to": tx.get("to_address"), "amount": grains(tx.get("amount")),
             "fee": grains(tx.get("fee")), "nonce": n(tx.get("nonce")), "memo": tx.get("memo") or None}
    if t["status"] != "confirmed":
        for k in ("height", "block", "time"):
            shown.pop(k)
    emit(args, t, kv(shown))


VERDICT_ORDER = ("crowned", "plain", "leading", "opened", "lost", "not opened", "not opened yet")


def outcome_text(r: dict[str, Any]) -> str:
    """One line: what became of the round, and for a void round why (the best opening against its bar)."""
    status, v = r.get("status", ""), r.get("verdict")
    if v and status in ("crowned", "revealed"):
        what = "crowned" if r.get("final") else "leading (not final)"
        return (f"{what}: block {v['hash'][:16]}… at height {n(v['height'])} by {v.get('miner_address')}  "
                f"b {n(v['b'])} c {n(v['c'])} {rule_text(v)}")
    if status == "plain":
        return f"plain: block {str(r.get('block'))[:16]}… kept without a new champion"
    if status == "void":
        ents = r.get("entrants", [])
        opened = [e for e in ents if e.get("b") is not None]
        if not ents:
            return "void: nobody was listed"
        if not opened:
            if any(e["verdict"] == "lost" for e in ents):
                return "void: the openings lost; this node kept no b and c for them (it synced the round later)"
            return "void: no listed entrant opened a valid block (their bonds are forfeited)"
        best = max(opened, key=lambda e: e["b"] - e["c"])
        need = (f"needs b >= {n(best['bar'])}" if best["bar"] else
                f"no b crowns with {n(best['b'] + best['c'])} disagreements")
        return f"void: no block passed the test; best b {n(best['b'])} c {n(best['c'])}, {need}"
    if status == "idle":
        return "idle: every task had spent its shards; the round served nothing"
    if status == "open":
        return "open: entries are being taken"
    if status == "revealed":
        return "revealed: openings are being scored"
    return status or "-"


def round_lines(r: dict[str, Any]) -> list[str]:
    entries = r.get("entries") or []
    if r.get("status") == "idle":
        entry_text = "-"
    elif r.get("beacon") or entries:
        entry_text = f"{len(entries)} (listed in the beacon)"
    else:
        entry_text = f"{r.get('entries_seen', 0)} seen so far by this node (the beacon lists the final set)"
    served = (f"task {r['task_id']} shard {r['shard_index']}" if r.get("task_id") is not None else "-")
    shown = {"round": r.get("round"), "status": r.get("status"), "serves": served, "anchor": r.get("anchor"),
             "shard_key": r.get("shard_key"), "entries": entry_text, "outcome": outcome_text(r)}
    lines = kv(shown)
    ents = sorted(r.get("entrants") or [], key=lambda e: VERDICT_ORDER.index(e["verdict"])
                  if e["verdict"] in VERDICT_ORDER else 99)
    lines += [f"  entrant {e['miner_address']}  b {n(e['b'])} c {n(e['c'])} bar {'none' if e['bar'] == 0 else n(e['bar'])}  {e['verdict']}"
              for e in ents]
    lines += [f"  candidate {c['hash'][:16]}…  b {n(c['b'])} c {n(c['c'])} {rule_text(c)}"
              for c in r.get("candidates") or []]
    return lines


def cmd_round(args: argparse.Namespace) -> None:
    if args.round != "current" and not args.round.isdigit():
        raise CliError(f"round: expected a round number or 'current', got {args.round!r}")
    r = call(args, lambda c: c.round(args.round))
    emit(args, r, round_lines(r))


def register(cmds: Commands) -> None:
    p = cmds.leaf("status", "the node's status: height, round, phase, tasks, peers, champion", cmd_status,
                  node=True)
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to this long for a node that is starting (default 0: fail at once)")
    g = cmds.group("chain", "inspect the chain")
    g.leaf("info", "chain status (the same as 'popchain status')", cmd_info, node=True)
    p = g.leaf("block", "a block by height, hash or unique hash prefix", cmd_block, node=True)
    p.add_argument("id", help="height (digits), 64-hex block hash or a unique prefix of at least 4 hex digits")
    p = g.leaf("tx", "a transfer by txid or unique prefix (time, confirmations, fee)", cmd_tx, node=True)
    p.add_argument("id", help="64-hex txid or a unique prefix of at least 4 hex digits")
    p = g.leaf("round", "a round: what it served, its entrants (b, c, bar, verdict) and its outcome", cmd_round,
               node=True)
    p.add_argument("round", help="round number or 'current'")
