"""The pure rules of a round's block (PROTOCOL §3.6, §3.8): what a block is judged by without a store.

The payload checks that need no chain state (``decode_payload``: steps 1–2), the size cap on wire bytes
(``decode_block``), the payload's crowning ``bar`` (consensus.protocol.stats), the timestamp window a beacon
allows (step 4), the settlement moves a block applies before its txs (consensus.protocol.settlement, §3.9),
and fork choice's order among the valid blocks of a round (``fork_key`` over ``ScoredBlock``). Integers only.

What it does NOT do: the checks that read the chain (parent, stake, state root, schedule, scoring): those are
``consensus.engine.validate_block``'s, which returns the ``ScoredBlock`` defined here.
"""
from __future__ import annotations

from dataclasses import dataclass

from chain.block import Block, Header
from chain.errors import DecodeError, RuleError
from chain.state import Move
from consensus.protocol.genesis import Genesis, GenesisParams
from consensus.protocol.messages import MESSAGE_VERSION, AnchorNotice, Beacon, RoundPayload
from consensus.protocol.registry import Registry
from consensus.protocol.settlement import settlement_moves
from consensus.protocol.stats import crown_threshold

__all__ = ["ScoredBlock", "crowning_bar", "decode_block", "decode_payload", "fork_key", "moves_for",
           "timestamp_window"]


@dataclass(frozen=True)
class ScoredBlock:
    """A block that passed every rule, with its crowning record."""
    block: Block
    b: int
    c: int
    bar: int                          # the least b that crowned with b + c disagreements (payload ``bar``)
    moves: tuple[Move, ...] = ()      # settlement moves applied before the txs (consensus.protocol.settlement)
    task_id: int = 0                  # the task the block's round served (§3.13)
    registry: Registry | None = None  # the task registry after this block (None: not computed)
    messages: tuple = ()              # the task messages its payload activated (TaskMessage objects)

    @property
    def hash(self) -> bytes:
        return self.block.header.hash

    @property
    def round(self) -> int:
        return self.block.header.round


def crowning_bar(b: int, c: int, m: int, params: GenesisParams) -> int:
    """The payload's ``bar``: crown_threshold(b + c, m, α), or 0 when no b can crown at that n."""
    t = crown_threshold(b + c, m, params.alpha)
    return 0 if t is None else t


def timestamp_window(params: GenesisParams, beacon: Beacon, parent: Header) -> tuple[int, int]:
    """[lo, hi] for a block timestamp (seconds) on ``parent`` under ``beacon`` (§3.6 step 4): after the parent,
    no earlier than the round's keyholder open time − slack, no later than its reveal time + slack."""
    lo = max(parent.timestamp + 1, beacon.opened_ms // 1000 - params.time_slack_s)
    return lo, beacon.time_ms // 1000 + params.time_slack_s


def fork_key(scored: ScoredBlock) -> tuple[int, int, int]:
    """Larger is better: b − c, then b, then the LOWER header hash (a total order over distinct blocks)."""
    return (scored.b - scored.c, scored.b, -int.from_bytes(scored.hash, "big"))


def decode_block(data: bytes, params: GenesisParams) -> Block:
    """Decode wire bytes under the genesis size cap; RuleError block-too-large / bad-encoding."""
    if len(data) > params.max_block_bytes:
        raise RuleError("block-too-large", f"{len(data)} bytes, cap {params.max_block_bytes}")
    try:
        return Block.decode(data, max_size=params.max_block_bytes)
    except DecodeError as exc:
        raise RuleError("bad-encoding", str(exc)) from None


def moves_for(genesis: Genesis, beacon: Beacon | AnchorNotice) -> tuple[Move, ...]:
    """The settlement moves of a block of the beacon's (or notice's) round (consensus.protocol.settlement)."""
    return settlement_moves(bond=genesis.params.entry_bond, forfeits=beacon.forfeits)


def decode_payload(block: Block, genesis: Genesis) -> RoundPayload:
    """Steps 1–2 of §3.6 that need no store: version, chain id, payload, beacon round and signatures."""
    h = block.header
    if h.chain_id != genesis.chain_id:
        raise RuleError("bad-chain-id", f"block for chain {h.chain_id!r}, this is {genesis.chain_id!r}")
    if h.version != MESSAGE_VERSION:
        raise RuleError("bad-version", f"header version {h.version}")
    try:
        payload = RoundPayload.decode(block.payload)
    except DecodeError as exc:
        raise RuleError("bad-payload", str(exc)) from None
    beacon = payload.beacon
    if beacon.chain_id != genesis.chain_id or beacon.round != h.round:
        raise RuleError("bad-beacon", f"beacon of round {beacon.round} on chain {beacon.chain_id!r} for a block of "
                                      f"round {h.round}")
    if not beacon.verify(genesis.keyholders, genesis.threshold):
        raise RuleError("bad-beacon-sig", f"beacon {beacon.round} lacks {genesis.threshold} keyholder signatures")
    return payload
