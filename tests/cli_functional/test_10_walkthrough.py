"""README's walkthrough, run verbatim by the package's network (conftest.py): its output, the tasks it made
(a second task with a bounty, an extension of the first), the committee ceremony and the audit it ran."""
from __future__ import annotations

import json

import pytest

from tests.cli_functional.helpers import covers
from tests.cli_net import Net
from tests.test_cli_e2e import assert_one_line_error

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@covers("genesis create", "task create", "task announce", "task extend", "task list",
        "task show")
def test_the_readme_walkthrough_ran_verbatim(net: Net) -> None:
    out = net.walk.output()
    tasks = net.get("/api/tasks")["tasks"]
    assert [t["name"] for t in tasks] == ["synthetic", "digits"] and tasks[0]["extensions"] == 1
    assert tasks[1]["bounty_total"] == 4_000_000 and tasks[1]["spec"]["n_features"] == 64
    # committee chain (items 6, issue 24): the keys are sealed to the committee, nobody is handed a key file
    assert "sealed to the keyholder committee inside the message" in out and "give ONLY to the keyholder" not in out
    assert "no secret file was written" in out and "dealers qualified: 1, 2, 3" in (net.dir / "dkg1.log").read_text()
    # 3 shards: --detect 0.08 on digits with the 0.75 pp crowning margin (issue 18; 4 before)
    assert "no --task-secret" not in out and "active: task 1 has 3 shards" in out
    # units and fees (item 18), the task list's figures, a round's entrants, a task-1 model (item 2)
    assert "(fee 1,000 grains, total 6,000;" in out and "fee 1,000 grains paid" in out
    assert "crowned/void" in out and "detects" in out and "bounty" in out
    assert "entrant pop1" in out and "wrote " in out and "task 1 digits" in out
    # the card's agreement lists every row (item 5); the audit passed per task (item 1)
    assert "public training rows: 4,000/4,000" in out and "chain/holdout.csv: 2,000/2,000" in out
    assert "all checks pass" in out and "task 1 digits:" in out
    assert json.loads((net.dir / "audit/report.json").read_text())["ok"] is True
    shown = net.json("task", "show", "1", *net.node)
    assert shown["detectable"] > 0 and shown["rounds"]["crowned"] >= 0 and shown["history"][0]["round"] == 0
    assert_one_line_error(net.run("task", "show", "9", *net.node, check=False), "no task 9")
