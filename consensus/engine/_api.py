"""EngineApi: the one interface node/ talks to consensus through — what a node may ask of its engine and hand
it.

``Engine`` provides it (structurally: mypy checks every node/ seam that holds an ``EngineApi`` against
Engine's methods). The calls fall in three groups: reads of the chain's rounds and champions (for the API, the
explorer, events and round sync), task reads, and the objects that arrive from peers or the API (each returns
True if it was new, raises chain.errors.RuleError with a stable reject code if it is invalid; a block gets a
verdict).

Every call runs on the node's one engine worker thread (the Engine is synchronous and NOT thread-safe). What
it does NOT offer: the store's meta keys, the task book, the scoring cache or the keyholder's view of the
engine (``stake``, ``check_entry``…): the keyholder role lives in consensus and uses Engine
itself.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from chain.block import Block, Header
from chain.tx import Transfer
from consensus.engine._engine import BlockVerdict, Opening, RoundInfo
from consensus.engine._tasks import TaskInfo
from consensus.mining import Template
from consensus.protocol.committee import Evidence
from consensus.protocol.genesis import Genesis
from consensus.protocol.messages import AnchorNotice, Beacon, Entry
from consensus.protocol.registry import ChampionRecord
from consensus.protocol.rules import ScoredBlock
from consensus.protocol.tasks import TaskMessage
from ml.shards import PublicTask

__all__ = ["EngineApi"]


class EngineApi(Protocol):
    @property
    def genesis(self) -> Genesis: ...

    # ------------------------------------------------------------ the chain and its rounds

    def tip(self) -> Header: ...
    def final_header(self) -> Header: ...                                 # the final anchor (§3.8)
    def current_round(self) -> int: ...
    def open_round(self) -> int: ...                                      # the round miners enter now, or 0
    def ledger_round(self) -> int: ...                                    # closed chain: plain blocks only, or 0
    def round_info(self, r: int) -> RoundInfo: ...
    def round_task(self, r: int) -> tuple[int, int] | None: ...          # (task, shard) round r serves
    def notice(self, r: int) -> AnchorNotice | None: ...
    def beacon(self, r: int) -> Beacon | None: ...
    def statement_bytes(self, r: int) -> tuple[bytes | None, bytes | None]: ...   # (notice, beacon) as stored
    def candidates(self) -> list[ScoredBlock]: ...                       # valid blocks, best first
    def openings(self, r: int) -> dict[bytes, Opening]: ...              # listed blocks seen opened, b/c/bar
    def equivocations(self) -> list[tuple[int, bytes, bytes]]: ...
    def committee_evidence(self) -> list[Evidence]: ...
    def build_template(self, miner_pubkey: bytes, txs: Iterable[Transfer], timestamp: int) -> Template: ...

    # ------------------------------------------------------------ champions and tasks (None: current task)

    def champion(self, task_id: int | None = None) -> ChampionRecord: ...
    def champion_history(self, task_id: int | None = None, *, before: int | None = None,
                         limit: int | None = None) -> list[ChampionRecord]: ...     # newest `limit`, oldest first
    def miner_champions(self, account: bytes, *, before: int | None = None,
                        limit: int = 50) -> list[ChampionRecord]: ...
    def initial_champion(self, task_id: int) -> ChampionRecord | None: ...   # an announced task's round-0 record
    def champion_of_model(self, model_hash: bytes) -> ChampionRecord | None: ...   # by key, main chain
    def crowned_rounds(self, first: int, last: int) -> dict[int, ChampionRecord]: ...   # round -> record
    def first_missing_round(self) -> int: ...                           # round sync asks peers from here
    def champion_at(self, height: int) -> ChampionRecord | None: ...    # the main-chain block's record
    def champion_model(self, task_id: int | None = None) -> bytes: ...
    def tasks(self) -> list[TaskInfo]: ...
    def task(self, task_id: int) -> TaskInfo | None: ...
    def task_messages(self, task_id: int) -> list[TaskMessage]: ...     # announcement + extensions, in order
    def task_package(self, task_id: int) -> PublicTask: ...
    def task_message(self, msg_hash: bytes) -> TaskMessage | None: ...
    def task_message_ids(self) -> list[bytes]: ...
    def activation_bytes(self, statement: AnchorNotice | Beacon) -> tuple[bytes, ...]: ...

    # ------------------------------------------------------------ what arrives (True: new, relay it)

    def add_block(self, block: Block) -> BlockVerdict: ...              # never raises: the verdict says why
    def parked_blocks(self) -> list[Block]: ...                         # current-round blocks parked (blob wait)
    def add_entry(self, entry: Entry) -> bool: ...
    def forget_entry(self, entry: Entry) -> None: ...                  # refused by the keyholder: may re-enter
    def add_anchor_notice(self, notice: AnchorNotice) -> bool: ...
    def add_beacon(self, beacon: Beacon) -> bool: ...
    def add_task_message(self, msg: TaskMessage | bytes) -> bool: ...
    def add_committee_evidence(self, ev: Evidence) -> bool: ...

    # ------------------------------------------------------------ the committee's accountability (§3.14)

    def check_released_share(self, r: int, member: int, share: bytes) -> None: ...   # RuleError bad-key-share
    def add_leak(self, data: bytes, now_ms: int) -> Evidence: ...                # an early share: evidence
    def record_missed_release(self, r: int, member: int) -> bool: ...
    def missed_releases(self) -> dict[int, tuple[int, int]]: ...                 # member -> (count, last round)
