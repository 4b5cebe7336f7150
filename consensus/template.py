"""Block templates for remote miners (getblocktemplate-style): what a miner needs to seal a block without
holding chain state — height, prev (the open round's anchor), round, timestamp, selected txs, tx root, the
state root after txs + reward + fees, and the z the paired test will use."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chain.address import address_of
from chain.block import Header, tx_root
from chain.errors import RuleError
from chain.state import Account, check_tx_stateful, check_tx_stateless
from chain.store import ChainStore
from chain.tx import Transfer
from consensus.genesis import Genesis

MAX_TEMPLATE_TXS = 5_000


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
    z_milli: int
    champion_model_hash: bytes

    def header(self, model_hash: bytes, salt: bytes) -> Header:
        """The unsigned header for a model (what the entry seals once signed)."""
        return Header(1, self.chain_id, self.height, self.prev_hash, self.round, self.timestamp, self.miner,
                      self.tx_root, self.state_root, model_hash, salt)


def select_txs(store: ChainStore, genesis: Genesis, parent: Header, txs: Iterable[Transfer],
               limit: int) -> list[Transfer]:
    """Greedy selection in the given order: a tx is kept if it is valid on the state after the txs kept
    before it (nonce, balance, fee, signature); others are skipped (they may fit a later block)."""
    view = store.state_view(parent.hash)
    ledger = genesis.ledger_params
    overlay: dict[bytes, Account] = {}
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


def build_template(store: ChainStore, genesis: Genesis, parent: Header, round: int, miner: bytes,
                   txs: Iterable[Transfer], timestamp: int, z_milli: int) -> Template:
    limit = min(genesis.params.max_block_txs, MAX_TEMPLATE_TXS)
    chosen = select_txs(store, genesis, parent, txs, limit)
    delta = store.preview_txs(parent.hash, miner, chosen, genesis.ledger_params)
    return Template(genesis.chain_id, parent.height + 1, parent.hash, round, max(int(timestamp), parent.timestamp + 1),
                    miner, tuple(chosen), tx_root(chosen), delta.state_root, z_milli, parent.model_hash)
