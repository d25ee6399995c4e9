"""Kraken spot: websocket API v2 channels ``book``, ``trade``, ``ticker`` and ``ohlc``.

Kraken names an asset three ways: REST asset codes (``XXBT``, ``ZUSD``: the
legacy X/Z prefix), v1 websocket names (``XBT/USD``, the ``wsname`` of
``/0/public/AssetPairs``) and v2 websocket names (``BTC/USD``: ISO-like
codes, ``XBT`` -> ``BTC`` and ``XDG`` -> ``DOGE``).  :func:`normalise_asset`
maps all three to the normalised code; the symbol map pairs each normalised
name with its v2 websocket name.  Kraken futures shares these names.

Channels are spread over connections by weight, as the original v1 recorder
did (one connection per channel): the depth-1000 book alone, trades alone,
and ticker with the 1-minute candles (both light, both trade-driven).

Trades missed in an outage come from ``GET /0/public/Trades`` (:class:`KrakenTrades`),
archived under the pair's ``trade`` key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any, ClassVar

import orjson

from l3_atom.backfill import Request, TradeHistory, TradeRef
from l3_atom.data_source import DataFeed, readable_products
from l3_atom.limits import Limits, Rate
from l3_atom.tokens import Symbol, SymbolError
from l3_atom.topics import raw_key

BOOK = "book"
TRADE = "trade"
TICKER = "ticker"
OHLC = "ohlc"
HEARTBEAT = "heartbeat"
STATUS = "status"
CONTROL = "control"
UNPARSED = "unparsed"
DATA_CHANNELS = frozenset({BOOK, TRADE, TICKER, OHLC})

# Kraken's own names of assets that have an ISO-like code elsewhere.
ASSET_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}
KRAKEN_NAMES = {alias: code for code, alias in ASSET_ALIASES.items()}
# REST asset codes that carry Kraken's legacy X (crypto) / Z (fiat) prefix; newer assets have none
# (and some start with X or Z on their own: XTZ, ZRX), so the prefix is stripped only from these.
LEGACY_PREFIXED_ASSETS = frozenset({
    "XETC", "XETH", "XLTC", "XMLN", "XREP", "XXBT", "XXDG", "XXLM", "XXMR", "XXRP", "XZEC",
    "XDAO", "XICN", "XNMC", "XXVN", "ZAUD", "ZCAD", "ZEUR", "ZGBP", "ZJPY", "ZKRW", "ZUSD",
})
# Levels per side of the book subscription (Kraken allows 10, 25, 100, 500, 1000).
BOOK_DEPTH = 1000
# Candle length of the ohlc subscription, minutes.
CANDLE_MINUTES = 1
# Subscription parameters per channel, beyond channel and symbols.
CHANNEL_PARAMS: dict[str, dict[str, Any]] = {
    BOOK: {"depth": BOOK_DEPTH},
    # A ticker on every best bid/offer change, not only on trades (Kraken's default).
    TICKER: {"event_trigger": "bbo"},
    # No snapshot of the last 50 trades: after a reconnect they would be archived twice.
    TRADE: {"snapshot": False},
    OHLC: {"interval": CANDLE_MINUTES},
}
# The subscribe parameters an unsubscribe names too (the v2 pages list only these beside channel and symbol).
UNSUBSCRIBE_PARAMS = frozenset({"depth", "interval"})
# Channels that share a connection; the heavy book and the trades each get their own.
CONNECTION_CHANNELS: tuple[tuple[str, ...], ...] = ((TRADE,), (TICKER, OHLC), (BOOK,))
# Distinct pair names a process remembers (the names are few; frames repeat them).
NAME_CACHE_SIZE = 4096
# v1 frames are arrays: [channel id, payload..., channel name, pair].
V1_CHANNEL_NAME, V1_PAIR = -2, -1
TRADES_PATH = "/0/public/Trades"
# Trades a page of the REST history holds at most (Kraken's ``count``: 1 to 1000).
TRADES_PAGE_COUNT = "1000"
# A REST trade: [price, volume, time (s), side, order type, misc, trade_id]; trade_id is Kraken's 2023 addition.
REST_TRADE_TIME, REST_TRADE_ID = 2, 6
# The key of a Trades answer that is the next ``since``, beside the pair's list of trades.
LAST = "last"
NS_PER_MS = 1_000_000
MS_PER_S = 1000


def normalise_asset(code: str) -> str:
    """A Kraken asset code (``XXBT``, ``ZUSD``, ``XBT``, ``XDG``, ``BTC``) -> the normalised code (``BTC``)."""
    if code in LEGACY_PREFIXED_ASSETS:
        code = code[1:]
    return ASSET_ALIASES.get(code, code).upper()


def rest_pair(websocket_name: str) -> str:
    """A v2 websocket name -> the pair's REST ``altname``: Kraken's own asset names, no slash (``BTC/USD`` -> ``XBTUSD``)."""
    return "".join(KRAKEN_NAMES.get(asset, asset) for asset in websocket_name.split("/"))


def websocket_asset(code: str) -> str:
    """A v1 ``wsname`` asset (``XBT``) -> its websocket v2 spelling (``BTC``)."""
    return ASSET_ALIASES.get(code, code)


@lru_cache(maxsize=NAME_CACHE_SIZE)
def normalised_pair(pair: str) -> str:
    """``XBT/USD`` (v1) or ``BTC/USD`` (v2) -> ``BTC.USD``; ``ValueError`` outside the normalised grammar."""
    base, slash, quote = pair.partition("/")
    if not slash or "/" in quote:
        raise ValueError(f"Kraken pair must look like BASE/QUOTE, got {pair!r}")
    return str(Symbol.parse(f"{normalise_asset(base)}.{normalise_asset(quote)}"))


class KrakenTrades(TradeHistory):
    """Kraken's trade history, ``GET /0/public/Trades?pair=&since=&count=``, oldest first.

    https://docs.kraken.com/api/docs/rest-api/get-recent-trades: ``since`` "Return trade data since
    given timestamp", ``count`` 1 to 1000 (default 1000); the answer is ``{"error": [], "result":
    {<pair>: [[price, volume, time, side, order type, misc, trade_id], ...], "last": ...}}`` where
    ``last`` is the ``since`` of the next page.  ``since`` is a nanosecond UNIX time
    (https://support.kraken.com/articles/218198197, "How to retrieve historical time and sales ...
    Trades endpoint": "a standard UNIX timestamp in seconds with 9 additional digits"), exclusive:
    paging goes on from each page's ``last``, not from a trade id, so ``follows`` compares times.
    ``trade_id`` is the websocket v2 ``trade`` channel's ``trade_id`` ("sequence number unique per
    trading book"), which the standardiser deduplicates by.  Older answers (before Kraken added
    ``trade_id``, 2023) list six fields: such a page cannot be told from the streamed trades, so it
    ends the backfill as unrecoverable rather than risk duplicates.  ``sequential_ids`` is not set:
    the documented example page goes 61044953, 61044956, so a missing id does not prove a lost trade.
    A public request weighs 1 of Kraken's one-a-second budget (:class:`Kraken`).  The pair is named
    by its REST ``altname`` (:func:`rest_pair`), which Kraken accepts as well as the pair's key
    (https://support.kraken.com/articles/360000920306, "API symbols and tickers").
    """

    feed = TRADE
    newest_first = False

    def request(self, exchange_symbol: str, since_ms: int, cursor: int | None) -> Request:
        since = cursor if cursor is not None else since_ms * NS_PER_MS
        return Request(TRADES_PATH, {"pair": rest_pair(exchange_symbol), "since": str(since),
                                     "count": TRADES_PAGE_COUNT})

    def trades(self, body: str) -> list[TradeRef]:
        refs = []
        for trade in rest_trades(body)[0]:
            if len(trade) <= REST_TRADE_ID:
                raise ValueError(f"a Kraken trade without trade_id cannot be deduplicated: {trade!r}")
            refs.append(TradeRef(int(trade[REST_TRADE_ID]), int(Decimal(trade[REST_TRADE_TIME]) * MS_PER_S)))
        return refs

    def follows(self, page: Sequence[TradeRef], cursor: int) -> bool:
        """The cursor is a time (ns): the page must not start before it (to the millisecond)."""
        return page[0].time_ms >= cursor // NS_PER_MS

    def next_cursor(self, body: str, cursor: int) -> int:
        """Kraken names the next page's ``since``: the page's ``last``."""
        return int(rest_trades(body)[1])


def rest_trades(body: str) -> tuple[list, str]:
    """The trades and ``last`` of a ``Trades`` answer (times as exact decimals); ValueError on Kraken's errors."""
    answer = json.loads(body, parse_float=Decimal)
    if type(answer) is not dict:
        raise TypeError(f"expected a Trades answer object, got {type(answer).__name__}")
    if answer.get("error"):
        raise ValueError(f"Kraken answered errors: {answer['error']}")
    result = answer["result"]
    return pair_trades(result), str(result[LAST])


def pair_trades(result: dict) -> list:
    """The trades of the one pair a ``Trades`` answer's ``result`` holds beside ``last``."""
    pairs = [value for key, value in result.items() if key != LAST]
    if len(pairs) != 1 or type(pairs[0]) is not list:
        raise ValueError(f"expected one pair's trades in the answer, got keys {sorted(result)}")
    return pairs[0]


class ChannelGroup(list[str]):
    """The exchange symbols of one connection, with the channels it subscribes them to."""

    def __init__(self, symbols: Iterable[str], channels: Sequence[str]):
        super().__init__(symbols)
        self.channels = tuple(channels)


class Kraken(DataFeed):
    """Kraken spot's public limits.

    REST: public endpoints are limited per IP; "calling the public endpoints at a frequency of 1 per
    second (or less) would remain within the rate limits"
    (https://support.kraken.com/articles/206548367-what-are-the-api-rate-limits-; the counters of
    https://docs.kraken.com/exchange/guides/rest/ratelimits are for API keys): 1 per 1 s here.
    WebSocket: the message rate is dynamic and not documented as a number, nor are connections per
    window or subscriptions per connection: 5 messages/s and 10 connections/s are declared.

    Delisting: ``{"method": "unsubscribe", "params": {"channel": ..., "symbol": [...]}}`` with the
    subscribe's parameters (https://docs.kraken.com/api/docs/websocket-v2/book, "Unsubscribe Request";
    the same on each channel's page).
    """

    name = "kraken"
    ws_url = "wss://ws.kraken.com/v2"
    rest_url = "https://api.kraken.com"
    symbols_path = "/0/public/AssetPairs"
    channels = (BOOK, TRADE, TICKER, OHLC)
    limits = Limits(
        rest=(Rate(1, 1.0),),
        subscribes=Rate(5, 1.0),
        connections=Rate(10, 1.0),
    )
    trade_history = KrakenTrades()

    connection_channels: ClassVar[tuple[tuple[str, ...], ...]] = CONNECTION_CHANNELS

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        """Normalised name (from the REST asset codes) -> v2 websocket name (from ``wsname``).

        Pairs without a ``wsname`` (dark pools, ``XXBTZUSD.d``) cannot be streamed; pairs whose
        assets fall outside the normalised grammar (``ETH2.S``) cannot be requested: both are left out.
        """
        answer = orjson.loads(body)
        if answer.get("error"):
            raise ValueError(f"Kraken AssetPairs answered errors: {answer['error']}")
        return dict(readable_products(cls.name, answer["result"].values(), _listed))

    def connection_groups(self, exchange_symbols: list[str]) -> list[list[str]]:
        """One connection per channel group (each split further if a symbol limit is set)."""
        grouped = {c for group in self.connection_channels for c in group}
        channel_groups = [[c for c in group if c in self.active_channels] for group in self.connection_channels]
        channel_groups += [[c] for c in self.active_channels if c not in grouped]
        chunks = super().connection_groups(exchange_symbols)
        return [ChannelGroup(chunk, channels) for channels in channel_groups if channels for chunk in chunks]

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        return self._requests("subscribe", exchange_symbols, lambda name: True)

    def unsubscribe_messages(self, exchange_symbols: Sequence[str], connection_id: str = "") -> list[str]:
        return self._requests("unsubscribe", exchange_symbols, UNSUBSCRIBE_PARAMS.__contains__)

    def _requests(self, method: str, exchange_symbols: Sequence[str], named: Callable[[str], bool]) -> list[str]:
        """One request per channel; of the channel's parameters, those ``named`` takes."""
        channels = getattr(exchange_symbols, "channels", self.active_channels)
        requests = []
        for channel in channels:
            params = {k: v for k, v in CHANNEL_PARAMS.get(channel, {}).items() if named(k)}
            body = {"method": method, "params": {"channel": channel, "symbol": list(exchange_symbols), **params}}
            requests.append(orjson.dumps(body).decode())
        return requests

    def frame_key(self, frame: bytes) -> str:
        """v2 objects name channel and symbol; v1 arrays (archived traffic) end with channel name and pair."""
        try:
            message = orjson.loads(frame)
            if isinstance(message, list):
                feed = message[V1_CHANNEL_NAME].partition("-")[0]
                pair = message[V1_PAIR]
                symbol = pair if isinstance(pair, str) else None
                return raw_key(self.name, symbol, feed if feed in DATA_CHANNELS else CONTROL)
            channel = message.get("channel")
            if channel in DATA_CHANNELS:
                symbol = message["data"][0]["symbol"]
                return raw_key(self.name, symbol if isinstance(symbol, str) else None, channel)
            beat = channel == HEARTBEAT or message.get("event") == HEARTBEAT
            return raw_key(self.name, None, HEARTBEAT if beat else STATUS if channel == STATUS else CONTROL)
        except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError, IndexError):
            return raw_key(self.name, None, UNPARSED)


def _listed(pair: dict) -> tuple[str, str] | None:
    """(normalised name, v2 websocket name) of one asset pair; None where it cannot be streamed or named."""
    wsname = pair.get("wsname")
    if not wsname or wsname.count("/") != 1:
        return None
    try:
        name = Symbol.parse(f"{normalise_asset(pair['base'])}.{normalise_asset(pair['quote'])}")
    except SymbolError:
        return None
    base, quote = wsname.split("/")
    return str(name), f"{websocket_asset(base)}/{websocket_asset(quote)}"
