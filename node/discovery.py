"""LAN discovery by UDP multicast *(policy, opt-in with --discover)*.

Every ``discovery_interval_s`` the node multicasts ``u8 0xD1 || canonical msgpack [version, chain_id,
genesis_hash, listen_host, listen_port, nonce]`` to the group; a node hearing an announcement for the same
genesis (and not its own nonce) connects to the announced address. Multicast leaves only through
``discovery_interface`` (IP_MULTICAST_IF); on the default 127.0.0.1 the TTL is 0 and IP_MULTICAST_LOOP is on, so
announcements never leave this machine. Other chains are ignored; malformed datagrams are dropped silently.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chain.encoding import check_bytes, check_int, check_list, check_str, pack, unpack
from chain.errors import DecodeError
from node.config import NodeConfig
from node.limits import TokenBucket

log = logging.getLogger("popchain.discovery")

MAGIC = 0xD1
VERSION = 1
MAX_DATAGRAM = 256


def encode_announcement(chain_id: str, genesis_hash: bytes, host: str, port: int, nonce: int) -> bytes:
    return bytes([MAGIC]) + pack([VERSION, chain_id, genesis_hash, host, port, nonce])


def decode_announcement(data: bytes) -> tuple[str, bytes, str, int, int]:
    """(chain_id, genesis_hash, host, port, nonce); raises DecodeError."""
    if not data or data[0] != MAGIC:
        raise DecodeError("not a popchain announcement")
    f = check_list(unpack(data[1:], max_size=MAX_DATAGRAM), 6, "announcement")
    check_int(f[0], VERSION, VERSION, "version")
    return (check_str(f[1], 32, "chain_id"), check_bytes(f[2], 32, "genesis_hash"), check_str(f[3], 64, "host"),
            check_int(f[4], 1, 65535, "port"), check_int(f[5], 0, 2**64 - 1, "nonce"))


def make_socket(group: str, port: int, interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((group, port))  # bound to the group: only its datagrams arrive
    iface = socket.inet_aton(interface)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, iface)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    ttl = 0 if interface.startswith("127.") else 1   # loopback: never leave the host; LAN: one hop
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4s", socket.inet_aton(group), iface))
    sock.setblocking(False)
    return sock


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, discovery: Discovery) -> None:
        self.discovery = discovery

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.discovery.on_datagram(data, addr)


@dataclass(frozen=True)
class DiscoveryContext:
    """What discovery needs from the node: who we are, and where to offer a peer we heard of."""

    config: NodeConfig
    chain_id: str
    genesis_hash: bytes
    nonce: int
    p2p_port: Callable[[], int]                 # the bound port (known once the node listens)
    offer_peer: Callable[[str, int], None]      # dial it if it is new and there is outbound room


class Discovery:
    def __init__(self, ctx: DiscoveryContext) -> None:
        self.ctx = ctx
        self.heard: set[tuple[str, int]] = set()
        self.bucket = TokenBucket(20.0, 50.0, 0.0)

    def on_datagram(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        loop_time = asyncio.get_running_loop().time()
        if not self.bucket.take(loop_time):
            return
        try:
            chain_id, genesis_hash, host, port, nonce = decode_announcement(data)
        except DecodeError:
            return
        ctx = self.ctx
        if genesis_hash != ctx.genesis_hash or chain_id != ctx.chain_id or nonce == ctx.nonce:
            return  # another chain, or ourselves
        if host in ("0.0.0.0", ""):
            host = addr[0]
        if (host, port) not in self.heard:
            self.heard.add((host, port))
            log.info("discovered peer %s:%d", host, port)
        ctx.offer_peer(host, port)

    async def run(self) -> None:
        ctx = self.ctx
        cfg = ctx.config
        sock = make_socket(cfg.discovery_group, cfg.discovery_port, cfg.discovery_interface)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        log.info("discovery on %s:%d via %s", cfg.discovery_group, cfg.discovery_port, cfg.discovery_interface)
        try:
            while True:
                transport.sendto(encode_announcement(ctx.chain_id, ctx.genesis_hash, cfg.listen, ctx.p2p_port(),
                                                     ctx.nonce), (cfg.discovery_group, cfg.discovery_port))
                await asyncio.sleep(cfg.discovery_interval_s)
        finally:
            transport.close()
