"""Books in the processor: ``lob`` / ``lob_l3`` records applied on the worker that owns their partition, and an API.

    GET /book/{exchange}/{symbol}?depth=N[&level=l2|l3]     top N levels per side and the sequence they reflect
    GET /volume/{exchange}/{symbol}?side=bid|ask&price=P&op=eq|lte|gte   total size at prices op P
    GET /orders/{exchange}/{symbol}/{order_id}              one resting order (L3 books)

Any worker answers: a request for a symbol held elsewhere is forwarded to the
worker consuming that key's partition (``route_topic_req``; ``lob`` and
``lob_l3`` are consumed by one agent, so Faust assigns their partitions
together).  Answers are O(depth) (``/volume``: O(levels in the price range))
and run between stream batches on the same event loop: they never block it
for long.

Integrity: each book checks its records' ``sequence``/``prev_sequence`` as
any consumer of the topic can (:class:`~l3_atom.books.engine.L2Feed`); a book
out of sync (a gap, or updates and no snapshot) answers ``in_sync: false`` and
asks the source's connector for a fresh snapshot on ``book_resync``.

State: books live in memory only, not in a Faust table.  A book changes with
every record; a changelog write per update (batch size 1 on Tansu) would cost
more than the book itself.  Instead, a worker that takes over a partition
(or restarts) rebuilds its books from fresh snapshots: the first updates of a
book it has never seen a snapshot of make it ask for one (``no_snapshot``),
after one retry interval that leaves room for the connector's own; a revoked
partition's books are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import faust
from faust.exceptions import SameNode
from faust.web import Request, Response, View

from l3_atom.avro.codecs import AvroEncoder, decode_wire, parsed_schema
from l3_atom.books.engine import (
    BOOK,
    SIDES,
    SUBSCRIBED_DEPTHS,
    VOLUME_OPS,
    L2Feed,
    L3Feed,
    Level,
)
from l3_atom.books.integrity import DEFAULT_RETRY_US, Continuity
from l3_atom.coverage import closes_book
from l3_atom.stream_processing.batched_consumer import BatchingApp
from l3_atom.stream_processing.publisher import RecordPublisher
from l3_atom.stream_processing.records_build import book_resync
from l3_atom.topics import BOOK_RESYNC, COVERAGE, LOB, LOB_L3, normalised_key

LOG = logging.getLogger(__name__)
L2 = "l2"
L3 = "l3"
LEVELS = (L2, L3)
DEFAULT_DEPTH = 10
MAX_QUERY_DEPTH = 1000
STATS_INTERVAL_S = 10.0
HTTP_OK = 200
HTTP_BAD_REQUEST = 400
HTTP_NOT_FOUND = 404
HTTP_GONE = 410
BookKey = tuple[str, str]
BOOK_TOPICS = (LOB, LOB_L3)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, decided without Faust so that it is testable."""

    status: int
    body: dict[str, Any]


def _text(value: Decimal) -> str:
    return format(value, "f")


def _levels(levels: list[Level]) -> list[list[str]]:
    return [[_text(price), _text(size)] for price, size in levels]


def _error(status: int, message: str) -> Answer:
    return Answer(status, {"error": message})


def parse_depth(text: str | None) -> int:
    if text is None:
        return DEFAULT_DEPTH
    if not text.isdigit() or not 1 <= int(text) <= MAX_QUERY_DEPTH:
        raise ValueError(f"depth must be a whole number from 1 to {MAX_QUERY_DEPTH}, got {text!r}")
    return int(text)


def parse_price(text: str | None) -> Decimal:
    try:
        price = Decimal(text or "")
    except InvalidOperation:
        raise ValueError(f"price must be a decimal number, got {text!r}") from None
    if not price.is_finite() or price < 0:
        raise ValueError(f"price must be a finite, non-negative decimal, got {text!r}")
    return price


def parse_choice(name: str, text: str | None, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {text!r}")
    return text


class BookStore:
    """Every book of the partitions this worker holds, by (exchange, symbol); pure, no Faust."""

    def __init__(self, depths: Mapping[str, int] = SUBSCRIBED_DEPTHS, retry_us: int = DEFAULT_RETRY_US):
        self.depths = depths
        self.retry_us = retry_us
        self.l2: dict[BookKey, L2Feed] = {}
        self.l3: dict[BookKey, L3Feed] = {}
        self._partitions: dict[BookKey, int] = {}
        # book_resync records to send (exchange, symbol, request), taken by whoever publishes them.
        self.resync_requests: list[dict[str, Any]] = []
        # Books closed for good (the venue no longer lists the symbol) -> why; a new snapshot reopens one.
        self.closed: dict[BookKey, str] = {}
        # Records of closed books dropped (frames still in flight when the venue's unsubscribe took effect).
        self.after_close = 0

    def take(self, topic: str, partition: int, record: Mapping[str, Any]) -> bool:
        """One decoded record of a topic the books read: book records are applied (see :meth:`apply`), a
        ``coverage`` record that closes a book closes it; False when nothing was applied."""
        if topic == COVERAGE:
            if closes_book(record):
                self.close(record)
            return False
        return self.apply(topic, partition, record)

    def close(self, record: Mapping[str, Any]) -> None:
        """Close the book a ``coverage`` record closes (:func:`~l3_atom.coverage.closes_book`): queries then
        answer 410 with the reason instead of serving the book's last, stale, state."""
        key = (record["exchange"], record["symbol"])
        self.l2.pop(key, None)
        self.l3.pop(key, None)
        self._partitions.pop(key, None)
        self.closed[key] = record["reason"]

    def apply(self, topic: str, partition: int, record: Mapping[str, Any]) -> bool:
        """One decoded record of ``lob`` or ``lob_l3``; False when it was dropped (stale or a repeat)."""
        exchange = record["exchange"]
        key = (exchange, record["symbol"])
        if key in self.closed:
            if not record.get("is_snapshot", False):
                self.after_close += 1
                return False
            del self.closed[key]  # listed again: its new snapshot opens a new book
        feed: L2Feed | L3Feed | None
        if topic == LOB:
            feed = self.l2.get(key)
            if feed is None:
                feed = self.l2[key] = L2Feed(self.depths.get(exchange), Continuity(self.retry_us))
                self._partitions[key] = partition
        else:
            feed = self.l3.get(key)
            if feed is None:
                feed = self.l3[key] = L3Feed(Continuity(self.retry_us))
                self._partitions[key] = partition
        applied = feed.apply(record)
        atom = record["atom_timestamp"]
        due = feed.continuity.resync_due(BOOK, atom)
        if due is not None:
            reason, detail = due
            self.resync_requests.append(book_resync(
                exchange=exchange, symbol=key[1], reason=reason.value, detail=f"books: {detail}",
                atom_timestamp=atom,
            ))
        return applied

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget the books of partitions this worker no longer holds."""
        gone = [key for key, partition in self._partitions.items() if partition in partitions]
        for key in gone:
            del self._partitions[key]
            self.l2.pop(key, None)
            self.l3.pop(key, None)

    def _missing(self, exchange: str, symbol: str, what: str) -> Answer:
        """No such book here: 410 with the reason when it was closed, else 404."""
        reason = self.closed.get((exchange, symbol))
        if reason is not None:
            return _error(HTTP_GONE, f"the {exchange} {symbol} book is closed ({reason})")
        return _error(HTTP_NOT_FOUND, f"no {what} for {exchange} {symbol} on this worker")

    def stats(self) -> dict[str, int]:
        feeds: list[Any] = [*self.l2.values(), *self.l3.values()]
        totals: dict[str, int] = {"books": len(feeds), "in_sync": sum(f.in_sync for f in feeds),
                                  "closed": len(self.closed), "after_close": self.after_close}
        for feed in feeds:
            for name, count in feed.continuity.counts.items():
                totals[name] = totals.get(name, 0) + count
        totals["unknown_orders"] = sum(f.book.unknown_orders for f in self.l3.values())
        return totals

    def _feed(self, exchange: str, symbol: str, level: str | None) -> L2Feed | L3Feed | None:
        key = (exchange, symbol)
        if level == L3:
            return self.l3.get(key)
        if level == L2:
            return self.l2.get(key)
        return self.l2.get(key) or self.l3.get(key)

    def book(self, exchange: str, symbol: str, query: Mapping[str, str]) -> Answer:
        try:
            depth = parse_depth(query.get("depth"))
            level = None if query.get("level") is None else parse_choice("level", query.get("level"), LEVELS)
        except ValueError as exc:
            return _error(HTTP_BAD_REQUEST, str(exc))
        feed = self._feed(exchange, symbol, level)
        if feed is None:
            return self._missing(exchange, symbol, "book")
        top = feed.book.top(depth)
        body = {
            "exchange": exchange,
            "symbol": symbol,
            "level": L2 if isinstance(feed, L2Feed) else L3,
            "sequence": feed.book.sequence,
            "bids": _levels(top["bid"]),
            "asks": _levels(top["ask"]),
            "in_sync": feed.in_sync,
            "snapshots": feed.snapshots,
            "updates": feed.applied,
            "dropped": feed.dropped,
            "gaps": feed.continuity.counts["gaps"],
            "out_of_order": feed.continuity.counts["out_of_order"],
        }
        if isinstance(feed, L3Feed):
            body["orders"] = len(feed.book.orders)
            body["unknown_orders"] = feed.book.unknown_orders
        return Answer(HTTP_OK, body)

    def volume(self, exchange: str, symbol: str, query: Mapping[str, str]) -> Answer:
        try:
            side = parse_choice("side", query.get("side"), SIDES)
            price = parse_price(query.get("price"))
            op = parse_choice("op", query.get("op"), VOLUME_OPS)
            level = None if query.get("level") is None else parse_choice("level", query.get("level"), LEVELS)
        except ValueError as exc:
            return _error(HTTP_BAD_REQUEST, str(exc))
        feed = self._feed(exchange, symbol, level)
        if feed is None:
            return self._missing(exchange, symbol, "book")
        volume = feed.book.volume(side, price, op)
        return Answer(HTTP_OK, {
            "exchange": exchange, "symbol": symbol, "side": side, "price": _text(price), "op": op,
            "volume": _text(volume), "sequence": feed.book.sequence,
        })

    def order(self, exchange: str, symbol: str, order_id: str) -> Answer:
        feed = self.l3.get((exchange, symbol))
        if feed is None:
            return self._missing(exchange, symbol, "L3 book")
        order = feed.book.order(order_id)
        if order is None:
            return _error(HTTP_NOT_FOUND, f"order {order_id!r} is not resting on the {exchange} {symbol} book")
        return Answer(HTTP_OK, {
            "exchange": exchange, "symbol": symbol, "order_id": order_id, "side": order.side,
            "price": _text(order.price), "size": _text(order.size), "sequence": feed.book.sequence,
        })


class BookService:
    """Wires a :class:`BookStore` into a Faust app: one agent on the book topics, three views."""

    def __init__(
        self,
        app: BatchingApp,
        topics: list[str],
        schemas_by_id: dict[int, dict[str, Any]],
        resync: tuple[AvroEncoder, RecordPublisher] | None = None,
    ):
        self.app = app
        self.store = BookStore()
        self.undecodable = 0
        self.resync = resync
        # One agent reads every book topic, so Faust assigns their partitions together: any one routes.
        self.route_topic = app.topic(topics[0], key_serializer="raw", value_serializer="raw")
        source = app.batched_topic(*topics)
        store = self.store
        schemas = schemas_by_id

        async def keep_books(stream: faust.StreamT) -> None:
            apply = store.take
            async for batch in stream:
                for record in batch:
                    try:
                        apply(record.topic, record.partition, decode_wire(record.value, schemas))
                    except (KeyError, ValueError, TypeError):
                        # Another schema id or a malformed record: counted, never a stopped stream.
                        self.undecodable += 1
                if store.resync_requests:
                    self._send_resync_requests()

        app.agent(source, name="keep_books")(keep_books)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.timer(STATS_INTERVAL_S)(self._log_stats)
        app.page("/book/{exchange}/{symbol}")(self._view(store.book))
        app.page("/volume/{exchange}/{symbol}")(self._view(store.volume))
        app.page("/orders/{exchange}/{symbol}/{order_id}")(self._order_view())

    def _send_resync_requests(self) -> None:
        requests, self.store.resync_requests = self.store.resync_requests, []
        if self.resync is None:
            return
        encoder, publisher = self.resync
        for request in requests:
            LOG.info("books: asking %s for a snapshot of %s (%s)", request["exchange"], request["symbol"],
                     request["reason"])
            publisher.produce(BOOK_RESYNC, normalised_key(request["exchange"], request["symbol"]),
                              encoder.encode(request))

    async def _on_revoked(self, sender: Any, revoked: set[Any], **_: Any) -> None:
        self.store.drop_partitions({tp.partition for tp in revoked if tp.topic in (LOB, LOB_L3)})

    async def _log_stats(self) -> None:
        LOG.info("books: %s, undecodable records %d", self.store.stats(), self.undecodable)

    async def _answer(self, view: View, request: Request, key: str, answer: Any) -> Response:
        """Forward to the worker consuming ``key``'s partition, or answer here when that is this one."""
        try:
            return await self.app.router.route_topic_req(self.route_topic, key.encode(), view.web, request)
        except SameNode:
            pass
        result = answer()
        return view.json(result.body, status=result.status)

    def _view(self, query: Any) -> type[View]:
        service = self

        class BookView(View):
            async def get(self, request: Request, exchange: str, symbol: str) -> Response:
                params = dict(request.query)
                return await service._answer(
                    self, request, f"{exchange}_{symbol}", lambda: query(exchange, symbol, params)
                )

        return BookView

    def _order_view(self) -> type[View]:
        service = self

        class OrderView(View):
            async def get(self, request: Request, exchange: str, symbol: str, order_id: str) -> Response:
                return await service._answer(
                    self, request, f"{exchange}_{symbol}", lambda: service.store.order(exchange, symbol, order_id)
                )

        return OrderView


def add_books(
    app: BatchingApp,
    schema_ids: dict[str, int],
    resync: tuple[AvroEncoder, RecordPublisher] | None = None,
    coverage_schema_id: int | None = None,
) -> BookService:
    """Keep the books of the book topics in ``schema_ids`` (topic -> registry id; ``lob``, ``lob_l3``) on ``app``.

    ``resync`` (the ``book_resync`` encoder and a publisher) sends the books' snapshot requests.  With
    ``coverage_schema_id`` the agent also reads ``coverage`` (keyed and partitioned as the books), so that a
    book the connector closed (a delisted symbol) is closed here too.
    """
    topics = [topic for topic in BOOK_TOPICS if topic in schema_ids]
    if not topics:
        raise ValueError(f"no book topic among {sorted(schema_ids)}; books read {', '.join(BOOK_TOPICS)}")
    schemas_by_id = {schema_ids[topic]: parsed_schema(topic) for topic in topics}
    if coverage_schema_id is not None:
        topics.append(COVERAGE)
        schemas_by_id[coverage_schema_id] = parsed_schema(COVERAGE)
    return BookService(app, topics, schemas_by_id, resync)
