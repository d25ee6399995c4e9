"""Bybit v5 public streams: spot (``BTC.USDT``), linear perpetuals (``BTC.USDT-PERP``) and futures.

Each category has its own endpoint (``/v5/public/spot``, ``/v5/public/linear``),
so symbols are grouped by category, then so that one connection's topics stay
under Bybit's 21,000 characters of ``args``; a subscribe request carries at most
10 topics.  Bybit drops clients that do not send ``{"op":"ping"}`` about every
20 s (the ``ping`` hook).

Spot and linear share symbol names (``BTCUSDT`` is both), and only the
connection tells them apart: exchange symbols here are category-qualified
(``spot/BTCUSDT``, ``linear/BTCUSDT``), and frames are keyed by the category of
the connection they came on.  Spot ``tickers`` carry no best bid/offer, so the
spot ticker comes from the level-1 book (``orderbook.1``); linear ``tickers`` also
give funding and open interest.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from l3_atom.data_source import DataFeed, readable_products
from l3_atom.limits import Limits, Rate
from l3_atom.tokens import Symbol, SymbolError
from l3_atom.topics import raw_key

SPOT = "spot"
LINEAR = "linear"
CATEGORIES = (SPOT, LINEAR)
# Category-qualified exchange symbol: "<category>/<symbol>".
CATEGORY_SEPARATOR = "/"
# Topic prefixes per category; the symbol is appended ("orderbook.50.BTCUSDT").
CHANNELS = {
    SPOT: ("orderbook.50", "orderbook.1", "publicTrade", "kline.1"),
    LINEAR: ("orderbook.50", "publicTrade", "tickers", "kline.1"),
}
PING = '{"op":"ping"}'
# Bybit: at most 10 topics per subscribe request, and 21,000 characters of args per connection.
TOPICS_PER_REQUEST = 10
ARGS_CHARS_PER_CONNECTION = 21_000
# A topic in the args array costs its length plus two quotes and a comma.
ARG_OVERHEAD_CHARS = 3
# Linear lists more than 500 instruments: ask for the largest page and follow the cursor.
PAGE_PARAMS = {LINEAR: {"limit": "1000"}}
PERPETUAL = "LinearPerpetual"
FUTURES = "LinearFutures"
PERPETUAL_SUFFIX = "PERP"
CONTROL = "control"
UNPARSED = "unparsed"
MS_PER_S = 1000


def qualified(category: str, symbol: str) -> str:
    return f"{category}{CATEGORY_SEPARATOR}{symbol}"


def category_of(exchange_symbol: str) -> str:
    return exchange_symbol.partition(CATEGORY_SEPARATOR)[0]


def bare(exchange_symbol: str) -> str:
    return exchange_symbol.partition(CATEGORY_SEPARATOR)[2]


def feed_of_topic(prefix: str) -> str:
    """``orderbook.50`` -> ``orderbook50``, ``publicTrade`` -> ``publictrade``: raw-key feeds have no ``_``."""
    return prefix.replace(".", "").replace("_", "").lower() or CONTROL


def _listed(category: str, instrument: dict) -> tuple[str, str] | None:
    """(normalised name, category-qualified symbol) of one instrument; None where it has no name."""
    name = _normalised_name(category, instrument)
    return None if name is None else (name, qualified(category, instrument["symbol"]))


def _normalised_name(category: str, instrument: dict) -> str | None:
    """``BASE.QUOTE`` for spot, ``-PERP`` or ``-YYYYMMDD`` (delivery date, UTC) for linear; None otherwise."""
    if category == SPOT:
        suffix = ""
    elif instrument.get("contractType") == PERPETUAL:
        suffix = f"-{PERPETUAL_SUFFIX}"
    elif instrument.get("contractType") == FUTURES:
        delivery = datetime.fromtimestamp(int(instrument["deliveryTime"]) // MS_PER_S, tz=UTC)
        suffix = f"-{delivery:%Y%m%d}"
    else:
        return None
    try:
        return str(Symbol.parse(f"{instrument['baseCoin']}.{instrument['quoteCoin']}{suffix}"))
    except SymbolError:
        return None


class Bybit(DataFeed):
    """Bybit v5's public limits (https://bybit-exchange.github.io/docs/v5/rate-limit).

    REST: 600 requests per 5-second window per IP; past it "403, access too frequent", and the IP
    must wait at least 10 minutes (a 600 s ban).  WebSocket: no more than 500 connections per 5
    minutes; 1,000 market-data connections per IP per market.  Subscribe messages per second and
    topics per connection are not documented there: 5 per second is declared.

    Delisting: ``{"op": "unsubscribe", "args": [topics]}``
    (https://bybit-exchange.github.io/docs/v5/ws/connect, "How to Subscribe to Topics").
    """

    name = "bybit"
    ws_url = "wss://stream.bybit.com"
    rest_url = "https://api.bybit.com"
    symbols_path = "/v5/market/instruments-info"
    # Every category's topics; a category subscribes those of CHANNELS[category] that are active.
    channels = tuple(dict.fromkeys(c for category in CATEGORIES for c in CHANNELS[category]))
    limits = Limits(
        rest=(Rate(600, 5.0),),
        subscribes=Rate(5, 1.0),
        connections=Rate(500, 300.0),
        ban_s=600.0,
    )

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)
        self._categories: list[str] = []
        self._category_of_connection: dict[str, str] = {}

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        """One instruments-info page: normalised name -> category-qualified symbol."""
        answer = orjson.loads(body)
        if answer.get("retCode") != 0:
            raise ValueError(f"bybit instruments-info answered retCode {answer.get('retCode')!r}: "
                             f"{answer.get('retMsg')!r}")
        category = answer["result"]["category"]
        return dict(readable_products(cls.name, answer["result"]["list"], lambda item: _listed(category, item)))

    async def load_symbol_map(self) -> dict[str, str]:
        """One listing per category, following ``nextPageCursor``."""
        client = self.rest_client()
        try:
            symbol_map: dict[str, str] = {}
            for category in CATEGORIES:
                params = {"category": category, **PAGE_PARAMS.get(category, {})}
                while True:
                    body = await client.get_text(self.symbols_path, params)
                    symbol_map.update(self.parse_symbols(body))
                    cursor = orjson.loads(body)["result"].get("nextPageCursor")
                    if not cursor:
                        break
                    params = {**params, "cursor": cursor}
            return symbol_map
        finally:
            await client.close()

    def topics(self, exchange_symbol: str) -> list[str]:
        category = category_of(exchange_symbol)
        return [f"{c}.{bare(exchange_symbol)}" for c in CHANNELS.get(category, ()) if c in self.active_channels]

    def connection_groups(self, exchange_symbols: list[str]) -> list[list[str]]:
        """Per category, as many symbols as fit in one connection's args; remembers each group's category."""
        groups: list[list[str]] = []
        for category in CATEGORIES:
            group: list[str] = []
            chars = 0
            for symbol in (s for s in exchange_symbols if category_of(s) == category and self.topics(s)):
                cost = sum(len(t) + ARG_OVERHEAD_CHARS for t in self.topics(symbol))
                if group and chars + cost > ARGS_CHARS_PER_CONNECTION:
                    groups.append(group)
                    group, chars = [], 0
                group.append(symbol)
                chars += cost
            if group:
                groups.append(group)
        self._categories = [category_of(g[0]) for g in groups]
        return groups

    async def connection_url(self, exchange_symbols: Sequence[str]) -> str:
        return f"{self.ws_endpoint.rstrip('/')}/v5/public/{category_of(exchange_symbols[0])}"

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        return self._requests("subscribe", exchange_symbols)

    def unsubscribe_messages(self, exchange_symbols: Sequence[str], connection_id: str = "") -> list[str]:
        return self._requests("unsubscribe", exchange_symbols)

    def _requests(self, op: str, exchange_symbols: Sequence[str]) -> list[str]:
        topics = [t for s in exchange_symbols for t in self.topics(s)]
        return [
            orjson.dumps({"op": op, "args": topics[i : i + TOPICS_PER_REQUEST]}).decode()
            for i in range(0, len(topics), TOPICS_PER_REQUEST)
        ]

    def ping(self) -> str:
        return PING

    def frame_key(self, frame: bytes, category: str | None = None) -> str:
        """The key of a frame from a ``category`` connection; without it the symbol stays unqualified."""
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return raw_key(self.name, None, UNPARSED)
        if type(message) is not dict:
            return raw_key(self.name, None, UNPARSED)
        topic = message.get("topic")
        if type(topic) is not str:
            return raw_key(self.name, None, CONTROL)
        prefix, _, symbol = topic.rpartition(".")
        if symbol and category:
            symbol = qualified(category, symbol)
        return raw_key(self.name, symbol or None, feed_of_topic(prefix))

    def key_of(self, frame: bytes, connection_id: str) -> str:
        """Key websocket frames by their connection's category (spot and linear share symbol names)."""
        return self.frame_key(frame, self._connection_category(connection_id))

    def _connection_category(self, connection_id: str) -> str | None:
        category = self._category_of_connection.get(connection_id)
        if category is None:
            for index, connection in enumerate(self.connections):
                if connection.connection_id == connection_id and index < len(self._categories):
                    category = self._category_of_connection[connection_id] = self._categories[index]
        return category
