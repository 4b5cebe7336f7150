"""The audit: every task's records re-checked (report and HTML), a wrong genesis refused, and a node that lies about a
record or a task package caught."""
from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cli_functional.helpers import covers, crowned
from tests.cli_net import Net, lying_node
from tests.test_cli_e2e import assert_one_line_error

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@covers("audit")
def test_audit_rechecks_every_task(net: Net) -> None:
    crowned(net, task=1)
    # --out into directories that do not exist yet (item 13)
    report = net.json("audit", "--out", "new/dir/report.json", "--html", "--genesis", "chain/genesis.bin", *net.node)
    assert report["ok"] is True and [t["task_id"] for t in report["tasks"]] == [0, 1]
    assert all(t["ok"] for t in report["tasks"]) and report["tasks"][1]["crowned"] >= 1
    for r in report["records"][1:]:
        assert r["checks"] and all(r["checks"].values()), r
        assert (r["recomputed"]["b"], r["recomputed"]["c"]) == (r["b"], r["c"])
    assert "every record checks out" in (net.dir / "new/dir/report.html").read_text()
    other = net.dir / "other-genesis"
    net.run("genesis", "create", "--task", "iris", "--detect", "0.2", "--out", str(other), "--alloc",
            f"{net.keys['bob']}=5")
    assert_one_line_error(net.run("audit", "--out", "a3.json", "--genesis", str(other / "genesis.bin"), *net.node,
                                  check=False), "not the expected")
    assert_one_line_error(net.run("audit", "--out", "/proc/x/report.json", *net.node, check=False), "cannot write")


def test_audit_catches_a_node_that_lies_about_a_record(net: Net) -> None:
    target = crowned(net, task=1)[0]["hash"]

    def inflate(path: str, body: Any) -> Any:
        if path == "/api/champion":
            for rec in body["history"]:
                if rec["hash"] == target:
                    rec["b"] += 3            # a better-looking crowning than the one the block carries
        return body
    with lying_node(net.url, inflate) as url:
        proc = net.run("audit", "--out", "lie.json", "--node", url, check=False)
    assert_one_line_error(proc, "audit found problems in 1 of")
    bad = [r for r in json.loads((net.dir / "lie.json").read_text())["records"] if not r["ok"]]
    assert [r["hash"] for r in bad] == [target]
    assert bad[0]["checks"]["rescore"] is False and bad[0]["checks"]["payload-record"] is False

    def other_package(path: str, body: Any) -> Any:      # a task package the governance keys never signed
        if path == "/api/tasks/1" and body.get("messages"):
            body["messages"] = body["messages"][:1] + body["messages"][:1]
        return body
    with lying_node(net.url, other_package) as url:
        proc = net.run("audit", "--out", "lie2.json", "--node", url, check=False)
    assert_one_line_error(proc, "audit found problems")
    assert "not extension 1" in json.dumps(json.loads((net.dir / "lie2.json").read_text()))
