"""Squatter and bond dodger - position: **a miner with many funded keys**, each richer than any honest miner (slots
go by stake), in the in-process arena (benchmarks.attacks.arena: the real Engine + Keyholder).

Squatter: holds every slot of a round with entries it never opens, so the round is void (no transfer confirms, the
shard burns), and pays for it only through bonds, charged by the next crowned block (PROTOCOL §3.9). Strategies:

- ``naive``: the same E keys every round - the design case: each void round costs E bonds = one block reward;
- ``past-cap``: first 1,024 *low* keys (the lowest public keys of its set) once each, then *high* keys every round.
  Until issue 18 the settlement's forfeit list was capped at 1,024 entries, truncated to the lowest keys: the high
  keys were cut, never charged, and the entry rule read their debt from that list, so they re-entered owing
  nothing. Now every listed entry is a settlement record, a long streak settles over several blocks, and the
  entry rule counts every unsettled one.

``squat_cost_per_void_round`` = bonds burnt per voided round ÷ block reward (goal ≥ 1), measured after an honest
block crowns and settles the streak.

Bond dodger: its squatting key S is listed (and never opens) in a round that its own miner key W crowns with a
block carrying S's transfer of its whole balance to a fresh key; until issue 18 the next settlement charged S
min(bond, 0) = 0. Now the bond comes out of S's bond account, which no transfer reaches
(``bond_dodge_escaped_share``: bonds forfeited but not charged ÷ bonds forfeited, over the rounds a block has
settled when the run ends; a round not settled yet is reported apart as still owed; goal 0).

``python -m benchmarks.attacks.squatter [--quick]`` prints both.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from benchmarks.attacks.arena import Arena, Sealed, key
from chain.address import address_of
from chain.tx import make_transfer
from consensus.protocol.genesis import GenesisParams

BALANCE = 10**12
CAP = 1_024          # the settlement list cap until issue 18 (the 1,024 lowest keys were charged, the rest never):
                     # what the past-cap squatter beat; now a message carries ≤ 1,024 records and the rest of a
                     # long streak carries over to the next block's settlement
SETTLE_ROUNDS = 16   # honest rounds played after the streak, until every record of it is settled


@dataclass(frozen=True)
class SquatConfig:
    void_rounds: int           # rounds the squatter voids (then one honest round settles)
    max_entries: int           # E
    low_keys: int = CAP        # past-cap: keys used once each first (the lowest public keys)
    high_keys: int = 80        # past-cap: keys used every round afterwards (beyond the cut)
    entry_bond: int = 3_125_000
    block_reward: int = 50_000_000

    @property
    def params(self) -> GenesisParams:
        return GenesisParams(max_entries=self.max_entries, entry_bond=self.entry_bond, block_reward=self.block_reward)


# full: > 1,100 keys over >= 200 rounds at the default E = 16; quick (CI): E = 256 with bond = reward / E, so the
# same 1,024-entry cap is passed in 4 rounds and 1,280 keys play 6 rounds in seconds
FULL = SquatConfig(void_rounds=200, max_entries=16)
QUICK = SquatConfig(void_rounds=6, max_entries=256, high_keys=256, entry_bond=200_000, block_reward=51_200_000)


@dataclass
class SquatReport:
    strategy: str
    keys: int
    voided: int = 0
    listed_unopened: int = 0       # squatter entries listed in the voided rounds (each owes a bond)
    refused: int = 0               # squatter entries the keyholder refused (e.g. debt)
    burnt: int = 0                 # grains burnt by the settling block
    settled: bool = False          # the honest round after the streak crowned (and charged the bonds)
    seconds: float = 0.0
    block_reward: int = 0
    entry_bond: int = 0

    @property
    def cost_per_void_round(self) -> float:
        return self.burnt / (self.voided * self.block_reward) if self.voided else 0.0

    @property
    def charged_share(self) -> float:
        due = self.listed_unopened * self.entry_bond
        return self.burnt / due if due else 1.0


def squat(cfg: SquatConfig, strategy: str, seed: bytes = b"popchain-attack-squatter") -> SquatReport:
    """Void ``cfg.void_rounds`` rounds with ``strategy``, then let one honest block settle; report the cost."""
    started = time.perf_counter()
    E = cfg.max_entries
    n = E if strategy == "naive" else cfg.low_keys + cfg.high_keys
    pool = sorted((key(seed, f"squatter/{i}") for i in range(n)), key=lambda k: k.public)
    low, high = pool[:cfg.low_keys], pool[cfg.low_keys:]
    honest = key(seed, "honest")
    arena = Arena.create(seed, params=cfg.params, rounds=cfg.void_rounds + SETTLE_ROUNDS + 1,
                         balances=[(k.public, 2 * BALANCE) for k in pool] + [(honest.public, BALANCE)])
    rep = SquatReport(strategy, n, block_reward=cfg.block_reward, entry_bond=cfg.entry_bond)
    try:
        low_next = 0
        for q in range(cfg.void_rounds):
            arena.start_round()
            if strategy == "naive":
                keys = pool
            elif low_next < len(low):
                keys, low_next = low[low_next:low_next + E], low_next + E
            else:
                keys = [high[(q * E + j) % len(high)] for j in range(E)]
            mine = set()
            for k in keys:
                if arena.squat(k, q):
                    mine.add(k.public)
                else:
                    rep.refused += 1
            arena.enter(honest, arena.honest_model())       # outranked by stake: not listed while E squat
            beacon = arena.reveal()
            rep.listed_unopened += sum(1 for _, miner, *_ in beacon.listed if miner in mine)
            closed = arena.close()
            rep.voided += closed.winner is None
        # the squatter stops: honest blocks crown and apply the settlement of the streak — whole rounds, at most
        # MAX_SETTLE records per block, so a long streak settles over a few blocks (PROTOCOL §3.9)
        last_void = arena.engine.current_round()
        for i in range(SETTLE_ROUNDS):
            if arena.engine.unsettled_from() > last_void:
                break
            arena.start_round()
            sealed = arena.enter(honest, arena.honest_model() if i == 0 else _model_for_round(arena, i))
            beacon = arena.reveal()
            if isinstance(sealed, Sealed):
                arena.open(sealed, beacon)
            arena.close()
        rep.settled = arena.engine.unsettled_from() > last_void
        rep.burnt = arena.burnt()
    finally:
        arena.close_store()
    rep.seconds = time.perf_counter() - started
    return rep


@dataclass
class DodgeReport:
    rounds: int = 0
    forfeited: int = 0        # bonds the dodger's squatting keys forfeited (listed, never opened) in settled rounds
    charged: int = 0          # grains those keys' bond accounts lost to the settlements
    unsettled: int = 0        # forfeited bonds of rounds no block had settled when the run ended: still owed (the
                              # next block's settlement carries them), so neither charged nor escaped - reported apart
    shut_out: int = 0         # honest entries left unlisted meanwhile
    crowned_by_dodger: int = 0
    entry_bond: int = 0

    @property
    def escaped_share(self) -> float:
        due = self.forfeited * self.entry_bond
        return (due - self.charged) / due if due else 0.0


def dodge(rounds: int = 1, seed: bytes = b"popchain-attack-dodger") -> DodgeReport:
    """E = 2: the dodger's squatting key S_i and its miner W (both richer than two honest miners) take both slots;
    W's block carries S_i's transfer of its whole balance away; then honest rounds until a block settles S_i's
    round. Measured at the end, per key: charged = what S_i's bond account lost (only settlement moves take from it,
    since issue 18), over the rounds a block settled; a round still unsettled (no block since it, e.g. void rounds
    before issue 21's plain blocks) is counted in ``unsettled``, not as escaped: its records ride in every later
    notice until a block applies them, and the entry rule counts them as owed meanwhile."""
    params = GenesisParams(max_entries=2)
    w = key(seed, "dodger/miner")
    squatters = [key(seed, f"dodger/squat/{i}") for i in range(rounds)]
    honest = [key(seed, f"honest/{i}") for i in range(2)]
    sink = key(seed, "dodger/sink")
    balances = ([(w.public, 4 * BALANCE)] + [(s.public, 3 * BALANCE) for s in squatters]
                + [(h.public, BALANCE) for h in honest])
    arena = Arena.create(seed, params=params, rounds=(SETTLE_ROUNDS + 1) * rounds + 2, balances=balances)
    rep = DodgeReport(entry_bond=params.entry_bond)
    bonded = {s.public: arena.bond(s.public) for s in squatters}
    dodged_in: dict[bytes, int] = {}     # squatting key -> the round it was listed in and never opened
    try:
        for i, s in enumerate(squatters):
            arena.start_round()
            cid = arena.genesis.chain_id
            spend = make_transfer(s, cid, address_of(sink.public), arena.balance(s.public) - params.min_fee,
                                  params.min_fee, 0)
            arena.enter(s, arena.throwaway_model(i))
            got_w = arena.enter(w, _model_for_round(arena, i), txs=[spend])
            for h in honest:
                arena.enter(h, arena.honest_model())
            beacon = arena.reveal()
            listed = {miner for _, miner, *_ in beacon.listed}
            rep.shut_out += sum(1 for h in honest if h.public not in listed)
            if s.public in listed:
                dodged_in[s.public] = beacon.round
            if isinstance(got_w, Sealed):
                arena.open(got_w, beacon)
            closed = arena.close()
            rep.crowned_by_dodger += closed.crowned
            # honest rounds until a crowned block settles S_i's forfeit (from its bond account since issue 18)
            dodged = arena.engine.current_round()
            for k in range(SETTLE_ROUNDS):
                if arena.engine.unsettled_from() > dodged:
                    break
                arena.start_round()
                sealed = [arena.enter(h, _model_for_round(arena, 100 + i + 2 * k + j)) for j, h in enumerate(honest)]
                beacon = arena.reveal()
                for got in sealed:
                    if isinstance(got, Sealed):
                        arena.open(got, beacon)
                arena.close()
            rep.rounds += 1
        settled_through = arena.engine.unsettled_from() - 1
        for pub, q in dodged_in.items():
            if q <= settled_through:
                rep.forfeited += 1
                rep.charged += bonded[pub] - arena.bond(pub)
            else:
                rep.unsettled += 1
    finally:
        arena.close_store()
    return rep


def _model_for_round(arena: Arena, i: int) -> bytes:
    """A model that beats the champion so far: linear first, then families fitted on the revealed shards."""
    from ml.model import encode_model
    from ml.shards import open_shard
    from ml.training import train_candidate
    g = arena.genesis
    shards = []
    for r in range(1, arena.engine.current_round()):
        beacon = arena.engine.beacon(r)
        if beacon is not None:
            shards.append(open_shard(g.task, beacon.shard_index, beacon.shard_key))
    family = ("linear", "mlp", "extra", "forest")[i % 4]
    # the newest 8,000 rows: after a 200-round streak every row would make tree ensembles outgrow the model cap
    return encode_model(train_candidate(family, g.task.training, shards, seed=i, caps=g.model_caps,
                                        recent_rows=8_000))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.attacks.squatter", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    for strategy in ("naive", "past-cap"):
        rep = squat(cfg, strategy)
        print(f"{strategy}: {rep.keys} keys, {rep.voided} void rounds, {rep.listed_unopened} unopened listed, "
              f"{rep.refused} refused, burnt {rep.burnt} = {rep.cost_per_void_round:.3f} rewards per void round "
              f"(charged {rep.charged_share:.3f} of the bonds), settled {rep.settled}, {rep.seconds:.1f} s")
    d = dodge(1 if args.quick else 3)
    print(f"dodger: {d.rounds} rounds, {d.forfeited} bonds forfeited in settled rounds, charged {d.charged} grains "
          f"(escaped {d.escaped_share:.2f}), {d.unsettled} unsettled at the end, honest entries shut out {d.shut_out}, dodger crowned {d.crowned_by_dodger}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
