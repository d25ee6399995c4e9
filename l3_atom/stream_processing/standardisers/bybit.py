"""Bybit v5 public streams -> ``lob``, ``ticker``, ``trades``, ``candle``, ``funding_rate``, ``open_interest``.

- ``orderbook.50`` (and deeper): ``snapshot``/``delta`` levels, ``sequence`` = the
  update id ``u``; ``event_timestamp`` = the matching engine's ``cts`` where
  given, else ``ts``.  The book's snapshot comes over the websocket: on
  subscribe, again whenever Bybit has had a problem, and with ``u`` = 1 after a
  Bybit service restart; each replaces the book (``is_snapshot``), so a resync
  is a reconnect.  ``prev_sequence`` is null: Bybit's v5 documentation calls
  ``u`` an update id and promises no step of one between deltas (``seq``, the
  cross sequence, only orders books of different depths), so only the order of
  ``u`` is checked.  A delta whose ``u`` repeats the last one or is inside the
  snapshot is skipped, named; an older one after a newer is published and asks
  for a resync (``book_resync``), as does a book with deltas and no snapshot.
- ``orderbook.1``: the best bid and offer, so a ``ticker`` (spot ``tickers`` have none).
- ``publicTrade``: ``S`` is the taker's side; ``seq`` is Bybit's cross sequence.
- ``tickers``: linear sends a snapshot, then deltas holding only what changed.
  The last values per symbol are kept, so every record is complete; a record is
  emitted for what a message changed: the ticker (best bid/offer, last price),
  funding (rate, next time, mark and index price; not for dated futures, whose
  rate is ``""``) and open interest.  Values not yet seen (a delta before any
  snapshot) are null, and funding without a known rate is not emitted.
- ``kline``: relayed candles; Bybit's ``end`` is the window's last millisecond.

Frames are keyed by the connector with category-qualified symbols
(``linear/BTCUSDT``): spot and linear share names, so the symbol always comes
from the connector's header (there is no pure conversion).
"""

from __future__ import annotations

from typing import Any, ClassVar

from l3_atom.off_chain.bybit import CATEGORY_SEPARATOR
from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.book_checks import BookChecks, check_order
from l3_atom.stream_processing.standardiser import (
    Output,
    StandardiseError,
    Standardiser,
    exact,
    integer,
    optional_exact,
)
from l3_atom.topics import (
    BOOK_RESYNC,
    CANDLE,
    FUNDING_RATE,
    LOB,
    OPEN_INTEREST,
    TICKER,
    TRADES,
    normalised_key,
)

SOURCE = "bybit"
PRICE, SIZE = range(2)
SNAPSHOT, DELTA = "snapshot", "delta"
BOOK_TICKER_DEPTH = "1"
TAKER_SIDE = {"Buy": "buy", "Sell": "sell"}
# Bybit kline intervals are minutes, or D/W/M.
CALENDAR_INTERVALS = {"D": "1d", "W": "1w", "M": "1M"}
MINUTES_PER_HOUR = 60
TICKER_FIELDS = ("bid1Price", "bid1Size", "ask1Price", "ask1Size", "lastPrice")
FUNDING_FIELDS = ("fundingRate", "nextFundingTime", "markPrice", "indexPrice")
OPEN_INTEREST_FIELD = "openInterest"
NO_VALUE = ""
# Why a book update the book already holds is skipped.


def text(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")
    return value


def optional_price(value: Any) -> Any:
    """A decimal string, or None where Bybit sends nothing or ``""`` (no value)."""
    return None if value is None or value == NO_VALUE else exact(value)


def optional_ms(value: Any) -> int | None:
    """Milliseconds sent as a digit string (``"1673280000000"``); ``""`` or absent is None."""
    if value is None or value == NO_VALUE:
        return None
    if type(value) is not str or not value.isdigit():
        raise TypeError(f"expected milliseconds as a digit string, got {value!r}")
    return int(value)


def candle_interval(interval: Any) -> str:
    """``1`` -> ``1m``, ``60`` -> ``1h``, ``D`` -> ``1d``: the normalised interval names."""
    interval = text(interval)
    if interval in CALENDAR_INTERVALS:
        return CALENDAR_INTERVALS[interval]
    minutes = int(interval)
    if minutes % MINUTES_PER_HOUR == 0:
        return f"{minutes // MINUTES_PER_HOUR}h"
    return f"{minutes}m"


def boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise TypeError(f"expected a boolean, got {type(value).__name__} {value!r}")
    return value


class BybitStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB, TICKER, TRADES, CANDLE, FUNDING_RATE, OPEN_INTEREST, BOOK_RESYNC)
    handlers: ClassVar[dict[str, str]] = {
        "orderbook": "_orderbook",
        "bookTicker": "_book_ticker",
        "publicTrade": "_trades",
        "tickers": "_tickers",
        "kline": "_klines",
    }
    skips: ClassVar[dict[str, str]] = {
        "subscribe": "subscription ack",
        "ping": "pong",
        "pong": "pong",
        "unsubscribe": "unsubscription ack",
    }

    def __init__(self) -> None:
        super().__init__()
        # Normalised symbol -> the last value of every tickers field seen.
        self._tickers: dict[str, dict[str, Any]] = {}
        self.book_checks = BookChecks(SOURCE)

    def message_type(self, message: Any) -> str:
        topic = message.get("topic")
        if topic is None:
            op = message["op"]
            if message.get("success") is False:
                raise StandardiseError(f"bybit refused {op}: {message.get('ret_msg')}")
            return op
        kind, _, rest = text(topic).partition(".")
        if kind == "orderbook" and rest.partition(".")[0] == BOOK_TICKER_DEPTH:
            return "bookTicker"
        return kind

    def _symbol(self, exchange_symbol: Any) -> str:
        """The normalised name of a frame's symbol, qualified by the category its raw key names."""
        category, separator, _ = self.raw_key_parts()[1].partition(CATEGORY_SEPARATOR)
        name = text(exchange_symbol)
        return self.symbol_of(f"{category}{CATEGORY_SEPARATOR}{name}" if separator else name)

    def _key(self, symbol: str) -> str:
        return normalised_key(SOURCE, symbol)

    @staticmethod
    def _time(message: dict) -> int:
        """The matching engine's time ``cts`` where the frame has one, else the system time ``ts``."""
        return integer(message["cts"] if "cts" in message else message["ts"])

    def _orderbook(self, message: dict, atom_timestamp: int) -> list[Output]:
        kind = message["type"]
        if kind not in (SNAPSHOT, DELTA):
            raise ValueError(f"orderbook type must be snapshot or delta, got {kind!r}")
        book = message["data"]
        symbol = self._symbol(book["s"])
        sequence = integer(book["u"])
        records = records_build.book_levels(
            exchange=SOURCE, symbol=symbol, key=self._key(symbol), bids=book["b"], asks=book["a"],
            is_snapshot=kind == SNAPSHOT, sequence=sequence, event_timestamp=self._time(message),
            atom_timestamp=atom_timestamp, writer=self.lob_writer,
        )
        held = check_order(self.book_checks, symbol, sequence, kind == SNAPSHOT, atom_timestamp)
        outputs = self.skip(held) if held else records or self.skip(f"orderbook {kind} without levels")
        return outputs + self.book_checks.requests(symbol, atom_timestamp)

    def _book_ticker(self, message: dict, atom_timestamp: int) -> list[Output]:
        """Level 1 of the book: the best bid and offer (either side may be empty)."""
        book = message["data"]
        symbol = self._symbol(book["s"])
        bid = book["b"][0] if book["b"] else (None, None)
        ask = book["a"][0] if book["a"] else (None, None)
        record = records_build.ticker(
            exchange=SOURCE,
            symbol=symbol,
            bid_price=optional_exact(bid[PRICE]),
            bid_size=optional_exact(bid[SIZE]),
            ask_price=optional_exact(ask[PRICE]),
            ask_size=optional_exact(ask[SIZE]),
            sequence=integer(book["u"]),
            event_timestamp=self._time(message),
            atom_timestamp=atom_timestamp,
        )
        return [Output(TICKER, self._key(symbol), record)]

    def _trades(self, message: dict, atom_timestamp: int) -> list[Output]:
        outputs = []
        for trade in message["data"]:
            symbol = self._symbol(trade["s"])
            side = trade["S"]
            if side not in TAKER_SIDE:
                raise ValueError(f"S (taker side) must be Buy or Sell, got {side!r}")
            sequence = trade.get("seq")
            outputs.append(Output(TRADES, self._key(symbol), records_build.trade(
                exchange=SOURCE,
                symbol=symbol,
                trade_id=text(trade["i"]),
                price=exact(trade["p"]),
                size=exact(trade["v"]),
                taker_side=TAKER_SIDE[side],
                sequence=None if sequence is None else integer(sequence),
                event_timestamp=integer(trade["T"]),
                atom_timestamp=atom_timestamp,
            )))
        return outputs or self.skip("publicTrade without trades")

    def _klines(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self._symbol(text(message["topic"]).rpartition(".")[2])
        key = self._key(symbol)
        event_timestamp = integer(message["ts"])
        outputs = [
            Output(CANDLE, key, records_build.exchange_candle(
                exchange=SOURCE,
                symbol=symbol,
                interval=candle_interval(kline["interval"]),
                start=integer(kline["start"]),
                end=integer(kline["end"]) + 1,
                open=exact(kline["open"]),
                high=exact(kline["high"]),
                low=exact(kline["low"]),
                close=exact(kline["close"]),
                volume=exact(kline["volume"]),
                quote_volume=exact(kline["turnover"]),
                last_trade_timestamp=integer(kline["timestamp"]),
                closed=boolean(kline["confirm"]),
                event_timestamp=event_timestamp,
                atom_timestamp=atom_timestamp,
            ))
            for kline in message["data"]
        ]
        return outputs or self.skip("kline without candles")

    def _tickers(self, message: dict, atom_timestamp: int) -> list[Output]:
        kind = message["type"]
        if kind not in (SNAPSHOT, DELTA):
            raise ValueError(f"tickers type must be snapshot or delta, got {kind!r}")
        changes = message["data"]
        symbol = self._symbol(changes["symbol"])
        if kind == SNAPSHOT:
            self._tickers[symbol] = {}
        fields = self._tickers.setdefault(symbol, {})
        fields.update(changes)
        key = self._key(symbol)
        event_timestamp = integer(message["ts"])
        sequence = message.get("cs")
        outputs = []
        if any(f in changes for f in TICKER_FIELDS):
            outputs.append(Output(TICKER, key, records_build.ticker(
                exchange=SOURCE,
                symbol=symbol,
                bid_price=optional_price(fields.get("bid1Price")),
                bid_size=optional_price(fields.get("bid1Size")),
                ask_price=optional_price(fields.get("ask1Price")),
                ask_size=optional_price(fields.get("ask1Size")),
                last_price=optional_price(fields.get("lastPrice")),
                sequence=None if sequence is None else integer(sequence),
                event_timestamp=event_timestamp,
                atom_timestamp=atom_timestamp,
            )))
        rate = optional_price(fields.get("fundingRate"))
        if rate is not None and any(f in changes for f in FUNDING_FIELDS):
            outputs.append(Output(FUNDING_RATE, key, records_build.funding_rate(
                exchange=SOURCE,
                symbol=symbol,
                rate=rate,
                mark_price=optional_price(fields.get("markPrice")),
                index_price=optional_price(fields.get("indexPrice")),
                next_funding_timestamp=optional_ms(fields.get("nextFundingTime")),
                event_timestamp=event_timestamp,
                atom_timestamp=atom_timestamp,
            )))
        open_interest = optional_price(changes.get(OPEN_INTEREST_FIELD))
        if open_interest is not None:
            outputs.append(Output(OPEN_INTEREST, key, records_build.open_interest(
                exchange=SOURCE,
                symbol=symbol,
                open_interest=open_interest,
                event_timestamp=event_timestamp,
                atom_timestamp=atom_timestamp,
            )))
        return outputs or self.skip("tickers update without ticker, funding or open-interest changes")
