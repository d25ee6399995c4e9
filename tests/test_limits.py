"""The pure limiter (made-up clock), the simulator's gates, config overrides, and RestClient against a real server."""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from l3_atom.config import ConfigError, ConnectorSettings, Settings
from l3_atom.connector import feed_factory
from l3_atom.data_source import DataFeed
from l3_atom.feed import RestClient, RestError
from l3_atom.infra.processes import runner_command
from l3_atom.limits import OVERRIDES, Budget, EndpointWeight, Limits, Rate, RestLimiter, Window, retry_after_s
from l3_atom.off_chain.binance import Binance
from l3_atom.off_chain.binance_futures import BinanceFutures
from l3_atom.off_chain.coinbase import Coinbase
from l3_atom.sim.coinbase import CoinbaseSimulator
from l3_atom.sim.gate import BANNED, POLICY_VIOLATION, THROTTLED, RestGate, SubscribeGate, SubscribeGateFactory
from l3_atom.sources import connector_class
from tests.sinks import ListSink

PROJECT_CONFIG = Path(__file__).resolve().parents[1] / "config.ini"
VENUES = ("coinbase", "binance", "binance-futures", "bybit", "kraken", "kraken-futures", "bitfinex", "deribit",
          "gemini", "phemex", "dydx", "okx", "kucoin", "bitstamp", "htx")


def test_a_window_never_holds_more_than_its_limit() -> None:
    window = Window(Rate(3, 10.0))
    for _ in range(3):
        assert window.delay(0.0, 1) == 0
        window.complete(0.0, window.take(1))
    assert window.delay(0.0, 1) == 10.0
    assert window.delay(9.99, 1) == pytest.approx(0.01)
    assert window.delay(10.0, 1) == 0


def test_in_flight_requests_count_until_they_complete_and_a_window_after() -> None:
    window = Window(Rate(2, 1.0))
    first = window.take(1)
    window.take(1)
    assert window.delay(5.0, 1) is None  # only a completion can make room
    window.complete(5.0, first)
    assert window.delay(5.5, 1) == pytest.approx(0.5)  # counted from its completion, not its start
    assert window.delay(6.0, 1) == 0


def test_weights_and_a_request_heavier_than_the_budget() -> None:
    window = Window(Rate(10, 1.0))
    window.complete(0.0, window.take(7))
    assert window.delay(0.0, 3) == 0
    assert window.delay(0.0, 4) == 1.0
    assert window.take(50) == 10  # heavier than the whole budget: takes the whole window, never blocks forever


def test_every_window_of_a_budget_applies_and_pauses_hold_everything() -> None:
    budget = Budget((Rate(2, 1.0), Rate(3, 10.0)))
    for now in (0.0, 0.1, 1.5):
        assert budget.delay(now, 1) == 0
        budget.complete(now, budget.take(1))
    assert budget.delay(2.0, 1) == pytest.approx(8.0)  # the second window is full until t=10
    budget.pause(20.0)
    budget.pause(15.0)  # a later, shorter pause never shortens the first
    assert budget.delay(12.0, 1) == pytest.approx(8.0)


def test_a_venues_used_weight_counts_what_we_did_not_send() -> None:
    budget = Budget((Rate(100, 60.0),))
    budget.complete(0.0, budget.take(10))
    budget.observe_used(1.0, 95, 60.0)  # another process on our IP spent 85
    assert budget.delay(1.0, 5) == 0
    assert budget.delay(1.0, 6) == pytest.approx(59.0)  # our own 10 (done at t=0) leave first


def test_endpoint_weights_by_parameter() -> None:
    depth = Binance.limits.weights[0]
    assert [depth.of({"limit": str(n)}) for n in (5, 100, 101, 500, 1000, 5000, 9999)] == [5, 5, 25, 25, 50, 250, 250]
    assert depth.of({}) == 5 and depth.of({"limit": "x"}) == 5
    assert Binance.limits.weight("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "1000"}) == 50
    assert Binance.limits.weight("/api/v3/exchangeInfo") == 20
    assert BinanceFutures.limits.weight("/fapi/v1/depth", {"limit": "1000"}) == 20
    assert Binance.limits.weight("/api/v3/ping") == 1
    assert EndpointWeight("/x", 3).of({"limit": "10"}) == 3


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s("0.5") == 0.5
    assert retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT", now_epoch=1445412480.0) == 10.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None


def test_every_venue_declares_positive_limits_with_a_cited_docstring() -> None:
    for source in VENUES:
        feed = connector_class(source)
        assert feed.limits is not DataFeed.limits, source
        assert "https://" in (feed.__doc__ or ""), f"{source}: no cited page in the class docstring"
        assert all(rate.limit > 0 for rate in (*feed.limits.rest, feed.limits.subscribes, feed.limits.connections))


def test_overrides_from_config_and_bad_budgets_are_refused(tmp_path: Path) -> None:
    def settings(section: str) -> Settings:
        path = tmp_path / "config.ini"
        path.write_text(PROJECT_CONFIG.read_text() + section)
        return Settings(path, tmp_path / ".env")

    good = settings("\n[limits.binance_futures]\nrest_weight = 60\nrest_window_s = 1\nstreams_per_connection = 5\n")
    limits = BinanceFutures.limits.overridden(good.limit_overrides("binance-futures", OVERRIDES))
    assert limits.rest[0] == Rate(60, 1.0) and limits.streams_per_connection == 5
    assert limits.weights == BinanceFutures.limits.weights
    feed = feed_factory(good, "binance-futures", ["BTC.USDT-PERP"])(None)
    assert feed.limits == limits and feed.limiter.limits == limits
    for bad in ("0", "-5"):
        with pytest.raises(ConfigError, match=r"\[limits.coinbase\] rest_weight must be greater than 0"):
            settings(f"\n[limits.coinbase]\nrest_weight = {bad}\n").limit_overrides("coinbase", OVERRIDES)
    with pytest.raises(ConfigError, match="unknown option"):
        settings("\n[limits.coinbase]\nrest_wieght = 5\n").limit_overrides("coinbase", OVERRIDES)


def test_the_simulators_rest_gate() -> None:
    gate = RestGate(limit=2, window_s=1.0, ban_after=3, ban_s=10.0)
    assert gate.answer(0.0) is None and gate.answer(0.1) is None
    assert gate.answer(0.2) == (THROTTLED, 1)
    assert gate.answer(0.5) == (THROTTLED, 1)  # before Retry-After: an early request, a second violation
    assert gate.counts.early == 1
    assert gate.answer(2.0) is None
    assert gate.answer(2.1) is None
    assert gate.answer(2.2) == (BANNED, 10)  # the third 429 in the ban window is a ban
    assert gate.answer(5.0) == (BANNED, 8)
    assert gate.counts.during_ban == 1 and gate.counts.bans == 1
    assert gate.answer(12.3) is None


def test_the_simulators_subscribe_gate() -> None:
    gate = SubscribeGate(limit=3, window_s=1.0)
    assert [gate.allows(t) for t in (0.0, 0.1, 0.2, 0.3)] == [True, True, True, False]
    assert gate.allows(1.25)
    assert SubscribeGate().allows(0.0)


LIMITS = Limits(rest=(Rate(100, 60.0),), subscribes=Rate(1, 1.0), connections=Rate(1, 1.0),
                used_weight_header="X-MBX-USED-WEIGHT-1M", ban_s=0.2)


class Venue:
    """A real HTTP server that answers from a script of (status, headers) and remembers when it was asked."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]):
        self.script = script
        self.asked: list[float] = []

    async def handle(self, _request: web.Request) -> web.Response:
        self.asked.append(asyncio.get_running_loop().time())
        status, headers = self.script.pop(0) if self.script else (200, {})
        return web.Response(text="{}" if status == 200 else "no", status=status, headers=headers)

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def run_client(script: list[tuple[int, dict[str, str]]], attempts: int = 5) -> tuple[Venue, RestLimiter, object]:
    venue = Venue(script)

    async def go() -> object:
        async with venue as url:
            limiter = RestLimiter("test", LIMITS)
            client = RestClient(url, limiter, backoff=(0.01, 0.05))
            try:
                return limiter, await client.get_text("/x", attempts=attempts)
            except RestError as exc:
                return limiter, exc
            finally:
                await client.close()

    limiter, result = asyncio.run(go())
    return venue, limiter, result


def test_a_429_is_waited_out_before_the_next_request() -> None:
    venue, limiter, body = run_client([(429, {"Retry-After": "1"})])
    assert body == "{}"
    assert venue.asked[1] - venue.asked[0] >= 1.0
    assert limiter.counts.throttled == 1 and limiter.counts.by_status == {429: 1, 200: 1}


def test_a_ban_stops_rest_for_its_duration_and_5xx_are_retried() -> None:
    venue, limiter, body = run_client([(418, {}), (503, {}), (502, {})])
    assert body == "{}"
    assert venue.asked[1] - venue.asked[0] >= LIMITS.ban_s  # no Retry-After: the venue's declared ban
    assert limiter.counts.bans == 1 and limiter.counts.server_errors == 2


def test_other_answers_fail_at_once_and_attempts_run_out() -> None:
    venue, _, error = run_client([(404, {})])
    assert isinstance(error, RestError) and error.status == 404 and len(venue.asked) == 1
    venue, _, error = run_client([(503, {})] * 3, attempts=3)
    assert isinstance(error, RestError) and error.status == 503 and len(venue.asked) == 3


def test_the_used_weight_the_venue_reports_holds_back_the_next_request() -> None:
    _, limiter, body = run_client([(200, {"X-MBX-USED-WEIGHT-1M": "100"})])
    assert body == "{}"
    assert limiter.budget.delay(limiter.clock(), 1) > 50  # the venue says the minute is spent


def test_the_simulator_closes_a_connection_that_subscribes_too_fast_and_answers_429() -> None:
    """A real simulator: 5 subscribes at once against 3 a second close the connection (1008); REST past 2/s is 429."""

    async def go() -> tuple[int | None, list[int], dict]:
        limits = SubscribeGateFactory(limit=3, window_s=1.0)
        async with CoinbaseSimulator(products=["BTC-USD"], rest_gate=RestGate(2, 1.0), subscribe_gate=limits) as sim:
            async with ClientSession() as session:
                async with session.ws_connect(sim.ws_url) as ws:
                    subscribe = {"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["ticker"]}
                    for _ in range(5):
                        await ws.send_json(subscribe)
                    async for _message in ws:
                        pass
                    code = ws.close_code
                statuses = []
                for _ in range(3):
                    async with session.get(f"{sim.rest_url}/products") as answer:
                        statuses.append(answer.status)
            return code, statuses, sim.stats()["limits"]

    code, statuses, counts = asyncio.run(go())
    assert code == POLICY_VIOLATION and counts["subscribe_closes"] == 1
    assert statuses == [200, 200, THROTTLED] and counts["throttled"] == 1


def fetch_books(script: list[tuple[int, dict[str, str]]], products: list[str]) -> tuple[Venue, Coinbase]:
    """A Coinbase feed fetching ``products``' level-3 books from a real server answering from ``script``."""
    venue = Venue(script)

    async def go() -> Coinbase:
        async with venue as url:
            feed = Coinbase(["BTC.USD"], ListSink(), ConnectorSettings(0.01, 0.05, 30.0, 1 << 20), rest_url=url,
                            limits=replace(Coinbase.limits, ban_s=0.2))
            feed.normalised_of = {"BTC-USD": "BTC.USD", "ETH-USD": "ETH.USD"}
            await asyncio.wait_for(feed.fetch_snapshots(products), 30)
            await feed._snapshot_client.close()
            return feed

    return venue, asyncio.run(go())


def test_a_failed_snapshot_is_asked_for_again_until_it_arrives() -> None:
    venue, feed = fetch_books([(503, {}), (418, {}), (429, {"Retry-After": "0"})], ["BTC-USD"])
    assert len(venue.asked) == 4 and feed.snapshot_retries == 3
    assert [key for key, _, _ in feed.sink.frames] == ["coinbase_BTC-USD_full"]
    assert feed.limiter.counts.bans == 1 and feed.limiter.counts.throttled == 1


def test_a_snapshot_no_retry_can_change_is_not_asked_again_and_the_next_one_goes() -> None:
    venue, feed = fetch_books([(404, {})], ["BTC-USD", "ETH-USD"])
    assert len(venue.asked) == 2 and feed.snapshot_retries == 0
    assert [key for key, _, _ in feed.sink.frames] == ["coinbase_ETH-USD_full"]


def test_the_simulators_limit_flags_are_checked() -> None:
    result = subprocess.run(runner_command("simulate", "coinbase", "--rest-limit", "-1"),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "--rest-limit" in result.stderr and "Traceback" not in result.stderr
