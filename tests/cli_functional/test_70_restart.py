"""Last on the network (they stop its processes): the miner and a waiting `wallet send` ride out a node restart;
then node verify and node reindex on the stopped datadir."""
from __future__ import annotations

import pytest

from tests.cli_functional.helpers import covers
from tests.cli_net import Net, walkthrough_pids
from tests.test_cli_e2e import assert_one_line_error

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@covers("miner run")
def test_miner_and_send_ride_out_a_node_restart(net: Net) -> None:
    assert "WON" in net.log("miner") or "lost" in net.log("miner")
    net.stop_walkthrough_process("--datadir node ")
    proc = net.spawn("send", ["wallet", "send", "--to", net.keys["bob"], "--amount", "7", "--key", "me",
                              "--no-wait", "--retry", "240", *net.node, *net.wallet])
    net.wait(lambda: "retrying" in net.log("send"), "the sender to notice the node is gone", timeout=60)
    # the miner notices once its current fit is done (a request must meet the outage, or nothing is "back")
    net.wait(lambda: "unreachable" in net.log("miner"), "the miner to notice the node is gone", timeout=110)
    net.spawn("node", net.node_args())   # back on the README's ports
    assert proc.wait(180) == 0, net.log("send")
    del net.procs["send"]
    send_log = net.log("send")
    assert "is back after" in send_log and "txid" in send_log and "Traceback" not in send_log
    assert len([ln for ln in send_log.splitlines() if "unreachable" in ln]) == 1      # one status line
    net.wait(lambda: "is back after" in net.log("miner"), "the miner to reconnect", timeout=120)
    before = net.status()["round"]
    net.wait(lambda: net.status()["round"] > before, "a round after the restart", timeout=240)
    assert walkthrough_pids(net.walk, "miner run") and "Traceback" not in net.log("miner")
    extra = net.run("miner", "run", "--node", "http://127.0.0.1:9", *net.miner_wallet, "--rounds", "1",
                    "--retry", "0", "--model", "linear", "--key", "miner", check=False)
    assert_one_line_error(extra, "cannot reach the node")


@covers("node verify", "node reindex")
def test_node_verify_and_reindex_a_stopped_datadir(net: Net) -> None:
    net.stop_walkthrough_process("miner run")
    net.stop("node")
    kh = str(net.dir / "node")
    assert net.run("node", "verify", "--datadir", kh).stdout.startswith("verify: ok:")
    assert net.json("node", "reindex", "--datadir", kh)["ok"] is True
    assert net.json("node", "verify", "--datadir", kh)["ok"] is True
    missing = net.run("node", "verify", "--datadir", str(net.dir / "nope"), check=False)
    assert missing.returncode == 2
    assert_one_line_error(missing, "nope")
