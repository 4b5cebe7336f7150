"""The explorer's accuracy book on a real chain (Engine + Keyholder driving real LevelDB, node.tools.testing):
a champion is scored on its round's shard under the round's task; a model that cannot be scored there (here: a
model of another spec, as a task-1 model would be on a task-0 round) is tried ONCE, logged as one line without a
traceback, and its failure is remembered — a page load never re-scores it (issue 20 item 3). Also the round
index: every final round's outcome, task and block, read incrementally."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np

from chain.block import model_hash
from chain.store import ChainStore
from consensus.engine import Engine
from ml.model import LinearModel, encode_model
from node.explorer.scoring import AccuracyBook
from node.rounds_index import RoundIndex
from node.tools.testing import build_chain_offline, make_test_chain


def test_scoring_failures_are_cached_and_logged_once(tmp_path: Path, caplog) -> None:
    chain = make_test_chain(tmp_path / "chain", rounds=12, n_miners=2)
    build_chain_offline(tmp_path / "node", chain, 2)
    store = ChainStore.open(tmp_path / "node" / "chain")
    try:
        engine = Engine(store, chain.genesis)
        plans: list[Any] = []

        async def run_engine(fn: Any, *args: Any) -> Any:     # the node's worker serialises; here one thread
            plans.append(args)
            return fn(*args)
        book = AccuracyBook(chain.genesis, engine, store, run_engine)
        champ = next(rec for rec in engine.champion_history() if rec.round >= 1)
        spec = chain.genesis.task.spec
        wrong = LinearModel(np.zeros((spec.n_features + 3, len(spec.classes)), dtype=np.int16),
                            np.zeros(len(spec.classes), dtype=np.int32))
        bad = store.put_model(encode_model(wrong))
        assert bad == model_hash(encode_model(wrong))
        with caplog.at_level(logging.WARNING, logger="popchain.explorer"):
            asyncio.run(book.ensure([(champ.round, champ.model_hash), (champ.round, bad)]))
            asyncio.run(book.ensure([(champ.round, champ.model_hash), (champ.round, bad)]))   # a second page load
        ok = book.get(champ.round, champ.model_hash)
        assert ok is not None and ok.n == 100 and 0 < ok.correct <= 100
        assert book.get(champ.round, bad) is None and book.known((champ.round, bad))
        warnings = [r for r in caplog.records if "cannot score" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].exc_info is None and bad.hex()[:16] in warnings[0].getMessage()
        assert len(plans) == 1                                  # the second load planned (and scored) nothing

        index = RoundIndex(engine, store)
        current = engine.current_round()
        rows = [index.row(r) for r in range(1, current)]
        assert all(row.final and row.task_id == 0 and row.shard_index == row.round for row in rows)
        crowned = [row for row in rows if row.status == "crowned"]
        assert [row.height for row in crowned] == list(range(1, len(crowned) + 1))
        assert index.rounds_of(0, None, 100)[-len(rows):] == sorted(range(1, current), reverse=True)[-len(rows):]
        assert index.record_of_model(champ.model_hash) == champ
        assert index.counts(0)["crowned"] == len(crowned)
    finally:
        store.close()
