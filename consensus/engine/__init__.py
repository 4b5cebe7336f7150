"""consensus.engine: one node's consensus state over its chain store (PROTOCOL §3.6–3.9, §3.13).

``Engine`` applies what arrives — entries, keyholder-signed anchor notices and beacons (which move finality,
in round order), blocks (validated by ``validate_block``, scored once per round with a ``ScoringCache``; fork
choice within the current round; orphans parked), task messages (kept in the ``TaskBook`` with the task
registry of every main-chain block) and committee evidence — and answers queries about rounds, champions and
tasks. Everything it writes goes into the store's meta keys in the same synced WriteBatch as the block or
statement that changes it. node/ sees it only through ``EngineApi``.

What it does NOT do: sockets, clocks, threads (node/ serialises every call on one worker thread: the Engine is
NOT thread-safe), sign anything (consensus.keyholder), or define the messages and pure rules it applies
(consensus.protocol).
"""
from consensus.engine._api import EngineApi
from consensus.engine._engine import BlockVerdict, Engine, Opening, RoundInfo
from consensus.engine._taskbook import TaskBook, activation_budget
from consensus.engine._tasks import TaskInfo
from consensus.engine._validity import OrphanBlock, ScoringCache, validate_block

__all__ = ["BlockVerdict", "Engine", "EngineApi", "Opening", "OrphanBlock", "RoundInfo", "ScoringCache",
           "TaskBook", "TaskInfo", "activation_budget", "validate_block"]
