"""The book, candle and coverage query APIs in the one-process runtime.

The same pure parts as the distributed processor: ``BookStore`` (the books
and their answers) and ``CandleBuilder`` (computed candles from trades).  Here
one process holds every symbol, so no request needs routing; the routes are
the processor's (``/book``, ``/volume``, ``/orders``, ``/candles``, ``/coverage``).
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from l3_atom.coverage import CoverageLog
from l3_atom.stream_processing.book_agent import Answer, BookStore
from l3_atom.stream_processing.candle_agent import HISTORY_LENGTH, candle_json
from l3_atom.stream_processing.candles import CandleBuilder, Trade
from l3_atom.topics import COVERAGE, LOB, LOB_L3, TRADES, TRADES_L3

from . import LocalRecord

HTTP_OK, HTTP_BAD_REQUEST, HTTP_NOT_FOUND = 200, 400, 404
# The one process holds every partition; the book store still wants one.
ONLY_PARTITION = 0
MS_PER_S = 1000


class QueryOutput:
    """Keeps books and candles from the record stream and answers HTTP queries about them."""

    name = "queries"

    def __init__(
        self,
        intervals: list[str],
        grace_ms: int,
        on_resync: Callable[[dict[str, Any]], None] | None = None,
        books: BookStore | None = None,
    ):
        """``books``: books another output keeps (the websocket's), answered from here and not applied again."""
        self.keeps_books = books is None
        self.books = BookStore() if books is None else books
        # Where the books' snapshot requests go (the runtime's sources), as on book_resync in Kafka.
        self.on_resync = on_resync
        self.intervals = intervals
        self.candles = CandleBuilder(intervals, grace_ms)
        self.closed: dict[tuple[str, str, str], deque] = defaultdict(lambda: deque(maxlen=HISTORY_LENGTH))
        self.coverage = CoverageLog()
        self.records = 0

    def register(self, app: web.Application) -> None:
        app.router.add_get("/book/{exchange}/{symbol}", self._book)
        app.router.add_get("/volume/{exchange}/{symbol}", self._volume)
        app.router.add_get("/orders/{exchange}/{symbol}/{order_id}", self._order)
        app.router.add_get("/candles/{exchange}/{symbol}/{interval}", self._candles)
        app.router.add_get("/coverage/{exchange}/{symbol}", self._coverage)

    async def start(self) -> None:
        """Nothing to open."""

    async def write(self, records: list[LocalRecord]) -> None:
        for record in records:
            value = record.value
            if record.topic in (LOB, LOB_L3):
                if self.keeps_books:
                    self.books.apply(record.topic, ONLY_PARTITION, value)
            elif record.topic in (TRADES, TRADES_L3) and self.intervals:
                trade = Trade(value["exchange"], value["symbol"], value["price"], value["size"],
                              value["event_timestamp"], value["atom_timestamp"])
                for candle in self.candles.add(trade):
                    self.closed[(candle["exchange"], candle["symbol"], candle["interval"])].append(candle_json(candle))
            elif record.topic == COVERAGE:
                self.coverage.add(value)
                self.books.take(COVERAGE, ONLY_PARTITION, value)
            self.records += 1
        if self.keeps_books and self.books.resync_requests:
            requests, self.books.resync_requests = self.books.resync_requests, []
            if self.on_resync is not None:
                for request in requests:
                    self.on_resync(request)

    async def close(self) -> None:
        """Nothing to flush."""

    def stats(self) -> dict[str, Any]:
        return {"records": self.records, "late_trades": sum(self.candles.late.values())}

    @staticmethod
    def _json(answer: Answer) -> web.Response:
        return web.json_response(answer.body, status=answer.status)

    async def _book(self, request: web.Request) -> web.Response:
        info = request.match_info
        return self._json(self.books.book(info["exchange"], info["symbol"], request.query))

    async def _volume(self, request: web.Request) -> web.Response:
        info = request.match_info
        return self._json(self.books.volume(info["exchange"], info["symbol"], request.query))

    async def _order(self, request: web.Request) -> web.Response:
        info = request.match_info
        return self._json(self.books.order(info["exchange"], info["symbol"], info["order_id"]))

    async def _coverage(self, request: web.Request) -> web.Response:
        exchange, symbol = request.match_info["exchange"], request.match_info["symbol"]
        return self._json(self.coverage.answer(exchange, symbol, request.query, int(time.time() * MS_PER_S)))

    async def _candles(self, request: web.Request) -> web.Response:
        exchange, symbol, interval = (request.match_info[k] for k in ("exchange", "symbol", "interval"))
        if interval not in self.intervals:
            return web.json_response({"error": f"interval must be one of {self.intervals}"}, status=HTTP_BAD_REQUEST)
        try:
            start = int(request.query["start"]) if "start" in request.query else None
            end = int(request.query["end"]) if "end" in request.query else None
        except ValueError:
            return web.json_response({"error": "start and end are ms since the epoch"}, status=HTTP_BAD_REQUEST)
        closed = list(self.closed.get((exchange, symbol, interval), ()))
        if start is None and end is None:
            open_now = [c for c in self.candles.open_candles(exchange, symbol) if c["interval"] == interval]
            latest = candle_json(open_now[-1]) if open_now else (closed[-1] if closed else None)
            if latest is None:
                return web.json_response({"error": f"no candles for {exchange} {symbol} {interval}"},
                                         status=HTTP_NOT_FOUND)
            return web.json_response(latest)
        low, high = start if start is not None else 0, end if end is not None else 2**63
        return web.json_response([c for c in closed if low <= c["start"] < high])
