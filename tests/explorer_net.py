"""A live 2-node network for the explorer tests: two node processes (A runs the keyholder, B peers with A) and a
scripted miner (node.tools.testing.ScriptedMiner) entering every round through B's API, on a background thread
with its own event loop so synchronous tests (selenium) can use it. Module-scoped by the tests that use it."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from node.tools.client import NodeClient
from node.tools.testing import ScriptedMiner, TestChain, make_test_chain

ROOT = Path(__file__).resolve().parents[1]


class GrowingMiner(ScriptedMiner):
    """Trains on a sample that grows each round (40, 80, 120, … rows), so its models keep improving and most
    rounds crown a new champion (the page tests need new blocks to arrive while they watch)."""

    async def _train(self, task_id: int = 0) -> bytes:   # a genesis-only chain: task 0
        from ml.model import encode_model
        from ml.shards import open_shard
        from ml.training import train_candidate
        task = await self.client.task()
        g = self.genesis
        revealed = [(k["round"], bytes.fromhex(k["shard_key"])) for k in task["revealed"]]
        if self._model is not None and len(revealed) == self._model_rounds:
            return self._model

        def train() -> bytes:
            shards = [open_shard(g.task, r, key) for r, key in revealed]
            model = train_candidate(self.family, g.task.training, shards, seed=self.seed + len(shards),
                                    max_rows=40 * (1 + len(shards)), caps=g.model_caps)
            return encode_model(model)
        self._model = await asyncio.to_thread(train)
        self._model_rounds = len(revealed)
        return self._model


def _start(datadir: Path, chain: TestChain, *, keyholder: bool, peer: tuple[str, int] | None) -> subprocess.Popen:
    datadir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "node", "run", "--datadir", str(datadir), "--genesis", str(chain.genesis_path),
           "--port", "0", "--api-port", "0"]
    if keyholder:
        cmd += ["--keyholder", str(chain.keyholder_path)]
    if peer is not None:
        cmd += ["--peer", f"{peer[0]}:{peer[1]}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _ports(datadir: Path, proc: subprocess.Popen, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout  # a liveness bound on start-up, not a timed assertion
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"node process exited ({(datadir / 'node.log').read_text()[-2000:]})"
        try:
            ports = json.loads((datadir / "ports.json").read_text())
            if ports.get("pid") == proc.pid:
                return ports
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{datadir} did not start")


class ExplorerNet:
    def __init__(self, directory: Path, rounds: int = 60) -> None:
        self.chain = make_test_chain(directory / "chain", rounds=rounds, entry_window_s=1, opening_window_s=2)
        self.dir = directory
        self.procs: list[subprocess.Popen] = []
        self.urls: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._miner_task: asyncio.Task | None = None
        self.miner: GrowingMiner | None = None

    def start(self) -> "ExplorerNet":
        a = _start(self.dir / "A", self.chain, keyholder=True, peer=None)
        self.procs.append(a)
        pa = _ports(self.dir / "A", a)
        b = _start(self.dir / "B", self.chain, keyholder=False, peer=("127.0.0.1", pa["p2p"]))
        self.procs.append(b)
        pb = _ports(self.dir / "B", b)
        self.urls = [f"http://127.0.0.1:{pa['api']}", f"http://127.0.0.1:{pb['api']}"]
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)

            async def mine() -> None:
                async with NodeClient(self.urls[1]) as client:
                    self.miner = GrowingMiner(client, self.chain.miners[0], self.chain.genesis, seed=3)
                    ready.set()
                    await self.miner.run()
            self._miner_task = self._loop.create_task(mine())
            try:
                self._loop.run_until_complete(self._miner_task)
            except (asyncio.CancelledError, Exception):
                pass
            finally:
                ready.set()
                self._loop.close()
        self._thread = threading.Thread(target=run, name="explorer-miner", daemon=True)
        self._thread.start()
        ready.wait(60)
        return self

    def run(self, coro_fn, timeout: float = 120.0):
        """Run ``coro_fn(client_a, client_b)`` on a fresh loop in the calling thread (test code)."""
        async def go():
            async with NodeClient(self.urls[0]) as ca, NodeClient(self.urls[1]) as cb:
                async with asyncio.timeout(timeout):
                    return await coro_fn(ca, cb)
        return asyncio.run(go())

    def stop(self) -> None:
        if self._loop is not None and self._miner_task is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._miner_task.cancel)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(30)
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
