"""The task registry (PROTOCOL §3.13): which tasks a chain has, how many shards each has left, who champions
each, and which (task, shard) a round serves — a pure, deterministic function of chain history.

``Registry`` is an immutable value: genesis gives task 0; ``activate`` applies an announcement (new task id =
number of tasks) or an extension (seq = extensions so far + 1); ``schedule`` names the (task, shard) of the next
round: round-robin in task-id order after the task served last, over the tasks with shards left (None: idle,
every task is exhausted); ``consume`` spends that shard. ``advance`` folds the rounds since an anchor (their
activations and the shards void rounds spent) into the registry a block of round r validates against, with the
escrow moves (bounty at activation, refund at close) that block applies. The engine stores the registry of every
main-chain block (meta ``c/treg/<height>``) in the block's own WriteBatch.

What it does NOT do: signatures of notices/beacons, the ledger (moves are returned, chain/ applies them), or
opening shards. Integers and byte strings only; no clock, no dict order (tasks are a tuple in id order).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from chain.address import address_of
from chain.encoding import check_bytes, check_int, check_list, check_list_max, pack, unpack
from chain.errors import DecodeError, RuleError
from chain.state import MAX_BALANCE, Move
from consensus.protocol.messages import MAX_TASK_ID
from consensus.protocol.tasks import TaskAnnouncement, TaskExtension, TaskMessage, escrow_account

ZERO_KEY = bytes(32)
MAX_SHARDS_PER_TASK = 1_000_000
MAX_BATCHES = 10_000            # announcement + extensions of one task
MAX_REGISTRY_SIZE = 16 << 20


@dataclass(frozen=True)
class ChampionRecord:
    """Provenance of a crowned model (the genesis champion has round 0, b = c = bar = 0; the initial champion
    of an announced task has the announcement's id as ``hash``, the activating round and a zero miner)."""
    hash: bytes
    height: int
    round: int
    miner: bytes
    model_hash: bytes
    b: int
    c: int
    bar: int
    task_id: int = 0

    def to_list(self) -> list:
        return [self.hash, self.height, self.round, self.miner, self.model_hash, self.b, self.c, self.bar,
                self.task_id]

    def encode(self) -> bytes:
        return pack(self.to_list())

    @classmethod
    def from_list(cls, f: list) -> ChampionRecord:
        if not isinstance(f, list) or len(f) not in (8, 9):
            raise DecodeError("champion record: expected 8 or 9 fields")
        return cls(*f)

    @classmethod
    def decode(cls, data: bytes) -> ChampionRecord:
        return cls.from_list(unpack(data, max_size=512))


@dataclass(frozen=True)
class TaskRecord:
    """One task's consensus state. ``batches`` = ((message id, shard count), …): the announcement (the genesis
    hash for task 0) then each extension in seq order; shard s of the task lies in the batch covering it."""
    task_id: int
    sponsor: bytes                       # pubkey; 32 zero bytes for the genesis task (no escrow)
    bounty: int                          # announced bounty (what escrow got is min(bounty, sponsor balance))
    per_crowning: int
    batches: tuple[tuple[bytes, int], ...]
    shards_used: int
    champion: ChampionRecord
    settled: int = 0                     # 1 once the closing refund was applied (an extension resets it)

    @property
    def msg_hash(self) -> bytes:
        return self.batches[0][0]

    @property
    def shards_total(self) -> int:
        return sum(n for _, n in self.batches)

    @property
    def shards_left(self) -> int:
        return self.shards_total - self.shards_used

    @property
    def extensions(self) -> int:
        return len(self.batches) - 1

    def batch_of(self, shard: int) -> tuple[int, bytes, int]:
        """(batch index, message id, first shard index of that batch) of task-local shard ``shard``."""
        first = 1
        for i, (h, n) in enumerate(self.batches):
            if shard < first + n:
                return i, h, first
            first += n
        raise ValueError(f"task {self.task_id} has no shard {shard}")

    def to_list(self) -> list:
        return [self.task_id, self.sponsor, self.bounty, self.per_crowning, [list(b) for b in self.batches],
                self.shards_used, self.champion.to_list(), self.settled]

    @classmethod
    def from_list(cls, f: list) -> TaskRecord:
        f = check_list(f, 8, "task record")
        batches = tuple((check_bytes(h, 32, "batch id"), check_int(n, 1, MAX_SHARDS_PER_TASK, "batch shards"))
                        for h, n in (check_list(b, 2, "batch") for b in check_list_max(f[4], MAX_BATCHES, "batches")))
        return cls(check_int(f[0], 0, MAX_TASK_ID, "task id"), check_bytes(f[1], 32, "sponsor"),
                   check_int(f[2], 0, 2**62, "bounty"), check_int(f[3], 0, 2**62, "per crowning"), batches,
                   check_int(f[5], 0, MAX_SHARDS_PER_TASK, "shards used"), ChampionRecord.from_list(f[6]),
                   check_int(f[7], 0, 1, "settled"))


Served = tuple[int, int]     # (task id, task-local shard index, 1-based)


@dataclass(frozen=True)
class Registry:
    last_served: int
    tasks: tuple[TaskRecord, ...]

    # ------------------------------------------------------------ queries

    def task(self, task_id: int) -> TaskRecord | None:
        return self.tasks[task_id] if 0 <= task_id < len(self.tasks) else None

    def schedule(self) -> Served | None:
        """The (task, shard) the next round serves: the first task with shards left after ``last_served`` in
        cyclic id order; None when every task is exhausted (an idle round serves nothing)."""
        n = len(self.tasks)
        for k in range(1, n + 1):
            t = self.tasks[(self.last_served + k) % n]
            if t.shards_left > 0:
                return t.task_id, t.shards_used + 1
        return None

    def has_message(self, msg_hash: bytes) -> bool:
        return any(h == msg_hash for t in self.tasks for h, _ in t.batches)

    # ------------------------------------------------------------ transitions (pure)

    def _replace(self, t: TaskRecord) -> Registry:
        tasks = list(self.tasks)
        tasks[t.task_id] = t
        return Registry(self.last_served, tuple(tasks))

    def consume(self, served: Served) -> Registry:
        t = self.tasks[served[0]]
        if served != (t.task_id, t.shards_used + 1) or t.shards_left <= 0:
            raise RuleError("bad-schedule", f"shard {served[1]} of task {served[0]} is not the next one")
        return dataclasses.replace(self._replace(dataclasses.replace(t, shards_used=t.shards_used + 1)),
                                   last_served=t.task_id)

    def crown(self, task_id: int, record: ChampionRecord) -> Registry:
        return self._replace(dataclasses.replace(self.tasks[task_id], champion=record))

    def activate(self, msg: TaskMessage, *, round: int, height: int, n_shards: int,
                 champion_hash: bytes = b"") -> tuple[Registry, tuple[Move, ...]]:
        """Apply an already-validated message (``check_task_message``); returns (registry, escrow moves).
        ``n_shards``: shards the message adds (the package's rounds, or the extension's batch)."""
        if self.has_message(msg.msg_hash):
            raise RuleError("task-replay", "this announcement or extension was already applied")
        if isinstance(msg, TaskAnnouncement):
            tid = len(self.tasks)
            if tid > MAX_TASK_ID:
                raise RuleError("too-many-tasks", f"the chain already has {tid} tasks")
            champ = ChampionRecord(msg.msg_hash, height, round, ZERO_KEY, champion_hash, 0, 0, 0, tid)
            rec = TaskRecord(tid, msg.sponsor, msg.bounty, msg.per_crowning, ((msg.msg_hash, n_shards),), 0, champ)
            moves: tuple[Move, ...] = ()
            if msg.bounty:
                moves = ((address_of(msg.sponsor), escrow_account(tid), msg.bounty),)
            return Registry(self.last_served, (*self.tasks, rec)), moves
        t = self.task(msg.task_id)
        if t is None:
            raise RuleError("unknown-task", f"no task {msg.task_id} (the chain has {len(self.tasks)})")
        if msg.seq != t.extensions + 1:
            raise RuleError("bad-task-seq", f"extension seq {msg.seq}, task {t.task_id} expects {t.extensions + 1}")
        if len(t.batches) >= MAX_BATCHES or t.shards_total + n_shards > MAX_SHARDS_PER_TASK:
            raise RuleError("too-many-tasks", f"task {t.task_id} cannot take more shards")
        return self._replace(dataclasses.replace(t, batches=(*t.batches, (msg.msg_hash, n_shards)), settled=0)), ()

    def closing_refunds(self) -> tuple[Registry, tuple[Move, ...]]:
        """Every task with no shards left whose refund is not applied yet: its escrow returns to the sponsor."""
        reg, moves = self, []
        for t in self.tasks:
            if t.shards_left == 0 and not t.settled:
                reg = reg._replace(dataclasses.replace(t, settled=1))
                if t.sponsor != ZERO_KEY:
                    moves.append((escrow_account(t.task_id), address_of(t.sponsor), MAX_BALANCE))
        return reg, tuple(moves)

    # ------------------------------------------------------------ encoding (local store, hashed nowhere)

    def encode(self) -> bytes:
        return pack([self.last_served, [t.to_list() for t in self.tasks]])

    @classmethod
    def decode(cls, data: bytes) -> Registry:
        f = check_list(unpack(data, max_size=MAX_REGISTRY_SIZE), 2, "registry")
        tasks = tuple(TaskRecord.from_list(t) for t in check_list_max(f[1], MAX_TASK_ID + 1, "registry.tasks"))
        return cls(check_int(f[0], 0, MAX_TASK_ID, "registry.last_served"), tasks)


def genesis_registry(genesis_hash: bytes, n_rounds: int, champion: ChampionRecord, *, sponsor: bytes = ZERO_KEY,
                     bounty: int = 0, per_crowning: int = 0) -> Registry:
    """Task 0 alone. A committee genesis's data task has a sponsor (its creator) and an escrow funded by a
    genesis allocation (``bounty``); a VRF-generated or a single-keyholder genesis task has none."""
    return Registry(0, (TaskRecord(0, sponsor, bounty, per_crowning, ((genesis_hash, n_rounds),), 0, champion),))


@dataclass(frozen=True)
class Advance:
    """The registry a block of round r validates against: ``before`` = after every round since the anchor
    (activations applied, void rounds' shards spent, closing refunds applied), round r's own shard not yet
    spent; ``served`` = round r's (task, shard) or None (idle); ``moves`` = escrow + refund moves, in order."""
    before: Registry
    served: Served | None
    moves: tuple[Move, ...]


Activations = Sequence[tuple[int, bytes]]     # (round, message id), rounds ascending, as notices list them


def advance(reg: Registry, anchor_round: int, r: int, activations: Activations,
            messages: Mapping[bytes, TaskMessage], shard_count: Callable[[TaskMessage], int],
            champion_hash: Callable[[TaskMessage], bytes], anchor_height: int,
            spent: Callable[[int], bool] | None = None) -> Advance:
    """Fold rounds anchor_round+1 … r: at each round q its activations (in listed order), then its schedule;
    rounds before r spend their shard (they were void, or idle and spent nothing). ``messages`` maps every
    listed id to its validated message (missing: RuleError ``missing-activation``). The escrow of an
    announcement moves when it activates; a task whose shards ran out before round r is refunded."""
    by_round: dict[int, list[bytes]] = {}
    last = anchor_round
    for q, h in activations:
        if not anchor_round < q <= r or q < last:
            raise RuleError("bad-schedule", f"activation at round {q} outside {anchor_round + 1}..{r} or out of order")
        last = q
        by_round.setdefault(q, []).append(h)
    moves: list[Move] = []
    served: Served | None = None
    for q in range(anchor_round + 1, r + 1):
        for h in by_round.get(q, ()):
            msg = messages.get(h)
            if msg is None:
                raise RuleError("missing-activation", f"activation {h.hex()[:16]} of round {q} is not known")
            reg, mv = reg.activate(msg, round=q, height=anchor_height, n_shards=shard_count(msg),
                                   champion_hash=champion_hash(msg) if isinstance(msg, TaskAnnouncement) else b"")
            moves += mv
        served = reg.schedule()
        if q < r and served is not None:
            reg = reg.consume(served)
    reg, refunds = reg.closing_refunds()
    return Advance(reg, served, tuple(moves) + refunds)


def minted_reward(reg: Registry, task_id: int, block_reward: int) -> int:
    """The newly minted reward of a block crowning on ``task_id`` (§3.9, §3.13): the block reward on a task
    nobody sponsors (the genesis task of a single-keyholder chain, a VRF-generated one), nothing on a
    sponsored task — its crownings are paid from its escrow and fees only, so a sponsor that peeks at its own
    rows can win back at most what it put in."""
    return block_reward if reg.tasks[task_id].sponsor == ZERO_KEY else 0


def payout_move(reg: Registry, task_id: int, miner: bytes) -> tuple[Move, ...]:
    """A crowning on ``task_id`` pays min(per_crowning, escrow left) to the miner (chain/ moves cap at the
    source balance)."""
    t = reg.tasks[task_id]
    if t.per_crowning == 0 or t.sponsor == ZERO_KEY:
        return ()
    return ((escrow_account(task_id), address_of(miner), t.per_crowning),)


__all__ = [
    "Advance", "ChampionRecord", "Registry", "Served", "TaskExtension", "TaskRecord", "advance",
    "genesis_registry", "minted_reward", "payout_move",
]
