"""Trade backfill for OKX, Bitfinex and Deribit: requests, paging stop conditions, dedup at both edges.

The response bodies are in ``tests/fixtures/<venue>/``, in the shapes the venues document:
OKX's example answer of ``GET /api/v5/market/history-trades``
(https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-trades-history), Bitfinex's
``[ID, MTS, AMOUNT, PRICE]`` entries of ``GET /v2/trades/{symbol}/hist``
(https://docs.bitfinex.com/reference/rest-public-trades) and Deribit's example answer of
``public/get_last_trades_by_instrument_and_time``
(https://docs.deribit.com/api-reference/market-data/public-get_last_trades_by_instrument_and_time).
Further pages are made from them, changing ids and times only.
"""

from __future__ import annotations

import asyncio
import copy
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from l3_atom import data_source
from l3_atom.backfill import Request, TradeRef, fetch_history, next_step
from l3_atom.config import ConnectorSettings
from l3_atom.off_chain.bitfinex import Bitfinex, BitfinexTrades
from l3_atom.off_chain.deribit import BACKFILL_SPAN_MS, Deribit, DeribitTrades
from l3_atom.off_chain.okx import HISTORY_TRADES_PATH, Okx, OkxTrades
from l3_atom.stream_processing.standardisers.bitfinex import BitfinexStandardiser
from l3_atom.stream_processing.standardisers.deribit import DeribitStandardiser
from l3_atom.stream_processing.standardisers.okx import ALREADY_PUBLISHED, OkxStandardiser
from l3_atom.topics import ORIGIN_BACKFILL
from tests.sinks import ListSink

pytestmark = pytest.mark.timeout(60)
FIXTURES = Path(__file__).parent / "fixtures"
OKX_PAGE = (FIXTURES / "okx" / "history-trades.json").read_text()
BITFINEX_PAGE = (FIXTURES / "bitfinex" / "trades-hist.json").read_text()
DERIBIT_PAGE = (FIXTURES / "deribit" / "trades-by-time.json").read_text()
OKX, BITFINEX, DERIBIT = OkxTrades(), BitfinexTrades(), DeribitTrades()


def pages_by(param: str, pages: dict[str, str]) -> object:
    """A venue answering each request by the value of ``param`` (``first`` when it is not sent)."""
    async def get_text(path: str, params: dict[str, str]) -> str:
        return pages[params.get(param, "first")]
    return get_text


# -- OKX ---------------------------------------------------------------------------------------------------------

def okx_page(*trades: tuple[int, int]) -> str:
    """The docs' answer with its trades' (tradeId, ts) replaced, newest first as OKX lists them."""
    answer = orjson.loads(OKX_PAGE)
    template = answer["data"][0]
    answer["data"] = [{**template, "tradeId": str(trade_id), "ts": str(ts)} for trade_id, ts in trades]
    return orjson.dumps(answer).decode()


def test_okx_history_is_asked_newest_first_by_trade_id_and_read_from_the_docs_answer() -> None:
    assert OKX.request("BTC-USDT", 0, None) == Request(HISTORY_TRADES_PATH, {
        "instId": "BTC-USDT", "type": "1", "limit": "100"})
    assert OKX.request("BTC-USDT", 0, 242720719).params["after"] == "242720719"
    assert OKX.trades(OKX_PAGE) == [TradeRef(242720720, 1654161646974), TradeRef(242720719, 1654161641568)]
    with pytest.raises(ValueError, match="50011"):
        OKX.trades('{"code": "50011", "msg": "Rate limit reached", "data": []}')
    assert Okx.limits.weight(HISTORY_TRADES_PATH) == 1 and Okx.trade_history.feed == "trades"


def test_okx_paging_goes_back_until_a_page_reaches_before_the_gap() -> None:
    pages = {"first": okx_page((30, 25_000), (29, 24_000)), "29": okx_page((28, 20_000), (27, 12_000)),
             "27": okx_page((26, 1_000))}
    fetched = asyncio.run(fetch_history(pages_by("after", pages), OKX, "BTC-USDT", 16_000, 26_000))
    assert fetched.problem is None
    assert [t.trade_id for t in fetched.trades] == [27, 28, 29, 30], "the second page reached before the gap"
    assert len(fetched.pages) == 2
    repeat = next_step(OKX, OKX.trades(okx_page((29, 20_000))), 16_000, 26_000, 29)
    assert repeat.cursor is None and "repeats" in repeat.problem


def okx_push(trade_id: int, count: int = 1) -> bytes:
    return orjson.dumps({"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": [{
        "instId": "BTC-USDT", "tradeId": str(trade_id), "px": "29960.1", "sz": "0.3", "side": "buy",
        "ts": "1654161640000", "count": str(count)}]})


def test_okx_backfilled_trades_are_published_once_in_id_order_beside_the_streamed_ones() -> None:
    std = OkxStandardiser()
    key = "okx_BTC-USDT_trades"
    # 10 aggregates 8, 9 and 10; 14 is streamed after the gap.
    streamed = [o.record["trade_id"] for frame in (okx_push(7), okx_push(10, count=3), okx_push(14))
                for o in std.standardise(frame, 1, key)]
    assert streamed == ["7", "10", "14"]
    page = okx_page(*((i, 1654161646000 + i) for i in (15, 14, 13, 12, 11, 10, 9, 8)))
    outs = std.standardise(page.encode(), 2, key)
    assert [(o.topic, o.record["trade_id"], o.record["origin"]) for o in outs] == [
        ("trades", str(i), ORIGIN_BACKFILL) for i in (11, 12, 13, 15)]
    first = outs[0].record
    assert (first["symbol"], first["price"], first["size"], first["taker_side"], first["sequence"]) == (
        "BTC.USDT", Decimal("29963.2"), Decimal("0.00001"), "sell", None)
    assert first["event_timestamp"] == 1654161646011
    assert std.skipped[ALREADY_PUBLISHED] == 4, "8, 9 (inside the aggregate 10), 10 and 14"
    assert std.standardise(okx_push(15), 3, key) == [], "the stream brings 15 after the backfill did"
    # The documented answer itself: newest first in the body, published oldest first.
    assert [o.record["trade_id"] for o in OkxStandardiser().standardise(OKX_PAGE.encode(), 4, key)] == [
        "242720719", "242720720"]


def test_okx_refused_history_is_a_dead_letter_and_a_books_answer_is_still_a_book() -> None:
    std = OkxStandardiser()
    with pytest.raises(ValueError, match="50011"):
        std.standardise(b'{"code": "50011", "msg": "Rate limit reached", "data": []}', 1, "okx_BTC-USDT_trades")
    std.raw_key = "okx_BTC-USDT_books"
    assert std.message_type({"code": "0", "data": []}) == "books (REST snapshot)"


# -- Bitfinex ----------------------------------------------------------------------------------------------------

def bitfinex_page(*trades: tuple[int, int]) -> str:
    """Bitfinex entries [ID, MTS, AMOUNT, PRICE], oldest first (sort=1)."""
    return orjson.dumps([[trade_id, mts, 0.5, 10682] for trade_id, mts in trades]).decode()


def test_bitfinex_history_is_asked_oldest_first_from_a_time() -> None:
    assert BITFINEX.request("tBTCUSD", 5_000, None) == Request("/v2/trades/tBTCUSD/hist", {
        "start": "5000", "limit": "10000", "sort": "1"})
    assert BITFINEX.request("tBTCUSD", 5_000, 7_000).params["start"] == "7000"
    assert BITFINEX.trades(BITFINEX_PAGE)[0] == TradeRef(388063448, 1567526214876)
    with pytest.raises(TypeError):
        BITFINEX.trades('["error", 10020, "limit: invalid"]')
    assert Bitfinex.trade_history.feed == "trades"


def test_bitfinex_paging_restarts_at_the_boundary_millisecond_and_keeps_each_trade_once() -> None:
    # Trades 12 and 13 share 15_000: the second page starts there and repeats 12.
    pages = {"10000": bitfinex_page((5, 9_000), (40, 11_000), (12, 15_000)),
             "15000": bitfinex_page((12, 15_000), (13, 15_000), (50, 17_000)),
             "17000": bitfinex_page((50, 17_000), (61, 30_000))}
    fetched = asyncio.run(fetch_history(pages_by("start", pages), BITFINEX, "tBTCUSD", 12_000, 25_000))
    assert fetched.problem is None
    assert [t.trade_id for t in fetched.trades] == [5, 12, 13, 40, 50, 61]
    assert len(fetched.pages) == 3


def test_bitfinex_paging_stops_when_time_does_not_move_on() -> None:
    only_boundary = BITFINEX.trades(bitfinex_page((12, 15_000)))
    assert next_step(BITFINEX, only_boundary, 0, 25_000, 15_000) == (None, None), "the history ends"
    stuck = [TradeRef(i, 15_000) for i in range(BITFINEX.page_size)]
    assert "more than 10000 trades at 15000 ms" in next_step(BITFINEX, stuck, 0, 25_000, 15_000).problem
    older = next_step(BITFINEX, BITFINEX.trades(bitfinex_page((3, 14_000))), 0, 25_000, 15_000)
    assert "repeats" in older.problem
    disorder = next_step(BITFINEX, BITFINEX.trades(bitfinex_page((3, 16_000), (4, 15_500))), 0, 25_000, None)
    assert "out of order" in disorder.problem


def bitfinex_frames(*frames: list) -> list[bytes]:
    return [orjson.dumps(frame) for frame in frames]


def test_bitfinex_backfilled_trades_are_published_once_beside_the_snapshot_and_executions() -> None:
    std = BitfinexStandardiser()
    key = "bitfinex_tBTCUSD_trades"
    snapshot = [17, [[388063447, 1567526214000, 0.1, 10680], [388063446, 1567526213000, -0.2, 10679]], 1]
    execution = [17, "te", [388063460, 1567526216000, 0.3, 10683], 2]
    streamed = [o.record["trade_id"] for frame in bitfinex_frames(snapshot, execution)
                for o in std.standardise(frame, 1, key)]
    assert streamed == ["388063446", "388063447", "388063460"]
    page = orjson.loads(BITFINEX_PAGE) + [[388063460, 1567526216000, 0.3, 10683]]
    outs = std.standardise(orjson.dumps(page), 2, key)
    assert [(o.record["trade_id"], o.record["origin"]) for o in outs] == [
        ("388063448", ORIGIN_BACKFILL), ("388063449", ORIGIN_BACKFILL), ("388063455", ORIGIN_BACKFILL)]
    second = outs[1].record
    assert (second["symbol"], second["size"], second["taker_side"], second["price"], second["sequence"]) == (
        "BTC.USD", Decimal("0.5"), "sell", Decimal("10681.9"), None)
    # A resubscribe sends the snapshot again: nothing in it is new.
    assert std.standardise(bitfinex_frames(snapshot)[0], 3, key) == []
    assert std.standardise(b"[]", 4, key) == [], "an empty page (the history ends) gives nothing"


# -- Deribit -----------------------------------------------------------------------------------------------------

def deribit_page(*trades: tuple[int, int]) -> str:
    """The docs' answer with its trades' (trade_seq, timestamp) replaced, oldest first (sorting=asc)."""
    answer = orjson.loads(DERIBIT_PAGE)
    template = answer["result"]["trades"][0]
    answer["result"]["trades"] = [{**copy.deepcopy(template), "trade_seq": seq, "timestamp": ts,
                                   "trade_id": f"ETH-{seq}"} for seq, ts in trades]
    return orjson.dumps(answer).decode()


def test_deribit_history_is_asked_by_time_ascending_and_read_by_trade_seq() -> None:
    assert DERIBIT.request("ETH-PERPETUAL", 1_000, None) == Request(
        "/api/v2/public/get_last_trades_by_instrument_and_time",
        {"instrument_name": "ETH-PERPETUAL", "start_timestamp": "1000", "end_timestamp": str(1_000 + BACKFILL_SPAN_MS),
         "count": "1000", "sorting": "asc"})
    assert DERIBIT.request("ETH-PERPETUAL", 1_000, 4_000).params["start_timestamp"] == "4000"
    assert DERIBIT.trades(DERIBIT_PAGE) == [TradeRef(1966031, 1590480363130), TradeRef(1966032, 1590480363130)]
    with pytest.raises(KeyError):
        DERIBIT.trades('{"jsonrpc": "2.0", "error": {"code": 10028, "message": "too_many_requests"}}')
    assert Deribit.limits.weight(DERIBIT.request("X", 0, None).path) == 1


def test_deribit_paging_by_time_finds_the_trades_and_the_seq_holes(monkeypatch: pytest.MonkeyPatch) -> None:
    pages = {"first": deribit_page((7, 9_000), (8, 12_000), (9, 12_000)),
             "12000": deribit_page((8, 12_000), (9, 12_000), (12, 14_000)),
             "14000": deribit_page((12, 14_000), (13, 31_000))}
    monkeypatch.setattr(data_source, "BACKFILL_RETRY_S", 0.0)
    sink = ListSink()
    feed = Deribit(["ETH.USD-PERP"], sink, ConnectorSettings(0.1, 1.0, 30.0, 1 << 20))
    feed.normalised_of = {"ETH-PERPETUAL": "ETH.USD-PERP"}

    class Client:
        get_text = staticmethod(pages_by("start_timestamp", {**pages, str(10_000 - 2_000): pages["first"]}))

    monkeypatch.setattr(feed, "rest_client", Client)
    asyncio.run(feed.backfill("ETH-PERPETUAL", 10_000, 30_000))
    assert [key for key, _, origin in sink.marked] == ["deribit_ETH-PERPETUAL_trades"] * 3
    filled, lost = sink.coverage_records
    assert (filled["kind"], filled["count"], filled["sequence_before"], filled["sequence_after"]) == (
        "trades_backfilled", 5, 7, 13)
    assert (lost["kind"], lost["sequence_before"], lost["sequence_after"], lost["count"]) == (
        "trades_unrecoverable", 9, 12, 2)


def deribit_notification(*seqs: int) -> bytes:
    trade = orjson.loads(DERIBIT_PAGE)["result"]["trades"][0]
    return orjson.dumps({"jsonrpc": "2.0", "method": "subscription", "params": {
        "channel": "trades.ETH-PERPETUAL.raw",
        "data": [{**trade, "trade_seq": seq, "trade_id": f"ETH-{seq}"} for seq in seqs]}})


def test_deribit_backfilled_trades_are_published_once_by_trade_seq() -> None:
    std = DeribitStandardiser()
    key = "deribit_ETH-PERPETUAL_trades"
    assert [o.record["sequence"] for o in std.standardise(deribit_notification(1966030, 1966031), 1, key)] == [
        1966030, 1966031]
    outs = std.standardise(DERIBIT_PAGE.encode(), 2, key)
    assert [(o.record["trade_id"], o.record["sequence"], o.record["origin"]) for o in outs] == [
        ("ETH-2696062", 1966032, ORIGIN_BACKFILL)]
    record = outs[0].record
    assert (record["symbol"], record["price"], record["size"], record["taker_side"], record["event_timestamp"]) == (
        "ETH.USD-PERP", Decimal("204.47"), Decimal(13), "buy", 1590480363130)
    assert std.standardise(deribit_notification(1966032), 3, key) == []
    assert std.skipped["trade already published (streamed or backfilled)"] == 2
    assert std.standardise(b'{"jsonrpc": "2.0", "id": 4, "result": ["trades.ETH-PERPETUAL.raw"]}', 4) == []
