"""Deribit JSON-RPC websocket (API v2): books, trades, tickers (with funding and open interest), 1m candles.

Deribit serves its ``raw`` (unaggregated) channels to authorised connections only: with
``DERIBIT_CLIENT_ID`` and ``DERIBIT_CLIENT_SECRET`` set (keys/.env), each connection authenticates
(``public/auth``, client credentials) and subscribes ``book|trades|ticker.{instrument}.raw``; without them
it subscribes the public ``100ms`` channels, which have the same messages.  Heartbeats are switched on
(``public/set_heartbeat``) and Deribit's ``test_request`` is answered with ``public/test``.  Instruments
come from ``public/get_instruments`` per currency.  A ``book`` channel's first message after subscribing is a
full snapshot: a book resync is a reconnect of the symbol's connection (the ``DataFeed`` default).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import orjson

from l3_atom.data_source import DataFeed
from l3_atom.errors import UserError
from l3_atom.stream_processing.standardisers.deribit import (
    BOOK,
    CHART,
    TICKER_CHANNEL,
    TRADES_CHANNEL,
    channel_parts,
    normalise_instrument,
)
from l3_atom.topics import raw_key

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
TEST_REPLY = orjson.dumps({"jsonrpc": "2.0", "id": TEST_ID, "method": "public/test", "params": {}}).decode()
KNOWN_CHANNELS = (BOOK, TRADES_CHANNEL, TICKER_CHANNEL, CHART)


def rpc(request_id: int, method: str, params: dict) -> str:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).decode()


def channel_name(channel: str, instrument: str, interval: str) -> str:
    if channel == CHART:
        return f"chart.trades.{instrument}.{CANDLE_RESOLUTION}"
    if channel in (BOOK, TRADES_CHANNEL, TICKER_CHANNEL):
        return f"{channel}.{instrument}.{interval}"
    raise UserError(f"deribit has no channel {channel!r}; known: {', '.join(KNOWN_CHANNELS)}")


class Deribit(DataFeed):
    name = "deribit"
    ws_url = "wss://www.deribit.com/ws/api/v2"
    rest_url = "https://www.deribit.com"
    symbols_path = "/api/v2/public/get_instruments"
    # Currencies whose instruments are listed (Deribit's currency enum); one request each.
    currencies = ("BTC", "ETH", "USDC", "USDT", "EURR")
    channels = (BOOK, TRADES_CHANNEL, TICKER_CHANNEL, CHART)

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        """Normalised -> instrument name from a ``get_instruments`` body; combos have no normalised name."""
        symbol_map: dict[str, str] = {}
        for instrument in orjson.loads(body)["result"]:
            name = instrument["instrument_name"]
            try:
                symbol_map[normalise_instrument(name)] = name
            except ValueError:
                continue  # future_combo / option_combo (BTC-FS-27DEC24_PERP): no single instrument.
        return symbol_map

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


def subscribe_requests(
    instruments: Sequence[str], channels: Sequence[str], env: dict[str, str] | os._Environ
) -> list[str]:
    """Heartbeats on, auth when credentials are configured (raw channels), then the subscribes."""
    client_id, client_secret = (env.get(name, "") for name in CREDENTIAL_VARIABLES)
    messages = [rpc(HEARTBEAT_ID, "public/set_heartbeat", {"interval": HEARTBEAT_INTERVAL_S})]
    interval = PUBLIC_INTERVAL
    if client_id and client_secret:
        credentials = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
        messages.append(rpc(AUTH_ID, "public/auth", credentials))
        interval = RAW_INTERVAL
    names = [channel_name(channel, instrument, interval) for channel in channels for instrument in instruments]
    for offset in range(0, len(names), CHANNELS_PER_REQUEST):
        request_id = FIRST_SUBSCRIBE_ID + offset // CHANNELS_PER_REQUEST
        messages.append(rpc(request_id, "public/subscribe", {"channels": names[offset : offset + CHANNELS_PER_REQUEST]}))
    return messages
