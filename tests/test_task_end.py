"""The end of a task as a user meets it (issue 11 item 5), on one real keyholder node process whose only task
(2 rounds) has run out: `/api/status` says closed (never `open` with open round 0), `wallet send` says no task is
open and that the transfer confirms in a ledger round once a staked miner enters one (`--no-wait` returns at once), `miner run` exits with a
clear message and its documented exit code; the task views (`/api/tasks`, `/api/champion?task=`) agree.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nacl.pwhash
import pytest

from chain.address import address_of, encode_address
from ml.shards import SecretTask
from node.tools.client import ApiCallError, NodeClient
from node.tools.miner import EXIT_NO_OPEN_TASK
from node.tools.testing import ScriptedMiner, TestChain, make_test_chain, wait_for
from tests.test_cli_e2e import ROOT, _env, _get_json, assert_one_line_error, background, ports_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
PASSWORD = "task end password"


@dataclass
class ClosedNet:
    dir: Path
    url: str
    chain: TestChain
    wallet: list[str]

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "cli", *args], cwd=self.dir, capture_output=True, text=True,
                              timeout=timeout, env=_env())
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc


def _wallet(directory: Path, chain: TestChain) -> list[str]:
    from chain.wallet import Wallet
    (directory / "pw").write_text(PASSWORD + "\n")
    w = Wallet.create(directory / "w.popkeys", PASSWORD, opslimit=nacl.pwhash.argon2id.OPSLIMIT_MIN,
                      memlimit=nacl.pwhash.argon2id.MEMLIMIT_MIN)
    for i, _ in enumerate(chain.users):   # the seeds of node.tools.testing.seeded_keypair
        w.import_seed(hashlib.sha256(f"popchain/testing/user{i}".encode()).digest(), f"user{i}")
    w.import_seed(hashlib.sha256(b"popchain/testing/miner0").digest(), "miner0")
    return ["--wallet", str(directory / "w.popkeys"), "--password-file", str(directory / "pw")]


async def _play_until_closed(url: str, chain: TestChain) -> None:
    async with NodeClient(url) as client:
        miner = ScriptedMiner(client, chain.miners[0], chain.genesis)
        await asyncio.wait_for(miner.run(), 180)

        async def closed():
            return (await client.status())["round_phase"] == "closed"
        await wait_for(closed, timeout=60, what="the task to close")


@pytest.fixture(scope="module")
def closed_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClosedNet]:
    d = tmp_path_factory.mktemp("task-end")
    chain = make_test_chain(d / "chain", rounds=2, n_miners=1, n_users=2)
    wallet = _wallet(d, chain)
    args = ["-m", "cli", "node", "run", "--datadir", str(d / "kh"), "--genesis", str(chain.genesis_path),
            "--keyholder", str(chain.keyholder_path), "--port", "0", "--api-port", "0"]
    with background(args, ROOT, d / "kh.log") as proc:
        url = f"http://127.0.0.1:{ports_of(d / 'kh', proc)['api']}"
        asyncio.run(_play_until_closed(url, chain))
        yield ClosedNet(d, url, chain, wallet)


def test_status_says_closed_when_no_task_is_open(closed_net: ClosedNet) -> None:
    s = _get_json(f"{closed_net.url}/api/status")
    assert s["round_phase"] == "closed" and s["open_round"] == 0
    assert s["tasks_open"] == 0 and s["shards_left"] == 0 and s["round_task"] is None
    assert [(t["task_id"], t["status"], t["shards_left"]) for t in s["tasks"]] == [(0, "closed", 0)]
    tasks = _get_json(f"{closed_net.url}/api/tasks")
    [t0] = tasks["tasks"]
    assert tasks["tasks_open"] == 0 and t0["shards_total"] == 2 and t0["shards_revealed"] == 2
    detail = _get_json(f"{closed_net.url}/api/tasks/0")
    assert [k["round"] for k in detail["revealed"]] == [1, 2] and detail["history"][0]["round"] == 0
    champ = _get_json(f"{closed_net.url}/api/champion?task=0")
    assert champ["task_id"] == 0 and champ["champion"] == detail["champion"] == s["champion"]


def test_task_views_refuse_bad_and_unknown_ids(closed_net: ClosedNet) -> None:
    async def probe():
        async with NodeClient(closed_net.url) as c:
            out = {}
            for path in ("/api/tasks/7", "/api/tasks/x1", "/api/champion?task=7", "/api/champion?task=-1",
                         "/api/tasks/" + "9" * 20):
                with pytest.raises(ApiCallError) as err:
                    await c.get(path)
                out[path] = (err.value.status, err.value.code)
            return out
    out = asyncio.run(probe())
    assert out["/api/tasks/7"] == (404, "unknown-task") and out["/api/champion?task=7"] == (404, "unknown-task")
    assert out["/api/tasks/x1"][0] == out["/api/champion?task=-1"][0] == out["/api/tasks/" + "9" * 20][0] == 400


def test_wallet_send_says_no_task_is_open(closed_net: ClosedNet) -> None:
    to = encode_address(address_of(closed_net.chain.users[1].public))
    base = ["wallet", "send", "--to", to, "--amount", "5", "--key", "user0", "--node", closed_net.url,
            *closed_net.wallet]
    quick = closed_net.cli(*base, "--no-wait")
    assert quick.returncode == 0 and "no task is open" in quick.stdout and "confirms in a ledger round" in quick.stdout
    waited = closed_net.cli(*base, "--timeout", "1")
    assert_one_line_error(waited, "no task is open")
    assert "still pending" in waited.stderr and "confirms in a ledger round" in waited.stdout
    pending = _get_json(f"{closed_net.url}/api/accounts/{encode_address(address_of(closed_net.chain.users[0].public))}")
    assert len(pending["pending"]) == 2     # no staked miner enters a ledger round here: both wait in the mempool


def test_miner_exits_with_a_clear_message(closed_net: ClosedNet) -> None:
    proc = closed_net.cli("miner", "run", "--key", "miner0", "--node", closed_net.url, "--retry", "0",
                          *closed_net.wallet, timeout=60)
    assert proc.returncode == EXIT_NO_OPEN_TASK == 6
    assert "no task is open on this chain" in proc.stderr and "Traceback" not in proc.stderr



def test_task_list_and_show_say_closed(closed_net: ClosedNet) -> None:
    listed = closed_net.cli("task", "list", "--node", closed_net.url)
    assert listed.returncode == 0 and "closed" in listed.stdout and "no task is open" in listed.stdout
    shown = closed_net.cli("task", "show", "0", "--node", closed_net.url, "--json")
    data = json.loads(shown.stdout)
    assert data["task_id"] == 0 and data["status"] == "closed" and data["shards_left"] == 0
    unknown = closed_net.cli("task", "show", "5", "--node", closed_net.url)
    assert_one_line_error(unknown, "unknown-task")
    info = closed_net.cli("chain", "info", "--node", closed_net.url)
    assert "closed" in info.stdout and "0 open of 1" in info.stdout and "no task is open" in info.stdout
    bad = closed_net.cli("task", "show", "x", "--node", closed_net.url)
    assert bad.returncode == 2 and "expected a task id" in bad.stderr


def test_a_closed_chain_says_closed_everywhere_and_every_round_is_decided(closed_net: ClosedNet) -> None:
    """Issue 20 item 4: on a closed chain every past round reads as decided (crowned / plain / void / idle — never "not
    decided yet"), the explorer's round pages exist for every round, and the live phase says "closed" as
    /api/status and the CLI do, never "idle"."""
    import urllib.request
    s = _get_json(f"{closed_net.url}/api/status")
    for r in range(1, s["round"] + 1):
        out = closed_net.cli("chain", "round", str(r), "--node", closed_net.url)
        assert out.returncode == 0 and "not decided" not in out.stdout, out.stdout
        outcome = next(ln for ln in out.stdout.splitlines() if ln.startswith("outcome"))
        status = _get_json(f"{closed_net.url}/api/rounds/{r}")["status"]
        assert outcome.split()[1].rstrip(":") == status and status in ("crowned", "plain", "void", "idle")
        with urllib.request.urlopen(f"{closed_net.url}/round/{r}", timeout=10) as resp:
            assert resp.status == 200
    with urllib.request.urlopen(f"{closed_net.url}/api/events", timeout=10) as resp:   # the hello event
        hello = next(json.loads(line[6:]) for line in resp if line.startswith(b"data: "))
    assert hello["phase"] == "closed"


def test_task_extend_of_a_rows_task_takes_new_rows(closed_net: ClosedNet) -> None:
    from ml.task import Dataset, synthetic, write_feature_csv
    spec = closed_net.chain.genesis.task.spec      # make_test_chain's task: rows of ml.task.synthetic
    fresh = synthetic(b"new rows for the test task", n_samples=250, n_features=12, n_informative=6, n_classes=3)
    write_feature_csv(closed_net.dir / "more.csv", Dataset(spec, fresh.X, fresh.y))
    out = closed_net.cli("task", "extend", "0", "--rounds", "2", "--data", f"csv:{closed_net.dir / 'more.csv'}",
                         "--node", closed_net.url, "--out", str(closed_net.dir / "ext"), "--json")
    assert out.returncode == 0, out.stderr
    ext = json.loads(out.stdout)
    assert ext["task_id"] == 0 and ext["seq"] == 1 and ext["first_shard"] == 3 and ext["rounds"] == 2
    refused = closed_net.cli("task", "extend", "0", "--rounds", "9", "--data", f"csv:{closed_net.dir / 'more.csv'}",
                             "--node", closed_net.url, "--out", str(closed_net.dir / "ext2"))
    assert_one_line_error(refused, "need")
    no_data = closed_net.cli("task", "extend", "0", "--rounds", "1", "--node", closed_net.url, "--out", "x")
    assert_one_line_error(no_data, "--data csv:PATH")


def test_post_task_refuses_hostile_bodies(closed_net: ClosedNet) -> None:
    import urllib.error
    import urllib.request

    def post(body: bytes) -> tuple[int, str]:
        req = urllib.request.Request(f"{closed_net.url}/api/tasks", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:   # loopback only
                return resp.status, ""
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())["error"]["code"]
    assert post(b'{"message": "zz"}') == (400, "bad-request")
    assert post(b'{"nothing": 1}') == (400, "bad-request")
    assert post(b"[" * 40 + b"]" * 40)[0] == 400
    assert post(b'{"message": "' + b"00" * (5 << 20) + b'"}') == (413, "body-too-large")
    status, code = post(json.dumps({"message": "93010203"}).encode())   # not a task message: typed refusal
    assert status in (400, 422) and code


def test_post_task_refuses_forgeries_unknown_tasks_and_bad_sequences(closed_net: ClosedNet) -> None:
    from consensus.protocol.tasks import make_task_announcement, make_task_extension
    from ml.task import synthetic
    from node.tools.task_setup import build_extension
    from node.tools.testing import seeded_keypair
    g = closed_net.chain.genesis
    kh, stranger = seeded_keypair("keyholder"), seeded_keypair("stranger")
    fresh = synthetic(b"rows for forged batches", n_samples=300, n_features=12, n_informative=6, n_classes=3)
    from ml.task import Dataset
    batch = build_extension(g.task, 0, g.n_rounds + 1, 1, data=Dataset(g.task.spec, fresh.X, fresh.y))

    async def post(msg, secret: bytes | None = None) -> tuple[int, str]:
        async with NodeClient(closed_net.url) as c:
            try:
                await c.post_task(msg.encode(), secret=secret)
                return 200, "accepted"
            except ApiCallError as err:
                return err.status, err.code

    def ext(task_id: int, seq: int, signers):
        return make_task_extension(signers, g.chain_id, task_id, seq, batch.commitments, batch.ciphertexts)
    unsigned = make_task_announcement([], closed_net.chain.users[0], g.chain_id, g.task.encode(), g.block.model)
    forged = make_task_announcement([stranger], closed_net.chain.users[0], g.chain_id, g.task.encode(),
                                    g.block.model)
    assert asyncio.run(post(unsigned)) == (422, "bad-task-sig")
    assert asyncio.run(post(forged)) == (422, "bad-task-sig")              # a key outside the governance set
    assert asyncio.run(post(ext(0, 1, [stranger]))) == (422, "bad-task-sig")
    assert asyncio.run(post(ext(9, 1, [kh]))) == (422, "unknown-task")
    # a gap in the sequence waits in the bounded pool (like a nonce gap): never activated before seq 1
    assert asyncio.run(post(ext(0, 2, [kh])))[0] == 200
    wrong_keys = SecretTask(batch.secret.secret.keys * 2, batch.secret.secret.salts * 2).encode()
    status, code = asyncio.run(post(ext(0, 1, [kh]), secret=wrong_keys))     # keys that do not fit the batch
    assert status == 422 and code == "bad-task-secret"
    assert _get_json(f"{closed_net.url}/api/status")["round_phase"] == "closed"   # nothing of that revived it
