"""Bitfinex websocket v2: raw books (level 3), trades and ticker; P0 books and 1m candles on request.

Channels (``--channels``): ``rawbook`` (``book`` with ``prec: R0``, the default L3 feed), ``trades``,
``ticker``, and optionally ``book`` (``prec: P0``, aggregated levels) and ``candles`` (``trade:1m:...``).
Bitfinex data frames carry a channel id, not a symbol: this connector keeps, per connection, the
``subscribed`` events (channel id -> symbol and channel) and writes symbol and feed into the raw key,
where the standardiser reads them.  The first frame asks for sequence numbers and exchange timestamps on
every frame (conf flags ``SEQ_ALL | TIMESTAMP``).  A connection carries at most 25 channels (Bitfinex's
public-channel limit), so symbols are spread by ``channels x symbols``.

Trades missed while a connection was down come from ``GET /v2/trades/{symbol}/hist``
(:class:`BitfinexTrades`; https://docs.bitfinex.com/reference/rest-public-trades): entries
``[ID, MTS, AMOUNT, PRICE]``, ``sort=1`` oldest first from ``start`` (ms, inclusive), up to 10,000 a
page; 15 requests per minute.  Trade ids are not consecutive per pair (one numbering over all
pairs), so pages follow time: the next page starts at the last page's last millisecond, and the
trades of that millisecond it repeats are dropped by id.  Archived under the pair's ``trades`` key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from l3_atom.backfill import Request, TradeHistory, TradeRef
from l3_atom.data_source import DataFeed, readable_products
from l3_atom.errors import UserError
from l3_atom.feed import RECONNECT
from l3_atom.limits import Limits, Rate
from l3_atom.tokens import InstrumentType, Symbol
from l3_atom.topics import raw_key

# Feeds of the raw key (never underscores); the connector names a channel's frames with them.
FEED_RAW_BOOK = "rawbook"
FEED_BOOK = "book"
FEED_TRADES = "trades"
FEED_TICKER = "ticker"
# Candle feeds carry the timeframe: ``candles1m`` for the key ``trade:1m:tBTCUSD``.
FEED_CANDLES = "candles"
FEED_CONTROL = "control"
FEED_UNPARSED = "unparsed"
# Data of a channel id whose ``subscribed`` event the connector has not seen.
FEED_UNKNOWN_CHANNEL = "unknownchannel"

TRADING_PREFIX = "t"
PERPETUAL_SUFFIX = "F0"
PAIR_SEPARATOR = ":"
SHORT_CODE_LENGTH = 3
# Bitfinex's own codes that differ from the asset's common code (Bitfinex's pub:map:currency:sym).
ASSET_ALIASES = {"UST": "USDT"}


def normalise_asset(code: str) -> str:
    return ASSET_ALIASES.get(code, code)


def normalise_pair(pair: str) -> str:
    """``BTCUSD`` -> ``BTC.USD``, ``TESTBTC:TESTUSD`` -> ``TESTBTC.TESTUSD``, ``BTCF0:USTF0`` -> ``BTC.USDT-PERP``.

    Codes of three letters are written together, longer ones with a colon; ``F0`` marks the
    perpetual contracts' assets.
    """
    if type(pair) is not str:
        raise TypeError(f"expected a Bitfinex pair string, got {pair!r}")
    if PAIR_SEPARATOR in pair:
        base, quote = pair.split(PAIR_SEPARATOR)
    elif len(pair) == 2 * SHORT_CODE_LENGTH:
        base, quote = pair[:SHORT_CODE_LENGTH], pair[SHORT_CODE_LENGTH:]
    else:
        raise ValueError(f"{pair!r} is not a Bitfinex pair (BBBQQQ or BASE:QUOTE)")
    kind = InstrumentType.SPOT
    if base.endswith(PERPETUAL_SUFFIX) and quote.endswith(PERPETUAL_SUFFIX):
        base, quote = base[: -len(PERPETUAL_SUFFIX)], quote[: -len(PERPETUAL_SUFFIX)]
        kind = InstrumentType.PERPETUAL
    name = str(Symbol(normalise_asset(base), normalise_asset(quote), kind))
    return str(Symbol.parse(name))


def normalise_trading_symbol(symbol: str) -> str:
    """``tBTCUSD`` (a websocket symbol) -> ``BTC.USD``."""
    if type(symbol) is not str or not symbol.startswith(TRADING_PREFIX):
        raise ValueError(f"expected a Bitfinex trading symbol such as tBTCUSD, got {symbol!r}")
    return normalise_pair(symbol[len(TRADING_PREFIX) :])


# conf flags: TIMESTAMP (32768) adds the exchange's ms time, SEQ_ALL (65536) a sequence number, to every frame.
FLAG_TIMESTAMP = 32768
FLAG_SEQ_ALL = 65536
# Public channels one connection may carry (docs.bitfinex.com/docs/ws-public).
MAX_CHANNELS_PER_CONNECTION = 25
RAW_PRECISION = "R0"
BOOK_PRECISION = "P0"
BOOK_LENGTH = "100"
CANDLE_TIMEFRAME = "1m"
# Info codes after which Bitfinex asks clients to reconnect: server restart, maintenance ended.
RECONNECT_CODES = frozenset({20051, 20061})
# trades/hist: the largest page, and sort=1 (oldest first).
TRADES_PAGE_LIMIT = 10_000
OLDEST_FIRST = "1"
KNOWN_CHANNELS = (FEED_RAW_BOOK, FEED_BOOK, FEED_TRADES, FEED_TICKER, FEED_CANDLES)


def subscription(channel: str, symbol: str) -> dict[str, str]:
    """The subscribe event of one of this connector's channels for one trading symbol (``tBTCUSD``)."""
    if channel == FEED_RAW_BOOK:
        return {"event": "subscribe", "channel": "book", "symbol": symbol, "prec": RAW_PRECISION, "len": BOOK_LENGTH}
    if channel == FEED_BOOK:
        return {
            "event": "subscribe",
            "channel": "book",
            "symbol": symbol,
            "prec": BOOK_PRECISION,
            "freq": "F0",
            "len": BOOK_LENGTH,
        }
    if channel == FEED_CANDLES:
        return {"event": "subscribe", "channel": "candles", "key": f"trade:{CANDLE_TIMEFRAME}:{symbol}"}
    if channel in (FEED_TRADES, FEED_TICKER):
        return {"event": "subscribe", "channel": channel, "symbol": symbol}
    raise UserError(f"bitfinex has no channel {channel!r}; known: {', '.join(KNOWN_CHANNELS)}")


def channel_of(event: dict[str, Any]) -> tuple[str | None, str]:
    """(exchange symbol, feed) of a ``subscribed`` event."""
    channel = str(event.get("channel"))
    if channel == "candles":
        # key "trade:1m:tBTCUSD"; symbols may contain colons themselves (tTESTBTC:TESTUSD).
        _, timeframe, symbol = str(event["key"]).split(":", 2)
        return symbol, f"{FEED_CANDLES}{timeframe}"
    symbol = event.get("symbol")
    if channel == "book":
        return symbol, FEED_RAW_BOOK if event.get("prec") == RAW_PRECISION else FEED_BOOK
    return symbol, channel.replace("_", "")


class BitfinexTrades(TradeHistory):
    """``GET /v2/trades/{symbol}/hist?start=&limit=&sort=1``: oldest first, paged by time."""

    feed = FEED_TRADES
    newest_first = False
    cursor_is_time = True
    page_size = TRADES_PAGE_LIMIT

    def request(self, exchange_symbol: str, since_ms: int, cursor: int | None) -> Request:
        start = since_ms if cursor is None else cursor
        return Request(f"/v2/trades/{exchange_symbol}/hist",
                       {"start": str(start), "limit": str(TRADES_PAGE_LIMIT), "sort": OLDEST_FIRST})

    def trades(self, body: str) -> list[TradeRef]:
        """A page is a list of ``[ID, MTS, AMOUNT, PRICE]``; Bitfinex's errors (``["error", code, text]``) are not."""
        page = orjson.loads(body)
        if type(page) is not list or any(type(entry) is not list for entry in page):
            raise TypeError(f"expected a list of [ID, MTS, AMOUNT, PRICE], got {body[:200]}")
        return [TradeRef(int(entry[0]), int(entry[1])) for entry in page]


class Bitfinex(DataFeed):
    """Bitfinex's public limits.

    REST: an IP that exceeds "a certain number of requests per minute (between 10 and 90)" to one
    endpoint is blocked for 10-60 s (https://docs.bitfinex.com/v1, "Introduction"): the lower bound,
    10 per minute, is declared for all REST (a trade history page costs one: ``trades/hist`` allows
    15 per minute, https://docs.bitfinex.com/reference/rest-public-trades).  WebSocket (https://docs.bitfinex.com/docs/ws-public): 20
    connections per minute on api-pub, 25 channels per connection.  Subscribe messages per second are
    not documented: 5 per second is declared.

    Delisting: ``{"event": "unsubscribe", "chanId": id}`` for each channel id the symbol was given on
    its connection (https://docs.bitfinex.com/docs/ws-general, "Unsubscribing from channels").
    """

    name = "bitfinex"
    ws_url = "wss://api-pub.bitfinex.com/ws/2"
    rest_url = "https://api-pub.bitfinex.com"
    symbols_path = "/v2/conf/pub:list:pair:exchange"
    futures_path = "/v2/conf/pub:list:pair:future"
    channels = (FEED_RAW_BOOK, FEED_TRADES, FEED_TICKER)
    limits = Limits(
        rest=(Rate(10, 60.0),),
        subscribes=Rate(5, 1.0),
        streams_per_connection=MAX_CHANNELS_PER_CONNECTION,
        connections=Rate(20, 60.0),
    )
    trade_history = BitfinexTrades()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connection id -> channel id -> (exchange symbol, feed); channel ids hold for one connection only.
        self._channels: dict[str, dict[int, tuple[str | None, str]]] = {}
        self._connection_id = ""

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        """Normalised -> websocket symbol from a ``pub:list:pair:*`` body (``[["BTCUSD", ...]]``)."""
        [pairs] = orjson.loads(body)
        symbol_map: dict[str, str] = {}
        for name, pair in readable_products(cls.name, pairs, lambda pair: (normalise_pair(pair), pair)):
            symbol_map.setdefault(name, f"{TRADING_PREFIX}{pair}")
        return symbol_map

    async def load_symbol_map(self) -> dict[str, str]:
        """Spot and margin pairs, then the perpetuals: two lists."""
        client = self.rest_client()
        try:
            symbol_map: dict[str, str] = {}
            for path in (self.symbols_path, self.futures_path):
                symbol_map.update(self.parse_symbols(await client.get_text(path)))
            return symbol_map
        finally:
            await client.close()

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        messages = [{"event": "conf", "flags": FLAG_SEQ_ALL | FLAG_TIMESTAMP}]
        messages += [subscription(channel, symbol) for channel in self.active_channels for symbol in exchange_symbols]
        return [orjson.dumps(message).decode() for message in messages]

    def unsubscribe_messages(self, exchange_symbols: Sequence[str], connection_id: str = "") -> list[str]:
        """The unsubscribe of every channel id connection ``connection_id`` holds for ``exchange_symbols``."""
        channels = self._channels.get(connection_id, {})
        return [
            orjson.dumps({"event": "unsubscribe", "chanId": channel_id}).decode()
            for channel_id, (symbol, _) in channels.items()
            if symbol in exchange_symbols
        ]

    def key_of(self, frame: bytes, connection_id: str) -> str:
        """Channel ids are per connection: key the frame with its own connection's ids."""
        if connection_id not in self._channels:
            # A new connection (or a reconnect): the ids of the one it replaces are void.
            name = connection_id.rpartition(".")[0]
            for old in [c for c in self._channels if c.rpartition(".")[0] == name]:
                del self._channels[old]
            self._channels[connection_id] = {}
        self._connection_id = connection_id
        return self.frame_key(frame)

    def frame_key(self, frame: bytes) -> str:
        channels = self._channels.setdefault(self._connection_id, {})
        if frame[:1] == b"[":
            try:
                channel_id = int(frame[1 : frame.find(b",")])
            except ValueError:
                return raw_key(self.name, None, FEED_UNPARSED)
            symbol, feed = channels.get(channel_id, (None, FEED_UNKNOWN_CHANNEL))
            return raw_key(self.name, symbol, feed)
        try:
            message = orjson.loads(frame)
            if message.get("event") == "subscribed":
                channels[int(message["chanId"])] = channel_of(message)
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            return raw_key(self.name, None, FEED_UNPARSED)
        return raw_key(self.name, None, FEED_CONTROL)

    def reply(self, frame: bytes) -> bytes | None:
        """Reconnect (and so resubscribe) when Bitfinex restarts a server or ends a maintenance."""
        if frame[:1] != b"{" or b'"info"' not in frame:
            return None
        try:
            code = orjson.loads(frame).get("code")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        return RECONNECT if code in RECONNECT_CODES else None
