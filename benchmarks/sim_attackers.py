"""The round simulator's miners: honest trainers and the attackers of issue 9, each a small strategy object.

A miner sees a ``RoundView`` (the champion's bytes, the public data and revealed shards, a cached trainer, the
simulated clock and the largest timestamp the rules accept) and returns ``Proposal``s — one per key it enters
with. After the beacon it picks which of its sealed blocks to open (``to_open``; default all). Everything goes
through the real entry/opening path in benchmarks.simulator; nothing here touches consensus state.

Attackers (the ``kind`` is what the report groups by; ``copy`` marks those counted in sim_copycat_share):
- ``copy-noise``   the champion with ``rel`` (2 % or 10 %) multiplicative noise on every layer / every leaf vote
- ``copy-flip``    the champion with 5 output-weight signs flipped (dense) / 5 split thresholds shifted by ±1
- ``sybil-copy``   E − 1 keys each enter a differently noised copy; after the beacon only the best one opens
- ``squatter``     E funded keys enter first and never open (to crowd out or void the round)
- ``finetune``     the champion's architecture re-fitted on public + revealed data: legitimate, wins reported
- ``late-timestamp`` an honest model stamped with the largest timestamp the rules accept
What this module does not do: judge anything — the Engine does, exactly as for a network peer.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from chain.block import Block
from chain.crypto import Keypair
from consensus.mining import score_against
from consensus.protocol.genesis import Genesis
from consensus.protocol.messages import Beacon
from ml.model import LinearModel, MLPModel, Model, TreesModel, decode_model, encode_model
from ml.shards import PublicTask
from ml.task import Dataset

Trainer = Callable[..., Model]   # (family, seed, all_rows=False) -> model fitted on public + revealed (cached)


@dataclass(frozen=True)
class RoundView:
    round: int
    genesis: Genesis
    champion: bytes              # the champion's model bytes (the round's anchor)
    public: Dataset
    revealed: Sequence[Dataset]  # shards of earlier revealed rounds
    now: int                     # simulated clock (seconds)
    max_timestamp: int           # the largest header timestamp the rules accept for this round
    train: Trainer
    rng: np.random.Generator     # the attacker's noise (seeded by the simulator)
    package: PublicTask | None = None            # the round's task package (what a real miner downloads)
    shard_keys: Sequence[tuple[int, bytes]] = ()  # (shard index, key) of the task's revealed shards, in order


@dataclass(frozen=True)
class Proposal:
    key: Keypair
    model: bytes
    timestamp: int | None = None   # None: the simulated clock


@dataclass(frozen=True)
class Sealed:
    miner: str
    key: Keypair
    block: Block


@dataclass
class SimMiner:
    """An honest miner of one model family (the base class: attackers override ``propose`` / ``to_open``)."""
    name: str
    keys: tuple[Keypair, ...]
    family: str = "mlp"
    seed: int = 0
    kind: str = "honest"
    copy: bool = False
    stats: dict[str, int] = field(default_factory=dict)

    def propose(self, view: RoundView) -> list[Proposal]:
        model = view.train(self.family, view.round * 101 + self.seed)
        return [Proposal(self.keys[0], encode_model(model))]

    def to_open(self, view: RoundView, beacon: Beacon, sealed: list[Sealed]) -> list[Sealed]:
        return sealed


def _decode(view: RoundView) -> Model:
    return decode_model(view.champion, view.genesis.task.spec, view.genesis.model_caps)


def jitter(a: np.ndarray, rel: float, rng: np.random.Generator) -> np.ndarray:
    """``a`` with ~``rel`` multiplicative Gaussian noise; entries whose noise rounds to 0 move by -1, 0 or +1."""
    a64 = a.astype(np.int64)
    noise = np.rint(a64 * rel * rng.standard_normal(a.shape)).astype(np.int64)
    zero = noise == 0
    noise[zero] = rng.integers(-1, 2, size=int(zero.sum()))
    return a64 + noise


def copy_noise(model: Model, rng: np.random.Generator, rel: float) -> Model:
    """Noise on every layer (weights and biases) of a dense model, or on every leaf vote of an ensemble."""
    if isinstance(model, LinearModel):
        return LinearModel(jitter(model.W, rel, rng), jitter(model.b, rel, rng))
    if isinstance(model, MLPModel):
        return MLPModel(tuple((jitter(W, rel, rng), jitter(b, rel, rng)) for W, b in model.layers), model.shifts)
    value = np.maximum(jitter(model.value, rel, rng), 0)
    value[model.feature >= 0] = 0  # internal nodes carry no votes
    return TreesModel(model.roots, model.feature, model.threshold, model.left, model.right, value)


def copy_flip(model: Model, rng: np.random.Generator, k: int = 5) -> Model:
    """k output-weight signs flipped (dense; nonzero weights only) or k split thresholds shifted by ±1 (trees)."""
    if isinstance(model, TreesModel):
        threshold = model.threshold.astype(np.int64).copy()
        internal = np.flatnonzero(model.feature >= 0)
        pick = rng.choice(internal, size=min(k, len(internal)), replace=False)
        threshold[pick] += rng.choice(np.array([-1, 1]), size=len(pick))
        return TreesModel(model.roots, model.feature, threshold, model.left, model.right, model.value)
    W = (model.W if isinstance(model, LinearModel) else model.layers[-1][0]).astype(np.int64).copy()
    flat = W.reshape(-1)
    nonzero = np.flatnonzero(flat)
    pick = rng.choice(nonzero, size=min(k, len(nonzero)), replace=False)
    flat[pick] = -flat[pick]
    if isinstance(model, LinearModel):
        return LinearModel(W, model.b)
    return MLPModel(model.layers[:-1] + ((W, model.layers[-1][1]),), model.shifts)


@dataclass
class CopyNoise(SimMiner):
    rel: float = 0.02
    kind: str = "copy-noise"
    copy: bool = True

    def propose(self, view: RoundView) -> list[Proposal]:
        return [Proposal(self.keys[0], encode_model(copy_noise(_decode(view), view.rng, self.rel)))]


@dataclass
class CopyFlip(SimMiner):
    kind: str = "copy-flip"
    copy: bool = True

    def propose(self, view: RoundView) -> list[Proposal]:
        return [Proposal(self.keys[0], encode_model(copy_flip(_decode(view), view.rng)))]


@dataclass
class SybilCopy(SimMiner):
    """One noised copy per key (noise levels cycle 1 %, 2 %, 5 %, 10 %); opens only its best after the beacon."""
    kind: str = "sybil-copy"
    copy: bool = True

    def propose(self, view: RoundView) -> list[Proposal]:
        champion = _decode(view)
        rels = (0.01, 0.02, 0.05, 0.10)
        return [Proposal(key, encode_model(copy_noise(champion, view.rng, rels[i % len(rels)])))
                for i, key in enumerate(self.keys)]

    def to_open(self, view: RoundView, beacon: Beacon, sealed: list[Sealed]) -> list[Sealed]:
        if not sealed:
            return []
        scores = [score_against(view.genesis, beacon, s.block.model, view.champion) for s in sealed]
        best = max(range(len(sealed)), key=lambda i: (scores[i][0] - scores[i][1], scores[i][0]))
        return [sealed[best]]


@dataclass
class Squatter(SimMiner):
    """Enters with every key (a throwaway model) in rounds up to ``last_round`` and never opens."""
    kind: str = "squatter"
    last_round: int = 1 << 30

    def propose(self, view: RoundView) -> list[Proposal]:
        if view.round > self.last_round:
            return []
        return [Proposal(key, encode_model(copy_noise(_decode(view), view.rng, 0.5))) for key in self.keys]

    def to_open(self, view: RoundView, beacon: Beacon, sealed: list[Sealed]) -> list[Sealed]:
        return []


def _family_of(model: Model) -> str:
    if isinstance(model, LinearModel):
        return "linear"
    if isinstance(model, MLPModel):
        return "mlp"
    return "extra"


@dataclass
class Finetune(SimMiner):
    """The champion's model family re-fitted on public + every revealed shard (its own seed): a legitimate
    improvement attempt, so its wins are reported, not counted against the rule."""
    kind: str = "finetune"

    def propose(self, view: RoundView) -> list[Proposal]:
        family = _family_of(_decode(view))
        if view.round == 1 or family == "extra" and not view.revealed:
            family = "mlp"  # the genesis champion is a depth-2 tree: nothing worth re-fitting yet
        return [Proposal(self.keys[0], encode_model(view.train(family, view.round * 101 + self.seed)))]


@dataclass
class LateTimestamp(SimMiner):
    """An honest model stamped with the largest timestamp the rules accept (the halting attack of issue 9).
    ``all_rows`` fits on every public + revealed row instead of a subsample, so it tends to win."""
    kind: str = "late-timestamp"
    all_rows: bool = False

    def propose(self, view: RoundView) -> list[Proposal]:
        model = view.train(self.family, view.round * 101 + self.seed, self.all_rows)
        return [Proposal(self.keys[0], encode_model(model), timestamp=view.max_timestamp)]


ATTACKERS = ("copy-noise", "copy-flip", "sybil-copy", "squatter", "finetune", "late-timestamp")
