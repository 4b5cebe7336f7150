"""The Node: owns the datadir, the engine worker, the peer set and the tasks; wires gossip, sync, API, keyholder.

Lifecycle: ``await Node(config).run()`` opens everything, listens (port 0 allowed; the bound ports go to the
log and to D/ports.json), runs its tasks under one TaskGroup until ``stop()`` (SIGINT/SIGTERM in ``run_node``),
then closes peers, the API, the store and the lock in that order.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from chain.address import address_of
from chain.errors import DecodeError, PopError, StoreError
from chain.store import ChainStore
from chain.tx import Transfer
from consensus.engine import Engine
from consensus.genesis import Genesis, load_genesis
from node import wire
from node.api import build_api_app
from node.api_deps import api_deps
from node.config import NodeConfig
from node.datadir import Datadir, PeerBook
from node.discovery import Discovery
from node.errors import NodeError
from node.events import ChainView, EventBus, StatePublisher
from node.explorer import NodeExplorerDeps
from node.explorer import register as register_explorer
from node.gossip import Relay
from node.keyholder_service import KeyholderService
from node.limits import DISCOURAGE_SECONDS, Offence
from node.mempool import Mempool
from node.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from node.metrics import Metrics
from node.peer import LocalIdentity, Peer
from node.sync import Sync
from node.worker import EngineWorker

log = logging.getLogger("popchain.node")

RECONNECT_MIN_S, RECONNECT_MAX_S = 0.5, 15.0
HOUSEKEEPING_S = 1.0
ADDR_RELAY_MAX = 32
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
        self.peers: set[Peer] = set()
        self.book = PeerBook()
        self.p2p_port = 0
        self.api_port = 0
        self.cookie: str | None = None
        self.started = asyncio.Event()
        self._stop = asyncio.Event()
        self._runners: list[web.AppRunner] = []
        self._session: aiohttp.ClientSession | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._outbound_targets: set[tuple[str, int]] = set()
        self.store: ChainStore
        self.genesis: Genesis
        self.engine: Engine
        self.mempool: Mempool
        self.relay: Relay
        self.sync: Sync
        self.keyholder: KeyholderService | None = None
        self._all_tasks: set[asyncio.Task] = set()
        self.stopping = False

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
        self.book = self.datadir.load_peer_book()
        await self.worker.call(self._open_chain)
        if save_genesis is not None:
            self.datadir.save_genesis(save_genesis)
        self.mempool = Mempool(self.genesis.ledger_params)
        self.relay = Relay(self)
        self.sync = Sync(self)
        if self.config.keyholder is not None:
            try:
                self.keyholder = KeyholderService(self, Path(self.config.keyholder).read_bytes())
                await self.keyholder.open()
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
        p2p_app.router.add_get("/p2p", self._ws_handler)
        p2p_app.router.add_get("/metrics", self._metrics_handler)
        if self.config.api_listen is not None:
            self.cookie = self.datadir.ensure_cookie()
        api_app = build_api_app(api_deps(self))
        register_explorer(api_app, NodeExplorerDeps(self))  # pages at /, /api/events, /api/explorer/*
        api_app.router.add_get("/metrics", self._metrics_handler)
        for app, host, port, attr in ((p2p_app, self.config.listen, self.config.port, "p2p_port"),
                                      (api_app, self.api_host, self.config.api_port, "api_port")):
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
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

    tip_cache: tuple[int, int, bytes] = (0, 0, b"")

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
            self._session = aiohttp.ClientSession()
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self.spawn(self._housekeeping(), "housekeeping")
                self.spawn(self.relay.run_block_queue(), "blocks")
                self.spawn(self.relay.run_tx_queue(), "txs")
                for host, port in self.config.peers:
                    self.connect(host, port, persistent=True)
                if self.config.peer_exchange:  # the persisted address book: most recently seen first
                    spare = max(0, self.config.max_outbound - len(self.config.peers))
                    for addr, _ in sorted(self.book.addrs.items(), key=lambda kv: -kv[1])[:spare]:
                        book_host, _, book_port = addr.rpartition(":")
                        if book_port.isdigit() and not self.is_discouraged(addr):
                            self.connect(book_host, int(book_port))
                if self.keyholder is not None:
                    self.spawn(self.keyholder.run(), "keyholder")
                if self.config.discover:
                    self.spawn(Discovery(self).run(), "discovery")
                self.spawn(self.publisher.watch(), "events")
                self.started.set()
                await self._stop.wait()
                log.info("shutting down")
                self.stopping = True
                for peer in list(self.peers):
                    peer.close("node shutting down")
                for task in list(self._all_tasks):
                    task.cancel()
        finally:
            await self._shutdown()

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
        if self._session is not None:
            await self._session.close()
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

    def ready_peers(self) -> list[Peer]:
        return [p for p in self.peers if p.hello is not None and not p.close_reason]

    def _is_duplicate(self, nonce: int) -> bool:
        return any(p.hello is not None and p.hello.nonce == nonce and not p.close_reason for p in self.peers)

    def _make_peer(self, ws, inbound: bool, host: str, port: int) -> Peer:
        return Peer(ws, inbound=inbound, host=host, port=port, handler=self._on_message, on_offence=self._on_offence,
                    hello_factory=self.hello, identity=self.identity(), is_duplicate=self._is_duplicate)

    def is_discouraged(self, key: str) -> bool:
        return self.book.is_banned(key, time.time())

    def _on_offence(self, peer: Peer, offence: Offence, detail: str) -> None:
        self.metrics.inc("popchain_peer_offences_total", reason=offence.reason)
        log.warning("peer %s %s (+%d -> %d): %s", peer.key, offence.reason, offence.score, peer.score + 0, detail)
        if peer.score >= 100:
            self.book.ban(peer.key, time.time() + DISCOURAGE_SECONDS)
            self.book.addrs.pop(peer.key, None)
            log.warning("peer %s discouraged for %.0f s", peer.key, DISCOURAGE_SECONDS)

    async def _serve_peer(self, peer: Peer) -> None:
        self.peers.add(peer)
        self.metrics.inc("popchain_connections_total", direction="in" if peer.inbound else "out")
        try:
            await peer.run_with(self._after_handshake)
        finally:
            self.peers.discard(peer)
            self.sync.peer_gone(peer)
            self.relay.peer_gone(peer)
            log.info("peer %s disconnected: %s", peer.key, peer.close_reason)

    async def _after_handshake(self, peer: Peer) -> None:
        if self.is_discouraged(peer.key):
            peer.close("discouraged")
            return
        log.info("peer %s connected (%s, height %d)", peer.key, "in" if peer.inbound else "out",
                 peer.best_height)
        if peer.listen_addr is not None and not peer.inbound:
            self.book.add(*peer.listen_addr, time.time())
        if not peer.inbound:
            peer.send(wire.GetAddr())
        self.relay.greet(peer)
        self.sync.peer_ready(peer)

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        host = request.remote or "?"
        port = request.transport.get_extra_info("peername")[1] if request.transport else 0
        if self.stopping or self.is_discouraged(host) or sum(p.inbound for p in self.peers) >= self.config.max_inbound:
            return web.Response(status=503, text="not accepting connections from you now")
        ws = web.WebSocketResponse(max_msg_size=wire.MAX_FRAME, autoping=False, compress=False)
        await ws.prepare(request)
        await self._serve_peer(self._make_peer(ws, True, host, port))
        return ws

    def connect(self, host: str, port: int, persistent: bool = False) -> asyncio.Task | None:
        """Open (and, if persistent, keep re-opening) an outbound connection, as a task in the TaskGroup."""
        if (host, port) in self._outbound_targets or (host, port) == (self.config.listen, self.p2p_port):
            return None
        self._outbound_targets.add((host, port))
        return self.spawn(self._outbound(host, port, persistent), f"peer-{host}:{port}")

    async def _outbound(self, host: str, port: int, persistent: bool) -> None:
        delay = RECONNECT_MIN_S
        try:
            while not self.stopping:
                if not self.is_discouraged(f"{host}:{port}"):
                    try:
                        assert self._session is not None, "run() opens the session before connecting"
                        async with asyncio.timeout(5):
                            ws = await self._session.ws_connect(f"http://{host}:{port}/p2p", autoping=False,
                                                                max_msg_size=wire.MAX_FRAME, compress=0)
                    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                        log.debug("connect %s:%d failed: %r", host, port, exc)
                    else:
                        if self.stopping:
                            await ws.close()
                            return
                        peer = self._make_peer(ws, False, host, port)
                        await self._serve_peer(peer)
                        if peer.close_reason in ("self-connection", "peer rejected us: self-connection"):
                            return
                        if peer.hello is not None:
                            delay = RECONNECT_MIN_S
                if not persistent:
                    return
                await asyncio.sleep(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)
        finally:
            self._outbound_targets.discard((host, port))

    def outbound_count(self) -> int:
        return sum(not p.inbound for p in self.peers)

    async def _on_message(self, peer: Peer, msg: wire.Message) -> None:
        if isinstance(msg, wire.GetAddr):
            addrs = [p.listen_addr for p in self.ready_peers() if p.listen_addr and p is not peer]
            peer.send(wire.Addr(tuple(a for a in addrs if a)[:ADDR_RELAY_MAX]))
        elif isinstance(msg, wire.Addr):
            for host, port in msg.addrs[:ADDR_RELAY_MAX]:
                self.book.add(host, port, time.time())
                room = self.outbound_count() < self.config.max_outbound
                if self.config.peer_exchange and room and not self.is_discouraged(f"{host}:{port}"):
                    if not any(p.listen_addr == (host, port) for p in self.peers):
                        self.connect(host, port)
        elif isinstance(msg, (wire.GetHeaders, wire.Headers)):
            await self.sync.handle(peer, msg)
        else:
            await self.relay.handle(peer, msg)

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render().encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})


def _read_chain_view(engine, opening_window_s: int) -> ChainView:
    """On the worker thread: what the event stream diffs (the last VIEW_ROUNDS rounds' beacons and verdicts)."""
    tip = engine.tip()
    r = engine.current_round()
    first = max(1, r - VIEW_ROUNDS)
    crowned = {rec.round: rec.hash.hex() for rec in engine.champion_history() if rec.height > 0}
    phase = engine.round_info(r).status if r else "not-started"
    notice = engine.notice(r) if r else None
    return ChainView(tip.height, tip.hash.hex(), r, phase, engine.open_round(),
                     frozenset(x for x in range(first, r + 1) if engine.beacon(x) is not None),
                     tuple((x, "crowned" if x in crowned else "void", crowned.get(x)) for x in range(first, r)),
                     notice.entry_deadline_ms if notice is not None and phase == "open" else None,
                     opening_window_s)


async def _guarded(coro, name: str) -> None:
    """A bug in one task is logged, not allowed to take the whole node down through the TaskGroup."""
    try:
        await coro
    except Exception:
        log.exception("task %s failed", name)
