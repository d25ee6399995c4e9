"""Listings change (issue 15): the symbol list is reloaded every ``symbol_refresh_s``; with ``--all-symbols``
a new listing is subscribed on a connection of its own and a delisted symbol unsubscribed, other connections
untouched; a requested symbol that disappears is logged and counted, a dated future past its expiry as expired."""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from l3_atom.config import ConfigError, ConnectorSettings, Settings
from l3_atom.off_chain.coinbase import Coinbase
from l3_atom.symbol_selection import AllSymbols
from tests.local.helpers import LocalRun, http_get, http_json
from tests.sinks import NullSink

SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)
LISTED = {"BTC.USD": "BTC-USD", "ETH.USD": "ETH-USD", "BTC.USD-20261225": "BTC-20261225"}
WAIT_S = 120.0
PROJECT_CONFIG = Path(__file__).parent.parent / "config.ini"


def opened(feed: Coinbase, symbol_map: dict[str, str]) -> Coinbase:
    """``feed`` as ``run`` leaves it before connecting: symbols chosen, connections made (not started)."""
    feed.symbol_map = symbol_map
    feed.choose(symbol_map)
    feed.normalised_of = dict(zip(feed.resolve(symbol_map), feed.requested, strict=True))
    for chunk in feed.connection_groups([symbol_map[name] for name in feed.requested]):
        feed._open(chunk)
    return feed


def test_a_refresh_drops_the_delisted_and_the_expired_and_opens_a_connection_for_new_listings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed = opened(Coinbase([], NullSink(), SETTINGS, every=AllSymbols(quote="USD")), LISTED)
    [first] = feed.connections
    refreshed = {"BTC.USD": "BTC-USD", "SOL.USD": "SOL-USD"}
    with caplog.at_level(logging.INFO, logger="l3_atom.data_source"):
        unsubscribes = feed.apply_listing(refreshed, today="20261226")
    assert feed.requested == ["BTC.USD", "SOL.USD"]
    assert dict(feed.listing_changes) == {"delisted": 1, "expired": 1, "listed": 1}
    assert [(c, json.loads(m[0])["product_ids"]) for c, m in unsubscribes] == [(first, ["BTC-20261225"]),
                                                                              (first, ["ETH-USD"])]
    assert len(feed.connections) == 2 and feed.connection_of["SOL-USD"] is feed.connections[1]
    assert feed.connection_of["BTC-USD"] is first
    assert feed.normalised_of == {"BTC-USD": "BTC.USD", "SOL-USD": "SOL.USD"}
    assert "ETH.USD is no longer listed (delisted)" in caplog.text
    assert "BTC.USD-20261225 is no longer listed (expired)" in caplog.text
    # The first connection now subscribes only what is still listed when it reconnects.
    assert json.loads(feed.subscribe_messages(feed._chunks[first.name])[0])["product_ids"] == ["BTC-USD"]


def test_a_requested_symbol_that_disappears_is_reported_and_nothing_is_added() -> None:
    feed = opened(Coinbase(["BTC.USD", "ETH.USD"], NullSink(), SETTINGS), LISTED)
    feed.apply_listing({"BTC.USD": "BTC-USD", "SOL.USD": "SOL-USD"}, today="20260101")
    assert feed.requested == ["BTC.USD"]
    assert dict(feed.listing_changes) == {"delisted": 1}
    assert len(feed.connections) == 1


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def symbols_in(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {json.loads(line)["symbol"] for line in path.read_text().splitlines() if line.endswith("}")}


def wait(condition: Callable[[], bool], what: str, local: LocalRun) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition() and time.monotonic() < deadline:
        local.check_alive("local")
        time.sleep(0.3)
    assert condition(), f"{what}: not within {WAIT_S:.0f} s"


@pytest.mark.timeout(300)
def test_the_simulators_listing_changes_reach_runner_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulator lists BTC-USD, ETH-USD (SOL-USD delisted); ``--all-symbols --quote USD`` streams both; then SOL-USD
    is listed and ETH-USD delisted: SOL.USD reaches the output within a refresh, ETH-USD is unsubscribed over the
    same connection (no reconnect: two connections in all, the first and the new listing's)."""
    config = tmp_path / "config.ini"
    config.write_text(re.sub(r"(?m)^symbol_refresh_s = .*$", "symbol_refresh_s = 1", PROJECT_CONFIG.read_text()))
    monkeypatch.setenv("L3_ATOM_CONFIG", str(config))
    out = tmp_path / "trades.jsonl"
    with LocalRun(tmp_path) as local:
        local.start_simulator("--seed", "5", "--rate", "300", "--products", "BTC-USD,ETH-USD,SOL-USD")
        sim = local.simulator_rest_url
        assert post(f"{sim}/_sim/listing", {"delist": ["SOL-USD"]}) == {"listed": ["BTC-USD", "ETH-USD"]}
        local.start_local("--source", "coinbase", "--all-symbols", "--quote", "USD", *local.endpoint_args(),
                          "--feeds", "trades_l3,lob_l3", "--jsonl", str(out), "--no-progress")
        wait(lambda: symbols_in(out) == {"BTC.USD", "ETH.USD"}, "BTC.USD and ETH.USD records", local)
        assert post(f"{sim}/_sim/listing", {"list": ["SOL-USD"], "delist": ["ETH-USD"]}) == {
            "listed": ["BTC-USD", "SOL-USD"]
        }
        wait(lambda: "SOL.USD" in symbols_in(out), "the new listing's records", local)
        wait(lambda: http_json(f"{sim}/_sim/stats")["subscribed"] == ["BTC-USD", "SOL-USD"],
             "ETH-USD unsubscribed", local)
        stats = http_json(f"{sim}/_sim/stats")
        local.stop("local")
        log = local.log("local")
    assert stats["connections_total"] == 2, stats
    assert '"topic":"dead_letter"' not in out.read_text()
    assert "ETH.USD is no longer listed (delisted): unsubscribed" in log
    assert "1 new listing(s) subscribed: SOL.USD" in log


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_refresh_interval_of_zero_or_less_is_refused_with_its_name(tmp_path: Path, value: str) -> None:
    config = tmp_path / "config.ini"
    config.write_text(PROJECT_CONFIG.read_text().replace("symbol_refresh_s = 600", f"symbol_refresh_s = {value}"))
    with pytest.raises(ConfigError, match=rf"\[connector\] symbol_refresh_s must be greater than 0, got {value}"):
        Settings(config_path=config, env_path=tmp_path / "none.env")


def test_the_refresh_interval_is_read_from_config_and_defaults_to_ten_minutes(tmp_path: Path) -> None:
    assert Settings(config_path=PROJECT_CONFIG, env_path=tmp_path / "none.env").connector.symbol_refresh_s == 600
    config = tmp_path / "config.ini"
    config.write_text(PROJECT_CONFIG.read_text().replace("symbol_refresh_s = 600\n", ""))
    assert Settings(config_path=config, env_path=tmp_path / "none.env").connector.symbol_refresh_s == 600


def test_a_symbol_on_two_endpoints_leaves_both_connections() -> None:
    """OKX carries a symbol on the public and the business endpoint (candles): a delisting drops it from both."""
    from l3_atom.off_chain.okx import Okx

    listed = {"BTC.USDT": "BTC-USDT", "ETH.USDT": "ETH-USDT"}
    feed = Okx(["BTC.USDT", "ETH.USDT"], NullSink(), SETTINGS, channels=["trades", "candle1m"])
    feed.symbol_map = listed
    for chunk in feed.connection_groups(feed.resolve(listed)):
        feed._open(chunk)
    assert len(feed.connections) == 2
    feed.apply_listing({"BTC.USDT": "BTC-USDT"}, today="20260101")
    assert [list(feed._chunks[c.name]) for c in feed.connections] == [["BTC-USDT"], ["BTC-USDT"]]


def book(local: LocalRun, symbol: str) -> tuple[int, dict]:
    status, body = http_get(f"http://127.0.0.1:{local.serve_port}/book/coinbase/{symbol}?depth=1")
    return status, json.loads(body) if status else {}


@pytest.mark.timeout(300)
def test_a_requested_symbol_that_disappears_is_reported_and_its_book_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--symbol BTC.USD --symbol ETH.USD`` (no ``--all-symbols``); the simulator delists ETH-USD: one log line,
    ``listing_changes`` counts it (the metric reads it), ETH-USD is unsubscribed, and the ETH.USD book query
    answers 410 "closed" instead of serving the last book, while BTC.USD's book still answers."""
    config = tmp_path / "config.ini"
    config.write_text(re.sub(r"(?m)^symbol_refresh_s = .*$", "symbol_refresh_s = 1", PROJECT_CONFIG.read_text()))
    monkeypatch.setenv("L3_ATOM_CONFIG", str(config))
    with LocalRun(tmp_path) as local:
        local.start_simulator("--seed", "7", "--rate", "300", "--products", "BTC-USD,ETH-USD")
        sim = local.simulator_rest_url
        local.start_local("--source", "coinbase", "--symbol", "BTC.USD", "--symbol", "ETH.USD",
                          *local.endpoint_args(), "--feeds", "lob_l3", "--no-progress")
        wait(lambda: all(book(local, s)[0] == 200 for s in ("BTC.USD", "ETH.USD")), "both books", local)
        post(f"{sim}/_sim/listing", {"delist": ["ETH-USD"]})
        wait(lambda: book(local, "ETH.USD")[0] == 410, "the ETH.USD book closed", local)
        wait(lambda: http_json(f"{sim}/_sim/stats")["subscribed"] == ["BTC-USD"], "ETH-USD unsubscribed", local)
        status, closed = book(local, "ETH.USD")
        btc_status, _ = book(local, "BTC.USD")
        stats = local.stats()
        local.stop("local")
        log = local.log("local")
    assert (status, btc_status) == (410, 200)
    assert "closed" in closed["error"] and "delisted" in closed["error"], closed
    assert log.count("ETH.USD is no longer listed (delisted): requested symbol, unsubscribed, book closed") == 1
    assert stats["sources"]["coinbase"]["listing_changes"] == {"delisted": 1}, stats["sources"]


@pytest.mark.timeout(420)
def test_the_processors_book_api_closes_a_delisted_symbols_book(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The distributed pipeline (broker, registry, connector, processor): the connector's ``coverage`` record
    reaches the processor's book agent, whose ``/book`` answers 410 for the delisted ETH.USD, 200 for BTC.USD."""
    from l3_atom.infra.local_pipeline import LocalPipeline

    config = tmp_path / "config.ini"
    config.write_text(re.sub(r"(?m)^symbol_refresh_s = .*$", "symbol_refresh_s = 1", PROJECT_CONFIG.read_text()))
    monkeypatch.setenv("L3_ATOM_CONFIG", str(config))
    with LocalPipeline(("BTC.USD", "ETH.USD"), rate=200, workdir=tmp_path) as pipeline:
        base = f"http://127.0.0.1:{pipeline.web_ports[0]}/book/coinbase"

        def status(symbol: str) -> int:
            pipeline.check_alive("processor0")
            pipeline.check_alive("connector")
            return http_get(f"{base}/{symbol}?depth=1")[0]

        def until(condition: Callable[[], bool], what: str) -> None:
            deadline = time.monotonic() + WAIT_S
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.3)
            assert condition(), f"{what}: not within {WAIT_S:.0f} s"

        until(lambda: status("BTC.USD") == 200 and status("ETH.USD") == 200, "both books on the processor")
        post(f"{pipeline.simulator_rest_url}/_sim/listing", {"delist": ["ETH-USD"]})
        until(lambda: status("ETH.USD") == 410, "the ETH.USD book closed on the processor")
        code, body = http_get(f"{base}/ETH.USD?depth=1")
        assert status("BTC.USD") == 200
    assert code == 410 and "closed: delisted" in json.loads(body)["error"]
