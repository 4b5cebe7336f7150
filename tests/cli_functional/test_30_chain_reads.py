"""Reading the chain: status and chain info (a committee member's too), a transfer sent, its balance, history,
tx and block (by prefix), and every round's page with its entrants."""
from __future__ import annotations

import json

import pytest

from tests.cli_functional.helpers import covers, crowned
from tests.cli_net import MEMBER_URLS, Net
from tests.test_cli_e2e import assert_one_line_error

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@covers("status", "chain info")
def test_status_and_chain_info(net: Net) -> None:
    s = net.json("status", "--wait", "5", *net.node)
    assert s["tasks_total"] == 2 and s["chain_id"] == net.json("chain", "info", *net.node)["chain_id"]
    human = net.run("status", *net.node).stdout
    assert "round_phase" in human and "2 open of 2" in human or "open of 2" in human
    member = net.run("status", "--node", MEMBER_URLS[0]).stdout
    from consensus.keyholder import load_member_file  # its index: its key's place in the sorted keyholders
    index = load_member_file((net.dir / "kh1" / "keyholder.secret").read_bytes()).member
    assert f"committee member {index}" in member and "3 of 3 keyholders reachable, threshold 2" in member
    assert_one_line_error(net.run("status", "--node", "http://127.0.0.1:9", check=False), "cannot reach the node")
    assert_one_line_error(net.run("status", "--wait", "-1", *net.node, check=False), "--wait")
    assert_one_line_error(net.run("chain", "info", *net.node, "--cookie", "/nonexistent/.cookie", check=False),
                          "cookie file")


@covers("wallet send", "wallet balance", "wallet history", "chain tx", "chain block")
def test_send_balance_history_tx_block(net: Net) -> None:
    bob_w = ["--wallet", str(net.dir / "bob.popkeys"), "--password-file", str(net.dir / "pw")]
    proc = net.run("wallet", "send", "--to", net.keys["bob"], "--amount", "12345", "--fee", "1500", "--memo", "hi",
                   "--key", "me", "--timeout", "280", "--json", *net.node, *net.wallet)
    sent = json.loads(proc.stdout)
    assert sent["status"] == "confirmed" and sent["height"] >= 1 and sent["fee"] == 1500
    assert "(fee 1,500 grains, total 13,845;" in proc.stderr and f"txid {sent['txid']}" in proc.stderr
    bal = net.json("wallet", "balance", *net.node, *bob_w)
    assert bal[0]["balance"] == 12345
    assert "12,345 grains" in net.run("wallet", "balance", *net.node, *bob_w).stdout
    hist = net.json("wallet", "history", "--limit", "20", *net.node, *net.wallet)
    row = next(r for r in hist if r["tx"]["txid"] == sent["txid"])
    assert (row["direction"], row["key"], row["height"]) == ("sent", "me", sent["height"])
    assert row["time"] > 0 and row["confirmations"] >= 1
    human = net.run("wallet", "history", *net.node, *bob_w).stdout
    assert sent["txid"][:16] in human and f"<- {net.keys['alice']}" in human and "12,345 grains" in human
    older = net.json("wallet", "history", "--before", str(sent["height"]), *net.node, *bob_w)
    assert all(r["height"] < sent["height"] for r in older)
    assert_one_line_error(net.run("wallet", "history", "--limit", "0", *net.node, *bob_w, check=False), "--limit")
    # chain tx by a unique prefix: one number format, the unit, the fee, time and confirmations (item 18)
    tx = net.json("chain", "tx", sent["txid"][:10], *net.node)
    assert tx["status"] == "confirmed" and tx["tx"]["txid"] == sent["txid"] and tx["confirmations"] >= 1
    txh = net.run("chain", "tx", sent["txid"][:10], *net.node).stdout
    assert "12,345 grains" in txh and "1,500 grains" in txh and "confirmations" in txh and "time" in txh
    blk = net.run("chain", "block", str(sent["height"]), *net.node).stdout
    assert net.keys["miner"] in next(ln for ln in blk.splitlines() if ln.startswith("miner ")) and "12,345 grains" in blk
    # a prefix that is not all digits (an all-digit one reads as a height): 8 hex chars or the first longer one
    prefix = next(sent["block"][:n] for n in range(8, 65) if not sent["block"][:n].isdigit())
    by_prefix = net.json("chain", "block", prefix, *net.node)
    assert by_prefix["header"]["height"] == sent["height"] and by_prefix["confirmations"] >= 1
    assert "(genesis: no miner)" in net.run("chain", "block", "0", *net.node).stdout
    assert_one_line_error(net.run("chain", "tx", "zz", *net.node, check=False), "node said")
    assert_one_line_error(net.run("chain", "tx", "abc", *net.node, check=False), "prefix of at least 4")
    for bad, frag in ((["--to", "pop1notanaddress", "--amount", "5"], "address"),
                      (["--to", net.keys["bob"], "--amount", "0"], "positive"),
                      (["--to", net.keys["bob"], "--amount", "5", "--memo", "m" * 65], "64 bytes")):
        assert_one_line_error(net.run("wallet", "send", *bad, *net.node, *net.wallet, check=False), frag)
    wrong = net.dir / "wrongpw"
    wrong.write_text("nope\n")
    assert_one_line_error(net.run("wallet", "balance", *net.node, "--wallet", str(net.dir / "me.popkeys"),
                                  "--password-file", str(wrong), check=False), "password")


@covers("chain round")
def test_every_round_has_a_page_with_its_entrants(net: Net) -> None:
    crowned(net, task=1)
    current = net.status()["round"]
    statuses = {}
    for r in range(1, current + 1):     # every scheduled round, on the CLI's API and the explorer (item 4)
        info = net.get(f"/api/rounds/{r}")
        statuses[r] = info["status"]
        assert info["task_id"] in (0, 1) and (info["final"] or r == current)
        if info["final"]:
            assert info["status"] in ("crowned", "void", "plain") and info["entrants"], info
            assert {e["verdict"] for e in info["entrants"]} <= {"crowned", "plain", "lost", "not opened"}
        assert _status_code(f"{net.url}/round/{r}") == 200
    beyond = max(net.get("/api/task")["rounds"], current + 1) + 1      # past genesis and the next round
    assert _status_code(f"{net.url}/round/{beyond}") == 404 and _status_code(f"{net.url}/api/rounds/{beyond}") == 404
    r1 = next(r for r in range(1, current) if net.get(f"/api/rounds/{r}")["task_id"] == 1
              and statuses[r] == "crowned")
    human = net.run("chain", "round", str(r1), *net.node).stdout
    assert "serves     task 1 shard" in human and "outcome    crowned: block" in human and "{" not in human
    assert "entrant pop1" in human and "crowned" in human.split("entrant")[1]
    js = net.json("chain", "round", str(r1), *net.node)
    winner = next(e for e in js["entrants"] if e["verdict"] == "crowned")
    assert (winner["b"], winner["c"], winner["bar"]) == (js["verdict"]["b"], js["verdict"]["c"], js["verdict"]["bar"])
    void = [r for r, s in statuses.items() if s == "void"]
    if void:   # why a round was void is on the CLI, not only in node.log (item 9)
        out = net.run("chain", "round", str(void[0]), *net.node).stdout
        assert "outcome    void:" in out and "not decided" not in out
    assert "round" in net.run("chain", "round", "current", *net.node).stdout
    assert_one_line_error(net.run("chain", "round", "abc", *net.node, check=False), "round number")


def _status_code(url: str) -> int:
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
