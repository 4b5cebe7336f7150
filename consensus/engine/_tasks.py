"""The engine's task queries (PROTOCOL §3.13), a mixin of Engine: the task registry as of
now, per-task views (TaskInfo), champions per task, packages, activation bytes, and admission of task
messages into the engine's bounded pool.

What it does NOT do: validity of blocks, fork choice or finality (the Engine). Same
threading rule as the engine: synchronous, called on node/'s one worker thread.
"""
from __future__ import annotations

from dataclasses import dataclass

from chain.block import Header, model_hash
from chain.errors import DecodeError, RuleError
from chain.store import ChainStore
from consensus._meta import K_THROUGH, P_CHAMP, P_CMODEL, P_TMSG, u32
from consensus.engine._lineage import crowned_rounds, page
from consensus.engine._taskbook import TaskBook
from consensus.protocol.messages import AnchorNotice, Beacon
from consensus.protocol.registry import ChampionRecord, Registry, TaskRecord
from consensus.protocol.tasks import TaskAnnouncement, TaskMessage, decode_task_message, escrow_account
from ml.shards import PublicTask
from ml.task import TaskSpec

__all__ = ["TaskInfo", "TaskQueries"]


@dataclass(frozen=True)
class TaskInfo:
    """One task as the API/CLI shows it (PROTOCOL §3.13). ``status`` is "open" while it has shards left, else
    "closed"; ``shards_revealed`` counts the shards whose round revealed its key (void rounds included);
    ``bounty_left`` is the escrow account's balance at the tip; ``bounty_total`` the announced bounty."""
    task_id: int
    name: str
    spec: TaskSpec
    sponsor: bytes
    shards_total: int
    shards_revealed: int
    shards_left: int
    status: str
    bounty_total: int
    bounty_left: int
    bounty_per_crowning: int
    champion: ChampionRecord
    extensions: int
    msg_hash: bytes             # the announcement's id (the genesis hash for task 0)
    escrow: bytes               # the escrow account id


class TaskQueries:
    """Mixed into Engine, which provides these."""
    store: ChainStore
    book: TaskBook
    _final: Header
    _round: int

    def tip(self) -> Header:
        raise NotImplementedError   # Engine's

    def beacon(self, r: int) -> Beacon | None:
        raise NotImplementedError

    def notice(self, r: int) -> AnchorNotice | None:
        raise NotImplementedError

    def round_task(self, r: int) -> tuple[int, int] | None:
        raise NotImplementedError

    # ------------------------------------------------------------ tasks (PROTOCOL §3.13)

    def registry(self) -> Registry:
        """The task registry as of now: the tip's (a round-R block), or the final anchor's folded through the
        rounds since (activations, void rounds' shards, the current round's shard once revealed)."""
        tip = self.tip()
        if tip.hash != self._final.hash:
            return self.book.registry_at(tip)
        reg = self.book.registry_at(self._final)
        st: AnchorNotice | Beacon | None = self.beacon(self._round) or self.notice(self._round)
        if st is None or st.anchor_hash != self._final.hash or st.round <= self._final.round:
            return reg
        try:
            adv = self.book.advance(reg, self._final, st.round, st.activations)
        except RuleError:
            return reg   # a task message it names has not reached us yet
        reg = adv.before
        if isinstance(st, Beacon) and adv.served is not None:
            reg = reg.consume(adv.served)
        return reg

    def _task_info(self, reg: Registry, t: TaskRecord) -> TaskInfo:
        spec = self.book.package_of(t).spec if t.task_id == 0 or self.book.message(t.msg_hash) else None
        revealed = t.shards_used
        escrow = escrow_account(t.task_id)
        left = self.store.get_account(escrow).balance if t.task_id else 0
        return TaskInfo(t.task_id, spec.name if spec else "?", spec, t.sponsor,  # type: ignore[arg-type]
                        t.shards_total, revealed, t.shards_left, "open" if t.shards_left > 0 else "closed",
                        t.bounty, left, t.per_crowning, t.champion, t.extensions, t.msg_hash, escrow)

    def tasks(self) -> list[TaskInfo]:
        """Every task of the chain, in id order (0 = the genesis task)."""
        reg = self.registry()
        return [self._task_info(reg, t) for t in reg.tasks]

    def task(self, task_id: int) -> TaskInfo | None:
        reg = self.registry()
        t = reg.task(task_id)
        return None if t is None else self._task_info(reg, t)

    def task_package(self, task_id: int) -> PublicTask:
        """Task ``task_id``'s public package with every activated extension's shards (shard s at index s−1)."""
        t = self.registry().task(task_id)
        if t is None:
            raise RuleError("unknown-task", f"no task {task_id}")
        return self.book.package_of(t)

    def activation_bytes(self, statement: AnchorNotice | Beacon) -> tuple[bytes, ...]:
        """The bytes of the task messages a notice/beacon activates, in order (what a round payload carries)."""
        out = []
        for _, h in statement.activations:
            msg = self.book.message(h)
            if msg is None:
                raise RuleError("missing-activation", f"task message {h.hex()[:16]} is not known here")
            out.append(msg.encode())
        return tuple(out)

    def activation_bytes_of(self, msg_hash: bytes) -> bytes:
        msg = self.book.message(msg_hash)
        if msg is None:
            raise RuleError("missing-activation", f"task message {msg_hash.hex()[:16]} is not known here")
        return msg.encode()

    def task_message(self, msg_hash: bytes) -> TaskMessage | None:
        return self.book.message(msg_hash)

    def task_messages(self, task_id: int) -> list[TaskMessage]:
        """Task ``task_id``'s announcement and its activated extensions, in order (what its package is built from;
        none for task 0, whose package is in genesis). Read-only: for auditors and explorers."""
        t = self.registry().task(task_id)
        if t is None or task_id == 0:
            return []
        return [m for m in (self.book.message(h) for h, _ in t.batches) if m is not None]

    def champion_at(self, height: int) -> ChampionRecord | None:
        """The champion record of the main-chain block at ``height`` (None: none there). Read-only."""
        raw = self.store.meta_get(P_CHAMP + u32(height))
        return None if raw is None else ChampionRecord.decode(raw)

    def task_message_ids(self) -> list[bytes]:
        """The ids of every task message stored here (activated or waiting), in id order."""
        return self.book.ids()

    def check_task_message(self, msg: TaskMessage) -> None:
        """Everything a task message must pass to be stored and relayed: stateless checks (signatures,
        package, champion) and, against the current registry, not a replay, a known task, a fresh seq."""
        self.book.check_message(msg)
        reg = self.registry()
        if reg.has_message(msg.msg_hash):
            raise RuleError("task-replay", "this task message is already applied")
        if not isinstance(msg, TaskAnnouncement):
            t = reg.task(msg.task_id)
            if t is None:
                raise RuleError("unknown-task", f"no task {msg.task_id} (the chain has {len(reg.tasks)})")
            if msg.seq <= t.extensions:
                raise RuleError("bad-task-seq", f"extension seq {msg.seq}: task {t.task_id} has {t.extensions}")
            self.book.check_extension_fits(msg, reg)

    def add_task_message(self, msg: TaskMessage | bytes) -> bool:
        """Validate and store an announcement/extension (bounded pool) for the keyholder to activate. True if
        new (relay it), False if already known. Raises RuleError with the reject code."""
        if isinstance(msg, bytes):
            try:
                msg = decode_task_message(msg)
            except DecodeError as exc:
                raise RuleError("bad-task-message", str(exc)) from None
        if self.store.meta_get(P_TMSG + msg.msg_hash) is not None:
            return False
        self.check_task_message(msg)
        return self.book.add_to_pool(msg, self.registry())

    def pending_task_messages(self) -> list[TaskMessage]:
        """Stored task messages the registry has not applied, in activation order: announcements by id, then
        extensions by (task, seq)."""
        pending = self.book.pending(self.registry())
        return sorted(pending, key=lambda m: (0, 0, 0, m.msg_hash) if isinstance(m, TaskAnnouncement)
                      else (1, m.task_id, m.seq, m.msg_hash))

    def _task_of(self, task_id: int | None) -> int:
        if task_id is not None:
            return task_id
        served = self.round_task(self._round) if self._round else None
        return served[0] if served else 0

    def champion(self, task_id: int | None = None) -> ChampionRecord:
        """The champion of ``task_id`` (None: of the current round's task, 0 before any round)."""
        reg = self.registry()
        t = reg.task(self._task_of(task_id))
        if t is None:
            raise RuleError("unknown-task", f"no task {task_id}")
        return t.champion

    def champion_history(self, task_id: int | None = None, *, before: int | None = None,
                         limit: int | None = None) -> list[ChampionRecord]:
        """Crowned models of the main chain in height order (None: every task, genesis first; else that task's,
        starting with its initial champion): the newest ``limit`` records below height ``before``. Reads only
        what it returns (keyed indexes, consensus.engine._lineage); ``limit=None`` reads the whole lineage —
        for audits and tests, never a per-block or per-request path."""
        n = (1 << 32) if limit is None else limit
        if n <= 0:
            return []
        if task_id is None:
            return page(self.store, before=before, limit=n)
        recs = page(self.store, task_id=task_id, before=before, limit=n)
        if task_id != 0 and len(recs) < n:
            t = self.registry().task(task_id)
            first = self._initial_champion(t) if t is not None else None
            if first is not None:
                recs.insert(0, first)
        return recs

    def miner_champions(self, account: bytes, *, before: int | None = None,
                        limit: int = 50) -> list[ChampionRecord]:
        """The newest ``limit`` main-chain records crowned by a miner key of ``account`` (its address) below
        height ``before``, oldest first."""
        return page(self.store, account=account, before=before, limit=limit)

    def champion_of_model(self, model_hash: bytes) -> ChampionRecord | None:
        """The main-chain champion record that crowned ``model_hash`` (the current round's leader included), by
        key; None for a model no block of the main chain crowned (an initial champion included)."""
        raw = self.store.meta_get(P_CMODEL + model_hash)
        rec = None if raw is None else self.champion_at(int.from_bytes(raw, "big"))
        return rec if rec is not None and rec.model_hash == model_hash and rec.height > 0 else None

    def crowned_rounds(self, first: int, last: int) -> dict[int, ChampionRecord]:
        """round -> champion record of every crowned round in [first, last] (reads that window only)."""
        return crowned_rounds(self.store, first, last)

    def first_missing_round(self) -> int:
        """The first round with neither a beacon nor an idle notice here (what round sync asks peers from).
        Walks forward from a stored hint, so a call costs the rounds learnt since the last one."""
        raw = self.store.meta_get(K_THROUGH)
        start = r = 1 if raw is None else int.from_bytes(raw, "big")
        while self.beacon(r) is not None or ((n := self.notice(r)) is not None and n.idle):
            r += 1
        if r > start:
            self.store.meta_put(K_THROUGH, u32(r))
        return r

    def initial_champion(self, task_id: int) -> ChampionRecord | None:
        """An announced task's initial champion record (round 0; None for task 0 and unknown tasks)."""
        t = self.registry().task(task_id)
        return self._initial_champion(t) if t is not None and task_id != 0 else None

    def _initial_champion(self, t: TaskRecord) -> ChampionRecord | None:
        """The activation-time champion record of an announced task (kept in its registry until crowned)."""
        ann = self.book.message(t.msg_hash)
        if not isinstance(ann, TaskAnnouncement):
            return None
        return ChampionRecord(t.msg_hash, 0, 0, bytes(32), model_hash(ann.champion), 0, 0, 0, t.task_id)

    def champion_model(self, task_id: int | None = None) -> bytes:
        reg = self.registry()
        t = reg.task(self._task_of(task_id))
        if t is None:
            raise RuleError("unknown-task", f"no task {task_id}")
        return self.book.champion_model(t)
