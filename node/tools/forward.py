"""The holdout a generated task's champion is judged on (issue 21 items 2–3), for ``popchain task show`` and
``popchain model predict``.

A *stationary* generated task (one concept: every revealed shard is drawn from the same world) is judged on its
newest revealed shard, as before. A *drifting* one is judged on its **forward holdout**: the first shard of the
task revealed AFTER the round that crowned the champion — rows the champion never saw, drawn after it was
crowned, from the concept it faces now. The task owner's ``holdout.csv`` is drawn from the task's start, so on a
drifting task it says nothing about the champion (issue 21 measured 0.421 there against 0.800 forward); and the
newest revealed shard may be the very shard the champion was crowned on (selected on it: not a fair score).
Either judged shard is also where the generator's Bayes-optimal accuracy is computed (the physical limit; the
gap is what is left to gain).

Whether a task drifts is read from the revealed shards themselves (``ml.shards.generated_world_digest``: a
revealed shard's world is public), so it needs no field in the task.

What it does NOT do: rows (data) tasks, which do not drift and are judged on the owner's ``holdout.csv``; or
anything a node validates (this is a client-side report).
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml.model import Model
    from ml.shards import PublicTask

__all__ = ["Revealed", "holdout_line", "judge", "judged_holdout"]


async def judged_holdout(client: Any, task_id: int, t: dict[str, Any], *,
                         drifting_only: bool = False) -> dict[str, Any] | None:
    """The champion of task ``task_id`` (``t``: its /api/tasks/N answer) scored on the holdout it is judged on
    (``judge``); None when the task is not generated, has no champion or nothing is revealed yet.
    ``drifting_only``: score nothing on a stationary task (``{"drifting": False, ...}`` without accuracies)."""
    from consensus.protocol.genesis import load_genesis
    from ml.model import decode_model
    from ml.shards import PublicTask
    revealed, champ = t.get("revealed") or [], t.get("champion") or {}
    if not revealed or not champ.get("model_hash"):
        return None
    info = await client.task_info(task_id, package=True)
    public = PublicTask.decode(bytes.fromhex(info["package"]))
    if not public.generated:
        return None
    genesis = load_genesis(await client.genesis())
    model = decode_model(await client.model(champ["model_hash"]), public.spec, genesis.model_caps)
    shards = [Revealed(x["round"], x["shard_index"], bytes.fromhex(x["shard_key"])) for x in revealed]
    first = t.get("revealed_first")
    start = Revealed(first["round"], first["shard_index"], bytes.fromhex(first["shard_key"])) if first else None
    return await asyncio.to_thread(judge, public, shards, int(champ.get("round") or 0), model, start,
                                   drifting_only=drifting_only)


@dataclass(frozen=True)
class Revealed:
    round: int              # the round whose beacon revealed it
    shard_index: int
    shard_key: bytes


def judge(public: PublicTask, revealed: Sequence[Revealed], crowned_round: int, model: Model,
          first: Revealed | None = None, *, drifting_only: bool = False) -> dict[str, Any] | None:
    """The champion ``model`` (crowned in ``crowned_round``; 0: the task's initial champion) of a generated task
    scored on the holdout it is judged on, of its ``revealed`` shards (round order; ``first``: the task's first
    revealed shard when ``revealed`` is a later page). Keys: ``holdout`` ("newest-shard" for a stationary task,
    "forward" for a drifting one), ``drifting``, ``shard_index``, ``round`` (the round that revealed it),
    ``crowned_round``, ``bayes_accuracy``, ``champion_accuracy``, ``gap_pp``; a drifting task whose champion no
    shard followed yet gives ``pending`` True and no accuracies (so does a stationary task with
    ``drifting_only``). None: not generated, or nothing revealed."""
    from ml.bayes import shard_bayes_accuracy
    from ml.score import score
    from ml.shards import generated_world_digest, open_shard
    if not public.generated or not revealed:
        return None
    first = first or revealed[0]
    last = revealed[-1]
    drifting = (generated_world_digest(public, first.shard_index, first.shard_key)
                != generated_world_digest(public, last.shard_index, last.shard_key))
    out: dict[str, Any] = {"holdout": "forward" if drifting else "newest-shard", "drifting": drifting,
                           "crowned_round": crowned_round}
    if drifting:
        after = [x for x in revealed if x.round > crowned_round]
        if not after:
            return {**out, "pending": True}
        judged = after[0]
    elif drifting_only:
        return out
    else:
        judged = last
    shard = open_shard(public, judged.shard_index, judged.shard_key)
    limit = shard_bayes_accuracy(public, judged.shard_index, judged.shard_key, rows=100_000)
    acc = score(model, shard.X, shard.y).accuracy
    return {**out, "shard_index": judged.shard_index, "round": judged.round, "bayes_accuracy": round(limit, 4),
            "champion_accuracy": round(acc, 4), "gap_pp": round((limit - acc) * 100, 2)}


def holdout_line(out: dict[str, Any], keep: str, whose: str) -> str:
    """The summary line about holdout.csv: what it judges — nothing, on a drifting task (issue 21: its rows are
    the task's start; the champion is judged on its forward holdout, node.tools.forward)."""
    if out.get("judged_on") == "forward":
        return (f"held-out test  {out['holdout']}  -> rows from the task's START only: the task drifts, so "
                f"{whose} is judged on its FORWARD holdout (the first shard revealed after its crowning: rows it "
                "never saw, from the concept it faces now; 'popchain task show N' scores it)")
    return f"held-out test  {out['holdout']}  -> {keep}"
