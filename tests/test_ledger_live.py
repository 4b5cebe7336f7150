"""Issue 21 on real processes: the ledger never waits for a model.

One keyholder node process and one `popchain miner run` process (the command-line miner, its key in a wallet)
on a small chain whose task has 4 rounds at the default α = 1/20, so most rounds certify nothing. A user sends
a transfer in every round; each must confirm within 2 rounds of its arrival — while the task runs (rounds that
crown nothing are anchored by plain blocks, not void) and after it is exhausted (ledger rounds on the closed
chain). No plain block ever moves the champion: every round in the task's champion history is a crowned one,
and the champion record never names a plain round.

Old code: a round that crowned nothing was void, so the transfers of a saturated task waited for the next
crowning, and on a closed chain `miner run` exited and transfers waited for a new task (`wallet send`: "no
task is open").
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from chain.address import address_of
from chain.tx import make_transfer
from node.tools.client import NodeClient
from node.tools.testing import make_test_chain
from tests.seeded_wallet import seeded_wallet
from tests.test_cli_e2e import ROOT, background, ports_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
TASK_ROUNDS = 4
LEDGER_TRANSFERS = 3


async def _drive(url: str, chain, deadline_s: float) -> dict:
    """Send one transfer per round (the next one once the previous confirmed), through the task's rounds and
    LEDGER_TRANSFERS more on the closed chain; returns what was observed."""
    user, payee = chain.users[0], address_of(chain.users[1].public)
    waits: list[tuple[str, int, int]] = []     # (phase, arrival round, confirmation round)
    deadline = time.monotonic() + deadline_s
    async with NodeClient(url) as client:
        nonce, ledger_sent = 0, 0
        while time.monotonic() < deadline:
            status = await client.status()
            closed = status["tasks_open"] == 0        # every task exhausted: ledger rounds only
            if closed and ledger_sent >= LEDGER_TRANSFERS:
                break
            tx = make_transfer(user, chain.genesis.chain_id, payee, 1_000 + nonce, 1_000, nonce)
            arrival = status["round"]
            await client.send_tx(tx.encode())
            while time.monotonic() < deadline:
                got = await client.tx(tx.txid.hex())
                if got["status"] == "confirmed":
                    block = await client.block(got["height"])
                    waits.append(("closed" if closed else "task", arrival, block["header"]["round"]))
                    break
                await asyncio.sleep(0.2)
            nonce += 1
            ledger_sent += closed
        rounds = {r: (await client.round(r))["status"] for r in range(1, (await client.status())["round"])}
        history = (await client.task_info(0))["history"]
        champion = (await client.champion(0))
    return {"waits": waits, "rounds": rounds, "history": history, "champion": champion}


def test_transfers_confirm_in_plain_and_ledger_rounds_and_plain_blocks_never_crown(tmp_path: Path) -> None:
    chain = make_test_chain(tmp_path / "chain", rounds=TASK_ROUNDS, n_miners=1, n_users=2, easy=False,
                            entry_window_s=2, opening_window_s=2)
    wallet = seeded_wallet(tmp_path)
    node = ["-m", "cli", "node", "run", "--datadir", str(tmp_path / "kh"), "--genesis", str(chain.genesis_path),
            "--keyholder", str(chain.keyholder_path), "--port", "0", "--api-port", "0"]
    with background(node, ROOT, tmp_path / "kh.log") as proc:
        url = f"http://127.0.0.1:{ports_of(tmp_path / 'kh', proc)['api']}"
        miner = ["-m", "cli", "miner", "run", "--key", "miner0", "--model", "linear", "--node", url, *wallet]
        with background(miner, tmp_path, tmp_path / "miner.log"):
            seen = asyncio.run(_drive(url, chain, 300))
    log = (tmp_path / "miner.log").read_text(errors="replace")
    waits, rounds = seen["waits"], seen["rounds"]
    phases = [p for p, _, _ in waits]
    assert phases.count("closed") == LEDGER_TRANSFERS and "task" in phases, (waits, log[-3000:])
    late = [w for w in waits if w[2] - w[1] > 2]
    assert not late, (late, rounds, log[-3000:])
    statuses = set(rounds.values())
    assert "plain" in statuses, (rounds, log[-3000:])           # rounds that crowned nothing still had a block
    # the closed chain's transfers were confirmed by ledger rounds' plain blocks (rounds after the task's)
    ledger = [c for p, _, c in waits if p == "closed"]
    assert all(c > TASK_ROUNDS and rounds.get(c, "plain") == "plain" for c in ledger), (waits, rounds)
    crowned = {r for r, s in rounds.items() if s == "crowned"}
    history_rounds = {h["round"] for h in seen["history"] if h["round"] > 0}
    assert history_rounds == crowned, (seen["history"], rounds)  # no plain round ever crowned anything
    assert seen["champion"]["champion"]["round"] in crowned | {0}
