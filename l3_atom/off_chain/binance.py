"""Binance spot: diff depth, trades, best bid/offer and 1-minute klines over combined streams.

The streams are named in the URL (``/stream?streams=a/b/c``), so the connector sends
nothing after connecting (Binance counts every client frame against its 5 messages/s
limit) and every reconnect subscribes again by itself.  A connection carries at most
1024 streams.  The diff depth stream is only a book with a snapshot to start from:
``GET /api/v3/depth`` is fetched (``snapshot_polls``) after every connect of a
connection that carries depth streams and on every resync the processor asks for,
and archived in the raw topic under the same key as the symbol's depth frames, so a
snapshot and the diffs around it stay in one partition, in order.  Binance's rule for
joining them (drop diffs with ``u`` <= ``lastUpdateId``) is the standardiser's.

:class:`BinanceStreams` is what Binance spot and USD-M futures (``binance_futures``)
share; each subclass declares its endpoints, channels and symbol list.

:class:`AggTradesHistory` is the aggregate-trade history (``GET /api/v3/aggTrades``,
``/fapi/v1/aggTrades``): oldest first; the first page from ``startTime`` (with an
``endTime`` less than an hour later, as Binance requires when both are sent), the
next ones from ``fromId`` (inclusive), up to 1000 a page.  Aggregate ids count up by
one per symbol, as the ``aggTrade`` stream's ``a``.  Sources whose stream carries
``aggTrade`` backfill from it (USD-M futures).  Spot streams ``trade``, whose ids are
trade ids, not aggregate ids: :class:`HistoricalTrades` backfills it trade by trade.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import ClassVar

import orjson

from l3_atom.backfill import Request, TradeHistory, TradeRef
from l3_atom.data_source import DataFeed, RestPoll, chunked, readable_products
from l3_atom.feed import RECONNECT
from l3_atom.limits import EndpointWeight, Limits, Rate
from l3_atom.tokens import Symbol, SymbolError
from l3_atom.topics import raw_key

UNPARSED = "unparsed"
CONTROL = "control"
DEPTH = "depth"
# Levels per side of a REST book snapshot.
SNAPSHOT_LEVELS = "1000"
# Book snapshots are fetched on (re)connect and resync, not on a timer.
SNAPSHOT_POLL_INTERVAL_S = 0.0
# aggTrades: the most a page holds, and the widest startTime..endTime window Binance accepts (less than an hour).
AGG_TRADES_LIMIT = "1000"
AGG_TRADES_WINDOW_MS = 3_600_000 - 1
AGG_TRADE_FEED = "aggtrade"
TRADE_FEED = "trade"
# historicalTrades: the most a page holds.
HISTORICAL_TRADES_LIMIT = "1000"
AGG_TRADES_PATH = "/api/v3/aggTrades"
HISTORICAL_TRADES_PATH = "/api/v3/historicalTrades"
# Request weights of the two trade histories (spot REST docs, Market Data endpoints).
AGG_TRADES_WEIGHT = 4
HISTORICAL_TRADES_WEIGHT = 25
# Binance sends this event before it closes a connection for maintenance: reconnect at once.
SHUTDOWN_NOTICE = b'"serverShutdown"'


def stream_kind(channel: str) -> str:
    """The stream type of a channel or stream suffix: ``depth@100ms`` -> ``depth``, ``kline_1m`` -> ``kline``."""
    return channel.split("@", 1)[0].split("_", 1)[0]


def feed_of_stream(stream: str) -> str:
    """The raw-key feed of a combined-stream name (``nknusdt@kline_1m`` -> ``kline``); never has ``_``."""
    return stream_kind(stream.partition("@")[2]).lower() or CONTROL


def normalised_name(base: str, quote: str, suffix: str | None = None) -> str | None:
    """``BASE.QUOTE`` (``-suffix``), or None for assets outside the normalised grammar (never requestable)."""
    name = f"{base}.{quote}" + (f"-{suffix}" if suffix else "")
    try:
        return str(Symbol.parse(name))
    except SymbolError:
        return None


UNSUBSCRIBE = "UNSUBSCRIBE"


class AggTradesHistory(TradeHistory):
    """Binance's aggregate-trade history at ``path``, archived under the symbol's ``aggtrade`` key."""

    feed = AGG_TRADE_FEED
    newest_first = False
    sequential_ids = True

    def __init__(self, path: str):
        self.path = path

    def request(self, exchange_symbol: str, since_ms: int, cursor: int | None) -> Request:
        params = {"symbol": exchange_symbol, "limit": AGG_TRADES_LIMIT}
        if cursor is None:
            params.update(startTime=str(since_ms), endTime=str(since_ms + AGG_TRADES_WINDOW_MS))
        else:
            params["fromId"] = str(cursor)
        return Request(self.path, params)

    def trades(self, body: str) -> list[TradeRef]:
        page = orjson.loads(body)
        if type(page) is not list:
            raise TypeError(f"expected a list of aggregate trades, got {type(page).__name__}")
        return [TradeRef(int(trade["a"]), int(trade["T"])) for trade in page]


class HistoricalTrades(TradeHistory):
    """Binance spot's trade history, ``GET /api/v3/historicalTrades`` (Old trade lookup), by trade id.

    https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints
    (``rest-api.md`` of github.com/binance/binance-spot-api-docs): ``symbol``, ``limit``
    (default 500, at most 1000) and ``fromId`` ("TradeId to fetch from", inclusive; without it the
    most recent trades); weight 25; no security type is stated, so it is NONE: no API key (the
    2021 docs still marked it MARKET_DATA, key required).  Pages are oldest first ("Data is
    returned in ascending order").  Its ``id`` is the ``trade`` stream's ``t``, so the pages are archived under the
    symbol's ``trade`` key.  It has no time parameter: the first ``fromId`` is located with one
    ``GET /api/v3/aggTrades?startTime=..&limit=1`` (weight 4), whose aggregate names its first trade
    id ``f``.  A symbol's trade ids count up one by one: a missing id is a missing trade.
    """

    feed = TRADE_FEED
    newest_first = False
    sequential_ids = True

    def locate(self, exchange_symbol: str, since_ms: int) -> Request:
        return Request(AGG_TRADES_PATH, {"symbol": exchange_symbol, "startTime": str(since_ms), "limit": "1"})

    def located(self, body: str) -> int | None:
        page = orjson.loads(body)
        if type(page) is not list:
            raise TypeError(f"expected a list of aggregate trades, got {type(page).__name__}")
        return int(page[0]["f"]) if page else None

    def request(self, exchange_symbol: str, since_ms: int, cursor: int | None) -> Request:
        if cursor is None:
            raise ValueError("historicalTrades pages only from a trade id: locate the first one")
        return Request(HISTORICAL_TRADES_PATH, {"symbol": exchange_symbol, "limit": HISTORICAL_TRADES_LIMIT,
                                                "fromId": str(cursor)})

    def trades(self, body: str) -> list[TradeRef]:
        page = orjson.loads(body)
        if type(page) is not list:
            raise TypeError(f"expected a list of trades, got {type(page).__name__}")
        return [TradeRef(int(trade["id"]), int(trade["time"])) for trade in page]


class StreamGroup(list[str]):
    """The exchange symbols of one connection, with the endpoint path and the channels it carries."""

    def __init__(self, symbols: Iterable[str], path: str, channels: list[str]):
        super().__init__(symbols)
        self.path = path
        self.channels = channels

    @property
    def streams(self) -> list[str]:
        """The stream names of the group's symbols as they are now (a delisted symbol leaves the URL)."""
        return [f"{symbol.lower()}@{channel}" for channel in self.channels for symbol in self]


class BinanceStreams(DataFeed):
    """Binance's combined-stream protocol, shared by spot and USD-M futures.

    Delisting: the streams are in the URL, and a live ``{"method": "UNSUBSCRIBE", "params": [streams],
    "id": n}`` takes a symbol's streams off the connection without a reconnect (spot:
    https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams, "Live
    Subscribing/Unsubscribing to streams"; futures: the same section of the USD-M websocket market
    streams docs); the next connect's URL no longer names them.
    """

    # Ids of the live (un)subscribe requests, unique within the process.
    _request_ids: ClassVar[Iterable[int]] = itertools.count(1)

    depth_path: ClassVar[str]
    # Channels served by REST polls rather than streams.
    rest_channels: ClassVar[tuple[str, ...]] = ()

    def route(self, channel: str) -> str:
        """URL path of the endpoint that serves ``channel`` (the root by default)."""
        return ""

    def stream_channels(self) -> list[str]:
        return [c for c in self.active_channels if c not in self.rest_channels]

    def connection_groups(self, exchange_symbols: list[str]) -> list[list[str]]:
        """One group per endpoint and per ``limits.streams_per_connection`` streams (one per symbol and channel)."""
        by_route: dict[str, list[str]] = {}
        for channel in self.stream_channels():
            by_route.setdefault(self.route(channel), []).append(channel)
        groups: list[list[str]] = []
        for path, channels in by_route.items():
            for chunk in chunked(exchange_symbols, self.symbols_per_connection(len(channels))):
                groups.append(StreamGroup(chunk, path, channels))
        return groups

    async def connection_url(self, exchange_symbols: Sequence[str]) -> str:
        """The combined-stream URL of a group made by :meth:`connection_groups`."""
        if not isinstance(exchange_symbols, StreamGroup):
            raise TypeError(f"expected a StreamGroup from connection_groups, got {type(exchange_symbols).__name__}")
        streams = "/".join(exchange_symbols.streams)
        return f"{self.ws_endpoint.rstrip('/')}{exchange_symbols.path}/stream?streams={streams}"

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        """Nothing to send: the streams are in the URL."""
        return []

    def unsubscribe_messages(self, exchange_symbols: Sequence[str], connection_id: str = "") -> list[str]:
        group = exchange_symbols
        if not isinstance(group, StreamGroup):
            group = StreamGroup(exchange_symbols, "", self.stream_channels())
        request = {"method": UNSUBSCRIBE, "params": group.streams, "id": next(self._request_ids)}
        return [orjson.dumps(request).decode()]

    def frame_key(self, frame: bytes) -> str:
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return raw_key(self.name, None, UNPARSED)
        if type(message) is not dict:
            return raw_key(self.name, None, UNPARSED)
        stream, data = message.get("stream"), message.get("data")
        if type(stream) is not str or type(data) is not dict:
            return raw_key(self.name, None, CONTROL)
        symbol = data.get("s")
        return raw_key(self.name, symbol if type(symbol) is str and symbol else None, feed_of_stream(stream))

    def reply(self, frame: bytes) -> bytes | None:
        return RECONNECT if SHUTDOWN_NOTICE in frame else None

    def snapshot_polls(self, exchange_symbols: Sequence[str]) -> list[RestPoll]:
        """Book snapshots for the diff depth stream, keyed like the symbol's depth frames.

        A connection group without depth streams (futures' ``/market`` route) fetches none
        when it connects; a resync names plain symbols and gets theirs.
        """
        if isinstance(exchange_symbols, StreamGroup):
            carries_depth = any(feed_of_stream(s) == DEPTH for s in exchange_symbols.streams)
        else:
            carries_depth = any(stream_kind(c) == DEPTH for c in self.stream_channels())
        if not carries_depth:
            return []
        return [
            RestPoll(self.depth_path, {"symbol": s, "limit": SNAPSHOT_LEVELS}, raw_key(self.name, s, DEPTH),
                     SNAPSHOT_POLL_INTERVAL_S)
            for s in exchange_symbols
        ]


class Binance(BinanceStreams):
    """Binance spot's public limits.

    REST (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits): 6,000 request
    weight per minute per IP, reported back in ``X-MBX-USED-WEIGHT-1M``; 429 with ``Retry-After``,
    then 418 bans of 2 minutes to 3 days.  ``GET /api/v3/depth`` weighs 5 / 25 / 50 / 250 for limits
    up to 100 / 500 / 1000 / 5000; ``exchangeInfo`` weighs 20 (Market Data endpoints, same docs).
    WebSocket streams (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams):
    5 incoming messages/s per connection, 1024 streams per connection, 300 connections per 5 minutes
    per IP.
    """

    name = "binance"
    ws_url = "wss://stream.binance.com:9443"
    rest_url = "https://api.binance.com"
    symbols_path = "/api/v3/exchangeInfo"
    depth_path = "/api/v3/depth"
    channels = ("depth@100ms", "trade", "bookTicker", "kline_1m")
    limits = Limits(
        rest=(Rate(6000, 60.0),),
        weights=(
            EndpointWeight("/api/v3/depth", 5, "limit", ((100, 5), (500, 25), (1000, 50), (5000, 250))),
            EndpointWeight("/api/v3/exchangeInfo", 20),
            EndpointWeight(HISTORICAL_TRADES_PATH, HISTORICAL_TRADES_WEIGHT),
            EndpointWeight(AGG_TRADES_PATH, AGG_TRADES_WEIGHT),
        ),
        used_weight_header="X-MBX-USED-WEIGHT-1M",
        subscribes=Rate(5, 1.0),
        streams_per_connection=1024,
        connections=Rate(300, 300.0),
    )
    trade_history = HistoricalTrades()

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        return dict(readable_products(cls.name, orjson.loads(body)["symbols"], _listed))


def _listed(market: dict) -> tuple[str, str] | None:
    """(normalised name, exchange symbol) of one market of ``exchangeInfo``; None for names outside the grammar."""
    name = normalised_name(market["baseAsset"], market["quoteAsset"])
    return None if name is None else (name, market["symbol"])
