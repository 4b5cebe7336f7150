"""Helpers for tests, the benchmarks and the demo: a small test chain, in-process nodes, a scripted miner.

Everything here talks to real nodes on 127.0.0.1 through the API (node.tools.client.NodeClient); nothing reaches
into a node's internals except ``InProcessNode`` which owns its Node object.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from chain.address import address_of
from chain.crypto import Keypair
from chain.tx import Transfer
from consensus.keyholder import keyholder_file
from consensus.mining import Template, open_block, seal
from consensus.protocol.genesis import Genesis, GenesisParams, create_genesis, load_genesis
from consensus.protocol.messages import Beacon
from consensus.protocol.settlement import miner_funding
from ml.task import Dataset, synthetic
from node.config import NodeConfig
from node.tools.client import ApiCallError, NodeClient

log = logging.getLogger("popchain.testing")

CHAIN_ID = "popchain-nodetest"
MINER_BALANCE = 10**9
MINER_BOND = 10**8           # a test miner's bond account (32 entry bonds at the default 3 125 000)


def seeded_keypair(label: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(b"popchain/testing/" + label.encode()).digest())


@dataclass(frozen=True)
class TestChain:
    __test__ = False   # not a pytest test class (its name starts with "Test")
    genesis_path: Path
    keyholder_path: Path
    genesis: Genesis
    miners: tuple[Keypair, ...]
    users: tuple[Keypair, ...]
    member_paths: tuple[Path, ...] = ()     # committee chains: keyholder-1.secret … (member order)


def make_test_chain(directory: Path, *, rounds: int = 20, shard_size: int = 100, entry_window_s: int = 1,
                    opening_window_s: int = 2, n_miners: int = 2, n_users: int = 2, n_train: int = 1500,
                    chain_id: str = CHAIN_ID, easy: bool = True, keyholders: int = 0,
                    threshold: int = 0, params: dict[str, int] | None = None, blobs: bool = False) -> TestChain:
    """A small chain: synthetic task, short round windows, funded miners and users, one keyholder key; with
    ``keyholders`` N > 0 a ``threshold``-of-N committee instead (keys seeded "keyholder1" …; member files
    ``keyholder-i.secret`` in genesis order; ``keyholder_path`` is member 1's). ``params``: more genesis
    parameters (GenesisParams fields, e.g. ``max_entries``, ``time_slack_s``) over these defaults. ``blobs``: the
    shards are blobs (PROTOCOL §3.15) written to ``directory/blobs`` (give it to one node as ``--blob-dir``)."""
    directory.mkdir(parents=True, exist_ok=True)
    miners = tuple(seeded_keypair(f"miner{i}") for i in range(n_miners))
    users = tuple(seeded_keypair(f"user{i}") for i in range(n_users))
    kh = seeded_keypair("keyholder")
    dataset = synthetic(b"popchain-node-tests-seed", n_samples=rounds * shard_size + n_train + 50, n_features=12,
                        n_informative=6, n_classes=3)
    # easy (tests only): α = 0.99, so about any challenger with b > c + 1 is crowned and test chains grow in a
    # few rounds; the default α = 1/20 needs power-sized shards (PROTOCOL §3.7)
    extra = {"alpha_num": 99, "alpha_den": 100} if easy else {}
    genesis_params = GenesisParams(**{"entry_window_s": entry_window_s, "opening_window_s": opening_window_s,
                                      **extra, **(params or {})})
    allocations = ([a for k in miners for a in miner_funding(k.public, MINER_BALANCE, MINER_BOND)]
                   + [(address_of(k.public), MINER_BALANCE) for k in users])
    if keyholders:
        return _committee_chain(directory, dataset, keyholders, threshold or keyholders // 2 + 1, chain_id=chain_id,
                                rounds=rounds, shard_size=shard_size, allocations=allocations,
                                params=genesis_params, n_train=n_train, miners=miners, users=users)
    shard_blobs: dict[bytes, bytes] | None = {} if blobs else None
    genesis, secret = create_genesis(dataset, chain_id=chain_id, rounds=rounds, shard_size=shard_size,
                                     allocations=allocations, keyholder_pubkeys=[kh.public], params=genesis_params,
                                     timestamp=int(time.time()) - 10, n_train=n_train,
                                     seed=b"popchain-node-tests-split", shard_blobs=shard_blobs)
    if shard_blobs:
        from ml.blobs import BlobDir, BlobRef
        store = BlobDir(directory / "blobs")
        for ref, data in shard_blobs.items():
            store.put(BlobRef.parse(ref), data)
    genesis_path = directory / "genesis.bin"
    genesis_path.write_bytes(genesis.encode())
    keyholder_path = directory / "keyholder.secret"
    keyholder_path.write_bytes(keyholder_file(secret, [kh]))
    os.chmod(keyholder_path, 0o600)
    return TestChain(genesis_path, keyholder_path, load_genesis(genesis.encode()), miners, users)


SPONSOR_BOUNTY = 10**11


def _committee_chain(directory: Path, dataset: Dataset, n: int, t: int, *, chain_id: str, rounds: int,
                     shard_size: int, allocations: list[tuple[bytes, int]], params: GenesisParams, n_train: int,
                     miners: tuple[Keypair, ...], users: tuple[Keypair, ...]) -> TestChain:
    """A committee chain (version 3) from an in-process DKG (tests only); its data task's keys are sealed to
    the committee, its sponsor is seeded "sponsor" and its escrow pays each crowning the block reward."""
    from consensus.protocol.genesis import create_committee_genesis
    from consensus.protocol.tasks import escrow_account
    from node.tools.committee_kit import local_committee
    members = sorted((seeded_keypair(f"keyholder{i}") for i in range(1, n + 1)), key=lambda kp: kp.public)
    key, files = local_committee(members, t, label=chain_id)
    sponsor = seeded_keypair("sponsor")       # funded and bonded: it could enter, were it not the sponsor
    genesis = create_committee_genesis(dataset, chain_id=chain_id, rounds=rounds, shard_size=shard_size,
                                       allocations=[*allocations, (escrow_account(0), SPONSOR_BOUNTY),
                                                    *miner_funding(sponsor.public, MINER_BALANCE, MINER_BOND)],
                                       committee=key, sponsor=sponsor.public,
                                       per_crowning=params.block_reward, params=params,
                                       timestamp=int(time.time()) - 10, n_train=n_train,
                                       seed=b"popchain-node-tests-split")
    genesis_path = directory / "genesis.bin"
    genesis_path.write_bytes(genesis.encode())
    paths = []
    for i, data in enumerate(files):
        path = directory / f"keyholder-{i + 1}.secret"
        path.write_bytes(data)
        os.chmod(path, 0o600)
        paths.append(path)
    return TestChain(genesis_path, paths[0], load_genesis(genesis.encode()), miners, users, tuple(paths))


def node_config(datadir: Path, chain: TestChain, *, keyholder: bool = False,
                peers: tuple[tuple[str, int], ...] = (), **kw) -> NodeConfig:
    return NodeConfig(datadir=datadir, genesis=chain.genesis_path,
                      keyholder=chain.keyholder_path if keyholder else None, peers=peers, port=0, api_port=0,
                      log_to_stderr=False, **kw)


class InProcessNode:
    """A Node running as a task of the current loop (tests/benchmarks). ``async with`` starts and stops it."""

    def __init__(self, config: NodeConfig) -> None:
        from node.node import Node
        self.config = config
        self.node = Node(config)
        self._task: asyncio.Task | None = None
        self.client: NodeClient | None = None

    async def __aenter__(self) -> InProcessNode:
        self._task = asyncio.create_task(self.node.run(), name=f"node-{self.config.datadir.name}")
        started = asyncio.create_task(self.node.started.wait())
        await asyncio.wait({self._task, started}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            started.cancel()
            self._task.result()  # raises the start-up error
        self.client = NodeClient(self.api_url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self._task is not None:
            self.node.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.node.api_port}"

    @property
    def p2p_addr(self) -> tuple[str, int]:
        return ("127.0.0.1", self.node.p2p_port)


def peer_session(source_ip: str = "127.0.0.2"):
    """An aiohttp ClientSession whose connections come from ``source_ip`` (on Linux any 127.0.0.x is local).
    Nodes discourage by IP (PROTOCOL §4.5) and honest test nodes all share 127.0.0.1: a test's hostile peer
    uses an address of its own, or its offence would get every honest node refused too."""
    import aiohttp
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source_ip, 0)))


async def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.05, what: str = "condition"):
    """Poll an async predicate until it returns a truthy value (a liveness bound, not a timed assertion)."""
    async with asyncio.timeout(timeout):
        while True:
            value = await predicate()
            if value:
                return value
            await asyncio.sleep(interval)


def template_from_json(obj: dict) -> Template:
    b = bytes.fromhex
    return Template(obj["chain_id"], obj["height"], b(obj["prev_hash"]), obj["round"], obj["timestamp"],
                    b(obj["miner"]), tuple(Transfer.decode(b(t)) for t in obj["txs"]), b(obj["tx_root"]),
                    b(obj["state_root"]), obj["entry_bond"], b(obj["champion_model_hash"]))


@dataclass
class ScriptedMiner:
    """Mines through the API only: template → train → seal → POST entry → wait for beacon → POST opening, for
    whichever task each round serves (that task's package, revealed shards and champion)."""

    client: NodeClient
    keypair: Keypair
    genesis: Genesis
    family: str = "linear"
    seed: int = 0
    entered: set[int] = field(default_factory=set)
    opened: list[tuple[int, str]] = field(default_factory=list)   # (round, status)
    poll_s: float = 0.03
    train_delay_s: float = 0.0    # benchmarks: let the block relay finish before training hogs the CPU
    stop_when_closed: bool = True  # False: wait through a closed chain for a task to be announced
    rounds_by_task: dict[int, int] = field(default_factory=dict)   # rounds entered per task
    _model: bytes | None = None
    _model_rounds: int = -1
    _models: dict[int, tuple[int, bytes]] = field(default_factory=dict)   # task -> (n revealed, model)
    _packages: dict = field(default_factory=dict)                         # task -> ml.shards.PublicTask

    async def task_state(self, task_id: int, min_shards: int = 0):
        """(package with its extensions, [(shard index, key)] revealed) of ``task_id``."""
        from ml.shards import PublicTask
        info = await self.client.task_info(task_id)
        public = self._packages.get(task_id)
        if public is None or public.n_rounds < max(info["shards_total"], min_shards):
            full = await self.client.task_info(task_id, package=True)
            from node.tools.blob_cache import ensure_blobs
            public = await ensure_blobs(self.client, PublicTask.decode(bytes.fromhex(full["package"])))
            self._packages[task_id] = public
        return public, [(k["shard_index"], bytes.fromhex(k["shard_key"])) for k in info["revealed"]
                        if k["shard_index"] <= public.n_rounds]

    async def _train(self, task_id: int = 0) -> bytes:
        from ml.model import encode_model
        from ml.shards import open_shard
        from ml.training import train_candidate
        public, revealed = await self.task_state(task_id)
        cached = self._models.get(task_id)
        if cached is not None and cached[0] == len(revealed):
            return cached[1]
        g = self.genesis

        def train() -> bytes:
            shards = [open_shard(public, i, key) for i, key in revealed]
            model = train_candidate(self.family, public.training, shards, seed=self.seed + len(shards),
                                    caps=g.model_caps)
            return encode_model(model)
        model = await asyncio.to_thread(train)
        self._models[task_id] = (len(revealed), model)
        return model

    async def run(self, rounds: int = 10**9) -> None:
        """Take part in ``rounds`` rounds (or until no task of the chain is open, with ``stop_when_closed``)."""
        done = 0
        while done < rounds:
            status = await self.client.status()
            r = status["open_round"]
            if r == 0 or r in self.entered:
                if status["round_phase"] == "closed" and self.stop_when_closed:
                    return
                await asyncio.sleep(self.poll_s)
                continue
            self.entered.add(r)
            task_id = status.get("round_task") or 0
            self.rounds_by_task[task_id] = self.rounds_by_task.get(task_id, 0) + 1
            try:
                await self.mine_round(r, task_id)
            except ApiCallError as exc:   # the node refused a read: this round is lost, the next one is not
                log.warning("miner: round %d: %s", r, exc)
                self.opened.append((r, f"error:{exc.code}"))
            done += 1

    async def mine_round(self, r: int, task_id: int = 0) -> None:
        """Enter round r with the model trained after the previous beacon; retrain once this round is opened."""
        model = await self._train(task_id)
        try:
            tpl = template_from_json(await self.client.template(self.keypair.public))
        except ApiCallError as exc:
            log.info("miner: no template for round %d: %s", r, exc)
            return
        if tpl.round != r:
            return
        block, entry = seal(tpl, model, self.keypair, os.urandom(32))
        try:
            await self.client.send_entry(entry.encode())
        except ApiCallError as exc:
            log.info("miner: entry for round %d refused: %s", r, exc)
            return
        found = await self._wait_beacon(r)
        if found is None or block.hash not in found[0].entries:
            self.opened.append((r, "not-entered"))
            return
        beacon, activations = found
        champion = await self.client.model(tpl.champion_model_hash.hex())
        public, _ = await self.task_state(task_id, getattr(beacon, "shard_index", 0))
        opened = await asyncio.to_thread(open_block, block, beacon, genesis=self.genesis, champion_bytes=champion,
                                         task=public, activations=activations)
        try:
            res = await self.client.send_opening(opened.encode())
            self.opened.append((r, res["status"]))
        except ApiCallError as exc:
            self.opened.append((r, exc.code))
        if self.train_delay_s:
            await asyncio.sleep(self.train_delay_s)
        await self._train(task_id)  # the shard just revealed is public now: train the next candidate on it

    async def _wait_beacon(self, r: int, timeout: float = 60.0) -> tuple[Beacon, tuple[bytes, ...]] | None:
        """Round r's beacon and the task message bytes its openings carry, or None."""
        async def beacon_known():
            info = await self.client.round(r)
            return info if info.get("beacon") else None
        try:
            info = await wait_for(beacon_known, timeout=timeout, interval=self.poll_s)
        except TimeoutError:
            return None
        return (Beacon.decode(bytes.fromhex(info["beacon"])),
                tuple(bytes.fromhex(m) for m in info.get("activations") or ()))


def build_chain_offline(datadir: Path, chain: TestChain, n_blocks: int) -> int:
    """Fill a node datadir with ``n_blocks`` crowned blocks by driving Engine + Keyholder on a simulated clock
    (no network; seconds of training per block). Returns the number of rounds it took."""
    from chain.store import ChainStore
    from consensus.engine import Engine
    from consensus.keyholder import Keyholder, load_keyholder_file
    from ml.model import encode_model
    from ml.shards import open_shard
    from ml.training import train_candidate

    datadir.mkdir(parents=True, exist_ok=True)
    (datadir / "genesis.bin").write_bytes(chain.genesis_path.read_bytes())
    g = chain.genesis
    store = ChainStore.open(datadir / "chain")
    try:
        engine = Engine(store, g)
        secret, keypairs = load_keyholder_file(chain.keyholder_path.read_bytes())
        keyholder = Keyholder(engine, secret, keypairs)
        now = float(g.timestamp + 100)
        shards: list[Dataset] = []
        rounds = 0
        while engine.tip().height < n_blocks:
            keyholder.step(now)
            r = engine.open_round()
            if r == 0:
                raise RuntimeError("chain ran out of rounds before reaching the block count")
            rounds += 1
            sealed = []
            for i, miner in enumerate(chain.miners):
                tpl = engine.build_template(miner.public, [], int(now))
                model = train_candidate("linear", g.task.training, shards, seed=r * 7 + i, max_rows=1000,
                                        caps=g.model_caps)
                block, entry = seal(tpl, encode_model(model), miner, os.urandom(32))
                keyholder.on_entry(entry)
                sealed.append(block)
            now += g.params.entry_window_s
            keyholder.step(now)
            beacon = engine.beacon(r)
            assert beacon is not None, "the keyholder published beacon r after the entry window"
            champion = engine.champion_model()
            for block in sealed:
                engine.add_block(open_block(block, beacon, genesis=g, champion_bytes=champion))
            shards.append(open_shard(g.task, r, beacon.shard_key))
            now += g.params.opening_window_s
            keyholder.step(now)
        return rounds
    finally:
        store.close()
