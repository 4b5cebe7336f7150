"""``tx_confirm_rounds_p99`` (issue 21): rounds from a transfer's arrival to its confirmation, when no model is
certified better and when no task is open.

Real Engine + Keyholder on a LevelDB store in a temp dir, on a simulated clock (every round through the same
entry → beacon → opening → closing path a network peer uses). One honest staked miner; each round 1–4
transfers arrive before it seals its block and 0–3 after (those can only make the next round). Two cases, one
figure with both as fields:

- ``saturated``: a stationary task whose champion nobody beats — the miner's entry each round does not crown
  (≥ 20 rounds, quick 20, full 60: no crowning at all), so every block is a plain block;
- ``closed``: the task exhausted (its rounds played void), then the same number of ledger rounds (§3.13);
- ``committee_closed``: the same on a 2-of-3 keyholder committee's chain (three ``Member`` state machines on
  their own engines, messages delivered at once; quick 10, full 30 ledger rounds).

The value is the worst p99 of the three; the baseline, from the same run, is what the rule before issue 21
gives for the same arrivals: a transfer confirms only in a crowned block, and none crowned — so every one was
still pending when the run ended (its wait is the rounds left, a lower bound) — reported likewise as a p99.
"""
from __future__ import annotations

import hashlib
import random
import tempfile
from pathlib import Path

import numpy as np

from chain.address import address_of
from chain.errors import need
from chain.store import ChainStore
from chain.tx import Transfer, make_transfer
from consensus.engine import Engine
from consensus.keyholder import Keyholder, Member, load_keyholder_file, load_member
from consensus.mining import open_block, seal
from consensus.protocol.committee import CommitteeMsg
from consensus.protocol.messages import AnchorNotice, Beacon, Entry
from ml.model import LinearModel, encode_model
from node.tools.testing import make_test_chain

W = 2.0   # the test chain's entry window (s); the opening window is 2 s too


def _constant(spec, k: int) -> bytes:
    """Always class 0 (never better than the champion); ``k`` makes each round's bytes new."""
    return encode_model(LinearModel(np.zeros((spec.n_features, spec.n_classes), dtype=np.int64),
                                    np.array([k] + [0] * (spec.n_classes - 1), dtype=np.int64)))


def _p99(waits: list[int]) -> int:
    return int(np.percentile(np.array(waits), 99, method="higher")) if waits else 0


class _Chain:
    def __init__(self, directory: Path, rounds: int) -> None:
        self.task_rounds = rounds
        self._keyholder(directory)
        self.now = float(self.chain.genesis.header.timestamp + 20)
        self._step()
        self.nonce = 0
        self.pending: dict[bytes, tuple[Transfer, int]] = {}
        self.waits: list[int] = []
        self.arrivals: list[int] = []
        self.count_from = 1          # transfers that arrived before this round are not measured

    def _keyholder(self, directory: Path) -> None:
        self.chain = make_test_chain(directory / "chain", rounds=self.task_rounds, shard_size=100, easy=False,
                                     n_users=2, entry_window_s=2, opening_window_s=2)
        self.store = ChainStore.open(directory / "db")
        self.engine = Engine(self.store, self.chain.genesis)
        secret, keys = load_keyholder_file(self.chain.keyholder_path.read_bytes())
        self.kh = Keyholder(self.engine, secret, keys)

    def _step(self) -> None:
        self.kh.step(self.now)

    def _transfers(self, n: int, r: int) -> None:
        user, payee = self.chain.users[0], address_of(self.chain.users[1].public)
        for _ in range(n):
            tx = make_transfer(user, self.chain.genesis.chain_id, payee, 1 + self.nonce, 1_000, self.nonce)
            self.nonce += 1
            self.pending[tx.txid] = (tx, r)
            self.arrivals.append(r)

    def play(self, r: int, rng: random.Random, *, model: bytes | None, open_it: bool = True) -> None:
        """Round r: transfers arrive, the miner seals on the template (``model`` None: a ledger round, no
        model), more transfers arrive, the beacon, the opening (unless ``open_it`` is False: a void round), the
        close; confirmed transfers are counted by the block's round."""
        miner = self.chain.miners[0]
        self._transfers(rng.randint(1, 4), r)
        txs = [tx for tx, _ in sorted(self.pending.values(), key=lambda p: p[0].nonce)]
        tpl = self.engine.build_template(miner.public, txs, int(self.now))
        block, entry = seal(tpl, model or b"", miner, hashlib.sha256(miner.public + r.to_bytes(4, "big")).digest())
        self._enter(entry)
        self._transfers(rng.randint(0, 3), r)
        beacon = self._beacon(r)
        if open_it:
            task = self.engine.round_task(r)
            champion = self.engine.champion_model(task[0]) if task else b""
            package = self.engine.task_package(task[0]) if task else None
            opened = open_block(block, beacon, genesis=self.chain.genesis, champion_bytes=champion, task=package,
                                activations=self.engine.activation_bytes(beacon))
            for engine in self.engines:
                engine.add_block(opened)
        self._close(r)
        tip = self.engine.tip()
        if tip.round == r:
            for tx in need(self.store.get_block(tip.hash), "the tip block").txs:
                _, arrived = self.pending.pop(tx.txid)
                if arrived >= self.count_from:
                    self.waits.append(r - arrived)

    # the keyholder: one process here, a committee in _CommitteeChain

    @property
    def engines(self) -> list[Engine]:
        return [self.engine]

    def _enter(self, entry: Entry) -> None:
        self.engine.add_entry(entry)
        self.kh.on_entry(entry)

    def _beacon(self, r: int) -> Beacon:
        beacon = None
        while beacon is None:
            self.now += 1
            beacon = next((a for a in self.kh.step(self.now) if isinstance(a, Beacon)), None)
        return beacon

    def _close(self, r: int) -> None:
        self.now += W + 0.5
        self.kh.step(self.now)

    def close(self) -> None:
        self.store.close()


class _CommitteeChain(_Chain):
    """The same rounds on a 2-of-3 committee chain (what ``popchain demo`` runs): three ``Member`` state
    machines on their own engines, every message delivered to the others at once (consensus.keyholder)."""

    def _keyholder(self, directory: Path) -> None:
        self.chain = make_test_chain(directory / "chain", rounds=self.task_rounds, shard_size=100, easy=False,
                                     n_users=2, entry_window_s=2, opening_window_s=2, keyholders=3, threshold=2)
        self.stores = [ChainStore.open(directory / f"db{i}") for i in range(3)]
        self.store = self.stores[0]
        self._engines = [Engine(st, self.chain.genesis) for st in self.stores]
        self.engine = self._engines[0]
        self.members: list[Member] = []
        for path, engine in zip(self.chain.member_paths, self._engines, strict=True):
            member = load_member(path.read_bytes(), engine)
            assert member is not None
            self.members.append(member)

    @property
    def engines(self) -> list[Engine]:
        return self._engines

    def _step(self) -> None:
        """Every member steps; what one sends reaches the others, until nothing moves."""
        for _ in range(16):
            moved = False
            for i, m in enumerate(self.members):
                for out in m.step(self.now):
                    moved = True
                    for j, other in enumerate(self.members):
                        if j == i:
                            continue
                        if isinstance(out, CommitteeMsg):
                            other.on_message(out)
                        elif isinstance(out, AnchorNotice):
                            other.engine.add_anchor_notice(out)
                        elif isinstance(out, Beacon):
                            other.engine.add_beacon(out)
            if not moved:
                return

    def _enter(self, entry: Entry) -> None:
        for m in self.members:
            m.engine.add_entry(entry)
            m.on_entry(entry, self.now)

    def _beacon(self, r: int) -> Beacon:
        while any(e.beacon(r) is None for e in self._engines):
            self.now += 0.25
            self._step()
        beacon = self.engine.beacon(r)
        assert beacon is not None
        return beacon

    def _close(self, r: int) -> None:
        while any(e.notice(r + 1) is None for e in self._engines):
            self.now += 0.25
            self._step()

    def close(self) -> None:
        for st in self.stores:
            st.close()


def measure(rounds: int, seed: int = 7, committee_rounds: int = 0) -> dict[str, dict[str, int]]:
    committee_rounds = committee_rounds or rounds
    rng = random.Random(seed)
    out: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="popchain-ledger-bench-") as tmp:
        # the saturated task: `rounds` rounds, none crowns
        c = _Chain(Path(tmp) / "saturated", rounds)
        try:
            spec = c.chain.genesis.task.spec
            for r in range(1, rounds + 1):
                c.play(r, rng, model=_constant(spec, r))
            crowned = len(c.engine.champion_history()) - 1
            last = rounds
            out["saturated"] = {"p99": _p99(c.waits), "confirmed": len(c.waits), "sent": len(c.arrivals),
                                "crowned": crowned, "baseline_p99": _p99([last - a + 1 for a in c.arrivals])}
        finally:
            c.close()
        # the closed chain: 2 task rounds played void, then `rounds` ledger rounds — one keyholder, then a
        # 2-of-3 committee (fewer rounds: each costs the members' proofs)
        for name, cls, n in (("closed", _Chain, rounds), ("committee_closed", _CommitteeChain, committee_rounds)):
            c = cls(Path(tmp) / name, 2)
            try:
                spec = c.chain.genesis.task.spec
                for r in (1, 2):
                    c.play(r, rng, model=_constant(spec, r), open_it=False)
                first = c.engine.ledger_round()
                c.waits.clear()
                c.arrivals.clear()
                c.count_from = first        # the void rounds' transfers are not the ledger rounds' to measure
                for r in range(first, first + n):
                    c.play(r, rng, model=None)
                last = first + n - 1
                out[name] = {"p99": _p99(c.waits), "confirmed": len(c.waits), "sent": len(c.arrivals),
                             "crowned": 0, "baseline_p99": _p99([last - a + 1 for a in c.arrivals])}
            finally:
                c.close()
    return out


def run(quick: bool = False) -> list[dict]:
    rounds = 20 if quick else 60
    m = measure(rounds, committee_rounds=10 if quick else 30)
    value = max(f["p99"] for f in m.values())
    baseline = min(f["baseline_p99"] for f in m.values())
    return [{
        "name": "tx_confirm_rounds_p99", "value": value, "unit": "rounds", "baseline": baseline,
        "ratio": round(value / baseline, 3) if baseline else None,
        "goal": "<= 2 in every case (baseline: the pre-issue-21 rule on the same arrivals, a lower bound)",
        "fields": m,
    }]


if __name__ == "__main__":
    import json
    import sys
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
