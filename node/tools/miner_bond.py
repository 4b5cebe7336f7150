"""The miner's bond account (PROTOCOL §3.9): top it up from the miner's own account when an entry would find it
short, and say in words what an entry needs when it cannot.

Does not: enter rounds or decide whether to (node.tools.miner_loop); it sends at most one transfer per call.
"""
from __future__ import annotations

import logging

from chain.crypto import Keypair
from consensus.mining import Template
from consensus.protocol.genesis import Genesis
from node.tools.client import ApiCallError, NodeClient

log = logging.getLogger("popchain.miner")

BOND_TARGET_BONDS = 8   # what `miner run` tops its bond account up to, in entry bonds, when it is short


async def deposit_bond(client: NodeClient, keypair: Keypair, genesis: Genesis, tpl: Template) -> str:
    """Send one transfer from the miner's account to its bond account (up to BOND_TARGET_BONDS bonds):
    "bonding" (it confirms with the next block; the miner enters once it has), or "no-bond" (no funds)."""
    from chain.address import address_of, encode_address
    from chain.tx import make_transfer
    from consensus.protocol.settlement import bond_of
    fee, bond_account = genesis.params.min_fee, bond_of(keypair.public)
    acct = await client.account(encode_address(address_of(keypair.public)))
    if any(p.get("recipient") == bond_account.hex() for p in acct["pending"]):
        return "bonding"
    amount = min(BOND_TARGET_BONDS * tpl.entry_bond - tpl.stake, acct["balance"] - fee)
    if amount < tpl.entry_bond - tpl.stake:
        log.warning("miner: the bond account holds %d grains, an entry needs %d, and the account cannot cover "
                    "it: fund this key", tpl.stake, tpl.entry_bond)
        return "no-bond"
    tx = make_transfer(keypair, genesis.chain_id, bond_account, amount, fee, acct["next_nonce"])
    await client.send_tx(tx.encode())
    log.info("miner: bond account short (%d < %d grains): deposited %d grains", tpl.stake, tpl.entry_bond, amount)
    return "bonding"


async def stake_text(client: NodeClient, keypair: Keypair, bond: int) -> str:
    """Issue 20 item 16: say what the bond is and what this miner holds."""
    from chain.address import address_of, encode_address
    address = encode_address(address_of(keypair.public))
    try:
        acct = await client.account(address)
    except ApiCallError:
        acct = {}
    staked, bond_address = int(acct.get("bond", 0)), acct.get("bond_address", "its bond account")
    return (f"entering a round needs an entry bond of {bond:,} grains in this key's bond account, plus one per "
            f"listed entry it still owes (kept when the block is opened, PROTOCOL §3.9); {bond_address} holds "
            f"{staked:,}: send it at least {max(0, bond - staked):,} more "
            f"(popchain wallet send --to {bond_address} --amount {max(bond - staked, 1)}; the miner tops it up "
            f"from {address} itself when that holds enough)")
