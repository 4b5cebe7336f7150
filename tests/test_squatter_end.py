"""Issue 9's last gap, closed by the living chain (issue 11): a squatter that holds every slot to the end of the
genesis task owes its bonds until the chain goes on, and it cannot dodge them by spending in the block that
revives the chain — the bonds come out of its bond account, which no transfer touches (PROTOCOL §3.9).

Real Engine + Keyholder + Ed25519 on an in-memory store, through the simulator's entry path; no network."""
from __future__ import annotations

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
from consensus.engine import Engine
from consensus.keyholder import Keyholder, RoundClosed
from consensus.mining import open_block, seal
from consensus.protocol.messages import Beacon
from consensus.protocol.settlement import bond_of
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


def _bond(engine: Engine, pub: bytes) -> int:
    return engine.store.state_view(engine.tip().hash).get_account(bond_of(pub)).balance


def test_a_squatter_cannot_escape_its_forfeits_by_spending_in_the_reviving_block(world):
    """Until issue 18 the bond was the key's own balance, so only the order (burn before transfers) saved it
    here, and a spend in a block of the squatted round itself escaped. Now the stake is the key's bond account,
    which no transfer can touch: the squatter may spend its free balance in the reviving block, and still pays
    every bond from the bond account."""
    g = world.genesis
    bond = g.params.entry_bond
    store, engine, keyholder, keys, now = _squat_to_the_end(world)
    try:
        assert engine.open_round() == 0 and keyholder.done       # the genesis task is spent: the chain waits
        before = {kp.public: _balance(engine, kp.public) for kp in keys}
        bonds = {kp.public: _bond(engine, kp.public) for kp in keys}
        assert all(b >= bond * (1 + g.n_rounds) for b in bonds.values())   # bonded to squat every round
        now = _extend_task0(world, engine, keyholder, 1, now)    # governance extends task 0: the chain revives
        r = engine.open_round()
        notice = engine.notice(r)
        assert dict(notice.forfeits) == {kp.public: g.n_rounds for kp in keys}

        # the squatter's key moves everything it can out in the reviving block: its free balance is its own
        victim, fresh = keys[0], Keypair.from_seed(hashlib.sha256(b"fresh").digest())
        fee = g.params.min_fee
        escape = make_transfer(victim, g.chain_id, address_of(fresh.public), before[victim.public] - fee, fee, 0)
        honest, other = world.keys["honest-0"], world.keys["honest-1"]
        tpl = engine.build_template(honest.public, [escape], now)
        assert tpl.txs == (escape,)
        champion = engine.champion_model()
        model = encode_model(train_candidate("mlp", world.public, (), seed=3, caps=g.model_caps, size="small"))
        salts = _rng_bytes(b"revive")
        sealed = []
        for kp, t in ((honest, tpl), (other, engine.build_template(other.public, [], now))):
            block, entry = seal(t, model, kp, salts(32))
            engine.add_entry(entry)
            assert keyholder.on_entry(entry)
            sealed.append(block)
        now, beacon = _until(keyholder, now, Beacon)
        package, acts = engine.task_package(0), engine.activation_bytes(beacon)
        verdicts = [engine.add_block(open_block(b, beacon, genesis=g, champion_bytes=champion, task=package,
                                                activations=acts)) for b in sealed]
        assert all(v.ok for v in verdicts), verdicts
        now, closed = _until(keyholder, now, RoundClosed)
        assert closed.winner is not None
        for kp in keys:     # every squatting key paid a bond per round it held and never opened, from its bond
            assert _bond(engine, kp.public) == bonds[kp.public] - g.n_rounds * bond
        if closed.winner == sealed[0].header.hash:
            assert _balance(engine, fresh.public) == before[victim.public] - fee     # the spend went through
        burnt = sum(bonds.values()) - sum(_bond(engine, kp.public) for kp in keys)
        assert burnt >= g.n_rounds * g.params.block_reward       # ≥ one block reward per voided round
    finally:
        store.close()
