"""Bitfinex websocket v2 -> ``lob_l3`` (raw books), ``lob`` (P0 books), ``trades``, ``ticker``, ``candle``
(and ``book_resync`` requests).

Data frames are arrays ``[CHAN_ID, BODY, SEQ, TIME]`` (``[CHAN_ID, TAG, BODY, SEQ, TIME]`` for tagged ones
such as trade executions ``te``) that do not name their symbol or channel: the connector tracks the
``subscribed`` events and writes symbol and feed into the raw key, read here from :attr:`raw_key`.
``SEQ`` is there with the ``SEQ_ALL`` conf flag, ``TIME`` (the exchange's ms) with ``TIMESTAMP``; the
connector asks for both, older recordings have ``SEQ`` only. Where a record needs a time and the frame has
none, the receive time stands in (``atom_timestamp`` in ms); ``lob`` then carries null, as its schema allows.

Raw books (``prec: R0``) list orders ``[ORDER_ID, PRICE, AMOUNT]``: the sign of the amount is the side,
price 0 removes the order.  A subscription's first message is the snapshot: every order an ``open`` event
with ``is_snapshot``, which replaces the book.  Turning updates into open/change/done needs the order ids
known per symbol, kept here (small, pure state: ARCHITECTURE principle 2).  P0 books (``lob``) start the
same way.  Book integrity: a record's ``sequence`` is its frame's ``SEQ``, which numbers every frame of the
connection (all channels together), so a book's numbers rise with gaps that lose nothing: only their order
is checked, and ``prev_sequence`` is null.  A repeat of the last number, or a number at or below the
snapshot's, is skipped; updates and no snapshot ask for a ``book_resync``, which the connector answers by
reconnecting (the new subscriptions bring new snapshots).

Trades: ``te`` (execution, sent at once) is published; ``tu`` repeats the same trade (same id) once it is in
Bitfinex's database and is skipped, counted.  The amount's sign is the taker's side.  Trades missed in an
outage arrive as pages of ``GET /v2/trades/{symbol}/hist`` (a JSON list of ``[ID, MTS, AMOUNT, PRICE]``, no
channel id) archived under the pair's ``trades`` raw key: ``trades`` records marked ``origin`` ``backfill``,
in id order, with no ``SEQ`` (null sequence).  Every trade is published once by id: the snapshot a
resubscribe sends repeats trades already published, and the history overlaps the stream at both edges.  The ticker's
``BID_SIZE``/``ASK_SIZE`` are the sums of the 25 best levels (Bitfinex's documentation; checked against the
recorded books), not the size at the best price, so ``bid_size``/``ask_size`` stay null.  Candles
(``trade:1m:...``) have no closed flag: a candle is closed when the frame's time is past its window.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from l3_atom.off_chain.bitfinex import (
    FEED_BOOK,
    FEED_CANDLES,
    FEED_RAW_BOOK,
    FEED_TICKER,
    FEED_TRADES,
    FEED_UNKNOWN_CHANNEL,
    normalise_trading_symbol,
)
from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.book_checks import BookChecks, repeat_reason
from l3_atom.stream_processing.standardiser import (
    Output,
    StandardiseError,
    Standardiser,
    decode_number_texts,
    exact,
    integer,
)
from l3_atom.stream_processing.trade_ids import PublishedIds, unpublished
from l3_atom.topics import (
    BOOK_RESYNC,
    CANDLE,
    LOB,
    LOB_L3,
    ORIGIN_BACKFILL,
    TICKER,
    TRADES,
    normalised_key,
)

SOURCE = "bitfinex"


# A frame: [CHAN_ID, BODY, SEQ, TIME] or [CHAN_ID, TAG, BODY, SEQ, TIME].
CHANNEL_ID, BODY = range(2)
TAGGED_BODY = 2
# After the body: the SEQ_ALL sequence, then the TIMESTAMP flag's time.
TRAILER_SEQUENCE, TRAILER_TIME = range(2)
# Raw book entry, P0 book entry, trade, candle, ticker.
ORDER_ID, ORDER_PRICE, ORDER_AMOUNT = range(3)
LEVEL_PRICE, LEVEL_COUNT, LEVEL_AMOUNT = range(3)
TRADE_ID, TRADE_TIME, TRADE_AMOUNT, TRADE_PRICE = range(4)
CANDLE_TIME, CANDLE_OPEN, CANDLE_CLOSE, CANDLE_HIGH, CANDLE_LOW, CANDLE_VOLUME = range(6)
TICKER_BID, TICKER_BID_SIZE, TICKER_ASK, TICKER_ASK_SIZE = range(4)
TICKER_LAST_PRICE = 6

ZERO = Decimal(0)
MINUTE_MS = 60_000
# Bitfinex timeframe -> (normalised interval, length in ms); months have no fixed length.
TIMEFRAMES = {
    "1m": ("1m", MINUTE_MS),
    "5m": ("5m", 5 * MINUTE_MS),
    "15m": ("15m", 15 * MINUTE_MS),
    "30m": ("30m", 30 * MINUTE_MS),
    "1h": ("1h", 60 * MINUTE_MS),
    "3h": ("3h", 180 * MINUTE_MS),
    "6h": ("6h", 360 * MINUTE_MS),
    "12h": ("12h", 720 * MINUTE_MS),
    "1D": ("1d", 1440 * MINUTE_MS),
    "1W": ("1w", 7 * 1440 * MINUTE_MS),
    "14D": ("14d", 14 * 1440 * MINUTE_MS),
}
OPEN, CHANGE, DONE = "open", "change", "done"
# Book sides as _level names them, for records_build.lob_sided_outputs (its levels lead with the side).
SIDES = {"bid": "bid", "ask": "ask"}
# A page of the REST trade history (a list of lists, no channel id), archived by the connector to fill a gap.
TRADE_HISTORY = "trade history"
ALREADY_PUBLISHED = "trade already published (streamed or backfilled)"


def book_side(amount: Decimal) -> str:
    """Bitfinex books: a positive amount is a bid, a negative one an ask."""
    if amount > 0:
        return "bid"
    if amount < 0:
        return "ask"
    raise ValueError("amount 0 has no side")


def taker_side(amount: Decimal) -> str:
    """Bitfinex trades: the amount is positive when the taker bought."""
    if amount > 0:
        return "buy"
    if amount < 0:
        return "sell"
    raise ValueError("trade amount 0 has no side")


def is_snapshot(body: Any) -> bool:
    """Snapshots are lists of entries; updates are one entry."""
    if type(body) is not list:
        raise TypeError(f"expected a list body, got {body!r}")
    return not body or type(body[0]) is list


class BitfinexStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB_L3, LOB, TRADES, TICKER, CANDLE, BOOK_RESYNC)
    handlers: ClassVar[dict[str, str]] = {
        FEED_RAW_BOOK: "_raw_book",
        FEED_BOOK: "_book",
        FEED_TRADES: "_trades_snapshot",
        "te": "_trade_execution",
        TRADE_HISTORY: "_trade_history",
        FEED_TICKER: "_ticker",
        FEED_CANDLES: "_candles",
    }
    skips: ClassVar[dict[str, str]] = {
        "hb": "heartbeat",
        "tu": "tu: repeats a te trade once it is stored",
        "cs": "book checksum",
        "event:info": "info event",
        "event:conf": "conf ack",
        "event:subscribed": "subscription ack",
        "event:unsubscribed": "unsubscription ack",
        "event:pong": "pong",
    }

    def __init__(self) -> None:
        super().__init__()
        self._symbols: dict[str, str] = {}
        # Normalised symbol -> order id -> (side, price, size) of the orders on its raw book.
        self._orders: dict[str, dict[int, tuple[str, Decimal, Decimal]]] = {}
        # Raw books (lob_l3) and P0 books (lob) are checked apart: a symbol may have both.
        self.book_checks = BookChecks(SOURCE)
        self.level_checks = BookChecks(SOURCE)
        # Trade ids published, streamed or backfilled: each once.
        self.published = PublishedIds()

    def decode(self, frame: bytes) -> Any:
        return decode_number_texts(frame)

    def message_type(self, message: Any) -> str:
        if type(message) is dict:
            event = message["event"]
            if event == "error":
                raise StandardiseError(f"Bitfinex error event {message.get('code')}: {message.get('msg')}")
            return f"event:{event}"
        if type(message) is list and (not message or type(message[CHANNEL_ID]) is list):
            return TRADE_HISTORY
        if type(message) is not list or len(message) < 2:
            raise TypeError("not a Bitfinex event or channel frame")
        if type(message[BODY]) is str:
            return message[BODY]
        if self.raw_key is None:
            raise StandardiseError("channel data names no symbol or channel: it needs its raw key from the connector")
        feed = self.raw_key_parts()[2]
        if feed == FEED_UNKNOWN_CHANNEL:
            raise StandardiseError(f"data of channel {message[CHANNEL_ID]!r} whose subscribed event was not seen")
        return FEED_CANDLES if feed.startswith(FEED_CANDLES) else feed

    def convert_symbol(self, exchange_symbol: str) -> str:
        symbol = self._symbols.get(exchange_symbol)
        if symbol is None:
            symbol = self._symbols[exchange_symbol] = normalise_trading_symbol(exchange_symbol)
        return symbol

    # -- frame parts ---------------------------------------------------------------------

    def _symbol(self) -> str:
        return self.symbol_of(self.raw_key_parts()[1])

    @staticmethod
    def _parts(message: list, body_index: int) -> tuple[Any, int | None, int | None]:
        """(body, SEQ_ALL sequence or None, exchange time in ms or None)."""
        body = message[body_index]
        trailer = message[body_index + 1 :]
        sequence = integer(trailer[TRAILER_SEQUENCE]) if len(trailer) > TRAILER_SEQUENCE else None
        time = integer(trailer[TRAILER_TIME]) if len(trailer) > TRAILER_TIME else None
        return body, sequence, time

    # -- raw books: lob_l3 ---------------------------------------------------------------

    def _raw_book(self, message: list, atom_timestamp: int) -> list[Output]:
        body, sequence, time = self._parts(message, BODY)
        symbol = self._symbol()
        event_timestamp = atom_timestamp // 1000 if time is None else time
        if is_snapshot(body):
            outputs = self._order_snapshot(symbol, body, sequence, event_timestamp, atom_timestamp)
        else:
            outputs = self._order_update(symbol, body, sequence, event_timestamp, atom_timestamp)
        return outputs + self.book_checks.requests(symbol, atom_timestamp)

    @staticmethod
    def _order(
        symbol: str,
        event_type: str,
        order_id: int,
        side: str,
        price: Decimal | None,
        size: Decimal,
        snapshot: bool,
        sequence: int | None,
        event_timestamp: int,
        atom_timestamp: int,
    ) -> Output:
        record = records_build.lob_l3_event(
            exchange=SOURCE, symbol=symbol, event_type=event_type, order_id=str(order_id), side=side, price=price,
            size=size, is_snapshot=snapshot, sequence=sequence, event_timestamp=event_timestamp,
            atom_timestamp=atom_timestamp,
        )
        return Output(LOB_L3, normalised_key(SOURCE, symbol), record)

    def _order_snapshot(
        self, symbol: str, entries: list, sequence: int | None, event_timestamp: int, atom_timestamp: int
    ) -> list[Output]:
        """The book anew: every order ``open``, and the orders known from now on."""
        orders: dict[int, tuple[str, Decimal, Decimal]] = {}
        for entry in entries:
            amount = exact(entry[ORDER_AMOUNT])
            orders[integer(entry[ORDER_ID])] = (book_side(amount), exact(entry[ORDER_PRICE]), abs(amount))
        self._orders[symbol] = orders
        self.book_checks.snapshot(symbol, sequence, atom_timestamp)
        outputs = [
            self._order(symbol, OPEN, order_id, side, price, size, True, sequence, event_timestamp, atom_timestamp)
            for order_id, (side, price, size) in orders.items()
        ]
        return outputs or self.skip("raw book snapshot: empty book")

    def _order_update(
        self, symbol: str, entry: list, sequence: int | None, event_timestamp: int, atom_timestamp: int
    ) -> list[Output]:
        """Read in full first (a malformed update moves no book); a repeat changes no order."""
        order_id = integer(entry[ORDER_ID])
        price = exact(entry[ORDER_PRICE])
        amount = exact(entry[ORDER_AMOUNT])
        side = book_side(amount)
        verdict = self.book_checks.update(symbol, sequence, None, atom_timestamp)
        repeat = repeat_reason(self.book_checks, symbol, sequence, verdict)
        if repeat is not None:
            return self.skip(repeat)
        orders = self._orders.setdefault(symbol, {})
        if price == 0:
            known = orders.pop(order_id, None)
            # An order this state never saw (e.g. after a processor restart): done, price unknown.
            price_of_known = None if known is None else known[1]
            return [self._order(symbol, DONE, order_id, side, price_of_known, ZERO, False, sequence, event_timestamp,
                                atom_timestamp)]
        event_type = CHANGE if order_id in orders else OPEN
        orders[order_id] = (side, price, abs(amount))
        return [self._order(symbol, event_type, order_id, side, price, abs(amount), False, sequence, event_timestamp,
                            atom_timestamp)]

    # -- P0 books: lob -------------------------------------------------------------------

    def _book(self, message: list, atom_timestamp: int) -> list[Output]:
        """Read in full first; a snapshot replaces the book, an update is checked against it."""
        body, sequence, time = self._parts(message, BODY)
        symbol = self._symbol()
        key = normalised_key(SOURCE, symbol)
        snapshot = is_snapshot(body)
        template = records_build.lob_template(
            exchange=SOURCE, symbol=symbol, is_snapshot=snapshot, sequence=sequence, event_timestamp=time,
            atom_timestamp=atom_timestamp,
        )
        levels = [self._level(entry) for entry in (body if snapshot else [body])]
        outputs: list[Output] = []
        records_build.lob_sided_outputs(outputs, template, key, SIDES, SIDES.__getitem__, levels, self.lob_writer)
        if snapshot:
            self.level_checks.snapshot(symbol, sequence, atom_timestamp)
            if not outputs:
                outputs = self.skip("book: empty snapshot")
        else:
            verdict = self.level_checks.update(symbol, sequence, None, atom_timestamp)
            repeat = repeat_reason(self.level_checks, symbol, sequence, verdict)
            if repeat is not None:
                outputs = self.skip(repeat)
        return outputs + self.level_checks.requests(symbol, atom_timestamp)

    @staticmethod
    def _level(entry: list) -> tuple[str, Decimal, Decimal]:
        """``(side, price, size)`` of one ``[price, count, amount]`` entry (as ``lob_sided_outputs`` reads levels)."""
        amount = exact(entry[LEVEL_AMOUNT])
        # A count of 0 removes the level; its amount (1 or -1) then only tells the side.
        removed = integer(entry[LEVEL_COUNT]) == 0
        return book_side(amount), exact(entry[LEVEL_PRICE]), ZERO if removed else abs(amount)

    # -- trades --------------------------------------------------------------------------

    @staticmethod
    def _trade(symbol: str, entry: list, sequence: int | None, atom_timestamp: int, origin: str | None = None) -> Output:
        amount = exact(entry[TRADE_AMOUNT])
        record = records_build.trade(
            exchange=SOURCE,
            symbol=symbol,
            trade_id=str(integer(entry[TRADE_ID])),
            price=exact(entry[TRADE_PRICE]),
            size=abs(amount),
            taker_side=taker_side(amount),
            sequence=sequence,
            origin=origin,
            event_timestamp=integer(entry[TRADE_TIME]),
            atom_timestamp=atom_timestamp,
        )
        return Output(TRADES, normalised_key(SOURCE, symbol), record)

    def _once(self, outputs: list[Output]) -> list[Output]:
        """The trades not yet published (by id), in id order; the others are counted skips."""
        symbol = outputs[0].record["symbol"] if outputs else ""
        trades = ((int(output.record["trade_id"]), output) for output in outputs)
        return unpublished(self.published, symbol, trades, self.skipped, ALREADY_PUBLISHED)

    def _trades_snapshot(self, message: list, atom_timestamp: int) -> list[Output]:
        body, sequence, _ = self._parts(message, BODY)
        if not is_snapshot(body):
            raise ValueError("untagged trades data must be a snapshot (updates come as te/tu)")
        if not body:
            return self.skip("trades: empty snapshot")
        symbol = self._symbol()
        return self._once([self._trade(symbol, entry, sequence, atom_timestamp) for entry in body])

    def _trade_execution(self, message: list, atom_timestamp: int) -> list[Output]:
        body, sequence, _ = self._parts(message, TAGGED_BODY)
        return self._once([self._trade(self._symbol(), body, sequence, atom_timestamp)])

    def _trade_history(self, page: list, atom_timestamp: int) -> list[Output]:
        """A backfilled ``trades/hist`` page: the trades not yet published, in id order, marked ``backfill``."""
        symbol = self.keyed_symbol("trade history page")
        return self._once([self._trade(symbol, entry, None, atom_timestamp, ORIGIN_BACKFILL) for entry in page])

    # -- ticker and candles --------------------------------------------------------------

    def _ticker(self, message: list, atom_timestamp: int) -> list[Output]:
        body, sequence, time = self._parts(message, BODY)
        symbol = self._symbol()
        record = records_build.ticker(
            exchange=SOURCE,
            symbol=symbol,
            bid_price=exact(body[TICKER_BID]),
            ask_price=exact(body[TICKER_ASK]),
            last_price=exact(body[TICKER_LAST_PRICE]),
            sequence=sequence,
            event_timestamp=atom_timestamp // 1000 if time is None else time,
            atom_timestamp=atom_timestamp,
        )
        return [Output(TICKER, normalised_key(SOURCE, symbol), record)]

    def _candles(self, message: list, atom_timestamp: int) -> list[Output]:
        body, _, time = self._parts(message, BODY)
        timeframe = self.raw_key_parts()[2][len(FEED_CANDLES) :]
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"unsupported candle timeframe {timeframe!r}; known: {', '.join(TIMEFRAMES)}")
        interval, length = TIMEFRAMES[timeframe]
        snapshot = is_snapshot(body)
        if snapshot and not body:
            return self.skip("candles: empty snapshot")
        symbol = self._symbol()
        key = normalised_key(SOURCE, symbol)
        now = atom_timestamp // 1000 if time is None else time
        outputs = []
        for entry in body if snapshot else [body]:
            start = integer(entry[CANDLE_TIME])
            record = records_build.exchange_candle(
                exchange=SOURCE,
                symbol=symbol,
                interval=interval,
                start=start,
                end=start + length,
                open=exact(entry[CANDLE_OPEN]),
                high=exact(entry[CANDLE_HIGH]),
                low=exact(entry[CANDLE_LOW]),
                close=exact(entry[CANDLE_CLOSE]),
                volume=exact(entry[CANDLE_VOLUME]),
                closed=now >= start + length,
                event_timestamp=now,
                atom_timestamp=atom_timestamp,
            )
            outputs.append(Output(CANDLE, key, record))
        return outputs
