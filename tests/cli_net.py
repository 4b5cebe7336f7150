"""The network tests/cli_functional/ runs every command against: README's walkthrough, run verbatim
(tests/walkthrough.py) — a 2-of-3 keyholder committee, an ordinary node on the default ports, a miner, a second
task (digits, with a bounty) and an extension of the first — plus the helpers its tests use: run a popchain
command as a user does (a subprocess, no traceback allowed), wait for the chain, a lying HTTP proxy."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.test_cli_e2e import ROOT, _get_json
from tests.walkthrough import Walkthrough

README_PASSWORD = "choose a wallet password"     # the walkthrough's $POPCHAIN_PASSWORD
NODE_URL = "http://127.0.0.1:9445"               # the walkthrough's ordinary node (the CLI's default --node)
MEMBER_URLS = ("http://127.0.0.1:9415", "http://127.0.0.1:9425", "http://127.0.0.1:9435")


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("POPCHAIN_")}
    out.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **extra)
    return out


@dataclass
class Net:
    dir: Path
    walk: Walkthrough
    url: str = NODE_URL
    keys: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True, timeout: float = 300, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "cli", *args], cwd=self.dir, capture_output=True, text=True,
                              timeout=timeout, env=env or globals()["env"](), input=stdin, check=False)
        assert "Traceback" not in proc.stderr, proc.stderr
        if check and proc.returncode != 0:
            raise AssertionError(f"popchain {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.run(*args, "--json", **kw).stdout)

    @property
    def wallet(self) -> list[str]:       # the walkthrough's sponsor wallet ("me"), here called alice
        return ["--wallet", str(self.dir / "me.popkeys"), "--password-file", str(self.dir / "pw")]

    @property
    def miner_wallet(self) -> list[str]:
        return ["--wallet", str(self.dir / "miner.popkeys"), "--password-file", str(self.dir / "pw")]

    @property
    def node(self) -> list[str]:
        return ["--node", self.url]

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = (self.dir / f"{name}.test.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=self.dir, stdout=log,
                                stderr=subprocess.STDOUT, env=env(), start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.test.log"
        if not path.exists():
            path = self.dir / f"{name}.log"          # the walkthrough's own logs (kh1.log, miner.log, ...)
        return path.read_text(errors="replace")

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_walkthrough_process(self, needle: str) -> None:
        """Stop one process the walkthrough started (its command line contains ``needle``), by its pid."""
        for pid in walkthrough_pids(self.walk, needle):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and _state(pid) != "Z":
                time.sleep(0.1)

    def node_args(self, *extra: str) -> list[str]:
        """The ordinary node's command line, as the README starts it."""
        return ["node", "run", "--datadir", str(self.dir / "node"), "--genesis", str(self.dir / "chain/genesis.bin"),
                "--peer", "127.0.0.1:9414", *extra]

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = 240) -> Any:
        deadline = time.monotonic() + timeout   # a liveness bound, not a timed assertion
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError, IndexError, TypeError):
                value = predicate()
                if value:
                    return value
            for name, p in self.procs.items():
                assert p.poll() is None or not name.startswith("node"), f"{name} exited early:\n{self.log(name)[-3000:]}"
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def status(self) -> dict:
        return _get_json(f"{self.url}/api/status")

    def get(self, path: str) -> Any:
        return _get_json(f"{self.url}{path}")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return "?"


def walkthrough_pids(walk: Walkthrough, needle: str) -> list[int]:
    """Live processes of the walkthrough's process group whose command line contains ``needle``."""
    assert walk.proc is not None
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != walk.proc.pid or _state(int(entry.name)) == "Z":
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ProcessLookupError):
            continue
        if needle in cmd:
            out.append(int(entry.name))
    return out


@contextlib.contextmanager
def walkthrough_net(directory: Path) -> Iterator[Net]:
    walk = Walkthrough(directory)
    n = Net(directory, walk)
    try:
        walk.run()
        (directory / "pw").write_text(README_PASSWORD + "\n")
        n.keys["alice"] = n.json("wallet", "address", *n.wallet)["address"]
        n.keys["miner"] = n.json("wallet", "address", *n.miner_wallet)["address"]
        yield n
    finally:
        for name in list(n.procs):
            n.stop(name)
        walk.stop()


@contextlib.contextmanager
def lying_node(upstream: str, rewrite: Callable[[str, Any], Any]) -> Iterator[str]:
    """A real HTTP server in front of the node that rewrites JSON answers (the attacker an auditor faces)."""
    import asyncio
    import threading

    import aiohttp
    from aiohttp import web
    ready: dict[str, Any] = {}

    async def handle(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as s, s.get(upstream + request.path_qs) as r:
            body = await r.read()
            if r.content_type == "application/json":
                return web.json_response(rewrite(request.path, json.loads(body)), status=r.status)
            return web.Response(body=body, status=r.status, content_type=r.content_type)

    def serve() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        ready["port"] = site._server.sockets[0].getsockname()[1]     # type: ignore[union-attr]
        ready["loop"] = loop
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    while "loop" not in ready:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{ready['port']}"
    finally:
        ready["loop"].call_soon_threadsafe(ready["loop"].stop)
        thread.join(10)
