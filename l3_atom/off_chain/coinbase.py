"""Coinbase Exchange: ``full`` (level 3) and ``ticker`` channels of the ws-feed.

The level-3 book starts from ``GET /products/{id}/book?level=3``, fetched
after every (re)connect and on every resync request, and archived under the
product's ``full`` key so it sits in order among the full channel's frames.

Trades missed while a connection was down come from ``GET /products/{id}/trades``
(:class:`CoinbaseTrades`): newest first, paged to older trades with the ``after``
cursor (https://docs.cdp.coinbase.com/exchange/docs/rest-pagination: ``CB-AFTER``
names the last, oldest, trade id of a page), archived under the product's ``full``
key, where its ``match`` messages are.

Coinbase now asks for an authenticated subscribe on ``full`` and ``level2``:
when ``COINBASE_API_KEY``, ``COINBASE_API_SECRET`` and
``COINBASE_API_PASSPHRASE`` are set (keys/.env), the subscribe is signed as
Coinbase documents (``GET /users/self/verify``); the simulator needs none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import orjson

from l3_atom.backfill import Request, TradeHistory, TradeRef
from l3_atom.data_source import DataFeed, RestPoll, readable_products
from l3_atom.limits import Limits, Rate
from l3_atom.tokens import Symbol
from l3_atom.topics import raw_key

FULL = "full"
TICKER = "ticker"
LEVEL2 = "level2"
HEARTBEAT = "heartbeat"
CONTROL = "control"
UNPARSED = "unparsed"

# Message type -> the feed (ordering group) it belongs to in the raw topic key.
FEED_OF_TYPE = {
    "received": FULL,
    "open": FULL,
    "done": FULL,
    "match": FULL,
    "last_match": FULL,
    "change": FULL,
    "activate": FULL,
    "ticker": TICKER,
    "snapshot": LEVEL2,
    "l2update": LEVEL2,
    "heartbeat": HEARTBEAT,
}
SIGNATURE_PATH = "/users/self/verify"
L3_BOOK = {"level": "3"}
CREDENTIAL_VARIABLES = ("COINBASE_API_KEY", "COINBASE_API_SECRET", "COINBASE_API_PASSPHRASE")
# Coinbase's largest page of trades (docs: limit, maximum 1000).
TRADES_PAGE_LIMIT = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


class CoinbaseTrades(TradeHistory):
    """``GET /products/{id}/trades``: newest first; ``after=<trade id>`` pages to older trades."""

    feed = FULL
    newest_first = True
    # A product's trade ids count up one by one (trade_id in match messages and in the REST history).
    sequential_ids = True

    def request(self, exchange_symbol: str, since_ms: int, cursor: int | None) -> Request:
        params = {"limit": str(TRADES_PAGE_LIMIT)}
        if cursor is not None:
            params["after"] = str(cursor)
        return Request(f"/products/{exchange_symbol}/trades", params)

    def trades(self, body: str) -> list[TradeRef]:
        page = orjson.loads(body)
        if not isinstance(page, list):
            raise TypeError(f"expected a list of trades, got {type(page).__name__}")
        return [TradeRef(int(t["trade_id"]), (datetime.fromisoformat(t["time"]) - EPOCH) // ONE_MS) for t in page]


class Coinbase(DataFeed):
    """Coinbase Exchange's public limits.

    REST: public endpoints are throttled by IP at 10 requests/s (bursts up to 15), a lazy-fill
    token bucket (https://docs.cdp.coinbase.com/exchange/rest-api/rate-limits): 10 per 1 s here.
    WebSocket (https://docs.cdp.coinbase.com/exchange/websocket-feed/rate-limits): 8 connection
    requests/s per IP (bursts 20); 100 messages/s sent by the client per IP (paced per IP here).
    Products or channels per connection: not documented (no limit declared).

    Delisting: ``{"type": "unsubscribe", "product_ids": [...], "channels": [...]}`` on the connection
    that carries the product (https://docs.cdp.coinbase.com/exchange/websocket-feed/overview,
    "Subscribe"/"Unsubscribe").
    """

    name = "coinbase"
    ws_url = "wss://ws-feed.exchange.coinbase.com"
    rest_url = "https://api.exchange.coinbase.com"
    symbols_path = "/products"
    channels = (FULL, TICKER)
    limits = Limits(
        rest=(Rate(10, 1.0),),
        subscribes=Rate(100, 1.0),
        subscribes_per_ip=True,
        connections=Rate(8, 1.0),
    )
    trade_history = CoinbaseTrades()

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        return dict(readable_products(cls.name, orjson.loads(body), _listed))

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        """One subscribe, or one per ``topics_per_message`` (products x channels) when a limit is set."""
        channels = list(self.active_channels)
        topics = self.limits.topics_per_message
        per_message = max(1, topics // len(channels)) if topics else max(1, len(exchange_symbols))
        messages = []
        for start in range(0, len(exchange_symbols), per_message):
            products = exchange_symbols[start : start + per_message]
            message = {"type": "subscribe", "product_ids": list(products), "channels": channels}
            message.update(signed_fields(os.environ))
            messages.append(orjson.dumps(message).decode())
        return messages

    def unsubscribe_messages(self, exchange_symbols: Sequence[str], connection_id: str = "") -> list[str]:
        message = {"type": "unsubscribe", "product_ids": list(exchange_symbols), "channels": list(self.active_channels)}
        return [orjson.dumps(message).decode()]

    def snapshot_polls(self, exchange_symbols: Sequence[str]) -> list[RestPoll]:
        """The level-3 REST book of each product, for the full channel."""
        if FULL not in self.active_channels:
            return []
        return [RestPoll(f"/products/{p}/book", L3_BOOK, raw_key(self.name, p, FULL), 0.0) for p in exchange_symbols]

    def frame_key(self, frame: bytes) -> str:
        try:
            message = orjson.loads(frame)
            product = message.get("product_id")
            feed = FEED_OF_TYPE.get(message.get("type"), CONTROL)
        except (orjson.JSONDecodeError, AttributeError, TypeError):  # not JSON, not an object, unhashable type
            return raw_key(self.name, None, UNPARSED)
        return raw_key(self.name, product if isinstance(product, str) else None, feed)


def signed_fields(env: dict[str, str] | os._Environ, timestamp: float | None = None) -> dict[str, str]:
    """Coinbase's subscribe signature fields, or nothing when no credentials are configured."""
    key, secret, passphrase = (env.get(name, "") for name in CREDENTIAL_VARIABLES)
    if not (key and secret and passphrase):
        return {}
    stamp = str(timestamp if timestamp is not None else time.time())
    digest = hmac.new(base64.b64decode(secret), f"{stamp}GET{SIGNATURE_PATH}".encode(), hashlib.sha256).digest()
    return {"signature": base64.b64encode(digest).decode(), "key": key, "passphrase": passphrase, "timestamp": stamp}


def _listed(product: dict) -> tuple[str, str] | None:
    """(normalised name, product id) of one product; None for products without both currencies."""
    if not product.get("base_currency") or not product.get("quote_currency"):
        return None
    return str(Symbol(product["base_currency"], product["quote_currency"])), product["id"]
