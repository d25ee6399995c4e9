"""The REST trade histories the replay server serves, built from the trades a recording streamed.

Recordings hold no trade-history bodies, so a connector that backfills after an outage
(:mod:`l3_atom.backfill`) would find nothing to fetch.  For each venue whose connector
declares a ``TradeHistory``, a :class:`VenueHistory` here knows three things: the path of
the venue's history endpoint, how its streamed frames name a trade, and how the venue
answers a page (its documented shape, order and paging).  A trade keeps the id, price, size,
side and time it was streamed with; prices and sizes sent as JSON numbers keep their digits.

Time parameters (``startTime``, ``start``, ``start_timestamp``, ...) from about when the
replay began on are read on the replay's own clock: the recording replayed as if it began
when the first client connected (a connector asks for "since my last frame", in today's time).
Earlier times (the recording's own, as cursors a connector took from a page) are used as
they are.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

# Maps a time parameter (ms) to the recording's time.
ToRecorded = Callable[[int], int]
EPOCH_MS = 1000


@dataclass(frozen=True)
class Trade:
    """One streamed trade: the symbol as the history's request names it, its id, time (ms) and history entry."""

    symbol: str
    trade_id: int
    time_ms: int
    entry: Any


def exact_json(value: Any) -> str:
    """JSON of ``value`` with every ``Decimal`` written with its own digits (the stdlib writes floats only)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(key)}:{exact_json(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(exact_json(item) for item in value) + "]"
    return json.dumps(value)


def parse_exact(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def _number(params: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    return default if value is None or not value.lstrip("-").isdigit() else int(value)


def _page_size(params: Mapping[str, str], name: str, default: int, largest: int) -> int:
    return max(1, min(_number(params, name, default) or default, largest))


class VenueHistory(ABC):
    """One venue's trade-history endpoint, answered from the recorded trades."""

    # The path of the endpoint, as a pattern (a ``symbol`` group where the path names the symbol).
    path: ClassVar[re.Pattern[str]]
    # The query parameter naming the symbol, where the path does not.
    symbol_param: ClassVar[str] = ""

    def asks_for(self, path: str, params: Mapping[str, str]) -> str | None:
        """The symbol a request of this venue's history asks for; None when it is another request."""
        found = self.path.match(path)
        if found is None:
            return None
        return found.groupdict().get("symbol") or params.get(self.symbol_param)

    @abstractmethod
    def trades(self, texts: list[str | None]) -> Iterator[tuple[int, Trade]]:
        """(frame index, trade) of every trade among one connection's text frames (None: a binary frame)."""

    @abstractmethod
    def answer(self, trades: list[Trade], params: Mapping[str, str], to_recorded: ToRecorded) -> str:
        """The body of one page, from the symbol's trades made so far (ascending ids)."""


def _json_frames(texts: list[str | None], marker: str) -> Iterator[tuple[int, Any]]:
    """Parsed frames that contain ``marker`` (a cheap test before parsing)."""
    for index, text in enumerate(texts):
        if text is not None and marker in text:
            yield index, parse_exact(text)


def _newest_first(trades: list[Trade], params: Mapping[str, str], size: int, older: str, newer: str) -> list[Trade]:
    """Id-cursored, newest first: ids below ``older``'s value, or above ``newer``'s, ``size`` of them."""
    after, before = _number(params, older), _number(params, newer)
    if after is not None:
        chosen = [t for t in trades if t.trade_id < after][-size:]
    elif before is not None:
        chosen = [t for t in trades if t.trade_id > before][:size]
    else:
        chosen = trades[-size:]
    return chosen[::-1]


def _in_time(trades: list[Trade], start: int | None, end: int | None) -> list[Trade]:
    return [t for t in trades if (start is None or t.time_ms >= start) and (end is None or t.time_ms <= end)]


class CoinbaseHistory(VenueHistory):
    """``GET /products/{id}/trades``: newest first, ``after``/``before`` trade-id cursors, ``limit`` up to 1000."""

    path = re.compile(r"^/products/(?P<symbol>[^/]+)/trades$")
    LIMIT = 1000

    def trades(self, texts: list[str | None]) -> Iterator[tuple[int, Trade]]:
        for index, message in _json_frames(texts, "match"):
            if type(message) is dict and message.get("type") in ("match", "last_match"):
                entry = {key: message[key] for key in ("time", "trade_id", "price", "size", "side")}
                moment = datetime.fromisoformat(message["time"])
                yield index, Trade(message["product_id"], int(message["trade_id"]),
                                   int(moment.timestamp() * EPOCH_MS), entry)

    def answer(self, trades: list[Trade], params: Mapping[str, str], to_recorded: ToRecorded) -> str:
        page = _newest_first(trades, params, _page_size(params, "limit", self.LIMIT, self.LIMIT), "after", "before")
        return exact_json([t.entry for t in page])


class BinanceFuturesHistory(VenueHistory):
    """``GET /fapi/v1/aggTrades``: oldest first from ``fromId``, or within ``startTime``..``endTime``; up to 1000."""

    path = re.compile(r"^/fapi/v1/aggTrades$")
    symbol_param = "symbol"
    DEFAULT, LIMIT = 500, 1000

    def trades(self, texts: list[str | None]) -> Iterator[tuple[int, Trade]]:
        for index, message in _json_frames(texts, '"aggTrade"'):
            data = message.get("data") if type(message) is dict else None
            if type(data) is dict and data.get("e") == "aggTrade":
                entry = {key: data[key] for key in ("a", "p", "q", "f", "l", "T", "m")}
                yield index, Trade(data["s"], int(data["a"]), int(data["T"]), entry)

    def answer(self, trades: list[Trade], params: Mapping[str, str], to_recorded: ToRecorded) -> str:
        size = _page_size(params, "limit", self.DEFAULT, self.LIMIT)
        from_id = _number(params, "fromId")
        start, end = _number(params, "startTime"), _number(params, "endTime")
        if from_id is not None:
            chosen = [t for t in trades if t.trade_id >= from_id][:size]
        elif start is not None or end is not None:
            chosen = _in_time(trades, start and to_recorded(start), end and to_recorded(end))[:size]
        else:
            chosen = trades[-size:]
        return exact_json([t.entry for t in chosen])


class OkxHistory(VenueHistory):
    """``GET /api/v5/market/history-trades``: newest first, ``after``/``before`` tradeId cursors, up to 100."""

    path = re.compile(r"^/api/v5/market/history-trades$")
    symbol_param = "instId"
    LIMIT = 100

    def trades(self, texts: list[str | None]) -> Iterator[tuple[int, Trade]]:
        for index, message in _json_frames(texts, '"trades"'):
            arg = message.get("arg") if type(message) is dict else None
            if type(arg) is dict and arg.get("channel") == "trades":
                for trade in message.get("data") or []:
                    entry = {key: trade[key] for key in ("instId", "side", "sz", "px", "tradeId", "ts")}
                    yield index, Trade(trade["instId"], int(trade["tradeId"]), int(trade["ts"]), entry)

    def answer(self, trades: list[Trade], params: Mapping[str, str], to_recorded: ToRecorded) -> str:
        page = _newest_first(trades, params, _page_size(params, "limit", self.LIMIT, self.LIMIT), "after", "before")
        return exact_json({"code": "0", "msg": "", "data": [t.entry for t in page]})


class BitfinexHistory(VenueHistory):
    """``GET /v2/trades/{symbol}/hist``: ``[ID, MTS, AMOUNT, PRICE]`` within ``start``..``end``, ``sort`` 1 or -1.

    Data frames carry a channel id: the connection's ``subscribed`` events name its symbol.
    """

    path = re.compile(r"^/v2/trades/(?P<symbol>[^/]+)/hist$")
    DEFAULT, LIMIT = 125, 10_000
    EXECUTION = "te"

    def trades(self, texts: list[str | None]) -> Iterator[tuple[int, Trade]]:
        channels: dict[int, str] = {}
        for index, text in enumerate(texts):
            if text is None:
                continue
            message = parse_exact(text)
            if type(message) is dict:
                if message.get("event") == "subscribed" and message.get("channel") == "trades":
                    channels[message["chanId"]] = message["symbol"]
                continue
            symbol = channels.get(message[0]) if type(message) is list and message else None
            if symbol is None or len(message) < 2:
                continue
            if type(message[1]) is list and (not message[1] or type(message[1][0]) is list):
                entries = message[1]
            elif message[1] == self.EXECUTION:
                entries = [message[2]]
            else:
                continue  # tu repeats a te; heartbeats
            for entry in entries:
                yield index, Trade(symbol, int(entry[0]), int(entry[1]), entry[:4])

    def answer(self, trades: list[Trade], params: Mapping[str, str], to_recorded: ToRecorded) -> str:
        size = _page_size(params, "limit", self.DEFAULT, self.LIMIT)
        start, end = _number(params, "start"), _number(params, "end")
        chosen = sorted(_in_time(trades, start and to_recorded(start), end and to_recorded(end)),
                        key=lambda t: (t.time_ms, t.trade_id))
        chosen = chosen[:size] if params.get("sort") == "1" else chosen[::-1][:size]
        return exact_json([t.entry for t in chosen])


class DeribitHistory(VenueHistory):
    """``public/get_last_trades_by_instrument_and_time`` over REST: by time, ``count`` up to 1000, ``sorting``."""

    path = re.compile(r"^/api/v2/public/get_last_trades_by_instrument_and_time$")
    symbol_param = "instrument_name"
    DEFAULT, LIMIT = 10, 1000

    def trades(self, texts: list[str | None]) -> Iterator[tuple[int, Trade]]:
        for index, message in _json_frames(texts, '"trades.'):
            params = message.get("params") if type(message) is dict else None
            if type(params) is dict and str(params.get("channel", "")).startswith("trades."):
                for trade in params.get("data") or []:
                    yield index, Trade(trade["instrument_name"], int(trade["trade_seq"]), int(trade["timestamp"]),
                                       trade)

    def answer(self, trades: list[Trade], params: Mapping[str, str], to_recorded: ToRecorded) -> str:
        size = _page_size(params, "count", self.DEFAULT, self.LIMIT)
        start, end = _number(params, "start_timestamp"), _number(params, "end_timestamp")
        chosen = _in_time(trades, start and to_recorded(start), end and to_recorded(end))
        if params.get("sorting") != "asc":
            chosen = chosen[::-1]
        result = {"trades": [t.entry for t in chosen[:size]], "has_more": len(chosen) > size}
        return exact_json({"jsonrpc": "2.0", "result": result})


VENUE_HISTORIES: tuple[VenueHistory, ...] = (
    CoinbaseHistory(), BinanceFuturesHistory(), OkxHistory(), BitfinexHistory(), DeribitHistory(),
)
