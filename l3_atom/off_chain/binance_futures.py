"""Binance USD-M futures: perpetuals (``BTC.USDT-PERP``) and quarterly futures (``BTC.USDT-20250926``).

The protocol is Binance spot's (:mod:`l3_atom.off_chain.binance`), with three
differences.  Since 2026 ``fstream.binance.com`` routes streams by category:
book streams (``depth``, ``bookTicker``) are served under ``/public`` and the
others (``aggTrade``, ``kline``, ``markPrice``) under ``/market``, so each group
of symbols needs one connection per route; book snapshots (``GET /fapi/v1/depth``)
are fetched when a ``/public`` connection connects and on resync.  A connection
carries at most 200 streams.  Open interest has no stream: ``GET
/fapi/v1/openInterest`` is polled on a timer into the raw topic (feed ``openinterest``).
Trades missed in an outage come from ``GET /fapi/v1/aggTrades`` (``fromId`` paging,
:class:`~l3_atom.off_chain.binance.AggTradesHistory`), as the ``aggTrade`` stream's ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from l3_atom.data_source import RestPoll, readable_products
from l3_atom.limits import EndpointWeight, Limits, Rate
from l3_atom.off_chain.binance import AggTradesHistory, BinanceStreams, normalised_name, stream_kind
from l3_atom.topics import raw_key

OPEN_INTEREST = "openInterest"
OPEN_INTEREST_FEED = "openinterest"
OPEN_INTEREST_INTERVAL_S = 30.0
PUBLIC_ROUTE = "/public"
MARKET_ROUTE = "/market"
# Stream types served by the /public route; every other market stream is under /market.
PUBLIC_STREAMS = ("depth", "bookTicker")
PERPETUAL_TYPES = frozenset({"PERPETUAL", "TRADIFI_PERPETUAL"})
DATED_TYPES = frozenset({"CURRENT_QUARTER", "NEXT_QUARTER", "CURRENT_MONTH", "NEXT_MONTH"})
PERPETUAL_SUFFIX = "PERP"
MS_PER_S = 1000


def expiry(delivery_ms: int) -> str:
    """``YYYYMMDD`` (UTC) of a delivery time in ms."""
    return datetime.fromtimestamp(delivery_ms // MS_PER_S, tz=UTC).strftime("%Y%m%d")


class BinanceFutures(BinanceStreams):
    """Binance USDⓈ-M futures' public limits.

    REST (https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info): 2,400
    request weight per minute per IP (``exchangeInfo``'s ``REQUEST_WEIGHT``), reported in
    ``X-MBX-USED-WEIGHT-1M``; 429 then 418 bans as on spot.  ``GET /fapi/v1/depth`` weighs 2 / 5 / 10 /
    20 for limits 5-50 / 100 / 500 / 1000
    (https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Order-Book).
    WebSocket (https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams):
    10 incoming messages/s per connection, 1024 streams per connection.  Connections per window are not
    documented there: spot's 300 per 5 minutes is declared.
    """

    name = "binance-futures"
    ws_url = "wss://fstream.binance.com"
    rest_url = "https://fapi.binance.com"
    symbols_path = "/fapi/v1/exchangeInfo"
    depth_path = "/fapi/v1/depth"
    channels = ("depth@100ms", "aggTrade", "bookTicker", "kline_1m", "markPrice", OPEN_INTEREST)
    rest_channels = (OPEN_INTEREST,)
    limits = Limits(
        rest=(Rate(2400, 60.0),),
        weights=(EndpointWeight("/fapi/v1/depth", 2, "limit", ((50, 2), (100, 5), (500, 10), (1000, 20))),),
        used_weight_header="X-MBX-USED-WEIGHT-1M",
        subscribes=Rate(10, 1.0),
        # USD-M futures: 200 streams per connection (1,024 on spot).
        streams_per_connection=200,
        connections=Rate(300, 300.0),
    )
    trade_history = AggTradesHistory("/fapi/v1/aggTrades")

    @classmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        """Perpetuals and dated futures; other contract types (and pending listings without one) are left out."""
        return dict(readable_products(cls.name, orjson.loads(body)["symbols"], _listed))

    def route(self, channel: str) -> str:
        kind = stream_kind(channel)
        return PUBLIC_ROUTE if kind.startswith(PUBLIC_STREAMS) else MARKET_ROUTE

    def rest_polls(self, exchange_symbols: Sequence[str]) -> list[RestPoll]:
        """Open interest, on a timer (book snapshots are ``snapshot_polls``)."""
        if OPEN_INTEREST not in self.active_channels:
            return []
        return [
            RestPoll("/fapi/v1/openInterest", {"symbol": s}, raw_key(self.name, s, OPEN_INTEREST_FEED),
                     OPEN_INTEREST_INTERVAL_S)
            for s in exchange_symbols
        ]


def _listed(market: dict) -> tuple[str, str] | None:
    """(normalised name, exchange symbol) of one contract; None for other contract types or unnameable ones."""
    kind = market.get("contractType")
    if kind in PERPETUAL_TYPES:
        suffix = PERPETUAL_SUFFIX
    elif kind in DATED_TYPES:
        suffix = expiry(market["deliveryDate"])
    else:
        return None
    name = normalised_name(market["baseAsset"], market["quoteAsset"], suffix)
    return None if name is None else (name, market["symbol"])
