"""Node configuration: the frozen NodeConfig and the ``node run`` argparse setup (reused by cli.py)."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.datadir import parse_hostport
from node.errors import NodeError

DEFAULT_P2P_PORT = 9444
DEFAULT_API_PORT = 9445


@dataclass(frozen=True)
class NodeConfig:
    datadir: Path
    genesis: Path | None = None
    keyholder: Path | None = None
    peers: tuple[tuple[str, int], ...] = ()
    port: int = DEFAULT_P2P_PORT
    api_port: int = DEFAULT_API_PORT
    listen: str = "127.0.0.1"
    api_listen: str | None = None       # None = 127.0.0.1 without cookie auth
    discover: bool = False
    discovery_group: str = "239.255.77.77"
    discovery_port: int = 9446
    discovery_interface: str = "127.0.0.1"   # multicast leaves only through this interface
    discovery_interval_s: float = 5.0
    peer_exchange: bool = True          # connect to addresses peers tell us about (tests of fixed topologies: off)
    max_inbound: int = 32
    max_inbound_per_ip: int = 8         # per IP (IPv6: per /64): one host cannot hold every inbound slot
    mempool_max_txs: int = 5000         # node.mempool.DEFAULT_MAX_TXS (load benchmarks raise it)
    mempool_max_per_sender: int = 100   # node.mempool.DEFAULT_MAX_PER_SENDER
    max_outbound: int = 8
    log_level: str = "INFO"
    log_to_stderr: bool = True
    extra: dict = field(default_factory=dict, compare=False)


def add_node_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datadir", required=True, type=Path, help="data directory (created if missing)")
    parser.add_argument("--genesis", type=Path, help="genesis file (needed the first time only)")
    parser.add_argument("--keyholder", type=Path, help="keyholder secret package: run the keyholder service")
    parser.add_argument("--peer", action="append", default=[], metavar="HOST:PORT", help="connect to this peer")
    parser.add_argument("--port", type=int, default=None, help=f"peer port (default {DEFAULT_P2P_PORT}; 0 = any)")
    parser.add_argument("--api-port", type=int, default=None, help=f"API port (default {DEFAULT_API_PORT}; 0 = any)")
    parser.add_argument("--listen", default=None, metavar="ADDR", help="peer listen address (default 127.0.0.1)")
    parser.add_argument("--api-listen", default=None, metavar="ADDR",
                        help="API listen address; write endpoints then need the datadir cookie")
    parser.add_argument("--discover", action="store_true", help="LAN discovery by UDP multicast (opt-in)")
    parser.add_argument("--discovery-interface", default=None, metavar="ADDR",
                        help="interface address for multicast (default 127.0.0.1 = this machine only)")
    parser.add_argument("--log-level", default="INFO")


def config_from_args(args: argparse.Namespace, file_config: dict | None = None) -> NodeConfig:
    """Command line over the datadir's config.json over defaults."""
    fc = dict(file_config or {})
    peers = [parse_hostport(p) for p in list(fc.get("peers", [])) + list(args.peer)]

    def pick(cli, key, default):
        return cli if cli is not None else fc.get(key, default)

    config = NodeConfig(
        datadir=args.datadir, genesis=args.genesis, keyholder=args.keyholder, peers=tuple(dict.fromkeys(peers)),
        port=int(pick(args.port, "port", DEFAULT_P2P_PORT)), api_port=int(pick(args.api_port, "api_port",
                                                                               DEFAULT_API_PORT)),
        listen=str(pick(args.listen, "listen", "127.0.0.1")), api_listen=pick(args.api_listen, "api_listen", None),
        discover=bool(args.discover or fc.get("discover", False)),
        discovery_interface=str(pick(args.discovery_interface, "discovery_interface", "127.0.0.1")),
        peer_exchange=_flag(fc, "peer_exchange", True), log_level=args.log_level)
    return dataclasses.replace(config, **_limits(fc))


def _flag(fc: dict, key: str, default: bool) -> bool:
    """A true/false setting from config.json (anything else is a configuration error)."""
    value = fc.get(key, default)
    if not isinstance(value, bool):
        raise NodeError(f"config.json: {key} must be true or false, got {value!r}")
    return value


_LIMIT_KEYS = ("max_inbound", "max_inbound_per_ip", "max_outbound", "mempool_max_txs", "mempool_max_per_sender")


def _limits(fc: dict) -> dict[str, Any]:
    """Peer and mempool limits from config.json (positive integers; others are a configuration error)."""
    out = {}
    for key in _LIMIT_KEYS:
        if key in fc:
            value = fc[key]
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 10**7:
                raise NodeError(f"config.json: {key} must be a positive integer, got {value!r}")
            out[key] = value
    return out
