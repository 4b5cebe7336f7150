"""A pruned node (issue 23 item 2): ``node run --prune N`` keeps the last N blocks' models, every task's champion,
the headers, transfers and consensus records; serves what it keeps (a pruned block is not served whole); fetches
an old model from an archive peer on demand and checks it against the header's hash — a hostile peer on the
wire (benchmarks/model_forger.py, a real process) answering with forged model bytes gets nothing stored and is
cut; ``node verify`` and ``node reindex`` work on its datadir. Real LevelDB, real node processes on loopback."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks._nodeproc import NodeProc, stop_all
from chain.block import model_hash
from chain.store import ChainStore
from chain.store_prune import prune_models, restore_model
from node.tools.client import ApiCallError, NodeClient
from node.tools.testing import build_chain_offline, make_test_chain, wait_for

pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parents[1]
BLOCKS = 14
WINDOW = 10
FORGER_IP = "127.0.0.2"     # not the archive's address: discouraging the forger must not cut the archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A stopped archive datadir with BLOCKS crowned blocks, and its chain."""
    base = tmp_path_factory.mktemp("prune")
    chain = make_test_chain(base / "chain", rounds=40, entry_window_s=1, opening_window_s=1)
    build_chain_offline(base / "A", chain, BLOCKS)
    return base, chain


def popchain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=False)


def test_store_prune_keeps_the_ledger_and_restores_only_matching_bytes(archive, tmp_path):
    base, _ = archive
    shutil.copytree(base / "A" / "chain", tmp_path / "chain")
    store = ChainStore.open(tmp_path / "chain")
    try:
        kept = store.get_header(2)
        assert kept is not None
        step = prune_models(store, 6, keep={kept.model_hash})
        assert step.through == 6 and step.models == 5 and step.freed > 0
        h3 = store.get_header(3)
        assert h3 is not None and store.get_model(h3.model_hash) is None
        block3 = store.get_block(3)
        assert block3 is not None and block3.model == b"" and block3.txs is not None
        assert store.block_encoding(h3.hash) is None           # not served whole: peers ask an archive node
        assert store.get_model(kept.model_hash) is not None     # what the caller keeps stays
        assert store.block_encoding(store.block_hash_at(7)) is not None
        assert store.verify().ok and store.reindex().ok        # the ledger replays without models
        original = ChainStore.open(base / "A" / "chain")
        try:
            real = original.get_model(h3.model_hash)
        finally:
            original.close()
        assert real is not None
        assert not restore_model(store, h3.model_hash, real + b"\x00")     # a peer's wrong bytes: refused
        assert store.get_model(h3.model_hash) is None
        assert restore_model(store, h3.model_hash, real)
        assert store.block_encoding(h3.hash) is not None
    finally:
        store.close()


def _spawn_forger(genesis: Path, archive_api: str, port_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.model_forger", "--genesis", str(genesis),
                             "--copy-from-api", archive_api, "--listen", FORGER_IP, "--port-file", str(port_file)],
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_pruned_node_syncs_prunes_fetches_on_demand_and_verifies(archive, tmp_path):
    base, chain = archive
    shutil.copytree(base / "A", tmp_path / "A")
    nodes: list[NodeProc] = []

    forger: list[subprocess.Popen[str]] = []

    async def scenario() -> tuple[int, str]:
        a = NodeProc(tmp_path / "A", genesis=None).start()
        nodes.append(a)
        await a.ready()
        # a peer on the wire that answers a pruned node's block requests with forged model bytes (real header)
        port_file = tmp_path / "forger.port"
        forger.append(_spawn_forger(chain.genesis_path, a.api_url, port_file))

        async def listening() -> bool:
            return port_file.exists() and port_file.read_text().strip() != ""
        await wait_for(listening, timeout=60, what="forger listening")
        p = NodeProc(tmp_path / "P", genesis=chain.genesis_path,
                     peers=[a.p2p_addr, (FORGER_IP, int(port_file.read_text()))],
                     extra_args=["--prune", str(WINDOW)]).start()
        nodes.append(p)
        await p.ready()
        ca, cp = NodeClient(a.api_url), NodeClient(p.api_url)
        try:
            async def synced() -> bool:
                s = await cp.status()
                return s["height"] == BLOCKS and (s["prune"] or {}).get("pruned_through", 0) >= 1
            await wait_for(synced, timeout=180, what="pruned node synced and pruned")
            status = await cp.status()
            assert status["prune"]["window"] == WINDOW
            old = await cp.get("/api/blocks/1")
            assert old["model_pruned"] and old["model_size"] == 0
            recent = await cp.get(f"/api/blocks/{BLOCKS}")
            assert not recent["model_pruned"]
            mh = old["model_hash"]
            fetched = await cp.get(f"/api/models/{mh}", format="hex")     # fetched from the archive peer A
            assert model_hash(bytes.fromhex(fetched["model"])).hex() == mh
            from_a = await ca.get(f"/api/models/{mh}", format="hex")
            assert fetched["model"] == from_a["model"]
            # with the archive gone, only the forger can answer: nothing of its bytes is stored or served
            second = (await cp.get("/api/blocks/2"))["model_hash"]
            a.stop()
            with pytest.raises(ApiCallError) as refused:
                await cp.get(f"/api/models/{second}", format="hex")
            assert refused.value.status == 404
            return status["prune"]["pruned_through"], mh
        finally:
            await ca.close()
            await cp.close()

    try:
        through, fetched_hash = asyncio.run(scenario())
    finally:
        stop_all(nodes)
        for proc in forger:
            proc.terminate()
    counts = json.loads(forger[0].communicate(timeout=30)[0].strip().splitlines()[-1])
    assert counts["forged_sent"] >= 1, counts          # it did answer with forged models ...
    assert counts["closed_by_node"] >= 1, counts       # ... and the pruned node cut it for that
    assert through >= 1
    store = ChainStore.open(tmp_path / "P" / "chain")
    try:
        missing = [h for h in range(1, through + 1)
                   if store.get_model(store.get_header(h).model_hash) is None]   # type: ignore[union-attr]
        assert missing, "nothing was pruned"
        assert bytes.fromhex(fetched_hash) not in {store.get_header(h).model_hash for h in missing}  # type: ignore[union-attr]
        h2 = store.get_header(2)
        assert h2 is not None and store.get_model(h2.model_hash) is None    # the forged bytes were not kept
    finally:
        store.close()
    for verb in ("verify", "reindex"):
        proc = popchain("node", verb, "--datadir", str(tmp_path / "P"))
        assert proc.returncode == 0, (verb, proc.stdout, proc.stderr)
