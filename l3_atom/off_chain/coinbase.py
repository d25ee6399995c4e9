"""Coinbase Exchange: ``full`` (level 3) and ``ticker`` channels of the ws-feed.

The level-3 book starts from ``GET /products/{id}/book?level=3``, fetched
after every (re)connect and on every resync request, and archived under the
product's ``full`` key so it sits in order among the full channel's frames.

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

import orjson

from l3_atom.data_source import DataFeed, RestPoll, readable_products
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


class Coinbase(DataFeed):
    name = "coinbase"
    ws_url = "wss://ws-feed.exchange.coinbase.com"
    rest_url = "https://api.exchange.coinbase.com"
    symbols_path = "/products"
    channels = (FULL, TICKER)

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        return dict(readable_products(cls.name, orjson.loads(body), _listed))

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        message = {"type": "subscribe", "product_ids": list(exchange_symbols), "channels": list(self.active_channels)}
        message.update(signed_fields(os.environ))
        return [orjson.dumps(message).decode()]

    def unsubscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
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
