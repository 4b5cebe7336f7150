"""What the honest nodes did while an attacker ran, read from outside: their JSON logs (``--log-format json``)
and their HTTP APIs. It computes the live figures of issue 18:

- ``censored`` - genuine valid blocks (accepted or opened by the node the miner posted to) that an honest node
  never accepted nor opened, and that are not on its main chain either;
- ``penalties`` - penalty points honest nodes gave honest peers (a peer is honest unless it connected from the
  attackers' address range), from the nodes' ``peer KEY REASON (+N -> M): detail`` log lines.

It parses the log lines node/judge.py and node/connections.py write today (the strings are listed below);
nothing here judges a block itself.
"""
from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.attacks.wire_peer import AddressPool

ACCEPTED = re.compile(r"^block \d+ round (\d+) ([0-9a-f]{16}) accepted")
OPENED = re.compile(r"^block round (\d+) ([0-9a-f]{16}) opened")
CONNECTED = re.compile(r"^block ([0-9a-f]{16}) connected")
REJECTED = re.compile(r"^rejected block ([0-9a-f]{16}): (.*)")
OFFENCE = re.compile(r"^peer (\S+) (\S+) \(\+(\d+) -> (-?\d+)\): (.*)")


@dataclass(frozen=True)
class Line:
    t: float
    level: str
    logger: str
    msg: str


def read_log(datadir: Path) -> list[Line]:
    """The node's JSON log lines (rotated files first), oldest first; lines that are not JSON are skipped."""
    files = sorted(datadir.glob("node.log.*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    out: list[Line] = []
    for path in [*files, datadir / "node.log"]:
        if not path.exists():
            continue
        for raw in path.read_text(errors="replace").splitlines():
            try:
                obj = json.loads(raw)
                t = datetime.datetime.fromisoformat(obj["ts"]).timestamp()
                out.append(Line(t, obj["level"], obj["logger"], obj["msg"]))
            except (ValueError, KeyError, TypeError):
                continue
    return out


@dataclass
class NodeView:
    """One node's verdicts on blocks and the penalties it gave, from its log."""
    name: str
    accepted: dict[str, float] = field(default_factory=dict)      # header hash[:16] -> first time (valid or opened)
    valid: set[str] = field(default_factory=set)                  # of which valid blocks (not mere openings)
    rejected: dict[str, str] = field(default_factory=dict)        # header hash[:16] -> first refusal's detail
    offences: list[tuple[float, str, str, int, str]] = field(default_factory=list)  # (t, peer, reason, +points, detail)

    @classmethod
    def of(cls, name: str, lines: Iterable[Line]) -> NodeView:
        view = cls(name)
        for ln in lines:
            m = ACCEPTED.match(ln.msg)
            if m:
                view.valid.add(m.group(2))
            m = m or OPENED.match(ln.msg)
            if m:
                view.accepted.setdefault(m.group(2), ln.t)
                continue
            c = CONNECTED.match(ln.msg)
            if c:
                view.valid.add(c.group(1))
                view.accepted.setdefault(c.group(1), ln.t)
                continue
            m = REJECTED.match(ln.msg)
            if m:
                view.rejected.setdefault(m.group(1), m.group(2))
                continue
            m = OFFENCE.match(ln.msg)
            if m:
                view.offences.append((ln.t, m.group(1), m.group(2), int(m.group(3)), m.group(5)))
        return view


def is_attacker(peer_key: str, attacker_range: tuple[str, str]) -> bool:
    host = peer_key.rsplit(":", 1)[0].strip("[]")
    return AddressPool.contains(*attacker_range, host)


def honest_penalties(views: Sequence[NodeView], attacker_range: tuple[str, str], since: float,
                     until: float) -> list[tuple[str, float, str, str, int, str]]:
    """(node, t, peer, reason, points, detail) for every penalty an honest node gave an honest peer in
    [since, until]."""
    return [(v.name, t, peer, reason, pts, detail) for v in views for (t, peer, reason, pts, detail) in v.offences
            if since <= t <= until and not is_attacker(peer, attacker_range)]


@dataclass(frozen=True)
class Censorship:
    block: str            # full header hash hex
    node: str
    refused: str          # the refusal the node logged for this identity ("" = none: it never judged a copy)


def censored(blocks: Iterable[str], views: Sequence[NodeView], on_main_chain: dict[str, set[str]],
             winners: set[str] | None = None) -> list[Censorship]:
    """(block, node) pairs: a genuine valid block the node neither accepted nor opened (log) nor holds on its
    main chain (API; ``on_main_chain``: node -> short ids). Blocks are full or short (16 hex) ids.

    ``winners`` (short ids on the main chain of the miners' node, when known): a block the node never judged
    and that lost its round's fork choice at the source too (a plain block beaten by a crowning one) is not
    counted - no node need fetch a sibling that loses; a logged refusal always counts."""
    out = []
    for b in blocks:
        for v in views:
            if b[:16] in v.accepted or b[:16] in on_main_chain.get(v.name, set()):
                continue
            refused = v.rejected.get(b[:16], "")
            if not refused and winners is not None and b[:16] not in winners:
                continue
            out.append(Censorship(b, v.name, refused))
    return out


def genuine_blocks(source: NodeView, since: float, until: float) -> list[str]:
    """Short ids of the blocks the miners' node accepted or opened in [since, until] (valid, by its verdict)."""
    return [h for h, t in source.accepted.items() if since <= t <= until]
