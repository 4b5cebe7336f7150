"""Shard blobs on the wire (issue 22 item 1, PROTOCOL §4.6), real node processes only:

1. A fresh node given only the genesis file and the owner's node as peer fetches every shard blob, checked,
   before any round reveals its key; a miner on that fresh node then gets blocks crowned, which the fresh node
   validated by opening the round's shard from the fetched blob; with ``--blob-keep unrevealed`` it then deletes
   round 1's blob (final) and keeps the unrevealed ones; a late joiner syncs the crowned rounds (fetching their
   blobs from the archive node); a sponsor's rows task's blobs reach the fresh node over the wire.
2. An attacker process on the wire (benchmarks/blob_liar.py) serves the real blob with one byte flipped: the
   victim refuses it (nothing stored), scores the attacker (a ban) and fetches the right blob from an honest
   peer that connects later.

On the old code neither exists: genesis carried the shards inline and the protocol had no GETBLOB/BLOB.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from benchmarks._nodeproc import ROOT, NodeProc, stop_all
from ml.blobs import BlobDir, BlobRef
from node.tools.client import ApiCallError, NodeClient
from node.tools.testing import ScriptedMiner, make_test_chain, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

LIAR_IP = "127.0.0.78"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_test_chain(tmp_path_factory.mktemp("chain"), rounds=30, shard_size=100, blobs=True,
                           entry_window_s=1, opening_window_s=2)


@pytest.fixture(scope="module")
def owner_blobs(chain) -> Path:
    return chain.genesis_path.parent / "blobs"


def _all_blobs(datadir: Path, chain) -> bool:
    store = BlobDir(datadir / "blobs", writable=False)
    return all(store.has(r) for r in chain.genesis.task.blob_refs())


def _same_bytes(datadir: Path, owner: Path, chain) -> bool:
    mine, theirs = BlobDir(datadir / "blobs", writable=False), BlobDir(owner, writable=False)
    return all(mine.get(r) is not None and mine.get(r) == theirs.get(r) for r in chain.genesis.task.blob_refs())


def test_fresh_node_fetches_the_blobs_from_a_peer_and_validates_rounds_with_them(chain, owner_blobs, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setenv("POPCHAIN_BLOB_CACHE", str(tmp_path / "miner-cache"))   # the miner's own cache

    async def scenario() -> None:
        owner = NodeProc(tmp_path / "owner", genesis=chain.genesis_path, keyholder=chain.keyholder_path,
                         extra_args=["--blob-dir", str(owner_blobs)]).start()
        nodes = [owner]
        try:
            await owner.ready()
            # the fresh node prunes: a shard's blob goes once its round is final there
            fresh = NodeProc(tmp_path / "fresh", genesis=chain.genesis_path, peers=[owner.p2p_addr],
                             extra_args=["--blob-keep", "unrevealed"]).start()
            nodes.append(fresh)
            await fresh.ready()
            await wait_for(lambda: asyncio.sleep(0, _all_blobs(tmp_path / "fresh", chain)), timeout=60,
                           what="every shard blob fetched by the fresh node")
            assert _same_bytes(tmp_path / "fresh", owner_blobs, chain)
            async with NodeClient(fresh.api_url) as api, NodeClient(owner.api_url) as api_owner:
                st = await api.status()
                assert st["height"] == 0      # fetched ahead: no round has revealed a key yet
                metrics = await (await api._session.get(fresh.api_url + "/metrics")).text()
                assert "popchain_blobs_fetched_total" in metrics
                miner = ScriptedMiner(api, chain.miners[0], chain.genesis, family="linear", seed=3)
                task = asyncio.create_task(miner.run())
                try:
                    async def crowned() -> bool:
                        a, b = await api.status(), await api_owner.status()
                        return a["height"] >= 2 and a["tip"] == b["tip"]
                    await wait_for(crowned, timeout=150, what="height 2 on the fresh node and the owner's")
                finally:
                    task.cancel()
                log = (tmp_path / "fresh" / "node.log").read_text(errors="replace")
                assert "bad-shard" not in log
                shard1, last = (BlobRef.parse(bytes(c)) for c in (chain.genesis.task.ciphertexts[0],
                                                                  chain.genesis.task.ciphertexts[-1]))
                await wait_for(lambda: asyncio.sleep(0, not (tmp_path / "fresh" / "blobs" / shard1.hex_id).exists()),
                               timeout=60, what="round 1's shard blob pruned once the round is final")
                assert (tmp_path / "fresh" / "blobs" / last.hex_id).exists()            # unrevealed: kept
                assert (tmp_path / "owner" / "blobs" / shard1.hex_id).exists()          # the archive keeps all
                # a late joiner syncs the chain: it needs the revealed rounds' blobs to judge their blocks
                late = NodeProc(tmp_path / "late", genesis=chain.genesis_path, peers=[owner.p2p_addr]).start()
                nodes.append(late)
                await late.ready()
                height = (await api_owner.status())["height"]
                async with NodeClient(late.api_url) as api_late:
                    async def synced() -> bool:
                        return (await api_late.status())["height"] >= height
                    await wait_for(synced, timeout=90, what="the late joiner synced, its shards fetched")
                assert BlobDir(tmp_path / "late" / "blobs").get(shard1) is not None
                # a sponsor's rows task: its announcement carries blob references, 'task announce' hands the
                # blobs to the owner's node, and the fresh node fetches them over the wire as soon as the
                # announcement reaches it -- long before the task's rounds
                refs = await _announce_rows_task(chain, api_owner, tmp_path / "task")
                await wait_for(lambda: asyncio.sleep(0, all(BlobDir(tmp_path / "fresh" / "blobs").get(r) is not None
                                                            for r in refs)),
                               timeout=60, what="the announcement's blobs fetched by the fresh node")
                with pytest.raises(ApiCallError) as err:           # bytes no task references are not kept
                    await api_owner.post_blob(os.urandom(5000))
                assert err.value.code == "unknown-blob"
        finally:
            await asyncio.to_thread(stop_all, nodes)

    asyncio.run(scenario())


async def _announce_rows_task(chain, api: NodeClient, out: Path) -> tuple[BlobRef, ...]:
    from consensus.protocol.tasks import decode_task_message
    from node.tools.cli_task import _upload_blobs
    from node.tools.task_setup import create_task_files, governance_sign, secret_keys_of
    made = create_task_files(out, chain.genesis, chain.users[0], task="digits", detect=0.05)
    assert made["blobs"] >= 1 and made["message_bytes"] < 1 << 20
    msg = decode_task_message(Path(made["announcement"]).read_bytes())
    signed = governance_sign(msg, chain.keyholder_path.read_bytes(), chain.genesis)
    await api.post_task(signed.encode(), secret=secret_keys_of(Path(made["secret"]).read_bytes()))
    assert await _upload_blobs(api, signed, out) == made["blobs"]
    from ml.shards import PublicTask
    return PublicTask.decode(msg.package).blob_refs()


async def _spawn_liar(chain, owner_blobs: Path, work: Path, *mode: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        "nice", "-n", "19", sys.executable, "-m", "benchmarks.blob_liar", "--genesis", str(chain.genesis_path),
        "--blob-dir", str(owner_blobs), "--listen", LIAR_IP, "--port-file", str(work / "liar.port"),
        "--stats-file", str(work / "liar.json"), *mode, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)


def test_corrupt_blob_from_an_attacker_is_refused_scored_and_fetched_from_an_honest_peer(chain, owner_blobs,
                                                                                          tmp_path):
    def liar_stats() -> dict:
        try:
            return dict(json.loads((tmp_path / "liar.json").read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    async def scenario() -> None:
        liar = await _spawn_liar(chain, owner_blobs, tmp_path)
        nodes: list[NodeProc] = []
        try:
            await wait_for(lambda: asyncio.sleep(0, (tmp_path / "liar.port").exists()
                                                 and (tmp_path / "liar.port").read_text().strip() != ""),
                           timeout=60, what="the attacker listening")
            liar_addr = (LIAR_IP, int((tmp_path / "liar.port").read_text()))
            victim = NodeProc(tmp_path / "victim", genesis=chain.genesis_path, peers=[liar_addr],
                              log_level="INFO").start()
            nodes.append(victim)
            await victim.ready()
            await wait_for(lambda: asyncio.sleep(0, liar_stats().get("closed_by_node", 0) >= 1), timeout=60,
                           what="the victim cutting the attacker off")
            stats = liar_stats()
            assert stats["corrupt_chunks_sent"] >= 1
            # nothing of what it sent was kept (no blob, no half-written part file left)
            kept = list((tmp_path / "victim" / "blobs").glob("*")) if (tmp_path / "victim" / "blobs").exists() else []
            assert kept == []
            log = (tmp_path / "victim" / "node.log").read_text(errors="replace")
            assert "invalid-object" in log and "does not match its committed hash" in log
            assert "discouraged" in log and LIAR_IP in log
            # an honest peer (with the owner's blobs) connects to the victim: the right blobs arrive
            honest = NodeProc(tmp_path / "honest", genesis=chain.genesis_path, peers=[victim.p2p_addr],
                              extra_args=["--blob-dir", str(owner_blobs)]).start()
            nodes.append(honest)
            await honest.ready()
            await wait_for(lambda: asyncio.sleep(0, _all_blobs(tmp_path / "victim", chain)), timeout=90,
                           what="every blob fetched from the honest peer")
            assert _same_bytes(tmp_path / "victim", owner_blobs, chain)
            assert liar_stats().get("connections", 0) == 1     # banned: never dialled again
        finally:
            await asyncio.to_thread(stop_all, nodes)
            if liar.returncode is None:
                liar.terminate()
                await liar.communicate()

    asyncio.run(scenario())


def test_unsolicited_blob_frames_are_dropped_and_their_sender_cut_off(chain, owner_blobs, tmp_path):
    """An attacker pushing 200 x 256 KiB BLOB frames nobody asked for (50 MB): none is buffered or stored, each
    scores it (unsolicited, +10), and it is cut off and discouraged after about ten; the node stays up."""
    def liar_stats() -> dict:
        try:
            return dict(json.loads((tmp_path / "liar.json").read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    async def scenario() -> None:
        liar = await _spawn_liar(chain, owner_blobs, tmp_path, "--mode", "flood", "--frames", "200")
        nodes: list[NodeProc] = []
        try:
            await wait_for(lambda: asyncio.sleep(0, (tmp_path / "liar.port").exists()
                                                 and (tmp_path / "liar.port").read_text().strip() != ""),
                           timeout=60, what="the attacker listening")
            victim = NodeProc(tmp_path / "victim", genesis=chain.genesis_path, log_level="INFO",
                              peers=[(LIAR_IP, int((tmp_path / "liar.port").read_text()))]).start()
            nodes.append(victim)
            await victim.ready()
            await wait_for(lambda: asyncio.sleep(0, liar_stats().get("closed_by_node", 0) >= 1), timeout=60,
                           what="the victim cutting the flooder off")
            log = (tmp_path / "victim" / "node.log").read_text(errors="replace")
            assert "unsolicited" in log and "discouraged" in log
            assert victim.alive()
            kept = list((tmp_path / "victim" / "blobs").glob("*")) if (tmp_path / "victim" / "blobs").exists() else []
            assert [p for p in kept if not p.name.endswith(".part")] == []
            async with NodeClient(victim.api_url) as api:
                assert (await api.status())["height"] == 0                   # still answering
        finally:
            await asyncio.to_thread(stop_all, nodes)
            if liar.returncode is None:
                liar.terminate()
                await liar.communicate()

    asyncio.run(scenario())


def test_a_peer_asking_for_blob_chunks_faster_than_they_are_answered_is_cut_off(chain, owner_blobs, tmp_path):
    """Serving is bounded per peer (4 GETBLOBs being answered) and node-wide (8 reads): an attacker firing 400
    GETBLOBs for a real blob is dropped and scored beyond that (flood) and cut off; the node stays up."""
    def liar_stats() -> dict:
        try:
            return dict(json.loads((tmp_path / "liar.json").read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    async def scenario() -> None:
        liar = await _spawn_liar(chain, owner_blobs, tmp_path, "--mode", "getflood", "--frames", "400")
        nodes: list[NodeProc] = []
        try:
            await wait_for(lambda: asyncio.sleep(0, (tmp_path / "liar.port").exists()
                                                 and (tmp_path / "liar.port").read_text().strip() != ""),
                           timeout=60, what="the attacker listening")
            server = NodeProc(tmp_path / "server", genesis=chain.genesis_path, log_level="INFO",
                              peers=[(LIAR_IP, int((tmp_path / "liar.port").read_text()))],
                              extra_args=["--blob-dir", str(owner_blobs)]).start()
            nodes.append(server)
            await server.ready()
            await wait_for(lambda: asyncio.sleep(0, liar_stats().get("closed_by_node", 0) >= 1), timeout=60,
                           what="the server cutting the requester off")
            log = (tmp_path / "server" / "node.log").read_text(errors="replace")
            assert "blob requests waiting for their answers" in log and "discouraged" in log
            assert server.alive()
            async with NodeClient(server.api_url) as api:
                assert (await api.status())["height"] == 0                   # still answering
        finally:
            await asyncio.to_thread(stop_all, nodes)
            if liar.returncode is None:
                liar.terminate()
                await liar.communicate()

    asyncio.run(scenario())
