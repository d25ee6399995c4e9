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

Book events skip numbers (``received`` and ``match`` take some), so each
``lob_l3`` record's ``prev_sequence`` is the previous book event this
standardiser published (or the snapshot), and after a gap the number just
before the message that revealed it, so a consumer sees the gap too.
"""

from __future__ import annotations

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
from l3_atom.stream_processing.trade_ids import PublishedIds
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
        self.book_checks.snapshot(symbol, sequence, atom_timestamp)
        self._resting[symbol] = {o.record["order_id"]: o.record["size"] for o in outputs}
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
        if outputs:
            resting = self._resting.get(symbol)
            if resting is None:
                resting = self._resting[symbol] = {}
            if event_type == DONE:
                resting.pop(order_id, None)
            elif event_type == OPEN or order_id in resting:
                resting[order_id] = size
        return outputs

    def _book_event(self, symbol: str, key: str, record: dict[str, Any], atom_timestamp: int) -> list[Output]:
        """The ``lob_l3`` output of a book event the stream let through, or a skip when the snapshot holds it."""
        sequence = record["sequence"]
        if self.book_checks.update(symbol, sequence, None, atom_timestamp) in REPEATS:
            return self.skip("book event already in the book snapshot")
        book_prev = self._book_prev
        record["prev_sequence"] = book_prev.get(symbol)
        book_prev[symbol] = sequence
        outputs = [Output(LOB_L3, key, record)]
        requests = self.book_checks.requests(symbol, atom_timestamp)
        return outputs + requests if requests else outputs

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
        trades = sorted(((integer(trade["trade_id"]), trade) for trade in page), key=lambda pair: pair[0])
        records = [
            records_build.trade_l3(
                exchange=SOURCE, symbol=symbol, trade_id=str(trade_id), price=exact(trade["price"]),
                size=exact(trade["size"]), taker_side=taker_side(trade["side"]),
                origin=ORIGIN_BACKFILL, event_timestamp=ms_from_iso(trade["time"]), atom_timestamp=atom_timestamp,
            )
            for trade_id, trade in trades
        ]
        outputs = []
        for (trade_id, _), record in zip(trades, records, strict=True):
            if self.published.add(symbol, trade_id):
                outputs.append(Output(TRADES_L3, key, record))
            else:
                self.skipped[ALREADY_PUBLISHED] += 1
        return outputs

    def _partial_fill(self, symbol: str, key: str, trade: dict[str, Any], maker_side: str) -> list[Output]:
        """A match shrinks the resting maker order with no message of its own: a ``change`` says so.

        Coinbase sends ``done`` when an order is filled completely; a partial fill is only the
        match, so the book's size of the maker order comes from following the orders (from the
        snapshot on).  An unknown maker (no snapshot yet) gives nothing.
        """
        resting = self._resting.get(symbol)
        order_id = trade["maker_order_id"]
        if resting is None or order_id not in resting:
            return []
        remaining = resting[order_id] - trade["size"]
        if remaining <= 0:
            return []  # its done follows
        change = records_build.lob_l3_event(
            exchange=SOURCE, symbol=symbol, event_type=CHANGE, order_id=order_id, side=BOOK_SIDE[maker_side],
            price=trade["price"], size=remaining, reason=MATCH_REASON, sequence=trade["sequence"],
            event_timestamp=trade["event_timestamp"], atom_timestamp=trade["atom_timestamp"],
        )
        outputs = self._book_event(symbol, key, change, trade["atom_timestamp"])
        if outputs:
            resting[order_id] = remaining
        return [output for output in outputs if output.topic == LOB_L3]

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
            asks=message["asks"], is_snapshot=True, atom_timestamp=atom_timestamp,
        )

    def _l2update(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol(message["product_id"])
        key = normalised_key(SOURCE, symbol)
        template = records_build.lob_template(
            exchange=SOURCE, symbol=symbol, is_snapshot=False, event_timestamp=ms_from_iso(message["time"]),
            atom_timestamp=atom_timestamp,
        )
        outputs: list[Output] = []
        # Each change is [side, price, size].
        records_build.lob_sided_outputs(outputs, template, key, BOOK_SIDE, book_side, message["changes"])
        return outputs
