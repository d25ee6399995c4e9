"""Trade backfill of Binance spot, Kraken and Gemini: paging, stop conditions, the REST budget, dedup.

The pages are the venues' documented answers (``tests/fixtures/backfill/<venue>.json``,
quoted from the docs each names) or built from those entries.  ``VenueHistory`` is a
real HTTP server on 127.0.0.1 that pages a list of trades the way each venue documents
it; the connector's ``backfill`` fetches from it through its own REST client and
limiter, archives the pages into a ``ListSink``, and the standardiser turns them,
with streamed frames on both sides of the gap, into records.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from l3_atom.backfill import OVERLAP_MS, Request, TradeRef, fetch_history
from l3_atom.config import ConnectorSettings
from l3_atom.data_source import DataFeed
from l3_atom.off_chain.binance import Binance, HistoricalTrades
from l3_atom.off_chain.gemini import Gemini, GeminiTrades
from l3_atom.off_chain.kraken import Kraken, KrakenTrades, rest_pair, websocket_asset
from l3_atom.stream_processing.standardiser import StandardiseError, Standardiser
from l3_atom.stream_processing.standardisers.binance import TRADE_ALREADY_PUBLISHED, BinanceStandardiser
from l3_atom.stream_processing.standardisers.gemini import BROKEN, GeminiStandardiser
from l3_atom.stream_processing.standardisers.kraken import ALREADY_PUBLISHED, KrakenStandardiser
from l3_atom.topics import ORIGIN_BACKFILL, raw_key
from tests.exchanges.doc_fixtures import http_bodies
from tests.sinks import ListSink
from tests.test_limits import Venue

pytestmark = pytest.mark.timeout(120)
FIXTURES = Path(__file__).parent / "fixtures" / "backfill"
DOCS = {venue: json.loads((FIXTURES / f"{venue}.json").read_text()) for venue in ("binance", "kraken", "gemini")}
NS_PER_MS = 1_000_000
SETTINGS = ConnectorSettings(0.1, 1.0, 30.0, 1 << 20)


def body(value: object) -> str:
    return orjson.dumps(value).decode()


def scripted(answers: dict[tuple[str, str], object], asked: list[Request]) -> Callable:
    """A ``get_text`` answering by (path, the one cursor parameter's value) and noting each request."""
    async def get_text(path: str, params: dict[str, str]) -> str:
        asked.append(Request(path, params))
        cursor = params.get("fromId") or params.get("since_tid") or params.get("since") or params.get("startTime")
        return body(answers[path, cursor or params.get("timestamp", "")])
    return get_text


# -- Binance spot: historicalTrades by fromId, located with one aggTrades -------------------------------------

SPOT = HistoricalTrades()


def spot_trade(trade_id: int, time_ms: int) -> dict:
    """An entry of ``historicalTrades`` as documented, with its id and time changed."""
    return {**DOCS["binance"]["historicalTrades"][0], "id": trade_id, "time": time_ms}


def test_binance_spot_history_reads_the_documented_bodies_and_weighs_as_documented() -> None:
    docs = DOCS["binance"]
    assert SPOT.trades(body(docs["historicalTrades"])) == [TradeRef(28457, 1499865549590)]
    assert SPOT.located(body(docs["aggTrades"])) == 27781, "the first trade id of the aggregate"
    assert SPOT.located("[]") is None
    assert SPOT.locate("BNBBTC", 5000) == Request("/api/v3/aggTrades",
                                                  {"symbol": "BNBBTC", "startTime": "5000", "limit": "1"})
    assert SPOT.request("BNBBTC", 5000, 27781) == Request(
        "/api/v3/historicalTrades", {"symbol": "BNBBTC", "limit": "1000", "fromId": "27781"})
    with pytest.raises(ValueError, match="locate"):
        SPOT.request("BNBBTC", 5000, None)
    assert Binance.limits.weight("/api/v3/historicalTrades", {"limit": "1000"}) == 25
    assert Binance.limits.weight("/api/v3/aggTrades", {"limit": "1"}) == 4
    assert Binance.trade_history is not None and Binance.trade_history.sequential_ids
    spot = Binance(["BNB.BTC"], ListSink(), SETTINGS)
    assert spot.frame_key(orjson.dumps({"stream": "bnbbtc@trade", "data": docs["trade"]})) == raw_key(
        "binance", "BNBBTC", SPOT.feed), "pages are archived under the streamed trades' key"


def test_binance_spot_pages_forward_from_the_located_id_until_past_the_gap() -> None:
    asked: list[Request] = []
    answers = {
        ("/api/v3/aggTrades", str(30_000 - OVERLAP_MS)): [{**DOCS["binance"]["aggTrades"][0], "f": 100, "T": 29_000}],
        ("/api/v3/historicalTrades", "100"): [spot_trade(i, 29_000 + i) for i in (100, 101, 102)],
        ("/api/v3/historicalTrades", "103"): [spot_trade(103, 39_000), spot_trade(104, 41_000)],
    }
    fetched = asyncio.run(fetch_history(scripted(answers, asked), SPOT, "BNBBTC", 30_000, 40_000))
    assert fetched.problem is None
    assert [t.trade_id for t in fetched.trades] == [100, 101, 102, 103, 104]
    assert [r.path for r in asked] == ["/api/v3/aggTrades"] + ["/api/v3/historicalTrades"] * 2
    assert len(fetched.pages) == 2, "the locating aggTrades answer is not archived"


def test_binance_spot_with_no_trade_since_the_gap_fetches_nothing_and_a_bad_locate_says_so() -> None:
    nothing = asyncio.run(fetch_history(scripted({("/api/v3/aggTrades", "8000"): []}, []), SPOT, "X", 10_000, 20_000))
    assert nothing == ([], [], None, None)
    refused = asyncio.run(fetch_history(scripted({("/api/v3/aggTrades", "8000"): {"code": -1121, "msg": "Invalid"}},
                                                 []), SPOT, "X", 10_000, 20_000))
    assert refused.pages == [] and "unreadable answer from /api/v3/aggTrades" in refused.problem


def binance_stream(trade_id: int) -> bytes:
    return orjson.dumps({"stream": "bnbbtc@trade", "data": {**DOCS["binance"]["trade"], "t": trade_id}})


def test_binance_spot_backfilled_trades_are_published_once_between_the_streamed_ones() -> None:
    std = BinanceStandardiser()
    key = raw_key("binance", "BNBBTC", "trade")
    streamed = [o.record for i in (1, 2, 6) for o in std.standardise(binance_stream(i), 1, key, "BNB.BTC")]
    assert [r["trade_id"] for r in streamed] == ["1", "2", "6"]
    page = orjson.dumps([spot_trade(i, 1672515782136) for i in (2, 3, 4, 5, 6, 7)])
    outs = std.standardise(page, 2, key, "BNB.BTC")
    assert [(o.topic, o.record["trade_id"], o.record["origin"]) for o in outs] == [
        ("trades", str(i), ORIGIN_BACKFILL) for i in (3, 4, 5, 7)]
    first = outs[0].record
    assert set(first) == set(streamed[0]), "the same record shape as streamed trades"
    assert (first["symbol"], first["price"], first["size"], first["taker_side"], first["sequence"]) == (
        "BNB.BTC", Decimal("4.00000100"), Decimal("12.00000000"), "sell", 3)
    assert std.skipped[TRADE_ALREADY_PUBLISHED] == 2
    assert std.standardise(binance_stream(7), 3, key, "BNB.BTC") == [], "streamed after it was backfilled"
    assert std.skipped[TRADE_ALREADY_PUBLISHED] == 3


# -- Kraken: Trades by a nanosecond since, each page naming the next ------------------------------------------

KRAKEN = KrakenTrades()


def kraken_page(trades: list[tuple[int, str]], last: str) -> dict:
    """A ``Trades`` answer like the documented one: (trade_id, time in seconds) per trade; times are JSON numbers."""
    documented = DOCS["kraken"]["Trades"]["result"]["XXBTZUSD"][0]
    rows = [[*documented[:2], float(time), *documented[3:6], trade_id] for trade_id, time in trades]
    return {"error": [], "result": {"XXBTZUSD": rows, "last": last}}


def test_kraken_history_reads_the_documented_body() -> None:
    docs = DOCS["kraken"]
    documented = body(docs["Trades"])
    assert KRAKEN.trades(documented) == [TradeRef(61044952, 1688669597827), TradeRef(61044953, 1688669598280),
                                         TradeRef(61044956, 1688669602698)]
    assert KRAKEN.next_cursor(documented, 61044957) == 1688671969993150842, "the page's last, not an id"
    assert KRAKEN.request("BTC/USD", 1_000, None) == Request(
        "/0/public/Trades", {"pair": "XBTUSD", "since": str(1_000 * NS_PER_MS), "count": "1000"})
    assert [rest_pair(name) for name in ("DOGE/USD", "MATIC/GBP", "ETH/BTC")] == ["XDGUSD", "MATICGBP", "ETHXBT"]
    assert KRAKEN.request("BTC/USD", 1_000, 1688671969993150842).params["since"] == "1688671969993150842"
    with pytest.raises(ValueError, match="without trade_id"):
        KRAKEN.trades(body(docs["TradesWithoutIds"]))
    with pytest.raises(ValueError, match="EQuery:Unknown asset pair"):
        KRAKEN.trades(body({"error": ["EQuery:Unknown asset pair"]}))
    assert not KRAKEN.sequential_ids and Kraken.trade_history is not None
    feed = Kraken(["MATIC.USD"], ListSink(), SETTINGS)
    assert feed.frame_key(orjson.dumps(docs["trade"])) == raw_key("kraken", "MATIC/USD", KRAKEN.feed)


def test_kraken_rest_pair_of_every_recorded_websocket_name_is_its_altname(recordings: Path) -> None:
    body = next(b for url, b in http_bodies(recordings / "kraken").items() if url.endswith("/0/public/AssetPairs"))
    streamed = set(Kraken.parse_symbols(body).values())
    altnames = {}
    for pair in orjson.loads(body)["result"].values():
        base, _, quote = pair.get("wsname", "").partition("/")
        altnames[f"{websocket_asset(base)}/{websocket_asset(quote)}"] = pair["altname"]
    assert len(streamed) > 200
    assert {name: rest_pair(name) for name in streamed} == {name: altnames[name] for name in streamed}


def test_kraken_pages_from_each_pages_last_until_past_the_gap() -> None:
    asked: list[Request] = []
    since_ns = str((30_000 - OVERLAP_MS) * NS_PER_MS)
    answers = {
        ("/0/public/Trades", since_ns): kraken_page([(7, "28.5"), (8, "31.25")], "31250000001"),
        ("/0/public/Trades", "31250000001"): kraken_page([(9, "35.1"), (10, "40.0001")], "40000100000"),
    }
    fetched = asyncio.run(fetch_history(scripted(answers, asked), KRAKEN, "BTC/USD", 30_000, 40_000))
    assert fetched.problem is None and [t.trade_id for t in fetched.trades] == [7, 8, 9, 10]
    assert [r.params["since"] for r in asked] == [since_ns, "31250000001"]


def test_kraken_a_page_that_goes_back_before_its_since_or_lacks_ids_ends_the_backfill() -> None:
    back = {("/0/public/Trades", "28000000000"): kraken_page([(7, "29"), (8, "31")], "31000000000"),
            ("/0/public/Trades", "31000000000"): kraken_page([(8, "30.999"), (9, "32")], "32000000000")}
    fetched = asyncio.run(fetch_history(scripted(back, []), KRAKEN, "BTC/USD", 30_000, 40_000))
    assert "repeats" in fetched.problem and [t.trade_id for t in fetched.trades] == [7, 8]
    old = {("/0/public/Trades", "28000000000"): DOCS["kraken"]["TradesWithoutIds"]}
    fetched = asyncio.run(fetch_history(scripted(old, []), KRAKEN, "BTC/USD", 30_000, 40_000))
    assert fetched.pages == [] and "without trade_id" in fetched.problem


def kraken_stream(trade_id: int) -> bytes:
    trade = {**DOCS["kraken"]["trade"]["data"][0], "trade_id": trade_id}
    return orjson.dumps({**DOCS["kraken"]["trade"], "data": [trade]})


def test_kraken_backfilled_trades_are_published_once_between_the_streamed_ones() -> None:
    std = KrakenStandardiser()
    key = raw_key("kraken", "MATIC/USD", "trade")
    streamed = [o.record for i in (1, 2, 6) for o in std.standardise(kraken_stream(i), 1, key, "MATIC.USD")]
    assert [r["trade_id"] for r in streamed] == ["1", "2", "6"]
    page = kraken_page([(i, f"1695628177.{i}") for i in (7, 6, 5, 4, 3, 2)], "1695628177700000000")
    outs = std.standardise(orjson.dumps(page), 2, key, "MATIC.USD")
    assert [(o.topic, o.record["trade_id"], o.record["origin"]) for o in outs] == [
        ("trades", str(i), ORIGIN_BACKFILL) for i in (3, 4, 5, 7)], "in id order"
    first = outs[0].record
    assert set(first) == set(streamed[0])
    assert (first["symbol"], first["price"], first["size"], first["taker_side"], first["sequence"],
            first["event_timestamp"]) == ("MATIC.USD", Decimal("30243.40000"), Decimal("0.34507674"), "buy", 3,
                                          1695628177300)
    assert std.skipped[ALREADY_PUBLISHED] == 2
    assert std.standardise(kraken_stream(7), 3, key, "MATIC.USD") == []
    with pytest.raises(StandardiseError, match="without trade ids"):
        std.standardise(orjson.dumps(DOCS["kraken"]["TradesWithoutIds"]), 4, key, "MATIC.USD")
    with pytest.raises(StandardiseError, match="EGeneral:Too many requests"):
        std.standardise(b'{"error": ["EGeneral:Too many requests"], "result": {}}', 5, key, "MATIC.USD")


# -- Gemini: List Trades from a timestamp, then since_tid; each page newest first ----------------------------

GEMINI = GeminiTrades()


def gemini_trade(tid: int, time_ms: int, **changes: object) -> dict:
    return {**DOCS["gemini"]["trades"][0], "tid": tid, "timestampms": time_ms, "broken": False, **changes}


def test_gemini_history_reads_the_documented_body_newest_first() -> None:
    assert GEMINI.trades(body(DOCS["gemini"]["trades"])) == [TradeRef(5335307668, 1547146811357)]
    newest_first = body([gemini_trade(30, 3), gemini_trade(20, 2), gemini_trade(10, 1)])
    assert [t.trade_id for t in GEMINI.trades(newest_first)] == [10, 20, 30]
    assert GEMINI.request("BTCUSD", 5_000, None) == Request(
        "/v1/trades/BTCUSD", {"limit_trades": "500", "timestamp": "5000"})
    assert GEMINI.request("BTCUSD", 5_000, 31).params == {"limit_trades": "500", "since_tid": "30"}
    assert Gemini.limits.weight("/v1/trades/BTCUSD") == 1 and not GEMINI.sequential_ids
    feed = Gemini(["BTC.USD"], ListSink(), SETTINGS)
    assert feed.frame_key(orjson.dumps(DOCS["gemini"]["trade"])) == raw_key("gemini", "BTCUSD", GEMINI.feed)


def test_gemini_pages_forward_by_tid_and_a_page_not_newest_first_ends_it() -> None:
    asked: list[Request] = []
    answers = {("/v1/trades/BTCUSD", str(30_000 - OVERLAP_MS)): [gemini_trade(t, 29_000 + t) for t in (30, 20, 10)],
               ("/v1/trades/BTCUSD", "30"): [gemini_trade(50, 41_000), gemini_trade(40, 39_000)]}
    fetched = asyncio.run(fetch_history(scripted(answers, asked), GEMINI, "BTCUSD", 30_000, 40_000))
    assert fetched.problem is None and [t.trade_id for t in fetched.trades] == [10, 20, 30, 40, 50]
    assert [r.params.get("since_tid") for r in asked] == [None, "30"]
    disorder = {("/v1/trades/BTCUSD", "28000"): [gemini_trade(t, 29_000) for t in (10, 20)]}
    fetched = asyncio.run(fetch_history(scripted(disorder, []), GEMINI, "BTCUSD", 30_000, 40_000))
    assert "out of order" in fetched.problem and fetched.pages == []


def gemini_stream(tid: int) -> bytes:
    return orjson.dumps({**DOCS["gemini"]["trade"], "tid": tid, "event_id": tid * 10})


def test_gemini_backfilled_trades_are_published_once_and_broken_ones_not_at_all() -> None:
    std = GeminiStandardiser()
    key = raw_key("gemini", "BTCUSD", "l2")
    streamed = [o.record for i in (1, 2, 6) for o in std.standardise(gemini_stream(i), 1, key, "BTC.USD")]
    assert [r["trade_id"] for r in streamed] == ["1", "2", "6"]
    page = [gemini_trade(i, 1547146811357 + i) for i in (7, 6, 5, 4, 3, 2)] + DOCS["gemini"]["trades"]
    outs = std.standardise(orjson.dumps(page), 2, key, "BTC.USD")
    assert [(o.topic, o.record["trade_id"], o.record["origin"]) for o in outs] == [
        ("trades", str(i), ORIGIN_BACKFILL) for i in (3, 4, 5, 7)], "oldest first; the broken one left out"
    first = outs[0].record
    assert set(first) == set(streamed[0])
    assert (first["symbol"], first["price"], first["size"], first["taker_side"], first["sequence"],
            first["event_timestamp"]) == ("BTC.USD", Decimal("3610.85"), Decimal("0.27413495"), "buy", None,
                                          1547146811360)
    assert std.skipped[BROKEN] == 1
    assert std.standardise(gemini_stream(7), 3, key, "BTC.USD") == []


# -- Real HTTP: the connector's backfill through its own REST client and limiter ------------------------------

class VenueHistory(Venue):
    """A real HTTP server paging ``trades`` [(trade id, time ms)] as ``venue`` documents its trade history."""

    def __init__(self, venue: str, trades: list[tuple[int, int]]):
        super().__init__([])
        self.venue = venue
        self.trades = trades
        self.queries: list[dict[str, str]] = []

    def answer(self, params: dict[str, str]) -> object:
        limit = int(params.get("limit") or params.get("count") or params.get("limit_trades") or 0)
        if self.venue == "binance":
            if "startTime" in params:
                first = [(i, t) for i, t in self.trades if t >= int(params["startTime"])][:1]
                return [{**DOCS["binance"]["aggTrades"][0], "f": i, "l": i, "T": t} for i, t in first]
            return [spot_trade(i, t) for i, t in self.trades if i >= int(params["fromId"])][:limit]
        if self.venue == "kraken":
            page = [(i, t) for i, t in self.trades if t * NS_PER_MS > int(params["since"])][:limit]
            last = page[-1][1] * NS_PER_MS if page else int(params["since"])
            return kraken_page([(i, str(Decimal(t) / 1000)) for i, t in page], str(last))
        if "since_tid" in params:
            page = [(i, t) for i, t in self.trades if i > int(params["since_tid"])][:limit]
        else:
            page = [(i, t) for i, t in self.trades if t > int(params["timestamp"])][:limit]
        return [gemini_trade(i, t) for i, t in reversed(page)]

    async def handle(self, request: web.Request) -> web.Response:
        self.queries.append(dict(request.query))
        return web.Response(text=body(self.answer(dict(request.query))), content_type="application/json")


def backfill_over_http(feed_class: type[DataFeed], symbol: str, exchange_symbol: str, server: VenueHistory,
                       since_ms: int, until_ms: int) -> tuple[DataFeed, ListSink]:
    sink = ListSink()

    async def go() -> DataFeed:
        async with server as url:
            feed = feed_class([symbol], sink, SETTINGS, rest_url=url)
            feed.normalised_of = {exchange_symbol: symbol}
            try:
                await feed.backfill(exchange_symbol, since_ms, until_ms)
            finally:
                if feed._history_client is not None:
                    await feed._history_client.close()
            return feed

    return asyncio.run(go()), sink


def page_ids(venue: str, frame: bytes) -> list[int]:
    """The trade ids of an archived page, read by the venue's own ``TradeHistory``."""
    history = {"binance": SPOT, "kraken": KRAKEN, "gemini": GEMINI}[venue]
    return [trade.trade_id for trade in history.trades(frame.decode())]


# Trades every 10 ms from t = 100 s: the gap [110 s, 130 s] needs several pages of 1000 (Binance, Kraken) or 500.
HISTORY = [(1000 + n, 100_000 + 10 * n) for n in range(4000)]
GAP = (110_000, 130_000)


@pytest.mark.parametrize(
    ("venue", "feed_class", "symbol", "exchange_symbol", "standardiser", "weight"),
    [
        ("binance", Binance, "BNB.BTC", "BNBBTC", BinanceStandardiser, lambda pages: 4 + 25 * pages),
        ("kraken", Kraken, "MATIC.USD", "MATIC/USD", KrakenStandardiser, lambda pages: pages),
        ("gemini", Gemini, "BTC.USD", "BTCUSD", GeminiStandardiser, lambda pages: pages),
    ],
)
def test_the_connector_backfills_over_http_within_its_budget_and_the_processor_fills_the_gap_once(
    venue: str, feed_class: type[DataFeed], symbol: str, exchange_symbol: str,
    standardiser: type[Standardiser], weight: Callable[[int], int],
) -> None:
    server = VenueHistory(venue, HISTORY)
    feed, sink = backfill_over_http(feed_class, symbol, exchange_symbol, server, *GAP)
    pages = len(sink.marked)
    assert pages >= 2, "the gap takes more than one page"
    assert feed.limiter.counts.requests == len(server.queries)
    assert feed.limiter.counts.weight == weight(pages), "every request took its documented weight"
    key = raw_key(venue, exchange_symbol, feed.trade_history.feed)
    assert {(k, origin) for k, _, origin in sink.marked} == {(key, ORIGIN_BACKFILL)}
    [filled] = sink.coverage_records
    assert filled["kind"] == "trades_backfilled" and (filled["start"], filled["end"]) == GAP
    in_gap = [i for i, t in HISTORY if GAP[0] <= t <= GAP[1]]
    assert filled["sequence_before"] < in_gap[0] and filled["sequence_after"] > in_gap[-1], "the overlap on both sides"
    assert filled["count"] == len({i for _, frame, _ in sink.marked for i in page_ids(venue, frame)})
    # The processor: the stream before the gap, the first trades streamed after the reconnect, the archived
    # pages, then the rest of the stream (which the pages may have published already).
    std = standardiser()
    stream = {"binance": binance_stream, "kraken": kraken_stream, "gemini": gemini_stream}[venue]
    before = [i for i, t in HISTORY if t < GAP[0]]
    after = [i for i, t in HISTORY if t > GAP[1]]
    published = [o.record for i in before + after[:50] for o in std.standardise(stream(i), 1, key, symbol)]
    published += [o.record for _, frame, _ in sink.marked for o in std.standardise(frame, 2, key, symbol)]
    published += [o.record for i in after[50:] for o in std.standardise(stream(i), 3, key, symbol)]
    assert sorted(int(r["trade_id"]) for r in published) == [i for i, _ in HISTORY], "every trade once"
    backfilled = {int(r["trade_id"]) for r in published if r["origin"] == ORIGIN_BACKFILL}
    assert {i for i, t in HISTORY if GAP[0] <= t <= GAP[1]} <= backfilled
    assert not backfilled & set(before + after[:50]), "nothing streamed before the pages came is backfilled"


def test_a_binance_spot_history_that_lacks_trade_ids_reports_them_unrecoverable() -> None:
    lost = [i for i, t in HISTORY if 120_000 <= t < 120_050]
    server = VenueHistory("binance", [(i, t) for i, t in HISTORY if i not in lost])
    _, sink = backfill_over_http(Binance, "BNB.BTC", "BNBBTC", server, *GAP)
    filled, hole = sink.coverage_records
    assert filled["kind"] == "trades_backfilled" and hole["kind"] == "trades_unrecoverable"
    assert (hole["sequence_before"], hole["sequence_after"], hole["count"]) == (lost[0] - 1, lost[-1] + 1, len(lost))


def test_a_full_gemini_first_page_inside_the_gap_reports_the_stretch_before_it_unrecoverable() -> None:
    """Gemini's docs call a ``timestamp`` answer "the most recent trades that occurred after" it: a full first
    page that starts inside the gap may have left the gap's first trades out, and says so; one that reaches
    back into the overlap before the gap missed nothing."""
    limit = GEMINI.page_size
    newest = [(5000 + n, 125_000 + n) for n in range(limit)]
    answers = {("/v1/trades/BTCUSD", str(110_000 - OVERLAP_MS)): [gemini_trade(i, t) for i, t in reversed(newest)],
               ("/v1/trades/BTCUSD", str(newest[-1][0])): []}
    fetched = asyncio.run(fetch_history(scripted(answers, []), GEMINI, "BTCUSD", 110_000, 130_000))
    assert fetched.problem is None and fetched.unreached == (110_000, 125_000)
    reaching_back = [(5000 + n, 109_000 + n) for n in range(limit)]
    answers = {("/v1/trades/BTCUSD", str(110_000 - OVERLAP_MS)): [gemini_trade(i, t) for i, t in reversed(reaching_back)],
               ("/v1/trades/BTCUSD", str(reaching_back[-1][0])): []}
    fetched = asyncio.run(fetch_history(scripted(answers, []), GEMINI, "BTCUSD", 110_000, 130_000))
    assert fetched.unreached is None and len(fetched.trades) == limit


def test_the_connector_reports_a_gemini_gap_start_its_first_page_could_not_reach() -> None:
    newest_only = VenueHistory("gemini", HISTORY)
    newest_only.answer = lambda params: (  # the documented reading: the newest trades after the timestamp
        [gemini_trade(i, t) for i, t in reversed([(i, t) for i, t in HISTORY if t > int(params["timestamp"])]
                                                  [-GEMINI.page_size:])]
        if "timestamp" in params else [])
    _, sink = backfill_over_http(Gemini, "BTC.USD", "BTCUSD", newest_only, *GAP)
    kinds = {record["kind"]: record for record in sink.coverage_records}
    lost = kinds["trades_unrecoverable"]
    assert (lost["start"], lost["end"]) == (GAP[0], HISTORY[-GEMINI.page_size][1])
    assert "newest trades" in lost["reason"] and "trades_backfilled" in kinds
