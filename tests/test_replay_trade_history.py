"""The replay server serves each backfilling venue's REST trade history from the trades its recording streamed,
and drops a connection mid-stream on demand.

Per venue: the recording is streamed to websocket clients, then the connector's own ``TradeHistory`` pages
through the replay's history endpoint (``fetch_history``, as a backfill does); the venue's standardiser turns
the pages into records, which must be the streamed trades, field for field (id, price, size, side, time).
The streamed trades come from the standardiser run over the recorded frames, not from the replay's code.
Deribit's and OKX's recorded traffic holds no (or one) trade: their hand-written fixtures in
``tests/fixtures/`` stand in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest

from l3_atom.backfill import TradeHistory, fetch_history
from l3_atom.data_source import DataFeed
from l3_atom.feed import RestClient
from l3_atom.limits import Limits, Rate, RestLimiter
from l3_atom.off_chain.binance import AggTradesHistory
from l3_atom.off_chain.binance_futures import BinanceFutures
from l3_atom.off_chain.bitfinex import Bitfinex, BitfinexTrades
from l3_atom.off_chain.coinbase import Coinbase, CoinbaseTrades
from l3_atom.off_chain.deribit import Deribit, DeribitTrades
from l3_atom.off_chain.okx import Okx, OkxTrades
from l3_atom.sim.replay import GOING_AWAY, Fault, FaultSpec, Recording, ReplayServer
from l3_atom.sim.trade_history import VENUE_HISTORIES, Trade, VenueHistory, exact_json
from l3_atom.stream_processing.standardiser import Standardiser
from l3_atom.stream_processing.standardisers.binance_futures import BinanceFuturesStandardiser
from l3_atom.stream_processing.standardisers.bitfinex import BitfinexStandardiser
from l3_atom.stream_processing.standardisers.coinbase import CoinbaseStandardiser
from l3_atom.stream_processing.standardisers.deribit import DeribitStandardiser
from l3_atom.stream_processing.standardisers.okx import OkxStandardiser
from l3_atom.topics import ORIGIN_BACKFILL, TRADES, TRADES_L3, split_raw_key
from tests.conftest import recordings_dir

pytestmark = pytest.mark.timeout(120)
FIXTURES = Path(__file__).parent / "fixtures"
UNLIMITED = Limits(rest=(Rate(1000, 1.0),), subscribes=Rate(1000, 1.0), connections=Rate(1000, 1.0))
# Far past any recording: page forward until the history ends (backfills start at the first streamed trade).
FOREVER_MS = 2**62
# The fields a backfilled trade must share with the streamed one.
SAME = ("trade_id", "price", "size", "taker_side", "event_timestamp")


class Venue(NamedTuple):
    source: str
    folder: str  # a recording's name, or a fixture path
    connector: type[DataFeed]
    history: TradeHistory
    standardiser: Callable[[], Standardiser]
    # The id the history pages by, of a streamed record (Deribit's trade_seq is its sequence).
    history_id: Callable[[dict], int] = lambda record: int(record["trade_id"])


VENUES = [
    Venue("coinbase", "coinbase", Coinbase, CoinbaseTrades(), CoinbaseStandardiser),
    Venue("binance-futures", "binance_futures", BinanceFutures, AggTradesHistory("/fapi/v1/aggTrades"),
          BinanceFuturesStandardiser),
    Venue("bitfinex", "bitfinex", Bitfinex, BitfinexTrades(), BitfinexStandardiser),
    Venue("deribit", str(FIXTURES / "deribit"), Deribit, DeribitTrades(), DeribitStandardiser, lambda record: record["sequence"]),
    Venue("okx", str(FIXTURES / "okx"), Okx, OkxTrades(), OkxStandardiser),
]


def folder_of(venue: Venue) -> Path:
    if Path(venue.folder).is_absolute():
        return Path(venue.folder)
    found = recordings_dir()
    if found is None:
        pytest.skip("no recordings in ../shared/recordings")
    return found / venue.folder


def streamed_trades(venue: Venue, recording: Recording) -> dict[str, dict[int, dict]]:
    """Exchange symbol -> history id -> the trade record the standardiser made of the recorded frames.

    Frames are keyed by the connector, as in the pipeline; the exchange symbol stands in as the symbol header.
    """
    std = venue.standardiser()
    connector = venue.connector([], None, None)
    found: dict[str, dict[int, dict]] = {}
    for position, connection in enumerate(recording.connections):
        for frame in connection.frames:
            raw = frame.binary if frame.text is None else frame.text.encode()
            key = connector.key_of(raw, f"{venue.source}.{position}")
            exchange_symbol = split_raw_key(key)[1]
            for out in std.standardise(raw, 1, key, exchange_symbol):
                if out.topic in (TRADES, TRADES_L3):
                    found.setdefault(exchange_symbol, {})[venue.history_id(out.record)] = out.record
    return found


async def stream_everything(server: ReplayServer) -> None:
    """One client per recorded connection, each subscribing, until every recorded frame was sent."""
    async with aiohttp.ClientSession() as session:
        sockets = []
        for _ in server.recording.connections:
            ws = await session.ws_connect(server.ws_url, max_msg_size=0)
            await ws.send_str('{"op": "subscribe"}')
            sockets.append(ws)
        while server.frames_sent < server.recording.frame_count:
            await asyncio.sleep(0.05)
        for ws in sockets:
            await ws.close()


@pytest.mark.parametrize("venue", VENUES, ids=[v.source for v in VENUES])
def test_history_pages_are_the_streamed_trades_in_the_venues_shape(venue: Venue) -> None:
    folder = folder_of(venue)
    streamed = streamed_trades(venue, Recording(folder))
    symbol = max(streamed, key=lambda name: len(streamed[name]))
    since = min(record["event_timestamp"] for record in streamed[symbol].values())

    async def body() -> tuple[list[str], int]:
        server = await ReplayServer(folder, trade_history=True).start()
        client = RestClient(server.rest_url, RestLimiter(venue.source, UNLIMITED))
        try:
            await stream_everything(server)
            fetched = await fetch_history(client.get_text, venue.history, symbol, since, FOREVER_MS)
        finally:
            await client.close()
            await server.stop()
        assert fetched.problem is None
        assert sorted({t.trade_id for t in fetched.trades}) == sorted(streamed[symbol])
        return fetched.pages, server.history_pages

    pages, asked = asyncio.run(body())
    std = venue.standardiser()
    key = f"{venue.source}_{symbol}_{venue.history.feed}"
    backfilled = [out.record for page in pages for out in std.standardise(page.encode(), 2, key, symbol)]
    assert {r["origin"] for r in backfilled} == {ORIGIN_BACKFILL}
    by_id = {venue.history_id(r): r for r in backfilled}
    assert len(by_id) == len(backfilled) == len(streamed[symbol]) > 0
    for trade_id, record in streamed[symbol].items():
        assert {f: by_id[trade_id][f] for f in SAME} == {f: record[f] for f in SAME}
    print(f"\n{venue.source} {symbol}: {len(backfilled)} trades in {len(pages)} pages ({asked} requests)")


def test_history_holds_only_what_the_replay_has_reached() -> None:
    folder = folder_of(VENUES[0])

    async def body() -> list[Any]:
        server = await ReplayServer(folder, trade_history=True).start()
        try:
            async with aiohttp.ClientSession() as session:
                before = await (await session.get(f"{server.rest_url}/products/SKL-USD/trades")).json()
                await stream_everything(server)
                after = await (await session.get(f"{server.rest_url}/products/SKL-USD/trades?limit=5")).json()
                older = await (await session.get(
                    f"{server.rest_url}/products/SKL-USD/trades?limit=5&after={after[-1]['trade_id']}")).json()
        finally:
            await server.stop()
        return [before, after, older]

    before, after, older = asyncio.run(body())
    assert before == [], "nothing streamed yet, nothing in the history"
    assert [t["trade_id"] for t in after] == list(range(1568319, 1568314, -1)), "newest first"
    assert [t["trade_id"] for t in older] == list(range(1568314, 1568309, -1)), "after: older ids"


def test_without_trade_history_the_endpoint_is_not_in_the_recording() -> None:
    async def body() -> int:
        server = await ReplayServer(folder_of(VENUES[0])).start()
        try:
            async with aiohttp.ClientSession() as session:
                return (await session.get(f"{server.rest_url}/products/SKL-USD/trades")).status
        finally:
            await server.stop()

    assert asyncio.run(body()) == 404


def test_a_disconnect_drops_mid_stream_and_the_reconnect_resumes_after_the_missed_frames() -> None:
    folder = folder_of(VENUES[0])
    spec = FaultSpec(Fault.DISCONNECT, every=3, match='"type":"match"', connections=1, skip=500)
    recorded = Recording(folder).connections[0].frames

    async def connect(session: aiohttp.ClientSession, server: ReplayServer) -> tuple[list[str], int | None]:
        ws = await session.ws_connect(server.ws_url, max_msg_size=0)
        await ws.send_str('{"type": "subscribe", "channels": ["full"]}')
        texts = []
        try:
            while True:
                message = await ws.receive(timeout=3)
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                texts.append(message.data)
        except TimeoutError:
            pass
        await ws.close()
        return texts, ws.close_code

    async def body() -> tuple[list[str], int | None, list[str], dict]:
        server = await ReplayServer(folder, fault=spec, trade_history=True).start()
        try:
            async with aiohttp.ClientSession() as session:
                first, code = await connect(session, server)
                again, _ = await connect(session, server)
                stats = await (await session.get(f"{server.rest_url}/_replay/stats")).json()
        finally:
            await server.stop()
        return first, code, again, stats

    first, code, again, stats = asyncio.run(body())
    matches = [i for i, frame in enumerate(recorded) if '"type":"match"' in frame.text]
    dropped = matches[2]
    assert code == GOING_AWAY
    assert first == [frame.text for frame in recorded[:dropped]], "sent up to the third match, then dropped"
    assert stats["disconnects"] == [{"connection": 0, "dropped_at": dropped, "resumes_at": dropped + 500}]
    opening = [frame.text for frame in recorded[: matches[0]]]
    assert again == opening + [frame.text for frame in recorded[dropped + 500 :]]
    assert stats["connections_served"] == 2 and stats["faults_injected"] == 1


def test_a_disconnect_that_chooses_no_frame_sends_everything_and_keeps_the_connection() -> None:
    folder = FIXTURES / "deribit"
    spec = FaultSpec(Fault.DISCONNECT, match="not in any frame", skip=5)

    async def body() -> tuple[int, bool, dict]:
        server = await ReplayServer(folder, fault=spec, trade_history=True).start()
        try:
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(server.ws_url)
                await ws.send_str('{"method": "public/subscribe"}')
                received = 0
                with contextlib.suppress(TimeoutError):
                    while (await ws.receive(timeout=2)).type == aiohttp.WSMsgType.TEXT:
                        received += 1
                still_open = not ws.closed
                await ws.close()
                stats = await (await session.get(f"{server.rest_url}/_replay/stats")).json()
        finally:
            await server.stop()
        return received, still_open, stats

    received, still_open, stats = asyncio.run(body())
    assert received == Recording(folder).frame_count and still_open
    assert stats["disconnects"] == [] and stats["faults_injected"] == 0


def test_fault_skip_belongs_to_disconnects() -> None:
    with pytest.raises(ValueError, match="skip"):
        FaultSpec(Fault.DROP, skip=3)
    assert "500 frames missed" in str(FaultSpec(Fault.DISCONNECT, every=2, skip=500))


def test_time_parameters_of_today_are_read_on_the_replay_clock() -> None:
    folder = FIXTURES / "deribit"

    async def body() -> tuple[int, int, int]:
        server = await ReplayServer(folder, trade_history=True).start()
        try:
            await stream_everything(server)
            started = server.clock_origin_ms
            return server._to_recorded(started + 5_000), server._to_recorded(1590480363130), started
        finally:
            await server.stop()

    today, recorded, _ = asyncio.run(body())
    assert today == Recording(folder).first_ms + 5_000, "5 s after the first connection is 5 s into the recording"
    assert recorded == 1590480363130, "the recording's own times (page cursors) are kept"


def made_trades(count: int, symbol: str = "X") -> list[Trade]:
    """Trades 1..count, one a second from t=1000 ms, whose entries are their ids."""
    return [Trade(symbol, i, 1000 * i, i) for i in range(1, count + 1)]


def answered(history: VenueHistory, params: dict[str, str], count: int = 10) -> Any:
    return json.loads(history.answer(made_trades(count), params, lambda t: t))


def test_each_venues_paging_parameters_are_honoured() -> None:
    coinbase, binance, okx, bitfinex, deribit = VENUE_HISTORIES
    assert answered(coinbase, {"limit": "3"}) == [10, 9, 8]
    assert answered(coinbase, {"limit": "3", "after": "8"}) == [7, 6, 5]
    assert answered(coinbase, {"limit": "2", "before": "4"}) == [6, 5]
    assert answered(binance, {"fromId": "4", "limit": "3"}) == [4, 5, 6]
    assert answered(binance, {"startTime": "2000", "endTime": "4000"}) == [2, 3, 4]
    assert answered(okx, {"after": "3"})["data"] == [2, 1]
    assert answered(okx, {"limit": "1"}) == {"code": "0", "msg": "", "data": [10]}
    assert answered(bitfinex, {"start": "8000", "sort": "1"}) == [8, 9, 10]
    assert answered(bitfinex, {"limit": "2"}) == [10, 9], "newest first unless sort=1"
    assert answered(deribit, {"start_timestamp": "3000", "end_timestamp": "9000", "count": "2", "sorting": "asc"}) == {
        "jsonrpc": "2.0", "result": {"trades": [3, 4], "has_more": True}}
    assert answered(deribit, {"start_timestamp": "9000"})["result"] == {"trades": [10, 9], "has_more": False}
    assert coinbase.asks_for("/products/BTC-USD/trades", {}) == "BTC-USD"
    assert okx.asks_for("/api/v5/market/history-trades", {"instId": "BTC-USDT"}) == "BTC-USDT"
    assert bitfinex.asks_for("/v2/conf/pub:list:pair:exchange", {}) is None


def test_recorded_numbers_keep_their_digits() -> None:
    assert exact_json({"a": [Decimal("0.00001000"), 5, "s", None, True]}) == '{"a":[0.00001000,5,"s",null,true]}'
