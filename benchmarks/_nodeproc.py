"""Node processes for the network benchmarks and tests: ``python -m node run`` as a real child process.

Shared by benchmarks/load.py, benchmarks/flood.py and benchmarks/lan.py (there with an ``ip netns exec`` prefix).
It only starts, watches and stops processes and reads their ports file and /proc status; it never reaches into a
node's internals.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class NodeProc:
    """One node process. ``start()`` then ``await ready()``; ``stop()`` always (SIGTERM, then SIGKILL)."""

    def __init__(self, datadir: Path, *, genesis: Path | None, peers: Sequence[tuple[str, int]] = (),
                 keyholder: Path | None = None, listen: str = "127.0.0.1", port: int = 0, api_port: int = 0,
                 api_listen: str | None = None, prefix: Sequence[str] = (), log_level: str = "WARNING",
                 extra_args: Sequence[str] = (), nofile: int | None = None) -> None:
        self.datadir = datadir
        self.api_host = api_listen or "127.0.0.1"
        self.listen = listen
        cmd = [*prefix, sys.executable, "-m", "node", "run", "--datadir", str(datadir), "--port", str(port),
               "--api-port", str(api_port), "--listen", listen, "--log-level", log_level, *extra_args]
        if api_listen is not None:
            cmd += ["--api-listen", api_listen]
        if genesis is not None:
            cmd += ["--genesis", str(genesis)]
        if keyholder is not None:
            cmd += ["--keyholder", str(keyholder)]
        for host, p in peers:
            cmd += ["--peer", f"{host}:{p}"]
        self.cmd = cmd
        self.nofile = nofile          # RLIMIT_NOFILE (soft and hard) of the child, e.g. `ulimit -n 1024`
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, Any] = {}

    def start(self) -> NodeProc:
        self.datadir.mkdir(parents=True, exist_ok=True)
        (self.datadir / "ports.json").unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        limits = ["prlimit", f"--nofile={self.nofile}:{self.nofile}"] if self.nofile is not None else []
        self.proc = subprocess.Popen([*limits, *self.cmd], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        return self

    def open_fds(self) -> int:
        """Descriptors the node process holds (0 if gone)."""
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except (FileNotFoundError, ProcessLookupError):
            return 0

    @property
    def pid(self) -> int:
        """The node's own pid (under ``ip netns exec`` the exec'd python keeps the child's pid)."""
        return int(self.ports.get("pid") or (self.proc.pid if self.proc else 0))

    async def ready(self, timeout: float = 90.0) -> dict[str, Any]:
        """Wait for D/ports.json of this process (a liveness bound, not a timed assertion)."""
        assert self.proc is not None, "start() first"
        async with asyncio.timeout(timeout):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"node {self.datadir.name} exited with {self.proc.returncode}; "
                                       f"see {self.datadir / 'node.log'}")
                try:
                    ports = json.loads((self.datadir / "ports.json").read_text())
                except (FileNotFoundError, ValueError):
                    ports = {}
                if isinstance(ports, dict) and ports.get("pid") == self.proc.pid:
                    self.ports = dict(ports)
                    return self.ports
                await asyncio.sleep(0.05)

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.ports['api']}"

    @property
    def p2p_addr(self) -> tuple[str, int]:
        return (self.listen, int(self.ports["p2p"]))

    def rss_mb(self) -> float:
        """VmRSS of the node process in MB (0 if gone)."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        return 0.0

    def cpu_s(self) -> float:
        """CPU seconds the node process has used (all its threads; 0 if gone): the sum of its threads' run time
        in nanoseconds (/proc/PID/task/*/schedstat) where the kernel keeps it, else user + system clock ticks
        (10 ms steps: too coarse for a sub-second load)."""
        try:
            total = 0
            for task in os.listdir(f"/proc/{self.pid}/task"):
                try:
                    total += int(Path(f"/proc/{self.pid}/task/{task}/schedstat").read_text().split()[0])
                except FileNotFoundError:   # a thread that just ended
                    continue
            if total > 0:
                return total / 1e9
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            pass
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            return 0.0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed. Returns the exit code."""
        if self.proc is None:
            return None
        return terminate(self.proc, timeout)


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """SIGTERM ``proc`` (if it still runs), wait up to ``timeout`` seconds, SIGKILL if needed; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def stop_all(nodes: Sequence[NodeProc]) -> None:
    """Stop many nodes: SIGTERM to all first, so their shutdowns overlap."""
    for n in nodes:
        if n.alive():
            assert n.proc is not None
            n.proc.send_signal(signal.SIGTERM)
    for n in nodes:
        n.stop()


def metric_sum(text: str, name: str) -> float:
    """Sum of a Prometheus counter/gauge over all its label sets in a /metrics text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (len(line) == len(name) or line[len(name)] in " {"):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return total
