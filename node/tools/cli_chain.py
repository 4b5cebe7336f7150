"""``popchain chain …``: read the chain through the node API and print it for people (or ``--json`` as is).

Human output names accounts by address (pop1…), prints a round's verdict as one line and counts its entries
from the beacon (the list every node agrees on), not from this node's memory of the entry window.
"""
from __future__ import annotations

import argparse
from typing import Any

from node.tools.cli_common import Commands, call, emit, kv


def rule_text(rec: dict[str, Any]) -> str:
    """A crowning record's rule field: the retargeted z (z_milli) or the sign test's bar."""
    return f"z {rec['z_milli'] / 1000:.3f}" if "z_milli" in rec else f"bar {rec.get('bar', '-')}"


def champion_line(c: dict[str, Any] | None) -> str:
    if not c:
        return "-"
    return (f"round {c.get('round')}  height {c.get('height')}  model {c.get('model_hash', '')[:16]}…  "
            f"b {c.get('b')}  c {c.get('c')}  {rule_text(c)}  miner {c.get('miner_address') or '(genesis)'}")


def cmd_info(args: argparse.Namespace) -> None:
    s = call(args, lambda c: c.status())
    shown = {**s, "tasks": f"{s.get('tasks_open', 0)} open of {s.get('tasks_total', 0)}, "
                            f"{s.get('shards_left', 0):,} shards left"
                            + (f" (round serves task {s['round_task']})" if s.get("round_task") is not None else "")}
    lines = kv(shown, ["chain_id", "genesis", "height", "tip", "round", "round_phase", "rounds_total", "tasks",
                       "peers", "mempool", "syncing"]) + ["champion      " + champion_line(s["champion"])]
    if s.get("round_phase") == "closed":
        lines.append("no task is open: blocks resume when a task is announced or extended ('popchain task list')")
    lines += committee_lines(s)
    emit(args, s, lines)


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
    shown = {"hash": b["hash"], **h, "miner": h.get("miner_address") or "(genesis: no miner)",
             "miner_pubkey": h.get("miner"), "txs": len(b["txs"]), "model_size": b["model_size"],
             "main_chain": b.get("main_chain")}
    lines = kv(shown, ["hash", "height", "round", "prev_hash", "timestamp", "miner", "miner_pubkey", "state_root",
                       "model_hash", "txs", "model_size", "main_chain"])
    lines += [f"  tx {t['txid'][:16]}…  {t['from_address']} -> {t['to_address']}  {t['amount']:,}  fee {t['fee']}"
              for t in b["txs"]]
    emit(args, b, lines)


def cmd_tx(args: argparse.Namespace) -> None:
    t = call(args, lambda c: c.tx(args.id))
    tx = t["tx"]
    shown = {"txid": tx.get("txid"), "status": t["status"], "height": t.get("height"), "block": t.get("block"),
             "from": tx.get("from_address"), "to": tx.get("to_address"), "amount": tx.get("amount"),
             "fee": tx.get("fee"), "nonce": tx.get("nonce"), "memo": tx.get("memo")}
    emit(args, t, kv(shown))


def round_lines(r: dict[str, Any]) -> list[str]:
    entries = r.get("entries") or []
    if r.get("beacon"):
        entry_text = f"{len(entries)} (listed in the beacon)"
    else:
        entry_text = f"{r.get('entries_seen', 0)} seen so far by this node (the beacon lists the final set)"
    verdict = r.get("verdict")
    if verdict:
        verdict_text = (f"crowned block {verdict['hash'][:16]}… at height {verdict['height']} by "
                        f"{verdict.get('miner_address')}  b {verdict['b']} c {verdict['c']} {rule_text(verdict)}")
    else:
        verdict_text = {"void": "void: no block passed the test"}.get(r.get("status", ""), "not decided yet")
    shown = {"round": r.get("round"), "status": r.get("status"), "anchor": r.get("anchor"),
             "shard_key": r.get("shard_key"), "entries": entry_text, "verdict": verdict_text}
    lines = kv(shown)
    lines += [f"  entry {e}" for e in entries]
    lines += [f"  candidate {c['hash'][:16]}…  b {c['b']} c {c['c']} {rule_text(c)}"
              for c in r.get("candidates") or []]
    return lines


def cmd_round(args: argparse.Namespace) -> None:
    if args.round != "current" and not args.round.isdigit():
        from node.tools.cli_common import CliError
        raise CliError(f"round: expected a round number or 'current', got {args.round!r}")
    r = call(args, lambda c: c.round(args.round))
    emit(args, r, round_lines(r))


def register(cmds: Commands) -> None:
    g = cmds.group("chain", "inspect the chain")
    g.leaf("info", "chain status", cmd_info, node=True)
    p = g.leaf("block", "a block by height or hash", cmd_block, node=True)
    p.add_argument("id", help="height (digits) or 64-hex block hash")
    p = g.leaf("tx", "a transfer by txid", cmd_tx, node=True)
    p.add_argument("id", help="64-hex txid")
    p = g.leaf("round", "a round: anchor, beacon, entries, scores, verdict", cmd_round, node=True)
    p.add_argument("round", help="round number or 'current'")
