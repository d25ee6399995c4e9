"""Binance spot streams -> ``lob``, ``trades``, ``ticker``, ``candle`` (and ``book_resync`` requests).

Frames come wrapped as combined streams (``{"stream": ..., "data": {...}}``); raw
``/ws`` payloads are understood too.  ``depthUpdate`` diffs and REST book snapshots
(``{"lastUpdateId", "bids", "asks"}``, fetched by the connector after every connect and
on resync and archived under the symbol's depth key, which is how their symbol is
known) feed ``lob``.  A diff's ``sequence`` is its final update id ``u`` and its
``prev_sequence`` the update before its first, ``U`` - 1 (futures: ``pu``, the previous
diff's ``u``); a snapshot's ``sequence`` is ``lastUpdateId``.  Binance's rule for
joining them: diffs with ``u`` <= ``lastUpdateId`` are already in the snapshot and are
skipped, the first one applied has ``U`` <= ``lastUpdateId`` + 1 <= ``u``; a diff that
does not start where the book ends is a gap, published, with a ``book_resync``
request (:class:`~l3_atom.stream_processing.book_checks.BookChecks`).  ``trade`` and
``aggTrade`` are trades (``m`` = the buyer is the maker, so the taker sold).  Pages
of the REST trade histories the connector archived to fill a gap (JSON lists:
``aggTrades`` entries carry ``a``, spot ``historicalTrades`` entries ``id``, which is
the ``trade`` stream's ``t``) become trades with ``origin`` ``backfill``; every trade
id (or aggregate id), streamed or backfilled, is published once.
``bookTicker`` is the best bid and offer; spot's carries no time, so its
``event_timestamp`` is the receive time.  Klines are relayed as candles.  Binance
symbols (``NKNUSDT``) cannot be split without the symbol list, so names come from
the connector's symbol header.

:class:`BinanceStandardiser` is also the base of ``binance_futures``: the protocol is
the same.
"""

from __future__ import annotations

from typing import Any, ClassVar

from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.book_checks import BookChecks, repeat_reason
from l3_atom.stream_processing.standardiser import Output, StandardiseError, Standardiser, exact, integer
from l3_atom.stream_processing.trade_ids import PublishedIds, unpublished
from l3_atom.topics import (
    BOOK_RESYNC,
    CANDLE,
    LOB,
    ORIGIN_BACKFILL,
    TICKER,
    TRADES,
    normalised_key,
)

MS_PER_US = 1000
DEPTH_SNAPSHOT = "depthSnapshot"
BOOK_TICKER = "bookTicker"
OPEN_INTEREST = "openInterest"
SUBSCRIPTION_ACK = "result"
# Pages of the REST trade histories (JSON lists), archived by the connector to fill a gap.
AGG_TRADE_HISTORY = "aggTradeHistory"
TRADE_HISTORY = "tradeHistory"
ALREADY_PUBLISHED = "aggregate trade already published (streamed or backfilled)"
TRADE_ALREADY_PUBLISHED = "trade already published (streamed or backfilled)"
# Why a book update is dropped: it holds nothing the book does not have.


def taker_side(buyer_is_maker: Any) -> str:
    """Binance's ``m`` says whether the buyer was the maker: then the taker sold."""
    if buyer_is_maker is True:
        return "sell"
    if buyer_is_maker is False:
        return "buy"
    raise TypeError(f"m (buyer is maker) must be a boolean, got {buyer_is_maker!r}")


def text(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")
    return value


def boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise TypeError(f"expected a boolean, got {type(value).__name__} {value!r}")
    return value


def event_time(message: dict) -> int:
    """The matching engine's time ``T`` where the payload has one, else the event time ``E``."""
    return integer(message["T"] if "T" in message else message["E"])


class BinanceStandardiser(Standardiser):
    source = "binance"
    topics = (LOB, TRADES, TICKER, CANDLE, BOOK_RESYNC)
    handlers: ClassVar[dict[str, str]] = {
        "depthUpdate": "_depth_update",
        DEPTH_SNAPSHOT: "_depth_snapshot",
        "trade": "_trade",
        "aggTrade": "_agg_trade",
        AGG_TRADE_HISTORY: "_agg_trade_history",
        TRADE_HISTORY: "_trade_history",
        BOOK_TICKER: "_book_ticker",
        "kline": "_kline",
    }
    skips: ClassVar[dict[str, str]] = {
        SUBSCRIPTION_ACK: "subscription ack",
        "serverShutdown": "server shutdown notice (the connector reconnects)",
    }

    def __init__(self) -> None:
        super().__init__()
        self.book_checks = BookChecks(self.source)
        # Aggregate trade ids and trade ids (two numberings) published, streamed or backfilled: each once.
        self.published = PublishedIds()
        self.published_trades = PublishedIds()

    def decode(self, frame: bytes) -> Any:
        """The payload: combined-stream frames are unwrapped (a wrapper without ``data`` has no type)."""
        message = super().decode(frame)
        if type(message) is dict and "stream" in message:
            return message.get("data")
        return message

    def message_type(self, message: Any) -> str:
        if type(message) is list:
            return TRADE_HISTORY if message and type(message[0]) is dict and "id" in message[0] else AGG_TRADE_HISTORY
        kind = message.get("e")
        if kind is not None:
            return kind
        if "lastUpdateId" in message:
            return DEPTH_SNAPSHOT
        if OPEN_INTEREST in message:
            return OPEN_INTEREST
        if SUBSCRIPTION_ACK in message and "id" in message:
            return SUBSCRIPTION_ACK
        if "code" in message and "msg" in message:
            raise StandardiseError(f"binance error {message['code']}: {message['msg']}")
        if "u" in message and "b" in message and "a" in message:
            return BOOK_TICKER
        raise KeyError("e")

    def _key(self, symbol: str) -> str:
        return normalised_key(self.source, symbol)

    def _levels(
        self, symbol: str, bids: Any, asks: Any, snapshot: bool, sequence: int, prev_sequence: int | None,
        time: int | None, atom_timestamp: int,
    ) -> list[Output]:
        return records_build.book_levels(
            exchange=self.source, symbol=symbol, key=self._key(symbol), bids=bids, asks=asks, is_snapshot=snapshot,
            sequence=sequence, prev_sequence=prev_sequence, event_timestamp=time, atom_timestamp=atom_timestamp,
            writer=self.lob_writer,
        )

    @staticmethod
    def previous_update_id(message: dict) -> int:
        """The update id just before this diff's first one (spot: ``U`` - 1)."""
        return integer(message["U"]) - 1

    def _depth_update(self, message: dict, atom_timestamp: int) -> list[Output]:
        """Read in full first (a malformed diff moves no book); then even a diff without levels moves the book."""
        symbol = self.symbol_of(message["s"])
        sequence = integer(message["u"])
        prev_sequence = self.previous_update_id(message)
        records = self._levels(
            symbol, message["b"], message["a"], False, sequence, prev_sequence, event_time(message), atom_timestamp
        )
        verdict = self.book_checks.update(symbol, sequence, prev_sequence, atom_timestamp)
        repeat = repeat_reason(self.book_checks, symbol, sequence, verdict)
        if repeat is not None:
            records = self.skip(repeat)
        elif not records:
            records = self.skip("depthUpdate without level changes")
        return records + self.book_checks.requests(symbol, atom_timestamp)

    def _depth_snapshot(self, message: dict, atom_timestamp: int) -> list[Output]:
        """A REST snapshot names no symbol: the connector archived it under the symbol's depth key."""
        symbol = self.keyed_symbol("REST depth snapshot")
        sequence = integer(message["lastUpdateId"])
        time = event_time(message) if "T" in message or "E" in message else None
        records = self._levels(symbol, message["bids"], message["asks"], True, sequence, None, time, atom_timestamp)
        self.book_checks.snapshot(symbol, sequence, atom_timestamp)
        if not records:
            records = self.skip("depth snapshot of an empty book")
        return records + self.book_checks.requests(symbol, atom_timestamp)

    def _trade(self, message: dict, atom_timestamp: int) -> list[Output]:
        [output] = self._trade_record(message, message["t"], atom_timestamp)
        if self.published_trades.add(output.record["symbol"], output.record["sequence"]):
            return [output]
        return self.skip(TRADE_ALREADY_PUBLISHED)

    def _agg_trade(self, message: dict, atom_timestamp: int) -> list[Output]:
        [output] = self._trade_record(message, message["a"], atom_timestamp)
        if self.published.add(output.record["symbol"], output.record["sequence"]):
            return [output]
        return self.skip(ALREADY_PUBLISHED)

    def _agg_trade_history(self, page: list, atom_timestamp: int) -> list[Output]:
        """A backfilled page of ``aggTrades`` (no ``s``: the raw key names the symbol): new ids, marked, in order."""
        return self._history(page, "a", self.published, ALREADY_PUBLISHED, atom_timestamp)

    def _trade_history(self, page: list, atom_timestamp: int) -> list[Output]:
        """A backfilled page of spot ``historicalTrades``, as ``trade`` stream messages (``t``, ``p``, ``q``, ``T``, ``m``)."""
        trades = [{"t": trade["id"], "p": trade["price"], "q": trade["qty"], "T": trade["time"],
                   "m": trade["isBuyerMaker"]} for trade in page]
        return self._history(trades, "t", self.published_trades, TRADE_ALREADY_PUBLISHED, atom_timestamp)

    def _history(self, page: list, id_field: str, published: PublishedIds, repeat: str,
                 atom_timestamp: int) -> list[Output]:
        """The trades of a backfilled page not yet published, in id order, marked ``backfill``."""
        exchange_symbol = self.raw_key_parts()[1]
        built = [self._trade_record({**trade, "s": exchange_symbol}, trade[id_field], atom_timestamp, ORIGIN_BACKFILL)[0]
                 for trade in page]
        if not built:
            return []
        return unpublished(published, built[0].record["symbol"], ((o.record["sequence"], o) for o in built),
                           self.skipped, repeat)

    def _trade_record(
        self, message: dict, trade_id: Any, atom_timestamp: int, origin: str | None = None
    ) -> list[Output]:
        """Trade ids (and aggregate trade ids) count up by one per symbol: they are the sequence too."""
        trade_id = integer(trade_id)
        symbol = self.symbol_of(message["s"])
        record = records_build.trade(
            exchange=self.source,
            symbol=symbol,
            trade_id=str(trade_id),
            price=exact(message["p"]),
            size=exact(message["q"]),
            taker_side=taker_side(message["m"]),
            sequence=trade_id,
            origin=origin,
            event_timestamp=integer(message["T"]),
            atom_timestamp=atom_timestamp,
        )
        return [Output(TRADES, self._key(symbol), record)]

    def _book_ticker(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol_of(message["s"])
        timed = "T" in message or "E" in message
        record = records_build.ticker(
            exchange=self.source,
            symbol=symbol,
            bid_price=exact(message["b"]),
            bid_size=exact(message["B"]),
            ask_price=exact(message["a"]),
            ask_size=exact(message["A"]),
            sequence=integer(message["u"]),
            event_timestamp=event_time(message) if timed else atom_timestamp // MS_PER_US,
            atom_timestamp=atom_timestamp,
        )
        return [Output(TICKER, self._key(symbol), record)]

    def _kline(self, message: dict, atom_timestamp: int) -> list[Output]:
        """Binance's close time ``T`` is the window's last millisecond: the exclusive end is one later."""
        symbol = self.symbol_of(message["s"])
        kline = message["k"]
        record = records_build.exchange_candle(
            exchange=self.source,
            symbol=symbol,
            interval=text(kline["i"]),
            start=integer(kline["t"]),
            end=integer(kline["T"]) + 1,
            open=exact(kline["o"]),
            high=exact(kline["h"]),
            low=exact(kline["l"]),
            close=exact(kline["c"]),
            volume=exact(kline["v"]),
            quote_volume=exact(kline["q"]),
            trade_count=integer(kline["n"]),
            closed=boolean(kline["x"]),
            event_timestamp=integer(message["E"]),
            atom_timestamp=atom_timestamp,
        )
        return [Output(CANDLE, self._key(symbol), record)]
