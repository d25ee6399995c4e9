"""A delisting on every venue (issue 15): the symbol leaves its connection with the venue's documented unsubscribe
(other symbols and connections untouched), its REST polls stop and new listings' polls start.

The unsubscribe frames are pure and checked per venue here; the path that sends them over a live connection is
proven against the simulator in ``tests/test_listing_changes.py``.  The polls are proven on a real HTTP and
websocket server with the real connector's refresh loop.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import orjson
import pytest
from aiohttp import web

from l3_atom.config import ConnectorSettings
from l3_atom.data_source import DataFeed
from l3_atom.off_chain import binance_futures
from l3_atom.off_chain.binance import Binance
from l3_atom.off_chain.binance_futures import BinanceFutures
from l3_atom.off_chain.bitfinex import Bitfinex
from l3_atom.off_chain.bitstamp import Bitstamp
from l3_atom.off_chain.bybit import Bybit
from l3_atom.off_chain.coinbase import Coinbase
from l3_atom.off_chain.deribit import Deribit
from l3_atom.off_chain.dydx import Dydx
from l3_atom.off_chain.gemini import Gemini
from l3_atom.off_chain.htx import Htx
from l3_atom.off_chain.kraken import Kraken
from l3_atom.off_chain.kraken_futures import KrakenFutures
from l3_atom.off_chain.kucoin import Kucoin
from l3_atom.off_chain.okx import Okx
from l3_atom.off_chain.phemex import Phemex
from l3_atom.symbol_selection import AllSymbols
from tests.sinks import ListSink, NullSink
from tests.test_listing_changes import SETTINGS, opened

TODAY = "20260101"
# Venue -> (kept symbol, dropped symbol, the word of its unsubscribe) in the venue's own spelling.
VENUES = {
    Binance: ("BTCUSDT", "ETHUSDT", '"method":"UNSUBSCRIBE"'),
    BinanceFutures: ("BTCUSDT", "ETHUSDT", '"method":"UNSUBSCRIBE"'),
    Bitstamp: ("btcusd", "ethusd", '"event":"bts:unsubscribe"'),
    Bybit: ("spot/BTCUSDT", "spot/ETHUSDT", '"op":"unsubscribe"'),
    Coinbase: ("BTC-USD", "ETH-USD", '"type":"unsubscribe"'),
    Deribit: ("BTC-PERPETUAL", "ETH-PERPETUAL", '"method":"public/unsubscribe"'),
    Dydx: ("BTC-USD", "ETH-USD", '"type":"unsubscribe"'),
    Gemini: ("BTCUSD", "ETHUSD", '"type":"unsubscribe"'),
    Htx: ("btcusdt", "ethusdt", '"unsub":'),
    Kraken: ("BTC/USD", "ETH/USD", '"method":"unsubscribe"'),
    KrakenFutures: ("PF_XBTUSD", "PF_ETHUSD", '"event":"unsubscribe"'),
    Kucoin: ("BTC-USDT", "ETH-USDT", '"type":"unsubscribe"'),
    Okx: ("BTC-USDT", "ETH-USDT", '"op":"unsubscribe"'),
}


def wire(symbol: str) -> str:
    return symbol.rpartition("/")[2].lower() if symbol.startswith("spot/") else symbol.lower()


def two_symbol_feed(cls: type[DataFeed], kept: str, dropped: str) -> DataFeed:
    feed = cls(["BTC.USD", "ETH.USD"], NullSink(), SETTINGS)
    return opened(feed, {"BTC.USD": kept, "ETH.USD": dropped})


@pytest.mark.parametrize("cls", list(VENUES), ids=lambda cls: cls.name)
def test_a_delisted_symbol_gets_the_venues_unsubscribe_on_its_own_connections_only(cls: type[DataFeed]) -> None:
    kept, dropped, verb = VENUES[cls]
    feed = two_symbol_feed(cls, kept, dropped)
    carrying = [c for c in feed.connections if dropped in feed._chunks[c.name]]
    before = {c.name: list(feed._chunks[c.name]) for c in feed.connections}
    unsubscribes = feed.apply_listing({"BTC.USD": kept}, today=TODAY)
    assert [connection for connection, _ in unsubscribes] == carrying and carrying
    for _, messages in unsubscribes:
        text = "\n".join(messages).replace(" ", "")
        assert verb in text, text
        # On the wire (Bybit names ``ETHUSDT`` in topics, not its category-qualified ``spot/ETHUSDT``).
        assert wire(dropped) in text.lower() and wire(kept) not in text.lower(), text
        assert all(isinstance(orjson.loads(message), dict) for message in messages)
    # Every connection keeps what it had but the dropped symbol.
    assert {c.name: list(feed._chunks[c.name]) for c in feed.connections} == {
        name: [s for s in chunk if s != dropped] for name, chunk in before.items()
    }


def test_unsubscribe_mirrors_subscribe_where_the_venue_documents_the_same_shape() -> None:
    """OKX: the unsubscribe names exactly the channel args the subscribe named for that instrument."""
    feed = opened(Okx(["BTC.USD", "ETH.USD"], NullSink(), SETTINGS, channels=["trades", "books"]),
                  {"BTC.USD": "BTC-USDT", "ETH.USD": "ETH-USDT"})
    [(_, [message])] = feed.apply_listing({"BTC.USD": "BTC-USDT"}, today=TODAY)
    [subscribe] = feed.subscribe_messages(["ETH-USDT"])
    assert json.loads(message) == {**json.loads(subscribe), "op": "unsubscribe"}


def test_bitfinex_unsubscribes_the_channel_ids_its_connection_was_given() -> None:
    """Bitfinex unsubscribes by ``chanId`` (https://docs.bitfinex.com/docs/ws-general): the ids of the
    delisted symbol on that connection, from the ``subscribed`` answers it archived."""
    feed = two_symbol_feed(Bitfinex, "tBTCUSD", "tETHUSD")
    [connection] = feed.connections
    connection.connection_id = f"{connection.name}.1"
    for chan_id, symbol in ((10, "tBTCUSD"), (11, "tETHUSD"), (12, "tETHUSD")):
        answer = {"event": "subscribed", "channel": "trades", "chanId": chan_id, "symbol": symbol, "pair": symbol[1:]}
        feed.key_of(orjson.dumps(answer), connection.connection_id)
    [(on, messages)] = feed.apply_listing({"BTC.USD": "tBTCUSD"}, today=TODAY)
    assert on is connection
    assert [json.loads(m) for m in messages] == [{"event": "unsubscribe", "chanId": 11},
                                                 {"event": "unsubscribe", "chanId": 12}]


def test_phemex_has_no_per_symbol_unsubscribe_the_symbol_leaves_at_the_next_reconnect() -> None:
    feed = two_symbol_feed(Phemex, "BTCUSD", "ETHUSD")
    assert feed.apply_listing({"BTC.USD": "BTCUSD"}, today=TODAY) == []
    [connection] = feed.connections
    assert list(feed._chunks[connection.name]) == ["BTCUSD"]
    assert all("ETHUSD" not in m for m in feed.subscribe_messages(feed._chunks[connection.name]))


def test_a_delisted_symbols_book_is_closed_on_coverage() -> None:
    sink = ListSink()
    feed = opened(Coinbase(["BTC.USD", "ETH.USD"], sink, SETTINGS), {"BTC.USD": "BTC-USD", "ETH.USD": "ETH-USD"})
    feed.apply_listing({"BTC.USD": "BTC-USD"}, today=TODAY)
    [record] = sink.coverage_records
    assert (record["symbol"], record["kind"], record["feed"]) == ("ETH.USD", "book_lost", "book")
    assert record["reason"] == "closed: delisted from the venue's symbol list"


# -- REST polls follow the list ---------------------------------------------------------------------------------

POLL_S = 0.2
REFRESH_S = 0.3
WAIT_S = 60.0


def contract(symbol: str, base: str) -> dict:
    return {"symbol": symbol, "baseAsset": base, "quoteAsset": "USDT", "contractType": "PERPETUAL"}


class FuturesVenue:
    """A Binance USD-M stand-in on 127.0.0.1: a product list that changes, open interest, websockets that keep
    what their clients send."""

    def __init__(self, listed: dict[str, str]):
        self.listed = listed
        self.polled: Counter[str] = Counter()
        # Per websocket connection accepted: its URL's streams and the text frames its client sent.
        self.connections: list[tuple[str, list[str]]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/fapi/v1/exchangeInfo", self._products)
        app.router.add_get("/fapi/v1/openInterest", self._open_interest)
        app.router.add_get("/market/stream", self._websocket)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _products(self, request: web.Request) -> web.Response:
        return web.json_response({"symbols": [contract(s, b) for s, b in self.listed.items()]})

    async def _open_interest(self, request: web.Request) -> web.Response:
        symbol = request.query["symbol"]
        self.polled[symbol] += 1
        return web.json_response({"symbol": symbol, "openInterest": "10.5", "time": 1})

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sent: list[str] = []
        self.connections.append((request.query.get("streams", ""), sent))
        async for message in ws:
            sent.append(message.data)
        return ws


async def until(condition: object, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not within {WAIT_S:.0f} s"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
def test_a_delisting_unsubscribes_live_and_polls_follow_the_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(binance_futures, "OPEN_INTEREST_INTERVAL_S", POLL_S)

    async def scenario() -> None:
        venue = FuturesVenue({"BTCUSDT": "BTC", "ETHUSDT": "ETH"})
        await venue.start()
        settings = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20, symbol_refresh_s=REFRESH_S)
        feed = BinanceFutures([], ListSink(), settings, ws_url=f"ws://{venue.url}", rest_url=f"http://{venue.url}",
                              channels=["aggTrade", "openInterest"], every=AllSymbols(quote="USDT"))
        task = asyncio.create_task(feed.run())
        try:
            await until(lambda: venue.polled["BTCUSDT"] and venue.polled["ETHUSDT"], "both symbols polled")
            venue.listed = {"BTCUSDT": "BTC", "SOLUSDT": "SOL"}
            await until(lambda: venue.polled["SOLUSDT"], "the new listing polled")
            await until(lambda: "ETHUSDT" not in {k.split("_")[-2] for k in feed._polls}, "the delisted poll stopped")
            eth, btc = venue.polled["ETHUSDT"], venue.polled["BTCUSDT"]
            await until(lambda: venue.polled["BTCUSDT"] >= btc + 3, "three more polls of BTCUSDT")
            assert venue.polled["ETHUSDT"] == eth
            assert sorted(feed._polls) == ["binance-futures_BTCUSDT_openinterest", "binance-futures_SOLUSDT_openinterest"]
            assert dict(feed.listing_changes) == {"delisted": 1, "listed": 1}
            # The delisted symbol's stream left its connection live; the new listing got a connection of its own.
            await until(lambda: venue.connections[0][1], "the unsubscribe on the first connection")
            assert [streams for streams, _ in venue.connections] == [
                "btcusdt@aggTrade/ethusdt@aggTrade", "solusdt@aggTrade"]
            [unsubscribe] = venue.connections[0][1]
            assert {**orjson.loads(unsubscribe), "id": 0} == {"method": "UNSUBSCRIBE", "params": ["ethusdt@aggTrade"],
                                                              "id": 0}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await venue.stop()

    asyncio.run(scenario())


def test_a_closed_book_answers_410_and_drops_late_updates() -> None:
    from l3_atom.stream_processing.book_agent import BookStore

    store = BookStore()
    lost = {"exchange": "coinbase", "symbol": "ETH.USD", "kind": "book_lost", "feed": "book"}
    store.take("coverage", 0, {**lost, "reason": "gap: a desync, not a closure"})
    assert store.closed == {}
    store.take("coverage", 0, {**lost, "reason": "closed: delisted from the venue's symbol list"})
    late = {"exchange": "coinbase", "symbol": "ETH.USD", "is_snapshot": False, "atom_timestamp": 1}
    assert store.apply("lob_l3", 0, late) is False
    answer = store.book("coinbase", "ETH.USD", {})
    assert answer.status == 410 and "closed: delisted" in answer.body["error"]
    assert store.book("coinbase", "BTC.USD", {}).status == 404
    assert (store.stats()["closed"], store.stats()["after_close"]) == (1, 1)


def test_kraken_unsubscribes_name_only_the_parameters_its_v2_pages_list() -> None:
    """``event_trigger`` and ``snapshot`` are subscribe options; an unsubscribe names channel, symbol, depth."""
    feed = opened(Kraken(["BTC.USD", "ETH.USD"], NullSink(), SETTINGS, channels=["book", "ticker", "trade"]),
                  {"BTC.USD": "BTC/USD", "ETH.USD": "ETH/USD"})
    params = [json.loads(m)["params"] for _, messages in feed.apply_listing({"BTC.USD": "BTC/USD"}, TODAY)
              for m in messages]
    assert sorted(params, key=lambda p: p["channel"]) == [
        {"channel": "book", "symbol": ["ETH/USD"], "depth": 1000},
        {"channel": "ticker", "symbol": ["ETH/USD"]},
        {"channel": "trade", "symbol": ["ETH/USD"]},
    ]


def test_a_connection_emptied_by_delistings_closes_unless_it_carries_more_than_its_symbols() -> None:
    """dYdX's first connection also carries ``v4_markets`` (every market at once): it stays open."""
    dydx = two_symbol_feed(Dydx, "BTC-USD", "ETH-USD")
    coinbase = two_symbol_feed(Coinbase, "BTC-USD", "ETH-USD")
    for feed in (dydx, coinbase):
        feed.apply_listing({}, today=TODAY)
    assert [list(group) for group in dydx._chunks.values()] == [[]] and dydx._emptied() == []
    assert [list(group) for group in coinbase._chunks.values()] == [[]]
    assert coinbase._emptied() == coinbase.connections
