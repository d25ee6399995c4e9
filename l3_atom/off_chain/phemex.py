"""Phemex: order book, trades and 1-minute klines of spot, legacy contracts and USDT-margined perpetuals.

Every subscription is a JSON-RPC request for one symbol.  USDT-margined
perpetuals (``perpProductsV2`` in ``/public/products``) use the real-valued
channels ``orderbook_p``/``trade_p``/``kline_p``; spot (``sBTCUSDT``) and the
legacy contracts (``BTCUSD``) use ``orderbook``/``trade``/``kline`` with
scaled integers.  Phemex allows 20 subscriptions per connection, so a
connection carries 20 // channels symbols.

Scaled integers are turned into decimals by the standardiser, which cannot
read REST: it assumes Phemex's documented scales per product class.  The
connector reads the real scales of every requested product and refuses to
start when one differs (``ScaleMismatch``), instead of archiving frames the
processor would misread.

Phemex drops a connection that has not sent ``server.ping`` for 30 s: every
connection pings every 5 s, as Phemex recommends (``ping``); the pongs are
archived and skipped by the standardiser.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, NamedTuple

import orjson

from l3_atom.data_source import DataFeed, readable_products
from l3_atom.errors import UserError
from l3_atom.limits import Limits, Rate
from l3_atom.tokens import InstrumentType, Symbol, SymbolError
from l3_atom.topics import raw_key


class Scales(NamedTuple):
    """Decimal places of a scaled-integer product's numbers."""

    price: int
    # Sizes (book levels, trades, kline volume); 0 for contracts counted whole.
    size: int
    # Kline turnover in the quote asset; None where turnover is in another asset (coin-margined contracts).
    turnover: int | None


# Phemex's documented scales per product class (Public-Spot-API / Public-Contract-API, "scale factors").
SPOT_SCALES = Scales(price=8, size=8, turnover=8)
CONTRACT_SCALES = Scales(price=4, size=0, turnover=None)
# Spot symbols are the only ones with a lower-case "s" in front (sBTCUSDT).
SPOT_PREFIX = "s"
# Quote assets that end Phemex symbols, longest first, for names without a symbol list.
QUOTES = ("USDT", "USDC", "USD", "BTC", "ETH")


def default_scales(exchange_symbol: str) -> Scales:
    """The documented scales of a scaled-integer product, by its class (spot or legacy contract)."""
    return SPOT_SCALES if exchange_symbol.startswith(SPOT_PREFIX) else CONTRACT_SCALES


SOURCE = "phemex"
ORDERBOOK = "orderbook"
TRADE = "trade"
KLINE = "kline"
# Channels of USDT-margined perpetuals carry this suffix (orderbook_p).
REAL_VALUED_SUFFIX = "_p"
KLINE_INTERVAL_S = 60
# Phemex: at most 20 subscriptions per connection.
MAX_SUBSCRIPTIONS_PER_CONNECTION = 20

# Data key of a frame -> the feed (ordering group) of its raw-topic key.
FEED_OF_KEY = {
    "book": ORDERBOOK,
    "orderbook_p": ORDERBOOK,
    "trades": TRADE,
    "trades_p": TRADE,
    "kline": KLINE,
    "kline_p": KLINE,
}
CONTROL = "control"
PING = orjson.dumps({"id": 0, "method": "server.ping", "params": []}).decode()
UNPARSED = "unparsed"

LISTED = "Listed"
SPOT = "Spot"
LEGACY_PERPETUAL = "Perpetual"
# displaySymbol is "BTC / USD": the base where a product does not name it.
DISPLAY_SEPARATOR = " / "


class ScaleMismatch(UserError):
    """A requested product whose scales differ from the ones the standardiser assumes."""


class Product(NamedTuple):
    """One product of ``/public/products``."""

    symbol: str
    normalised: str
    # True for USDT-margined perpetuals (real-valued channels); their scales are None.
    real_valued: bool
    scales: Scales | None


def _value_scale(currency: dict) -> tuple[str, int]:
    return currency["currency"], currency["valueScale"]


def _base(product: dict) -> str:
    return product.get("baseCurrency") or product["displaySymbol"].split(DISPLAY_SEPARATOR)[0]


def _real_valued(item: dict) -> tuple[dict, Product]:
    """A USDT-margined perpetual of ``perpProductsV2``."""
    name = Symbol(_base(item), item["quoteCurrency"], InstrumentType.PERPETUAL)
    return item, Product(item["symbol"], str(name), True, None)


def _scaled(item: dict, value_scale: dict[str, int]) -> tuple[dict, Product] | None:
    """A spot product or legacy contract of ``products``; None for other types.

    ``priceScale`` is required: without it the standardiser's scale cannot be checked against the
    product's (Phemex's 2022 list had spot products without it), so such a product is skipped, counted.
    """
    kind = item.get("type")
    if kind == SPOT:
        base, quote = item["baseCurrency"], item["quoteCurrency"]
        scales = Scales(item["priceScale"], value_scale.get(base), value_scale.get(quote))
        return item, Product(item["symbol"], str(Symbol(base, quote)), False, scales)
    if kind == LEGACY_PERPETUAL:
        name = Symbol(_base(item), item["quoteCurrency"], InstrumentType.PERPETUAL)
        return item, Product(item["symbol"], str(name), False, Scales(item["priceScale"], 0, None))
    return None


def parse_products(body: str) -> list[Product]:
    """The listed products whose names fit the normalised grammar; USDT-margined perps win a name clash.

    A product (or currency) the parser cannot read is skipped and counted, never failing the list.
    """
    data = orjson.loads(body)["data"]
    value_scale = dict(readable_products(SOURCE, data.get("currencies", []), _value_scale))
    candidates = [
        *readable_products(SOURCE, data.get("perpProductsV2", []), _real_valued),
        *readable_products(SOURCE, data.get("products", []), lambda item: _scaled(item, value_scale)),
    ]
    products: dict[str, Product] = {}
    for item, product in candidates:
        if item.get("status") != LISTED or product.normalised in products:
            continue
        try:
            Symbol.parse(product.normalised)
        except SymbolError:
            continue
        products[product.normalised] = product
    return list(products.values())


def check_scales(products: Sequence[Product], requested: Sequence[str]) -> None:
    """Refuse requested scaled-integer products whose REST scales are not the standardiser's defaults."""
    wrong = [
        f"{p.normalised} ({p.symbol}: {p.scales}, assumed {default_scales(p.symbol)})"
        for p in products
        if p.normalised in requested and not p.real_valued and p.scales != default_scales(p.symbol)
    ]
    if wrong:
        raise ScaleMismatch(f"phemex: the standardiser would misread {'; '.join(wrong)}")


class Phemex(DataFeed):
    """Phemex's public limits (https://github.com/phemex/phemex-api-docs/blob/master/Generic-API-Info.en.md).

    REST: 5,000 requests per 5 minutes per IP (blocked 5 minutes past it); market data is in the
    "Others" group, 100 requests per minute: both are declared.  WebSocket: at most 5 concurrent
    connections per user and 20 subscriptions per connection.  Subscribe messages per second and new
    connections per window are not documented: 5 per second each is declared.

    Delisting: Phemex documents no per-symbol unsubscribe: ``orderbook.unsubscribe``,
    ``trade.unsubscribe`` and ``kline.unsubscribe`` take no symbol and end that channel for every
    symbol of the connection (https://github.com/phemex/phemex-api-docs/blob/master/Public-Contract-API-en.md,
    "Unsubscribe orderBook").  A delisted symbol therefore leaves its connection at the next reconnect
    (its frames meanwhile keep their key and the book stays closed); a connection left with no symbol
    is closed at once.
    """

    name = SOURCE
    ws_url = "wss://ws.phemex.com"
    rest_url = "https://api.phemex.com"
    symbols_path = "/public/products"
    channels = (ORDERBOOK, TRADE, KLINE)
    limits = Limits(
        rest=(Rate(100, 60.0), Rate(5000, 300.0)),
        subscribes=Rate(5, 1.0),
        streams_per_connection=MAX_SUBSCRIPTIONS_PER_CONNECTION,
        connections=Rate(5, 1.0),
    )
    ping_interval_s: ClassVar[float] = 5.0
    # Exchange symbols of USDT-margined perpetuals; set when the products are loaded.
    real_valued: frozenset[str] = frozenset()

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        return {p.normalised: p.symbol for p in parse_products(body)}

    async def load_symbol_map(self) -> dict[str, str]:
        """As ``DataFeed``'s, and also learn which products use real-valued channels and check scales."""
        client = self.rest_client()
        try:
            body = await client.get_text(self.symbols_path)
        finally:
            await client.close()
        return self.learn_products(body)

    def learn_products(self, body: str) -> dict[str, str]:
        """The symbol map; a requested product whose scales differ is refused, and with ``--all-symbols``
        such products are left out (the standardiser would misread them)."""
        products = parse_products(body)
        if self.every is not None:
            products = [p for p in products if p.real_valued or p.scales == default_scales(p.symbol)]
        check_scales(products, self.requested)
        self.real_valued = frozenset(p.symbol for p in products if p.real_valued)
        return {p.normalised: p.symbol for p in products}

    def ping(self) -> str:
        return PING

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        messages = []
        for symbol in exchange_symbols:
            suffix = REAL_VALUED_SUFFIX if symbol in self.real_valued else ""
            for channel in self.active_channels:
                params: list[str | int] = [symbol, KLINE_INTERVAL_S] if channel == KLINE else [symbol]
                request = {"id": len(messages) + 1, "method": f"{channel}{suffix}.subscribe", "params": params}
                messages.append(orjson.dumps(request).decode())
        return messages

    def frame_key(self, frame: bytes) -> str:
        try:
            message = orjson.loads(frame)
            feed = next((feed for key, feed in FEED_OF_KEY.items() if key in message), CONTROL)
            symbol = message.get("symbol")
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            return raw_key(self.name, None, UNPARSED)
        return raw_key(self.name, symbol if isinstance(symbol, str) else None, feed)
