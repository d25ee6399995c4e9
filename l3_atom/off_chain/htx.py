"""HTX (formerly Huobi) spot: 150-level MBP book, trades, best bid/offer and 1-minute klines.

Every frame HTX sends is gzip-compressed JSON.  The server pings (``{"ping": n}``)
and drops a client that does not answer ``{"pong": n}``; :meth:`Htx.reply`
answers.

``market.$symbol.mbp.150`` is incremental (``seqNum``/``prevSeqNum``) and HTX
serves it, with its ``req`` refresh, on ``/feed``; every other channel is on
``/ws``.  The refresh must be requested on the connection that subscribed, after
subscribing: :meth:`Htx.reply` sends the ``req`` when HTX acknowledges the
subscription, so it follows every (re)subscribe.  A custom endpoint (simulator,
replay server) carries every channel on one connection.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import orjson

from l3_atom.data_source import DataFeed, readable_products
from l3_atom.limits import Limits, Rate
from l3_atom.tokens import Symbol
from l3_atom.topics import raw_key

LOB = "mbp.150"
TRADES = "trade.detail"
TICKER = "bbo"
CANDLE = "kline.1min"

WS_PATH = "/ws"
FEED_PATH = "/feed"
# Channels (by their first word) that HTX serves on /feed only.
FEED_CHANNEL_KIND = "mbp"
# market.<symbol>.mbp.<levels>: the incremental MBP topic, whose refresh is requested after the subscribe.
INCREMENTAL_TOPIC_PARTS = 4
TOPIC_SYMBOL, TOPIC_KIND = 1, 2

# Raw-topic feeds, by the first word of a channel (``market.<symbol>.<word>...``).
FEED_OF_CHANNEL = {"depth": "depth", "mbp": "mbp", "trade": "trade", "bbo": "bbo", "kline": "kline"}
HEARTBEAT = "heartbeat"
CONTROL = "control"
UNPARSED = "unparsed"

# zlib's window-bits value that reads (only) the gzip container.
GZIP_WBITS = 16 + zlib.MAX_WBITS
# A gzipped ping or subscription ack is under 100 bytes; larger frames are data and need no reply.
CONTROL_FRAME_MAX_BYTES = 256
_ASSET = re.compile(r"[a-z0-9]+")


def gunzip(frame: bytes) -> bytes:
    """The JSON text of an HTX frame; ``zlib.error`` when it is not gzip."""
    return zlib.decompress(frame, GZIP_WBITS)


def is_incremental(topic: str) -> bool:
    """``market.btcusdt.mbp.150`` (not ``mbp.refresh.20``): a book whose snapshot is requested."""
    parts = topic.split(".")
    return len(parts) == INCREMENTAL_TOPIC_PARTS and parts[TOPIC_KIND] == FEED_CHANNEL_KIND


class ConnectionGroup(list[str]):
    """The exchange symbols of one connection, with the endpoint path and the channels it carries."""

    def __init__(self, symbols: Sequence[str], path: str, channels: tuple[str, ...]):
        super().__init__(symbols)
        self.path = path
        self.channels = channels


class Htx(DataFeed):
    """HTX's public limits (https://huobiapi.github.io/docs/spot/v1/en/, "Rate Limiting Rule").

    REST: market-data interfaces 800 requests/s per IP, other public interfaces (reference data such
    as ``/v1/common/symbols``) 120 per 3 s: the stricter one is declared for all REST.  WebSocket
    subscribe rates, connections and topics per connection are not documented as numbers: 5
    messages/s and 10 connections/s are declared.

    Delisting: ``{"unsub": topic, "id": id}`` per topic of the symbol
    (https://huobiapi.github.io/docs/spot/v1/en/, "Websocket Market Data": "Unsubscribe").
    """

    name = "htx"
    ws_url = "wss://api.huobi.pro/ws"
    rest_url = "https://api.huobi.pro"
    # The recorded (and still served) symbol list; /v2/settings/common/symbols is its successor.
    symbols_path = "/v1/common/symbols"
    channels = (LOB, TRADES, TICKER, CANDLE)
    limits = Limits(
        rest=(Rate(120, 3.0),),
        subscribes=Rate(5, 1.0),
        connections=Rate(10, 1.0),
    )

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        """``{"status": "ok", "data": [{"base-currency": "btc", "quote-currency": "usdt", "symbol": "btcusdt"}]}``."""
        answer = orjson.loads(body)
        if answer.get("status") != "ok":
            raise ValueError(f"HTX symbols endpoint answered {answer.get('status')!r}: {answer.get('err-msg')!r}")
        return dict(readable_products(cls.name, answer["data"], _listed))

    def _on_htx_hosts(self) -> bool:
        return self.ws_endpoint.endswith(WS_PATH)

    def connection_groups(self, exchange_symbols: list[str]) -> list[list[str]]:
        """MBP channels on ``/feed``, the others on ``/ws`` (HTX's hosts); everything together elsewhere."""
        if self._on_htx_hosts():
            on_feed = tuple(c for c in self.active_channels if c.split(".")[0] == FEED_CHANNEL_KIND)
            on_ws = tuple(c for c in self.active_channels if c not in on_feed)
            routes = [(WS_PATH, on_ws), (FEED_PATH, on_feed)]
        else:
            routes = [("", self.active_channels)]
        chunks = super().connection_groups(exchange_symbols)
        return [ConnectionGroup(chunk, path, channels) for path, channels in routes if channels for chunk in chunks]

    async def connection_url(self, exchange_symbols: Sequence[str]) -> str:
        path = getattr(exchange_symbols, "path", "")
        if path and self._on_htx_hosts():
            return self.ws_endpoint[: -len(WS_PATH)] + path
        return self.ws_endpoint

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        return self._requests("sub", exchange_symbols)

    def unsubscribe_messages(self, exchange_symbols: Sequence[str], connection_id: str = "") -> list[str]:
        return self._requests("unsub", exchange_symbols)

    def _requests(self, verb: str, exchange_symbols: Sequence[str]) -> list[str]:
        channels = getattr(exchange_symbols, "channels", self.active_channels)
        topics = [f"market.{symbol}.{channel}" for channel in channels for symbol in exchange_symbols]
        return [orjson.dumps({verb: topic, "id": str(n)}).decode() for n, topic in enumerate(topics, 1)]

    def frame_key(self, frame: bytes) -> str:
        try:
            message = orjson.loads(gunzip(frame))
        except (zlib.error, orjson.JSONDecodeError):
            return raw_key(self.name, None, UNPARSED)
        if not isinstance(message, dict):
            return raw_key(self.name, None, UNPARSED)
        topic = message.get("ch") or message.get("rep")
        if isinstance(topic, str):
            parts = topic.split(".", TOPIC_KIND + 1)
            if len(parts) > TOPIC_KIND and parts[0] == "market":
                return raw_key(self.name, parts[TOPIC_SYMBOL] or None, FEED_OF_CHANNEL.get(parts[TOPIC_KIND], CONTROL))
        return raw_key(self.name, None, HEARTBEAT if "ping" in message else CONTROL)

    def reply(self, frame: bytes) -> str | None:
        """``{"pong": n}`` for ``{"ping": n}``; the refresh ``req`` for an MBP subscription ack.

        Data frames are told apart by size before anything is gunzipped.
        """
        if len(frame) > CONTROL_FRAME_MAX_BYTES:
            return None
        try:
            message = orjson.loads(gunzip(frame))
        except (zlib.error, orjson.JSONDecodeError):
            return None
        if not isinstance(message, dict):
            return None
        ping = message.get("ping")
        if ping is not None:
            return orjson.dumps({"pong": ping}).decode()
        topic = message.get("subbed")
        if isinstance(topic, str) and is_incremental(topic):
            return orjson.dumps({"req": topic, "id": topic}).decode()
        return None


def _listed(entry: dict) -> tuple[str, str] | None:
    """(normalised name, symbol) of one pair; None where an asset falls outside the grammar."""
    base, quote = entry["base-currency"], entry["quote-currency"]
    if not _ASSET.fullmatch(base) or not _ASSET.fullmatch(quote):
        return None
    return str(Symbol(base.upper(), quote.upper())), entry["symbol"]
