"""Trade backfill: paging stop conditions, gap detection by id, dedup at both edges, the simulator's history."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from typing import NamedTuple

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from l3_atom import data_source
from l3_atom.backfill import OVERLAP_MS, Request, TradeHistory, TradeRef, fetch_history, id_holes, next_step
from l3_atom.config import ConnectorSettings
from l3_atom.feed import RestClient
from l3_atom.limits import RestLimiter
from l3_atom.off_chain.binance import AggTradesHistory
from l3_atom.off_chain.binance_futures import BinanceFutures
from l3_atom.off_chain.coinbase import Coinbase, CoinbaseTrades
from l3_atom.raw_tail import drain, last_times
from l3_atom.sim.coinbase import CB_AFTER, CB_BEFORE, CoinbaseSimulator
from l3_atom.stream_processing.standardisers.binance_futures import BinanceFuturesStandardiser
from l3_atom.stream_processing.standardisers.coinbase import ALREADY_PUBLISHED, CoinbaseStandardiser
from l3_atom.stream_processing.trade_ids import PublishedIds
from l3_atom.topics import ORIGIN_BACKFILL
from tests.sinks import ListSink

pytestmark = pytest.mark.timeout(120)
COINBASE = CoinbaseTrades()
SINCE, UNTIL = 10_000, 20_000


class OldestFirst(TradeHistory):
    """A venue paging forward from an id (as Binance's ``fromId``)."""

    feed = "trades"
    newest_first = False
    max_pages = 3

    def request(self, exchange_symbol: str, since_ms: int, cursor: int | None) -> Request:
        return Request("/trades", {"fromId": str(cursor)} if cursor is not None else {"startTime": str(since_ms)})

    def trades(self, body: str) -> list[TradeRef]:
        return [TradeRef(*pair) for pair in orjson.loads(body)]


def refs(*pairs: tuple[int, int]) -> list[TradeRef]:
    return [TradeRef(*pair) for pair in pairs]


def test_newest_first_paging_goes_back_until_before_the_gap() -> None:
    assert next_step(COINBASE, refs((30, 25_000), (29, 15_000)), SINCE, UNTIL, None) == (29, None)
    assert next_step(COINBASE, refs((28, 12_000), (27, 9_000)), SINCE, UNTIL, 29) == (None, None)
    assert next_step(COINBASE, [], SINCE, UNTIL, 29) == (None, None)


def test_newest_first_paging_stops_on_pages_that_do_not_line_up() -> None:
    repeat = next_step(COINBASE, refs((30, 15_000), (29, 14_000)), SINCE, UNTIL, 29)
    assert repeat.cursor is None and "repeats" in repeat.problem
    disorder = next_step(COINBASE, refs((28, 15_000), (29, 14_000)), SINCE, UNTIL, None)
    assert disorder.cursor is None and "out of order" in disorder.problem


def test_oldest_first_paging_goes_forward_until_past_the_gap() -> None:
    history = OldestFirst()
    assert next_step(history, refs((5, 9_000), (6, 15_000)), SINCE, UNTIL, None) == (7, None)
    assert next_step(history, refs((7, 16_000), (8, 21_000)), SINCE, UNTIL, 7) == (None, None)
    assert "repeats" in next_step(history, refs((5, 16_000)), SINCE, UNTIL, 7).problem
    assert "out of order" in next_step(history, refs((9, 16_000), (8, 17_000)), SINCE, UNTIL, 7).problem


def test_id_holes_are_runs_of_missing_ids() -> None:
    assert id_holes([5, 6, 9, 10, 14]) == [(6, 9), (10, 14)]
    assert id_holes([3, 2, 1]) == []


def pages_of(pages: dict[str, list]) -> object:
    async def get_text(path: str, params: dict[str, str]) -> str:
        return orjson.dumps(pages[params.get("after") or params.get("fromId") or "first"]).decode()
    return get_text


def coinbase_trade(trade_id: int, second: int) -> dict:
    return {"time": f"1970-01-01T00:00:{second:02d}.000000Z", "trade_id": trade_id, "price": "10.50",
            "size": "0.1", "side": "buy"}


def test_fetch_history_returns_pages_oldest_first_and_every_trade_sorted() -> None:
    pages = {"first": [coinbase_trade(i, 40 - (12 - i)) for i in (12, 11, 10)],
             "10": [coinbase_trade(i, 30 + i) for i in (9, 8)], "8": [coinbase_trade(7, 1)]}
    fetched = asyncio.run(fetch_history(pages_of(pages), COINBASE, "BTC-USD", 35_000, 40_000))
    assert fetched.problem is None
    assert [t.trade_id for t in fetched.trades] == [7, 8, 9, 10, 11, 12]
    assert [orjson.loads(body)[0]["trade_id"] for body in fetched.pages] == [7, 9, 12]


def test_fetch_history_stops_at_the_page_limit_and_says_so() -> None:
    pages = {"first": [[1, 1], [2, 2]], "3": [[3, 3]], "4": [[4, 4]], "5": [[5, 5]]}
    fetched = asyncio.run(fetch_history(pages_of(pages), OldestFirst(), "X", OVERLAP_MS, 10**9))
    assert fetched.problem == "stopped after 3 pages"
    assert [t.trade_id for t in fetched.trades] == [1, 2, 3, 4]


def test_coinbase_history_page_is_read_exactly() -> None:
    assert COINBASE.trades(orjson.dumps([coinbase_trade(5, 3)]).decode()) == [TradeRef(5, 3000)]
    assert COINBASE.request("BTC-USD", 0, 17) == Request("/products/BTC-USD/trades", {"limit": "1000", "after": "17"})
    with pytest.raises(TypeError):
        COINBASE.trades('{"message": "NotFound"}')


@given(st.lists(st.integers(0, 60), max_size=80))
def test_published_ids_say_each_id_is_new_exactly_once(ids: list[int]) -> None:
    published = PublishedIds()
    seen: set[int] = set()
    for trade_id in ids:
        assert published.add("A", trade_id) == (trade_id not in seen)
        seen.add(trade_id)
    ranges = published.ranges("A")
    assert {i for low, high in ranges for i in range(low, high + 1)} == seen
    assert all(high + 1 < low for (_, high), (low, _) in itertools.pairwise(ranges))


def history_frame(*trades: dict) -> bytes:
    return orjson.dumps(list(trades))


def match(trade_id: int, sequence: int) -> bytes:
    return orjson.dumps({"type": "match", "trade_id": trade_id, "maker_order_id": "m", "taker_order_id": "t",
                         "side": "sell", "size": "0.5", "price": "100.25", "product_id": "BTC-USD",
                         "sequence": sequence, "time": "2024-01-01T00:00:00.000000Z"})


def test_backfilled_trades_are_published_once_in_id_order_between_the_streamed_ones() -> None:
    std = CoinbaseStandardiser()
    key = "coinbase_BTC-USD_full"
    published = [out.record["trade_id"] for frame in (match(1, 10), match(2, 11), match(6, 20))
                 for out in std.standardise(frame, 1, key)]
    assert published == ["1", "2", "6"]
    # The history overlaps both edges of the gap (2 and 6 streamed) and lists newest first.
    page = history_frame(*(coinbase_trade(i, i) for i in (7, 6, 5, 4, 3, 2)))
    outs = std.standardise(page, 99, key)
    assert [o.record["trade_id"] for o in outs] == ["3", "4", "5", "7"]
    assert {o.record["origin"] for o in outs} == {ORIGIN_BACKFILL}
    first = outs[0].record
    assert (first["taker_side"], first["maker_order_id"], first["sequence"], first["price"]) == (
        "sell", None, None, Decimal("10.50"))
    assert std.skipped[ALREADY_PUBLISHED] == 2
    # The stream brings 7 late: it was backfilled, so it is not published again.
    assert [o.topic for o in std.standardise(match(7, 21), 100, key)] == []
    assert std.skipped[ALREADY_PUBLISHED] == 3


def test_simulator_serves_its_trade_history_with_coinbase_cursor_paging() -> None:
    async def body() -> None:
        async with CoinbaseSimulator(rate=5000, products=("BTC-USD",), seed=3) as sim:
            sim.advance(6000)
            made = sim.stats()["trades"]["BTC-USD"]
            assert made > 50
            client = RestClient(sim.rest_url, RestLimiter("coinbase", Coinbase.limits))
            try:
                latest = orjson.loads(await client.get_text("/products/BTC-USD/trades", {"limit": "10"}))
                ids = [t["trade_id"] for t in latest]
                assert ids == sorted(ids, reverse=True) and len(ids) == 10
                older = orjson.loads(await client.get_text("/products/BTC-USD/trades",
                                                           {"limit": "10", "after": str(ids[-1])}))
                assert [t["trade_id"] for t in older] == list(range(ids[-1] - 1, ids[-1] - 11, -1))
                newer = orjson.loads(await client.get_text("/products/BTC-USD/trades",
                                                           {"limit": "3", "before": str(older[-1]["trade_id"])}))
                assert [t["trade_id"] for t in newer] == [older[-1]["trade_id"] + n for n in (3, 2, 1)]
                fetched = await fetch_history(client.get_text, COINBASE, "BTC-USD", 0, 2**62)
            finally:
                await client.close()
            assert fetched.problem is None
            assert [t.trade_id for t in fetched.trades] == list(range(ids[0] - made + 1, ids[0] + 1))
            session_headers = await headers_of(sim.rest_url + "/products/BTC-USD/trades?limit=5")
            assert (int(session_headers[CB_BEFORE]), int(session_headers[CB_AFTER])) == (ids[0], ids[0] - 4)

    asyncio.run(body())


async def headers_of(url: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return dict(response.headers)


def test_raw_tail_gives_the_last_receive_time_of_each_trades_key() -> None:
    messages = [
        ("coinbase_BTC-USD_full", [("atom_timestamp", "100"), ("connection_id", "c")]),
        ("coinbase_BTC-USD_ticker", [("atom_timestamp", "900")]),
        ("coinbase_BTC-USD_full", [("atom_timestamp", "300")]),
        ("coinbase_ETH-USD_full", [("atom_timestamp", "bad")]),
        ("coinbase_BTC-USD_full", [("atom_timestamp", "200")]),
        (None, [("atom_timestamp", "999")]),
    ]
    assert last_times(messages, "full") == {"coinbase_BTC-USD_full": 300}


class StubMessage(NamedTuple):
    """What ``raw_tail.drain`` reads of a confluent-kafka message."""

    partition_: int
    offset_: int
    stamp: str

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes:
        return b"coinbase_BTC-USD_full"

    def headers(self) -> list[tuple[str, bytes]]:
        return [("atom_timestamp", self.stamp.encode())]


class SlowFirstFetch:
    """A consumer whose first fetches come back empty (a loaded machine), then the partition's messages."""

    def __init__(self, empty: int, messages: list[StubMessage]) -> None:
        self.answers = [[]] * empty + [messages]

    def consume(self, count: int, timeout: float) -> list[StubMessage]:
        return self.answers.pop(0) if self.answers else []


def test_raw_tail_waits_for_a_slow_first_fetch_before_taking_quiet_for_the_end() -> None:
    """A restarted connector once read nothing when the first fetch took longer than the quiet time: it reported
    no downtime and backfilled none of it (found by ``bench.faults``' connector-kill scenario)."""
    consumer = SlowFirstFetch(3, [StubMessage(0, 7, "100"), StubMessage(0, 8, "200")])
    assert last_times(drain(consumer, {0: 9}), "full") == {"coinbase_BTC-USD_full": 200}
    assert list(drain(SlowFirstFetch(3, []), {})) == [], "nothing to wait for: the first quiet fetch ends it"


class StubHistory:
    """A REST client answering the backfill's pages from a dict (unit test of the connector's reporting)."""

    def __init__(self, pages: dict[str, list], failures: int = 0) -> None:
        self.pages = pages
        self.failures = failures

    async def get_text(self, path: str, params: dict[str, str]) -> str:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("GET answered 429: rate limited")
        return orjson.dumps(self.pages[params.get("after", "first")]).decode()

    async def close(self) -> None:
        """Nothing to close."""


def backfill_with(pages: dict[str, list], monkeypatch: pytest.MonkeyPatch, failures: int = 0) -> ListSink:
    monkeypatch.setattr(data_source, "BACKFILL_RETRY_S", 0.0)
    sink = ListSink()
    feed = Coinbase(["BTC.USD"], sink, ConnectorSettings(0.1, 1.0, 30.0, 1 << 20))
    feed.normalised_of = {"BTC-USD": "BTC.USD"}
    client = StubHistory(pages, failures)
    monkeypatch.setattr(feed, "rest_client", lambda: client)
    asyncio.run(feed.backfill("BTC-USD", 35_000, 40_000))
    return sink


def test_ids_the_history_lacks_are_reported_unrecoverable(monkeypatch: pytest.MonkeyPatch) -> None:
    pages = {"first": [coinbase_trade(i, 39) for i in (12, 11, 8)], "8": [coinbase_trade(7, 1)]}
    sink = backfill_with(pages, monkeypatch)
    kinds = [r["kind"] for r in sink.coverage_records]
    assert kinds == ["trades_backfilled", "trades_unrecoverable"]
    filled, lost = sink.coverage_records
    assert (filled["count"], filled["sequence_before"], filled["sequence_after"]) == (4, 7, 12)
    assert (lost["sequence_before"], lost["sequence_after"], lost["count"]) == (8, 11, 2)
    assert len(sink.marked) == 2


def test_a_page_that_repeats_ends_the_backfill_and_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    pages = {"first": [coinbase_trade(i, 39) for i in (12, 11)], "11": [coinbase_trade(i, 38) for i in (12, 11)]}
    sink = backfill_with(pages, monkeypatch)
    lost, filled = sink.coverage_records
    assert lost["kind"] == "trades_unrecoverable" and "repeats" in lost["reason"]
    assert (lost["start"], lost["end"]) == (35_000, 39_000)
    assert filled["kind"] == "trades_backfilled" and filled["count"] == 2
    assert [orjson.loads(frame)[0]["trade_id"] for _, frame, _ in sink.marked] == [12], "the repeat is not archived"


def test_a_venue_that_keeps_refusing_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = backfill_with({"first": [coinbase_trade(5, 39)], "5": []}, monkeypatch, failures=2)
    assert [r["kind"] for r in sink.coverage_records] == ["trades_backfilled"], "two refusals, then an answer"
    sink = backfill_with({}, monkeypatch, failures=data_source.BACKFILL_ATTEMPTS)
    [refused] = sink.coverage_records
    assert refused["kind"] == "trades_unrecoverable" and "429" in refused["reason"]
    assert (refused["start"], refused["end"]) == (35_000, 40_000) and sink.marked == []


AGG = AggTradesHistory("/fapi/v1/aggTrades")


def agg_trade(agg_id: int, time_ms: int) -> dict:
    """An entry of ``GET /fapi/v1/aggTrades`` as Binance documents it."""
    return {"a": agg_id, "p": "7.03", "q": "0.5", "f": agg_id * 2, "l": agg_id * 2 + 1, "T": time_ms, "m": True}


def test_binance_agg_trades_page_forward_from_a_time_then_from_ids() -> None:
    first = AGG.request("BTCUSDT", 1_000_000, None)
    assert first == Request("/fapi/v1/aggTrades", {"symbol": "BTCUSDT", "limit": "1000", "startTime": "1000000",
                                                    "endTime": str(1_000_000 + 3_599_999)})
    assert AGG.request("BTCUSDT", 0, 27).params == {"symbol": "BTCUSDT", "limit": "1000", "fromId": "27"}
    assert AGG.trades(orjson.dumps([agg_trade(26129, 1498793709153)]).decode()) == [TradeRef(26129, 1498793709153)]
    pages = {"first": [agg_trade(i, 30_000 + i) for i in (5, 6, 7)], "8": [agg_trade(8, 41_000)]}
    fetched = asyncio.run(fetch_history(pages_of(pages), AGG, "BTCUSDT", 32_000, 40_000))
    assert fetched.problem is None and [t.trade_id for t in fetched.trades] == [5, 6, 7, 8]
    assert [orjson.loads(body)[0]["a"] for body in fetched.pages] == [5, 8], "oldest first, as fetched"


def test_binance_futures_backfilled_agg_trades_are_published_once_and_marked() -> None:
    std = BinanceFuturesStandardiser()
    key = "binance-futures_BTCUSDT_aggtrade"

    def streamed(agg_id: int) -> bytes:
        return orjson.dumps({"stream": "btcusdt@aggTrade", "data": {
            "e": "aggTrade", "E": 1, "s": "BTCUSDT", "a": agg_id, "p": "7.03", "q": "0.5", "f": 1, "l": 2,
            "T": 5, "m": False}})

    assert [o.record["trade_id"] for i in (1, 2, 6) for o in std.standardise(streamed(i), 1, key, "BTC.USDT-PERP")] == [
        "1", "2", "6"]
    outs = std.standardise(orjson.dumps([agg_trade(i, 9) for i in (2, 3, 4, 5, 6, 7)]), 2, key, "BTC.USDT-PERP")
    assert [(o.topic, o.record["trade_id"], o.record["origin"]) for o in outs] == [
        ("trades", str(i), ORIGIN_BACKFILL) for i in (3, 4, 5, 7)]
    assert outs[0].record["taker_side"] == "sell" and outs[0].record["symbol"] == "BTC.USDT-PERP"
    assert std.standardise(streamed(7), 3, key, "BTC.USDT-PERP") == []
    assert BinanceFutures.trade_history.feed == "aggtrade"


class Spawner:
    """Stands in for a connection: keeps what it is asked to run beside it (never run: as if cancelled)."""

    def __init__(self) -> None:
        self.work: list = []

    def spawn(self, work: object) -> None:
        self.work.append(work)


def test_a_backfill_cut_short_by_another_drop_is_started_again_from_its_beginning() -> None:
    feed = Coinbase(["BTC.USD"], ListSink(), ConnectorSettings(0.1, 1.0, 30.0, 1 << 20))
    feed.normalised_of = {"BTC-USD": "BTC.USD"}
    connection = Spawner()
    feed._stream_down(["BTC-USD"], "closed", 1_000)
    feed._stream_up(connection, ["BTC-USD"])
    feed._stream_down(["BTC-USD"], "closed", 5_000)  # the backfill of the first drop never finished
    feed._stream_up(connection, ["BTC-USD"])
    first, second = connection.work
    assert (first.cr_frame.f_locals["since_ms"], second.cr_frame.f_locals["since_ms"]) == (1_000, 1_000)
    for work in connection.work:
        work.close()
    ups = [r for r in feed.sink.coverage_records if r["kind"] == "stream_up"]
    assert [r["start"] for r in ups] == [1_000, 5_000], "each outage is reported as it was"
