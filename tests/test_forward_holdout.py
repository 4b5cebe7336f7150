"""Issue 21 item 3: the holdout a generated task's champion is judged on (node.tools.forward, `task show`).

A drifting task's champion is judged on its FORWARD holdout — the first shard revealed after the round that
crowned it (rows it never saw, drawn after it, from the concept it faces now) — not on the newest revealed
shard (possibly the one it was crowned on) nor on the owner's holdout.csv (the task's start). A stationary task
keeps its judge (the newest revealed shard). `genesis create --drift-milli` says that holdout.csv judges nothing.

Old code: `task show` scored every generated task's champion on the newest revealed shard, and genesis create
called holdout.csv "untouched test split to judge the champion" on a drifting task too.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest

from benchmarks._nodeproc import NodeProc, stop_all
from chain.address import address_of
from consensus.protocol.genesis import GenesisParams, load_genesis
from ml.generator import world_from_seed
from ml.score import score
from ml.shards import baseline_model, open_shard, package_generated
from node.tools.client import NodeClient
from node.tools.committee_kit import CommitteeChain, Entrant
from node.tools.forward import Revealed, judge
from node.tools.genesis_setup import GENESIS_FILE, KEYHOLDER_FILE, create_genesis_files
from node.tools.testing import seeded_keypair
from tests.test_cli_e2e import popchain
from tests.test_cli_genesis import ALLOC

ROUNDS = 4


def _rng(label: bytes):
    counter = iter(range(10**6))
    return lambda n: hashlib.shake_256(label + next(counter).to_bytes(4, "big")).digest(n)


@pytest.fixture(scope="module")
def tasks():
    world = world_from_seed(b"forward-holdout-world-seed-01234", n_features=8, n_informative=4, n_classes=2)
    out = {}
    for name, drift in (("drifting", 500), ("stationary", 0)):
        public, secret = package_generated(world, ROUNDS, 300, n_train=400, rng=_rng(name.encode()),
                                           drift_milli=drift)
        # shard i revealed in round 2i (a void round in between, as a multi-task chain interleaves)
        out[name] = (public, [Revealed(2 * i, i, secret.key(i)) for i in range(1, ROUNDS + 1)])
    return out


def test_a_drifting_task_is_judged_on_the_shard_after_its_champions_crowning(tasks):
    public, revealed = tasks["drifting"]
    model = baseline_model(public)
    j = judge(public, revealed, 4, model)        # crowned in round 4, on shard 2: judged on shard 3 (round 6)
    assert j is not None and j["drifting"] and j["holdout"] == "forward"
    assert (j["shard_index"], j["round"], j["crowned_round"]) == (3, 6, 4)
    shard = open_shard(public, 3, revealed[2].shard_key)
    assert j["champion_accuracy"] == round(score(model, shard.X, shard.y).accuracy, 4)
    assert j["gap_pp"] == round((j["bayes_accuracy"] - j["champion_accuracy"]) * 100, 2)
    # the initial champion (round 0) is judged on the task's first shard
    first = judge(public, revealed, 0, model)
    assert first is not None and first["shard_index"] == 1
    # a champion crowned on the newest shard has no forward holdout yet: it says so, it scores nothing
    assert judge(public, revealed, 8, model) == {"holdout": "forward", "drifting": True, "crowned_round": 8,
                                                 "pending": True}


def test_a_stationary_task_keeps_the_newest_revealed_shard(tasks):
    public, revealed = tasks["stationary"]
    j = judge(public, revealed, 4, baseline_model(public))
    assert j is not None and not j["drifting"] and j["holdout"] == "newest-shard" and j["shard_index"] == ROUNDS
    assert judge(public, [], 0, baseline_model(public)) is None


def test_genesis_create_of_a_drifting_task_says_holdout_csv_judges_nothing(tmp_path: Path):
    proc = popchain("genesis", "create", "--out", "g", "--alloc", ALLOC, "--detect", "0.2", "--rounds", "3",
                    "--drift-milli", "500", cwd=tmp_path)
    assert "FORWARD holdout" in proc.stdout and "task's START" in proc.stdout, proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_model_predict_on_a_drifting_chain_names_the_forward_holdout(tmp_path: Path):
    """A real node process on a drifting genesis task, two rounds revealed (an entrant enters, nobody opens):
    `model predict --input holdout.csv` still predicts, and says that the file's rows judge nothing and what the
    champion (the initial one: round 0) scores on its forward holdout — shard 1, the first revealed after it."""
    entrant = seeded_keypair("forward-holdout-entrant")
    create_genesis_files(tmp_path / "chain", rounds=3, detect=0.2, drift_milli=500,
                         allocations=[(address_of(entrant.public), 10**12)], timestamp=int(time.time()) - 10,
                         params=GenesisParams(entry_window_s=1, opening_window_s=1))
    genesis_path = tmp_path / "chain" / GENESIS_FILE
    chain = CommitteeChain(genesis_path, load_genesis(genesis_path.read_bytes()), (), (), (entrant,))
    node = NodeProc(tmp_path / "node", genesis=genesis_path, keyholder=tmp_path / "chain" / KEYHOLDER_FILE)
    try:
        async def two_revealed() -> None:
            await node.start().ready()
            async with NodeClient(node.api_url) as client:
                async def done(status: dict) -> bool:
                    return bool(status["round"] > 2 or (status["round"] == 2 and status["round_phase"] != "open"))
                await Entrant(client, chain).until(done, timeout=120)
        asyncio.run(two_revealed())
        proc = popchain("model", "predict", "--input", str(tmp_path / "chain" / "holdout.csv"), "--node",
                        node.api_url, cwd=tmp_path)
    finally:
        stop_all([node])
    assert "accuracy on the labelled rows" in proc.stdout
    assert "the task drifts" in proc.stdout and "forward holdout (shard 1, revealed in round 1" in proc.stdout, \
        proc.stdout
