"""README's walkthrough, run verbatim: every ```sh block that follows a ``<!-- walkthrough -->`` line, in order,
as one bash script (``set -euo pipefail``) in a fresh directory, with ``popchain`` on PATH (this interpreter's).

The script leaves its nodes and miner running in the background (as the README says); they share the script's
process group, which ``Walkthrough.stop`` ends. Used by tests/cli_functional/, whose tests then run
every command against the chain the walkthrough built (a 2-of-3 committee from a DKG, two tasks, an extension).
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- walkthrough -->"
PORTS = (9414, 9415, 9424, 9425, 9434, 9435, 9444, 9445, 9450)     # what the README's commands listen on


def readme_blocks(readme: Path = ROOT / "README.md") -> list[str]:
    """The walkthrough's shell blocks, verbatim, in README order."""
    text = readme.read_text()
    blocks = re.findall(re.escape(MARK) + r"\s*```sh\n(.*?)```", text, flags=re.DOTALL)
    if not blocks:
        raise AssertionError("README has no walkthrough blocks")
    return blocks


def script_text() -> str:
    return "set -euo pipefail\n" + "\n".join(readme_blocks())


def ports_free() -> list[int]:
    """README ports something already listens on (another run of the walkthrough: it would fail to start)."""
    import socket
    busy = []
    for port in PORTS:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


@dataclass
class Walkthrough:
    dir: Path
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    def run(self, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run the walkthrough to its end (its background processes keep running); raise with its output if a
        command fails."""
        busy = ports_free()
        assert not busy, f"the README walkthrough's ports {busy} are in use: another walkthrough is running"
        (self.dir / "walkthrough.sh").write_text(script_text())
        bindir = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if not k.startswith("POPCHAIN_")}
        env.update(PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1",
                   PYTHONPATH=str(ROOT))
        self.env = env
        log = (self.dir / "walkthrough.log").open("wb")
        self.proc = subprocess.Popen(["bash", "walkthrough.sh"], cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"the walkthrough did not finish in {timeout:.0f} s:\n{self.output()[-4000:]}") \
                from None
        out = self.output()
        assert code == 0, f"the README walkthrough failed (exit {code}):\n{out[-6000:]}"
        assert "Traceback" not in out, out[-6000:]
        return subprocess.CompletedProcess(["bash", "walkthrough.sh"], code, out, "")

    def output(self) -> str:
        return (self.dir / "walkthrough.log").read_text(errors="replace")

    def stop(self) -> None:
        """End every process the walkthrough started (its process group), politely first."""
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(self.proc.pid):
                time.sleep(0.2)
            if not _group_alive(self.proc.pid):
                break


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
