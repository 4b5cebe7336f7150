"""Keyholder committee on the node network (PROTOCOL §3.10): every node relays committee messages; a member
node also runs its consensus.keyholder.Member.

``CommitteeRelay`` (every node): a COMMITTEE frame is charged to the peer's object budget, decoded, deduplicated,
checked (consensus.protocol.committee.check_msg, on the worker: signatures), kept only for rounds near the node's
current one, fed to the evidence book (a member signing two contents for one round → evidence stored by the
engine, a log line, ``popchain_committee_evidence_total``), then flooded to every other peer and handed to the
local member. A malformed or forged message is a violation (the peer is penalised); one for a far round is
dropped. Every node checks each RELEASE's share against its member's public share key (a bad one is evidence
naming the member: its signed message proves it), counts who it hears from and who released
(``node.committee_watch``), and judges and floods shares posted before their shard is revealed (LEAK frames,
``POST /api/committee/leak``: evidence of an early release). ``CommitteeService`` (member nodes): drives
``Member.step(now)`` on the engine worker, sends what it signs and a heartbeat every few seconds, publishes the
notices and beacons it assembles as the lone keyholder did, and records refusals.
What it does NOT do: decide anything (consensus/), or open its own connections (members meet over the node's
ordinary peers).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from chain.crypto import tagged_hash
from chain.errors import DecodeError, PopError, RuleError
from consensus.engine import EngineApi
from consensus.keyholder import Fetch, Member, Out, Refusal
from consensus.protocol.committee import (
    Body,
    CommitteeMsg,
    Evidence,
    Kind,
    StatementBook,
    check_msg,
    heartbeat,
)
from consensus.protocol.genesis import Genesis
from consensus.protocol.messages import AnchorNotice, Beacon, Entry
from node import wire
from node.committee_watch import HEARTBEAT_S, CommitteeWatch
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


WATCH_S = 1.0          # how often the committee's liveness is re-judged


class CommitteeRelay:
    def __init__(self, host: CommitteeHost, charge: Charge, publish: Publish) -> None:
        self.host = host
        self.charge = charge
        self.publish = publish
        self.seen: BoundedSet[bytes] = BoundedSet(8192)
        self.book = StatementBook()
        self.member: CommitteeService | None = None
        g = host.genesis
        # a committee chain's liveness and releases, watched by every node (a single keyholder sends nothing)
        self.watch = CommitteeWatch(g.keyholders, g.threshold, host.metrics) if g.committee is not None else None

    async def run(self) -> None:
        """Re-judge the committee's liveness and missed releases every WATCH_S (optional task)."""
        if self.watch is None:
            return
        while True:
            await self.watch.tick(self.host.worker, self.host.engine)
            await asyncio.sleep(WATCH_S)

    def info(self) -> dict[str, Any] | None:
        return None if self.watch is None else self.watch.info()

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
        if self.watch is not None:
            self.watch.seen(msg.signer)
            if msg.kind == Kind.RELEASE:
                await self._check_release(msg, body)
        for other in host.ready_peers():
            if other is not peer:
                other.send(frame)
        if self.member is not None:
            await self.member.on_message(msg, body)

    async def _check_release(self, msg: CommitteeMsg, body: Body) -> None:
        """A RELEASE's share must be proven against its member's public share key (§3.14); a bad one is evidence
        naming the member (its own signed message), and does not count as a release."""
        host = self.host
        member = host.genesis.keyholders.index(msg.signer) + 1
        try:
            await host.worker.call(host.engine.check_released_share, msg.round, member, body.share)
        except RuleError as exc:
            if exc.code == "bad-key-share":
                await self.record(Evidence(msg.round, msg.signer, "bad-share", msg.encode(), b""))
            return
        assert self.watch is not None
        self.watch.released(msg.round, msg.signer)

    async def handle_leak(self, peer: Peer | None, frame: wire.Leak) -> dict[str, Any]:
        """A share posted before its shard is revealed (from a peer, or ``POST /api/committee/leak``): judged by
        the engine against the member's public share key and this node's view of the rounds; valid → evidence,
        flooded to the other peers. RuleError for the API; a peer whose leak fails its proof is penalised."""
        host = self.host
        if peer is not None and not self.charge(peer, 1):
            return {}
        leak_id = tagged_hash("popchain/leak-id", frame.data)
        try:
            ev = await host.worker.call(host.engine.add_leak, frame.data, int(time.time() * 1000))
        except RuleError as exc:
            if peer is not None and exc.code == "bad-key-share":
                peer.offend(INVALID_OBJECT, f"{exc.code}: {exc}")
            if peer is None:
                raise
            return {}
        if leak_id not in self.seen:
            self.seen.add(leak_id)
            host.metrics.inc("popchain_committee_evidence_total", what=ev.what)
            log.warning("committee evidence: keyholder %s released its share of a shard before its reveal (seen "
                        "in round %d)", ev.signer.hex()[:16], ev.round)
            for other in host.ready_peers():
                if other is not peer:
                    other.send(frame)
        return {"round": ev.round, "signer": ev.signer.hex(), "what": ev.what}

    async def record(self, ev: Evidence) -> None:
        host = self.host
        new = await host.worker.call(host.engine.add_committee_evidence, ev)
        if new:
            host.metrics.inc("popchain_committee_evidence_total", what=ev.what)
            log.warning("committee evidence: keyholder %s %s in round %d", ev.signer.hex()[:16], _WHAT.get(
                ev.what, ev.what), ev.round)

    def broadcast(self, msg: CommitteeMsg) -> None:
        frame = wire.Committee(msg.encode())
        self.seen.add(msg.id)
        if self.watch is not None:      # our own messages never come back: count them here
            self.watch.seen(msg.signer)
            if msg.kind == Kind.RELEASE:
                self.watch.released(msg.round, msg.signer)
        for peer in self.host.ready_peers():
            peer.send(frame)


_WHAT = {"equivocation": "signed two different statements",
         "dropped-entry": "proposed a beacon leaving out a valid entry",
         "bad-share": "released a share that fails its proof"}


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
        if self.relay.watch is not None:
            self.relay.watch.me = self.member.me

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
        last_beat = 0.0
        g = self.host.genesis
        while True:
            now = time.time()
            if now - last_beat >= HEARTBEAT_S:
                last_beat = now
                r = await self.host.worker.call(self.host.engine.current_round)
                self.relay.broadcast(heartbeat(member.keypair, g.chain_id, r, int(now)))
            self._wake.clear()
            outs = await self.host.worker.call(member.step, time.time())
            for out in outs:
                await self._emit(out)
            if outs:
                continue   # something moved: look again at once (an assembled notice opens the next phase)
            deadline = await self.host.worker.call(member.next_deadline, time.time())
            deadline = min(deadline, last_beat + HEARTBEAT_S)
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
