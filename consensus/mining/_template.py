"""Block templates for remote miners (getblocktemplate-style): what a miner needs to seal a block without
holding chain state — height, prev (the open round's anchor), round, a timestamp inside the window the rules will
accept (§3.6 step 4), selected txs, tx root, the state root after the bond settlement the round's anchor
notice announced (§3.9) + txs + reward + fees, and the entry bond."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chain.address import address_of
from chain.block import Header, tx_root
from chain.errors import RuleError
from chain.state import Account, Move, check_tx_stateful, check_tx_stateless
from chain.store import ChainStore
from chain.tx import Transfer
from consensus.protocol.genesis import Genesis

MAX_TEMPLATE_TXS = 5_000

__all__ = ["MAX_TEMPLATE_TXS", "Template", "build_template", "select_txs", "template_timestamp"]


@dataclass(frozen=True)
class Template:
    chain_id: str
    height: int
    prev_hash: bytes
    round: int
    timestamp: int
    miner: bytes
    txs: tuple[Transfer, ...]
    tx_root: bytes
    state_root: bytes
    entry_bond: int
    champion_model_hash: bytes      # the champion of the round's task (what the block must beat)
    task_id: int = 0                # the (task, shard) the round serves (§3.13)
    shard_index: int = 0
    stake: int = 0                  # the miner's bond account at the anchor (§3.9): it enters with this

    def header(self, model_hash: bytes, salt: bytes) -> Header:
        """The unsigned header for a model (what the entry seals once signed)."""
        return Header(1, self.chain_id, self.height, self.prev_hash, self.round, self.timestamp, self.miner,
                      self.tx_root, self.state_root, model_hash, salt)


def select_txs(store: ChainStore, genesis: Genesis, parent: Header, txs: Iterable[Transfer],
               limit: int, moves: Sequence[Move] = ()) -> list[Transfer]:
    """Greedy selection in the given order: a tx is kept if it is valid on the state after the settlement
    ``moves`` and the txs kept before it (nonce, balance, fee, signature); others are skipped."""
    view = store.state_view(parent.hash)
    ledger = genesis.ledger_params
    overlay: dict[bytes, Account] = {}
    for src, dst, cap in moves:
        acc = overlay.get(src) or view.get_account(src)
        amount = min(cap, acc.balance)
        overlay[src] = Account(acc.balance - amount, acc.nonce)
        rec = overlay.get(dst) or view.get_account(dst)
        overlay[dst] = Account(rec.balance + amount, rec.nonce)
    chosen: list[Transfer] = []
    for tx in txs:
        if len(chosen) >= limit:
            break
        sender = address_of(tx.sender)
        acc = overlay.get(sender) or view.get_account(sender)
        try:
            check_tx_stateful(tx, acc)
            check_tx_stateless(tx, ledger)
        except RuleError:
            continue
        overlay[sender] = Account(acc.balance - tx.amount - tx.fee, acc.nonce + 1)
        rec = overlay.get(tx.recipient) or view.get_account(tx.recipient)
        overlay[tx.recipient] = Account(rec.balance + tx.amount, rec.nonce)
        chosen.append(tx)
    return chosen


def template_timestamp(genesis: Genesis, parent: Header, opened_ms: int, now: int) -> int:
    """``now`` clamped into the window every beacon of this round accepts: after the parent and within
    [open − slack, open + slack] of the round's keyholder open time (the reveal comes later, so that window is
    inside [open − slack, reveal + slack]). Non-empty: the parent is stamped at most its own reveal + slack,
    and the keyholder opens a round at least 1 s after its anchor's reveal (§3.7 liveness)."""
    slack = genesis.params.time_slack_s
    open_s = opened_ms // 1000
    return max(parent.timestamp + 1, open_s - slack, min(int(now), open_s + slack))


def build_template(store: ChainStore, genesis: Genesis, parent: Header, round: int, miner: bytes,
                   txs: Iterable[Transfer], timestamp: int, moves: Sequence[Move] = (),
                   reward: int | None = None) -> Template:
    """``reward``: what a crowning mints (None: the genesis block reward; 0 on a sponsored task, §3.9)."""
    limit = min(genesis.params.max_block_txs, MAX_TEMPLATE_TXS)
    chosen = select_txs(store, genesis, parent, txs, limit, moves)
    ledger = genesis.ledger_params if reward is None else dataclasses.replace(genesis.ledger_params,
                                                                              block_reward=reward)
    delta = store.preview_txs(parent.hash, miner, chosen, ledger, moves)
    return Template(genesis.chain_id, parent.height + 1, parent.hash, round, max(int(timestamp), parent.timestamp + 1),
                    miner, tuple(chosen), tx_root(chosen), delta.state_root, genesis.params.entry_bond,
                    parent.model_hash)
