"""OKX (API v5): books, trades, tickers, candles, funding rate and open interest from the public websockets.

OKX serves candles on ``/ws/v5/business`` and everything else on
``/ws/v5/public``, so every group of symbols gets one connection per endpoint
(``connection_groups`` returns ``EndpointGroup``s that carry their path and
channels).  Funding rate exists for perpetual swaps only and open interest for
derivatives only: those channels are subscribed where they apply.

OKX closes a connection that has been quiet for 30 s unless the client sends
the text ``ping`` (answered by the text ``pong``, archived and skipped by the
standardiser); the connector sends it every ``ping_interval_s`` through the
``DataFeed.ping`` hook.

``books`` sent a full snapshot after every subscribe, then updates.  OKX delists
that initial snapshot (and the ``checksum`` field) from August 2026 (docs-v5
changelog, "Delist initial snapshot and checksum field in order book
channels", https://www.okx.com/docs-v5/log_en) and asks clients to take the
snapshot from ``GET /api/v5/market/books`` and join it by ``seqId``.  Both
shapes work: the connector does not fetch on connect (``snapshot_on_connect``
is False), the processor finds a book with updates and no snapshot and asks for
one, and a resync is that REST snapshot (``snapshot_polls``), archived under the
symbol's ``books`` key with the updates held back while it is on its way.

Trades missed while a connection was down come from ``GET /api/v5/market/history-trades``
(:class:`OkxTrades`; https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-trades-history):
newest first, up to 100 a page, paged to older trades with ``type=1`` and ``after=<tradeId>``
("records earlier than the requested tradeId"), 20 requests per 2 s per IP: the budget declared
below, one weight a request.  The pages are archived under the symbol's ``trades`` key.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from l3_atom.backfill import Request, TradeHistory, TradeRef
from l3_atom.data_source import DataFeed, RestPoll, readable_products
from l3_atom.limits import EndpointWeight, Limits, Rate
from l3_atom.tokens import InstrumentType, Symbol, SymbolError
from l3_atom.topics import raw_key

PUBLIC_PATH = "/ws/v5/public"
BUSINESS_PATH = "/ws/v5/business"

BOOKS = "books"
BOOK_SNAPSHOT_PATH = "/api/v5/market/books"
# The ``books`` channel's depth: the REST snapshot asks for as many levels.
BOOK_SNAPSHOT_LEVELS = "400"
TRADES = "trades"
TICKERS = "tickers"
CANDLE_1M = "candle1m"
FUNDING_RATE = "funding-rate"
OPEN_INTEREST = "open-interest"
# Channels named candle<interval> live on the business endpoint.
CANDLE_PREFIX = "candle"

# Raw-key feeds of frames that are not channel data.
CONTROL = "control"
PONG_FEED = "pong"
UNPARSED = "unparsed"
PONG = b"pong"

SWAP_SUFFIX = "-SWAP"
# Instrument types whose instruments the connector can stream, and their kind of normalised name.
KIND_OF_TYPE = {"SPOT": InstrumentType.SPOT, "SWAP": InstrumentType.PERPETUAL, "FUTURES": InstrumentType.FUTURE}
EXPIRY_FORMAT = "%Y%m%d"

# OKX advises fewer than 30 depth channels (books) per connection.
SYMBOLS_PER_CONNECTION = 25
HISTORY_TRADES_PATH = "/api/v5/market/history-trades"
# history-trades: paging by trade id (type 1; 2 pages by time), and the largest page (also the default).
PAGE_BY_TRADE_ID = "1"
HISTORY_PAGE_LIMIT = "100"
# Subscribe args per message: far below OKX's 64 KB per message, and few messages (OKX allows 480 per hour).
ARGS_PER_MESSAGE = 100


def endpoint_path(channel: str) -> str:
    return BUSINESS_PATH if channel.startswith(CANDLE_PREFIX) else PUBLIC_PATH


def channel_applies(channel: str, inst_id: str) -> bool:
    """Funding rates exist for perpetual swaps only, open interest for derivatives only (not spot)."""
    if channel == FUNDING_RATE:
        return inst_id.endswith(SWAP_SUFFIX)
    if channel == OPEN_INTEREST:
        return inst_id.count("-") > 1
    return True


class OkxTrades(TradeHistory):
    """``GET /api/v5/market/history-trades``: newest first; ``after=<tradeId>`` pages to older trades.

    An answer is ``{"code": "0", "msg": "", "data": [{"instId", "tradeId", "px", "sz", "side", "ts"}, ...]}``;
    any other ``code`` (e.g. 50011, rate limit) is not a page.
    """

    feed = TRADES
    newest_first = True

    def request(self, exchange_symbol: str, since_ms: int, cursor: int | None) -> Request:
        params = {"instId": exchange_symbol, "type": PAGE_BY_TRADE_ID, "limit": HISTORY_PAGE_LIMIT}
        if cursor is not None:
            params["after"] = str(cursor)
        return Request(HISTORY_TRADES_PATH, params)

    def trades(self, body: str) -> list[TradeRef]:
        answer = orjson.loads(body)
        if type(answer) is not dict or answer.get("code") != "0":
            raise ValueError(f"okx history-trades answered {str(answer)[:200]}")
        return [TradeRef(int(trade["tradeId"]), int(trade["ts"])) for trade in answer["data"]]


class EndpointGroup(list[str]):
    """The instrument ids of one connection, with the endpoint path and channels that connection carries."""

    def __init__(self, inst_ids: Sequence[str], path: str, channels: Sequence[str]):
        super().__init__(inst_ids)
        self.path = path
        self.channels = tuple(channels)


class Okx(DataFeed):
    """OKX v5's public limits (https://www.okx.com/docs-v5/en/#overview-rate-limits).

    REST: per endpoint and IP; ``GET /api/v5/public/instruments`` 20 requests per 2 s (market data
    endpoints 20-40 per 2 s; ``history-trades`` 20 per 2 s): 20 per 2 s for all REST, one weight a request.  WebSocket (same docs, "WebSocket"): 3
    connection requests per second per IP; 480 subscribe/unsubscribe/login requests per hour per
    connection.  Channels per connection are not documented as a number.

    Delisting: ``{"op": "unsubscribe", "args": [{"channel": ..., "instId": ...}]}`` on each endpoint's
    connection that carries the instrument (https://www.okx.com/docs-v5/en/#overview-websocket-unsubscribe).
    """

    name = "okx"
    ws_url = f"wss://ws.okx.com:8443{PUBLIC_PATH}"
    rest_url = "https://www.okx.com"
    symbols_path = "/api/v5/public/instruments"
    channels = (BOOKS, TRADES, TICKERS, CANDLE_1M, FUNDING_RATE, OPEN_INTEREST)
    max_symbols_per_connection = SYMBOLS_PER_CONNECTION
    limits = Limits(
        rest=(Rate(20, 2.0),),
        weights=(EndpointWeight(HISTORY_TRADES_PATH, 1),),
        subscribes=Rate(480, 3600.0),
        connections=Rate(3, 1.0),
    )
    trade_history = OkxTrades()
    # OKX drops a connection that pushed nothing for 30 s unless the client pings.
    ping_interval_s = 25.0
    snapshot_on_connect = False

    def snapshot_polls(self, exchange_symbols: Sequence[str]) -> list[RestPoll]:
        """The REST book of each symbol whose ``books`` are streamed, keyed like them (fetched on resync only)."""
        if BOOKS not in self.active_channels:
            return []
        return [
            RestPoll(BOOK_SNAPSHOT_PATH, {"instId": inst_id, "sz": BOOK_SNAPSHOT_LEVELS},
                     raw_key(self.name, inst_id, BOOKS), 0.0)
            for inst_id in exchange_symbols
        ]

    def ping(self) -> str:
        return "ping"

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        """Normalised name -> instId, from one ``/api/v5/public/instruments?instType=...`` answer.

        Spot names come from ``baseCcy``/``quoteCcy``; swaps and futures from
        ``instFamily`` (``BTC-USD``: an inverse swap is ``BTC.USD-PERP``, settled
        in BTC) and, for futures, the UTC date of ``expTime``.  Instruments of
        other types, or whose assets do not fit the symbol grammar, are left out.
        """
        answer = orjson.loads(body)
        if answer.get("code") != "0":
            raise ValueError(f"okx instruments answered code {answer.get('code')!r}: {answer.get('msg')!r}")
        return dict(readable_products(cls.name, answer["data"], _listed))

    async def load_symbol_map(self) -> dict[str, str]:
        """One request per instrument type (OKX lists them separately)."""
        client = self.rest_client()
        try:
            symbol_map: dict[str, str] = {}
            for inst_type in KIND_OF_TYPE:
                body = await client.get_text(self.symbols_path, {"instType": inst_type})
                symbol_map.update(self.parse_symbols(body))
            return symbol_map
        finally:
            await client.close()

    def connection_groups(self, exchange_symbols: list[str]) -> list[list[str]]:
        """Public-endpoint groups first, then business (candles); each symbol only where a channel applies."""
        groups: list[list[str]] = []
        size = self.max_symbols_per_connection
        for path in (PUBLIC_PATH, BUSINESS_PATH):
            channels = [c for c in self.active_channels if endpoint_path(c) == path]
            inst_ids = [s for s in exchange_symbols if any(channel_applies(c, s) for c in channels)]
            groups += [EndpointGroup(inst_ids[i : i + size], path, channels) for i in range(0, len(inst_ids), size)]
        return groups

    async def connection_url(self, exchange_symbols: Sequence[str]) -> str:
        """The group's endpoint; a non-OKX URL (replay server, simulator) serves every channel as it is."""
        path = getattr(exchange_symbols, "path", PUBLIC_PATH)
        if self.ws_endpoint.endswith(PUBLIC_PATH):
            return self.ws_endpoint[: -len(PUBLIC_PATH)] + path
        return self.ws_endpoint

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        return self._requests("subscribe", exchange_symbols)

    def unsubscribe_messages(self, exchange_symbols: Sequence[str], connection_id: str = "") -> list[str]:
        return self._requests("unsubscribe", exchange_symbols)

    def _requests(self, op: str, exchange_symbols: Sequence[str]) -> list[str]:
        channels = getattr(exchange_symbols, "channels", self.active_channels)
        args = [
            {"channel": channel, "instId": inst_id}
            for inst_id in exchange_symbols
            for channel in channels
            if channel_applies(channel, inst_id)
        ]
        return [
            orjson.dumps({"op": op, "args": args[i : i + ARGS_PER_MESSAGE]}).decode()
            for i in range(0, len(args), ARGS_PER_MESSAGE)
        ]

    def frame_key(self, frame: bytes) -> str:
        if frame == PONG:
            return raw_key(self.name, None, PONG_FEED)
        try:
            message = orjson.loads(frame)
            arg = message.get("arg") or {}
            inst_id = arg.get("instId")
            feed = CONTROL if "event" in message else arg.get("channel")
        except (orjson.JSONDecodeError, AttributeError):
            return raw_key(self.name, None, UNPARSED)
        if not isinstance(feed, str) or not feed or "_" in feed:
            feed = UNPARSED
        return raw_key(self.name, inst_id if isinstance(inst_id, str) else None, feed)


def _listed(instrument: dict) -> tuple[str, str] | None:
    name = _normalised_name(instrument)
    return None if name is None else (name, instrument["instId"])


def _normalised_name(instrument: dict) -> str | None:
    kind = KIND_OF_TYPE.get(instrument.get("instType"))
    if kind is None:
        return None
    if kind is InstrumentType.SPOT:
        base, quote = instrument.get("baseCcy"), instrument.get("quoteCcy")
    else:
        base, _, quote = (instrument.get("instFamily") or instrument.get("uly") or "").partition("-")
    expiry = None
    if kind is InstrumentType.FUTURE:
        expiry_ms = instrument.get("expTime")
        if not expiry_ms:
            return None
        expiry = datetime.fromtimestamp(int(expiry_ms) // 1000, UTC).strftime(EXPIRY_FORMAT)
    if not base or not quote:
        return None
    try:
        return str(Symbol.parse(str(Symbol(base, quote, kind, expiry))))
    except SymbolError:
        return None
