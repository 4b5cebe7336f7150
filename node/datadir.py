"""The node's data directory: lock, config, cookie, peers/bans file, ports file, genesis copy, log file.

Layout (PROTOCOL §4.8 *(policy)*)::

    D/node.lock      flock held while a node runs (a second node on D refuses to start)
    D/chain/         LevelDB store (chain.store.ChainStore)
    D/genesis.bin    copy of the genesis file, so ``node run`` on an existing datadir needs no --genesis
    D/popchain.toml  optional node settings (node.config: validated, unknown keys refused; config.json = legacy)
    D/.cookie        "__cookie__:<hex>" (mode 0600), needed by API write endpoints when --api-listen is used
    D/peers.json     known peer addresses and bans (persisted across restarts)
    D/ports.json     {"p2p": P, "api": P, "pid": N} written once the node listens
    D/node.log       log file
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from node.errors import NodeError

MAX_KNOWN_ADDRS = 1000
MAX_BANS = 4096          # discouraged IPs (/64s) remembered; beyond it the soonest to expire are forgotten
MAX_CONFIG_BYTES = 64 * 1024
MAX_GENESIS_BYTES = 256 * 2**20   # far above any real one (task package + genesis model): a sanity cap
T = TypeVar("T")


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via temp file + fsync + rename, so a crash leaves the old or the new file, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read(path: Path, what: str) -> bytes:
    try:
        if path.stat().st_size > MAX_GENESIS_BYTES:
            raise NodeError(f"{what} {path} is larger than {MAX_GENESIS_BYTES} bytes: not a genesis file")
        return path.read_bytes()
    except OSError as exc:
        raise NodeError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _decode_genesis(decode: Callable[[bytes], T], data: bytes, what: str) -> T:
    try:
        return decode(data)
    except Exception as exc:  # noqa: BLE001 -- DecodeError/RuleError/MLError: all mean "not this genesis"
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NodeError(f"{what} is not a valid genesis file: {text}") from None


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise NodeError(f"bad peer address {text!r}: expected HOST:PORT")
    return host, int(port)


@dataclass
class PeerBook:
    """Known addresses (for reconnecting and peer exchange), the addresses we reached ourselves, and bans
    (node.limits.ban_key -> unix time until).

    ``addrs`` holds every address heard of (unverified: what a peer advertised or an ADDR carried); ``tried``
    the ones we dialled and completed a handshake with — only those are relayed in ADDR answers (PROTOCOL §4.6),
    so a host cannot get its made-up listen ports passed on. All three are bounded (MAX_KNOWN_ADDRS, MAX_BANS)
    in memory and in ``peers.json``; expired bans are dropped."""

    addrs: dict[str, float] = field(default_factory=dict)   # "host:port" -> last seen
    bans: dict[str, float] = field(default_factory=dict)
    tried: dict[str, float] = field(default_factory=dict)   # "host:port" -> last handshake we completed there

    def add(self, host: str, port: int, now: float) -> None:
        self.addrs[f"{host}:{port}"] = now
        _trim_stalest(self.addrs, MAX_KNOWN_ADDRS)

    def reached(self, host: str, port: int, now: float) -> None:
        """We dialled ``host:port`` and completed a handshake: a verified address."""
        self.add(host, port, now)
        self.tried[f"{host}:{port}"] = now
        _trim_stalest(self.tried, MAX_KNOWN_ADDRS)

    def verified(self) -> list[str]:
        """Addresses we reached ourselves, most recently reached first."""
        return sorted(self.tried, key=lambda k: -self.tried[k])

    def ban(self, key: str, until: float) -> None:
        self.bans[key] = max(until, self.bans.get(key, 0.0))
        if len(self.bans) > MAX_BANS:
            self._trim_bans()

    def _trim_bans(self, now: float | None = None) -> None:
        if now is not None:
            self.bans = {k: v for k, v in self.bans.items() if v > now}
        if len(self.bans) > MAX_BANS:
            keep = sorted(self.bans.items(), key=lambda kv: -kv[1])[:MAX_BANS]
            self.bans = dict(keep)

    def is_banned(self, host: str, now: float) -> bool:
        until = self.bans.get(host)
        if until is None:
            return False
        if until <= now:
            del self.bans[host]
            return False
        return True

    def to_json(self, now: float | None = None) -> bytes:
        self._trim_bans(time.time() if now is None else now)
        return json.dumps({"addrs": self.addrs, "bans": self.bans, "tried": self.tried}, indent=1,
                          sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PeerBook:
        try:
            obj = json.loads(data)
            addrs = {str(k): float(v) for k, v in dict(obj.get("addrs", {})).items()}
            bans = {str(k): float(v) for k, v in dict(obj.get("bans", {})).items()}
            tried = {str(k): float(v) for k, v in dict(obj.get("tried", {})).items()}
        except (ValueError, TypeError, AttributeError):
            return cls()  # a damaged peers file only costs us our address book
        book = cls(addrs, bans, tried)
        for table in (book.addrs, book.tried):
            _trim_stalest(table, MAX_KNOWN_ADDRS)
        book._trim_bans(time.time())
        return book


def _trim_stalest(table: dict[str, float], cap: int) -> None:
    if len(table) > cap:
        for key, _ in sorted(table.items(), key=lambda kv: kv[1])[: len(table) - cap]:
            del table[key]


class Datadir:
    """Owns the datadir lock for the node's lifetime."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    def open(self) -> Datadir:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / "node.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise NodeError(f"cannot use datadir {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise NodeError(f"datadir {self.path} is in use by another node") from None
        self._lock_fd = fd
        return self

    def close(self) -> None:
        """Release the lock (and forget our ports); a no-op if we never held it (another node's files stay)."""
        if self._lock_fd is not None:
            (self.path / "ports.json").unlink(missing_ok=True)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def chain_dir(self) -> Path:
        return self.path / "chain"

    @property
    def log_path(self) -> Path:
        return self.path / "node.log"

    def load_genesis(self, genesis_file: Path | None, decode: Callable[[bytes], T]) -> tuple[T, bytes | None]:
        """(the decoded genesis, the bytes to save as its copy or None): from ``--genesis`` (which must match the
        stored copy, unless that copy is damaged) or from the stored copy. ``decode`` fully checks the bytes
        (consensus.protocol.genesis.load_genesis); any failure is a one-line NodeError. Writes nothing: the caller
        calls ``save_genesis`` once the store accepted the genesis, so a bad file never poisons the datadir."""
        stored_path = self.path / "genesis.bin"
        stored = _read(stored_path, "the datadir's genesis copy") if stored_path.exists() else None
        if genesis_file is None:
            if stored is None:
                raise NodeError(f"datadir {self.path} has no genesis yet: pass --genesis FILE")
            return _decode_genesis(decode, stored, f"{stored_path} (pass --genesis FILE to replace it)"), None
        data = _read(Path(genesis_file), "--genesis")
        genesis = _decode_genesis(decode, data, f"--genesis {genesis_file}")
        if stored is not None and stored != data:
            try:
                decode(stored)
            except Exception:  # noqa: BLE001 -- a damaged copy (older versions copied before checking)
                return genesis, data
            raise NodeError(f"--genesis {genesis_file} differs from the genesis this datadir was created with")
        return genesis, data if stored != data else None

    def save_genesis(self, data: bytes) -> None:
        atomic_write(self.path / "genesis.bin", data)

    def load_config(self) -> dict[str, Any]:
        path = self.path / "config.json"
        if not path.exists():
            return {}
        data = path.read_bytes()
        if len(data) > MAX_CONFIG_BYTES:
            raise NodeError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raise NodeError(f"{path}: {exc}") from None
        if not isinstance(obj, dict):
            raise NodeError(f"{path}: expected a JSON object")
        return obj

    def ensure_cookie(self) -> str:
        """Create a fresh auth cookie for this run (bitcoind-style) and return its secret."""
        secret = secrets.token_hex(32)
        atomic_write(self.path / ".cookie", f"__cookie__:{secret}".encode(), mode=0o600)
        return secret

    def load_peer_book(self) -> PeerBook:
        """The persisted address book; an unreadable or damaged file only costs us the book."""
        try:
            return PeerBook.from_json((self.path / "peers.json").read_bytes())
        except OSError:
            return PeerBook()

    def save_peer_book(self, book: PeerBook) -> None:
        atomic_write(self.path / "peers.json", book.to_json())

    def write_ports(self, p2p: int, api: int) -> None:
        atomic_write(self.path / "ports.json",
                     json.dumps({"p2p": p2p, "api": api, "pid": os.getpid(), "time": time.time()}).encode())


def read_ports(datadir: Path) -> dict[str, int] | None:
    """The ports a running node on ``datadir`` listens on, or None if it has not written them (yet)."""
    path = Path(datadir) / "ports.json"
    try:
        ports = json.loads(path.read_bytes())
        return {str(k): int(v) for k, v in ports.items()} if isinstance(ports, dict) else None
    except (FileNotFoundError, ValueError):
        return None


def read_cookie(datadir: Path) -> str | None:
    try:
        return (Path(datadir) / ".cookie").read_text().strip()
    except FileNotFoundError:
        return None
