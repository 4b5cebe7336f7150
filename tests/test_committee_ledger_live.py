"""Issue 21 on a 2-of-3 keyholder committee of real processes: a closed committee chain never waits.

Three member node processes (``node run --keyholder keyholder-i.secret``, a DKG committee: what ``popchain demo``
runs) and one ``popchain miner run`` process (the command-line miner, its key in a wallet) on a committee chain
whose sealed data task has TASK_ROUNDS rounds at the default α = 1/20. A user sends a transfer, alternately with
``popchain wallet send`` and through the API, in every round while the task runs and LEDGER_TRANSFERS more once
it has ended. Each must confirm within 2 rounds of its arrival; after the task ended they confirm in LEDGER
rounds (PROTOCOL §3.13), whose beacons the committee reveals with the threshold VRF key of the round's ledger
point. The champion never moves after the task ended, every round in the task's champion history is a crowned
one, and no member ever signs two contents (no equivocation, no committee evidence on any node).

Old code: a committee member never drafted a ledger round's beacon, so once the task ended the chain offered no
ledger round, ``miner run`` exited, and the transfers waited for a new task (never confirmed).
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from benchmarks._nodeproc import NodeProc, stop_all
from chain.address import address_of, encode_address
from chain.tx import make_transfer
from node.tools.client import NodeClient
from node.tools.testing import TestChain, make_test_chain
from tests.seeded_wallet import seeded_wallet
from tests.test_cli_e2e import background, popchain

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]
TASK_ROUNDS = 2
LEDGER_TRANSFERS = 4


class Net:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.chain: TestChain = make_test_chain(root / "chain", rounds=TASK_ROUNDS, n_miners=1, n_users=2,
                                                easy=False, keyholders=3, threshold=2, entry_window_s=2,
                                                opening_window_s=2)
        self.members: list[NodeProc] = []
        self.wallet = seeded_wallet(root, ("miner0", "user0"))

    async def start(self) -> None:
        for i, path in enumerate(self.chain.member_paths):
            peers = [m.p2p_addr for m in self.members]
            self.members.append(NodeProc(self.root / f"M{i + 1}", genesis=self.chain.genesis_path, peers=peers,
                                         keyholder=path, log_level="INFO"))
            await self.members[i].start().ready()

    def stop(self) -> None:
        stop_all(self.members)


async def _send(net: Net, url: str, client: NodeClient, nonce: int) -> str:
    """One transfer from user0: even nonces by `popchain wallet send` (CLI), odd ones through the API."""
    chain = net.chain
    payee = address_of(chain.users[1].public)
    amount = 1_000 + nonce
    if nonce % 2 == 0:
        out = await asyncio.to_thread(popchain, "wallet", "send", "--to", encode_address(payee), "--amount", str(amount), "--fee",
                                      "1000", "--key", "user0", "--node", url, "--no-wait", "--json",
                                      *net.wallet, cwd=net.root)
        return str(json.loads(out.stdout[out.stdout.index("{"):])["txid"])
    tx = make_transfer(chain.users[0], chain.genesis.chain_id, payee, amount, 1_000, nonce)
    await client.send_tx(tx.encode())
    return tx.txid.hex()


async def _drive(net: Net, url: str, deadline_s: float) -> dict:
    waits: list[tuple[str, int, int]] = []     # (phase, arrival round, confirmation round)
    deadline = time.monotonic() + deadline_s
    champion_at_close = None
    async with NodeClient(url) as client:
        nonce, ledger_sent = 0, 0
        while time.monotonic() < deadline:
            status = await client.status()
            closed = status["tasks_open"] == 0
            if closed and champion_at_close is None:
                champion_at_close = (await client.champion(0))["champion"]
            if closed and ledger_sent >= LEDGER_TRANSFERS:
                break
            arrival = status["round"]
            txid = await _send(net, url, client, nonce)
            while time.monotonic() < deadline:
                got = await client.tx(txid)
                if got["status"] == "confirmed":
                    block = await client.block(got["height"])
                    waits.append(("closed" if closed else "task", arrival, block["header"]["round"]))
                    break
                await asyncio.sleep(0.2)
            nonce += 1
            ledger_sent += closed
        last = (await client.status())["round"]
        rounds = {r: (await client.round(r))["status"] for r in range(1, last)}
        history = (await client.task_info(0))["history"]
        champion = (await client.champion(0))["champion"]
    statuses = []
    for m in net.members:
        async with NodeClient(m.api_url) as c:
            statuses.append(await c.status())
    return {"waits": waits, "rounds": rounds, "history": history, "champion": champion,
            "champion_at_close": champion_at_close, "statuses": statuses}


@pytest.fixture(scope="module")
def seen(tmp_path_factory):
    root = tmp_path_factory.mktemp("committee_ledger")
    net = Net(root)
    try:
        asyncio.run(net.start())
        url = net.members[0].api_url
        miner = ["-m", "cli", "miner", "run", "--key", "miner0", "--model", "linear", "--node", url, *net.wallet]
        with background(miner, root, root / "miner.log"):
            out = asyncio.run(_drive(net, url, 360))
        out["log"] = (root / "miner.log").read_text(errors="replace")[-3000:]
        yield out
    finally:
        net.stop()


def test_transfers_confirm_within_two_rounds_after_the_committee_task_ended(seen) -> None:
    waits, rounds = seen["waits"], seen["rounds"]
    phases = [p for p, _, _ in waits]
    assert phases.count("closed") == LEDGER_TRANSFERS, (waits, rounds, seen["log"])
    late = [w for w in waits if w[2] - w[1] > 2]
    assert not late, (late, rounds, seen["log"])
    # after the task the transfers were confirmed by ledger rounds' plain blocks (rounds after the task's)
    ledger = [c for p, _, c in waits if p == "closed"]
    assert all(c > TASK_ROUNDS and rounds.get(c, "plain") == "plain" for c in ledger), (waits, rounds)


def test_the_champion_never_moves_and_no_member_equivocates(seen) -> None:
    rounds = seen["rounds"]
    assert seen["champion_at_close"] is not None and seen["champion"] == seen["champion_at_close"]
    crowned = {r for r, s in rounds.items() if s == "crowned"}
    assert {h["round"] for h in seen["history"] if h["round"] > 0} == crowned, (seen["history"], rounds)
    assert all(r <= TASK_ROUNDS for r in crowned), rounds
    for st in seen["statuses"]:
        assert st["equivocations"] == [] and st["committee_evidence"] == [], st
    assert len({st["tip"] for st in seen["statuses"]}) == 1 or max(st["height"] for st in seen["statuses"]) > 0
