"""Pure helpers for miners: seal a model into a block + entry, then open it once the beacon is out.

A miner never needs chain state beyond a Template and the champion's model bytes.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from chain.block import Block, model_hash
from chain.crypto import Keypair
from consensus.mining._template import Template
from consensus.protocol.genesis import Genesis
from consensus.protocol.messages import Beacon, Entry, make_entry, make_payload, possession
from consensus.protocol.rules import crowning_bar
from ml.model import decode_model
from ml.score import paired, score
from ml.shards import PublicTask, open_shard

__all__ = ["open_block", "score_against", "seal"]


def seal(template: Template, model_bytes: bytes, keypair: Keypair, salt: bytes) -> tuple[Block, Entry]:
    """The signed block (payload still empty: it needs the beacon) and the entry sealing its header hash, the
    model hash and the key's proof of possession of the model bytes (§3.3). ``salt``: 32 fresh random bytes."""
    if keypair.public != template.miner:
        raise ValueError("template was built for another miner key")
    mh = model_hash(model_bytes)
    header = template.header(mh, salt).sign(keypair)
    block = Block(header, template.txs, model_bytes, b"")
    entry = make_entry(keypair, template.chain_id, template.round, template.prev_hash, header.hash, mh,
                       possession(keypair.public, model_bytes))
    return block, entry


def score_against(genesis: Genesis, beacon: Beacon, model_bytes: bytes, champion_bytes: bytes,
                  task: PublicTask | None = None) -> tuple[int, int]:
    """(b, c) of a challenger against the champion of the beacon's task on the shard the beacon reveals.
    ``task`` is that task's package with its extensions (``Engine.task_package``); None = the genesis task."""
    return _score(genesis, beacon, model_bytes, champion_bytes, task)[:2]


def _score(genesis: Genesis, beacon: Beacon, model_bytes: bytes, champion_bytes: bytes,
           task: PublicTask | None) -> tuple[int, int, int]:
    public = genesis.task if task is None else task
    shard = open_shard(public, beacon.shard_index, beacon.shard_key)
    spec, caps = public.spec, genesis.model_caps
    mine = score(decode_model(model_bytes, spec, caps), shard.X, shard.y).correct
    theirs = score(decode_model(champion_bytes, spec, caps), shard.X, shard.y).correct
    b, c = paired(mine, theirs)
    return b, c, len(shard.y)


def open_block(sealed: Block, beacon: Beacon, *, genesis: Genesis, champion_bytes: bytes,
               task: PublicTask | None = None, activations: Sequence[bytes] = ()) -> Block:
    """Attach the round payload (beacon + b, c and the crowning bar + the bytes of the task messages the beacon
    activates, ``Engine.activation_bytes``) to a sealed block, ready to publish. ``champion_bytes`` is the
    champion of the beacon's task, ``task`` its package (None: the genesis task). Open it even when it will
    not crown: an opened entry does not forfeit its bond (§3.9), and the block is a plain block that confirms
    its txs (§3.6 step 9). A ledger round's block (the beacon serves no task, §3.13) is not scored: 0, 0, 0."""
    if beacon.idle:
        return dataclasses.replace(sealed, payload=make_payload(beacon, 0, 0, 0, activations).encode())
    b, c, rows = _score(genesis, beacon, sealed.model, champion_bytes, task)
    bar = crowning_bar(b, c, len(beacon.listed), genesis.params, rows)
    payload = make_payload(beacon, b, c, bar, activations)
    return dataclasses.replace(sealed, payload=payload.encode())
