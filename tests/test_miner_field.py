"""`popchain miner run` as users run it (issues 20 and 22), real processes on one keyholder node: a coinless
miner is told the bond and its balance; a miner bringing its own model (`--trainer module:function`, run in the
miner's process) wins; a `--model-file` is entered; and a miner started right after `task announce` on a
closed chain waits for the task to activate and mines it instead of exiting 6."""
from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import nacl.pwhash
import pytest

from benchmarks.living_chain import announce_task
from node.tools.client import NodeClient
from node.tools.testing import make_test_chain, wait_for
from tests.test_cli_e2e import ROOT, _env, background, ports_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
PASSWORD = "miner field password"
TRAINER = """
from sklearn.ensemble import HistGradientBoostingClassifier
def fit(X, y, spec):
    print(f"my trainer: {X.shape[0]} rows of {spec.name}", flush=True)
    return HistGradientBoostingClassifier(max_iter=30).fit(X, y)
"""


def _wallet(d: Path) -> list[str]:
    from chain.wallet import Wallet
    (d / "pw").write_text(PASSWORD + "\n")
    w = Wallet.create(d / "w.popkeys", PASSWORD, opslimit=nacl.pwhash.argon2id.OPSLIMIT_MIN,
                      memlimit=nacl.pwhash.argon2id.MEMLIMIT_MIN)
    w.import_seed(hashlib.sha256(b"popchain/testing/miner0").digest(), "miner0")     # funded in genesis
    w.import_seed(hashlib.sha256(b"popchain/testing/nobody").digest(), "broke")      # not funded
    return ["--wallet", str(d / "w.popkeys"), "--password-file", str(d / "pw")]


def _cli(d: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "cli", *args], cwd=d, capture_output=True, text=True, check=False,
                          timeout=timeout, env=_env())
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_miners_as_users_run_them(tmp_path: Path) -> None:
    chain = make_test_chain(tmp_path / "chain", rounds=3, n_miners=1, n_users=1)
    wallet = _wallet(tmp_path)
    (tmp_path / "my_trainer.py").write_text(TRAINER)
    node = ["-m", "cli", "node", "run", "--datadir", str(tmp_path / "kh"), "--genesis", str(chain.genesis_path),
            "--keyholder", str(chain.keyholder_path), "--port", "0", "--api-port", "0"]
    with background(node, ROOT, tmp_path / "kh.log") as proc:
        url = f"http://127.0.0.1:{ports_of(tmp_path / 'kh', proc)['api']}"
        mine = ["miner", "run", "--node", url, "--retry", "0", *wallet]

        # issue 20 item 16: a coinless miner learns the bond and its balance, in words
        broke = _cli(tmp_path, *mine, "--key", "broke", "--model", "linear", "--rounds", "1")
        # (issue 18: the stake is the key's bond account; the miner tops it up from the key when it can)
        assert "no-bond" in broke.stdout, broke.stdout + broke.stderr
        assert "entry bond of 3,125,000 grains" in broke.stdout and "holds 0" in broke.stdout

        # bring your own model: the user's function runs in the miner process and its model wins round 1
        own = _cli(tmp_path, *mine, "--key", "miner0", "--trainer", "my_trainer:fit", "--rounds", "1", "--json",
                   "--max-rows", "50000")
        assert own.returncode == 0, own.stderr
        report = json.loads(own.stdout.splitlines()[-1])
        assert report["family"] == "trainer" and report["won"], own.stdout
        assert "my trainer: " in own.stdout + own.stderr and "with trainer my_trainer:fit" in own.stderr

        # a ready model file: the champion itself, whose bytes may never be entered again (§3.6 step 7): the miner
        # says so instead of entering it (a keyholder would refuse it) and the key enters another model at once
        champ = json.loads(_cli(tmp_path, "model", "champion", "--node", url, "--json").stdout)["model_hash"]
        assert _cli(tmp_path, "model", "get", champ, "--node", url, "--out", "m.popmodel").returncode == 0
        filed = _cli(tmp_path, *mine, "--key", "miner0", "--model-file", "m.popmodel", "--rounds", "1", "--json")
        assert filed.returncode == 0, filed.stderr
        report = json.loads(filed.stdout.splitlines()[-1])
        assert report["family"] == "file" and report["check"] == [0, 0] and not report["won"]
        assert report["status"] == "entry-refused:duplicate-model", filed.stdout

        async def until_closed() -> None:
            async with NodeClient(url) as c:
                async def closed() -> bool:
                    return (await c.status())["round_phase"] == "closed"
                await wait_for(closed, timeout=120, what="the genesis task to close")
        _cli(tmp_path, *mine, "--key", "miner0", "--model", "linear", "--enter", "always", "--rounds", "2")   # spends the last shards
        asyncio.run(until_closed())

        # issue 20 item 17: started right after the announcement, the miner waits for the task to activate
        with background(["-m", "cli", *mine, "--key", "miner0", "--model", "linear", "--rounds", "1", "--json"],
                        tmp_path, tmp_path / "late.log") as late:
            time.sleep(1.0)

            async def announce() -> None:
                async with NodeClient(url) as c:
                    await announce_task(c, chain, tmp_path / "task1", rounds=2, shard_size=100)
            asyncio.run(announce())
            assert late.wait(180) == 0, (tmp_path / "late.log").read_text()
        text = (tmp_path / "late.log").read_text()
        assert "waiting up to 3 rounds" in text and "no task is open on this chain" not in text
        reports = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert [r["task"] for r in reports] == [1], text
