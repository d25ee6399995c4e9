"""dYdX v4: order book, trades, 1-minute candles and markets (funding, open interest) from the indexer.

Every dYdX v4 market is a perpetual named by its ticker (``BTC-USD``) and
settled in USDC.  Its prices are quoted in USD (the oracle's unit) and the
ticker says so, so the normalised name follows the ticker: ``BTC.USD-PERP``.

``v4_markets`` has no id: one subscription streams every market, so only the
first connection subscribes to it (``SymbolGroup.carries_markets``).  The
indexer allows 32 subscriptions per channel on a connection.  It pings with
websocket control frames, which the websocket library answers itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from l3_atom.data_source import DataFeed, readable_products
from l3_atom.limits import Limits, Rate
from l3_atom.tokens import InstrumentType, Symbol, SymbolError
from l3_atom.topics import raw_key

ORDERBOOK = "v4_orderbook"
TRADES = "v4_trades"
CANDLES = "v4_candles"
MARKETS = "v4_markets"
CANDLE_RESOLUTION = "1MIN"
TICKER_SEPARATOR = "-"
# Candle ids are "<ticker>/<resolution>".
CANDLE_ID_SEPARATOR = "/"
# The indexer's limit per channel and connection (V4_*_CHANNEL_LIMIT).
SUBSCRIPTIONS_PER_CHANNEL = 32

# Channel -> the feed (ordering group) of a frame's raw-topic key.
FEED_OF_CHANNEL = {ORDERBOOK: "orderbook", TRADES: "trades", CANDLES: "candles", MARKETS: "markets"}
CONTROL = "control"
UNPARSED = "unparsed"


class SymbolGroup(list[str]):
    """The tickers of one connection, and whether it is the one that carries ``v4_markets``."""

    def __init__(self, tickers: Sequence[str], carries_markets: bool):
        super().__init__(tickers)
        self.carries_markets = carries_markets


def normalised_of_ticker(ticker: str) -> str | None:
    """``BTC-USD`` -> ``BTC.USD-PERP``; None for tickers outside the normalised grammar."""
    base, separator, quote = ticker.partition(TICKER_SEPARATOR)
    if not separator:
        return None
    name = str(Symbol(base, quote, InstrumentType.PERPETUAL))
    try:
        Symbol.parse(name)
    except SymbolError:
        return None
    return name


class Dydx(DataFeed):
    """dYdX v4 indexer's public limits.

    REST: 100 requests per 10 seconds per IP (indexer API rate limits,
    https://docs.dydx.exchange/api_integration-indexer/indexer_api).  WebSocket
    (https://docs.dydx.exchange/api_integration-indexer/indexer_websocket, "Rate Limiting"): 2
    subscribe messages per second per connection, 32 subscriptions per channel per connection (kept
    by ``max_symbols_per_connection``, a limit per channel).  Connections per window are not documented: 5 per second is declared.

    Delisting: ``{"type": "unsubscribe", "channel": ..., "id": ticker}`` per channel (same page,
    "Subscribe"/"Unsubscribe").
    """

    name = "dydx"
    ws_url = "wss://indexer.dydx.trade/v4/ws"
    rest_url = "https://indexer.dydx.trade"
    symbols_path = "/v4/perpetualMarkets"
    channels = (ORDERBOOK, TRADES, CANDLES, MARKETS)
    max_symbols_per_connection = SUBSCRIPTIONS_PER_CHANNEL
    limits = Limits(
        rest=(Rate(100, 10.0),),
        subscribes=Rate(2, 1.0),
        connections=Rate(5, 1.0),
    )

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        return dict(readable_products(cls.name, orjson.loads(body)["markets"], _listed))

    def connection_groups(self, exchange_symbols: list[str]) -> list[list[str]]:
        """32 markets per connection; the first connection also carries ``v4_markets``."""
        groups = super().connection_groups(exchange_symbols)
        return [SymbolGroup(group, index == 0) for index, group in enumerate(groups)]

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        requests: list[dict[str, str]] = []
        if MARKETS in self.active_channels and getattr(exchange_symbols, "carries_markets", True):
            requests.append({"type": "subscribe", "channel": MARKETS})
        return [*(orjson.dumps(r).decode() for r in requests), *self._requests("subscribe", exchange_symbols)]

    def carries_more(self, group: Sequence[str]) -> bool:
        """The connection that carries ``v4_markets`` (every market) stays when its tickers are all delisted."""
        return MARKETS in self.active_channels and getattr(group, "carries_markets", False)

    def unsubscribe_messages(self, exchange_symbols: Sequence[str], connection_id: str = "") -> list[str]:
        """The tickers' own channels; ``v4_markets`` (every market at once) stays."""
        return self._requests("unsubscribe", exchange_symbols)

    def _requests(self, kind: str, tickers: Sequence[str]) -> list[str]:
        requests: list[dict[str, str]] = []
        for ticker in tickers:
            for channel in self.active_channels:
                if channel == CANDLES:
                    requests.append({"type": kind, "channel": channel, "id": f"{ticker}/{CANDLE_RESOLUTION}"})
                elif channel != MARKETS:
                    requests.append({"type": kind, "channel": channel, "id": ticker})
        return [orjson.dumps(request).decode() for request in requests]

    def frame_key(self, frame: bytes) -> str:
        try:
            message = orjson.loads(frame)
            channel = message.get("channel")
            subscription = message.get("id")
        except (orjson.JSONDecodeError, AttributeError):
            return raw_key(self.name, None, UNPARSED)
        feed = FEED_OF_CHANNEL.get(channel, CONTROL) if isinstance(channel, str) else CONTROL
        ticker = None
        if channel != MARKETS and isinstance(subscription, str):
            ticker = subscription.partition(CANDLE_ID_SEPARATOR)[0]
        return raw_key(self.name, ticker, feed)


def _listed(ticker: str) -> tuple[str, str] | None:
    name = normalised_of_ticker(ticker)
    return None if name is None else (name, ticker)
