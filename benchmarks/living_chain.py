"""The living chain (issue 11): rounds a chain keeps making after its genesis task has spent its shards.

Scenario (real node processes on loopback: a keyholder node and a peer; a scripted miner on the peer that
waits through the closed chain): the genesis task's G rounds run out and the chain closes; a sponsor creates a
second task (node.tools.task_setup, N rounds) and the keyholder co-signs and posts it with its shard keys to
its node (the path of ``popchain task create`` + ``task announce``); rounds resume on the new task.

- chain_rounds_beyond_genesis: rounds completed (beacon published) after the genesis task ran out, i.e. on
  tasks announced later; baseline: rounds completed before the boundary (G, the genesis task's lifetime).
  Goal > 0 (without a task announcement the figure is 0 by construction: the chain stays closed).
"""
from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

from benchmarks._nodeproc import NodeProc, stop_all
from node.tools.client import NodeClient
from node.tools.testing import ScriptedMiner, TestChain, make_test_chain, wait_for


async def _closed(client: NodeClient) -> bool:
    return (await client.status())["round_phase"] == "closed"


async def announce_task(client: NodeClient, chain: TestChain, out: Path, *, rounds: int, shard_size: int,
                        bounty: int = 0) -> dict:
    """Create a synthetic task sponsored by the chain's first user and post it, co-signed by the chain's
    keyholder file and with its shard keys, to the keyholder node behind ``client``."""
    from consensus.protocol.genesis import load_genesis
    from consensus.protocol.tasks import decode_task_message
    from node.tools.task_setup import create_task_files, governance_sign, secret_keys_of
    genesis = load_genesis(chain.genesis_path.read_bytes())
    summary = await asyncio.to_thread(create_task_files, out, genesis, chain.users[0], task="synthetic",
                                      rounds=rounds, shard_size=shard_size, detect=0.05, bounty=bounty)
    msg = decode_task_message(Path(summary["announcement"]).read_bytes())
    signed = governance_sign(msg, chain.keyholder_path.read_bytes(), genesis)
    keys = secret_keys_of(Path(summary["secret"]).read_bytes())
    return await client.post_task(signed.encode(), secret=keys)


async def scenario(work: Path, *, genesis_rounds: int, task_rounds: int, timeout_s: float) -> tuple[int, int]:
    """(rounds completed before the boundary, rounds completed after it)."""
    chain = make_test_chain(work / "chain", rounds=genesis_rounds, n_miners=1, n_users=1, entry_window_s=1,
                            opening_window_s=1)
    kh = NodeProc(work / "kh", genesis=chain.genesis_path, keyholder=chain.keyholder_path).start()
    nodes = [kh]
    try:
        await kh.ready()
        peer = NodeProc(work / "peer", genesis=chain.genesis_path, peers=[kh.p2p_addr]).start()
        nodes.append(peer)
        await peer.ready()
        async with NodeClient(kh.api_url) as kc, NodeClient(peer.api_url) as pc:
            miner = ScriptedMiner(pc, chain.miners[0], chain.genesis, family="linear", stop_when_closed=False)
            mining = asyncio.create_task(miner.run())
            try:
                await wait_for(lambda: _closed(kc), timeout=timeout_s, interval=0.2, what="the genesis task to end")
                before = (await kc.tasks())["tasks"][0]["shards_revealed"]
                await announce_task(kc, chain, work / "task1", rounds=task_rounds, shard_size=100)

                async def task1_done():
                    tasks = (await kc.tasks())["tasks"]
                    return len(tasks) > 1 and tasks[1]["shards_left"] == 0 and await _closed(kc)
                with contextlib.suppress(TimeoutError):
                    await wait_for(task1_done, timeout=timeout_s, interval=0.2, what="the second task to end")
                tasks = (await kc.tasks())["tasks"]
            finally:
                mining.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await mining
        after = sum(t["shards_revealed"] for t in tasks[1:])
        return before, after
    finally:
        stop_all(nodes)


def run(quick: bool = False) -> list[dict]:
    genesis_rounds, task_rounds = (2, 2) if quick else (3, 8)
    with tempfile.TemporaryDirectory(prefix="popchain-bench-living-") as tmp:
        before, after = asyncio.run(scenario(Path(tmp), genesis_rounds=genesis_rounds, task_rounds=task_rounds,
                                             timeout_s=120 if quick else 300))
    return [{"name": "chain_rounds_beyond_genesis", "value": after, "unit": "rounds", "baseline": before,
             "ratio": after / before if before else None,
             "goal": f"> 0 (a {task_rounds}-round task announced once the {genesis_rounds}-round genesis task ran "
                     "out; baseline: rounds before the boundary)"}]
