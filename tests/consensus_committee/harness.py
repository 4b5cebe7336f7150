"""The committee test harness: three keyholder members (consensus.keyholder.Member) of a DKG committee on real
engines (LevelDB in tmp dirs, real Ed25519 and group arithmetic), messages delivered by the test, an explicit
clock. ``Net`` steps the members and delivers what they emit to the others that are up; ``make_chain`` builds
the committee chain (the sponsor's task sealed to the committee) that conftest.py shares across the package.

Does not: run processes or sockets (tests/test_node_committee.py and the attack benchmarks do), or assert.
"""
from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

from chain.crypto import Keypair
from chain.store import ChainStore
from consensus.engine import Engine
from consensus.keyholder import Member, load_member
from consensus.protocol.committee import CommitteeMsg
from consensus.protocol.genesis import GenesisParams, create_committee_genesis, create_genesis, load_genesis
from consensus.protocol.messages import AnchorNotice, Beacon, make_entry
from consensus.protocol.settlement import miner_funding
from ml.shards import SecretTask
from ml.task import synthetic
from node.tools.committee_kit import local_committee

T0 = 1_900_000_000.0


def kp(label: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(b"committee-test/" + label.encode()).digest())


MEMBERS = sorted((kp(f"m{i}") for i in range(3)), key=lambda k: k.public)
MINERS = [kp(f"miner{i}") for i in range(3)]
SPONSOR = kp("sponsor")


def make_chain():
    data = synthetic(b"committee-unit-tests-seed", n_samples=6 * 40 + 300, n_features=6, n_informative=3, n_classes=2)
    params = GenesisParams(entry_window_s=2, opening_window_s=2)
    kw = {"chain_id": "popchain-committee", "rounds": 6, "shard_size": 40,
          "allocations": [a for m in MINERS for a in miner_funding(m.public, 10**9, 10**8)], "params": params,
          "timestamp": int(T0) - 100, "n_train": 300, "seed": b"split"}
    # the same task twice (same rng): the keys the sponsor knows, to compare with, and the committee chain
    # whose genesis seals them to the committee of a DKG
    _, secret = create_genesis(data, keyholder_pubkeys=[m.public for m in MEMBERS], threshold=2,
                               rng=seeded_rng(), **kw)
    key, files = local_committee(MEMBERS, 2, label="committee-unit")
    genesis = create_committee_genesis(data, committee=key, sponsor=SPONSOR.public, rng=seeded_rng(), **kw)
    return load_genesis(genesis.encode()), SecretTask.decode(secret), files


def seeded_rng():
    counter = itertools.count()
    return lambda n: hashlib.shake_256(b"committee-rng" + next(counter).to_bytes(8, "big")).digest(n)


class Net:
    """Members on their own engines; ``up`` decides who steps and who receives."""

    def __init__(self, chain, root: Path) -> None:
        genesis, self.secret, files = chain
        self.genesis = genesis
        self.files = files
        self.members: list[Member] = []
        for i, k in enumerate(MEMBERS):
            engine = Engine(ChainStore.open(root / f"m{i}"), genesis)
            member = load_member(files[i], engine, root / f"d{i}")
            assert member is not None and member.index == i
            self.members.append(member)
        self.root = root
        self.up = [True] * len(self.members)
        self.outs: list = []

    def close(self) -> None:
        for m in self.members:
            m.store.close()

    def deliver(self, src: int, out) -> None:
        self.outs.append((src, out))
        for j, m in enumerate(self.members):
            if j == src or not self.up[j]:
                continue
            if isinstance(out, CommitteeMsg):
                m.on_message(out)
            elif isinstance(out, AnchorNotice):
                m.engine.add_anchor_notice(out)
            elif isinstance(out, Beacon):
                m.engine.add_beacon(out)

    def step(self, now: float, rounds: int = 8) -> None:
        for _ in range(rounds):
            moved = False
            for i, m in enumerate(self.members):
                if self.up[i]:
                    for out in m.step(now):
                        moved = True
                        self.deliver(i, out)
            if not moved:
                return

    def enter(self, r: int, miners=MINERS, now: float = T0) -> None:
        anchor = next(m for i, m in enumerate(self.members) if self.up[i]).engine.final_hash()
        for k, miner in enumerate(miners):
            entry = make_entry(miner, self.genesis.chain_id, r, anchor, hashlib.sha256(bytes([r, k])).digest(),
                               hashlib.sha256(bytes([r, k, 1])).digest(), hashlib.sha256(bytes([r, k, 2])).digest())
            for i, m in enumerate(self.members):
                if self.up[i]:
                    m.engine.add_entry(entry)
                    m.on_entry(entry, now)

    def run_until(self, pred, start: float, limit: float = 60.0, dt: float = 0.1) -> float:
        now = start
        while now < start + limit:
            self.step(now)
            if pred():
                return now
            now += dt
        raise AssertionError("condition not reached")

    def live(self) -> list[Member]:
        return [m for i, m in enumerate(self.members) if self.up[i]]


def has_beacon(net: Net, r: int):
    return lambda: all(m.engine.beacon(r) is not None for m in net.live())


def has_notice(net: Net, r: int):
    return lambda: all(m.engine.notice(r) is not None for m in net.live())
