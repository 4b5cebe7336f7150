"""Node configuration: the frozen NodeConfig, where each setting comes from, and the ``node run`` options.

Sources, highest first: command line > ``POPCHAIN_<KEY>`` environment variables > the config file
(``--config FILE``, else ``<datadir>/popchain.toml``; a legacy ``<datadir>/config.json`` is read with the same
rules when there is no TOML file) > defaults. A file with an unknown key or a value of the wrong type or range
is refused with a NodeError naming the key, never half-applied. ``resolve`` returns the config and the source
of every setting (``node run --print-config`` shows both). Environment variables other than the keys below
(POPCHAIN_PASSWORD, POPCHAIN_NODE, ...) belong to the client commands and are not node settings.
"""
from __future__ import annotations

import argparse
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from node.datadir import parse_hostport
from node.errors import NodeError

DEFAULT_P2P_PORT = 9444
DEFAULT_API_PORT = 9445
CONFIG_FILE = "popchain.toml"
LEGACY_CONFIG_FILE = "config.json"
MAX_CONFIG_BYTES = 1 << 20
ENV_PREFIX = "POPCHAIN_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
CHECK_LEVELS = ("tip", "full")
BLOB_KEEP = ("all", "unrevealed")


@dataclass(frozen=True)
class NodeConfig:
    datadir: Path
    genesis: Path | None = None
    keyholder: Path | None = None
    blob_dir: Path | None = None        # the task owner's shard blobs (genesis create's <out>/blobs), imported
    blob_keep: str = "all"              # all (archive) | unrevealed: a shard blob goes once its round is final
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
    log_format: str = "text"            # text | json (one JSON object per line)
    log_max_bytes: int = 10 * 2**20     # node.log rotates at this size ...
    log_backups: int = 5                # ... keeping this many old files (node.log.1 ...)
    check_level: str = "tip"            # on start: tip = state vs accounts + last undo records; full = replay all
    prune: int = 0                      # 0: archive (every model); N: keep the last N blocks' models + champions
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


# ---------------------------------------------------------------- the settings a user may give


@dataclass(frozen=True)
class Setting:
    kind: str                        # str | int | bool | path | peers | choice
    lo: int = 0
    hi: int = 0
    choices: tuple[str, ...] = ()


def _port() -> Setting:
    return Setting("int", 0, 65535)


SETTINGS: dict[str, Setting] = {
    "genesis": Setting("path"), "keyholder": Setting("path"), "blob_dir": Setting("path"),
    "blob_keep": Setting("choice", choices=BLOB_KEEP), "peers": Setting("peers"),
    "port": _port(), "api_port": _port(), "listen": Setting("str"), "api_listen": Setting("str"),
    "discover": Setting("bool"), "discovery_interface": Setting("str"), "discovery_port": Setting("int", 1, 65535),
    "peer_exchange": Setting("bool"), "max_inbound": Setting("int", 0, 4096), "max_outbound": Setting("int", 0, 1024),
    "max_inbound_per_ip": Setting("int", 1, 4096), "mempool_max_txs": Setting("int", 1, 10**7),
    "mempool_max_per_sender": Setting("int", 1, 10**7),
    "log_level": Setting("choice", choices=LOG_LEVELS), "log_format": Setting("choice", choices=LOG_FORMATS),
    "log_max_bytes": Setting("int", 4096, 2**40), "log_backups": Setting("int", 0, 1000),
    "check_level": Setting("choice", choices=CHECK_LEVELS),
    "prune": Setting("int", 0, 2**32 - 1),
}


def _check(key: str, value: Any, where: str, base: Path | None) -> Any:
    """Validate one value of ``key`` (from a file: TOML/JSON types); NodeError naming the key otherwise."""
    s = SETTINGS[key]
    bad = f"{where}: {key}"
    if s.kind in ("str", "path", "choice"):
        if not isinstance(value, str) or not value or len(value) > 4096:
            raise NodeError(f"{bad}: expected a non-empty string, got {value!r}")
        if s.kind == "choice":
            v = value.upper() if key == "log_level" else value
            if v not in s.choices:
                raise NodeError(f"{bad}: expected one of {', '.join(s.choices)}, got {value!r}")
            return v
        if s.kind == "path":
            p = Path(value).expanduser()
            return p if p.is_absolute() or base is None else base / p
        return value
    if s.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise NodeError(f"{bad}: expected an integer, got {value!r}")
        if not s.lo <= value <= s.hi:
            raise NodeError(f"{bad}: {value} is outside [{s.lo}, {s.hi}]")
        return value
    if s.kind == "bool":
        if not isinstance(value, bool):
            raise NodeError(f"{bad}: expected true or false, got {value!r}")
        return value
    if s.kind == "peers":
        if not isinstance(value, list) or len(value) > 1024 or not all(isinstance(v, str) for v in value):
            raise NodeError(f"{bad}: expected a list of \"host:port\" strings")
        try:
            return tuple(parse_hostport(v) for v in value)
        except (NodeError, ValueError) as exc:
            raise NodeError(f"{bad}: {exc}") from None
    raise AssertionError(s.kind)


def _from_env_text(key: str, text: str) -> Any:
    """Environment values are strings: convert to the key's type, then validate like a file value."""
    kind = SETTINGS[key].kind
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            return text            # _check names the key and the bad value
    if kind == "bool":
        low = text.strip().lower()
        return {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(low, text)
    if kind == "peers":
        return [p.strip() for p in text.split(",") if p.strip()]
    return text


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse and validate a popchain.toml (or legacy config.json): {key: value}, relative paths resolved
    against the file's directory."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NodeError(f"cannot read config file {path}: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise NodeError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        obj: Any = json.loads(data) if path.suffix == ".json" else tomllib.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:     # tomllib.TOMLDecodeError is a ValueError
        raise NodeError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
    if not isinstance(obj, dict):
        raise NodeError(f"{path}: expected a table of settings")
    out = {}
    for key, value in obj.items():
        if key not in SETTINGS:
            raise NodeError(f"{path}: unknown setting {key!r} (known: {', '.join(sorted(SETTINGS))})")
        out[key] = _check(key, value, str(path), path.parent)
    return out


def config_file_for(datadir: Path, explicit: Path | None) -> Path | None:
    if explicit is not None:
        if not explicit.exists():
            raise NodeError(f"config file {explicit} does not exist")
        return explicit
    for name in (CONFIG_FILE, LEGACY_CONFIG_FILE):
        if (datadir / name).exists():
            return datadir / name
    return None


def _cli_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (argparse default None = not given)."""
    out: dict[str, Any] = {}
    for key in SETTINGS:
        if key == "peers":
            if getattr(args, "peer", None):
                out["peers"] = _check("peers", list(args.peer), "--peer", None)
            continue
        value = getattr(args, key, None)
        if value is None or (key == "discover" and value is False):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, Path):
            value = str(value)
        out[key] = _check(key, value, flag, None)
    return out


def resolve(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> tuple[NodeConfig, dict[str, str]]:
    """(config, {setting: source}) from the command line, the environment, the config file and defaults."""
    env = os.environ if env is None else env
    datadir = Path(args.datadir)
    path = config_file_for(datadir, getattr(args, "config", None))
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        layers.append((str(path), read_config_file(path)))
    env_values = {}
    for key in SETTINGS:
        name = ENV_PREFIX + key.upper()
        if name in env:
            env_values[key] = _check(key, _from_env_text(key, env[name]), name, None)
    layers += [("environment", env_values), ("command line", _cli_values(args))]
    values: dict[str, Any] = {}
    sources = {key: "default" for key in SETTINGS}
    for source, layer in layers:
        for key, value in layer.items():
            origin = source
            if key == "peers" and "peers" in values:   # peers add up across sources, in order, without repeats
                value = tuple(dict.fromkeys(values["peers"] + value))
                origin = f"{sources['peers']} + {source}"
            values[key] = value
            sources[key] = origin
    return replace(NodeConfig(datadir=datadir), **values), sources


def describe(config: NodeConfig, sources: dict[str, str]) -> list[str]:
    """The effective settings as TOML lines, each with its source as a comment (``--print-config``)."""
    lines = [f"# effective settings of the node in {config.datadir}"]
    for key in SETTINGS:
        value: Any = getattr(config, key)
        if key == "peers":
            text = json.dumps([f"{h}:{p}" for h, p in value])
        elif value is None:
            lines.append(f"{('# ' + key + ' (not set)').ljust(40)} # {sources[key]}")
            continue
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = json.dumps(str(value))
        entry = f"{key} = {text}"
        lines.append(f"{entry.ljust(40)} # {sources[key]}")
    return lines


# ---------------------------------------------------------------- argparse (reused by cli.py and python -m node)


def add_node_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datadir", required=True, type=Path, help="data directory (created if missing)")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help=f"config file (default: DATADIR/{CONFIG_FILE} if present)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective settings and where each comes from, then exit")
    parser.add_argument("--genesis", type=Path, help="genesis file (needed the first time only)")
    parser.add_argument("--keyholder", type=Path, help="keyholder secret package: run the keyholder service")
    parser.add_argument("--blob-dir", type=Path, default=None, metavar="DIR",
                        help="shard blobs the task owner has (genesis create's OUT/blobs): checked, copied into "
                             "the datadir and served; without it they are fetched from peers")
    parser.add_argument("--blob-keep", default=None, choices=BLOB_KEEP,
                        help="all (default: keep every shard blob, serve syncing peers) or unrevealed (delete a "
                             "shard's blob once its round is final here)")
    parser.add_argument("--peer", action="append", default=[], metavar="HOST:PORT", help="connect to this peer")
    parser.add_argument("--port", type=int, default=None, help=f"peer port (default {DEFAULT_P2P_PORT}; 0 = any)")
    parser.add_argument("--api-port", type=int, default=None, help=f"API port (default {DEFAULT_API_PORT}; 0 = any)")
    parser.add_argument("--listen", default=None, metavar="ADDR", help="peer listen address (default 127.0.0.1)")
    parser.add_argument("--api-listen", default=None, metavar="ADDR",
                        help="API listen address; write endpoints then need the datadir cookie")
    parser.add_argument("--discover", action="store_true", help="LAN discovery by UDP multicast (opt-in)")
    parser.add_argument("--discovery-interface", default=None, metavar="ADDR",
                        help="interface address for multicast (default 127.0.0.1 = this machine only)")
    parser.add_argument("--log-level", default=None, type=str.upper, choices=LOG_LEVELS,
                        help="log level (default INFO)")
    parser.add_argument("--log-format", default=None, choices=LOG_FORMATS,
                        help="text (default) or json: one JSON object per line in node.log and on stderr")
    parser.add_argument("--check-level", default=None, choices=CHECK_LEVELS,
                        help="store check before serving: tip (default: the tip's state against the stored "
                             "accounts and the last undo records, seconds) or full (replay the whole chain)")
    parser.add_argument("--prune", type=int, default=None, metavar="N",
                        help="keep only the last N blocks' models (and every task's champion, the consensus "
                             "records, headers and transfers); older models are fetched from a peer when asked "
                             "for. 0 (default): archive node, serves every block. At least 10")


def config_from_args(args: argparse.Namespace, file_config: dict[str, Any] | None = None) -> NodeConfig:
    """Compatibility wrapper: ``resolve`` without the sources (``file_config`` is ignored: the file is read by
    ``resolve`` itself, with validation)."""
    return resolve(args)[0]

