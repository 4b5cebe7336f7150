"""The Node: owns the datadir, the engine worker, the peer set and the tasks; wires gossip, sync, API, keyholder.

Lifecycle: ``await Node(config).run()`` opens everything, listens (port 0 allowed; the bound ports go to the
log and to D/ports.json), runs its tasks under one TaskGroup until ``stop()`` (SIGINT/SIGTERM in ``run_node``),
then closes peers, the API, the store and the lock in that order.

Start-up never serves what it has not checked: the store refuses a datadir that lost its database or blocks
(chain.store_check), then the tip's state is checked against the stored accounts and the last undo records
(``--check-level full``: the whole chain is replayed first), and a datadir whose disk is too full refuses to
start. Both listeners sit behind an accept gate (node.gate) that keeps descriptors free for the store.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from chain.address import address_of
from chain.block import Header
from chain.errors import PopError, StorageFault
from chain.state import Account, LedgerParams
from chain.store import ChainStore
from chain.tx import Transfer
from consensus.engine import Engine
from consensus.keyholder import load_keyholder, load_member
from consensus.protocol.genesis import Genesis, load_genesis
from consensus.protocol.messages import Entry
from consensus.protocol.tasks import TaskMessage
from ml.blobs import BlobRef
from node import wire
from node.api import build_api_app
from node.api_deps import api_deps
from node.blobs import BlobService, final_shard_refs, start_blob_service, wanted_refs
from node.committee_service import CommitteeRelay, CommitteeService
from node.config import NodeConfig
from node.connections import Connections
from node.datadir import Datadir, PeerBook
from node.discovery import Discovery, DiscoveryContext
from node.errors import NodeError, TaskFailed
from node.events import ChainView, EventBus, StatePublisher, read_chain_view
from node.explorer import NodeExplorerDeps
from node.explorer import register as register_explorer
from node.gate import FdBudget, Gate, GatedSite, GateLimits, raise_fd_limit
from node.gossip import Relay
from node.housekeeping import Housekeeping, check_disk
from node.keyholder_service import KeyholderService
from node.memory import trim as trim_memory
from node.mempool import Mempool
from node.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from node.metrics import METRICS_TASK_S, Metrics
from node.opening import open_checked_store
from node.peer import LocalIdentity, Peer
from node.pruning import MIN_PRUNE, Pruner
from node.round_sync import RoundSync
from node.supervisor import Supervisor
from node.sync import Sync
from node.worker import EngineWorker

log = logging.getLogger("popchain.node")

P2P_HEADER_TIMEOUT_S = 10.0  # an inbound connection must complete its HTTP request (the upgrade) by then
API_HEADER_TIMEOUT_S = 30.0  # ... on the API (above aiohttp clients' 15 s idle keep-alive: no reuse race)
API_MAX_CONNECTIONS = 256    # the API listener's connections (node.gate) ...
API_MAX_PER_IP = 128         # ... from one IP
PEER_BOOK_SAVE_S = 30.0


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.datadir = Datadir(config.datadir)
        self.worker = EngineWorker()
        self.metrics = Metrics()
        self.events = EventBus()
        self.publisher = StatePublisher(self.events, self._chain_view, lambda: len(self.mempool),
                                        on_round_closed=lambda r, s: self.metrics.observe(
                                            "popchain_round_duration_seconds", s))
        self.nonce = int.from_bytes(os.urandom(8), "big")
        self.conns = Connections(config, self.metrics, hello=self.hello, identity=self.identity,
                                 local_port=lambda: self.p2p_port, spawn=self.spawn, dispatch=self._dispatch,
                                 on_ready=self._peer_ready, on_gone=self._peer_gone,
                                 charge=lambda peer, n: self.relay.try_charge(peer, n))
        self.fds: FdBudget | None = None
        self.gates: dict[str, Gate] = {}
        self.housekeeping = Housekeeping()
        self._witnessed: bytes | None = None
        self.p2p_port = 0
        self.api_port = 0
        self.cookie: str | None = None
        self.started = asyncio.Event()
        self._stop = asyncio.Event()
        self._runners: list[web.AppRunner] = []
        self._tg: asyncio.TaskGroup | None = None
        self.store: ChainStore
        self.genesis: Genesis
        self.engine: Engine
        self.mempool: Mempool
        self.relay: Relay
        self.sync: Sync
        self.round_sync: RoundSync
        self.blobs: BlobService
        self.keyholder: KeyholderService | None = None
        self.pruner: Pruner | None = None                   # --prune N (node.pruning)
        self.committee: CommitteeService | None = None     # a keyholder-committee member (PROTOCOL §3.10)
        self.committee_relay: CommitteeRelay
        self._all_tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.supervisor = Supervisor(lambda reason: self.stop(), self.metrics)
        self._extra_services: list[tuple[Callable[[], Awaitable[None]], str, bool]] = []

    # ------------------------------------------------------------ start-up

    def _open_chain(self) -> None:
        """Runs on the worker thread: open and check the store (node.opening), then the engine (genesis
        initialised on first start)."""
        self.store = open_checked_store(self.datadir.chain_dir, self.config.check_level, self.datadir.path)
        self.engine = Engine(self.store, self.genesis)

    async def _start(self) -> None:
        if 0 < self.config.prune < MIN_PRUNE:
            raise NodeError(f"--prune {self.config.prune}: keep at least {MIN_PRUNE} blocks' models (0: archive)")
        self.datadir.open()
        check_disk(self.datadir.path)   # a disk too full to store blocks: refuse now, not half-way through one
        self.fds = FdBudget(raise_fd_limit())
        # the genesis file is decoded and fully checked before anything is written; its copy in the datadir
        # is written only once the store holds (or was just initialised with) that same genesis
        self.genesis, save_genesis = self.datadir.load_genesis(self.config.genesis, load_genesis)
        self.conns.book = self.datadir.load_peer_book()
        await self.worker.call(self._open_chain)
        if save_genesis is not None:
            self.datadir.save_genesis(save_genesis)
        self.mempool = Mempool(self.genesis.ledger_params, max_txs=self.config.mempool_max_txs,
                               max_per_sender=self.config.mempool_max_per_sender)
        self.relay = Relay(self, self.conns.budgets)
        if self.config.prune:
            self.pruner = Pruner(self, self.config.prune)
            self.relay.judge.model_fetches = self.pruner
        self.sync = Sync(self, self.relay)
        self.relay.on_block_delivered = self.sync.delivered
        self.relay.on_not_found = self.sync.not_found
        self.round_sync = RoundSync(self, self.relay)
        self._blob_refs: dict[bytes, tuple[BlobRef, ...]] = {}    # shard blobs (PROTOCOL §3.15, §4.9)
        self.blobs = await start_blob_service(self, self.datadir.path / "blobs", self.config.blob_dir,
                                              self.config.blob_keep)
        self.committee_relay = CommitteeRelay(self, self.relay.charge, self.relay.publish)
        if self.config.keyholder is not None:
            try:
                secret_file = Path(self.config.keyholder).read_bytes()
                member = await self.worker.call(load_member, secret_file, self.engine, self.datadir.path)
                if member is None:
                    self.keyholder = KeyholderService(self, functools.partial(load_keyholder, secret_file, self.engine),
                                                      self.relay.publish)
                    await self.keyholder.open()
                else:
                    self.committee = CommitteeService(self, self.committee_relay, lambda: member,
                                                      fetch=lambda h: self.relay.refetch((wire.InvKind.BLOCK, h), None))
                    await self.committee.open()
            except (OSError, PopError, ValueError) as exc:
                raise NodeError(f"cannot start the keyholder from {self.config.keyholder}: {exc}") from None
        self._register_gauges()
        await self._listen()
        tip = await self.worker.call(self.engine.tip)
        log.info("node %s ready: chain %s height %d tip %s; p2p %s:%d api %s:%d", self.datadir.path,
                 self.genesis.chain_id, tip.height, tip.hash.hex()[:16], self.config.listen, self.p2p_port,
                 self.api_host, self.api_port)

    @property
    def api_host(self) -> str:
        return self.config.api_listen or "127.0.0.1"

    async def _listen(self) -> None:
        p2p_app = web.Application()
        p2p_app.router.add_get("/p2p", self.conns.ws_handler)
        p2p_app.router.add_get("/metrics", self._metrics_handler)
        if self.config.api_listen is not None:
            self.cookie = self.datadir.ensure_cookie()
        deps = api_deps(self)
        api_app = build_api_app(deps)
        self.explorer = NodeExplorerDeps(self, deps.rounds)   # shares the API's round index
        register_explorer(api_app, self.explorer)  # pages at /, /api/events, /api/explorer/*
        api_app.router.add_get("/metrics", self._metrics_handler)
        assert self.fds is not None
        cfg = self.config
        # p2p: every inbound slot, plus as many connections again still in their HTTP upgrade
        p2p_limits = GateLimits(total=2 * cfg.max_inbound + 8, per_ip=2 * cfg.max_inbound_per_ip)
        api_limits = GateLimits(total=API_MAX_CONNECTIONS, per_ip=API_MAX_PER_IP)
        for app, host, port, attr, header_s, limits in (
                (p2p_app, cfg.listen, cfg.port, "p2p_port", P2P_HEADER_TIMEOUT_S, p2p_limits),
                (api_app, self.api_host, cfg.api_port, "api_port", API_HEADER_TIMEOUT_S, api_limits)):
            # aiohttp arms keepalive_timeout when a connection opens and closes it if no complete request head
            # has arrived by then: that is our HTTP header timeout (half-sent upgrades are not held open)
            runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=header_s)
            await runner.setup()
            self._runners.append(runner)
            gate = self.gates[attr] = Gate(attr.removesuffix("_port"), limits, self.fds, self.metrics)
            site = GatedSite(runner, host, port, gate)
            try:
                await site.start()
            except OSError as exc:
                raise NodeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            setattr(self, attr, runner.addresses[-1][1])  # the real port when port 0 was asked
        self.conns.gate = self.gates["p2p_port"]
        self.datadir.write_ports(self.p2p_port, self.api_port)
        log.info("listening: p2p %s:%d api %s:%d", self.config.listen, self.p2p_port, self.api_host, self.api_port)

    def _register_gauges(self) -> None:
        m = self.metrics
        m.gauge("popchain_height", lambda: self.tip_cache[0], "height of the best block")
        m.gauge("popchain_round", lambda: self.tip_cache[1], "round of the best block")
        m.gauge("popchain_peers", lambda: len(self.ready_peers()), "connected peers past the handshake")
        m.gauge("popchain_mempool_txs", lambda: len(self.mempool), "transfers in the mempool")
        m.gauge("popchain_orphans", lambda: len(self.relay.parked), "orphan blocks parked in the engine")
        m.gauge("popchain_engine_busy_seconds", lambda: self.worker.busy_seconds,
                "time spent in engine calls (scoring included)")
        m.gauge("popchain_discouraged", lambda: len(self.book.bans), "discouraged peer addresses")
        m.gauge("popchain_requests_inflight", lambda: len(self.relay.requests), "objects requested, not yet received")
        m.gauge("popchain_tx_orphans", lambda: len(self.relay.judge.tx_orphans), "txs waiting for a previous nonce")
        m.gauge("popchain_healthy", lambda: float(self.supervisor.health()["ok"]), "1 if every essential task runs")

    tip_cache: tuple[int, int, bytes] = (0, 0, b"")

    # ------------------------------------------------------------ what Relay/Judge need (gossip.RelayHost)

    @property
    def ledger_params(self) -> LedgerParams:
        return self.genesis.ledger_params

    @property
    def sync_hooks(self) -> Sync:
        return self.sync

    async def on_entry_accepted(self, entry: Entry) -> None:
        if self.keyholder is not None:
            await self.keyholder.on_entry(entry)
        if self.committee is not None:
            await self.committee.on_entry(entry)

    async def on_task_message(self, msg: TaskMessage) -> None:
        """A new task announcement/extension was stored: the keyholder may open a round with it."""
        if self.keyholder is not None:
            self.keyholder.wake()
        self.blobs.wake()     # an announcement's shard blobs are fetched at once, long before their rounds
        self._poke_events()

    async def wanted_blobs(self) -> list[BlobRef]:
        return await self.worker.call(wanted_refs, self.engine, self._blob_refs)

    async def final_shards(self, after: int) -> tuple[list[BlobRef], int]:
        return await self.worker.call(final_shard_refs, self.engine, after)

    async def blob_arrived(self) -> None:
        """A shard blob was fetched: blocks the engine parked for want of it are judged again (§3.15)."""
        for block in await self.worker.call(self.engine.parked_blocks):
            await self.relay.on_object(None, wire.InvKind.BLOCK, block.encode())

    async def submit_task_message(self, data: bytes, secret: bytes | None = None) -> tuple[bool, str]:
        """The API's entry point for a task announcement/extension (PROTOCOL §3.13): decode, validate against
        the chain (signatures, package, not a replay, known task, fresh seq), store it and gossip it. Returns
        (accepted, reason): reason "accepted", "duplicate", or a reject code (chain/rejects.py) with detail.
        ``secret`` (ml SecretTask bytes: the shard keys of its package or batch) is handed to this node's
        keyholder, if it runs one, so that it can activate the message; refused if no keyholder runs here."""
        if secret is not None:
            if self.keyholder is None:
                return False, "no-keyholder: this node runs no keyholder to hand the shard keys to"
            try:
                await self.keyholder.add_task_secret(data, secret)
            except (PopError, ValueError) as exc:
                return False, f"bad-task-secret: {exc}"
        return await self.relay.on_object(None, wire.InvKind.TASK, data)

    async def refresh_tip(self) -> None:
        tip = await self.worker.call(self.engine.tip)
        self.tip_cache = (tip.height, tip.round, tip.hash)

    async def after_round_event(self) -> None:
        """A notice or beacon was applied: finality may have moved and the tip with it (void round)."""
        await self.after_tip_change(self.tip_cache[2])
        self._poke_events()

    def _poke_events(self) -> None:
        """Let the explorer's event stream diff the new state (node.events), off the caller's path."""
        self.publisher.request()

    def _chain_view(self) -> Awaitable[ChainView]:
        return self.worker.call(read_chain_view, self.engine, self.genesis.params.opening_window_s)

    async def after_tip_change(self, old_tip: bytes, new_tip: Header | None = None) -> None:
        """Refresh the cached tip; drop confirmed txs from the mempool and return those of disconnected blocks."""
        if new_tip is None:
            await self.refresh_tip()
        else:
            self.tip_cache = (new_tip.height, new_tip.round, new_tip.hash)
        if self.tip_cache[2] == old_tip:
            return
        if self.pruner is not None:
            await self.pruner.step()
        self.relay.tip_changed()
        self._poke_events()
        if not len(self.mempool) and new_tip is not None and new_tip.prev_hash == old_tip:
            return  # a plain extension and nothing pending: nothing to re-check
        senders = list({tx.sender for tx in self.mempool.txs()})
        returned, accounts = await self.worker.call(self._reorg_info, old_tip, senders)
        self.mempool.revalidate(lambda pub: accounts[pub])
        for tx in sorted(returned, key=lambda t: (t.sender, t.nonce)):
            if tx.txid not in self.mempool and tx.sender in accounts:
                try:
                    self.mempool.add(tx, accounts[tx.sender], time.time())
                except PopError:
                    continue  # no longer valid on the new chain

    def _reorg_info(self, old_tip: bytes, senders: list[bytes]) -> tuple[list[Transfer], dict[bytes, Account]]:
        """(txs of blocks no longer on the main chain, sender pubkey -> account) — on the worker thread."""
        store = self.store
        returned: list[Transfer] = []
        h = old_tip
        for _ in range(16):  # reorgs never pass finality: at most the current round's block
            if not h or store.is_main_chain(h):
                break
            block = store.get_block(h)
            if block is None:
                break
            returned.extend(block.txs)
            h = block.header.prev_hash
        everyone = set(senders) | {tx.sender for tx in returned}
        accounts = {pub: store.get_account(address_of(pub)) for pub in everyone}
        # a returned tx only counts if its sender's account can still take it
        return returned, accounts

    # ------------------------------------------------------------ main

    async def run(self) -> None:
        try:
            await self._start()
            await self.refresh_tip()
            self.conns.open()
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                sup = self.supervisor
                self._plan_housekeeping()
                sup.supervise(self.spawn, self.housekeeping.run, "housekeeping", essential=True)
                sup.supervise(self.spawn, self.relay.run_block_queue, "blocks", essential=True)
                sup.supervise(self.spawn, self.relay.run_tx_queue, "txs", essential=True)
                sup.supervise(self.spawn, self.relay.run_trickle, "trickle", essential=False)
                sup.supervise(self.spawn, self.sync.watch, "sync-watch", essential=False)
                sup.supervise(self.spawn, self.blobs.run, "blobs", essential=False)
                for factory, name, essential in self._extra_services:
                    sup.supervise(self.spawn, factory, name, essential=essential)
                for host, port in self.config.peers:
                    self.connect(host, port, persistent=True)
                self.conns.refill_outbound()   # the persisted address book: most recently seen first
                if self.keyholder is not None:
                    sup.supervise(self.spawn, self.keyholder.run, "keyholder", essential=True)
                if self.committee is not None:
                    sup.supervise(self.spawn, self.committee.run, "committee", essential=True)
                if self.committee_relay.watch is not None:
                    sup.supervise(self.spawn, self.committee_relay.run, "committee-watch", essential=False)
                if self.config.discover:
                    discovery = Discovery(DiscoveryContext(self.config, self.genesis.chain_id, self.genesis.hash,
                                                           self.nonce, lambda: self.p2p_port, self.offer_peer))
                    sup.supervise(self.spawn, discovery.run, "discovery", essential=False)
                sup.supervise(self.spawn, self.publisher.watch, "events", essential=False)
                self.started.set()
                await self._stop.wait()
                log.info("shutting down" if sup.failure is None else f"shutting down: {sup.failure}")
                self.stopping = True
                self.conns.stopping = True
                sup.stopping = True
                for peer in list(self.peers):
                    peer.close("node shutting down")
                for task in list(self._all_tasks):
                    task.cancel()
        finally:
            await self._shutdown()
        if self.supervisor.failure is not None:
            raise TaskFailed(self.supervisor.failure) from self.supervisor.failure_exc

    def add_service(self, factory: Callable[[], Awaitable[None]], name: str, *, essential: bool) -> None:
        """Register a long-lived task before ``run`` (embedders, tests): supervised like the node's own."""
        self._extra_services.append((factory, name, essential))

    def health(self) -> dict[str, Any]:
        """The health provider the API renders in /api/status (node.supervisor.Supervisor.health), with the
        housekeeping steps that are failing right now (retried: node.housekeeping) under ``"retrying"``."""
        out = self.supervisor.health()
        out["retrying"] = self.housekeeping.health()
        return out

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None] | None:
        """Start a task inside the node's TaskGroup (structured: it ends before the node does)."""
        assert self._tg is not None
        if self.stopping:
            coro.close()
            return None
        task = self._tg.create_task(_guarded(coro, name), name=name)
        self._all_tasks.add(task)
        task.add_done_callback(self._all_tasks.discard)
        return task

    def stop(self) -> None:
        self._stop.set()

    async def _shutdown(self) -> None:
        for runner in reversed(self._runners):
            try:
                await runner.cleanup()
            except Exception:  # keep closing the rest
                log.exception("closing a listener")
        await self.conns.close()
        try:
            self.datadir.save_peer_book(self.book)
        except OSError as exc:   # a full disk, no descriptors: the book is only a hint, the chain is safe
            log.warning("cannot save peers.json: %s", exc.strerror or exc)
        if getattr(self, "store", None) is not None:
            try:
                if self.keyholder is not None:
                    await self.worker.call(self.keyholder.close)
                try:
                    await self.worker.call(self.store.note_tip)
                except OSError as exc:   # best effort: the witness only ever lags the database
                    log.warning("cannot record the tip witness: %s", exc.strerror or exc)
                await self.worker.call(self.store.close)
            except Exception:
                log.exception("closing the store")
        # wait for the engine thread without blocking the loop (other nodes may share it in tests)
        await asyncio.get_running_loop().run_in_executor(None, self.worker.shutdown)
        self.datadir.close()
        log.info("stopped")

    def _plan_housekeeping(self) -> None:
        """The once-a-second steps (node.housekeeping: an OSError in one is logged once and retried)."""
        hk = self.housekeeping
        hk.add("expire the mempool", self._expire_mempool)
        hk.add("expire requests", lambda: self.relay.expire(time.monotonic()))
        hk.add("check block downloads", self.sync.check_stalls)
        hk.add("refill outbound connections", self.conns.refill_outbound)
        hk.add("save peers.json", lambda: self.datadir.save_peer_book(self.book), every_s=PEER_BOOK_SAVE_S)
        hk.add("record the tip witness", self._note_tip)
        hk.add("count descriptors", self.fds.refresh if self.fds is not None else lambda: None)
        hk.add("check free disk space", lambda: check_disk(self.datadir.path), every_s=5.0)
        hk.add("return freed memory", trim_memory, every_s=2.0)

    def _expire_mempool(self) -> None:
        expired = self.mempool.expire(time.time())
        if expired:
            self.metrics.inc("popchain_mempool_expired_total", len(expired))

    async def _note_tip(self) -> None:
        """Persist the tip witness (chain.store_check) when the tip moved: on the worker, it fsyncs."""
        if self.tip_cache[2] != getattr(self, "_witnessed", None):
            await self.worker.call(self.store.note_tip)
            self._witnessed = self.tip_cache[2]

    # ------------------------------------------------------------ peers

    def identity(self) -> LocalIdentity:
        return LocalIdentity(self.genesis.chain_id, self.genesis.hash, self.nonce, self.config.listen, self.p2p_port)

    def hello(self) -> wire.Hello:
        height, rnd, _ = self.tip_cache
        return wire.Hello(wire.PROTOCOL_VERSION, self.genesis.chain_id, self.genesis.hash, height, rnd,
                          self.config.listen, self.p2p_port, self.nonce, "popchain/0.1")

    # ------------------------------------------------------------ connections (node.connections)

    @property
    def peers(self) -> set[Peer]:
        return self.conns.peers

    @property
    def book(self) -> PeerBook:
        return self.conns.book

    def ready_peers(self) -> list[Peer]:
        return [p for p in self.conns.peers if p.hello is not None and not p.close_reason]

    def is_discouraged(self, host: str) -> bool:
        return self.conns.is_discouraged(host)

    def connect(self, host: str, port: int, persistent: bool = False) -> asyncio.Task[None] | None:
        return self.conns.connect(host, port, persistent)

    def offer_peer(self, host: str, port: int) -> None:
        self.conns.offer_peer(host, port)

    def outbound_count(self) -> int:
        return self.conns.outbound_count()

    def _peer_ready(self, peer: Peer) -> None:
        self.relay.greet(peer)
        self.sync.peer_ready(peer)
        self.round_sync.peer_ready(peer)
        self.blobs.wake()

    def _peer_gone(self, peer: Peer) -> None:
        self.blobs.peer_gone(peer)
        self.sync.peer_gone(peer)
        self.round_sync.peer_gone(peer)
        self.relay.peer_gone(peer)

    async def _dispatch(self, peer: Peer, msg: wire.Message) -> None:
        try:
            if isinstance(msg, (wire.GetHeaders, wire.Headers)):
                await self.sync.handle(peer, msg)
            elif isinstance(msg, (wire.GetRounds, wire.Rounds)):
                await self.round_sync.handle(peer, msg)
            elif isinstance(msg, wire.Committee):
                await self.committee_relay.handle(peer, msg)
            elif isinstance(msg, wire.Leak):
                await self.committee_relay.handle_leak(peer, msg)
            elif isinstance(msg, (wire.GetBlob, wire.Blob)):
                await self.blobs.handle(peer, msg)
            else:
                await self.relay.handle(peer, msg)
        except StorageFault as exc:   # our storage failed while handling it: stop (exit 3), blame no peer
            self.supervisor.fail("storing a peer's object", exc)

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        explorer = getattr(self, "explorer", None)
        if explorer is not None:   # per-task gauges, read at scrape time (the figures of the last scrape on error)
            try:
                async with asyncio.timeout(METRICS_TASK_S):
                    self.metrics.set_task_figures(await explorer.task_figures())
            except (TimeoutError, PopError) as exc:
                log.info("metrics: per-task figures not refreshed: %s", exc or type(exc).__name__)
        return web.Response(body=self.metrics.render().encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def _guarded(coro: Coroutine[Any, Any, None], name: str) -> None:
    """A bug in a one-off task (a peer connection, a header request) is logged and ends only that task, never
    the node's TaskGroup. Long-lived tasks are supervised (node.supervisor): essential ones stop the node."""
    try:
        await coro
    except Exception:
        log.exception("task %s failed", name)

