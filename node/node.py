"""The Node: owns the datadir, the engine worker, the peer set and the tasks; wires gossip, sync, API, keyholder.

Lifecycle: ``await Node(config).run()`` opens everything, listens (port 0 allowed; the bound ports go to the
log and to D/ports.json), runs its tasks under one TaskGroup until ``stop()`` (SIGINT/SIGTERM in ``run_node``),
then closes peers, the API, the store and the lock in that order.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from chain.address import address_of
from chain.errors import DecodeError, PopError, StoreError
from chain.store import ChainStore
from chain.tx import Transfer
from consensus.engine import Engine, EngineApi
from consensus.keyholder import load_keyholder, load_member
from consensus.protocol.genesis import Genesis, load_genesis
from node import wire
from node.api import build_api_app
from node.api_deps import api_deps
from node.committee_service import CommitteeRelay, CommitteeService
from node.config import NodeConfig
from node.connections import Connections
from node.datadir import Datadir, PeerBook
from node.discovery import Discovery, DiscoveryContext
from node.errors import NodeError, TaskFailed
from node.events import ChainView, EventBus, StatePublisher
from node.explorer import NodeExplorerDeps
from node.explorer import register as register_explorer
from node.gossip import Relay
from node.keyholder_service import KeyholderService
from node.mempool import Mempool
from node.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from node.metrics import METRICS_TASK_S, Metrics
from node.peer import LocalIdentity, Peer
from node.round_sync import RoundSync
from node.supervisor import Supervisor
from node.sync import Sync
from node.worker import EngineWorker

log = logging.getLogger("popchain.node")

HOUSEKEEPING_S = 1.0
P2P_HEADER_TIMEOUT_S = 10.0  # an inbound connection must complete its HTTP request (the upgrade) by then
API_HEADER_TIMEOUT_S = 30.0  # ... on the API (above aiohttp clients' 15 s idle keep-alive: no reuse race)
VIEW_ROUNDS = 16   # rounds the event stream re-reads per state change (beacons, verdicts)


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
                                 on_ready=self._peer_ready, on_gone=self._peer_gone)
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
        self.keyholder: KeyholderService | None = None
        self.committee: CommitteeService | None = None     # a keyholder-committee member (PROTOCOL §3.10)
        self.committee_relay: CommitteeRelay
        self._all_tasks: set[asyncio.Task] = set()
        self.stopping = False
        self.supervisor = Supervisor(lambda reason: self.stop(), self.metrics)
        self._extra_services: list[tuple[Callable[[], Awaitable[None]], str, bool]] = []

    # ------------------------------------------------------------ start-up

    def _open_chain(self) -> None:
        """Runs on the worker thread: open the store and the engine (genesis initialised on first start). A
        record that does not decode is a damaged datadir: StoreError, like a LevelDB fault."""
        try:
            self._open_chain_records()
        except DecodeError as exc:
            raise StoreError(f"corrupt record in {self.datadir.chain_dir}: {exc}") from None

    def _open_chain_records(self) -> None:
        self.store = ChainStore.open(self.datadir.chain_dir)
        if self.store.is_initialised() and not self.store.has_indexes():  # a datadir from before the indexes
            log.info("building the tx and address indexes from the stored blocks (once)")
            report = self.store.reindex()
            if not report.ok:
                raise StoreError(f"cannot build the indexes: {'; '.join(report.problems)}")
        self.engine = Engine(self.store, self.genesis)

    async def _start(self) -> None:
        self.datadir.open()
        # the genesis file is decoded and fully checked before anything is written; its copy in the datadir
        # is written only once the store holds (or was just initialised with) that same genesis
        self.genesis, save_genesis = self.datadir.load_genesis(self.config.genesis, load_genesis)
        self.conns.book = self.datadir.load_peer_book()
        await self.worker.call(self._open_chain)
        if save_genesis is not None:
            self.datadir.save_genesis(save_genesis)
        self.mempool = Mempool(self.genesis.ledger_params, max_txs=self.config.mempool_max_txs,
                               max_per_sender=self.config.mempool_max_per_sender)
        self.relay = Relay(self)
        self.sync = Sync(self, self.relay)
        self.round_sync = RoundSync(self, self.relay)
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
        for app, host, port, attr, header_s in (
                (p2p_app, self.config.listen, self.config.port, "p2p_port", P2P_HEADER_TIMEOUT_S),
                (api_app, self.api_host, self.config.api_port, "api_port", API_HEADER_TIMEOUT_S)):
            # aiohttp arms keepalive_timeout when a connection opens and closes it if no complete request head
            # has arrived by then: that is our HTTP header timeout (half-sent upgrades are not held open)
            runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=header_s)
            await runner.setup()
            self._runners.append(runner)
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
            setattr(self, attr, runner.addresses[-1][1])  # the real port when port 0 was asked
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
    def ledger_params(self):
        return self.genesis.ledger_params

    @property
    def sync_hooks(self) -> Sync:
        return self.sync

    async def on_entry_accepted(self, entry) -> None:
        if self.keyholder is not None:
            await self.keyholder.on_entry(entry)
        if self.committee is not None:
            await self.committee.on_entry(entry)

    async def on_task_message(self, msg) -> None:
        """A new task announcement/extension was stored: the keyholder may open a round with it."""
        if self.keyholder is not None:
            self.keyholder.wake()
        self._poke_events()

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

    def _chain_view(self):
        return self.worker.call(_read_chain_view, self.engine, self.genesis.params.opening_window_s)

    async def after_tip_change(self, old_tip: bytes, new_tip=None) -> None:
        """Refresh the cached tip; drop confirmed txs from the mempool and return those of disconnected blocks."""
        if new_tip is None:
            await self.refresh_tip()
        else:
            self.tip_cache = (new_tip.height, new_tip.round, new_tip.hash)
        if self.tip_cache[2] == old_tip:
            return
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

    def _reorg_info(self, old_tip: bytes, senders: list[bytes]) -> tuple[list, dict]:
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
                sup.supervise(self.spawn, self._housekeeping, "housekeeping", essential=True)
                sup.supervise(self.spawn, self.relay.run_block_queue, "blocks", essential=True)
                sup.supervise(self.spawn, self.relay.run_tx_queue, "txs", essential=True)
                sup.supervise(self.spawn, self.relay.run_trickle, "trickle", essential=False)
                for factory, name, essential in self._extra_services:
                    sup.supervise(self.spawn, factory, name, essential=essential)
                for host, port in self.config.peers:
                    self.connect(host, port, persistent=True)
                self.conns.refill_outbound()   # the persisted address book: most recently seen first
                if self.keyholder is not None:
                    sup.supervise(self.spawn, self.keyholder.run, "keyholder", essential=True)
                if self.committee is not None:
                    sup.supervise(self.spawn, self.committee.run, "committee", essential=True)
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

    def health(self) -> dict:
        """The health provider the API renders in /api/status (see node.supervisor.Supervisor.health)."""
        return self.supervisor.health()

    def spawn(self, coro, name: str) -> asyncio.Task | None:
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
        except OSError:
            log.exception("saving peers.json")
        if getattr(self, "store", None) is not None:
            try:
                if self.keyholder is not None:
                    await self.worker.call(self.keyholder.close)
                await self.worker.call(self.store.close)
            except Exception:
                log.exception("closing the store")
        # wait for the engine thread without blocking the loop (other nodes may share it in tests)
        await asyncio.get_running_loop().run_in_executor(None, self.worker.shutdown)
        self.datadir.close()
        log.info("stopped")

    async def _housekeeping(self) -> None:
        last_book_save = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            now = time.time()
            expired = self.mempool.expire(now)
            if expired:
                self.metrics.inc("popchain_mempool_expired_total", len(expired))
            self.relay.expire(time.monotonic())
            await self.sync.check_stalls()
            self.conns.refill_outbound()
            if time.monotonic() - last_book_save > 30:
                self.datadir.save_peer_book(self.book)
                last_book_save = time.monotonic()

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

    def connect(self, host: str, port: int, persistent: bool = False) -> asyncio.Task | None:
        return self.conns.connect(host, port, persistent)

    def offer_peer(self, host: str, port: int) -> None:
        self.conns.offer_peer(host, port)

    def outbound_count(self) -> int:
        return self.conns.outbound_count()

    def _peer_ready(self, peer: Peer) -> None:
        self.relay.greet(peer)
        self.sync.peer_ready(peer)
        self.round_sync.peer_ready(peer)

    def _peer_gone(self, peer: Peer) -> None:
        self.sync.peer_gone(peer)
        self.round_sync.peer_gone(peer)
        self.relay.peer_gone(peer)

    async def _dispatch(self, peer: Peer, msg: wire.Message) -> None:
        if isinstance(msg, (wire.GetHeaders, wire.Headers)):
            await self.sync.handle(peer, msg)
        elif isinstance(msg, (wire.GetRounds, wire.Rounds)):
            await self.round_sync.handle(peer, msg)
        elif isinstance(msg, wire.Committee):
            await self.committee_relay.handle(peer, msg)
        else:
            await self.relay.handle(peer, msg)

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        explorer = getattr(self, "explorer", None)
        if explorer is not None:   # per-task gauges, read at scrape time (the figures of the last scrape on error)
            try:
                async with asyncio.timeout(METRICS_TASK_S):
                    self.metrics.set_task_figures(await explorer.task_figures())
            except (TimeoutError, PopError) as exc:
                log.info("metrics: per-task figures not refreshed: %s", exc or type(exc).__name__)
        return web.Response(body=self.metrics.render().encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})


def _read_chain_view(engine: EngineApi, opening_window_s: int) -> ChainView:
    """On the worker thread: what the event stream diffs (the last VIEW_ROUNDS rounds' beacons and verdicts)."""
    tip = engine.tip()
    r = engine.current_round()
    first = max(1, r - VIEW_ROUNDS)
    crowned = {rec.round: rec.hash.hex() for rec in engine.champion_history() if rec.height > 0}
    phase = engine.round_info(r).status if r else "not-started"
    if phase == "idle":          # every task spent: the chain is closed (what /api/status and the CLI say)
        phase = "closed"
    notice = engine.notice(r) if r else None
    return ChainView(tip.height, tip.hash.hex(), r, phase, engine.open_round(),
                     frozenset(x for x in range(first, r + 1) if engine.beacon(x) is not None),
                     tuple((x, "crowned" if x in crowned else "void", crowned.get(x)) for x in range(first, r)),
                     notice.entry_deadline_ms if notice is not None and phase == "open" else None,
                     opening_window_s)


async def _guarded(coro, name: str) -> None:
    """A bug in a one-off task (a peer connection, a header request) is logged and ends only that task, never
    the node's TaskGroup. Long-lived tasks are supervised (node.supervisor): essential ones stop the node."""
    try:
        await coro
    except Exception:
        log.exception("task %s failed", name)

