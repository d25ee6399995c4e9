"""Phemex market data -> ``lob``, ``trades``, ``candle``.

Phemex speaks two number dialects.  Spot and the legacy (coin-margined)
contracts send *scaled integers* (``priceEp``, ``qty``/``Ev`` values) on the
``orderbook``/``trade``/``kline`` channels; USDT-margined perpetuals send
real-valued strings (``priceRp``/``sizeRq``) on ``orderbook_p``/``trade_p``/
``kline_p``.  Real values are taken as they are.

Scales are per product and come from REST (``/public/products``), which a
pure standardiser cannot call.  Phemex documents them per product class:
every spot symbol has price scale 8 and its currencies value scale 8; every
legacy contract has price scale 4 and is sized in whole contracts.  Those
class defaults are what this standardiser uses (``default_scales``); a table
for exceptions can be passed at construction.  The connector compares the
scales REST gives for every product it is asked to stream with these
defaults and refuses to start on a mismatch, so a wrong power of ten can
never reach a topic silently.

Books: Phemex sends the book's snapshot on subscribe (``type: snapshot``,
``is_snapshot`` records), so a resync is a reconnect; ``incremental`` messages
change it.  ``sequence`` is the message's ``sequence``, which Phemex documents
only as the "latest message sequence": it orders a symbol's book messages but
does not step by one between them (the documented spot updates jump from
677996548 to 677996941), so ``prev_sequence`` is null and only order is checked.
An update repeating the last sequence or inside the snapshot is skipped, named;
an older one after a newer is published and asks for a resync (``book_resync``),
as does a book with updates and no snapshot.

Trade snapshots (the history Phemex replays on every subscribe) are skipped,
counted: Phemex trades carry no id, so replayed history could not be told
apart from new trades after a reconnect.  Kline snapshots (history) are kept:
a candle is identified by its window.  Phemex klines carry no "closed" flag:
a candle is closed when a later window is in the same frame (history), and in
progress otherwise.  Their only exchange time is the window start, which is
also their ``event_timestamp``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, ClassVar

from l3_atom.off_chain.phemex import QUOTES, SPOT_PREFIX, Scales, default_scales
from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.book_checks import BookChecks, check_order
from l3_atom.stream_processing.standardiser import Output, StandardiseError, Standardiser, exact, integer
from l3_atom.topics import BOOK_RESYNC, CANDLE, LOB, TRADES, normalised_key

SOURCE = "phemex"


# Keys that hold a message's data, by message type.
BOOK, BOOK_REAL = "book", "orderbook_p"
TRADES_SCALED, TRADES_REAL = "trades", "trades_p"
KLINE, KLINE_REAL = "kline", "kline_p"
DATA_KEYS = (BOOK, BOOK_REAL, TRADES_SCALED, TRADES_REAL, KLINE, KLINE_REAL)
# Message fields that are not its type.
META_KEYS = frozenset({"symbol", "sequence", "type", "timestamp", "depth", "priceScale", "id"})

SNAPSHOT, INCREMENTAL = "snapshot", "incremental"
TAKER_SIDE = {"Buy": "buy", "Sell": "sell"}
NS_PER_MS = 1_000_000
MS_PER_S = 1000
# A trade is [timestamp ns, taker side, price, size].
TRADE_TIME, TRADE_SIDE, TRADE_PRICE, TRADE_SIZE = range(4)
# A kline is [window start s, interval s, last close, open, high, low, close, volume, turnover].
K_START, K_INTERVAL, K_LAST_CLOSE, K_OPEN, K_HIGH, K_LOW, K_CLOSE, K_VOLUME, K_TURNOVER = range(9)
INTERVAL_UNITS = (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))

Number = Callable[[Any], Decimal]


def unscale(value: Any, places: int) -> Decimal:
    """The exact decimal of a scaled integer: ``unscale(892697000000, 8) == Decimal("8926.97000000")``."""
    sign, digits, exponent = Decimal(integer(value)).as_tuple()
    return Decimal((sign, digits, exponent - places))


def ms_from_ns(value: Any) -> int:
    """Milliseconds from Phemex's nanosecond timestamps (a JSON integer, or a digit string on some channels)."""
    if type(value) is str and value.isdigit():
        value = int(value)
    return integer(value) // NS_PER_MS


def is_snapshot(kind: Any) -> bool:
    if kind == SNAPSHOT:
        return True
    if kind == INCREMENTAL:
        return False
    raise ValueError(f"type must be 'snapshot' or 'incremental', got {kind!r}")


def interval_name(seconds: Any) -> str:
    """``60`` -> ``1m``, ``86400`` -> ``1d``: the largest unit that divides the interval."""
    if integer(seconds) <= 0:
        raise ValueError(f"kline interval must be a positive number of seconds, got {seconds!r}")
    return next(f"{seconds // size}{unit}" for unit, size in INTERVAL_UNITS if seconds % size == 0)


class PhemexStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB, TRADES, CANDLE, BOOK_RESYNC)
    handlers: ClassVar[dict[str, str]] = {
        BOOK: "_book",
        BOOK_REAL: "_book_real",
        TRADES_SCALED: "_trades",
        TRADES_REAL: "_trades_real",
        KLINE: "_kline",
        KLINE_REAL: "_kline_real",
    }
    skips: ClassVar[dict[str, str]] = {
        "ack": "subscription ack",
        "pong": "pong (heartbeat reply)",
    }

    def __init__(self, scales: Mapping[str, Scales] | None = None) -> None:
        """``scales``: exchange symbol -> scales, for products whose scales differ from their class default."""
        super().__init__()
        self.scales = dict(scales or {})
        self.book_checks = BookChecks(SOURCE)

    def message_type(self, message: Any) -> str:
        if type(message) is not dict:
            raise TypeError("a Phemex message is a JSON object")
        for key in DATA_KEYS:
            if key in message:
                return key
        if "result" in message:
            error = message.get("error")
            if error is not None:
                raise StandardiseError(f"Phemex replied with an error: {error}")
            result = message["result"]
            if result == "pong":
                return "pong"
            return "ack" if isinstance(result, dict) and result.get("status") == "success" else "reply"
        for key in message:
            if key not in META_KEYS:
                return key
        raise KeyError("no data key")

    def convert_symbol(self, exchange_symbol: Any) -> str:
        """``sBTCUSDT`` -> ``BTC.USDT`` (spot); ``BTCUSDT`` -> ``BTC.USDT-PERP``, ``BTCUSD`` -> ``BTC.USD-PERP``."""
        if type(exchange_symbol) is not str:
            raise ValueError(f"symbol must be a string, got {exchange_symbol!r}")
        spot = exchange_symbol.startswith(SPOT_PREFIX)
        name = exchange_symbol[len(SPOT_PREFIX) :] if spot else exchange_symbol
        quote = next((q for q in QUOTES if name.endswith(q) and len(name) > len(q)), None)
        if quote is None or not name.isalnum() or not name.isupper():
            raise ValueError(f"cannot tell base and quote of Phemex symbol {exchange_symbol!r}")
        normalised = f"{name[: -len(quote)]}.{quote}"
        return normalised if spot else f"{normalised}-PERP"

    def _scales(self, exchange_symbol: str) -> Scales:
        scales = self.scales.get(exchange_symbol)
        return default_scales(exchange_symbol) if scales is None else scales

    # -- order book ------------------------------------------------------------------------

    def _book(self, message: dict, atom_timestamp: int) -> list[Output]:
        scales = self._scales(message["symbol"])
        return self._levels(
            message, message[BOOK], atom_timestamp,
            lambda v: unscale(v, scales.price), lambda v: unscale(v, scales.size),
        )

    def _book_real(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._levels(message, message[BOOK_REAL], atom_timestamp, exact, exact)

    def _levels(self, message: dict, book: dict, atom_timestamp: int, price: Number, size: Number) -> list[Output]:
        symbol = self.symbol_of(message["symbol"])
        key = normalised_key(SOURCE, symbol)
        snapshot = is_snapshot(message["type"])
        sequence = integer(message["sequence"])
        timestamp = message.get("timestamp")
        event_timestamp = None if timestamp is None else ms_from_ns(timestamp)
        records = records_build.book_levels(
            exchange=SOURCE, symbol=symbol, key=key, bids=book["bids"], asks=book["asks"], is_snapshot=snapshot,
            sequence=sequence, event_timestamp=event_timestamp, atom_timestamp=atom_timestamp, price=price, size=size,
        )
        held = check_order(self.book_checks, symbol, sequence, snapshot, atom_timestamp)
        return (self.skip(held) if held else records) + self.book_checks.requests(symbol, atom_timestamp)

    # -- trades ----------------------------------------------------------------------------

    def _trades(self, message: dict, atom_timestamp: int) -> list[Output]:
        scales = self._scales(message["symbol"])
        return self._trade_records(
            message, message[TRADES_SCALED], atom_timestamp,
            lambda v: unscale(v, scales.price), lambda v: unscale(v, scales.size),
        )

    def _trades_real(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._trade_records(message, message[TRADES_REAL], atom_timestamp, exact, exact)

    def _trade_records(
        self, message: dict, trades: list, atom_timestamp: int, price: Number, size: Number
    ) -> list[Output]:
        symbol = self.symbol_of(message["symbol"])
        if is_snapshot(message["type"]):
            return self.skip("trade snapshot: history replayed on subscribe (no trade ids to deduplicate)")
        key = normalised_key(SOURCE, symbol)
        sequence = integer(message["sequence"])
        return [
            Output(
                TRADES,
                key,
                records_build.trade(
                    exchange=SOURCE,
                    symbol=symbol,
                    trade_id=None,
                    price=price(trade[TRADE_PRICE]),
                    size=size(trade[TRADE_SIZE]),
                    taker_side=self._taker_side(trade[TRADE_SIDE]),
                    sequence=sequence,
                    event_timestamp=ms_from_ns(trade[TRADE_TIME]),
                    atom_timestamp=atom_timestamp,
                ),
            )
            for trade in trades
        ]

    @staticmethod
    def _taker_side(side: Any) -> str:
        """Phemex's trade side is the taker's ("Execution taker side")."""
        try:
            return TAKER_SIDE[side]
        except (KeyError, TypeError):
            raise ValueError(f"trade side must be 'Buy' or 'Sell', got {side!r}") from None

    # -- candles ---------------------------------------------------------------------------

    def _kline(self, message: dict, atom_timestamp: int) -> list[Output]:
        scales = self._scales(message["symbol"])
        turnover = None if scales.turnover is None else (lambda v: unscale(v, scales.turnover))
        return self._candles(
            message, message[KLINE], atom_timestamp,
            lambda v: unscale(v, scales.price), lambda v: unscale(v, scales.size), turnover,
        )

    def _kline_real(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._candles(message, message[KLINE_REAL], atom_timestamp, exact, exact, exact)

    def _candles(
        self, message: dict, klines: list, atom_timestamp: int, price: Number, volume: Number, turnover: Number | None
    ) -> list[Output]:
        symbol = self.symbol_of(message["symbol"])
        key = normalised_key(SOURCE, symbol)
        is_snapshot(message["type"])
        newest = max((integer(k[K_START]) for k in klines), default=None)
        records = []
        for kline in klines:
            start_s = kline[K_START]
            interval_s = kline[K_INTERVAL]
            start = start_s * MS_PER_S
            records.append(
                Output(
                    CANDLE,
                    key,
                    records_build.exchange_candle(
                        exchange=SOURCE,
                        symbol=symbol,
                        interval=interval_name(interval_s),
                        start=start,
                        end=start + interval_s * MS_PER_S,
                        open=price(kline[K_OPEN]),
                        high=price(kline[K_HIGH]),
                        low=price(kline[K_LOW]),
                        close=price(kline[K_CLOSE]),
                        volume=volume(kline[K_VOLUME]),
                        quote_volume=None if turnover is None else turnover(kline[K_TURNOVER]),
                        closed=start_s < newest,
                        event_timestamp=start,
                        atom_timestamp=atom_timestamp,
                    ),
                )
            )
        return records
