"""Deterministic round simulator: real Engine + Keyholder, scikit-learn miners and attackers, a simulated clock.

A *world* (one seed) is the synthetic task packaged into a genesis, a held-out test split that never enters
genesis, every miner key funded, and a cache of honest models (training depends only on the public data and the
revealed shards, so scenarios of one world share it). A *scenario* is a cast of miners (benchmarks.sim_attackers)
playing ``rounds`` rounds on a fresh store through the real entry / beacon / opening / closing path:

- ``honest``   the 4 honest miners alone (benchmarks.sim_drift: how often a drifting task crowns);
               ``honest-pair`` the MLP and extra-trees miners of them (the same, CI-sized)
- ``mixed``    4 honest miners + copy-noise 2 %, copy-noise 10 %, copy-flip, finetune, late-timestamp
- ``sybil``    1 honest miner + a sybil with E − 1 keys (noised copies, only the best opened)
- ``squatter`` a squatter with E keys (each richer than any honest miner, so it holds every slot) that enters
               first and never opens, for every round but the last + 4 honest miners
- ``squatter-end`` the same squatter squatting every round to the end of the genesis task; the chain then lives
               on (``run_scenario(extend=N)``: an extension of the task), and the next crowned block burns
               every bond it forfeited
- ``late``     a late-timestamp miner fitting on every row (so it wins early) + 2 weaker honest miners: after
               its crowning, can the others still build a valid child?

``run_scenario`` returns per-round reports (winner and its kind, every try's b, c and verdict, the champion's
test accuracy before/after) and the squatter's balance loss; ``python -m benchmarks.simulator`` prints them.
Randomness (shard keys, salts, noise, training seeds) comes from the seed, so a run is reproducible.
What it does not do: network, wall-clock timing, or any judgement of its own — the Engine judges every block.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from benchmarks.sim_attackers import (
    CopyFlip,
    CopyNoise,
    Finetune,
    LateTimestamp,
    Proposal,
    RoundView,
    Sealed,
    SimMiner,
    Squatter,
    SybilCopy,
)
from benchmarks.sim_miner import UserMiner
from chain.address import address_of
from chain.block import MAX_TIMESTAMP
from chain.crypto import Keypair
from chain.errors import PopError, RuleError
from chain.store import ChainStore
from consensus.engine import Engine
from consensus.keyholder import Keyholder, RoundClosed
from consensus.mining import open_block, seal
from consensus.protocol.genesis import GenesisParams, create_genesis
from consensus.protocol.messages import Beacon, RoundPayload
from consensus.protocol.settlement import bond_of, miner_funding
from consensus.protocol.tasks import make_task_extension
from ml.generator import World as GenWorld
from ml.generator import generate, world_from_seed
from ml.model import Model, decode_model
from ml.score import score
from ml.shards import SecretTask, generated_batch, open_shard
from ml.task import Dataset
from ml.training import train_candidate
from node.tools.mining import DEFAULT_MAX_ROWS

HONEST_FAMILIES = ("mlp", "mlp", "extra", "linear")
SCENARIOS = ("mixed", "sybil", "squatter", "squatter-end", "late")
EXTRA_SCENARIOS = ("honest", "honest-pair", "users")     # not part of benchmarks.simulation's figures
GENESIS_TIME = 1_767_225_600
BALANCE = 10**12
BOND = 10**11             # each cast key's bond account (its stake, §3.9)


def _rng_bytes(seed: bytes):
    """A deterministic rng for create_genesis(rng=...) and salts (simulation only: shard keys, row seeds and salts
    become reproducible)."""
    counter = [0]

    def urandom(n: int) -> bytes:
        out = b""
        while len(out) < n:
            counter[0] += 1
            out += hashlib.sha256(b"popchain/sim-rng" + seed + counter[0].to_bytes(8, "big")).digest()
        return out[:n]
    return urandom


def _key(seed: bytes, name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(seed + b"/key/" + name.encode()).digest())


@dataclass(frozen=True)
class WorldConfig:
    rounds: int = 6
    shard_size: int = 13_121           # the default task's (benchmarks.simulation.DEFAULT_SHARD_ROWS)
    n_train: int = 2_000
    n_test: int = 4_000
    max_train_rows: int | None = 6_000   # miners fit on the newest rows of public + revealed data (the latest
                                         # shards first: what matters on a drifting task, neutral on a fixed one)
    model_size: str = "small"            # ml.training profile
    drift_milli: int = 0                 # the task's drift (ml.generator.drift); 0 = one fixed distribution
    user_max_rows: int = DEFAULT_MAX_ROWS   # the "users" cast's --max-rows (benchmarks.sim_miner)
    params: GenesisParams = field(default_factory=GenesisParams)


class World:
    """Genesis, secret, held-out test split, the cast's keys and the honest-model cache of one seed."""

    def __init__(self, seed: bytes, config: WorldConfig = WorldConfig()) -> None:
        self.seed, self.config = seed, config
        c = config
        E = c.params.max_entries
        # the generated synthetic task (ml.generator): shards are committed row seeds, so 10k-row shards cost
        # nothing in genesis; the held-out test split is drawn from the same world with a seed genesis never sees
        task_world = self.task_world = world_from_seed(seed)
        # the held-out split is drawn from the task's start: on a drifting task it measures the champion on the
        # concept it started from (the figures that need the current concept score on the round's shard)
        self.test = generate(task_world, hashlib.sha256(seed + b"/held-out-test").digest(), c.n_test)
        self.keyholder_kp = _key(seed, "keyholder")
        names = ([f"honest-{i}" for i in range(len(HONEST_FAMILIES))]
                 + ["copy-noise-2", "copy-noise-10", "copy-flip", "finetune", "late-timestamp"]
                 + [f"sybil/{i}" for i in range(E - 1)] + [f"squatter/{i}" for i in range(E)])
        self.keys = {n: _key(seed, n) for n in names}
        # the squatter outranks everyone (slots go by stake, the bond account): it can hold every slot, so it
        # voids the rounds it squats, and the figure is what that costs it
        allocations = [a for n, kp in self.keys.items()
                       for a in miner_funding(kp.public, BALANCE, 2 * BOND if n.startswith("squatter/") else BOND)]
        self.genesis, self.secret = create_genesis(
            task_world, chain_id="popchain-sim", rounds=c.rounds, shard_size=c.shard_size, allocations=allocations,
            keyholder_pubkeys=[self.keyholder_kp.public], params=c.params, timestamp=GENESIS_TIME,
            n_train=c.n_train, rng=_rng_bytes(seed), drift_milli=c.drift_milli)
        self._models: dict[tuple[str, int, int, bool], Model] = {}

    @cached_property
    def public(self) -> Dataset:
        return self.genesis.task.training

    def train(self, family: str, seed: int, revealed: Sequence[Dataset], all_rows: bool = False) -> Model:
        key = (family, seed, len(revealed), all_rows)
        if key not in self._models:
            self._models[key] = train_candidate(family, self.public, revealed, seed=seed,
                                                recent_rows=None if all_rows else self.config.max_train_rows,
                                                caps=self.genesis.model_caps, size=self.config.model_size)
        return self._models[key]

    def secret_key(self, r: int) -> bytes:
        return SecretTask.decode(self.secret).key(r)

    def acc(self, model_bytes: bytes, data: Dataset | None = None) -> float:
        data = data or self.test
        g = self.genesis
        return score(decode_model(model_bytes, g.task.spec, g.model_caps), data.X, data.y).accuracy

    def cast(self, scenario: str) -> list[SimMiner]:
        k = self.keys
        honest = [SimMiner(f"honest-{i}", (k[f"honest-{i}"],), fam, seed=i)
                  for i, fam in enumerate(HONEST_FAMILIES)]
        E = self.config.params.max_entries
        if scenario == "honest":
            return honest
        if scenario == "users":           # 3 miners as users run them: --model auto, every row up to --max-rows
            return [UserMiner(f"honest-{i}", (k[f"honest-{i}"],), "auto", seed=i,
                              max_rows=self.config.user_max_rows) for i in range(3)]
        if scenario == "honest-pair":     # a cheaper honest cast (CI): one MLP and the extra-trees miner
            return [honest[0], honest[2]]
        if scenario == "mixed":
            return honest + [CopyNoise("copy-noise-2", (k["copy-noise-2"],), rel=0.02),
                             CopyNoise("copy-noise-10", (k["copy-noise-10"],), rel=0.10),
                             CopyFlip("copy-flip", (k["copy-flip"],)),
                             Finetune("finetune", (k["finetune"],), seed=50),
                             LateTimestamp("late-timestamp", (k["late-timestamp"],), "mlp", seed=60)]
        if scenario == "sybil":
            return honest[:1] + [SybilCopy("sybil", tuple(k[f"sybil/{i}"] for i in range(E - 1)))]
        if scenario in ("squatter", "squatter-end"):
            # "squatter" stops before the last round, so a crowned block settles its bonds; "squatter-end" squats
            # every round of the genesis task (the chain's later blocks, on an extension, settle them)
            squat = max(1, self.config.rounds - 1) if scenario == "squatter" else self.config.rounds
            return [Squatter("squatter", tuple(k[f"squatter/{i}"] for i in range(E)), last_round=squat)] + honest
        if scenario == "late":
            return [LateTimestamp("late-timestamp", (k["late-timestamp"],), "mlp", seed=60, all_rows=True),
                    honest[3], honest[2]]
        raise ValueError(f"unknown scenario {scenario!r}; choose from {SCENARIOS + EXTRA_SCENARIOS}")


@dataclass(frozen=True)
class Try:
    miner: str
    kind: str
    b: int
    c: int
    code: str          # tip-changed | accepted (a crowning block) | plain (issue 21) | a reject code


@dataclass(frozen=True)
class RoundReport:
    round: int
    listed: int                   # entries the beacon lists
    listed_by_kind: tuple[tuple[str, int], ...]
    winner: str | None            # miner name, None if the round is void
    winner_kind: str | None
    b: int
    c: int
    acc_before: float             # champion test accuracy before / after the round
    acc_after: float
    void: bool
    tries: tuple[Try, ...]
    unbuildable: tuple[str, ...]  # miners whose block could not even be built or entered (e.g. timestamp)
    shard_acc: float = 0.0        # the champion's accuracy on the round's shard after the round (current concept)
    shard: int = 0                # the task-local shard index the round served
    extension: bool = False       # the round served an extension's shard (the chain lived past genesis's task)
    # issue 21, the FORWARD holdout (``forward=True``): on the round's shard, rows none of them saw —
    fwd_acc: float = 0.0          # the champion the round started with
    fresh_acc: float | None = None    # a plain fit (small MLP) on the newest revealed shard alone (None: round 1)
    genesis_acc: float = 0.0      # the genesis champion


@dataclass
class ScenarioReport:
    scenario: str
    seed: bytes
    rounds: list[RoundReport] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)          # miner -> kind
    copy_miners: tuple[str, ...] = ()
    balance_lost: dict[str, int] = field(default_factory=dict)   # miner -> grains lost over the run
    initial_test_acc: float = 0.0
    final_test_acc: float = 0.0
    n_test: int = 0
    block_reward: int = 0
    seconds: float = 0.0
    extension_rounds: int = 0     # rounds played on an extension after the genesis task ran out

    def wins(self, kind: str | None = None, miner: str | None = None) -> int:
        return sum(1 for r in self.rounds if r.winner is not None
                   and (kind is None or r.winner_kind == kind) and (miner is None or r.winner == miner))

    @property
    def crowned(self) -> int:
        return sum(1 for r in self.rounds if not r.void)


def max_timestamp(engine: Engine, now: int) -> int:
    """The largest header timestamp the rules will accept for a block of the open round, as a miner can predict
    it before the beacon: the reveal time (no earlier than the notice's entry deadline) + the genesis slack
    (PROTOCOL §3.6 step 4); capped by the header's decode limit."""
    notice = engine.notice(engine.open_round())
    if notice is None:
        return MAX_TIMESTAMP
    return min(MAX_TIMESTAMP, notice.entry_deadline_ms // 1000 + engine.genesis.params.time_slack_s)


def _until(keyholder: Keyholder, now: int, kind: type, limit: int = 64):
    """Step the keyholder from deadline to deadline until it emits a ``kind`` action: (now, action)."""
    for _ in range(limit):
        deadline = keyholder.next_deadline()
        now = max(now, int(deadline + 0.999) if deadline is not None else now)
        for action in keyholder.step(now):
            if isinstance(action, kind):
                return now, action
        now += 1
    raise RuntimeError(f"the keyholder emitted no {kind.__name__} (round waiting for entries?)")


def run_scenario(world: World, scenario: str, *, rounds: int | None = None, verbose: bool = False,
                 extend: int = 0, forward: bool = False) -> ScenarioReport:
    """Play ``rounds`` rounds of the genesis task (default: all of them); with ``extend`` > 0 the chain then
    lives on (issue 11): once the genesis task is exhausted (the keyholder's idle notice), its governance key
    signs an extension of task 0 with ``extend`` more shards, the keyholder revives the chain with it, and the
    cast plays those rounds too (round numbers go on: the idle notice took one)."""
    started = time.perf_counter()
    g, params = world.genesis, world.config.params
    rounds = min(rounds or g.n_rounds, g.n_rounds)
    if extend and rounds != g.n_rounds:
        raise ValueError("extend: only a chain that played its genesis task to the end is extended")
    cast = world.cast(scenario)
    by_pub = {kp.public: m for m in cast for kp in m.keys}
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(world.seed + scenario.encode()).digest()[:8], "big"))
    salts = _rng_bytes(world.seed + b"/salts/" + scenario.encode())
    rep = ScenarioReport(scenario, world.seed, kinds={m.name: m.kind for m in cast},
                         copy_miners=tuple(m.name for m in cast if m.copy), n_test=len(world.test),
                         block_reward=params.block_reward)
    store = ChainStore.memory()
    try:
        engine = Engine(store, g)
        keyholder = Keyholder(engine, world.secret, [world.keyholder_kp])
        start_balance = _balances(engine, cast)
        rep.initial_test_acc = acc = world.acc(engine.champion_model())
        revealed: list[Dataset] = []
        shard_keys: list[tuple[int, bytes]] = []
        now = GENESIS_TIME + 1
        keyholder.step(now)  # opens round 1
        for played in range(rounds + extend):
            if played == rounds:   # the genesis task is exhausted: the last close emitted the idle notice
                now = _extend_task0(world, engine, keyholder, extend, now)
                rep.extension_rounds = extend
            r = engine.open_round()
            if r == 0:
                raise RuntimeError(f"no round is open after {played} rounds")
            task_id, _ = engine.round_task(r) or (0, 0)
            package = engine.task_package(task_id)
            champion = engine.champion_model()
            view = RoundView(r, g, champion, world.public, tuple(revealed), now, max_timestamp(engine, now),
                             lambda fam, s, full=False, rv=tuple(revealed): world.train(fam, s, rv, full), rng,
                             package, tuple(shard_keys))
            sealed: list[Sealed] = []
            unbuildable: list[str] = []
            for miner in cast:
                for prop in miner.propose(view):
                    got = _enter(engine, keyholder, miner, prop, champion, now, salts(32))
                    if got is None:
                        unbuildable.append(miner.name)
                    elif isinstance(got, Sealed):
                        sealed.append(got)
            now, beacon = _until(keyholder, now, Beacon)
            listed = _listed(beacon)
            activations = engine.activation_bytes(beacon)
            tries = []
            for miner in cast:
                mine = [s for s in sealed if s.miner == miner.name and s.block.header.hash in listed]
                for s in miner.to_open(view, beacon, mine):
                    opened = open_block(s.block, beacon, genesis=g, champion_bytes=champion, task=package,
                                        activations=activations)
                    verdict = engine.add_block(opened)
                    p = RoundPayload.decode(opened.payload)
                    plain = verdict.scored is not None and not verdict.scored.crowned
                    tries.append(Try(miner.name, miner.kind, p.b, p.c,
                                     "plain" if plain else verdict.code or verdict.status))
            now, closed = _until(keyholder, now, RoundClosed)
            revealed.append(open_shard(package, beacon.shard_index, beacon.shard_key))
            shard_keys.append((beacon.shard_index, beacon.shard_key))
            fwd = fresh = None
            if forward:   # measured before the round's champion can be the one scored (issue 21)
                fwd = world.acc(champion, revealed[-1])
                if len(revealed) >= 2:
                    plain_fit = train_candidate("mlp", revealed[-2], (), seed=r, size="small", caps=g.model_caps)
                    fresh = score(plain_fit, revealed[-1].X, revealed[-1].y).accuracy
            shard_acc = world.acc(engine.champion_model(task_id), revealed[-1])
            rec = engine.champion(task_id)
            won = closed.crowned            # a plain block anchors the round but crowns nothing (issue 21)
            winner = by_pub[rec.miner].name if won else None
            after = world.acc(engine.champion_model(task_id)) if won else acc
            kinds: dict[str, int] = {}
            for s in sealed:
                if s.block.header.hash in listed:
                    kinds[by_pub[s.key.public].kind] = kinds.get(by_pub[s.key.public].kind, 0) + 1
            rr = RoundReport(r, len(listed), tuple(sorted(kinds.items())), winner,
                             rep.kinds[winner] if winner else None, rec.b if won else 0, rec.c if won else 0,
                             acc, after, not won, tuple(tries), tuple(unbuildable), shard_acc,
                             beacon.shard_index, played >= rounds,
                             fwd_acc=fwd or 0.0, fresh_acc=fresh,
                             genesis_acc=world.acc(g.block.model, revealed[-1]) if forward else 0.0)
            acc = after
            rep.rounds.append(rr)
            if verbose:
                print(format_round(scenario, rr), flush=True)
        end_balance = _balances(engine, cast)
        rep.balance_lost = {n: start_balance[n] - end_balance[n] for n in start_balance}
        rep.final_test_acc = acc
    finally:
        store.close()
    rep.seconds = time.perf_counter() - started
    return rep


def _extend_task0(world: World, engine: Engine, keyholder: Keyholder, n: int, now: int) -> int:
    """Sign an extension of the genesis task with ``n`` generated shards (drifting on from its last shard's
    world, towards its start), hand the keys to the keyholder and step it until it opens the next round."""
    g = world.genesis
    task = engine.task(0)
    assert task is not None and task.status == "closed", "task 0 is still open"
    rng = _rng_bytes(world.seed + b"/extension")
    last = _shard_world(engine.task_package(0), task.shards_total, world.secret_key(task.shards_total), g)
    batch = generated_batch(last, task.shards_total + 1, n, rng=rng, drift_milli=world.config.drift_milli,
                            anchor=world.task_world)
    msg = make_task_extension([world.keyholder_kp], g.chain_id, 0, task.extensions + 1, batch.commitments,
                              batch.ciphertexts)
    engine.add_task_message(msg)
    keyholder.add_task_secret(msg.msg_hash, batch.secret, n_shards=n)
    for _ in range(8):
        now += 1
        keyholder.step(now)
        if engine.open_round():
            return now
    raise RuntimeError("the keyholder did not revive the chain with the extension")


def _shard_world(package, index: int, key: bytes, g) -> GenWorld:
    """The world a generated shard was drawn from (its plaintext carries it)."""
    import nacl.secret

    from chain.encoding import unpack
    from ml.shards import SALT_SIZE
    plain = nacl.secret.SecretBox(key).decrypt(package.ciphertexts[index - 1])[SALT_SIZE:]
    return GenWorld.from_obj(unpack(plain, max_size=1 << 20)[2], g.task.spec)


def _enter(engine: Engine, keyholder: Keyholder, miner: SimMiner, prop: Proposal, champion: bytes, now: int,
           salt: bytes) -> Sealed | bool | None:
    """Seal + enter one proposal: Sealed if the keyholder accepted it, False if refused or a duplicate of the
    champion, None if the block could not be built at all (e.g. an impossible timestamp)."""
    if prop.model == champion:
        return False
    try:
        template = engine.build_template(prop.key.public, [], prop.timestamp or now)
        if prop.timestamp is not None:  # build_template may clamp the clock into the window; an attacker does not
            template = dataclasses.replace(template, timestamp=prop.timestamp)
        block, entry = seal(template, prop.model, prop.key, salt)
        engine.add_entry(entry)
    except (PopError, ValueError):
        return None
    try:
        accepted = keyholder.on_entry(entry)
    except RuleError:
        return False
    return Sealed(miner.name, prop.key, block) if accepted else False


def _listed(beacon: Beacon) -> set[bytes]:
    return set(beacon.entries)


def _balances(engine: Engine, cast: Sequence[SimMiner]) -> dict[str, int]:
    """Each miner's grains: its keys' accounts and bond accounts."""
    view = engine.store.state_view(engine.tip().hash)
    return {m.name: sum(view.get_account(address_of(kp.public)).balance + view.get_account(bond_of(kp.public)).balance
                        for kp in m.keys) for m in cast}


def format_round(scenario: str, r: RoundReport) -> str:
    who = "VOID" if r.void else f"{r.winner} b={r.b} c={r.c}"
    tries = " ".join(f"{t.miner}:{t.b}/{t.c}" + ("" if t.code in ("tip-changed", "accepted") else f"({t.code})")
                     for t in r.tries)
    stuck = f" unbuildable={','.join(r.unbuildable)}" if r.unbuildable else ""
    return (f"[{scenario}] round {r.round:3d} listed={r.listed} -> {who:28s} test acc {r.acc_before:.4f} -> "
            f"{r.acc_after:.4f} shard acc {r.shard_acc:.4f} | {tries}{stuck}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.simulator", description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--shard-size", type=int, default=WorldConfig.shard_size)
    ap.add_argument("--train", type=int, default=WorldConfig.n_train, help="public training rows")
    ap.add_argument("--scenario", action="append", choices=SCENARIOS + EXTRA_SCENARIOS,
                    help="repeatable; default all but honest")
    ap.add_argument("--drift-milli", type=int, default=0, help="the task's drift (default 0: fixed)")
    ap.add_argument("--extend", type=int, default=0, metavar="N",
                    help="after the genesis task, extend it by N shards and play those rounds too")
    ap.add_argument("--default-models", action="store_true", help="ml.training's default profile (slower)")
    ap.add_argument("--seed", default="popchain-simulation-seed-1")
    args = ap.parse_args(argv)
    config = WorldConfig(rounds=args.rounds, shard_size=args.shard_size, n_train=args.train,
                         model_size="default" if args.default_models else "small", drift_milli=args.drift_milli)
    world = World(args.seed.encode(), config)
    for scenario in args.scenario or SCENARIOS:
        rep = run_scenario(world, scenario, verbose=True, extend=args.extend)
        wins = ", ".join(f"{k}={rep.wins(kind=k)}" for k in sorted(set(rep.kinds.values())))
        lost = {n: v for n, v in rep.balance_lost.items() if v}
        print(f"[{scenario}] crowned {rep.crowned}/{len(rep.rounds)}; wins by kind: {wins}; balance lost: {lost}; "
              f"test accuracy {rep.initial_test_acc:.4f} -> {rep.final_test_acc:.4f}; {rep.seconds:.1f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
