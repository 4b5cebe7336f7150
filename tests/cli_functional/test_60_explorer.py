"""The explorer, metrics and peers: the leaderboard across both tasks, per-task Prometheus figures, peer heights,
the competition pages in a real browser and a headless screenshot of a static page."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli_functional.helpers import crowned
from tests.cli_net import MEMBER_URLS, Net
from tests.test_cli_e2e import _get_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_leaderboard_spans_both_tasks_without_scoring_errors(net: Net) -> None:
    crowned(net, task=1)
    lb = net.get("/api/explorer/leaderboard")
    assert {t["task_id"] for t in lb["tasks"]} == {0, 1}
    assert lb["rounds_scheduled"] == sum(t["shards_total"] for t in net.get("/api/tasks")["tasks"])
    scored = [r for r in lb["rounds"] if r["status"] in ("crowned", "void")]
    assert {r["task_id"] for r in scored} == {0, 1}
    assert all(r["accuracy"] for r in scored), [r for r in scored if not r["accuracy"]]          # item 3
    assert all(rec["accuracy"] for rec in lb["lineage"] if rec["round"])
    one = net.get("/api/explorer/leaderboard?task=1")
    assert {r["task_id"] for r in one["rounds"]} == {1} and one["lineage"][0]["initial"] is True
    page = net.get("/api/explorer/tasks/1")
    t = page["task"]
    assert t["sponsor_address"] == net.keys["alice"] and t["bounty_total"] == 4_000_000
    # the bounty split over the task's shards (3 with issue 18's margin: 4,000,000 // 3 per crowning)
    assert t["bounty_per_crowning"] == 4_000_000 // t["shards_total"]
    assert t["bounty_paid"] == min(4_000_000, t["bounty_per_crowning"] * t["rounds"]["crowned"])
    assert t["detectable"] > 0
    assert page["rounds"] and all(r["task_id"] == 1 for r in page["rounds"])
    assert all(e["b"] is not None for r in page["rounds"] if r["final"] for e in r["entrants"]
               if e["verdict"] in ("crowned", "lost")), "every opened entrant has its b and c"
    log = (net.dir / "node" / "node.log").read_text(errors="replace")
    assert "Traceback" not in log and "cannot score" not in log


def test_metrics_carry_process_and_per_task_figures(net: Net) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families
    crowned(net, task=1)
    with urllib.request.urlopen(f"{net.url}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds"):
        assert name in fams and fams[name].samples[0].value > 0, name
    acc = {s.labels["task"]: s.value for s in fams["popchain_task_champion_accuracy"].samples}
    assert set(acc) == {"0", "1"} and all(0 < v <= 1 for v in acc.values())
    rounds = {(s.labels["task"], s.labels["outcome"]): s.value for s in fams["popchain_task_rounds"].samples}
    tasks = {t["task_id"]: t for t in net.get("/api/tasks")["tasks"]}
    assert rounds[("1", "crowned")] >= 1 and ("0", "plain") in rounds and ("1", "void") in rounds
    bounty = {s.labels["task"]: s.value for s in fams["popchain_task_bounty_left_grains"].samples}
    assert bounty["1"] >= 0 and bounty["0"] == 0 and tasks[1]["bounty_total"] == 4_000_000


def test_peers_show_their_heights_and_keyholders_do_not_redial(net: Net) -> None:
    tip = net.status()["height"]
    for url in (net.url, *MEMBER_URLS):       # every peer has shown us blocks: its height is no longer 0 (item 11)
        peers = net.wait(lambda u=url: [p for p in _get_json(f"{u}/api/peers")["peers"]
                                        if p["height"] >= tip - 1] and _get_json(f"{u}/api/peers")["peers"],
                         f"peer heights at {url}")
        assert all(p["height"] > 0 for p in peers), peers
        assert all(p["rtt_ms"] is None or p["rtt_ms"] == round(p["rtt_ms"], 1) for p in peers)
    # peers found by address exchange dial each other too; the second connection is refused once, not every
    # backoff period for the life of the nodes (item 12)
    for i in (1, 2, 3):
        log = (net.dir / f"kh{i}" / "node" / "node.log").read_text(errors="replace")
        assert log.count("duplicate connection") <= 4, (i, log.count("duplicate connection"))


def test_explorer_in_a_browser_task_page_and_a_leaderboard_across_tasks(net: Net, tmp_path: Path) -> None:
    from tests.test_explorer_browser import _driver, _severe_console_errors, _text, _wait
    crowned(net, task=1)
    d = _driver()
    try:
        d.get(net.url + "/task/1")
        _wait(d, lambda b: b.find_elements("css selector", "#task-rounds-table tbody tr"), what="task rounds")
        facts = _text(d, "#task-facts") or ""
        assert "4,000,000 grains" in facts and "pp at 80 % power" in facts and "of 3" in facts   # 3 shards
        rows = d.find_elements("css selector", "#task-rounds-table td.verdict .badge")
        assert rows and {r.text for r in rows} <= {"crowned", "lost", "not opened", "plain", "leading", "opened",
                                                     "not opened yet"}
        _wait(d, lambda b: b.find_elements("css selector", "#task-chart circle.crowned"), what="task chart")
        d.save_screenshot(str(tmp_path / "task1.png"))
        d.get(net.url + "/leaderboard")
        _wait(d, lambda b: {e.get_attribute("data-task") for e in
                            b.find_elements("css selector", "#accuracy-chart polyline")} == {"0", "1"},
              what="one series per task on the leaderboard chart")
        assert {e.get_attribute("data-task") for e in d.find_elements("css selector", "#lineage tbody tr")} == {"0", "1"}
        d.save_screenshot(str(tmp_path / "leaderboard.png"))
        d.get(net.url + f"/miner/{net.keys['miner']}?task=1")
        _wait(d, lambda b: b.find_elements("css selector", "#competition tr[data-task]"), what="miner, task 1")
        assert {e.get_attribute("data-task") for e in d.find_elements("css selector", "#competition tr[data-task]")} \
            == {"1"}
        assert _severe_console_errors(d) == []
    finally:
        d.quit()


def test_a_headless_screenshot_of_a_static_page_returns(net: Net, tmp_path: Path) -> None:
    """`chromium --headless --virtual-time-budget` used to hang on the explorer (its event stream kept the page
    busy) or capture it blank: ?static=1 renders once, without the stream (item 20)."""
    from tests.test_explorer_browser import CHROMIUM
    if CHROMIUM is None:     # as tests/test_explorer_browser.py: .ci/run installs it
        pytest.skip("chromium missing (apt-get install chromium)")
    shot = tmp_path / "tasks.png"
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000"]
    proc = subprocess.run([*args, "--dump-dom", f"{net.url}/tasks?static=1"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert 'data-ready="1"' in proc.stdout and 'id="task-1"' in proc.stdout and "digits" in proc.stdout
    subprocess.run([*args, f"--screenshot={shot}", "--window-size=1280,900", f"{net.url}/task/1?static=1"],
                   capture_output=True, timeout=120, check=False)
    assert shot.stat().st_size > 20_000
