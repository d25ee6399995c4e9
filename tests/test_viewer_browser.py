"""The live viewer page in a real browser (Debian's chromium, driven by selenium through chromedriver).

The gateway's page, fed by the whole local pipeline (broker, registry,
simulator, connector, processor, gateway): pick coinbase / BTC.USD; the book
ladder must show exactly the levels (prices and sizes) the processor's
``/book`` answers just before or just after the page is read, trades must
appear, and the page must ask nothing of any host but loopback (the browser's
own network log, over the DevTools protocol; the check is shown to catch a
request elsewhere, whose host the browser is told never to resolve).  The
same page on ``runner.py local --serve`` draws candles from trades, and shows
an L2 (``lob``) book: Kraken's recorded traffic replayed at its recorded pace.  Screenshots go to
``tests/artifacts/`` (git-ignored).

Outside CI, a machine without chromium and chromedriver skips, saying so; in
CI (``CI=true``) that is a failure: ``.ci/run`` installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from l3_atom.infra.local_pipeline import LocalPipeline
from l3_atom.infra.processes import LOOPBACK, PROJECT_ROOT, runner_command
from tests.conftest import recordings_dir
from tests.local.helpers import LocalRun

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,820",
    # No host name resolves but loopback: nothing the browser does can leave the machine.
    f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {LOOPBACK}",
)
# A request the check must catch (its host never resolves: see the rule above).
OUTSIDE_URL = "http://outside.invalid/pixel.png"
DEPTH = 10
# A slow, two-symbol flow: the BTC book changes a few times a second, trades come every few seconds.
RATE = 10.0
MATCH_TIMEOUT_S = 60.0
WAIT_TIMEOUT_S = 60.0
POLL_S = 0.2
HTTP_NOT_FOUND = 404
# Schemes that never leave the browser.
LOCAL_SCHEMES = {"data", "about", "blob"}
READ_LADDER = """
const rows = (id) => [...document.querySelectorAll(`#${id} tr`)].map((r) => [r.dataset.price, r.cells[1].textContent]);
return {bids: rows("bids"), asks: rows("asks").reverse()};
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless chromium with a fresh profile and its network log on; never selenium's driver downloads."""
    if not (CHROMIUM and CHROMEDRIVER):
        missing = "chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {missing}")
        pytest.skip(missing)
    # Selenium Manager would look for drivers online; the paths below make it unnecessary.
    os.environ["SE_OFFLINE"] = "true"
    os.environ["SE_AVOID_STATS"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER, log_output=str(tmp_path / "driver.log")))
    try:
        yield driver
    finally:
        driver.quit()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = WAIT_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(POLL_S)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


def levels(side: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(price), Decimal(size)) for price, size in side]


def open_page(driver: webdriver.Chrome, url: str) -> None:
    """Open ``url`` with the network log emptied first: what it holds after is this page's alone."""
    driver.get_log("performance")  # the browser's own start-up tab (chrome:// pages) is not the viewer's
    driver.get(url)


def choose(driver: webdriver.Chrome, exchange: str, symbol: str) -> None:
    """Pick the exchange and symbol in the page's own menus, once its info message lists them."""
    def listed(select_id: str, value: str) -> bool:
        return value in [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, f"#{select_id} option")]

    wait_for(lambda: listed("exchange", exchange), f"{exchange} in the exchange menu")
    Select(driver.find_element(By.ID, "exchange")).select_by_value(exchange)
    wait_for(lambda: listed("symbol", symbol), f"{symbol} in the symbol menu")
    Select(driver.find_element(By.ID, "symbol")).select_by_value(symbol)


def ladder_matches_book(driver: webdriver.Chrome, book_url: str) -> dict[str, Any]:
    """Read /book, the page's ladder, /book again until the ladder equals one of them; what matched, how often tried."""
    attempts = 0
    last: dict[str, Any] = {}
    deadline = time.monotonic() + MATCH_TIMEOUT_S
    while time.monotonic() < deadline:
        attempts += 1
        try:
            before = get_json(book_url)
            shown = driver.execute_script(READ_LADDER)
            after = get_json(book_url)
        except urllib.error.HTTPError as exc:
            if exc.code != HTTP_NOT_FOUND:
                raise
            last = {"book": "none yet (404)"}
            time.sleep(POLL_S)
            continue
        page = (levels(shown["bids"]), levels(shown["asks"]))
        last = {"page": shown, "before": before, "after": after}
        if page[0] and page[1]:
            for answer in (before, after):
                if page == (levels(answer["bids"]), levels(answer["asks"])):
                    return {"attempts": attempts, "book": answer, "page": shown}
        time.sleep(POLL_S)
    raise AssertionError(f"the ladder never equalled /book in {attempts} tries; last: {last}")


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    """Every URL the page asked for: the DevTools network log (websockets included) and its resource entries."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
        elif message["method"] == "Network.webSocketCreated":
            urls.append(message["params"]["url"])
    urls += driver.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    return urls


def assert_loopback_only(urls: list[str]) -> None:
    outside = [url for url in urls if urlsplit(url).scheme not in LOCAL_SCHEMES and urlsplit(url).hostname != LOOPBACK]
    assert urls and not outside, f"requests outside loopback: {outside}"


def trade_rows(driver: webdriver.Chrome) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#trades tr')].map((r) => [...r.cells].map((c) => c.textContent));"
    )


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


@pytest.mark.timeout(300)
def test_gateway_viewer_shows_the_processors_book_and_live_trades(tmp_path: Path, browser: webdriver.Chrome) -> None:
    with LocalPipeline(rate=RATE, gateway=True, workdir=tmp_path) as pipeline:
        wait_for(lambda: _ready(pipeline.gateway_url + "ready"), "gateway /ready")
        started = time.monotonic()
        open_page(browser, pipeline.gateway_url)
        choose(browser, "coinbase", "BTC.USD")
        book_url = f"http://{LOOPBACK}:{pipeline.web_ports[0]}/book/coinbase/BTC.USD?depth={DEPTH}"
        matched = ladder_matches_book(browser, book_url)
        seen = time.monotonic() - started
        assert len(matched["page"]["bids"]) == DEPTH and len(matched["page"]["asks"]) == DEPTH
        trades = wait_for(lambda: trade_rows(browser), "a trade on the tape")
        assert all(Decimal(price) > 0 and Decimal(size) > 0 for _, price, size, _ in trades)
        time.sleep(1.0)  # a few more records, for the picture
        shot = screenshot(browser, "viewer_gateway.png")
        urls = requested_urls(browser)
        assert_loopback_only(urls)
        assert any(url.endswith("/ws") and url.startswith("ws://") for url in urls), "the page opened the stream"
    print(f"\nladder equal to /book (sequence {matched['book']['sequence']}) after {matched['attempts']} reads, "
          f"{seen:.1f} s from opening the page; {len(trades)} trades shown; {len(urls)} requests, all loopback: "
          f"{sorted(set(urls))}; screenshot {shot}")


@pytest.mark.timeout(240)
def test_local_serve_viewer_computes_candles_from_trades(tmp_path: Path, browser: webdriver.Chrome) -> None:
    with LocalRun(tmp_path) as run:
        run.start_simulator("--rate", str(RATE), "--products", "BTC-USD,ETH-USD")
        run.start_local("--source", "coinbase", "--symbol", "BTC.USD", "--symbol", "ETH.USD", *run.endpoint_args())
        open_page(browser, f"http://{LOOPBACK}:{run.serve_port}/")
        choose(browser, "coinbase", "BTC.USD")
        matched = ladder_matches_book(browser, f"http://{LOOPBACK}:{run.serve_port}/book/coinbase/BTC.USD?depth={DEPTH}")
        wait_for(lambda: trade_rows(browser), "a trade on the tape")
        candles = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#candles g.candle"), "a candle drawn")
        assert browser.find_element(By.ID, "candle-source").text == "from trades"
        screenshot(browser, "viewer_local.png")
        assert_loopback_only(requested_urls(browser))
        # The check sees a request elsewhere when there is one.
        browser.execute_script("document.body.append(Object.assign(new Image(), {src: arguments[0]}));", OUTSIDE_URL)
        logged: list[str] = []
        wait_for(lambda: logged.extend(requested_urls(browser)) or OUTSIDE_URL in logged, "the request logged")
        with pytest.raises(AssertionError, match="outside.invalid"):
            assert_loopback_only(logged)
    print(f"\nlocal --serve: ladder equal to /book after {matched['attempts']} reads; {len(candles)} candle(s) drawn")


@pytest.mark.timeout(240)
def test_local_serve_viewer_shows_an_l2_book_from_recorded_kraken_traffic(
    tmp_path: Path, browser: webdriver.Chrome
) -> None:
    recordings = recordings_dir()
    if recordings is None:
        pytest.skip("no recorded traffic: set L3_ATOM_RECORDINGS or put it in ../shared/recordings")
    with LocalRun(tmp_path) as run:
        run.start("replay", runner_command("replay", "--recording", str(recordings / "kraken"),
                                           "--port", str(run.source_port), "--speed", "recorded"))
        run.wait_port("replay", run.source_port)
        run.start_local("--source", "kraken", "--symbol", "XMR.USD", "--symbol", "SC.EUR", *run.endpoint_args())
        open_page(browser, f"http://{LOOPBACK}:{run.serve_port}/")
        choose(browser, "kraken", "XMR.USD")
        matched = ladder_matches_book(browser, f"http://{LOOPBACK}:{run.serve_port}/book/kraken/XMR.USD?depth={DEPTH}")
        assert matched["book"]["level"] == "l2"
        assert browser.find_element(By.ID, "book-source").text == "lob"
        status = browser.find_element(By.ID, "status").text
        screenshot(browser, "viewer_local_l2.png")
        assert_loopback_only(requested_urls(browser))
    print(f"\nkraken XMR.USD (lob): ladder equal to /book after {matched['attempts']} reads; page status: {status}")


def _ready(url: str) -> bool:
    try:
        return get_json(url)["ready"]
    except OSError:
        return False
