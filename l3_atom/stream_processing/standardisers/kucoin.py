"""KuCoin spot public websocket -> ``lob``, ``trades``, ``ticker``, ``candle`` (and ``book_resync`` requests).

Data frames are ``{"type": "message", "topic": "/market/<channel>:<symbol>",
"subject", "data"}``; the server also sends ``welcome``, ``ack`` (to a
subscribe), ``pong`` (to the client's ping) and ``error``.  Prices and sizes
are strings, so orjson decodes exactly.

Books, as KuCoin documents them: ``/market/level2`` carries increments only,
each message a run of changes ``[price, size, sequence]`` numbered
``sequenceStart`` .. ``sequenceEnd``; the snapshot is the REST body of
``GET /api/v1/market/orderbook/level2_100`` (the best 100 levels a side:
deeper levels appear as changes reach them), which the connector fetches
after every connect and on every resync and archives under the symbol's
level2 key, which is how its symbol is known.  Records: a snapshot's
``sequence`` is its ``sequence``; an increment's records all carry the
message's ``sequence`` = ``sequenceEnd`` and ``prev_sequence`` =
``sequenceStart`` - 1, so a message starting beyond the book's last number
is a gap.  KuCoin's rule for joining them: changes numbered at or below the
snapshot's ``sequence`` are already in it and are left out, a message wholly
at or below it is skipped; increments that reached the raw topic before the
snapshot but are newer than it are published again after it
(:class:`~l3_atom.stream_processing.book_checks.RecentUpdates`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple

from l3_atom.off_chain.kucoin import CANDLES, CODE_OK, LEVEL2, MATCH, MESSAGE, TICKER_CHANNEL, split_topic
from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.book_checks import (
    IN_SNAPSHOT,
    BookChecks,
    RecentUpdates,
    repeat_reason,
    snapshot_sequence,
)
from l3_atom.stream_processing.standardiser import Output, StandardiseError, Standardiser, exact, integer
from l3_atom.tokens import Symbol, SymbolError
from l3_atom.topics import BOOK_RESYNC, CANDLE, LOB, TICKER, TRADES, normalised_key

SOURCE = "kucoin"
MESSAGE_PREFIX = "message:"

BOOK_SIDES = (("bid", "bids"), ("ask", "asks"))
# A level2 change is [price, size, sequence].
CHANGE_PRICE, CHANGE_SIZE, CHANGE_SEQUENCE = range(3)
TAKER_SIDES = ("buy", "sell")
# The documented schema names the ticker's time ``time``; the documentation's example prints ``Time``.
TICKER_TIME_FIELDS = ("time", "Time")
# A candle is [start (s), open, close, high, low, volume (base), amount (quote)].
CANDLE_START, CANDLE_OPEN, CANDLE_CLOSE, CANDLE_HIGH, CANDLE_LOW, CANDLE_VOLUME, CANDLE_AMOUNT = range(7)
CANDLE_FIELDS = 7
CANDLE_TYPE = re.compile(r"^(?P<count>[1-9]\d*)(?P<unit>min|hour|day|week)$")
UNIT_MS = {"min": 60_000, "hour": 3_600_000, "day": 86_400_000, "week": 604_800_000}
UNIT_NAME = {"min": "m", "hour": "h", "day": "d", "week": "w"}
MS_PER_S = 1_000
NS_PER_MS = 1_000_000
# The REST book snapshot (``{"code", "data"}``) has no "type": it dispatches as this.
LEVEL2_SNAPSHOT = "level2 snapshot"


def digits(value: Any) -> int:
    """KuCoin sends sequences and some times as strings of digits."""
    if type(value) is not str or not (value.isascii() and value.isdigit()):
        raise ValueError(f"expected a string of digits, got {value!r}")
    return int(value)


def ms_from_ns(value: Any) -> int:
    """Nanoseconds since the epoch (a string for trades, a number for candles) -> milliseconds."""
    return (value if type(value) is int else digits(value)) // NS_PER_MS


class Level2(NamedTuple):
    """A level2 increment, read: its numbers, time and changes ``(side, price, size, sequence)``."""

    start: int
    end: int
    time: int | None
    changes: tuple[tuple[str, Decimal, Decimal, int], ...]


class KucoinStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB, TRADES, TICKER, CANDLE, BOOK_RESYNC)
    handlers: ClassVar[dict[str, str]] = {
        f"{MESSAGE_PREFIX}{LEVEL2}": "_level2",
        LEVEL2_SNAPSHOT: "_level2_snapshot",
        f"{MESSAGE_PREFIX}{MATCH}": "_match",
        f"{MESSAGE_PREFIX}{TICKER_CHANNEL}": "_ticker",
        f"{MESSAGE_PREFIX}{CANDLES}": "_candles",
        "error": "_error",
    }
    skips: ClassVar[dict[str, str]] = {
        "welcome": "welcome",
        "ack": "subscription ack",
        "pong": "pong",
    }

    def __init__(self) -> None:
        super().__init__()
        self._symbols: dict[str, str] = {}
        self.book_checks = BookChecks(SOURCE)
        self._recent = RecentUpdates()

    def message_type(self, message: Any) -> str:
        kind = message.get("type")
        if kind is None and "code" in message:
            return LEVEL2_SNAPSHOT
        if kind != MESSAGE:
            return message["type"]
        return f"{MESSAGE_PREFIX}{split_topic(message['topic'])[0]}"

    def convert_symbol(self, exchange_symbol: Any) -> str:
        """KuCoin symbols are ``BASE-QUOTE`` (a renamed asset may differ from its symbol: the header knows)."""
        symbol = self._symbols.get(exchange_symbol)
        if symbol is None:
            symbol = self._symbols[exchange_symbol] = _name_of(exchange_symbol)
        return symbol

    def _target(self, message: dict) -> tuple[str, str, str, dict]:
        """(normalised symbol, key, candle interval, data) of a data frame."""
        _, exchange_symbol, interval = split_topic(message["topic"])
        symbol = self.symbol_of(exchange_symbol)
        data = message["data"]
        if type(data) is not dict:
            raise TypeError(f"data must be an object, got {type(data).__name__}")
        return symbol, normalised_key(SOURCE, symbol), interval, data

    def _level2(self, message: dict, atom_timestamp: int) -> list[Output]:
        """Read in full first (a malformed message moves no book); kept for a late snapshot, then applied."""
        symbol, key, _, data = self._target(message)
        changes = data["changes"]
        time = data.get("time")
        update = Level2(
            start=integer(data["sequenceStart"]),
            end=integer(data["sequenceEnd"]),
            time=None if time is None else integer(time),
            changes=tuple(
                (side, exact(change[CHANGE_PRICE]), exact(change[CHANGE_SIZE]), digits(change[CHANGE_SEQUENCE]))
                for side, field in BOOK_SIDES
                for change in changes[field]
            ),
        )
        self._recent.keep(symbol, update.end, update, atom_timestamp)
        return self._apply_level2(symbol, key, update, atom_timestamp) + self.book_checks.requests(
            symbol, atom_timestamp
        )

    def _apply_level2(self, symbol: str, key: str, update: Level2, atom_timestamp: int) -> list[Output]:
        """The records of an increment: its changes above the book's snapshot, or a named skip."""
        prev_sequence = update.start - 1
        verdict = self.book_checks.update(symbol, update.end, prev_sequence, atom_timestamp)
        repeat = repeat_reason(self.book_checks, symbol, update.end, verdict)
        if repeat is not None:
            return self.skip(repeat)
        if not update.changes:
            return self.skip("level2: no changes")
        floor = snapshot_sequence(self.book_checks, symbol)
        outputs = [
            Output(LOB, key, records_build.lob_level(
                exchange=SOURCE, symbol=symbol, side=side, price=price, size=size, is_snapshot=False,
                sequence=update.end, prev_sequence=prev_sequence, event_timestamp=update.time,
                atom_timestamp=atom_timestamp,
            ))
            for side, price, size, sequence in update.changes
            if floor is None or sequence > floor
        ]
        return outputs or self.skip(IN_SNAPSHOT)

    def _level2_snapshot(self, message: dict, atom_timestamp: int) -> list[Output]:
        """The REST snapshot names no symbol: the connector archived it under the symbol's level2 key."""
        code = message["code"]
        if code != CODE_OK:
            raise StandardiseError(f"kucoin book snapshot answered code {code!r}: {message.get('msg')!r}")
        symbol = self.keyed_symbol("REST book snapshot")
        key = normalised_key(SOURCE, symbol)
        data = message["data"]
        sequence = digits(data["sequence"])
        time = data.get("time")
        outputs = records_build.book_levels(
            exchange=SOURCE, symbol=symbol, key=key, bids=data["bids"], asks=data["asks"], is_snapshot=True,
            sequence=sequence, event_timestamp=None if time is None else integer(time), atom_timestamp=atom_timestamp,
            writer=self.lob_writer,
        )
        self.book_checks.snapshot(symbol, sequence, atom_timestamp)
        if not outputs:
            outputs = self.skip("snapshot of an empty book")
        for kept in self._recent.replay(self.book_checks, symbol, sequence, atom_timestamp):
            outputs += self._apply_level2(symbol, key, kept.update, kept.atom_timestamp)
        return outputs + self.book_checks.requests(symbol, atom_timestamp)

    def _match(self, message: dict, atom_timestamp: int) -> list[Output]:
        """KuCoin's ``side`` is the taker's."""
        symbol, key, _, data = self._target(message)
        side = data["side"]
        if side not in TAKER_SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        trade_id = data["tradeId"]
        if type(trade_id) is not str:
            raise TypeError(f"tradeId must be a string, got {trade_id!r}")
        record = records_build.trade(
            exchange=SOURCE,
            symbol=symbol,
            trade_id=trade_id,
            price=exact(data["price"]),
            size=exact(data["size"]),
            taker_side=side,
            sequence=digits(data["sequence"]),
            event_timestamp=ms_from_ns(data["time"]),
            atom_timestamp=atom_timestamp,
        )
        return [Output(TRADES, key, record)]

    def _ticker(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol, key, _, data = self._target(message)
        time_field = next((f for f in TICKER_TIME_FIELDS if f in data), TICKER_TIME_FIELDS[0])
        record = records_build.ticker(
            exchange=SOURCE,
            symbol=symbol,
            bid_price=exact(data["bestBid"]),
            bid_size=exact(data["bestBidSize"]),
            ask_price=exact(data["bestAsk"]),
            ask_size=exact(data["bestAskSize"]),
            last_price=exact(data["price"]),
            last_size=exact(data["size"]),
            sequence=digits(data["sequence"]),
            event_timestamp=integer(data[time_field]),
            atom_timestamp=atom_timestamp,
        )
        return [Output(TICKER, key, record)]

    def _candles(self, message: dict, atom_timestamp: int) -> list[Output]:
        """KuCoin flags no candle as complete: every push is the candle so far (``closed`` false)."""
        symbol, key, interval, data = self._target(message)
        match = CANDLE_TYPE.match(interval)
        if match is None:
            raise ValueError(f"unknown candle type {interval!r}")
        candle = data["candles"]
        if len(candle) != CANDLE_FIELDS:
            raise ValueError(f"a candle has {CANDLE_FIELDS} fields, got {len(candle)}")
        start = digits(candle[CANDLE_START]) * MS_PER_S
        record = records_build.exchange_candle(
            exchange=SOURCE,
            symbol=symbol,
            interval=f"{match['count']}{UNIT_NAME[match['unit']]}",
            start=start,
            end=start + int(match["count"]) * UNIT_MS[match["unit"]],
            open=exact(candle[CANDLE_OPEN]),
            high=exact(candle[CANDLE_HIGH]),
            low=exact(candle[CANDLE_LOW]),
            close=exact(candle[CANDLE_CLOSE]),
            volume=exact(candle[CANDLE_VOLUME]),
            quote_volume=exact(candle[CANDLE_AMOUNT]),
            closed=False,
            event_timestamp=ms_from_ns(data["time"]),
            atom_timestamp=atom_timestamp,
        )
        return [Output(CANDLE, key, record)]

    def _error(self, message: dict, atom_timestamp: int) -> list[Output]:
        """A refused request or a closing connection: surfaced in dead_letter with KuCoin's own words."""
        raise StandardiseError(f"kucoin error frame, code {message.get('code')!r}: {message.get('data')!r}")


def _name_of(symbol: Any) -> str:
    if type(symbol) is not str:
        raise TypeError(f"symbol must be a string, got {symbol!r}")
    try:
        return str(Symbol.parse(symbol.replace("-", ".", 1)))
    except SymbolError:
        raise ValueError(f"symbol {symbol!r} is not BASE-QUOTE") from None
