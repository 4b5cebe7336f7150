"""Equal-stake salt grinder - position: **miners with as much stake per key as the honest ones**, in the
in-process arena (benchmarks.attacks.arena: the real Engine + Keyholder).

When more than E entries arrive the beacon keeps the E largest stakes; until issue 18 ties were broken by the
lower header hash (PROTOCOL §3.3), which the entrant chooses through its salt; now by the slot value of the
round's shard key, which nobody knows before the beacon. Each grinder key seals its block with the best of
``tries`` salts (benchmarks.attacks.protocol.grind_salt, ~1,000 hashes: milliseconds; the old rank, the best an
entrant can aim at); each honest key seals once with a random salt (its header hash is a uniform 256-bit value:
a bare entry with a random hash is the same draw). Nobody opens (the listing is what is measured), so stakes
stay equal round after round. ``listings`` records who was listed each round: with the same seed, grinding and
not grinding must list exactly the same keys.

``slot_grind_share`` = (the grinder's share of the listed slots) ÷ (its fair share, its keys ÷ all keys), over
rounds with more entries than slots. Goal ≤ 1.1; with as many grinder keys as honest ones the worst is 2.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

from benchmarks.attacks.arena import Arena, Sealed, key
from benchmarks.attacks.protocol import grind_salt
from consensus.protocol.genesis import GenesisParams

BALANCE = 10**12


@dataclass(frozen=True)
class GrindConfig:
    rounds: int
    max_entries: int          # E slots
    honest_keys: int
    grinder_keys: int
    tries: int = 1_000        # salts per grinder entry


FULL = GrindConfig(rounds=200, max_entries=16, honest_keys=16, grinder_keys=16)
QUICK = GrindConfig(rounds=40, max_entries=4, honest_keys=4, grinder_keys=4)


@dataclass
class GrindReport:
    rounds: int = 0
    contested: int = 0            # rounds with more entries than slots
    grinder_slots: int = 0        # listed grinder entries in contested rounds
    slots: int = 0                # listed entries in contested rounds
    honest_shut_out: int = 0      # rounds in which at least one honest key was left out
    fair: float = 0.0
    seconds: float = 0.0
    listings: list[tuple[bytes, ...]] = field(default_factory=list)   # the listed miners, round by round

    @property
    def share(self) -> float:
        return self.grinder_slots / self.slots if self.slots else 0.0

    @property
    def ratio(self) -> float:
        return self.share / self.fair if self.fair else 0.0


def grind(cfg: GrindConfig, tries: int | None = None, seed: bytes = b"popchain-attack-grinder") -> GrindReport:
    """Play ``cfg.rounds`` rounds; ``tries`` overrides the grinder's salts per entry (1 = no grinding: the
    same-run baseline)."""
    started = time.perf_counter()
    tries = cfg.tries if tries is None else tries
    honest = [key(seed, f"honest/{i}") for i in range(cfg.honest_keys)]
    grinders = [key(seed, f"grinder/{i}") for i in range(cfg.grinder_keys)]
    params = GenesisParams(max_entries=cfg.max_entries)
    arena = Arena.create(seed, params=params, rounds=cfg.rounds + 1,
                         balances=[(k.public, BALANCE) for k in honest + grinders])
    rep = GrindReport(fair=cfg.grinder_keys / (cfg.grinder_keys + cfg.honest_keys))
    mine = {k.public for k in grinders}
    try:
        for q in range(cfg.rounds):
            arena.start_round()
            for i, k in enumerate(grinders):
                model = arena.throwaway_model(q * 1000 + i)
                tpl = arena.engine.build_template(k.public, [], arena.now)
                got = arena.enter(k, model, salt=grind_salt(tpl, model, tries, arena.salts))
                assert isinstance(got, Sealed) or got == "not-kept", got
            for k in honest:
                arena.squat(k, q)
            beacon = arena.reveal()
            arena.close()
            rep.rounds += 1
            if cfg.honest_keys + cfg.grinder_keys > cfg.max_entries:
                rep.contested += 1
                listed = [miner for _, miner, *_ in beacon.listed]
                rep.listings.append(tuple(sorted(listed)))
                rep.slots += len(listed)
                rep.grinder_slots += sum(1 for m in listed if m in mine)
                rep.honest_shut_out += any(k.public not in listed for k in honest)
    finally:
        arena.close_store()
    rep.seconds = time.perf_counter() - started
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.attacks.grinder", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    for tries in (1, cfg.tries):
        rep = grind(cfg, tries)
        print(f"{tries} salts per entry: grinder share {rep.share:.3f} of {rep.slots} slots in {rep.contested} "
              f"contested rounds (fair {rep.fair:.3f}) -> ratio {rep.ratio:.3f}; an honest key shut out in "
              f"{rep.honest_shut_out}/{rep.contested} rounds; {rep.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
