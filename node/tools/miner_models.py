"""How a miner builds the candidate it enters, and whether it enters it (issue 22 item 4, issue 20 item 15).

Sources of candidates (all run in the miner's own process, on ``node.tools.miner_data.TrainingSet`` rows):
  * ``Families`` — built-in scikit-learn families (ml.training). ``auto`` holds a tournament: every family in
    AUTO_FAMILIES (gradient-boosted trees included) is fitted on the training rows and scored on the held-back
    check rows (the newest revealed shard's second half), and the best one wins; the tournament is re-run every
    TOURNAMENT_EVERY data changes, in between only the winner is refitted. One named family skips the tournament.
  * ``UserTrainer`` — ``--trainer module:function``: the user's function receives the training rows
    (``fn(X, y, spec)``: X float64 (n, d) of the task's integer features, y int64 class indexes, spec the
    ml.task.TaskSpec — ``spec.encoding`` names the columns) and returns a fitted scikit-learn estimator,
    exported with ``ml.export.from_sklearn``. User code runs here, in the miner, never inside a node.
  * ``ModelFile`` — ``--model-file m.popmodel``: a ready model for a task with the same spec.
Every source returns a ``Candidate``: the model to enter — refitted on the training AND check rows — and the
model the check scores, fitted without the check rows, so the check is an honest estimate (the entered model
saw more data, so it is expected to do at least as well).

``expects_to_pass`` is the entry decision: the check's disagreement rate and win share, scaled to the shard the
round will use, must give the exact crowning test (consensus.protocol.stats.power) at least even odds. What it does NOT do:
network I/O (node.tools.miner) or consensus checks (the node judges every block).
"""
from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from chain.errors import PopError
from consensus.protocol import stats
from ml.errors import MLError
from ml.model import ModelCaps, decode_model, encode_model
from ml.score import paired, score
from ml.task import Dataset, TaskSpec
from node.tools.miner_data import TrainingSet
from node.tools.mining import AUTO_FAMILIES, FAMILY_CHOICES

TOURNAMENT_EVERY = 4            # data changes between two full tournaments (the winner is refitted in between)
PASS_ODDS = 0.5                 # enter when the check gives the crowning test at least these odds


class SourceError(PopError):
    """A candidate source cannot be used (a trainer that does not import, a model file for another task)."""


@dataclass(frozen=True)
class Candidate:
    model: bytes                # what the miner enters: fitted on every row it keeps
    checked: bytes              # what the check scored: fitted without the check rows (or the same model)
    family: str
    check_accuracy: float | None = None   # of ``checked`` on the check rows
    tried: tuple[tuple[str, float], ...] = ()   # the tournament: (family, check accuracy), best first


class CandidateSource(Protocol):
    label: str

    def build(self, data: TrainingSet, spec: TaskSpec, caps: ModelCaps, seed: int) -> Candidate: ...


def _accuracy(model_bytes: bytes, check: Dataset | None, spec: TaskSpec, caps: ModelCaps) -> float | None:
    if check is None or len(check) == 0:
        return None
    return score(decode_model(model_bytes, spec, caps), check.X, check.y).accuracy


def _small(data: TrainingSet) -> str:
    return "default" if len(data.y) >= 2_000 else "small"


@dataclass
class Families:
    """Built-in families: ``auto`` (a tournament) or one named family."""
    family: str = "auto"
    label: str = ""
    _best: dict[int, str] = field(default_factory=dict)      # id(spec) -> winner of the last tournament
    _since: dict[int, int] = field(default_factory=dict)     # id(spec) -> data changes since that tournament

    def __post_init__(self) -> None:
        if self.family not in FAMILY_CHOICES:
            raise SourceError(f"--model {self.family!r}: choose from {', '.join(FAMILY_CHOICES)}")
        self.label = f"model family '{self.family}'"

    def _fit(self, family: str, X: np.ndarray, y: np.ndarray, spec: TaskSpec, caps: ModelCaps, seed: int,
             size: str) -> bytes:
        from ml.training import fit_family
        return encode_model(fit_family(family, X, y, spec, seed=seed, caps=caps, size=size))

    def build(self, data: TrainingSet, spec: TaskSpec, caps: ModelCaps, seed: int) -> Candidate:
        key = id(spec)
        size = _small(data)
        if self.family != "auto":
            families: tuple[str, ...] = (self.family,)
        elif key in self._best and self._since.get(key, 0) < TOURNAMENT_EVERY:
            families = (self._best[key],)
        else:
            families = AUTO_FAMILIES
        tried: list[tuple[str, float, bytes]] = []
        for family in families:
            try:
                checked = self._fit(family, data.X, data.y, spec, caps, seed, size)
            except (MLError, ValueError) as exc:   # over the caps, or a family the data cannot fit
                print(f"miner: {family} skipped: {exc}", file=sys.stderr)
                continue
            tried.append((family, _accuracy(checked, data.check, spec, caps) or 0.0, checked))
        if not tried:
            raise SourceError(f"no family could be fitted on {len(data.y):,} rows")
        tried.sort(key=lambda t: -t[1])
        family, acc, checked = tried[0]
        if len(families) > 1:
            self._best[key], self._since[key] = family, 0
        else:
            self._since[key] = self._since.get(key, 0) + 1
        model = checked
        if data.check is not None:
            X, y = data.all_rows()
            model = self._fit(family, X, y, spec, caps, seed, size)
        return Candidate(model, checked, family, acc if data.check is not None else None,
                         tuple((f, a) for f, a, _ in tried))


def load_trainer(target: str) -> Callable[..., Any]:
    """``module:function`` imported the ordinary way (the current directory first, like ``python -m``)."""
    module_name, sep, func_name = target.partition(":")
    if not sep or not module_name or not func_name:
        raise SourceError(f"--trainer {target!r}: expected module:function (e.g. mytrainer:fit)")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 -- the user's module may raise anything while importing
        raise SourceError(f"--trainer {target}: cannot import {module_name!r} ({type(exc).__name__}: {exc})") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise SourceError(f"--trainer {target}: {module_name!r} has no function {func_name!r}")
    return fn


@dataclass
class UserTrainer:
    """``--trainer module:function``: the user's own scikit-learn fit, run in the miner's process."""
    target: str
    label: str = ""

    def __post_init__(self) -> None:
        self.fn = load_trainer(self.target)
        try:
            params = inspect.signature(self.fn).parameters.values()
            positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            self._takes_spec = len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)
        except (TypeError, ValueError):
            self._takes_spec = True
        self.label = f"trainer {self.target}"

    def _fit(self, X: np.ndarray, y: np.ndarray, spec: TaskSpec, caps: ModelCaps) -> bytes:
        from ml.export import from_sklearn
        Xf = np.asarray(X, dtype=np.float64)
        try:
            est = self.fn(Xf, np.asarray(y, dtype=np.int64), spec) if self._takes_spec else self.fn(Xf, y)
        except Exception as exc:  # noqa: BLE001 -- the user's code may raise anything; the miner carries on
            raise SourceError(f"--trainer {self.target} raised {type(exc).__name__}: {exc}") from None
        try:
            return encode_model(from_sklearn(est, spec, X_ref=X, caps=caps))
        except MLError as exc:
            raise SourceError(f"--trainer {self.target}: its {type(est).__name__} cannot be entered: {exc}") from None

    def build(self, data: TrainingSet, spec: TaskSpec, caps: ModelCaps, seed: int) -> Candidate:
        checked = self._fit(data.X, data.y, spec, caps)
        model = checked
        if data.check is not None:
            model = self._fit(*data.all_rows(), spec, caps)
        return Candidate(model, checked, "trainer", _accuracy(checked, data.check, spec, caps))


@dataclass
class ModelFile:
    """``--model-file m.popmodel``: one fixed model, entered on the task whose spec it was made for."""
    path: str
    label: str = ""

    def __post_init__(self) -> None:
        from ml.predictor import PopPredictor
        try:
            self.predictor = PopPredictor.load(Path(self.path))
        except (OSError, MLError) as exc:
            raise SourceError(f"--model-file {self.path}: not a .popmodel ({exc})") from None
        self.label = f"model file {self.path}"

    def build(self, data: TrainingSet, spec: TaskSpec, caps: ModelCaps, seed: int) -> Candidate:
        if self.predictor.spec != spec:
            raise SourceError(f"--model-file {self.path} was made for task {self.predictor.spec.name!r}, not "
                              f"{spec.name!r} (its spec differs)")
        model = self.predictor.model_bytes
        try:
            decode_model(model, spec, caps)
        except MLError as exc:
            raise SourceError(f"--model-file {self.path}: not valid on this chain ({exc})") from None
        return Candidate(model, model, "file", _accuracy(model, data.check, spec, caps))


def check_against(candidate: Candidate, champion: bytes, check: Dataset, spec: TaskSpec,
                  caps: ModelCaps) -> tuple[int, int]:
    """(b, c) of the checked model against the champion on the check rows."""
    mine = score(decode_model(candidate.checked, spec, caps), check.X, check.y).correct
    theirs = score(decode_model(champion, spec, caps), check.X, check.y).correct
    return paired(mine, theirs)


def expects_to_pass(b: int, c: int, n_check: int, shard_size: int, m: int,
                    alpha: stats.Alpha = stats.DEFAULT_ALPHA) -> tuple[bool, float]:
    """(enter?, estimated crowning probability): the check's rates on a shard of ``shard_size`` rows under the
    exact test with ``m`` listed entries."""
    if n_check <= 0 or b <= c:
        return False, 0.0
    p = stats.power(shard_size, (b + c) / n_check, b / (b + c), max(1, m), alpha)
    return p >= PASS_ODDS, p
