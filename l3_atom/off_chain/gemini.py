"""Gemini market data v2: level-2 book with its trades, and 1-minute candles, on one websocket.

Gemini lists symbols (``/v1/symbols``: ``btcusd``, ``btcgusdperp``) without
saying which part is the base: that takes one ``/v1/symbols/details/{symbol}``
request per symbol.  The connector fetches details only for the symbols it is
asked to stream (concurrently); listing every symbol (``runner.py symbols``)
fetches them all, paced under Gemini's public limit of 120 requests a minute.

Trades missed in an outage come from ``GET /v1/trades/{symbol}`` (:class:`GeminiTrades`),
archived under the symbol's ``l2`` key, where its streamed trades are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson

from l3_atom.backfill import Request, TradeHistory, TradeRef
from l3_atom.data_source import DataFeed, readable_products
from l3_atom.feed import RestClient
from l3_atom.limits import Limits, Rate
from l3_atom.tokens import InstrumentType, Symbol
from l3_atom.topics import raw_key

L2 = "l2"
CANDLES_1M = "candles_1m"
DETAILS_PATH = "/v1/symbols/details/{symbol}"
# Product type of perpetual swaps in the symbol details (spot is "spot").
SWAP = "swap"
# Details requests: this many at once, then one every DETAILS_INTERVAL_S (120 a minute is Gemini's public limit).
DETAILS_BURST = 10
DETAILS_INTERVAL_S = 0.6

# Message type -> raw-topic feed; trades travel with the book they came from, in order.
FEED_OF_TYPE = {"l2_updates": "l2", "trade": "l2", "heartbeat": "heartbeat"}
CANDLES_FEED = "candles"
CONTROL = "control"
UNPARSED = "unparsed"
TRADES_PATH = "/v1/trades/{symbol}"
# The most trades a page of the history holds ("Each request will show at most 500 records").
TRADES_PAGE_LIMIT = 500


def details_delays(count: int) -> list[float]:
    """When to send each of ``count`` details requests, in s: a burst, then one per interval."""
    return [max(0, n - DETAILS_BURST + 1) * DETAILS_INTERVAL_S for n in range(count)]


def exchange_name(symbol: Symbol) -> str:
    """Gemini's lower-case name of a normalised symbol: ``BTC.USD`` -> ``btcusd``, ``BTC.GUSD-PERP`` -> ``btcgusdperp``."""
    suffix = "perp" if symbol.type is InstrumentType.PERPETUAL else ""
    return f"{symbol.base}{symbol.quote}".lower() + suffix


class GeminiTrades(TradeHistory):
    """Gemini's trade history, ``GET /v1/trades/{symbol}`` (List Trades), paged forward by ``since_tid``.

    https://developer.gemini.com/trading/rest-api/market-data/list-trades: ``timestamp`` "Only
    return trades after this timestamp" (seconds or milliseconds), ``since_tid`` "Only returns
    trades that executed after this tid" (it trumps ``timestamp``; 0 gives "the earliest available
    trade history data", so a page holds the earliest trades after its cursor), ``limit_trades``
    (default 50, at most 500 a request); the answer is "sorted by timestamp, with the newest trade
    shown first", so :meth:`trades` reverses it; broken trades are left out unless
    ``include_breaks``.  The public endpoint reaches seven calendar days back.  The first page is by
    ``timestamp`` (ms), the next ones from the last page's newest ``tid``.  ``tid`` is the market
    data v2 ``trade`` event's ``tid``; Gemini numbers trades across all symbols, so a symbol's ids
    are not consecutive (``sequential_ids`` unset).  Every request weighs 1 of the 120 a minute.
    """

    feed = L2
    newest_first = False
    # The docs describe a ``timestamp`` answer as "the most recent trades that occurred after" it.
    first_page_newest = True
    page_size = TRADES_PAGE_LIMIT

    def request(self, exchange_symbol: str, since_ms: int, cursor: int | None) -> Request:
        params = {"limit_trades": str(TRADES_PAGE_LIMIT)}
        if cursor is None:
            params["timestamp"] = str(since_ms)
        else:
            params["since_tid"] = str(cursor - 1)  # exclusive: the trades after the last one fetched
        return Request(TRADES_PATH.format(symbol=exchange_symbol), params)

    def trades(self, body: str) -> list[TradeRef]:
        page = orjson.loads(body)
        if type(page) is not list:
            raise TypeError(f"expected a list of trades, got {type(page).__name__}")
        return [TradeRef(int(trade["tid"]), int(trade["timestampms"])) for trade in reversed(page)]


class Gemini(DataFeed):
    """Gemini's public limits (https://developer.gemini.com/rate-limit, formerly docs.gemini.com).

    REST: public entry points are limited to 120 requests per minute (Gemini recommends at most 1
    per second), 429 past it.  WebSocket message rates, connections and subscriptions per connection
    are not documented there: 5 messages/s and 10 connections/s are declared.

    Delisting: ``{"type": "unsubscribe", "subscriptions": [{"name": ..., "symbols": [...]}]}``
    (https://docs.gemini.com/websocket/market-data/v2/unsubscribe).
    """

    name = "gemini"
    ws_url = "wss://api.gemini.com/v2/marketdata"
    rest_url = "https://api.gemini.com"
    symbols_path = "/v1/symbols"
    channels = (L2, CANDLES_1M)
    limits = Limits(
        rest=(Rate(120, 60.0),),
        subscribes=Rate(5, 1.0),
        connections=Rate(10, 1.0),
    )
    trade_history = GeminiTrades()

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        """A JSON array of ``/v1/symbols/details`` bodies -> normalised name -> Gemini's (websocket) symbol."""
        return dict(readable_products(cls.name, orjson.loads(body), _listed))

    async def load_symbol_map(self) -> dict[str, str]:
        client = self.rest_client()
        try:
            listed = orjson.loads(await client.get_text(self.symbols_path))
            if self.requested:
                wanted = {exchange_name(Symbol.parse(name)) for name in self.requested}
                listed = [symbol for symbol in listed if symbol in wanted]
            delays = details_delays(len(listed))
            bodies = await asyncio.gather(*(self._details(client, s, d) for s, d in zip(listed, delays, strict=True)))
        finally:
            await client.close()
        return self.parse_symbols("[" + ",".join(bodies) + "]")

    @staticmethod
    async def _details(client: RestClient, symbol: str, delay_s: float) -> str:
        await asyncio.sleep(delay_s)
        return await client.get_text(DETAILS_PATH.format(symbol=symbol))

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        return self._requests("subscribe", exchange_symbols)

    def unsubscribe_messages(self, exchange_symbols: Sequence[str], connection_id: str = "") -> list[str]:
        return self._requests("unsubscribe", exchange_symbols)

    def _requests(self, kind: str, exchange_symbols: Sequence[str]) -> list[str]:
        subscriptions = [{"name": channel, "symbols": list(exchange_symbols)} for channel in self.active_channels]
        return [orjson.dumps({"type": kind, "subscriptions": subscriptions}).decode()]

    def frame_key(self, frame: bytes) -> str:
        try:
            message = orjson.loads(frame)
            kind = message.get("type")
            symbol = message.get("symbol")
        except (orjson.JSONDecodeError, AttributeError):
            return raw_key(self.name, None, UNPARSED)
        if not isinstance(kind, str):
            return raw_key(self.name, None, UNPARSED)
        feed = FEED_OF_TYPE.get(kind) or (CANDLES_FEED if str(kind).startswith("candles_") else CONTROL)
        return raw_key(self.name, symbol if isinstance(symbol, str) and symbol else None, feed)


def _listed(details: dict) -> tuple[str, str]:
    """(normalised name, websocket symbol) of one ``/v1/symbols/details`` body."""
    kind = InstrumentType.PERPETUAL if details.get("product_type") == SWAP else InstrumentType.SPOT
    symbol = Symbol(details["base_currency"].upper(), details["quote_currency"].upper(), kind)
    return str(symbol), details["symbol"].upper()
