"""The explorer in a real browser: headless Chromium (selenium + Debian's chromium-driver; `.ci/run` installs
them) against a live 2-node network with a scripted miner. The leaderboard shows the crowned champion with the
numbers the API gives; a new block and a round phase change appear on the overview without a reload; search
finds a txid. Screenshots go to the test's temp dir. Skips, with the reason, only when chromium is missing."""
from __future__ import annotations

import json
import shutil
import urllib.request

import pytest

from chain.address import address_of, encode_address
from chain.tx import make_transfer
from node.tools.testing import wait_for
from tests.explorer_net import ExplorerNet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
WAIT_S = 120  # liveness bound for what the chain does on its own (rounds take a few seconds)


def _driver():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install '.[test]')")
    if CHROMIUM is None or DRIVER is None:
        print("SKIP REASON: chromium / chromedriver not found; .ci/run installs Debian's chromium + chromium-driver")
        pytest.skip("chromium or chromedriver missing (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1100", "--disable-extensions"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(DRIVER))


def _api(url: str):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    n = ExplorerNet(tmp_path_factory.mktemp("explorer-browser")).start()
    try:
        async def crowned(ca, cb):
            await wait_for(lambda: _has_crowned(ca), timeout=WAIT_S, interval=0.3, what="a crowned round")
        n.run(crowned, timeout=WAIT_S + 30)
        yield n
    finally:
        n.stop()


async def _has_crowned(client):
    return (await client.status())["height"] >= 1


@pytest.fixture(scope="module")
def browser():
    d = _driver()
    yield d
    d.quit()


def _wait(browser, predicate, timeout=WAIT_S, what="condition"):
    """Poll ``predicate`` until it is truthy. The live pages re-render on events, so an element found a moment
    ago may be replaced: a stale reference is "not yet", not a failure."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(browser, timeout, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)).until(
        lambda d: predicate(d), message=what)


def _text(browser, css: str) -> str | None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    try:
        return browser.find_element("css selector", css).text
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def _severe_console_errors(browser) -> list[str]:
    """Script errors (a network 404 a page handles, e.g. a block reorganised away mid-fetch, is not one)."""
    return [e["message"] for e in browser.get_log("browser")
            if e["level"] == "SEVERE" and e.get("source") != "network"]


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else -1


def test_leaderboard_shows_the_crowned_champion(net, browser, tmp_path):
    url = net.urls[0]
    browser.get(url + "/leaderboard")
    _wait(browser, lambda d: _text(d, "#lineage tbody tr") is not None, what="lineage rendered")
    champ = _api(url + "/api/champion")["champion"]
    row = f"#champion-{champ['height']}"
    # the champion may be replaced while we look: the page follows (verdict events), so re-read until they agree
    def agrees(d):
        c = _api(url + "/api/champion")["champion"]
        r = f"#champion-{c['height']}"
        return (_text(d, f"{r} td.b"), _text(d, f"{r} td.c")) == (str(c["b"]), str(c["c"])) and c
    champ = _wait(browser, agrees, what="leaderboard row matches /api/champion")
    row = f"#champion-{champ['height']}"
    lb = _api(url + "/api/explorer/leaderboard")
    rec = next(r for r in lb["lineage"] if r["height"] == champ["height"])
    assert rec["accuracy"] is not None
    acc = f"({rec['accuracy']['correct']}/{rec['accuracy']['n']})"
    _wait(browser, lambda d: acc in (_text(d, f"{row} td.acc") or ""), what="the row's shard accuracy")
    _wait(browser, lambda d: champ["miner_address"][:20] in (_text(d, row) or ""), what="the row's miner")
    _wait(browser, lambda d: (d.find_element("css selector", f"{row} a[download]").get_attribute("href") or "")
          .endswith(f"/api/models/{champ['model_hash']}"), what="the row's model download link")
    # the chart marks crowned (circles) and void (crosses) rounds
    # (the first block may still be the leading candidate of an open round: the page redraws on the verdict)
    _wait(browser, lambda d: d.find_elements("css selector", "#accuracy-chart circle.crowned"),
          what="a crowned round on the chart")
    lb = _api(url + "/api/explorer/leaderboard")
    statuses = {r["status"] for r in lb["rounds"] if r["accuracy"]}
    if "void" in statuses:  # the page follows verdict events: it shows what the API has, soon
        _wait(browser, lambda d: d.find_elements("css selector", "#accuracy-chart path.void"), what="void marks")
    browser.save_screenshot(str(tmp_path / "leaderboard.png"))
    assert (tmp_path / "leaderboard.png").stat().st_size > 0
    assert _severe_console_errors(browser) == []


def test_overview_updates_without_reload(net, browser, tmp_path):
    url = net.urls[1]
    browser.get(url + "/")
    _wait(browser, lambda d: _text(d, "#live-conn") == "live", what="event stream connected")
    _wait(browser, lambda d: (_text(d, "#ov-height-live") or "").isdigit(), what="overview rendered")
    browser.execute_script("window.__explorerTestMarker = 42;")  # survives only if the page never reloads
    h0 = int(_text(browser, "#ov-height-live"))
    phase0 = (_text(browser, "#live-round"), _text(browser, "#live-phase"))
    _wait(browser, lambda d: (_text(d, "#live-round"), _text(d, "#live-phase")) != phase0,
          what="a round phase change shown")
    _wait(browser, lambda d: _int(_text(d, "#ov-height-live")) > h0, what="a new block shown")
    _wait(browser, lambda d: d.find_elements("css selector", f"#latest-blocks tr[data-height='{h0 + 1}']"),
          what="the new block in the latest blocks table")
    assert browser.execute_script("return window.__explorerTestMarker") == 42
    assert _int(_text(browser, "#live-height")) > h0  # the header bar follows the same events
    browser.save_screenshot(str(tmp_path / "overview.png"))
    assert _severe_console_errors(browser) == []


def test_search_finds_a_txid(net, browser, tmp_path):
    url = net.urls[0]
    user, dest = net.chain.users
    acct = _api(url + f"/api/accounts/{encode_address(address_of(user.public))}")
    tx = make_transfer(user, net.chain.genesis.chain_id, address_of(dest.public), 11, 1_000, acct["next_nonce"])

    async def send(ca, cb):
        await ca.send_tx(tx.encode())
    net.run(send)
    browser.get(url + "/")
    box = _wait(browser, lambda d: d.find_element("id", "search-q"), what="search box")
    box.send_keys(tx.txid.hex())
    box.submit()
    _wait(browser, lambda d: d.current_url.endswith(f"/tx/{tx.txid.hex()}"), what="search navigates to the tx")
    _wait(browser, lambda d: _text(d, "#tx-id") == tx.txid.hex(), what="tx page rendered")
    # pending now; the page follows it into a block without a reload
    _wait(browser, lambda d: _text(d, "#tx-status") == "confirmed", what="tx confirmed on the page")
    browser.save_screenshot(str(tmp_path / "tx.png"))
    # the recipient's paged history lists it
    browser.get(url + f"/account/{encode_address(address_of(dest.public))}")
    _wait(browser, lambda d: tx.txid.hex()[:16] in (_text(d, "#account-history") or ""), what="account history")
    # an unknown id gets the friendly 404 page
    browser.get(url + "/search?q=" + "ee" * 32)
    _wait(browser, lambda d: "Not found" in (_text(d, "main") or ""), what="404 page")
    assert "Traceback" not in browser.page_source


def test_every_view_renders_without_errors(net, browser, tmp_path):
    url = net.urls[0]
    st = _api(url + "/api/status")
    champ = _api(url + "/api/champion")["champion"]
    miner = champ["miner_address"]
    browser.get_log("browser")  # start from a clean console
    for path, marker in ((f"/round/{max(1, st['round'] - 1)}", "Phase timeline"), ("/block/0", "Transfers"),
                         (f"/block/{champ['hash']}", "Transfers"), (f"/miner/{miner}", "Competitions"),
                         ("/peers", "Known addresses"), (f"/round/{champ['round']}", champ["hash"][:16])):
        browser.get(url + path)
        _wait(browser, lambda d: d.find_element("id", "main").get_attribute("data-rendered"), what=path)
        text = _text(browser, "main") or ""
        assert marker in text and "could not load" not in text, (path, text[:300])
        assert _severe_console_errors(browser) == [], path
    browser.save_screenshot(str(tmp_path / "round.png"))
