"""Kraken futures: feeds ``book``, ``trade`` and ``ticker`` of ``wss://futures.kraken.com/ws/v1``.

Product ids spell the contract: a kind prefix (``PF``/``PI`` perpetual, ``FF``/``FI``
dated future, ``OF`` option; the second letter is the margining: flexible
multi-collateral or inverse), the pair (Kraken asset codes, ``XBT`` for bitcoin),
then the expiry ``YYMMDD`` and, for options, strike and C/P::

    PF_XBTUSD                -> BTC.USD-PERP
    FF_XBTUSD_250926         -> BTC.USD-20250926
    OF_ETHUSD_240101_1000_C  -> ETH.USD-20240101-1000-C

Where an inverse and a flexible contract share a name (``PI_XBTUSD`` and
``PF_XBTUSD``), the symbol map keeps the flexible one, Kraken's current contract.
All products share one connection, with the heartbeat feed so that a quiet
market is not taken for a dead connection (the connection's protocol pings,
every 20 s in ``feed.py``, keep it alive, as Kraken asks every 60 s).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import orjson

from l3_atom.data_source import DataFeed, readable_products
from l3_atom.limits import Limits, Rate
from l3_atom.off_chain.kraken import NAME_CACHE_SIZE, normalise_asset
from l3_atom.tokens import Symbol, SymbolError
from l3_atom.topics import raw_key

BOOK = "book"
TRADE = "trade"
TICKER = "ticker"
# Kraken's lighter ticker (best bid and ask, no sizes, no time): archived and standardised beside ``ticker``.
TICKER_LITE = "ticker_lite"
HEARTBEAT = "heartbeat"
CONTROL = "control"
UNPARSED = "unparsed"
# Feed of a message -> raw-key feed (snapshots travel with their updates, in order).
FEED_OF_MESSAGE = {
    "book_snapshot": BOOK,
    "book": BOOK,
    "trade_snapshot": TRADE,
    "trade": TRADE,
    "ticker": TICKER,
    TICKER_LITE: TICKER,
    "heartbeat": HEARTBEAT,
}
# Kind letter of a product id; the second letter (F flexible, I inverse, V vanilla) does not change the name.
PERPETUAL, FUTURE, OPTION = "P", "F", "O"
# Prefer flexible (multi-collateral) contracts when two products share a normalised name.
FLEXIBLE = "F"
MARGINING = 1
QUOTES = ("USDT", "USDC", "USD", "EUR", "GBP")
PRODUCT = re.compile(
    rf"^(?P<kind>[{PERPETUAL}{FUTURE}{OPTION}])[A-Z]_(?P<base>[A-Z0-9]+?)(?P<quote>{'|'.join(QUOTES)})"
    r"(?:_(?P<expiry>\d{6}))?(?:_(?P<strike>\d+(?:\.\d+)?)_(?P<right>[CP]))?$"
)
CENTURY = "20"


@lru_cache(maxsize=NAME_CACHE_SIZE)
def normalised_product(product_id: str, base: str | None = None, quote: str | None = None) -> str:
    """The normalised name of a product id; ``base``/``quote`` (REST asset codes) override the id's split.

    ``ValueError`` for ids that are not contracts (indices such as ``in_xbtusd``) or whose parts do not fit.
    """
    match = PRODUCT.match(product_id)
    if match is None:
        raise ValueError(f"Kraken futures product id must look like PF_XBTUSD or FF_XBTUSD_250926, got {product_id!r}")
    kind, expiry, strike = match["kind"], match["expiry"], match["strike"]
    name = f"{normalise_asset(base or match['base'])}.{normalise_asset(quote or match['quote'])}"
    if kind == PERPETUAL and expiry is None:
        name += "-PERP"
    elif kind == FUTURE and expiry is not None and strike is None:
        name += f"-{CENTURY}{expiry}"
    elif kind == OPTION and strike is not None:
        name += f"-{CENTURY}{expiry}-{strike}-{match['right']}"
    else:
        raise ValueError(f"Kraken futures product id {product_id!r} mixes its kind and expiry")
    return str(Symbol.parse(name))


HEARTBEAT_SUBSCRIBE = {"event": "subscribe", "feed": HEARTBEAT}


class KrakenFutures(DataFeed):
    """Kraken Futures' public limits (https://docs.kraken.com/exchange/guides/futures/ratelimits).

    REST: "public endpoints do not have a cost and therefore do not count against any rate limiting
    budget"; since none is documented, the private ``/derivatives`` budget (500 per 10 s) is declared
    at weight 1 per request.  WebSocket: 100 requests/s per connection.  Connections per window and
    subscriptions per connection are not documented: 10 connections/s is declared.

    Delisting: ``{"event": "unsubscribe", "feed": ..., "product_ids": [...]}`` per feed
    (https://docs.kraken.com/api/docs/futures-api/websocket/book: "subscribe or unsubscribe"; the same
    on each feed's page).  The heartbeat feed is not per product and stays.
    """

    name = "kraken-futures"
    ws_url = "wss://futures.kraken.com/ws/v1"
    rest_url = "https://futures.kraken.com"
    symbols_path = "/derivatives/api/v3/instruments"
    channels = (BOOK, TRADE, TICKER)
    limits = Limits(
        rest=(Rate(500, 10.0),),
        subscribes=Rate(100, 1.0),
        connections=Rate(10, 1.0),
    )

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        """Normalised name -> product id, for tradeable contracts (indices and expired ones are left out)."""
        answer = orjson.loads(body)
        if answer.get("result") != "success":
            raise ValueError(f"Kraken futures instruments answered {answer.get('result')!r}: {answer.get('error')}")
        symbol_map: dict[str, str] = {}
        for name, product in readable_products(cls.name, answer["instruments"], _listed):
            held = symbol_map.get(name)
            if held is None or (product[MARGINING] == FLEXIBLE and held[MARGINING] != FLEXIBLE):
                symbol_map[name] = product
        return symbol_map

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        return [*self._requests("subscribe", exchange_symbols), orjson.dumps(HEARTBEAT_SUBSCRIBE).decode()]

    def unsubscribe_messages(self, exchange_symbols: Sequence[str], connection_id: str = "") -> list[str]:
        return self._requests("unsubscribe", exchange_symbols)

    def _requests(self, event: str, exchange_symbols: Sequence[str]) -> list[str]:
        return [
            orjson.dumps({"event": event, "feed": feed, "product_ids": list(exchange_symbols)}).decode()
            for feed in self.active_channels
        ]

    def frame_key(self, frame: bytes) -> str:
        try:
            message = orjson.loads(frame)
            if "event" in message:
                return raw_key(self.name, None, CONTROL)
            product = message.get("product_id")
            feed = FEED_OF_MESSAGE.get(message.get("feed"), CONTROL)
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            return raw_key(self.name, None, UNPARSED)
        return raw_key(self.name, product if isinstance(product, str) else None, feed)


def _listed(instrument: dict) -> tuple[str, str] | None:
    """(normalised name, product id) of a tradeable contract; None for indices and expired contracts."""
    product = instrument["symbol"].upper()
    if not instrument.get("tradeable") or instrument.get("isExpired"):
        return None
    try:
        return normalised_product(product, instrument.get("base"), instrument.get("quote")), product
    except (ValueError, SymbolError):
        return None
