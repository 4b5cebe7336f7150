"""A sponsor that peeks (issue 24's ``sponsor_peek_gain``), in process on a real Engine and keyholder.

The sponsor announces a data task with a bounty (paid back per crowning: ``per_crowning`` = the block reward)
and, since its own key may not enter its task (``sponsor-entry``), mines it with a second key of its own and a
model fitted on the hidden rows of the very shard each round plays — it made them, it knows them. Two honest
miners fit on the public rows and the shards revealed so far. Every round goes through entry → beacon →
openings → close; the engine judges every block. The sponsor's net gain counts both of its keys and what is
still in the task's escrow (the closing refund returns it), against what it held before announcing.

What it does NOT do: networking or timing; or pretend the rule holds: the engine's own moves decide the balances.
"""
from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chain.address import address_of
from chain.crypto import Keypair
from chain.store import ChainStore
from consensus.engine import Engine
from consensus.keyholder import Keyholder
from consensus.mining import open_block, seal
from consensus.protocol.genesis import Genesis, GenesisParams, create_genesis
from consensus.protocol.messages import Beacon
from consensus.protocol.settlement import bond_of, miner_funding
from consensus.protocol.tasks import escrow_account, initial_champion, make_task_announcement
from ml.model import encode_model
from ml.shards import open_shard, package_task
from ml.task import Dataset, synthetic
from ml.training import train_candidate

__all__ = ["SponsorPeek", "run_sponsor_peek"]

SHARD = 1000
FUNDS = 10**10
BOND = 10**9                  # each miner key's bond account (§3.9): 320 entry bonds


@dataclass(frozen=True)
class SponsorPeek:
    rounds: int
    sponsor_wins: int
    honest_wins: int
    gain: float               # the sponsor's net grains / block reward
    old_rule_gain: float      # the same, had each of its crownings minted a block reward (the rule before)


def _key(name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(b"popchain/sponsor-peek/" + name.encode()).digest())


def _rng(seed: bytes) -> Callable[[int], bytes]:
    state = {"i": 0}

    def rng(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(seed + state["i"].to_bytes(8, "big")).digest()
            state["i"] += 1
        return out[:n]
    return rng


def run_sponsor_peek(rounds: int = 12, root: Path | None = None) -> SponsorPeek:
    keyholder, sponsor, sybil = _key("keyholder"), _key("sponsor"), _key("sponsor-miner")
    honest = [_key("honest-0"), _key("honest-1")]
    params = GenesisParams()
    reward = params.block_reward
    world_rows = synthetic(b"popchain-sponsor-peek-genesis", n_samples=3 * 400 + 600, n_features=10, n_informative=5,
                           n_classes=3)
    genesis, secret0 = create_genesis(world_rows, chain_id="popchain-peek", rounds=1, shard_size=400,
                                      allocations=[(address_of(sponsor.public), FUNDS)]
                                      + [a for k in [sybil, *honest] for a in miner_funding(k.public, FUNDS, BOND)],
                                      keyholder_pubkeys=[keyholder.public], params=params, timestamp=1_700_000_000,
                                      n_train=600, seed=b"peek-split", rng=_rng(b"genesis"))
    data = synthetic(b"popchain-sponsor-peek-task", n_samples=rounds * SHARD + 2000, n_features=10, n_informative=5,
                     n_classes=3)
    public, secret = package_task(data, rounds, SHARD, n_train=1500, seed=b"peek-task", rng=_rng(b"task"))
    package = public.encode()
    bounty = rounds * reward
    ann = make_task_announcement([keyholder], sponsor, genesis.chain_id, package, initial_champion(package),
                                 bounty=bounty, per_crowning=reward)
    with tempfile.TemporaryDirectory(prefix="popchain-sponsor-peek-") as tmp:
        store = ChainStore.open(Path(root or tmp) / "db")
        try:
            engine = Engine(store, genesis)
            kh = Keyholder(engine, secret0, [keyholder])
            now = 1_700_000_100.0

            def bal(account: bytes) -> int:
                return engine.store.get_account(account).balance
            # the sponsor's wealth: its account, its miner key's account and that key's bond account (§3.9)
            mine = [address_of(sponsor.public), address_of(sybil.public), bond_of(sybil.public)]
            before = sum(bal(a) for a in mine)
            kh.step(now)
            # the genesis task's one round (an honest miner plays it; the sponsor's task comes after)
            first = encode_model(train_candidate("linear", genesis.task.training, (), size="small"))
            _play(engine, kh, genesis, now, [(honest[0], first)], 0)
            now += 20
            kh.step(now)
            assert engine.add_task_message(ann)
            kh.add_task_secret(ann.msg_hash, secret, n_shards=rounds)
            kh.step(now)
            revealed: list[Dataset] = []
            sponsor_wins = honest_wins = 0
            for _ in range(rounds):
                r = engine.open_round()
                if not r:
                    break
                served = engine.round_task(r)
                assert served is not None
                task_id, index = served
                assert task_id == 1
                shard = open_shard(public, index, secret.key(index))        # the sponsor's knowledge
                cast = [(sybil, encode_model(train_candidate("extra", shard, (), seed=index, size="small")))]
                for i, h in enumerate(honest):
                    family = ("mlp", "linear")[i]
                    cast.append((h, encode_model(train_candidate(family, public.training, revealed, seed=index,
                                                                 size="small", recent_rows=4000))))
                winner = _play(engine, kh, genesis, now, cast, task_id)
                sponsor_wins += winner == sybil.public
                honest_wins += winner is not None and winner != sybil.public
                beacon = engine.beacon(r)
                assert beacon is not None
                revealed.append(open_shard(public, index, beacon.shard_key))
                now += 20
            after = sum(bal(a) for a in mine) + bal(escrow_account(1))     # the escrow left returns to it
            net = after - before
            return SponsorPeek(len(revealed), sponsor_wins, honest_wins, net / reward, (net + sponsor_wins * reward) / reward)
        finally:
            store.close()


def _play(engine: Engine, kh: Keyholder, genesis: Genesis, now: float, cast: list[tuple[Keypair, bytes]],
          task_id: int) -> bytes | None:
    """One round: every miner of ``cast`` seals its model and enters, the keyholder reveals, each opens its
    block (the engine keeps the best valid one), the keyholder closes. Returns the crowned miner's key."""
    r = engine.open_round()
    package = engine.task_package(task_id)
    sealed = []
    for kp, model in cast:
        tpl = engine.build_template(kp.public, [], int(now))
        block, entry = seal(tpl, model, kp, hashlib.sha256(kp.public + bytes([r % 256])).digest())
        engine.add_entry(entry)
        kh.on_entry(entry)
        sealed.append(block)
    beacon = next(a for a in kh.step(now + 5) if isinstance(a, Beacon))
    champion = engine.champion_model(task_id)
    for block in sealed:
        engine.add_block(open_block(block, beacon, genesis=genesis, champion_bytes=champion, task=package,
                                    activations=engine.activation_bytes(beacon)))
    kh.step(now + 10)
    tip = engine.tip()
    return tip.miner if tip.round == r else None
