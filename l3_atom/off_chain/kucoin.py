"""KuCoin spot: level2 increments, matches, ticker and 1-minute candles from the public websocket.

There is no fixed websocket URL: every (re)connect asks
``POST /api/v1/bullet-public`` for a fresh token and the server to use
(``connection_url``).  When the websocket URL is given explicitly
(``--ws-url``: the replay server, a simulator), the connector connects there
directly, without the token handshake.

KuCoin drops a connection whose client has sent nothing for about
``pingInterval`` + ``pingTimeout``, however much data flows in: every
connection sends ``{"id": ..., "type": "ping"}`` every ``ping_interval_s``
(the ``DataFeed.ping`` hook).

``/market/level2`` sends increments only: the book snapshot is
``GET /api/v1/market/orderbook/level2_100`` (public, the best 100 levels a
side), fetched after every connect and on every resync (``snapshot_polls``)
and archived under the key of the symbol's level2 frames, so that snapshot
and increments share a partition and stay in order.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import NamedTuple
from urllib.parse import urlencode

import aiohttp
import orjson

from l3_atom.data_source import DataFeed, RestPoll, readable_products
from l3_atom.feed import REST_TIMEOUT_S
from l3_atom.limits import EndpointWeight, Limits, Rate
from l3_atom.tokens import Symbol, SymbolError
from l3_atom.topics import raw_key

LEVEL2, MATCH, TICKER_CHANNEL, CANDLES = "level2", "match", "ticker", "candles"


def split_topic(topic: str) -> tuple[str, str, str]:
    """``/market/candles:BTC-USDT_1min`` -> ``("candles", "BTC-USDT", "1min")``; no interval elsewhere (``""``)."""
    path, _, symbol = topic.partition(":")
    channel = path.rpartition("/")[2]
    interval = ""
    if channel == CANDLES:
        symbol, _, interval = symbol.rpartition("_")
    return channel, symbol, interval


TOKEN_PATH = "/api/v1/bullet-public"
BOOK_SNAPSHOT_PATH = "/api/v1/market/orderbook/level2_100"
# Book snapshots are fetched on (re)connect and resync, not on a timer.
SNAPSHOT_POLL_INTERVAL_S = 0.0
CODE_OK = "200000"
MESSAGE = "message"
CONTROL = "control"
UNPARSED = "unparsed"

TOPIC_OF_CHANNEL = {
    LEVEL2: "/market/level2",
    MATCH: "/market/match",
    TICKER_CHANNEL: "/market/ticker",
    CANDLES: "/market/candles",
}
CANDLE_TYPE = "1min"
# KuCoin's websocket limits: 100 topics per subscribe message, 400 topics per spot connection.
TOPICS_PER_MESSAGE = 100
TOPICS_PER_CONNECTION = 400
# The documented pingInterval (18000 ms), until a token answer says otherwise.
DEFAULT_PING_INTERVAL_S = 18.0
MS_PER_S = 1000.0
LOG = logging.getLogger(__name__)


class Bullet(NamedTuple):
    """What ``bullet-public`` answers: where to connect, with which token, how often to ping."""

    endpoint: str
    token: str
    ping_interval_s: float


class Kucoin(DataFeed):
    """KuCoin's public limits.

    REST (https://www.kucoin.com/docs-new/rate-limit): the Public resource pool holds 2,000 weight per
    30 s (429, code 429000, past it; wait the time the answer's header names).  ``bullet-public``
    weighs 10 and ``market/orderbook/level2_100`` 4 (their endpoint pages).  WebSocket: 100 client
    messages per 10 s per connection and at most 100 topics per subscribe, as client libraries quote
    KuCoin's WebSocket docs (not checked against the page here); topics per connection are quoted as
    300 and as 400: 300 is declared.  Connections per window are not documented: 30 per minute.

    Delisting: ``{"id": ..., "type": "unsubscribe", "topic": "/market/match:SYM,...", "privateChannel":
    false, "response": true}`` (https://www.kucoin.com/docs/websocket/basic-info/unsubscribe/introduction).
    """

    name = "kucoin"
    # The documented endpoint; connections use the one each token answer names.
    ws_url = "wss://ws-api-spot.kucoin.com/"
    rest_url = "https://api.kucoin.com"
    symbols_path = "/api/v2/symbols"
    channels = (LEVEL2, MATCH, TICKER_CHANNEL, CANDLES)
    limits = Limits(
        rest=(Rate(2000, 30.0),),
        weights=(EndpointWeight(TOKEN_PATH, 10), EndpointWeight(BOOK_SNAPSHOT_PATH, 4)),
        subscribes=Rate(100, 10.0),
        streams_per_connection=TOPICS_PER_CONNECTION,
        topics_per_message=100,
        connections=Rate(30, 60.0),
    )

    # bullet-public's pingInterval, which has been 18 s; each token answer restates it.
    ping_interval_s = DEFAULT_PING_INTERVAL_S

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        """Normalised name (``baseCurrency.quoteCurrency``) -> ``symbol`` (KuCoin's code, kept when renamed)."""
        answer = orjson.loads(body)
        if answer.get("code") != CODE_OK:
            raise ValueError(f"kucoin symbols answered code {answer.get('code')!r}: {answer.get('msg')!r}")
        return dict(readable_products(cls.name, answer["data"], _listed))

    @staticmethod
    def parse_token(body: str) -> Bullet:
        """The first instance server of a ``bullet-public`` answer; anything else is a failed handshake."""
        try:
            answer = orjson.loads(body)
            if answer["code"] != CODE_OK:
                raise ConnectionError(f"kucoin bullet-public answered code {answer['code']!r}: {answer.get('msg')!r}")
            server = answer["data"]["instanceServers"][0]
            return Bullet(server["endpoint"], answer["data"]["token"], server["pingInterval"] / MS_PER_S)
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            raise ConnectionError(f"kucoin bullet-public answer unreadable ({exc!r}): {body[:200]!r}") from None

    async def connection_url(self, exchange_symbols: Sequence[str]) -> str:
        """A fresh token on every (re)connect; an explicitly given websocket URL is used as it is."""
        if self.ws_endpoint != self.ws_url:
            return self.ws_endpoint
        bullet = await self.fetch_token()
        if bullet.ping_interval_s != self.ping_interval_s:
            LOG.warning("kucoin asks for a ping every %.0f s; pinging every %.0f s", bullet.ping_interval_s,
                        self.ping_interval_s)
        query = urlencode({"token": bullet.token, "connectId": uuid.uuid4().hex})
        return f"{bullet.endpoint}?{query}"

    async def fetch_token(self) -> Bullet:
        """``POST bullet-public``; failures are ``ConnectionError``s, so the connection retries with backoff."""
        url = f"{self.rest_endpoint.rstrip('/')}{TOKEN_PATH}"
        try:
            timeout = aiohttp.ClientTimeout(total=REST_TIMEOUT_S)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.post(url) as response:
                body = await response.text()
                status = response.status
        except aiohttp.ClientError as exc:
            raise ConnectionError(f"POST {url} failed: {exc}") from exc
        if status != 200:
            raise ConnectionError(f"POST {url} answered {status}: {body[:200]}")
        return self.parse_token(body)

    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        """One subscribe per channel and 100 symbols (KuCoin joins symbols of one topic with commas)."""
        return self._requests("subscribe", exchange_symbols)

    def unsubscribe_messages(self, exchange_symbols: Sequence[str], connection_id: str = "") -> list[str]:
        return self._requests("unsubscribe", exchange_symbols)

    def _requests(self, kind: str, exchange_symbols: Sequence[str]) -> list[str]:
        messages: list[str] = []
        for channel in self.active_channels:
            suffix = f"_{CANDLE_TYPE}" if channel == CANDLES else ""
            names = [f"{symbol}{suffix}" for symbol in exchange_symbols]
            for i in range(0, len(names), TOPICS_PER_MESSAGE):
                topic = f"{TOPIC_OF_CHANNEL[channel]}:{','.join(names[i : i + TOPICS_PER_MESSAGE])}"
                message = {
                    "id": str(len(messages) + 1),
                    "type": kind,
                    "topic": topic,
                    "privateChannel": False,
                    "response": True,
                }
                messages.append(orjson.dumps(message).decode())
        return messages

    def snapshot_polls(self, exchange_symbols: Sequence[str]) -> list[RestPoll]:
        """The REST book snapshot of each symbol whose level2 increments are streamed, keyed like them."""
        if LEVEL2 not in self.active_channels:
            return []
        return [
            RestPoll(BOOK_SNAPSHOT_PATH, {"symbol": symbol}, raw_key(self.name, symbol, LEVEL2),
                     SNAPSHOT_POLL_INTERVAL_S)
            for symbol in exchange_symbols
        ]

    def ping(self) -> str:
        """KuCoin drops a client that does not ping every ``pingInterval`` (18 s), however much data flows."""
        return orjson.dumps({"id": str(time.time_ns()), "type": "ping"}).decode()

    def frame_key(self, frame: bytes) -> str:
        try:
            message = orjson.loads(frame)
            kind = message.get("type")
            topic = message.get("topic")
        except (orjson.JSONDecodeError, AttributeError):
            return raw_key(self.name, None, UNPARSED)
        if kind != MESSAGE or not isinstance(topic, str):
            return raw_key(self.name, None, CONTROL if isinstance(kind, str) else UNPARSED)
        channel, symbol, _ = split_topic(topic)
        if not channel or "_" in channel:
            channel = UNPARSED
        return raw_key(self.name, symbol or None, channel)


def _listed(market: dict) -> tuple[str, str] | None:
    """(normalised name, symbol) of one market; None where an asset falls outside the grammar."""
    try:
        name = str(Symbol.parse(str(Symbol(market["baseCurrency"], market["quoteCurrency"]))))
    except SymbolError:
        return None
    return name, market["symbol"]
