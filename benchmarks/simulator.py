"""Deterministic round simulator: real Engine + Keyholder + scikit-learn miners, a simulated clock, no network.

Genesis comes from the default synthetic task; K honest miners (different families and seeds) train on the
public data + every revealed shard each round; one copycat resubmits a perturbed copy of the champion.
``run_simulation`` returns per-round and overall figures; ``python -m benchmarks.simulator --rounds N`` prints
them. Randomness (shard keys, salts, noise) comes from the seed, so a run is reproducible.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chain.address import address_of
from chain.crypto import Keypair
from chain.store import ChainStore
from consensus.engine import Engine
from consensus.genesis import GenesisParams, create_genesis
from consensus.keyholder import Keyholder, RoundClosed
from consensus.messages import Beacon, RoundPayload
from consensus.miner import open_block, seal
from ml.model import LinearModel, MLPModel, Model, TreesModel, decode_model, encode_model
from ml.score import score
from ml.shards import open_shard, split_test
from ml.task import Dataset, synthetic
from ml.training import train_candidate

DEFAULT_FAMILIES = ("mlp", "mlp", "extra", "linear")
GENESIS_TIME = 1_767_225_600
BALANCE = 10**12


@dataclass(frozen=True)
class RoundReport:
    round: int
    entries: int
    winner: str | None            # miner name, None if the round is void
    b: int
    c: int
    z_milli: int                  # the significance this round required
    champion_shard_acc: float     # the champion after the round, on shard r
    champion_test_acc: float      # ... on the untouched test split
    void: bool
    tries: tuple[tuple[str, int, int, str], ...]   # (miner, b, c, verdict status/code)


@dataclass
class SimulationReport:
    rounds: list[RoundReport] = field(default_factory=list)
    crowned_share: float = 0.0
    copycat_wins: int = 0
    copycat_win_share: float = 0.0
    floor_rounds: int = 0
    copycat_floor_wins: int = 0
    copycat_floor_share: float = 0.0
    initial_test_acc: float = 0.0
    final_test_acc: float = 0.0
    best_sklearn_test_acc: float = 0.0
    best_sklearn_family: str = ""
    reference_public_only_acc: float = 0.0
    seconds: float = 0.0

    def summary(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("rounds")
        return d


def _rng_bytes(seed: bytes):
    """A deterministic rng for create_genesis(rng=...) (simulation only: shard keys and salts become reproducible)."""
    counter = [0]

    def urandom(n: int) -> bytes:
        out = b""
        while len(out) < n:
            counter[0] += 1
            out += hashlib.sha256(b"popchain/sim-rng" + seed + counter[0].to_bytes(8, "big")).digest()
        return out[:n]
    return urandom


def perturb(model: Model, rng: np.random.Generator, rel: float = 0.02) -> Model:
    """The copycat's trick: the champion with ~2 % multiplicative noise on its output weights / leaf votes."""
    def jitter(a: np.ndarray) -> np.ndarray:
        a64 = a.astype(np.int64)
        noise = np.rint(a64 * rel * rng.standard_normal(a.shape)).astype(np.int64)
        noise[noise == 0] = rng.integers(-1, 2, size=int((noise == 0).sum()))
        return a64 + noise
    if isinstance(model, LinearModel):
        return LinearModel(jitter(model.W), model.b.astype(np.int64))
    if isinstance(model, MLPModel):
        layers = list(model.layers)
        W, b = layers[-1]
        layers[-1] = (jitter(W), b)
        return MLPModel(tuple(layers), model.shifts)
    value = np.maximum(jitter(model.value), 0)
    value[model.feature >= 0] = 0  # internal nodes carry no votes
    return TreesModel(model.roots, model.feature, model.threshold, model.left, model.right, value)


def run_simulation(*, rounds: int = 30, shard_size: int = 200, n_train: int = 2000, n_test: int = 2000,
                   families: tuple[str, ...] = DEFAULT_FAMILIES, copycat: bool = True,
                   params: GenesisParams | None = None, seed: bytes = b"popchain-simulation-seed-1",
                   datadir: Path | None = None, max_train_rows: int | None = None,
                   model_size: str = "default", verbose: bool = False) -> SimulationReport:
    """Run ``rounds`` rounds; ``model_size="small"`` trains every miner (and the reference models) in
    ml.training's small profile, which keeps a 30-round run within CI time."""
    started = time.perf_counter()
    params = params or GenesisParams()
    urandom = _rng_bytes(seed)
    np_rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed).digest()[:8], "big"))
    full = synthetic(seed, n_samples=rounds * shard_size + n_train + n_test)
    rest, test = split_test(full, n_test, seed)
    keyholder_kp = Keypair.from_seed(hashlib.sha256(seed + b"keyholder").digest())
    names = [f"{fam}-{i}" for i, fam in enumerate(families)] + (["copycat"] if copycat else [])
    miners = {n: Keypair.from_seed(hashlib.sha256(seed + n.encode()).digest()) for n in names}
    by_pub = {kp.public: n for n, kp in miners.items()}
    allocations = [(address_of(kp.public), BALANCE) for kp in miners.values()]
    genesis, secret = create_genesis(rest, chain_id="popchain-sim", rounds=rounds, shard_size=shard_size,
                                     allocations=allocations, keyholder_pubkeys=[keyholder_kp.public],
                                     params=params, timestamp=GENESIS_TIME, n_train=n_train, seed=seed, rng=urandom)
    spec, caps = genesis.task.spec, genesis.model_caps
    public = genesis.task.training
    if datadir is None:
        store = ChainStore.memory()
    else:
        store = ChainStore.open(datadir)
    report = SimulationReport()
    try:
        engine = Engine(store, genesis)
        keyholder = Keyholder(engine, secret, [keyholder_kp])
        report.initial_test_acc = _acc(engine.champion_model(), spec, caps, test)
        revealed: list[Dataset] = []
        now = float(GENESIS_TIME + 1)
        keyholder.step(now)  # opens round 1
        for r in range(1, rounds + 1):
            champion_bytes = engine.champion_model()
            sealed = {}
            for name, kp in miners.items():
                template = engine.build_template(kp.public, [], int(now))
                if name == "copycat":
                    model = perturb(decode_model(champion_bytes, spec, caps), np_rng)
                else:
                    family = name.rsplit("-", 1)[0]
                    model = train_candidate(family, public, revealed, seed=r * 101 + names.index(name),
                                            max_rows=max_train_rows, caps=caps, size=model_size)
                model_bytes = encode_model(model)
                if model_bytes == champion_bytes:
                    continue
                block, entry = seal(template, model_bytes, kp, urandom(32))
                engine.add_entry(entry)
                keyholder.on_entry(entry)
                sealed[name] = (block, template.z_milli)
            now += params.entry_window_s
            beacon = next(a for a in keyholder.step(now) if isinstance(a, Beacon))
            tries = []
            for name, (block, z) in sealed.items():
                opened = open_block(block, beacon, genesis=genesis, champion_bytes=champion_bytes, z_milli=z)
                verdict = engine.add_block(opened)
                p = RoundPayload.decode(opened.payload)
                tries.append((name, p.b, p.c, verdict.code or verdict.status))
            now += params.opening_window_s
            closed = next(a for a in keyholder.step(now) if isinstance(a, RoundClosed))
            shard = open_shard(genesis.task, r, beacon.shard_key)
            revealed.append(shard)
            rec = engine.champion()
            won = closed.winner is not None
            z_r = sealed[next(iter(sealed))][1] if sealed else 0
            rr = RoundReport(r, len(beacon.entries), by_pub.get(rec.miner) if won else None,
                             rec.b if won else 0, rec.c if won else 0, z_r,
                             _acc(engine.champion_model(), spec, caps, shard),
                             _acc(engine.champion_model(), spec, caps, test), not won, tuple(tries))
            report.rounds.append(rr)
            if verbose:
                print(_format_round(rr), flush=True)
        _overall(report, params, public, revealed, test, model_size)
    finally:
        store.close()
    report.seconds = time.perf_counter() - started
    return report


def _acc(model_bytes: bytes, spec, caps, data: Dataset) -> float:
    return score(decode_model(model_bytes, spec, caps), data.X, data.y).accuracy


def _overall(report: SimulationReport, params: GenesisParams, public: Dataset, revealed: list[Dataset],
             test: Dataset, model_size: str) -> None:
    rounds = report.rounds
    n = len(rounds)
    crowned = [r for r in rounds if not r.void]
    report.crowned_share = len(crowned) / n if n else 0.0
    report.copycat_wins = sum(r.winner == "copycat" for r in rounds)
    report.copycat_win_share = report.copycat_wins / n if n else 0.0
    floor = [r for r in rounds if r.z_milli == params.z_floor_milli]
    report.floor_rounds = len(floor)
    report.copycat_floor_wins = sum(r.winner == "copycat" for r in floor)
    report.copycat_floor_share = report.copycat_floor_wins / len(floor) if floor else 0.0
    report.final_test_acc = rounds[-1].champion_test_acc if rounds else report.initial_test_acc
    # the comparison: the best of our families (and a bigger forest) on ALL public data = training + shards
    best, best_name = 0.0, ""
    for fam in ("linear", "mlp", "forest", "extra"):
        acc = score(train_candidate(fam, public, revealed, seed=7, size=model_size), test.X, test.y).accuracy
        if acc > best:
            best, best_name = acc, fam
    from sklearn.ensemble import RandomForestClassifier
    X = np.concatenate([public.X] + [d.X for d in revealed]).astype(np.float64)
    y = np.concatenate([public.y] + [d.y for d in revealed])
    trees = 50 if model_size == "small" else 200
    big = RandomForestClassifier(n_estimators=trees, min_samples_leaf=2, n_jobs=1, random_state=0).fit(X, y)
    big_acc = float(np.mean(big.predict(test.X.astype(np.float64)) == test.y))
    if big_acc > best:
        best, best_name = big_acc, f"float RandomForest({trees})"
    report.best_sklearn_test_acc, report.best_sklearn_family = best, best_name
    report.reference_public_only_acc = score(train_candidate("forest", public, (), seed=7, size=model_size),
                                             test.X, test.y).accuracy


def _format_round(r: RoundReport) -> str:
    who = "VOID" if r.void else f"{r.winner} b={r.b} c={r.c}"
    tries = " ".join(f"{n}:{b}/{c}" + ("" if code in ("tip-changed", "accepted") else f"({code})")
                     for n, b, c, code in r.tries)
    return (f"round {r.round:3d} z={r.z_milli / 1000:.3f} entries={r.entries} -> {who:28s} "
            f"champion shard={r.champion_shard_acc:.3f} test={r.champion_test_acc:.4f} | {tries}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.simulator", description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--shard-size", type=int, default=200)
    ap.add_argument("--train", type=int, default=2000, help="public training rows")
    ap.add_argument("--families", default=",".join(DEFAULT_FAMILIES))
    ap.add_argument("--no-copycat", action="store_true")
    ap.add_argument("--small", action="store_true", help="small models (ml.training size='small'), as in CI")
    ap.add_argument("--seed", default="popchain-simulation-seed-1")
    for name in ("z_init_milli", "z_floor_milli", "z_max_milli", "z_up_milli", "z_down_milli"):
        ap.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(GenesisParams(), name))
    ap.add_argument("--leveldb", action="store_true", help="use a temporary LevelDB store instead of memory")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    params = GenesisParams(**{k: getattr(args, k) for k in ("z_init_milli", "z_floor_milli", "z_max_milli",
                                                             "z_up_milli", "z_down_milli")})
    with tempfile.TemporaryDirectory() as tmp:
        rep = run_simulation(rounds=args.rounds, shard_size=args.shard_size, n_train=args.train,
                             families=tuple(args.families.split(",")), copycat=not args.no_copycat,
                             params=params, seed=args.seed.encode(),
                             datadir=Path(tmp) / "sim" if args.leveldb else None,
                             model_size="small" if args.small else "default", verbose=not args.quiet)
    print()
    print(f"rounds {len(rep.rounds)}  crowned share {rep.crowned_share:.1%}  "
          f"copycat wins {rep.copycat_wins} ({rep.copycat_win_share:.1%}); at the floor "
          f"{rep.copycat_floor_wins}/{rep.floor_rounds} ({rep.copycat_floor_share:.1%})")
    print(f"champion test accuracy {rep.initial_test_acc:.4f} (genesis) -> {rep.final_test_acc:.4f} (final); "
          f"best scikit-learn on all public data {rep.best_sklearn_test_acc:.4f} ({rep.best_sklearn_family}); "
          f"forest on the public training split only {rep.reference_public_only_acc:.4f}")
    print(f"simulated in {rep.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
