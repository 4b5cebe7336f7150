"""What a keyholder-committee notice serves (PROTOCOL §3.10 "Tasks", §3.13): the (task, shard, activations) a
member proposes and the check it applies to another leader's proposal, and the package of the served task.

What it does NOT do: sign, journal or talk to other members (the Member does), or define the schedule itself
(consensus.protocol.registry's fold, through the engine's TaskBook).
"""
from __future__ import annotations

from typing import Any

from chain.block import Header
from chain.errors import RuleError
from consensus.engine import Engine, activation_budget
from consensus.protocol.messages import MAX_ACTIVATIONS, AnchorNotice, Beacon
from consensus.protocol.tasks import TaskAnnouncement

__all__ = ["CommitteeSchedule"]


class CommitteeSchedule:
    """One member's view of the schedule: its engine (chain state, stored task messages) and its shares
    (whether it could help reveal a new task's keys)."""

    def __init__(self, engine: Engine, shares: Any) -> None:
        self.engine = engine
        self.store = engine.store
        self.genesis = engine.genesis
        self.shares = shares

    def _carried(self, anchor: Header, r: int) -> tuple[tuple[int, bytes], ...]:
        """The activations notice r must repeat: those of notice r−1 when it has the same anchor (§3.13)."""
        prev = self.engine.notice(r - 1) if r > 1 else None
        return tuple(prev.activations) if prev is not None and prev.anchor_hash == anchor.hash else ()

    def _holds(self, msg: Any) -> bool:
        """This member holds its shares of the batch a task message brings (checked at its first shard: a
        share file covers a whole batch), so it can release them when the rounds come."""
        holds = getattr(self.shares, "holds", None)
        if holds is None:
            return False
        first = (self.engine.book.decoded_package(msg).commitments[0] if isinstance(msg, TaskAnnouncement)
                 else msg.commitments[0])
        return bool(holds(first))

    def schedule(self, anchor: Header, r: int) -> tuple[int, int, tuple[tuple[int, bytes], ...]]:
        """(task, shard, activations) of notice r on ``anchor`` (§3.13): the activations the previous notice
        carried on the same anchor, then every stored task message that applies in order and whose shares this
        member holds (a member never co-signs a round whose key it could not help reveal), and the schedule
        the fold gives."""
        book = self.engine.book
        reg = book.registry_at(anchor)
        acts = list(self._carried(anchor, r))
        budget = activation_budget(self.genesis.params.max_block_bytes)
        budget -= sum(len(self.engine.activation_bytes_of(h)) for _, h in acts)
        for msg in self.engine.pending_task_messages():
            if len(acts) >= MAX_ACTIVATIONS or any(h == msg.msg_hash for _, h in acts):
                continue
            size = len(msg.encode())
            if size > budget or not self._holds(msg):
                continue
            try:
                book.advance(reg, anchor, r, [*acts, (r, msg.msg_hash)])
            except RuleError:
                continue       # does not apply (yet)
            budget -= size
            acts.append((r, msg.msg_hash))
        served = book.advance(reg, anchor, r, acts).served
        task_id, index = served if served is not None else (0, 0)
        return task_id, index, tuple(acts)

    def check_schedule(self, notice: AnchorNotice, anchor: Header) -> None:
        """A proposed notice's (task, shard, activations): it repeats what notice r−1 carried on the anchor,
        every new activation is a stored task message whose shares this member holds, the fold applies them,
        and the (task, shard) is the one the fold gives. RuleError("bad-proposal") otherwise."""
        carried = self._carried(anchor, notice.round)
        acts = tuple(notice.activations)
        if acts[:len(carried)] != carried:
            raise RuleError("bad-proposal", "the notice drops activations its predecessor on this anchor made")
        for q, h in acts[len(carried):]:
            msg = self.engine.book.message(h)
            if q != notice.round or msg is None:
                raise RuleError("bad-proposal", f"activation {h.hex()[:16]} is not a task message held here")
            if not self._holds(msg):
                raise RuleError("bad-proposal", f"no shares installed here for task message {h.hex()[:16]}")
        book = self.engine.book
        try:
            served = book.advance(book.registry_at(anchor), anchor, notice.round, acts).served
        except RuleError as exc:
            raise RuleError("bad-proposal", f"activations do not apply: {exc}") from None
        if (notice.task_id, notice.shard_index) != (served if served is not None else (0, 0)):
            raise RuleError("bad-proposal", "the (task, shard) differs from the schedule")

    def served_package(self, notice: AnchorNotice | Beacon) -> Any:
        """The public package of the task round ``notice.round`` serves, as the fold from its anchor has it."""
        book = self.engine.book
        anchor = self.store.get_header(notice.anchor_hash)
        if anchor is None:
            raise RuleError("bad-proposal", f"anchor {notice.anchor_hash.hex()[:16]} unknown here")
        adv = book.advance(book.registry_at(anchor), anchor, notice.round, notice.activations)
        return book.package_of(adv.before.tasks[notice.task_id])

