"""The pure rules of a round's block (PROTOCOL §3.6, §3.8): what a block is judged by without a store.

A block's *identity* is its header hash. The header hash binds the header's unsigned fields and, through
``model_hash`` and ``tx_root``, the model bytes and the txs; it binds neither the header signature nor the
payload. ``check_copy`` is everything about the bytes a copy of a block carries that its identity does not
fix (step 1 of §3.6): header signature, model bytes against ``model_hash``, txs against ``tx_root``, the
payload (its beacon's signatures, that it is the round's beacon, the task messages against the ids the beacon
names). A copy failing it is a ``CorruptCopy`` — it says nothing about the block, whose genuine copy may be
valid. Every later rule depends only on bytes the identity binds (and the round's beacon, unique per round), so
a node's verdict that a block is *invalid* is the same for every intact copy (§3.6 steps 2–9).

Also here: the size cap on wire bytes (``decode_block``), the payload's crowning ``bar`` (consensus.protocol.stats:
sign test and margin), the timestamp window a beacon allows (step 4), the settlement moves a block applies
before its txs (consensus.protocol.settlement, §3.9), and fork choice's order among the valid blocks of a round
(``fork_key`` over ``ScoredBlock``). Integers only.

What it does NOT do: the checks that read the chain (parent, stake, state root, schedule, attribution, scoring):
those are ``consensus.engine.validate_block``'s, which returns the ``ScoredBlock`` defined here.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chain.address import address_of
from chain.block import Block, Header, model_hash, tx_root
from chain.crypto import tagged_hash
from chain.errors import DecodeError, RuleError
from chain.state import BURN_ACCOUNT, Move
from consensus.protocol.genesis import Genesis, GenesisParams
from consensus.protocol.listing import slot_value
from consensus.protocol.messages import MESSAGE_VERSION, AnchorNotice, Beacon, RoundPayload
from consensus.protocol.registry import Registry, payout_move
from consensus.protocol.settlement import settlement_moves
from consensus.protocol.stats import crown_bar
from consensus.protocol.tasks import MSG_TAG

__all__ = ["CorruptCopy", "ScoredBlock", "check_copy", "check_header", "crowning_bar", "decode_block", "decode_payload",
           "fork_key", "is_crowned", "moves_for", "parent_moves", "plain_slot", "timestamp_window"]


class CorruptCopy(RuleError):
    """This copy of a block carries bytes its identity (the header hash) does not fix, and they are wrong: drop
    the copy, blame its sender, and fetch the block again — the verdict is on the copy, not on the block."""


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
    slot: int = 0                     # a plain block's rank among plain blocks (``plain_slot``; §3.8)
    reward: int | None = None         # what it mints (None: the genesis block reward; 0 on a sponsored task)

    @property
    def crowned(self) -> bool:
        """It passed the crowning test (its model is the new champion); False: a plain block (§3.6 step 9)."""
        return is_crowned(self.b, self.c, self.bar)

    @property
    def hash(self) -> bytes:
        return self.block.header.hash

    @property
    def round(self) -> int:
        return self.block.header.round


def crowning_bar(b: int, c: int, m: int, params: GenesisParams, rows: int) -> int:
    """The payload's ``bar``: the least b that crowns with b + c disagreements, m listed entries and a
    ``rows``-row shard (sign test and margin, stats.crown_bar), or 0 when no b can at that n."""
    t = crown_bar(b + c, m, rows, params.alpha, params.min_gain_bp)
    return 0 if t is None else t


def timestamp_window(params: GenesisParams, beacon: Beacon, parent: Header) -> tuple[int, int]:
    """[lo, hi] for a block timestamp (seconds) on ``parent`` under ``beacon`` (§3.6 step 4): after the parent,
    no earlier than the round's keyholder open time − slack, no later than its reveal time + slack."""
    lo = max(parent.timestamp + 1, beacon.opened_ms // 1000 - params.time_slack_s)
    return lo, beacon.time_ms // 1000 + params.time_slack_s


def is_crowned(b: int, c: int, bar: int) -> bool:
    """The crowning record (b, c, bar) of a block says it crowned: some b crowns at n = b + c (bar > 0) and
    this b reaches it (bar is the least crowning b, and crowning is monotone in b at fixed n)."""
    return bar > 0 and b >= bar


def plain_slot(beacon: Beacon, miner: bytes) -> int:
    """A plain block's rank among the round's plain blocks (§3.8): its miner's slot value under the round's
    shard key — unknown to everyone until the beacon, and not moved by anything the block carries (salt,
    txs, fees, model), so there is nothing to grind."""
    return slot_value(beacon.shard_key, miner)


def fork_key(scored: ScoredBlock) -> tuple[int, int, int, int]:
    """Larger is better (§3.8): any crowning block beats any plain block; among crowning blocks b − c, then b,
    then the LOWER header hash; among plain blocks the larger slot value, then the lower header hash (a total
    order over distinct blocks)."""
    low = -int.from_bytes(scored.hash, "big")
    if scored.crowned:
        return (1, scored.b - scored.c, scored.b, low)
    return (0, scored.slot, 0, low)


def parent_moves(genesis: Genesis, parent: Header, parent_payload: RoundPayload | None,
                 registry: Registry, parent_reward: int | None = None) -> tuple[Move, ...]:
    """The moves a block applies first, for its parent (§3.9, plain blocks): a miner seals its state root
    before it knows whether its block will crown, so chain/ credits every block's miner block_reward + fees;
    the child settles what the parent really earned. A plain parent's block_reward goes from its miner's
    account to the burn account (the miner received it in that very block and no tx ran since: the move is
    always whole); a crowning parent's bounty (min(per_crowning, escrow left), from the task's escrow) is paid
    to its miner. Genesis earns nothing. ``registry`` is the task registry after the parent; ``parent_reward``
    what the parent minted (None: the block reward; 0 in a sponsored task's round, §3.9: nothing to burn)."""
    if parent.height == 0 or parent_payload is None:
        return ()
    if not is_crowned(parent_payload.b, parent_payload.c, parent_payload.bar):
        reward = genesis.params.block_reward if parent_reward is None else parent_reward
        return ((address_of(parent.miner), BURN_ACCOUNT, reward),) if reward else ()
    return payout_move(registry, parent_payload.beacon.task_id, parent.miner)


def decode_block(data: bytes, params: GenesisParams) -> Block:
    """Decode wire bytes under the genesis size cap; RuleError block-too-large / bad-encoding."""
    if len(data) > params.max_block_bytes:
        raise RuleError("block-too-large", f"{len(data)} bytes, cap {params.max_block_bytes}")
    try:
        return Block.decode(data, max_size=params.max_block_bytes)
    except DecodeError as exc:
        raise RuleError("bad-encoding", str(exc)) from None


def moves_for(genesis: Genesis, beacon: Beacon | AnchorNotice, releases: Sequence[bytes] = ()) -> tuple[Move, ...]:
    """The settlement moves of a block of the beacon's (or notice's) round (consensus.protocol.settlement):
    its forfeits, then the unbond requests it releases (miner keys)."""
    return settlement_moves(bond=genesis.params.entry_bond, settlement=beacon.settlement, releases=releases)


def decode_payload(block: Block, genesis: Genesis) -> RoundPayload:
    """The payload and its beacon as a copy carries them (the copy rules of ``check_copy`` on the payload):
    decodes, names this chain and the block's round, threshold-signed. CorruptCopy otherwise."""
    h = block.header
    try:
        payload = RoundPayload.decode(block.payload)
    except DecodeError as exc:
        raise CorruptCopy("bad-payload", str(exc)) from None
    beacon = payload.beacon
    if beacon.chain_id != genesis.chain_id or beacon.round != h.round:
        raise CorruptCopy("bad-beacon", f"beacon of round {beacon.round} on chain {beacon.chain_id!r} for a block "
                                        f"of round {h.round}")
    if not 1 <= len(beacon.listed) <= genesis.params.max_entries:
        raise CorruptCopy("bad-beacon", f"payload beacon lists {len(beacon.listed)} entries")
    if not beacon.verify(genesis.keyholders, genesis.threshold):
        raise CorruptCopy("bad-beacon-sig", f"beacon {beacon.round} lacks {genesis.threshold} keyholder signatures")
    return payload


def check_copy(block: Block, genesis: Genesis) -> RoundPayload:
    """§3.6 step 1, the copy rules: everything a copy carries that its header hash does not bind. The header
    fields themselves are checked later (they are the block's). Returns the payload; raises CorruptCopy."""
    h = block.header
    if not h.verify_signature():
        raise CorruptCopy("bad-header-sig", "miner signature does not verify")
    if model_hash(block.model) != h.model_hash:
        raise CorruptCopy("bad-model-hash", "model bytes do not hash to header.model_hash")
    if tx_root(block.txs) != h.tx_root:
        raise CorruptCopy("bad-tx-root", "tx root does not match the txs")
    payload = decode_payload(block, genesis)
    ids = tuple(hh for _, hh in payload.beacon.activations)
    if tuple(tagged_hash(MSG_TAG, raw) for raw in payload.activations) != ids:
        raise CorruptCopy("bad-activation", "the payload's task messages are not the ones its beacon activates")
    return payload


def check_header(block: Block, genesis: Genesis) -> None:
    """§3.6 step 2, the header's own fields (bound by its identity): chain id and version."""
    h = block.header
    if h.chain_id != genesis.chain_id:
        raise RuleError("bad-chain-id", f"block for chain {h.chain_id!r}, this is {genesis.chain_id!r}")
    if h.version != MESSAGE_VERSION:
        raise RuleError("bad-version", f"header version {h.version}")
