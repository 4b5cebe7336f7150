"""A pruned node (``node run --prune N``, issue 23 item 2): keep the models of the last N blocks below the final
block and the standing champions; fetch an older model from a peer when someone asks for it.

Does: after each tip change, one bounded step of ``chain.store_prune.prune_models`` on the engine worker (up to
the final block's height − N, keeping every task's current champion: the next block is scored against it);
``fetch_model``: ask up to FETCH_PEERS ready peers for the main-chain block that carries a pruned model
(GETDATA, recorded as our request so the answer is never held against the peer), take the first answer whose
model hashes to the header's ``model_hash`` (``restore_model``), and give up after FETCH_TIMEOUT_S. An archive
peer (the default) serves every block; a pruned peer answers NOTFOUND for the ones it pruned.

Does not: choose what is kept beyond that (chain.store_prune), or keep a fetched model from being pruned again
at the next step past its height (it stays until then: a later audit fetches it again).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from chain.block import Block
from chain.store_prune import PruneStep, prune_models, restore_model
from node.wire import GetData, InvKind

log = logging.getLogger("popchain.prune")

MIN_PRUNE = 10            # blocks: the window below which --prune is refused (the current round's reorgs,
#                           the explorer's recent charts and a restarted keyholder all read recent models)
FETCH_PEERS = 4
FETCH_TIMEOUT_S = 15.0


class Pruner:
    """The node's pruning and model fetching (node.node.Node builds one when ``--prune`` is set)."""

    def __init__(self, node: Any, window: int) -> None:
        self.node = node
        self.window = window
        self.wanted: dict[bytes, tuple[bytes, asyncio.Future[bytes]]] = {}   # block hash -> (model hash, result)
        self.last = PruneStep(0, 0, 0)

    async def step(self) -> None:
        """One bounded pruning step on the engine worker (after a tip change)."""
        result = await self.node.worker.call(self._step)
        if result.models:
            log.info("pruned %d models (%d bytes) through height %d", result.models, result.freed, result.through)
        self.last = result

    def _step(self) -> PruneStep:
        engine, store = self.node.engine, self.node.store
        final = engine.final_header()
        # every task's champion as of the final block (what the current round's blocks are scored against) and as
        # of the tip (what the next round's will be)
        keep = {t.champion.model_hash for t in engine.tasks()}
        keep |= {t.champion.model_hash for t in engine.book.registry_at(final).tasks}
        return prune_models(store, final.height - self.window, keep)

    async def fetch_model(self, block_hash: bytes, model_hash: bytes) -> bytes | None:
        """The pruned model of main-chain block ``block_hash``, fetched from peers and stored again (None: no
        peer sent a block whose model matches the header's hash in time)."""
        loop = asyncio.get_running_loop()
        entry = self.wanted.get(block_hash)
        if entry is None:
            peers = list(self.node.ready_peers())[:FETCH_PEERS]
            if not peers:
                return None      # nobody to ask: say so now rather than after the timeout
            entry = self.wanted[block_hash] = (model_hash, loop.create_future())
            now = time.monotonic()
            for peer in peers:
                self.node.relay.requests.force(peer, (InvKind.BLOCK, block_hash), now)
                peer.send(GetData(((InvKind.BLOCK, block_hash),)))
        try:
            return await asyncio.wait_for(asyncio.shield(entry[1]), FETCH_TIMEOUT_S)
        except TimeoutError:
            return None
        finally:
            if entry[1].done() or not self.wanted.get(block_hash) is entry:
                self.wanted.pop(block_hash, None)

    async def offer(self, block: Block) -> bool | None:
        """A block arrived: None if it answers no model fetch (judge it as usual); True if it did and its model
        hashes to the header's ``model_hash`` (stored again); False if it did with other bytes (a forgery: the
        caller penalises the sender as for any block whose model is not the one its header names)."""
        entry = self.wanted.get(block.hash)
        if entry is None:
            return None
        expected, future = entry
        if block.header.model_hash != expected:
            return False
        ok = await self.node.worker.call(restore_model, self.node.store, expected, block.model)
        if not ok:
            return False
        if not future.done():
            future.set_result(block.model)
        self.wanted.pop(block.hash, None)
        return True
