"""Bitstamp websocket v2 -> ``lob_l3``, ``lob``, ``trades_l3`` (and ``book_resync`` requests).

Bitstamp sends every price and amount twice: as a JSON number (``price``) and
as the exact string (``price_str``); only the strings are read.

``live_orders``: ``order_created`` / ``order_changed`` / ``order_deleted`` are
``open`` / ``change`` / ``done`` of one order (``order_type`` 0 is a bid, 1 an
ask); ``amount_str`` is what still rests on the book.  Bitstamp says neither
why an order changed or left nor in which sequence: ``reason`` is null, and so
are ``sequence`` and ``prev_sequence``, because events share microtimestamps
and a consumer would take the second of two for a repeat.  Its snapshot is
the REST book ``GET /api/v2/order_book/{pair}/?group=2``, every order as
``[price, amount, order_id]``, archived by the connector under the pair's
``orders`` key: each order an ``open`` event with ``is_snapshot``.  Events
older than its ``microtimestamp`` are already in it and are skipped; one at
its very microsecond is kept (an event sets an order's whole state, so
applying it twice is harmless, missing it is not).

``live_trades``: ``type`` is the taker's side (0 buy, 1 sell), and the trade
names both orders (``buy_order_id``, ``sell_order_id``), so the taker's order
is the one on the taker's side and the maker's the other: each trade is one
``trades_l3`` record.  It is not also published on ``trades``: a consumer
reading both topics (the candle builder does) would count it twice.

``diff_order_book``: changed levels, amount 0 removes one.  It has no sequence
number: ``sequence`` is the ``microtimestamp`` (µs, rising), ``prev_sequence``
null, so only order is checked.  Its snapshot is the REST book ``GET
/api/v2/order_book/{pair}/`` (``[price, amount]`` levels and a
``microtimestamp``), archived under the pair's ``book`` key: diffs at or below
its ``microtimestamp`` are skipped.  Both snapshots are fetched after every
connect and on every resync; updates that reached the raw topic before a
snapshot but are newer than it are published again after it
(:class:`~l3_atom.stream_processing.book_checks.RecentUpdates`).
Times are ``microtimestamp`` in ms.
"""

from __future__ import annotations

from typing import Any, ClassVar

from l3_atom.off_chain.bitstamp import DIFF_ORDER_BOOK, FEED_BOOK, FEED_ORDERS
from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.book_checks import (
    IN_SNAPSHOT,
    BookChecks,
    RecentUpdates,
    repeat_reason,
    snapshot_sequence,
)
from l3_atom.stream_processing.standardiser import Output, StandardiseError, Standardiser, exact, integer
from l3_atom.topics import BOOK_RESYNC, LOB, LOB_L3, NO_SYMBOL, TRADES_L3, normalised_key

SOURCE = "bitstamp"
BOOK_SIDE = {0: "bid", 1: "ask"}
TAKER_SIDE = {0: "buy", 1: "sell"}
EVENT_TYPE = {"order_created": "open", "order_changed": "change", "order_deleted": "done"}
ZERO = exact("0")
US_PER_MS = 1000
# The REST order books have no "event": they dispatch, by the feed of their raw key, as these.
ORDERS_SNAPSHOT = "orders snapshot"
BOOK_SNAPSHOT = "book snapshot"
SNAPSHOT_OF_FEED = {FEED_ORDERS: ORDERS_SNAPSHOT, FEED_BOOK: BOOK_SNAPSHOT}
# A group=2 REST order is [price, amount, order_id].
ORDER_PRICE, ORDER_AMOUNT, ORDER_ID = range(3)
BOOK_SIDES = ("bids", "asks")


def microtimestamp(value: Any) -> int:
    """Bitstamp's ``microtimestamp``: a string of µs since the epoch."""
    if type(value) is not str or not value.isdigit():
        raise TypeError(f"expected a microtimestamp string, got {type(value).__name__} {value!r}")
    return int(value)


def ms_from_microtimestamp(value: Any) -> int:
    """A ``microtimestamp`` in ms, the unit of ``event_timestamp``."""
    return microtimestamp(value) // US_PER_MS


def order_id_text(value: Any) -> str:
    """A REST order id (a string of digits) as ``live_orders`` ids are written."""
    if type(value) is not str or not value.isdigit():
        raise ValueError(f"expected an order id string of digits, got {value!r}")
    return str(int(value))


def side_of(sides: dict[int, str], value: Any, field: str) -> str:
    if type(value) is not int or value not in sides:
        raise ValueError(f"{field} must be 0 or 1, got {value!r}")
    return sides[value]


class BitstampStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB_L3, LOB, TRADES_L3, BOOK_RESYNC)
    handlers: ClassVar[dict[str, str]] = {
        **{event: "_order" for event in EVENT_TYPE},
        "trade": "_trade",
        DIFF_ORDER_BOOK: "_diff",
        ORDERS_SNAPSHOT: "_orders_snapshot",
        BOOK_SNAPSHOT: "_book_snapshot",
    }
    skips: ClassVar[dict[str, str]] = {
        "bts:subscription_succeeded": "subscription ack",
        "bts:unsubscription_succeeded": "unsubscription ack",
        "bts:heartbeat": "heartbeat",
        "bts:request_reconnect": "reconnect request (the connector reconnects)",
    }

    def __init__(self) -> None:
        super().__init__()
        # The order book (lob_l3) and the level book (lob) of a pair are checked apart.
        self.order_checks = BookChecks(SOURCE)
        self.book_checks = BookChecks(SOURCE)
        self._recent_orders = RecentUpdates()
        self._recent_diffs = RecentUpdates()

    def message_type(self, message: Any) -> str:
        if "event" not in message and "microtimestamp" in message:
            feed = self.raw_key_parts()[2]
            if feed not in SNAPSHOT_OF_FEED:
                raise StandardiseError(f"a REST order book under raw key {self.raw_key!r}: no book feed")
            return SNAPSHOT_OF_FEED[feed]
        event = message["event"]
        if event == "bts:error":
            raise StandardiseError(f"Bitstamp error: {message.get('data')!r}")
        if event == "data":
            # Book channels all send "data"; the channel tells them apart.
            return message["channel"].rpartition("_")[0]
        return event

    def _pair_symbol(self, message: dict) -> str:
        return self.symbol_of(message["channel"].rpartition("_")[2])

    def _snapshot_symbol(self) -> str:
        """A REST order book names no pair: the connector archived it under the pair's key."""
        exchange_symbol = self.raw_key_parts()[1]
        if not exchange_symbol or exchange_symbol == NO_SYMBOL:
            raise ValueError(f"a REST order book names no pair and its raw key {self.raw_key!r} gives none")
        return self.symbol_of(exchange_symbol)

    # -- live_orders and its snapshot: lob_l3 --------------------------------------------

    def _order(self, message: dict, atom_timestamp: int) -> list[Output]:
        """Read in full first; kept for a late snapshot, then applied."""
        symbol = self._pair_symbol(message)
        data = message["data"]
        event_type = EVENT_TYPE[message["event"]]
        time = microtimestamp(data["microtimestamp"])
        record = records_build.lob_l3_event(
            exchange=SOURCE,
            symbol=symbol,
            event_type=event_type,
            order_id=str(integer(data["id"])),
            side=side_of(BOOK_SIDE, data["order_type"], "order_type"),
            price=exact(data["price_str"]),
            size=ZERO if event_type == "done" else exact(data["amount_str"]),
            event_timestamp=time // US_PER_MS,
            atom_timestamp=atom_timestamp,
        )
        output = Output(LOB_L3, normalised_key(SOURCE, symbol), record)
        self._recent_orders.keep(symbol, time, output, atom_timestamp)
        return self._apply_order(symbol, time, output, atom_timestamp) + self.order_checks.requests(
            symbol, atom_timestamp
        )

    def _apply_order(self, symbol: str, time: int, output: Output, atom_timestamp: int) -> list[Output]:
        """An order event, or a named skip when it is older than the book's snapshot."""
        self.order_checks.update(symbol, None, None, atom_timestamp)
        snapshot_time = snapshot_sequence(self.order_checks, symbol)
        if snapshot_time is not None and time < snapshot_time:
            return self.skip(IN_SNAPSHOT)
        return [output]

    def _orders_snapshot(self, message: dict, atom_timestamp: int) -> list[Output]:
        """The group=2 REST book: every order ``open``; events from its microsecond on follow it."""
        symbol = self._snapshot_symbol()
        key = normalised_key(SOURCE, symbol)
        time = microtimestamp(message["microtimestamp"])
        outputs = [
            Output(LOB_L3, key, records_build.lob_l3_event(
                exchange=SOURCE, symbol=symbol, event_type="open", order_id=order_id_text(order[ORDER_ID]), side=side,
                price=exact(order[ORDER_PRICE]), size=exact(order[ORDER_AMOUNT]), is_snapshot=True,
                event_timestamp=time // US_PER_MS, atom_timestamp=atom_timestamp,
            ))
            for side, field in zip(BOOK_SIDE.values(), BOOK_SIDES, strict=True)
            for order in message[field]
        ]
        self.order_checks.snapshot(symbol, time, atom_timestamp)
        if not outputs:
            outputs = self.skip("order book snapshot: no orders")
        for kept in self._recent_orders.replay(self.order_checks, symbol, time - 1, atom_timestamp):
            outputs += self._apply_order(symbol, kept.sequence, kept.update, kept.atom_timestamp)
        return outputs + self.order_checks.requests(symbol, atom_timestamp)

    def _trade(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self._pair_symbol(message)
        data = message["data"]
        taker_side = side_of(TAKER_SIDE, data["type"], "type")
        buy_order, sell_order = str(integer(data["buy_order_id"])), str(integer(data["sell_order_id"]))
        taker_order, maker_order = (buy_order, sell_order) if taker_side == "buy" else (sell_order, buy_order)
        record = {
            "exchange": SOURCE,
            "symbol": symbol,
            "trade_id": str(integer(data["id"])),
            "price": exact(data["price_str"]),
            "size": exact(data["amount_str"]),
            "taker_side": taker_side,
            "maker_order_id": maker_order,
            "taker_order_id": taker_order,
            "sequence": None,
            "origin": None,
            "event_timestamp": ms_from_microtimestamp(data["microtimestamp"]),
            "atom_timestamp": atom_timestamp,
        }
        return [Output(TRADES_L3, normalised_key(SOURCE, symbol), record)]

    # -- diff_order_book and its snapshot: lob ------------------------------------------

    def _diff(self, message: dict, atom_timestamp: int) -> list[Output]:
        """Read in full first; kept for a late snapshot, then applied."""
        symbol = self._pair_symbol(message)
        data = message["data"]
        time = microtimestamp(data["microtimestamp"])
        outputs = tuple(records_build.book_levels(
            exchange=SOURCE, symbol=symbol, key=normalised_key(SOURCE, symbol), bids=data["bids"], asks=data["asks"],
            is_snapshot=False, sequence=time, event_timestamp=time // US_PER_MS, atom_timestamp=atom_timestamp,
        ))
        self._recent_diffs.keep(symbol, time, outputs, atom_timestamp)
        return self._apply_diff(symbol, time, outputs, atom_timestamp) + self.book_checks.requests(
            symbol, atom_timestamp
        )

    def _apply_diff(self, symbol: str, time: int, outputs: tuple[Output, ...], atom_timestamp: int) -> list[Output]:
        """A diff's records, or a named skip when the snapshot holds it.

        Two diffs may share a microtimestamp, so one repeating the last is published all the same.
        """
        verdict = self.book_checks.update(symbol, time, None, atom_timestamp)
        repeat = repeat_reason(self.book_checks, symbol, time, verdict, numbered_once=False)
        if repeat is not None:
            return self.skip(repeat)
        return list(outputs) or self.skip("book diff without levels")

    def _book_snapshot(self, message: dict, atom_timestamp: int) -> list[Output]:
        """The REST book of levels: it replaces the book; diffs after its microtimestamp follow it."""
        symbol = self._snapshot_symbol()
        time = microtimestamp(message["microtimestamp"])
        outputs = records_build.book_levels(
            exchange=SOURCE, symbol=symbol, key=normalised_key(SOURCE, symbol), bids=message["bids"],
            asks=message["asks"], is_snapshot=True, sequence=time, event_timestamp=time // US_PER_MS,
            atom_timestamp=atom_timestamp,
        )
        self.book_checks.snapshot(symbol, time, atom_timestamp)
        if not outputs:
            outputs = self.skip("snapshot of an empty book")
        for kept in self._recent_diffs.replay(self.book_checks, symbol, time, atom_timestamp):
            outputs += self._apply_diff(symbol, kept.sequence, kept.update, kept.atom_timestamp)
        return outputs + self.book_checks.requests(symbol, atom_timestamp)
