"""Issue 9's last gap, closed by the living chain (issue 11): a squatter that holds every slot to the end of the
genesis task owes its bonds until the chain goes on, and it cannot dodge them by spending in the block that
revives the chain — the settlement moves (the burn) apply before that block's transfers (PROTOCOL §3.9).

Real Engine + Keyholder + Ed25519 on an in-memory store, through the simulator's entry path; no network."""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from benchmarks.sim_attackers import Proposal, Sealed, Squatter, copy_noise
from benchmarks.simulator import (
    GENESIS_TIME,
    World,
    WorldConfig,
    _enter,
    _extend_task0,
    _rng_bytes,
    _until,
)
from chain.address import address_of
from chain.crypto import Keypair
from chain.store import ChainStore
from chain.tx import make_transfer
from consensus import mining as tmpl
from consensus.engine import Engine
from consensus.keyholder import Keyholder, RoundClosed
from consensus.mining import open_block, seal
from consensus.protocol.messages import Beacon
from ml.model import decode_model, encode_model
from ml.training import train_candidate

CONFIG = WorldConfig(rounds=2, shard_size=2_000, n_test=200, max_train_rows=1_000)


@pytest.fixture(scope="module")
def world() -> World:
    return World(b"popchain-squatter-end-seed-01", CONFIG)


def _squat_to_the_end(world: World):
    """Every genesis round squatted by E keys that never open; returns (store, engine, keyholder, now)."""
    g = world.genesis
    store = ChainStore.memory()
    engine = Engine(store, g)
    keyholder = Keyholder(engine, world.secret, [world.keyholder_kp])
    keys = tuple(world.keys[f"squatter/{i}"] for i in range(g.params.max_entries))
    squatter = Squatter("squatter", keys)
    rng, salts = np.random.default_rng(1), _rng_bytes(b"salts")
    now = GENESIS_TIME + 1
    keyholder.step(now)
    for _ in range(g.n_rounds):
        champion = engine.champion_model()
        noisy = encode_model(copy_noise(decode_model(champion, g.task.spec, g.model_caps), rng, 0.5))
        for kp in keys:
            assert isinstance(_enter(engine, keyholder, squatter, Proposal(kp, noisy), champion, now, salts(32)),
                              Sealed)
        now, _ = _until(keyholder, now, Beacon)
        now, closed = _until(keyholder, now, RoundClosed)
        assert closed.winner is None
    return store, engine, keyholder, keys, now


def _balance(engine: Engine, pub: bytes) -> int:
    return engine.store.state_view(engine.tip().hash).get_account(address_of(pub)).balance


def test_a_squatter_cannot_escape_its_forfeits_by_spending_in_the_reviving_block(world):
    g = world.genesis
    bond = g.params.entry_bond
    store, engine, keyholder, keys, now = _squat_to_the_end(world)
    try:
        assert engine.open_round() == 0 and keyholder.done       # the genesis task is spent: the chain waits
        before = {kp.public: _balance(engine, kp.public) for kp in keys}
        assert all(b >= bond * (1 + g.n_rounds) for b in before.values())   # funded to squat every round
        now = _extend_task0(world, engine, keyholder, 1, now)    # governance extends task 0: the chain revives
        r = engine.open_round()
        notice = engine.notice(r)
        assert dict(notice.forfeits) == {kp.public: g.n_rounds for kp in keys}

        # the squatter's key tries to move everything out in the reviving block
        victim, fresh = keys[0], Keypair.from_seed(hashlib.sha256(b"fresh").digest())
        fee = g.params.min_fee
        escape = make_transfer(victim, g.chain_id, address_of(fresh.public), before[victim.public] - fee, fee, 0)
        honest, other = world.keys["honest-0"], world.keys["honest-1"]
        tpl = engine.build_template(honest.public, [escape], now)
        assert tpl.txs == ()        # the template drops it: after the burn the balance no longer covers it

        # a miner that includes it anyway (state root computed as if transfers came first: no burn)
        forced = tmpl.build_template(store, g, engine.tip(), r, honest.public, [escape], tpl.timestamp)
        assert forced.txs == (escape,)
        forced = dataclasses.replace(forced, task_id=tpl.task_id, shard_index=tpl.shard_index,
                                     champion_model_hash=tpl.champion_model_hash)
        champion = engine.champion_model()
        model = encode_model(train_candidate("mlp", world.public, (), seed=3, caps=g.model_caps, size="small"))
        salts = _rng_bytes(b"revive")
        sealed = []
        for kp, t in ((honest, forced), (other, engine.build_template(other.public, [], now))):
            block, entry = seal(t, model, kp, salts(32))
            engine.add_entry(entry)
            assert keyholder.on_entry(entry)
            sealed.append(block)
        now, beacon = _until(keyholder, now, Beacon)
        package, acts = engine.task_package(0), engine.activation_bytes(beacon)
        verdicts = [engine.add_block(open_block(b, beacon, genesis=g, champion_bytes=champion, task=package,
                                                activations=acts)) for b in sealed]
        assert verdicts[0].code == "insufficient-funds"          # burn first, then the transfer: overdrawn
        assert verdicts[1].ok, verdicts[1]
        now, closed = _until(keyholder, now, RoundClosed)
        assert closed.winner == sealed[1].header.hash
        for kp in keys:     # every squatting key paid a bond per round it held and never opened
            assert _balance(engine, kp.public) == before[kp.public] - g.n_rounds * bond
        assert _balance(engine, fresh.public) == 0
        burnt = sum(before.values()) - sum(_balance(engine, kp.public) for kp in keys)
        assert burnt >= g.n_rounds * g.params.block_reward       # ≥ one block reward per voided round
    finally:
        store.close()
