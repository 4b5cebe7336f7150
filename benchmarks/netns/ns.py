"""Network namespaces for the LAN harness: one hub namespace holding a bridge, one namespace per node joined to
it by a veth pair, addresses 10.77.0.0/16 that exist only inside these namespaces (nothing is created in, or
routed to, the namespace the harness was started in). Everything is named ``poplan<pid>-…``: ``cleanup`` removes a
run's namespaces (and so its veths and bridge), ``remove_stale`` those of runs whose process is gone, first
killing by pid what still runs inside them (a harness killed with SIGKILL leaves its nodes running there).

It only runs ``ip`` and ``setns(2)``; it starts no node.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

PREFIX = "poplan"
CLONE_NEWNET = 0x40000000
HUB_ADDR = "10.77.255.254"
T = TypeVar("T")


def node_addr(i: int) -> str:
    return f"10.77.{i // 250}.{i % 250 + 1}"


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None if they can): needs root, iproute2 and a working netns."""
    if os.geteuid() != 0:
        return "network namespaces need root (run as root, as CI does)"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed (.ci/run installs it)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as exc:
        return f"'ip netns add' failed: {exc}"
    _ip("netns", "del", probe, check=False)
    return None


def _ip(*args: str, check: bool = True) -> str:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip() or res.returncode}")
    return res.stdout


def list_ours() -> list[str]:
    names = []
    for line in _ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX):
            names.append(name)
    return names


def _delete(name: str) -> None:
    """Kill what still runs inside one of our namespaces (nodes, proxies of a killed run: by pid, from
    ``ip netns pids``), then delete it; its veth ends and bridge go with it."""
    for pid in _ip("netns", "pids", name, check=False).split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    _ip("netns", "del", name, check=False)


def remove_stale() -> list[str]:
    """Delete namespaces left by harness runs whose process no longer exists (a killed run)."""
    removed = []
    for name in list_ours():
        m = re.match(rf"{PREFIX}(\d+)-", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _delete(name)
            removed.append(name)
    return removed


@dataclass
class Lan:
    """n node namespaces on one bridge. ``create()``; ``cleanup()`` always (try/finally)."""

    n: int
    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    made: list[str] = field(default_factory=list)

    @property
    def hub(self) -> str:
        return f"{self.tag}-hub"

    def ns(self, i: int) -> str:
        return f"{self.tag}-n{i}"

    def exec_prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns(i)]

    def create(self) -> None:
        remove_stale()
        hub = self.hub
        _ip("netns", "add", hub)
        self.made.append(hub)
        _ip("-n", hub, "link", "set", "lo", "up")
        _ip("-n", hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", hub, "addr", "add", f"{HUB_ADDR}/16", "dev", "br0")
        _ip("-n", hub, "link", "set", "br0", "up")
        for i in range(self.n):
            ns = self.ns(i)
            _ip("netns", "add", ns)
            self.made.append(ns)
            # both ends made straight inside their namespaces: no interface ever exists outside them
            _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"v{i}", "netns", hub)
            _ip("-n", hub, "link", "set", f"v{i}", "master", "br0")
            _ip("-n", hub, "link", "set", f"v{i}", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{node_addr(i)}/16", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def cleanup(self) -> None:
        """Delete this run's namespaces (killing anything still inside: the caller stops its nodes first)."""
        for name in reversed(self.made):
            _delete(name)
        self.made.clear()
        for name in list_ours():   # anything of this run left by a failed create()
            if name.startswith(self.tag + "-"):
                _delete(name)


def run_in_namespace(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a new thread that has entered namespace ``name`` (setns(2) is per thread): every socket it
    and its child threads open lives there. The calling thread's namespace is untouched."""
    libc = ctypes.CDLL(None, use_errno=True)
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {name} failed")
        finally:
            os.close(fd)
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)
    thread = threading.Thread(target=target, name=f"netns-{name}")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def links_crossing(edges: Sequence[tuple[int, int]], half: set[int]) -> set[tuple[int, int]]:
    return {(a, b) for a, b in edges if (a in half) != (b in half)}
