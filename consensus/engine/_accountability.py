"""The engine's committee-accountability queries (PROTOCOL §3.10, §3.14), a mixin of Engine: checking a share a
member released on the wire, judging a share someone posts before its shard is revealed (an early release:
evidence anyone can post and every node can check), and counting the rounds in which a member released
nothing.

What it does NOT do: clocks (the node passes ``now_ms``, a policy input: the release window of the open
round is judged on the node's clock), networking, or punish anyone (evidence is reported: /api/status,
metrics, the explorer).
"""
from __future__ import annotations

from chain.block import Header
from chain.encoding import pack, unpack
from chain.errors import DecodeError, RuleError
from chain.store import ChainStore
from consensus._meta import P_CMISS, u32
from consensus.engine._taskbook import TaskBook
from consensus.protocol.committee import Evidence
from consensus.protocol.genesis import Genesis
from consensus.protocol.messages import AnchorNotice, Beacon
from consensus.protocol.registry import Registry
from consensus.protocol.release import Leak, Partial, check_partial, ledger_point

__all__ = ["RELEASE_SLACK_MS", "CommitteeAccountability"]

RELEASE_SLACK_MS = 2_000     # members' clocks may run this far ahead: a share this close to the deadline is not early


class CommitteeAccountability:
    """Mixed into Engine (which provides the attributes and methods named below)."""

    store: ChainStore
    genesis: Genesis
    book: TaskBook
    _final: Header
    _round: int

    def notice(self, r: int) -> AnchorNotice | None:
        raise NotImplementedError   # Engine's

    def beacon(self, r: int) -> Beacon | None:
        raise NotImplementedError

    def add_committee_evidence(self, ev: Evidence) -> bool:
        raise NotImplementedError

    def registry(self) -> Registry:
        raise NotImplementedError   # TaskQueries' (the registry as of now, folded through the current round)

    def _point_of(self, task_id: int, shard: int) -> bytes:
        """The point of shard ``shard`` of task ``task_id`` in the registry as of now (tasks the current
        round's notice activated included)."""
        task = self.registry().task(task_id)
        if task is None or not 1 <= shard <= task.shards_total:
            raise RuleError("not-early", f"task {task_id} has no shard {shard} here (yet)")
        try:
            return self.book.round_secret(task, shard)[0]
        except RuleError as exc:
            raise RuleError("not-early", f"task {task_id} shard {shard}: {exc.message}") from None

    def check_released_share(self, r: int, member: int, share: bytes) -> None:
        """A share member ``member`` (1-based) released for round r is proven against its public share key.
        RuleError("bad-key-share") naming the member otherwise; ("not-early") if round r is unknown here."""
        committee = self.genesis.committee
        if committee is None:
            raise RuleError("bad-key-share", "this chain has no keyholder committee")
        notice = self.notice(r)
        if notice is None:
            raise RuleError("not-early", f"round {r} is not known here")
        try:
            partial = Partial.decode(share)
        except DecodeError as exc:
            raise RuleError("bad-key-share", f"member {member}'s share: {exc}") from None
        if partial.member != member:
            raise RuleError("bad-key-share", f"member {member} released member {partial.member}'s share")
        # a ledger round (idle notice, issue 21) releases shares of its (round, anchor) point, not of a shard's
        point = (ledger_point(self.genesis.hash, r, notice.anchor_hash) if notice.served is None
                 else self._point_of(*notice.served))
        check_partial(committee, self.genesis.hash, point, partial)

    def add_leak(self, data: bytes, now_ms: int) -> Evidence:
        """Judge a posted share (``Leak`` bytes): if its proof holds and its shard is not revealed — not even in
        its round's release window, which opens at the round's entry deadline on this node's clock — it is
        evidence that its member released early. Returns the evidence (stored; a second one of the member in
        the same round is not stored again). RuleError: "bad-key-share" (the proof fails: the poster lied),
        "not-early" (revealed, in its window, or unknown here)."""
        committee = self.genesis.committee
        if committee is None:
            raise RuleError("not-early", "this chain has no keyholder committee")
        try:
            leak = Leak.decode(data)
        except DecodeError as exc:
            raise RuleError("bad-key-share", f"leak: {exc}") from None
        served = (leak.task_id, leak.shard)
        task = self.book.registry_at(self._final).task(leak.task_id)
        if task is not None and leak.shard <= task.shards_used:
            raise RuleError("not-early", f"shard {leak.shard} of task {leak.task_id} is revealed")
        for q in range(self._final.round + 1, self._round + 1):
            beacon, notice = self.beacon(q), self.notice(q)
            if beacon is not None and beacon.served == served:
                raise RuleError("not-early", f"shard {leak.shard} of task {leak.task_id} was revealed in round {q}")
            if (beacon is None and notice is not None and notice.served == served
                    and now_ms >= notice.entry_deadline_ms - RELEASE_SLACK_MS):
                raise RuleError("not-early", f"round {q} is in its release window")
        check_partial(committee, self.genesis.hash, self._point_of(*served), leak.partial)
        ev = Evidence(max(1, self._round), committee.keyholders[leak.partial.member - 1], "early-share", data, b"")
        self.add_committee_evidence(ev)
        return ev

    def record_missed_release(self, r: int, member: int) -> bool:
        """Count a round in which member ``member`` (1-based) released no share while the round revealed
        (a node's observation, not a proof). True if counted (once per member and round)."""
        key = P_CMISS + u32(member)
        raw = self.store.meta_get(key)
        count, last = (0, 0) if raw is None else unpack(raw, max_size=32)
        if r <= last:
            return False
        self.store.meta_put(key, pack([count + 1, r]))
        return True

    def missed_releases(self) -> dict[int, tuple[int, int]]:
        """member (1-based) → (rounds it missed, the last one)."""
        out = {}
        for key, value in self.store.meta_items(P_CMISS):
            count, last = unpack(value, max_size=32)
            out[int.from_bytes(key[len(P_CMISS):], "big")] = (count, last)
        return out
