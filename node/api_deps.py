"""What the HTTP API may read and call: typed Protocols and one ApiDeps record, instead of the whole node.

Does: name every part node/api.py touches — store reads, engine queries (run only through ``engine_call``, the
engine worker), mempool reads, object submission, a peers view, node facts (ports, sync backlog) and an optional
health provider — and build them from a Node in ``api_deps`` (the one place that reaches into the node for the
API). Does not: hold state or logic of its own.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from chain.block import Block, Header
from chain.state import Account
from chain.store_index import HistoryItem, TxLocation
from chain.tx import Transfer
from consensus.engine import EngineApi
from consensus.protocol.genesis import Genesis
from node import wire
from node.rounds_index import RoundIndex
from node.wire import InvKind

T = TypeVar("T")


class StoreReads(Protocol):
    """chain.store.ChainStore, reads only. find_tx / address_history / get_model / get_block(hash) are
    lock-free and may run on any thread; the API runs them on the default executor."""

    def get_block(self, h: bytes | int) -> Block | None: ...
    def get_header(self, h: bytes | int) -> Header | None: ...
    def block_hash_at(self, height: int) -> bytes | None: ...
    def tip(self) -> Header: ...
    def ids_with_prefix(self, kind: str, prefix_hex: str, limit: int = 8) -> list[bytes]: ...
    def is_main_chain(self, block_hash: bytes) -> bool: ...
    def get_account(self, account: bytes) -> Account: ...
    def get_model(self, model_hash_: bytes) -> bytes | None: ...
    def find_tx(self, txid: bytes) -> TxLocation | None: ...
    def address_history(self, account: bytes, before: tuple[int, int] | None = None,
                        limit: int = 50) -> list[HistoryItem]: ...


class MempoolReads(Protocol):
    def __len__(self) -> int: ...
    def __contains__(self, txid: object) -> bool: ...
    def get(self, txid: bytes) -> Transfer | None: ...
    def txs(self) -> list[Transfer]: ...
    def select(self, limit: int) -> list[Transfer]: ...


class PeerView(Protocol):
    """What /api/peers shows of a connected peer (node.peer.Peer)."""

    key: str
    inbound: bool
    best_height: int   # the highest block it has shown us (handshake, headers, blocks it relayed)
    score: int
    rtt_ms: Any
    connected_at: float
    bytes_in: int
    bytes_out: int

    @property
    def agent(self) -> str | None: ...


@dataclass(frozen=True)
class ApiDeps:
    genesis: Genesis
    store: StoreReads
    engine: EngineApi                                  # only inside engine_call
    engine_call: Callable[..., Awaitable[Any]]         # EngineWorker.call: serialised on the engine thread
    mempool: MempoolReads
    submit: Callable[[InvKind, bytes], Awaitable[tuple[bool, str]]]          # Relay.on_object (peer None)
    submit_txs: Callable[[Sequence[bytes]], Awaitable[list[tuple[bool, str]]]]
    peers: Callable[[], Sequence[PeerView]]
    known_addrs: Callable[[], list[str]]
    discouraged: Callable[[], dict[str, float]]        # address -> until (unix time), current ones only
    facts: Callable[[], dict[str, Any]]                # p2p_port, api_port, keyholder, syncing (read per request)
    cookie: Callable[[], str | None]                   # None: writes need no auth (127.0.0.1 only)
    health: Callable[[], dict[str, Any]] | None = None  # {"ok": bool, "tasks": {...}} when the node provides it
    # (task announcement/extension, its shard keys or None) -> (accepted, status or reject reason, hex id)
    submit_task: Callable[[bytes, bytes | None], Awaitable[tuple[bool, str, str | None]]] | None = None
    rounds: RoundIndex | None = None                   # the node's round index (engine thread only)
    # a share posted before its shard is revealed -> the evidence it became (RuleError if it proves nothing)
    submit_leak: Callable[[bytes], Awaitable[dict[str, Any]]] | None = None
    # a pruned node: (block hash, model hash) -> the model fetched from a peer and checked, or None
    fetch_model: Callable[[bytes, bytes], Awaitable[bytes | None]] | None = None
    blob_dir: Path | None = None                       # the node's checked shard blobs (GET /api/blobs/{id})
    offer_blob: Callable[[bytes], Awaitable[Any]] | None = None   # POST /api/blobs: a BlobRef if kept, else None


class _PeerAdapter:
    """A Peer seen through PeerView (``agent`` comes from its handshake)."""

    __slots__ = ("_p",)

    def __init__(self, peer: Any) -> None:
        self._p = peer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._p, name)

    @property
    def agent(self) -> str | None:
        hello = self._p.hello
        return hello.agent if hello is not None else None


def api_deps(node: Any) -> ApiDeps:
    """The API's view of a running node.Node (called once its store, engine, mempool and relay exist)."""
    import time

    def facts() -> dict[str, Any]:
        committee = getattr(node, "committee", None)
        watched = node.committee_relay.info()          # liveness as this node sees it (committee chains)
        info = None if watched is None and committee is None else {**(watched or {}),
                                                                   **(committee.info() if committee else {})}
        return {"p2p_port": node.p2p_port, "api_port": node.api_port,
                "keyholder": node.keyholder is not None or committee is not None,
                "committee": info, "syncing": len(node.sync.wanted),
                "prune": None if node.pruner is None else {"window": node.pruner.window,
                                                           "pruned_through": node.store.pruned_through()}}

    health = getattr(node, "health", None)
    return ApiDeps(
        genesis=node.genesis, store=node.store, engine=node.engine, engine_call=node.worker.call,
        mempool=node.mempool, submit=lambda kind, raw: node.relay.on_object(None, kind, raw),
        submit_txs=lambda raws: node.relay.on_tx_batch([(None, raw) for raw in raws]),
        peers=lambda: [_PeerAdapter(p) for p in node.ready_peers()],
        known_addrs=lambda: sorted(node.book.addrs),
        discouraged=lambda: {k: v for k, v in node.book.bans.items() if v > time.time()},
        facts=facts, cookie=lambda: node.cookie, health=health if callable(health) else None,
        submit_task=lambda raw, secret: _submit_task(node, raw, secret), rounds=RoundIndex(node.engine, node.store),
        submit_leak=(lambda raw: node.committee_relay.handle_leak(None, wire.Leak(raw)))
        if node.genesis.committee is not None else None,
        fetch_model=node.pruner.fetch_model if node.pruner is not None else None,
        blob_dir=node.blobs.store.path, offer_blob=node.blobs.offer)


async def _submit_task(node: Any, raw: bytes, secret: bytes | None) -> tuple[bool, str, str | None]:
    """Node.submit_task_message, with the message id (None if the bytes are no task message)."""
    from chain.errors import DecodeError
    from consensus.protocol.tasks import decode_task_message
    ok, reason = await node.submit_task_message(raw, secret)
    try:
        msg_id: str | None = decode_task_message(raw).msg_hash.hex()
    except DecodeError:
        msg_id = None
    return ok, reason, msg_id
