"""Coinbase Exchange ws-feed -> ``lob_l3``, ``trades_l3``, ``ticker``, ``lob``.

Full channel: ``open``/``change``/``done`` change the level-3 book;
``match``/``last_match`` are trades (Coinbase's ``side`` is the maker's, so
the taker is the other side), and a match that fills the resting maker order
partly is also a ``change`` of that order (reason ``match``: Coinbase sends no
message of its own for it); ``received`` and ``activate`` are not on the book
yet and are skipped, counted.  The level2 channel (``snapshot``,
``l2update``) feeds ``lob``.

Level-3 book integrity, as Coinbase documents it: the book starts from the
REST snapshot ``GET /products/{id}/book?level=3`` (the connector fetches it
after subscribing and on every resync, under the product's ``full`` key), and
every full-channel message carries the product's next ``sequence``.  So:
- a message numbered at or below one already seen is a repeat or arrived out
  of order: skipped, counted (never published twice);
- a jump in the numbers is a gap: the book is lost and a ``book_resync`` asks
  the connector for a new snapshot (again every retry interval until one comes);
- book events numbered at or below the snapshot's sequence are already inside
  it: skipped (trades are not: a trade is news whatever the book holds).
Trades missed during an outage arrive as pages of ``GET /products/{id}/trades``
that the connector archived under the product's ``full`` key (a JSON list: ws
frames are objects).  They become ``trades_l3`` records with ``origin``
``backfill`` (no order ids: the history has none), in trade-id order; every
trade, streamed or backfilled, is published once by trade id (the history
overlaps the stream on both sides of the gap).  The history's ``side`` is the
maker's, as on ``match``.

A worker that takes a partition over (or starts on a running stream) has no
snapshot of its books, so a partial fill of an order that opened before it has
no size to subtract from.  Rather than leave that ``change`` out, it does what
Coinbase documents for joining a stream (buffer, fetch the snapshot, apply):
from that fill on, the symbol's ``lob_l3`` records are held back, in order, and
a snapshot is asked for at once.  The order's size after the fill follows from
what comes later: the ``old_size`` of its next ``change``, the
``remaining_size`` of its ``done``, or its size in the snapshot (plus the fills
between) when the stream has reached the snapshot's point.  Each held record is published as soon as every fill before it is
sized: nothing is left out and the order is kept.  A fill still unsized when
the snapshot comes (or after ``HOLD_LIMIT`` held records) is a counted skip.
Held records exist only in the worker's memory: a worker killed while holding
loses them, and its successor's snapshot covers them (a book resync).

Book events skip numbers (``received`` and ``match`` take some), so each
``lob_l3`` record's ``prev_sequence`` is the previous book event this
standardiser published (or the snapshot), and after a gap the number just
before the message that revealed it, so a consumer sees the gap too.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from l3_atom.books.integrity import Continuity
from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.book_checks import BookChecks, Reason, Verdict
from l3_atom.stream_processing.standardiser import (
    Output,
    Standardiser,
    exact,
    integer,
    ms_from_iso,
    optional_exact,
)
from l3_atom.stream_processing.trade_ids import PublishedIds, unpublished
from l3_atom.topics import (
    BOOK_RESYNC,
    LOB,
    LOB_L3,
    ORIGIN_BACKFILL,
    TICKER,
    TRADES_L3,
    normalised_key,
)

SOURCE = "coinbase"
BOOK_SIDE = {"buy": "bid", "sell": "ask"}
TAKER_SIDE_OF_MAKER = {"buy": "sell", "sell": "buy"}
ZERO = exact("0")
# A level2 change is [side, price, size] (records_build.lob_sided_outputs reads it).
# A level-3 REST snapshot's order is [price, size, order_id].
LEVEL_PRICE, LEVEL_SIZE, LEVEL_ORDER_ID = range(3)
# The level-3 REST book snapshot has no "type": it dispatches as this.
L3_SNAPSHOT = "l3_snapshot"
# A page of the REST trade history (a JSON list), archived by the connector to fill a gap.
TRADE_HISTORY = "trade_history"
ALREADY_PUBLISHED = "trade already published (streamed or backfilled)"
OPEN = "open"
CHANGE = "change"
DONE = "done"
# The reason of the change a partial fill makes to the maker order.
MATCH_REASON = "match"
# received/activate: counted skips, one reason per type.
OFF_BOOK_REASONS = {kind: f"{kind}: order not on the book yet" for kind in ("received", "activate")}
# Verdicts on a full-channel message that make it a skip (see ``_repeat``).
REPEATS = (Verdict.DUPLICATE, Verdict.STALE)
# A symbol's lob_l3 records held back behind a fill of unknown size: past this many they go without it.
HOLD_LIMIT = 10_000
UNSIZED_FILL = "match: size of the maker order never known (no snapshot)"
FILLED = "filled"


@dataclass(slots=True)
class UnsizedFill:
    """A partial fill of a maker order of unknown size: its ``change`` record, held until the size is known."""

    output: Output
    order_id: str
    fill: Decimal
    # The order's size after this fill, once known; None while unknown.
    size: Decimal | None = None
    gone: bool = False  # known to publish nothing (filled completely, or never sized)


class HeldBook:
    """One symbol's ``lob_l3`` records held back behind unsized fills, in order, and those fills by order id."""

    def __init__(self) -> None:
        self.records: list[Output | UnsizedFill] = []
        self.fills: dict[str, list[UnsizedFill]] = {}

    def add_fill(self, fill: UnsizedFill) -> None:
        self.records.append(fill)
        self.fills.setdefault(fill.order_id, []).append(fill)

    def size(self, order_id: str, after_last_fill: Decimal | None) -> None:
        """The order's size after its last held fill (None: never known): every held fill of it gets its size."""
        size = after_last_fill
        for fill in reversed(self.fills.pop(order_id, ())):
            if size is None:
                fill.gone = True
                continue
            fill.size = size
            fill.gone = size <= 0  # filled completely: its done follows, as on the stream
            size += fill.fill


def book_side(side: Any) -> str:
    try:
        return BOOK_SIDE[side]
    except (KeyError, TypeError):
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}") from None


def taker_side(maker_side: Any) -> str:
    """Coinbase names the maker's side (on ``match`` and in the trade history); the taker took the other."""
    book_side(maker_side)
    return TAKER_SIDE_OF_MAKER[maker_side]


class CoinbaseStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB_L3, TRADES_L3, TICKER, LOB, BOOK_RESYNC)
    handlers: ClassVar[dict[str, str]] = {
        L3_SNAPSHOT: "_l3_snapshot",
        TRADE_HISTORY: "_trade_history",
        "received": "_off_book",
        "activate": "_off_book",
        "open": "_open",
        "change": "_change",
        "done": "_done",
        "match": "_match",
        "last_match": "_match",
        "ticker": "_ticker",
        "snapshot": "_snapshot",
        "l2update": "_l2update",
    }
    skips: ClassVar[dict[str, str]] = {
        "subscriptions": "subscription ack",
        "heartbeat": "heartbeat",
    }

    def __init__(self) -> None:
        super().__init__()
        # Product id -> (normalised symbol, output key).
        self._products: dict[str, tuple[str, str]] = {}
        self.book_checks = BookChecks(SOURCE)
        # The full channel's sequence per product, over every message type (received, match, ...).
        self._stream = Continuity()
        # Per symbol: the prev_sequence the next lob_l3 record carries.
        self._book_prev: dict[str, int] = {}
        # Per symbol: the size of each resting order, from the snapshot on (partial fills change it).
        self._resting: dict[str, dict[str, Decimal]] = {}
        # Per symbol: lob_l3 records held back behind fills of orders whose size is not known yet.
        self._held: dict[str, HeldBook] = {}
        self.published = PublishedIds()

    def message_type(self, message: Any) -> str:
        if type(message) is list:
            return TRADE_HISTORY
        if "type" not in message and "bids" in message and "sequence" in message:
            return L3_SNAPSHOT
        return message["type"]

    def _follow(self, symbol: str, sequence: int, atom_timestamp: int) -> Verdict:
        """The verdict on a full-channel message of ``symbol``; a gap loses its book.

        A symbol is followed from its first book message (received, open, ...): only the full channel sends those.
        """
        verdict = self._stream.update(symbol, sequence, sequence - 1, atom_timestamp)
        if verdict is Verdict.GAP and not self._in_snapshot(symbol, sequence - 1):
            detail = self._stream.books[symbol].detail
            self.book_checks.lost(symbol, Reason.GAP, detail, atom_timestamp)
            self._book_prev[symbol] = sequence - 1
            held = self._held.get(symbol)
            if held is not None:
                # A missed message may have filled or changed an order: sizes counted back across it would be wrong.
                for order_id in list(held.fills):
                    held.size(order_id, None)
        return verdict

    def _in_snapshot(self, symbol: str, sequence: int) -> bool:
        """Whether the book's last snapshot holds everything up to ``sequence`` (missed messages did not hurt it)."""
        state = self.book_checks.continuity.books.get(symbol)
        return state is not None and state.snapshot_sequence is not None and state.snapshot_sequence >= sequence

    def _repeat(self, verdict: Verdict) -> list[Output]:
        """The counted skip of a repeated (``DUPLICATE``) or late (``STALE``) full-channel message."""
        if verdict is Verdict.DUPLICATE:
            return self.skip("repeated full-channel message")
        return self.skip("full-channel message older than one already seen")

    def _off_book(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol(message["product_id"])
        verdict = self._follow(symbol, integer(message["sequence"]), atom_timestamp)
        if verdict in REPEATS:
            return self._repeat(verdict)
        self.skipped[OFF_BOOK_REASONS[message["type"]]] += 1
        return self.book_checks.requests(symbol, atom_timestamp)

    def _l3_snapshot(self, message: dict, atom_timestamp: int) -> list[Output]:
        """The REST level-3 book: every resting order, as ``open`` events that replace the book."""
        symbol = self.symbol_of(self.raw_key_parts()[1])
        sequence = integer(message["sequence"])
        event_timestamp = ms_from_iso(message["time"]) if "time" in message else atom_timestamp // 1000
        key = normalised_key(SOURCE, symbol)
        outputs = [
            Output(LOB_L3, key, records_build.lob_l3_event(
                exchange=SOURCE, symbol=symbol, event_type=OPEN, order_id=order[LEVEL_ORDER_ID], side=side,
                price=exact(order[LEVEL_PRICE]), size=exact(order[LEVEL_SIZE]), is_snapshot=True,
                sequence=sequence, event_timestamp=event_timestamp, atom_timestamp=atom_timestamp,
            ))
            for side, orders in (("bid", message["bids"]), ("ask", message["asks"]))
            for order in orders
        ]
        resting = {o.record["order_id"]: o.record["size"] for o in outputs}
        held = self._held.get(symbol)
        if held is not None:
            # Every fill held is sized now: by the snapshot, when it holds the order, no fill is newer and the
            # stream has reached the snapshot's point.  A snapshot ahead of the stream may hold fills of the
            # order not read yet (their frames come after it and are skipped as inside it): its size is then
            # not the size after the held fill.
            stream = self._stream.books.get(symbol)
            ahead = stream is None or stream.last is None or stream.last < sequence
            for order_id, fills in list(held.fills.items()):
                newer = any(fill.output.record["sequence"] > sequence for fill in fills)
                held.size(order_id, None if newer or ahead else resting.get(order_id))
            outputs = self._release(symbol, held) + outputs
        self.book_checks.snapshot(symbol, sequence, atom_timestamp)
        self._resting[symbol] = resting
        published = self._book_prev.get(symbol)
        if published is not None and published > sequence:
            # Book events after the snapshot's point came first: the snapshot wiped them.  Say so, ask again.
            self.book_checks.lost(
                symbol, Reason.GAP, f"snapshot {sequence} is older than book event {published}", atom_timestamp
            )
        else:
            self._book_prev[symbol] = sequence
        self._stream.state(symbol, atom_timestamp)  # the product is on the full channel: follow its numbers
        return outputs + self.book_checks.requests(symbol, atom_timestamp)

    def symbol(self, product_id: Any) -> str:
        """``BTC-USD`` -> ``BTC.USD`` (cached: products repeat)."""
        return (self._products.get(product_id) or self._product(product_id))[0]

    def _product(self, product_id: Any) -> tuple[str, str]:
        """The normalised symbol of a product and the key of its outputs, computed once per product."""
        symbol = self.convert_symbol(product_id)
        known = self._products[product_id] = (symbol, normalised_key(SOURCE, symbol))
        return known

    def convert_symbol(self, exchange_symbol: Any) -> str:
        """Coinbase product ids are ``BASE-QUOTE``: the normalised name follows without a symbol list."""
        if type(exchange_symbol) is not str or exchange_symbol.count("-") != 1:
            raise ValueError(f"product_id must look like BASE-QUOTE, got {exchange_symbol!r}")
        return exchange_symbol.replace("-", ".")

    def _order_event(
        self, message: dict, atom_timestamp: int, event_type: str, price: Any, size: Any, reason: Any = None
    ) -> list[Output]:
        if reason is not None and type(reason) is not str:
            raise TypeError(f"reason must be a string, got {reason!r}")
        # Read every field first: a malformed message is an error (dead letter) even when it is a repeat.
        product_id = message["product_id"]
        symbol, key = self._products.get(product_id) or self._product(product_id)
        sequence = integer(message["sequence"])
        order_id = message["order_id"]
        record = records_build.lob_l3_event(
            exchange=SOURCE,
            symbol=symbol,
            event_type=event_type,
            order_id=order_id,
            side=book_side(message["side"]),
            price=price,
            size=size,
            reason=reason,
            sequence=sequence,
            event_timestamp=ms_from_iso(message["time"]),
            atom_timestamp=atom_timestamp,
        )
        verdict = self._follow(symbol, sequence, atom_timestamp)
        if verdict in REPEATS:
            return self._repeat(verdict)
        outputs = self._book_event(symbol, key, record, atom_timestamp)
        if outputs is None:
            return []
        resting = self._resting.get(symbol)
        if resting is None:
            resting = self._resting[symbol] = {}
        held = self._held.get(symbol)
        if held is not None and order_id in held.fills:
            outputs = self._size_fills(symbol, held, order_id, event_type, message) + outputs
            resting[order_id] = size  # known from here on (a done pops it below)
        if event_type == DONE:
            resting.pop(order_id, None)
        elif event_type == OPEN or order_id in resting:
            resting[order_id] = size
        return outputs

    def _book_event(
        self, symbol: str, key: str, record: dict[str, Any], atom_timestamp: int, unsized_fill: Decimal | None = None
    ) -> list[Output] | None:
        """The ``lob_l3`` output of a book event the stream let through (held back while the symbol's book
        holds records behind an unsized fill, or when it is one: ``unsized_fill``); None when the snapshot
        holds it (a counted skip)."""
        sequence = record["sequence"]
        if self.book_checks.update(symbol, sequence, None, atom_timestamp) in REPEATS:
            self.skip("book event already in the book snapshot")
            return None
        book_prev = self._book_prev
        record["prev_sequence"] = book_prev.get(symbol)
        book_prev[symbol] = sequence
        output = Output(LOB_L3, key, record)
        requests = self.book_checks.requests(symbol, atom_timestamp)
        held = self._held.get(symbol)
        if held is None and unsized_fill is None:
            return [output, *requests] if requests else [output]
        if held is None:
            held = self._held[symbol] = HeldBook()
        if unsized_fill is not None:
            held.add_fill(UnsizedFill(output, record["order_id"], unsized_fill))
        else:
            held.records.append(output)
        self.skipped.defer()
        if len(held.records) > HOLD_LIMIT:
            for order_id in list(held.fills):
                held.size(order_id, None)
        if not held.fills or len(held.records) > HOLD_LIMIT:
            return self._release(symbol, held) + requests  # no fill waits for its size (any more)
        return requests

    def _size_fills(self, symbol: str, held: HeldBook, order_id: str, event_type: str, message: dict) -> list[Output]:
        """A change or done of an order with unsized fills: its size before it is the size after its last fill."""
        if event_type == CHANGE:
            size = optional_exact(message.get("old_size"))
        else:
            remaining = message.get("remaining_size")
            size = ZERO if message.get("reason") == FILLED else optional_exact(remaining)
        held.size(order_id, size)
        return self._release(symbol, held)

    def _release(self, symbol: str, held: HeldBook) -> list[Output]:
        """The held records up to the first fill still unsized, in order; the hold ends when none is left.

        A fill that publishes nothing leaves the ``prev_sequence`` of the record after it pointing
        at the record before it, as if it had never been held.
        """
        records = held.records
        released = []
        for index, item in enumerate(records):
            if type(item) is not UnsizedFill:
                released.append(item)
            elif not item.gone:
                if item.size is None:
                    del records[:index]
                    return released
                item.output.record["size"] = item.size
                released.append(item.output)
            else:
                if item.size is None:
                    self.skipped[UNSIZED_FILL] += 1
                self._unlink(symbol, item.output.record, records[index + 1:])
        del self._held[symbol]
        return released

    def _unlink(self, symbol: str, record: dict[str, Any], later: list[Output | UnsizedFill]) -> None:
        """Take ``record`` out of the ``prev_sequence`` chain (it is not published)."""
        sequence, prev = record["sequence"], record["prev_sequence"]
        for item in later:
            following = item.output.record if type(item) is UnsizedFill else item.record
            if following["prev_sequence"] == sequence:
                following["prev_sequence"] = prev
                return
        if self._book_prev.get(symbol) == sequence:
            self._book_prev[symbol] = prev

    def _open(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._order_event(
            message, atom_timestamp, OPEN, exact(message["price"]), exact(message["remaining_size"])
        )

    def _change(self, message: dict, atom_timestamp: int) -> list[Output]:
        if "new_size" not in message and "new_funds" in message:
            return self.skip("change: funds of a market order, not on the book")
        price = optional_exact(message.get("price"))
        reason = message.get("reason")
        return self._order_event(message, atom_timestamp, CHANGE, price, exact(message["new_size"]), reason)

    def _done(self, message: dict, atom_timestamp: int) -> list[Output]:
        reason = message["reason"]
        return self._order_event(message, atom_timestamp, DONE, optional_exact(message.get("price")), ZERO, reason)

    def _match(self, message: dict, atom_timestamp: int) -> list[Output]:
        product_id = message["product_id"]
        symbol, key = self._products.get(product_id) or self._product(product_id)
        maker_side = message["side"]
        sequence = integer(message["sequence"])
        trade_id = integer(message["trade_id"])
        record = records_build.trade_l3(
            exchange=SOURCE,
            symbol=symbol,
            trade_id=str(trade_id),
            price=exact(message["price"]),
            size=exact(message["size"]),
            taker_side=taker_side(maker_side),
            maker_order_id=message["maker_order_id"],
            taker_order_id=message["taker_order_id"],
            sequence=sequence,
            event_timestamp=ms_from_iso(message["time"]),
            atom_timestamp=atom_timestamp,
        )
        outputs = [Output(TRADES_L3, key, record)] if self.published.add(symbol, trade_id) else self.skip(ALREADY_PUBLISHED)
        # Matches join the full channel's numbering only on it (the matches channel skips numbers);
        # last_match is the last trade before subscribing, outside the numbering.
        if message["type"] == "match" and symbol in self._stream.books:
            verdict = self._follow(symbol, sequence, atom_timestamp)
            if verdict in REPEATS:
                return self._repeat(verdict)
            outputs += self._partial_fill(symbol, key, record, maker_side)
        return outputs + self.book_checks.requests(symbol, atom_timestamp)

    def _trade_history(self, page: list, atom_timestamp: int) -> list[Output]:
        """A backfilled page of trades: those not yet published, oldest first, marked ``backfill``."""
        symbol = self.symbol_of(self.raw_key_parts()[1])
        key = normalised_key(SOURCE, symbol)
        built = [
            (trade_id, Output(TRADES_L3, key, records_build.trade_l3(
                exchange=SOURCE, symbol=symbol, trade_id=str(trade_id), price=exact(trade["price"]),
                size=exact(trade["size"]), taker_side=taker_side(trade["side"]),
                origin=ORIGIN_BACKFILL, event_timestamp=ms_from_iso(trade["time"]), atom_timestamp=atom_timestamp,
            )))
            for trade_id, trade in ((integer(trade["trade_id"]), trade) for trade in page)
        ]
        return unpublished(self.published, symbol, built, self.skipped, ALREADY_PUBLISHED)

    def _partial_fill(self, symbol: str, key: str, trade: dict[str, Any], maker_side: str) -> list[Output]:
        """A match shrinks the resting maker order with no message of its own: a ``change`` says so.

        Coinbase sends ``done`` when an order is filled completely; a partial fill is only the
        match, so the book's size of the maker order comes from following the orders (from the
        snapshot on).  An unknown maker (no snapshot yet) gives nothing.
        """
        resting = self._resting.get(symbol)
        order_id = trade["maker_order_id"]
        known = resting is not None and order_id in resting
        if not known and self._snapshot_seen(symbol):
            return []  # an order the book never had
        remaining = resting[order_id] - trade["size"] if known else ZERO  # unsized: set once known
        if known and remaining <= 0:
            return []  # its done follows
        change = records_build.lob_l3_event(
            exchange=SOURCE, symbol=symbol, event_type=CHANGE, order_id=order_id, side=BOOK_SIDE[maker_side],
            price=trade["price"], size=remaining, reason=MATCH_REASON, sequence=trade["sequence"],
            event_timestamp=trade["event_timestamp"], atom_timestamp=trade["atom_timestamp"],
        )
        holding = symbol in self._held
        outputs = self._book_event(symbol, key, change, trade["atom_timestamp"], None if known else trade["size"])
        if outputs is None:
            return []
        if known:
            resting[order_id] = remaining
        elif not holding:
            # A taken-over book: ask for its snapshot now, not one retry interval later.
            self.book_checks.lost(symbol, Reason.NO_SNAPSHOT, "a fill of an order older than this worker's book",
                                  trade["atom_timestamp"])
        return [output for output in outputs if output.topic == LOB_L3]

    def _snapshot_seen(self, symbol: str) -> bool:
        state = self.book_checks.continuity.books.get(symbol)
        return state is not None and state.snapshot_seen

    def _ticker(self, message: dict, atom_timestamp: int) -> list[Output]:
        product_id = message["product_id"]
        symbol, key = self._products.get(product_id) or self._product(product_id)
        if "time" not in message:
            return self.skip("ticker: first ticker after subscribing has no time")
        sequence = message.get("sequence")
        record = records_build.ticker(
            exchange=SOURCE,
            symbol=symbol,
            bid_price=optional_exact(message.get("best_bid")),
            bid_size=optional_exact(message.get("best_bid_size")),
            ask_price=optional_exact(message.get("best_ask")),
            ask_size=optional_exact(message.get("best_ask_size")),
            last_price=optional_exact(message.get("price")),
            last_size=optional_exact(message.get("last_size")),
            sequence=None if sequence is None else integer(sequence),
            event_timestamp=ms_from_iso(message["time"]),
            atom_timestamp=atom_timestamp,
        )
        return [Output(TICKER, key, record)]

    def _snapshot(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol(message["product_id"])
        return records_build.book_levels(
            exchange=SOURCE, symbol=symbol, key=normalised_key(SOURCE, symbol), bids=message["bids"],
            asks=message["asks"], is_snapshot=True, atom_timestamp=atom_timestamp, writer=self.lob_writer,
        )

    def _l2update(self, message: dict, atom_timestamp: int) -> list[Output]:
        product_id = message["product_id"]
        symbol, key = self._products.get(product_id) or self._product(product_id)
        template = records_build.lob_template(
            exchange=SOURCE, symbol=symbol, is_snapshot=False, event_timestamp=ms_from_iso(message["time"]),
            atom_timestamp=atom_timestamp,
        )
        outputs: list[Output] = []
        # Each change is [side, price, size].
        records_build.lob_sided_outputs(outputs, template, key, BOOK_SIDE, book_side, message["changes"], self.lob_writer)
        return outputs
