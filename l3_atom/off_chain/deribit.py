"""Deribit JSON-RPC websocket (API v2): books, trades, tickers (with funding and open interest), 1m candles.

Deribit serves its ``raw`` (unaggregated) channels to authorised connections only: with
``DERIBIT_CLIENT_ID`` and ``DERIBIT_CLIENT_SECRET`` set (keys/.env), each connection authenticates
(``public/auth``, client credentials) and subscribes ``book|trades|ticker.{instrument}.raw``; without them
it subscribes the public ``100ms`` channels, which have the same messages.  Heartbeats are switched on
(``public/set_heartbeat``) and Deribit's ``test_request`` is answered with ``public/test``.  Instruments
come from ``public/get_instruments`` per currency.  A ``book`` channel's first message after subscribing is a
full snapshot: a book resync is a reconnect of the symbol's connection (the ``DataFeed`` default).

Trades missed while a connection was down come from ``public/get_last_trades_by_instrument_and_time``
over REST (:class:`DeribitTrades`;
https://docs.deribit.com/api-reference/market-data/public-get_last_trades_by_instrument_and_time):
``start_timestamp``/``end_timestamp`` (ms), ``count`` up to 1000, ``sorting=asc``; paged by time,
each page from the last one's last millisecond.  A trade's ``trade_seq`` numbers the instrument's
trades one by one (the streamed trades carry it too): it is the id paging, dedup and gap reports
use.  Archived under the instrument's ``trades`` key.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from datetime import date
from typing import Any

import orjson

from l3_atom.backfill import Request, TradeHistory, TradeRef
from l3_atom.data_source import DataFeed, readable_products
from l3_atom.errors import UserError
from l3_atom.limits import EndpointWeight, Limits, Rate
from l3_atom.tokens import InstrumentType, Symbol
from l3_atom.topics import raw_key

# Channel kinds (the first part of a channel name); also the feeds of raw keys.
BOOK = "book"
TRADES_CHANNEL = "trades"
TICKER_CHANNEL = "ticker"
CHART = "chart"
CHANNEL_SEPARATOR = "."

# Instrument names: BTC-PERPETUAL, BTC-27DEC24, BTC-27DEC24-100000-C, BTC_USDC-PERPETUAL, BTC_USDC (spot).
NAME_SEPARATOR = "-"
PAIR_SEPARATOR = "_"
PERPETUAL = "PERPETUAL"
# Inverse instruments are named after their base coin alone; their counter currency is USD.
INVERSE_QUOTE = "USD"
EXPIRY = re.compile(r"^(?P<day>\d{1,2})(?P<month>[A-Z]{3})(?P<year>\d{2})$")
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
MONTHS = {name: number for number, name in enumerate(MONTH_NAMES, start=1)}
CENTURY = 2000
# Strikes write their decimal point as "d": XRP_USDC-30JUN23-0d625-C.
STRIKE = re.compile(r"^\d+(d\d+)?$")
STRIKE_DECIMAL_POINT = "d"
OPTION_TYPES = ("C", "P")


def expiry_date(code: str) -> str:
    """``27DEC24`` -> ``20241227``."""
    match = EXPIRY.match(code)
    if not match or match["month"] not in MONTHS:
        raise ValueError(f"{code!r} is not a Deribit expiry such as 27DEC24")
    expiry = date(CENTURY + int(match["year"]), MONTHS[match["month"]], int(match["day"]))
    return expiry.strftime("%Y%m%d")


def normalise_instrument(name: Any) -> str:
    """A Deribit instrument name -> the normalised symbol (combos have no normalised name: ValueError)."""
    if type(name) is not str:
        raise TypeError(f"expected a Deribit instrument name, got {name!r}")
    pair, *rest = name.split(NAME_SEPARATOR)
    base, _, quote = pair.partition(PAIR_SEPARATOR)
    if not rest:
        if not quote:
            raise ValueError(f"{name!r} is not a Deribit instrument name")
        symbol = Symbol(base, quote)
    elif rest == [PERPETUAL]:
        symbol = Symbol(base, quote or INVERSE_QUOTE, InstrumentType.PERPETUAL)
    elif len(rest) == 1:
        symbol = Symbol(base, quote or INVERSE_QUOTE, InstrumentType.FUTURE, expiry_date(rest[0]))
    elif len(rest) == 3 and STRIKE.match(rest[1]) and rest[2] in OPTION_TYPES:
        strike = rest[1].replace(STRIKE_DECIMAL_POINT, ".")
        symbol = Symbol(base, quote or INVERSE_QUOTE, InstrumentType.OPTION, expiry_date(rest[0]), strike, rest[2])
    else:
        raise ValueError(f"{name!r} is not a Deribit spot, future, perpetual or option name")
    return str(Symbol.parse(str(symbol)))


def channel_parts(channel: Any) -> tuple[str, str, str]:
    """(kind, instrument, interval or resolution) of a subscription channel."""
    if type(channel) is not str:
        raise TypeError(f"expected a channel name, got {channel!r}")
    parts = channel.split(CHANNEL_SEPARATOR)
    if parts[0] == CHART and len(parts) == 4:
        return CHART, parts[2], parts[3]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise ValueError(f"unexpected channel {channel!r}")


LOG = logging.getLogger(__name__)

CONTROL = "control"
UNPARSED = "unparsed"
RAW_INTERVAL = "raw"
PUBLIC_INTERVAL = "100ms"
CANDLE_RESOLUTION = "1"
HEARTBEAT_INTERVAL_S = 30
# Channels per public/subscribe request (a long list is split into several requests).
CHANNELS_PER_REQUEST = 100
CREDENTIAL_VARIABLES = ("DERIBIT_CLIENT_ID", "DERIBIT_CLIENT_SECRET")
# JSON-RPC ids of this connector's requests: heartbeat setup, auth, test replies, then subscribes.
HEARTBEAT_ID, AUTH_ID, TEST_ID, FIRST_SUBSCRIBE_ID = range(1, 5)
# Unsubscribes (delistings) answer under this id, far above any subscribe's.
UNSUBSCRIBE_ID = 1 << 30
TEST_REPLY = orjson.dumps({"jsonrpc": "2.0", "id": TEST_ID, "method": "public/test", "params": {}}).decode()
KNOWN_CHANNELS = (BOOK, TRADES_CHANNEL, TICKER_CHANNEL, CHART)
TRADES_BY_TIME_PATH = "/api/v2/public/get_last_trades_by_instrument_and_time"
TRADES_PAGE_COUNT = 1000
# end_timestamp is required: a backfill asks for at most this long after its start (an outage is shorter).
BACKFILL_SPAN_MS = 30 * 86_400_000


def rpc(request_id: int, method: str, params: dict) -> str:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).decode()


def channel_name(channel: str, instrument: str, interval: str) -> str:
    if channel == CHART:
        return f"chart.trades.{instrument}.{CANDLE_RESOLUTION}"
    if channel in (BOOK, TRADES_CHANNEL, TICKER_CHANNEL):
        return f"{channel}.{instrument}.{interval}"
    raise UserError(f"deribit has no channel {channel!r}; known: {', '.join(KNOWN_CHANNELS)}")


class DeribitTrades(TradeHistory):
    """``get_last_trades_by_instrument_and_time``, oldest first (``sorting=asc``), paged by time; ids are ``trade_seq``.

    An answer is JSON-RPC: ``{"jsonrpc": "2.0", "result": {"trades": [...], "has_more": ...}}``; an
    ``error`` answer is not a page.
    """

    feed = TRADES_CHANNEL
    newest_first = False
    cursor_is_time = True
    sequential_ids = True
    page_size = TRADES_PAGE_COUNT

    def request(self, exchange_symbol: str, since_ms: int, cursor: int | None) -> Request:
        return Request(TRADES_BY_TIME_PATH, {
            "instrument_name": exchange_symbol, "start_timestamp": str(since_ms if cursor is None else cursor),
            "end_timestamp": str(since_ms + BACKFILL_SPAN_MS), "count": str(TRADES_PAGE_COUNT), "sorting": "asc",
        })

    def trades(self, body: str) -> list[TradeRef]:
        trades = orjson.loads(body)["result"]["trades"]
        return [TradeRef(int(trade["trade_seq"]), int(trade["timestamp"])) for trade in trades]


class Deribit(DataFeed):
    """Deribit's public limits (https://docs.deribit.com/articles/rate-limits).

    A credit system: non-matching-engine requests cost 500 credits from a pool of 50,000 refilled at
    10,000 per second (20 requests/s sustained): 20 per 1 s here, one weight a request (a page of the
    trade history too).  Subscribe requests cost 3,000
    credits from a pool of 30,000 (about 3.3/s): 3 per 1 s here.  Connections per window and channels
    per connection are not documented there: 10 connections/s is declared.

    Delisting: ``public/unsubscribe`` with the instrument's channel names
    (https://docs.deribit.com/api-reference/subscription-management/public-unsubscribe).
    """

    name = "deribit"
    ws_url = "wss://www.deribit.com/ws/api/v2"
    rest_url = "https://www.deribit.com"
    symbols_path = "/api/v2/public/get_instruments"
    # Currencies whose instruments are listed (Deribit's currency enum); one request each.
    currencies = ("BTC", "ETH", "USDC", "USDT", "EURR")
    channels = (BOOK, TRADES_CHANNEL, TICKER_CHANNEL, CHART)
    limits = Limits(
        rest=(Rate(20, 1.0),),
        weights=(EndpointWeight(TRADES_BY_TIME_PATH, 1),),
        subscribes=Rate(3, 1.0),
        connections=Rate(10, 1.0),
    )
    trade_history = DeribitTrades()

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        """Normalised -> instrument name from a ``get_instruments`` body; combos have no normalised name."""
        return dict(readable_products(cls.name, orjson.loads(body)["result"], _listed))

    async def load_symbol_map(self) -> dict[str, str]:
        """All currencies' instruments; a currency Deribit does not answer for is logged and left out."""
        client = self.rest_client()
        symbol_map: dict[str, str] = {}
        failure: Exception | None = None
        try:
            for currency in self.currencies:
                try:
                    body = await client.get_text(self.symbols_path, {"currency": currency, "expired": "false"})
                except (ConnectionError, OSError, TimeoutError) as exc:
                    LOG.warning("%s: no instruments for %s: %s", self.name, currency, exc)
                    failure = exc
                    continue
                symbol_map.update(self.parse_symbols(body))
        finally:
            await client.close()
        if not symbol_map and failure is not None:
            raise failure
        return symbol_map

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        return subscribe_requests(exchange_symbols, self.active_channels, os.environ)

    def unsubscribe_messages(self, exchange_symbols: Sequence[str], connection_id: str = "") -> list[str]:
        names = channel_names(exchange_symbols, self.active_channels, _interval(os.environ))
        return [rpc(UNSUBSCRIBE_ID, "public/unsubscribe", {"channels": names})]

    def frame_key(self, frame: bytes) -> str:
        try:
            message = orjson.loads(frame)
            if message.get("method") != "subscription":
                return raw_key(self.name, None, CONTROL)
            kind, instrument, interval = channel_parts(message["params"]["channel"])
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            return raw_key(self.name, None, UNPARSED)
        feed = f"{CHART}{interval}" if kind == CHART else kind
        return raw_key(self.name, instrument, feed.replace("_", ""))

    def reply(self, frame: bytes) -> str | None:
        """Deribit closes a connection whose ``test_request`` heartbeat is not answered with ``public/test``."""
        if b"test_request" not in frame:
            return None
        try:
            message = orjson.loads(frame)
            is_test = message["method"] == "heartbeat" and message["params"]["type"] == "test_request"
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        return TEST_REPLY if is_test else None


def _interval(env: dict[str, str] | os._Environ) -> str:
    """The channels' interval: ``raw`` once authenticated (credentials configured), else the public one."""
    configured = all(env.get(name, "") for name in CREDENTIAL_VARIABLES)
    return RAW_INTERVAL if configured else PUBLIC_INTERVAL


def channel_names(instruments: Sequence[str], channels: Sequence[str], interval: str) -> list[str]:
    return [channel_name(channel, instrument, interval) for channel in channels for instrument in instruments]


def subscribe_requests(
    instruments: Sequence[str], channels: Sequence[str], env: dict[str, str] | os._Environ
) -> list[str]:
    """Heartbeats on, auth when credentials are configured (raw channels), then the subscribes."""
    client_id, client_secret = (env.get(name, "") for name in CREDENTIAL_VARIABLES)
    messages = [rpc(HEARTBEAT_ID, "public/set_heartbeat", {"interval": HEARTBEAT_INTERVAL_S})]
    if client_id and client_secret:
        credentials = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
        messages.append(rpc(AUTH_ID, "public/auth", credentials))
    names = channel_names(instruments, channels, _interval(env))
    for offset in range(0, len(names), CHANNELS_PER_REQUEST):
        request_id = FIRST_SUBSCRIBE_ID + offset // CHANNELS_PER_REQUEST
        messages.append(rpc(request_id, "public/subscribe", {"channels": names[offset : offset + CHANNELS_PER_REQUEST]}))
    return messages


def _listed(instrument: dict) -> tuple[str, str] | None:
    """(normalised name, instrument name); None for future_combo / option_combo (BTC-FS-27DEC24_PERP)."""
    name = instrument["instrument_name"]
    try:
        return normalise_instrument(name), name
    except ValueError:
        return None
