"""The live network the attackers run against: real ``node run`` processes - a 2-of-3 keyholder committee and
plain nodes, each on a loopback address of its own - real ``popchain miner run`` processes, honest users'
transfers, and attacker processes (``python -m benchmarks.attacks.<name>``), in one fixed topology::

    honest miners -> H --- R --- M1, M2, M3   (committee members, also linked to each other)
                           `---- V            (a plain node)
    victim miner  -> V2 <-> [gateway: the thief process] <-> H      (thief phase only)

H is the node the miners post to; every other honest node hears a block one hop later, through R: the position
an attacker takes when it is closer to the victims than the block's honest path (it only has to connect to H
and to the victims). Distinct addresses keep each honest node's penalties its own (nodes discourage by IP).

Tests share one LiveNet per module (tests/test_attack_live.py), the benchmarks build their own
(benchmarks.attacks.live_figures). It starts and stops processes and reads their logs and APIs
(benchmarks.attacks.observe); it never reaches into a node.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._nodeproc import ROOT, NodeProc, stop_all, terminate
from chain.address import address_of
from chain.tx import make_transfer
from chain.wallet import Wallet
from node.tools.client import ApiCallError, NodeClient
from node.tools.testing import TestChain, make_test_chain, seeded_keypair

NODE_IPS = {"H": "127.0.1.1", "R": "127.0.1.2", "V": "127.0.1.3", "M1": "127.0.1.4", "M2": "127.0.1.5",
            "M3": "127.0.1.6", "V2": "127.0.1.7", "V3": "127.0.1.8", "V4": "127.0.1.9"}
MEMBERS = ("M1", "M2", "M3")
ATTACKER_ADDRESSES = ("127.0.2.1", "127.0.31.254")   # every attacker connection comes from this range
WALLET_PASSWORD = "popchain-attack-harness"


class Proc:
    """A child process (miner or attacker) with its output in a file; ``stop()`` = SIGTERM, then SIGKILL."""

    def __init__(self, name: str, cmd: Sequence[str], out: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.cmd, self.out = name, list(cmd), out
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=out.open("ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        return terminate(self.proc, timeout)


class LiveNet:
    """The network above. ``await start()``; ``stop()`` always (kills every process it started)."""

    def __init__(self, root: Path, *, rounds: int = 60, params: dict[str, int] | None = None,
                 shard_size: int = 100) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.chain: TestChain = make_test_chain(root / "chain", rounds=rounds, shard_size=shard_size, keyholders=3,
                                                threshold=2, n_miners=5, n_users=2, params=params)
        self.nodes: dict[str, NodeProc] = {}
        self.procs: list[Proc] = []
        self._feeder: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ processes

    def _node(self, name: str, peers: Sequence[str], keyholder: Path | None = None) -> NodeProc:
        return NodeProc(self.root / name, genesis=self.chain.genesis_path, listen=NODE_IPS[name],
                        peers=[self.nodes[p].p2p_addr for p in peers], keyholder=keyholder, log_level="INFO",
                        extra_args=("--log-format", "json"))

    async def _start(self, name: str, peers: Sequence[str], keyholder: Path | None = None) -> NodeProc:
        node = self.nodes[name] = self._node(name, peers, keyholder)
        await node.start().ready()
        return node

    async def start(self) -> None:
        """R first, then H and the members (linked to R and each other), then V; returns once round 1 is open."""
        await self._start("R", ())
        await self._start("H", ("R",))
        for i, m in enumerate(MEMBERS):
            await self._start(m, ("R", *MEMBERS[:i]), keyholder=self.chain.member_paths[i])
        await self._start("V", ("R",))
        async with NodeClient(self.api("H")) as c:
            async with asyncio.timeout(120):
                while not (await c.status())["open_round"]:
                    await asyncio.sleep(0.1)

    async def restart(self, names: Sequence[str]) -> None:
        """Stop and start nodes on their datadirs (what an operator does to a wedged node: it forgets its verdict
        memory); peers as at start."""
        peers = {"R": (), "H": ("R",), "V": ("R",), "V2": (), **{m: ("R", *MEMBERS[:i]) for i, m in enumerate(MEMBERS)}}
        ports = {n: dict(self.nodes[n].ports) for n in names}
        stop_all([self.nodes[n] for n in names])
        for n in names:   # same ports: the peers that dial it find it again
            keyholder = self.chain.member_paths[MEMBERS.index(n)] if n in MEMBERS else None
            node = self.nodes[n] = NodeProc(self.root / n, genesis=None, listen=NODE_IPS[n],
                                            port=int(ports[n]["p2p"]), api_port=int(ports[n]["api"]),
                                            peers=[self.nodes[p].p2p_addr for p in peers[n]], keyholder=keyholder,
                                            log_level="INFO", extra_args=("--log-format", "json"))
            await node.start().ready()

    async def start_v2(self) -> NodeProc:
        """The thief phase's victim node: no peers of its own (the gateway dials it)."""
        if "V2" not in self.nodes:
            await self._start("V2", ())
        return self.nodes["V2"]

    async def start_fresh(self, name: str, peers: Sequence[str] = ()) -> NodeProc:
        """A fresh node (empty datadir) that dials only ``peers``: the sync poisoner's victim (V3, no peers: the
        poisoner dials it) and the honest node that later brings it the chain (V4, peers R and V3)."""
        return await self._start(name, peers)

    def api(self, name: str) -> str:
        return self.nodes[name].api_url

    def p2p(self, name: str) -> str:
        host, port = self.nodes[name].p2p_addr
        return f"{name}={host}:{port}"

    def miner(self, name: str, node: str, miner_index: int, family: str = "linear", enter: str = "always") -> Proc:
        """``popchain miner run`` for the chain's funded miner key ``miner_index`` (seeded), posting to ``node``;
        ``--enter always`` by default, so every round carries openings for the attackers to work on."""
        kp = self.chain.miners[miner_index]
        wallet_path = self.root / f"{name}.popkeys"
        if not wallet_path.exists():
            wallet = Wallet.create(wallet_path, WALLET_PASSWORD)
            wallet.import_seed(kp.seed, name)
        cmd = [sys.executable, "-m", "cli", "miner", "run", "--node", self.api(node), "--wallet", str(wallet_path),
               "--key", name, "--model", family, "--enter", enter, "--json", "--retry", "0"]
        proc = Proc(name, cmd, self.root / f"{name}.out", env={"POPCHAIN_PASSWORD": WALLET_PASSWORD})
        self.procs.append(proc)
        return proc

    def attacker(self, module: str, *args: str) -> Proc:
        """``python -m benchmarks.attacks.<module> ARGS`` as its own process."""
        cmd = [sys.executable, "-m", f"benchmarks.attacks.{module}", "--genesis", str(self.chain.genesis_path),
               *args]
        proc = Proc(module, cmd, self.root / f"{module}.out")
        self.procs.append(proc)
        return proc

    # ------------------------------------------------------------ honest users

    def start_feeder(self, node: str = "H", every_s: float = 0.4) -> None:
        """Honest users: a transfer every ``every_s`` to ``node``, so blocks carry txs (the ``tx`` tamper)."""
        if self._feeder is None:
            self._feeder = asyncio.create_task(self._feed(node, every_s))

    async def stop_feeder(self) -> None:
        if self._feeder is not None:
            self._feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feeder
            self._feeder = None

    async def _feed(self, node: str, every_s: float) -> None:
        sender, receiver = self.chain.users[0], self.chain.users[1]
        cid = self.chain.genesis.chain_id
        async with NodeClient(self.api(node)) as c:
            nonce = None
            while True:
                try:
                    if nonce is None:
                        nonce = (await c.account(sender.public.hex()))["next_nonce"]
                    await c.send_tx(make_transfer(sender, cid, address_of(receiver.public), 1, 1_000, nonce).encode())
                    nonce += 1
                except (ApiCallError, OSError):
                    nonce = None
                await asyncio.sleep(every_s)

    # ------------------------------------------------------------ progress

    async def status(self, name: str = "H") -> dict[str, Any]:
        async with NodeClient(self.api(name)) as c:
            return await c.status()

    async def until_round(self, r: int, name: str = "H", timeout: float = 300.0) -> int:
        """Wait (liveness bound) until ``name``'s current round is ≥ r; returns it."""
        async with NodeClient(self.api(name)) as c:
            async with asyncio.timeout(timeout):
                while True:
                    cur = (await c.status())["round"]
                    if cur >= r:
                        return int(cur)
                    await asyncio.sleep(0.1)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()
        stop_all(list(self.nodes.values()))


def phase_clock() -> float:
    """The wall clock the nodes' JSON logs are stamped with (UTC seconds): phases are windows of it."""
    return time.time()


def member_seed_keys() -> list[bytes]:
    """The committee members' public keys as make_test_chain seeds them ("keyholder1".."keyholder3")."""
    return sorted(seeded_keypair(f"keyholder{i}").public for i in range(1, 4))
