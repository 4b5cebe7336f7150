"""Keyholder committee on the node network (PROTOCOL §3.10): every node relays committee messages; a member
node also runs its consensus.keyholder.Member.

``CommitteeRelay`` (every node): a COMMITTEE frame is charged to the peer's object budget, decoded, deduplicated,
checked (consensus.protocol.committee.check_msg, on the worker: signatures), kept only for rounds near the node's
current one, fed to the evidence book (a member signing two contents for one round → evidence stored by the
engine, a log line, ``popchain_committee_evidence_total``), then flooded to every other peer and handed to the
local member. A malformed or forged message is a violation (the peer is penalised); one for a far round is
dropped. ``CommitteeService`` (member nodes): drives ``Member.step(now)`` on the engine worker, sends what it
signs, publishes the notices and beacons it assembles as the lone keyholder did, and records refusals.
What it does NOT do: decide anything (consensus/), or open its own connections (members meet over the node's
ordinary peers).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from chain.errors import DecodeError, PopError, RuleError
from consensus.engine import EngineApi
from consensus.keyholder import Fetch, Member, Out, Refusal
from consensus.protocol.committee import Body, CommitteeMsg, Evidence, StatementBook, check_msg
from consensus.protocol.genesis import Genesis
from consensus.protocol.messages import AnchorNotice, Beacon, Entry
from node import wire
from node.judge import object_id
from node.limits import INVALID_OBJECT, BoundedSet
from node.metrics import Metrics
from node.peer import Peer
from node.wire import InvKind
from node.worker import EngineWorker

log = logging.getLogger("popchain.committee")

ROUND_REACH = 2        # committee messages are relayed for rounds within this many of the node's current one
MAX_SLEEP_S = 0.25


class CommitteeHost(Protocol):
    """What the committee needs from the node (node.node.Node provides it)."""

    @property
    def worker(self) -> EngineWorker: ...
    @property
    def engine(self) -> EngineApi: ...    # on the worker thread only
    @property
    def genesis(self) -> Genesis: ...
    @property
    def metrics(self) -> Metrics: ...
    def ready_peers(self) -> list[Peer]: ...
    async def after_round_event(self) -> None: ...


Charge = Callable[[Peer, int], bool]                       # node.gossip.Relay.charge (the peer's object budget)
Publish = Callable[[InvKind, bytes, bytes, int], None]     # node.gossip.Relay.publish


class CommitteeRelay:
    def __init__(self, host: CommitteeHost, charge: Charge, publish: Publish) -> None:
        self.host = host
        self.charge = charge
        self.publish = publish
        self.seen: BoundedSet[bytes] = BoundedSet(8192)
        self.book = StatementBook()
        self.member: CommitteeService | None = None

    async def handle(self, peer: Peer | None, frame: wire.Committee) -> None:
        host = self.host
        if peer is not None and not self.charge(peer, 1):
            return
        try:
            msg = CommitteeMsg.decode(frame.data)
        except DecodeError as exc:
            if peer is not None:
                peer.offend(INVALID_OBJECT, f"bad-committee-msg: {exc}")
            return
        if msg.id in self.seen:
            return
        self.seen.add(msg.id)
        g = host.genesis
        try:
            body, current = await host.worker.call(_check, host.engine, msg, g.chain_id, g.keyholders)
        except RuleError as exc:
            host.metrics.inc("popchain_committee_rejected_total", reason=exc.code)
            if peer is not None:
                peer.offend(INVALID_OBJECT, f"{exc.code}: {exc}")
            return
        if abs(msg.round - max(current, 1)) > ROUND_REACH:
            host.metrics.inc("popchain_committee_rejected_total", reason="far-round")
            return
        evidence = self.book.observe(msg, body)
        if evidence is not None:
            await self.record(evidence)
        for other in host.ready_peers():
            if other is not peer:
                other.send(frame)
        if self.member is not None:
            await self.member.on_message(msg, body)

    async def record(self, ev: Evidence) -> None:
        host = self.host
        new = await host.worker.call(host.engine.add_committee_evidence, ev)
        if new:
            host.metrics.inc("popchain_committee_evidence_total", what=ev.what)
            log.warning("committee evidence: keyholder %s %s in round %d", ev.signer.hex()[:16],
                        "signed two different statements" if ev.what == "equivocation" else
                        "proposed a beacon leaving out a valid entry", ev.round)

    def broadcast(self, msg: CommitteeMsg) -> None:
        frame = wire.Committee(msg.encode())
        self.seen.add(msg.id)
        for peer in self.host.ready_peers():
            peer.send(frame)


def _check(engine: EngineApi, msg: CommitteeMsg, chain_id: str, keyholders: Sequence[bytes]) -> tuple[Body, int]:
    return check_msg(msg, chain_id, keyholders), engine.current_round()


class CommitteeService:
    """A member node: ``Member`` on the node's clock."""

    def __init__(self, host: CommitteeHost, relay: CommitteeRelay, make_member: Callable[[], Member],
                 fetch: Callable[[bytes], None] | None = None) -> None:
        self.host = host
        self.relay = relay
        self.make_member = make_member       # () -> Member, run on the worker thread
        self.fetch = fetch                   # ask peers for a block by hash (node.gossip.Relay.refetch)
        self.member: Member | None = None
        self.published: list[tuple[str, int]] = []
        self.published_at: dict[tuple[str, int], float] = {}
        self.refusals: list[Refusal] = []
        self._wake = asyncio.Event()

    async def open(self) -> None:
        self.member = await self.host.worker.call(self.make_member)
        self.relay.member = self

    def close(self) -> None:
        pass   # the journal lives in the store, which the node closes

    def info(self) -> dict[str, Any]:
        m = self.member
        if m is None:
            return {}
        return {"member": m.index + 1, "n": len(m.genesis.keyholders), "threshold": m.t,
                "pubkey": m.me.hex(), "failover_ms": m.failover,
                "refusals": [{"round": x.round, "kind": x.kind, "proposer": x.proposer.hex(), "code": x.code,
                              "reason": x.reason} for x in self.refusals[-16:]]}

    async def on_message(self, msg: CommitteeMsg, body: Body) -> None:
        assert self.member is not None
        await self.host.worker.call(self.member.on_message, msg, body)
        self._wake.set()

    async def on_entry(self, entry: Entry) -> None:
        assert self.member is not None
        try:
            kept = await self.host.worker.call(self.member.on_entry, entry, time.time())
        except PopError as exc:
            log.info("entry of round %d refused by the committee member: %s", entry.round, exc)
            return
        if kept:
            self._wake.set()

    async def run(self) -> None:
        member = self.member
        assert member is not None, "open() first"
        while True:
            self._wake.clear()
            outs = await self.host.worker.call(member.step, time.time())
            for out in outs:
                await self._emit(out)
            if outs:
                continue   # something moved: look again at once (an assembled notice opens the next phase)
            deadline = await self.host.worker.call(member.next_deadline, time.time())
            try:
                async with asyncio.timeout(min(MAX_SLEEP_S, max(0.0, deadline - time.time()) + 0.005)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _emit(self, out: Out) -> None:
        host = self.host
        if isinstance(out, CommitteeMsg):
            self.relay.broadcast(out)
        elif isinstance(out, (AnchorNotice, Beacon)):
            kind = InvKind.ANCHOR if isinstance(out, AnchorNotice) else InvKind.BEACON
            data = out.encode()
            self.relay.publish(kind, object_id(kind, data), data, out.round)
            name = kind.name.lower()
            self.published.append((name, out.round))
            self.published_at.setdefault((name, out.round), time.perf_counter())
            log.info("committee: assembled and published %s for round %d (%d signatures)", name, out.round,
                     len(out.signatures))
            await host.after_round_event()
        elif isinstance(out, Evidence):
            await self.relay.record(out)
        elif isinstance(out, Fetch):
            # blocks a proposal names that this member lacks (anchor, openings): ask the peers again, so views
            # converge even when the first copies were lost, raced or withheld (PROTOCOL §3.10 liveness)
            host.metrics.inc("popchain_committee_fetches_total")
            log.info("committee: round %d proposal names %d block(s) this member lacks; asking peers", out.round,
                     len(out.blocks))
            if self.fetch is not None:
                for h in out.blocks:
                    self.fetch(h)
        elif isinstance(out, Refusal):
            self.refusals.append(out)
            del self.refusals[:-64]
            host.metrics.inc("popchain_committee_refusals_total", code=out.code)
            log.warning("committee: refused the %s proposal of %s for round %d: %s (%s)", out.kind,
                        out.proposer.hex()[:16], out.round, out.code, out.reason)
