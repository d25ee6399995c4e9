"""Gemini market data v2 -> ``lob``, ``trades``, ``candle``.

``l2_updates``: ``changes`` are ``[side, price, quantity]`` (side ``buy`` is a
bid; quantity 0 removes the level).  The first message of a symbol's
subscription is its whole book, sent on every subscribe (so a resync is a
reconnect), and only it carries ``trades`` (the last 50) and
``auction_events``: that is how it is told apart, here and after a reconnect.
Its levels are ``is_snapshot``, its trades are published like live ones, except
those whose ``tid`` was published already (``sequence`` = ``event_id`` lets a
consumer drop repeats of trades without a ``tid`` after a reconnect).
Gemini's v2 book messages carry no time and no sequence number (only v1 sends a
``socket_sequence``; the v2 recording has none): ``event_timestamp``,
``sequence`` and ``prev_sequence`` are null on ``lob``, so no gap, repeat or
reordering can be seen and none is skipped.  A book with updates and no
snapshot asks for a resync (``book_resync``).

``trade``: ``side`` is the taker's.  ``tid`` (the trade id) is newer than the
2021 recording; where it is absent ``trade_id`` is null.  Pages of the REST trade
history (``GET /v1/trades/{symbol}``: a JSON list, newest first, of ``{timestamp,
timestampms, tid, price, amount, exchange, type}``) the connector archived under the
symbol's ``l2`` key to fill a gap become trades with ``origin`` ``backfill``, in
``tid`` order: ``type`` is the taker's side as the stream's ``side``, ``amount`` its
``quantity``; the history has no ``event_id``, so their ``sequence`` is null; a trade
marked ``broken`` (listed only on request) is skipped.  Each
``tid``, streamed or backfilled, is published once (streamed trades without one
cannot be checked).

``candles_*_updates``: ``changes`` are ``[time, open, high, low, close,
volume]`` with JSON numbers (decoded exactly), newest first.  Gemini flags no
candle as final: a candle with a newer one in the same message is closed, the
newest is not.  ``event_timestamp`` is the candle's own time, the
only one Gemini gives.  Auction events are not part of the normalised topics.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.book_checks import BookChecks
from l3_atom.stream_processing.standardiser import (
    Output,
    StandardiseError,
    Standardiser,
    decode_exact,
    exact,
    integer,
)
from l3_atom.stream_processing.trade_ids import PublishedIds
from l3_atom.topics import BOOK_RESYNC, CANDLE, LOB, ORIGIN_BACKFILL, TRADES, normalised_key

SOURCE = "gemini"
BOOK_SIDE = {"buy": "bid", "sell": "ask"}
TAKER_SIDES = frozenset({"buy", "sell"})
# A book change is [side, price, quantity] (records_build.lob_sided_outputs reads it);
# a candle is [time, open, high, low, close, volume].
CANDLE_TIME, CANDLE_OPEN, CANDLE_HIGH, CANDLE_LOW, CANDLE_CLOSE, CANDLE_VOLUME = range(6)
MS_PER_MINUTE = 60_000
# Gemini candle feeds -> length in ms (the feed name's interval is the normalised one).
CANDLE_INTERVALS = {
    "1m": MS_PER_MINUTE,
    "5m": 5 * MS_PER_MINUTE,
    "15m": 15 * MS_PER_MINUTE,
    "30m": 30 * MS_PER_MINUTE,
    "1h": 60 * MS_PER_MINUTE,
    "6h": 360 * MS_PER_MINUTE,
    "1d": 1440 * MS_PER_MINUTE,
}
CANDLE_TYPE_PREFIX, CANDLE_TYPE_SUFFIX = "candles_", "_updates"
# Candle frames carry prices as JSON numbers: they are decoded exactly, the rest with orjson.
CANDLE_MARKER = b'"candles_'
# A page of the REST trade history (a JSON list), archived by the connector to fill a gap.
TRADE_HISTORY = "tradeHistory"
ALREADY_PUBLISHED = "trade already published (streamed or backfilled)"
BROKEN = "broken trade (reversed by Gemini: it did not stand)"


def book_side(side: Any) -> str:
    try:
        return BOOK_SIDE[side]
    except (KeyError, TypeError):
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}") from None


class GeminiStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB, TRADES, CANDLE, BOOK_RESYNC)
    handlers: ClassVar[dict[str, str]] = {
        "l2_updates": "_l2_updates",
        "trade": "_trade",
        TRADE_HISTORY: "_trade_history",
        **{f"{CANDLE_TYPE_PREFIX}{interval}{CANDLE_TYPE_SUFFIX}": "_candles" for interval in CANDLE_INTERVALS},
    }
    skips: ClassVar[dict[str, str]] = {"heartbeat": "heartbeat"}

    def __init__(self) -> None:
        super().__init__()
        self.book_checks = BookChecks(SOURCE)
        # Trade ids (tid) published, streamed or backfilled: each once.
        self.published = PublishedIds()

    def decode(self, frame: bytes) -> Any:
        if CANDLE_MARKER in frame:
            return decode_exact(frame)
        try:
            return orjson.loads(frame)
        except orjson.JSONDecodeError as exc:
            raise StandardiseError(f"malformed JSON: {exc}") from None

    def message_type(self, message: Any) -> str:
        """A JSON list of objects is a trade history page; anything else names its type."""
        if type(message) is list and all(type(entry) is dict for entry in message):
            return TRADE_HISTORY
        return message["type"]

    def _trade_record(self, symbol: str, trade: dict, atom_timestamp: int) -> dict[str, Any]:
        side = trade["side"]
        if side not in TAKER_SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        tid = trade.get("tid")
        # The book's embedded trades have been documented with "eventid" as well as "event_id".
        event_id = trade["event_id"] if "event_id" in trade else trade.get("eventid")
        return records_build.trade(
            exchange=SOURCE,
            symbol=symbol,
            trade_id=None if tid is None else str(integer(tid)),
            price=exact(trade["price"]),
            size=exact(trade["quantity"]),
            taker_side=side,
            sequence=None if event_id is None else integer(event_id),
            event_timestamp=integer(trade["timestamp"]),
            atom_timestamp=atom_timestamp,
        )

    def _l2_updates(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol_of(message["symbol"])
        key = normalised_key(SOURCE, symbol)
        snapshot = "trades" in message
        template = records_build.lob_template(
            exchange=SOURCE, symbol=symbol, is_snapshot=snapshot, atom_timestamp=atom_timestamp
        )
        outputs: list[Output] = []
        # Each change is [side, price, quantity].
        records_build.lob_sided_outputs(outputs, template, key, BOOK_SIDE, book_side, message["changes"], self.lob_writer)
        if snapshot:
            records = (self._trade_record(symbol, t, atom_timestamp) for t in message["trades"])
            outputs += [Output(TRADES, key, record) for record in records if self._first(symbol, record)]
            self.book_checks.snapshot(symbol, None, atom_timestamp)
        else:
            # No number to check: this only notes that the book has updates (and whether a snapshot came).
            self.book_checks.update(symbol, None, None, atom_timestamp)
        return (outputs or self.skip("l2_updates without changes")) + self.book_checks.requests(symbol, atom_timestamp)

    def _trade(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol_of(message["symbol"])
        record = self._trade_record(symbol, message, atom_timestamp)
        if not self._first(symbol, record):
            return []
        return [Output(TRADES, normalised_key(SOURCE, symbol), record)]

    def _first(self, symbol: str, record: dict[str, Any]) -> bool:
        """Whether the trade is published for the first time (always, for one without a ``tid``); counts repeats."""
        if record["trade_id"] is None or self.published.add(symbol, int(record["trade_id"])):
            return True
        self.skipped[ALREADY_PUBLISHED] += 1
        return False

    def _trade_history(self, page: list, atom_timestamp: int) -> list[Output]:
        """A backfilled page (the raw key names the symbol): trades not yet published, oldest first, marked."""
        symbol = self.keyed_symbol("REST trade page")
        key = normalised_key(SOURCE, symbol)
        outputs = []
        for trade in sorted(page, key=lambda trade: integer(trade["tid"])):
            if trade.get("broken") is True:
                self.skipped[BROKEN] += 1
                continue
            record = self._trade_record(symbol, {"side": trade["type"], "tid": trade["tid"], "price": trade["price"],
                                                 "quantity": trade["amount"], "timestamp": trade["timestampms"]},
                                        atom_timestamp)
            record["origin"] = ORIGIN_BACKFILL
            if self._first(symbol, record):
                outputs.append(Output(TRADES, key, record))
        return outputs

    def _candles(self, message: dict, atom_timestamp: int) -> list[Output]:
        interval = message["type"][len(CANDLE_TYPE_PREFIX) : -len(CANDLE_TYPE_SUFFIX)]
        length_ms = CANDLE_INTERVALS[interval]
        symbol = self.symbol_of(message["symbol"])
        key = normalised_key(SOURCE, symbol)
        candles = message["changes"]
        if not candles:
            return self.skip("candle update without candles")
        newest = max(integer(candle[CANDLE_TIME]) for candle in candles)
        outputs = []
        for candle in candles:
            start = integer(candle[CANDLE_TIME])
            record = records_build.exchange_candle(
                exchange=SOURCE,
                symbol=symbol,
                interval=interval,
                start=start,
                end=start + length_ms,
                open=exact(candle[CANDLE_OPEN]),
                high=exact(candle[CANDLE_HIGH]),
                low=exact(candle[CANDLE_LOW]),
                close=exact(candle[CANDLE_CLOSE]),
                volume=exact(candle[CANDLE_VOLUME]),
                closed=start < newest,
                event_timestamp=start,
                atom_timestamp=atom_timestamp,
            )
            outputs.append(Output(CANDLE, key, record))
        return outputs
