"""Bitstamp websocket v2: every order (``live_orders``), book changes (``diff_order_book``) and trades.

One subscribe frame per channel and pair (``live_orders_btcusd``).  Before
maintenance Bitstamp sends ``bts:request_reconnect`` and drops the connection
a few seconds later: :meth:`Bitstamp.reply` asks the connection to reconnect at
once, to a server that is staying up.  Bitstamp needs no client pings, but a
quiet pair can be silent for longer than the silence watchdog allows: the
connector sends Bitstamp's ``bts:heartbeat``, which the server answers.

Book snapshots come from REST (``snapshot_polls``), fetched after every
connect and on every resync and archived under the key of the channel they
start: ``GET /api/v2/order_book/{pair}/`` (levels) under the pair's
``diff_order_book`` frames, and the same with ``group=2`` (every order with
its id) under its ``live_orders`` frames.  They are the whole book: the
``group=2`` answer for btcusd has been reported at about 8,700 orders, roughly
400 kB, under ``max_frame_bytes`` (512 KiB by default); a larger one would be
dead-lettered, and the processor asks again every 10 s.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import orjson

from l3_atom.data_source import DataFeed, RestPoll, readable_products
from l3_atom.feed import RECONNECT
from l3_atom.limits import Limits, Rate
from l3_atom.tokens import InstrumentType, Symbol
from l3_atom.topics import raw_key

# Raw-topic feeds of the book channels (the connector keys frames and REST snapshots with them).
FEED_ORDERS = "orders"
FEED_BOOK = "book"


LIVE_ORDERS = "live_orders"
DIFF_ORDER_BOOK = "diff_order_book"
LIVE_TRADES = "live_trades"
# Channel kind -> raw-topic feed (feeds have no underscores).
FEED_OF_CHANNEL = {LIVE_ORDERS: FEED_ORDERS, DIFF_ORDER_BOOK: FEED_BOOK, LIVE_TRADES: "trades"}
ORDER_BOOK_PATH = "/api/v2/order_book/{pair}/"
# The REST book's parameters for each book channel: aggregated levels, or every order with its id.
SNAPSHOT_PARAMS = {DIFF_ORDER_BOOK: {}, LIVE_ORDERS: {"group": "2"}}
# Book snapshots are fetched on (re)connect and resync, not on a timer.
SNAPSHOT_POLL_INTERVAL_S = 0.0
HEARTBEAT_EVENT = "bts:heartbeat"
RECONNECT_EVENT = "bts:request_reconnect"
# Cheap test before parsing a frame in ``reply``: only frames containing this can ask for a reconnect.
RECONNECT_MARKER = RECONNECT_EVENT.encode()
HEARTBEAT = "heartbeat"
CONTROL = "control"
UNPARSED = "unparsed"
# trading-pairs-info names a pair "BTC/USD" (a perpetual "BTC/USD-PERP").
_PAIR_NAME = re.compile(r"^(?P<base>[A-Z0-9]+)/(?P<quote>[A-Z0-9]+)(?P<perp>-PERP)?$")


def split_channel(channel: str) -> tuple[str, str]:
    """``live_orders_btcusd`` -> ``("live_orders", "btcusd")`` (Bitstamp's pair names have no underscore)."""
    kind, _, pair = channel.rpartition("_")
    return kind, pair


class Bitstamp(DataFeed):
    """Bitstamp's public limits (https://www.bitstamp.net/api/, "Request limits").

    REST: 400 requests per second, and a default threshold of 10,000 requests per 10 minutes: both
    are declared.  WebSocket message rates, connections and channels per connection are not
    documented: 5 messages/s and 10 connections/s are declared.

    Delisting: ``{"event": "bts:unsubscribe", "data": {"channel": ...}}`` per channel of the pair
    (https://www.bitstamp.net/websocket/v2/, "Subscriptions").
    """

    name = "bitstamp"
    ws_url = "wss://ws.bitstamp.net"
    rest_url = "https://www.bitstamp.net"
    symbols_path = "/api/v2/trading-pairs-info/"
    channels = (LIVE_ORDERS, DIFF_ORDER_BOOK, LIVE_TRADES)
    limits = Limits(
        rest=(Rate(400, 1.0), Rate(10_000, 600.0)),
        subscribes=Rate(5, 1.0),
        connections=Rate(10, 1.0),
    )
    # Under the silence watchdog's 30 s; Bitstamp answers each heartbeat.
    ping_interval_s = 20.0

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        """``[{"name": "BTC/USD", "url_symbol": "btcusd", ...}]`` -> ``{"BTC.USD": "btcusd"}``."""
        return dict(readable_products(cls.name, orjson.loads(body), _listed))

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        return self._events("bts:subscribe", exchange_symbols)

    def unsubscribe_messages(self, exchange_symbols: Sequence[str], connection_id: str = "") -> list[str]:
        return self._events("bts:unsubscribe", exchange_symbols)

    def _events(self, event: str, pairs: Sequence[str]) -> list[str]:
        return [
            orjson.dumps({"event": event, "data": {"channel": f"{channel}_{pair}"}}).decode()
            for channel in self.active_channels
            for pair in pairs
        ]

    def snapshot_polls(self, exchange_symbols: Sequence[str]) -> list[RestPoll]:
        """The REST book of each streamed book channel and pair, keyed like the channel's frames."""
        return [
            RestPoll(ORDER_BOOK_PATH.format(pair=pair), dict(params), raw_key(self.name, pair, FEED_OF_CHANNEL[channel]),
                     SNAPSHOT_POLL_INTERVAL_S)
            for channel, params in SNAPSHOT_PARAMS.items()
            if channel in self.active_channels
            for pair in exchange_symbols
        ]

    def frame_key(self, frame: bytes) -> str:
        try:
            message = orjson.loads(frame)
            event = message.get("event")
            channel = message.get("channel")
        except (orjson.JSONDecodeError, AttributeError):
            return raw_key(self.name, None, UNPARSED)
        kind, pair = split_channel(channel) if isinstance(channel, str) else ("", "")
        if isinstance(event, str) and event.startswith("bts:"):
            feed = HEARTBEAT if event == HEARTBEAT_EVENT else CONTROL
        else:
            feed = FEED_OF_CHANNEL.get(kind, CONTROL)
        return raw_key(self.name, pair or None, feed)

    def reply(self, frame: bytes) -> bytes | None:
        """``RECONNECT`` for Bitstamp's ``bts:request_reconnect``; other frames are not parsed."""
        if RECONNECT_MARKER not in frame:
            return None
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return None
        return RECONNECT if isinstance(message, dict) and message.get("event") == RECONNECT_EVENT else None

    def ping(self) -> str:
        return orjson.dumps({"event": HEARTBEAT_EVENT}).decode()


def _listed(pair: dict) -> tuple[str, str] | None:
    """(normalised name, url symbol) of one trading pair; None for names that are not a pair."""
    match = _PAIR_NAME.match(pair["name"].upper())
    if match is None:
        return None
    kind = InstrumentType.PERPETUAL if match["perp"] else InstrumentType.SPOT
    return str(Symbol(match["base"], match["quote"], kind)), pair["url_symbol"]
