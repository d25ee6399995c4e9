"""Kraken spot websocket -> ``lob``, ``trades``, ``ticker``, ``candle``; API v2 and v1 frames.

The connector speaks v2 (JSON objects, numbers as JSON numbers: decoded as
exact decimals).  Raw topics and recordings made before it may hold v1
frames (arrays ``[channel id, payload, channel name, pair]``, numbers as
strings, times as epoch seconds): both are understood, so old archives
reprocess unchanged.

Book: snapshots are marked ``is_snapshot``; Kraken has no sequence numbers
but a CRC32 checksum of the top 10 levels after each message, kept per symbol
in :attr:`KrakenStandardiser.book_checksums` for the order-book work.  v1
levels carry their own time (used as ``event_timestamp``) and may carry an
``r`` flag (a level republished when it re-enters the subscribed depth: an
update like any other).  Trades: ``side`` is the taker's in both versions.
Ticker: v1 frames, and v2 frames from before Kraken added ``timestamp``,
carry no time: the receive time stands in.  Candles: Kraken has no "closed"
flag; a candle is closed when its window ended before the message's time
(true for the older candles of a snapshot, false for running updates).
"""

from __future__ import annotations

from typing import Any, ClassVar

from l3_atom.off_chain.kraken import BOOK, OHLC, TRADE, V1_CHANNEL_NAME, V1_PAIR, normalised_pair
from l3_atom.off_chain.kraken import TICKER as TICKER_CHANNEL
from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.standardiser import (
    Output,
    StandardiseError,
    Standardiser,
    decode_exact,
    exact,
    integer,
    ms_from_iso,
    optional_exact,
)
from l3_atom.topics import CANDLE, LOB, TICKER, TRADES, normalised_key

SOURCE = "kraken"
V1 = "v1 "
MS_PER_US = 1000
MS_PER_S = 1000
MS_PER_MINUTE = 60_000
TAKER_SIDES = frozenset({"buy", "sell"})
V1_TAKER_SIDE = {"b": "buy", "s": "sell"}
CRC32_LIMIT = 1 << 32
# Candle length names, largest unit that divides the minutes first.
INTERVAL_UNITS = ((10_080, "w"), (1440, "d"), (60, "h"), (1, "m"))
# v1 book: snapshot sides "as"/"bs", update sides "a"/"b"; a level is [price, volume, time(, "r")].
V1_SNAPSHOT_SIDES = {"bs": "bid", "as": "ask"}
V1_UPDATE_SIDES = {"b": "bid", "a": "ask"}
V1_CHECKSUM = "c"
LEVEL_PRICE, LEVEL_VOLUME, LEVEL_TIME, LEVEL_FLAG = range(4)
REPUBLISHED = "r"
# v1 trade: [price, volume, time, side, order type, misc].
TRADE_PRICE, TRADE_VOLUME, TRADE_TIME, TRADE_SIDE = range(4)
# v1 ticker "a"/"b": [price, whole lot volume, lot volume]; "c" (last trade): [price, lot volume].
QUOTE_PRICE, QUOTE_LOT_VOLUME = 0, 2
LAST_PRICE, LAST_VOLUME = range(2)
# v1 ohlc: [time, end time, open, high, low, close, vwap, volume, count].
OHLC_TIME, OHLC_END, OHLC_OPEN, OHLC_HIGH, OHLC_LOW, OHLC_CLOSE, OHLC_VWAP, OHLC_VOLUME, OHLC_COUNT = range(9)
V1_PAYLOAD = 1
# The shortest v1 data frame: [channel id, payload, channel name, pair].
V1_MIN_LENGTH = 4
BOOK_MESSAGE_TYPES = frozenset({"snapshot", "update"})


def ms_from_epoch_seconds(value: Any) -> int:
    """``"1618678142.557535"`` (v1: seconds as a decimal string) -> 1618678142557."""
    return int(exact(value).scaleb(3))


def interval_name(minutes: Any) -> str:
    """Kraken intervals are minutes: 1 -> ``1m``, 240 -> ``4h``, 10080 -> ``1w``, 21600 -> ``15d``."""
    minutes = integer(minutes)
    if minutes <= 0:
        raise ValueError(f"interval must be a positive number of minutes, got {minutes}")
    size, unit = next((size, unit) for size, unit in INTERVAL_UNITS if minutes % size == 0)
    return f"{minutes // size}{unit}"


def taker_side(side: Any) -> str:
    if side not in TAKER_SIDES:
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
    return side


def checksum(value: Any) -> int:
    """A CRC32: an integer (v2) or its decimal string (v1)."""
    number = int(value) if type(value) is str and value.isdigit() else integer(value)
    if not 0 <= number < CRC32_LIMIT:
        raise ValueError(f"checksum must be an unsigned 32-bit integer, got {value!r}")
    return number


def rejection(message: dict) -> str | None:
    """Why Kraken refused a request, or None: v1 ``status: error`` / ``event: error``, v2 ``success: false``."""
    if message.get("status") == "error" or message.get("event") == "error" or message.get("success") is False:
        return str(message.get("errorMessage") or message.get("error") or "no reason given")
    return None


class KrakenStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB, TRADES, TICKER, CANDLE)
    handlers: ClassVar[dict[str, str]] = {
        BOOK: "_book",
        TRADE: "_trade",
        TICKER_CHANNEL: "_ticker",
        OHLC: "_ohlc",
        V1 + BOOK: "_v1_book",
        V1 + TRADE: "_v1_trade",
        V1 + TICKER_CHANNEL: "_v1_ticker",
        V1 + OHLC: "_v1_ohlc",
    }
    skips: ClassVar[dict[str, str]] = {
        "heartbeat": "heartbeat",
        "systemStatus": "system status",
        "status": "system status",
        "subscriptionStatus": "subscription ack",
        "subscribe": "subscription ack",
        "unsubscribe": "subscription ack",
        "pong": "pong",
    }

    def __init__(self) -> None:
        super().__init__()
        # Normalised symbol -> the CRC32 Kraken gave with its latest book message.
        self.book_checksums: dict[str, int] = {}

    def decode(self, frame: bytes) -> Any:
        """v2 sends prices as JSON numbers: exact decimals, never floats (v1 strings are unaffected)."""
        return decode_exact(frame)

    def message_type(self, message: Any) -> str:
        """v1 data: ``v1 <channel>``; v1 events, v2 channels and v2 method acks: their own name.

        A rejected request (unknown pair, bad subscription) raises: it must reach dead_letter, not a skip count.
        """
        if isinstance(message, list):
            if len(message) < V1_MIN_LENGTH:
                raise TypeError(f"a v1 data frame has at least {V1_MIN_LENGTH} elements")
            return V1 + message[V1_CHANNEL_NAME].partition("-")[0]
        reason = rejection(message)
        if reason is not None:
            raise StandardiseError(f"Kraken rejected a request: {reason}")
        kind = message.get("channel") or message.get("event") or message["method"]
        if type(kind) is not str:
            raise TypeError(kind)
        return kind

    def convert_symbol(self, exchange_symbol: Any) -> str:
        """``XBT/USD`` (v1) and ``BTC/USD`` (v2) name their assets: no symbol list is needed."""
        if type(exchange_symbol) is not str:
            raise TypeError(f"pair must be a string, got {exchange_symbol!r}")
        return normalised_pair(exchange_symbol)

    def _level(
        self, symbol: str, side: str, price: Any, size: Any, snapshot: bool, event_timestamp: int | None, atom: int
    ) -> Output:
        record = records_build.lob_level(
            exchange=SOURCE,
            symbol=symbol,
            side=side,
            price=exact(price),
            size=exact(size),
            is_snapshot=snapshot,
            event_timestamp=event_timestamp,
            atom_timestamp=atom,
        )
        return Output(LOB, normalised_key(SOURCE, symbol), record)

    # -- v2 ------------------------------------------------------------------------------------

    def _book(self, message: dict, atom_timestamp: int) -> list[Output]:
        kind = message["type"]
        if kind not in BOOK_MESSAGE_TYPES:
            raise ValueError(f"book type must be 'snapshot' or 'update', got {kind!r}")
        snapshot = kind == "snapshot"
        out = []
        for book in message["data"]:
            symbol = self.symbol_of(book["symbol"])
            stamp = book.get("timestamp")
            event_timestamp = None if stamp is None and snapshot else ms_from_iso(book["timestamp"])
            for side, levels in (("bid", book["bids"]), ("ask", book["asks"])):
                out += [
                    self._level(symbol, side, lvl["price"], lvl["qty"], snapshot, event_timestamp, atom_timestamp)
                    for lvl in levels
                ]
            self.book_checksums[symbol] = checksum(book["checksum"])
        return out

    def _trade(self, message: dict, atom_timestamp: int) -> list[Output]:
        out = []
        for trade in message["data"]:
            symbol = self.symbol_of(trade["symbol"])
            trade_id = integer(trade["trade_id"])
            record = records_build.trade(
                exchange=SOURCE,
                symbol=symbol,
                trade_id=str(trade_id),
                price=exact(trade["price"]),
                size=exact(trade["qty"]),
                taker_side=taker_side(trade["side"]),
                # Kraken's trade id is a sequence number, unique per book.
                sequence=trade_id,
                event_timestamp=ms_from_iso(trade["timestamp"]),
                atom_timestamp=atom_timestamp,
            )
            out.append(Output(TRADES, normalised_key(SOURCE, symbol), record))
        return out

    def _ticker(self, message: dict, atom_timestamp: int) -> list[Output]:
        return [
            self._ticker_record(
                self.symbol_of(tick["symbol"]),
                (tick["bid"], tick["bid_qty"], tick["ask"], tick["ask_qty"], tick.get("last"), None),
                atom_timestamp // MS_PER_US if tick.get("timestamp") is None else ms_from_iso(tick["timestamp"]),
                atom_timestamp,
            )
            for tick in message["data"]
        ]

    def _ohlc(self, message: dict, atom_timestamp: int) -> list[Output]:
        event_timestamp = ms_from_iso(message["timestamp"])
        out = []
        for candle in message["data"]:
            start = ms_from_iso(candle["interval_begin"])
            out.append(self._candle(
                self.symbol_of(candle["symbol"]),
                candle["interval"],
                start,
                start + integer(candle["interval"]) * MS_PER_MINUTE,
                (candle["open"], candle["high"], candle["low"], candle["close"], candle["vwap"], candle["volume"]),
                candle["trades"],
                event_timestamp,
                atom_timestamp,
            ))
        return out

    # -- v1 ------------------------------------------------------------------------------------

    def _v1_symbol(self, message: list) -> str:
        return self.symbol_of(message[V1_PAIR])

    def _v1_book(self, message: list, atom_timestamp: int) -> list[Output]:
        symbol = self._v1_symbol(message)
        out = []
        for part in message[V1_PAYLOAD:V1_CHANNEL_NAME]:
            for key, levels in part.items():
                if key == V1_CHECKSUM:
                    self.book_checksums[symbol] = checksum(levels)
                    continue
                snapshot = key in V1_SNAPSHOT_SIDES
                side = V1_SNAPSHOT_SIDES[key] if snapshot else V1_UPDATE_SIDES[key]
                out += [self._v1_level(symbol, side, level, snapshot, atom_timestamp) for level in levels]
        return out

    def _v1_level(self, symbol: str, side: str, level: list, snapshot: bool, atom_timestamp: int) -> Output:
        if len(level) > LEVEL_FLAG and level[LEVEL_FLAG] != REPUBLISHED or len(level) > LEVEL_FLAG + 1:
            raise ValueError(f"book level must be [price, volume, time] or [..., 'r'], got {level!r}")
        event_timestamp = ms_from_epoch_seconds(level[LEVEL_TIME])
        return self._level(symbol, side, level[LEVEL_PRICE], level[LEVEL_VOLUME], snapshot, event_timestamp,
                           atom_timestamp)

    def _v1_trade(self, message: list, atom_timestamp: int) -> list[Output]:
        symbol = self._v1_symbol(message)
        key = normalised_key(SOURCE, symbol)
        out = []
        for trade in message[V1_PAYLOAD]:
            side = V1_TAKER_SIDE.get(trade[TRADE_SIDE])
            if side is None:
                raise ValueError(f"trade side must be 'b' or 's', got {trade[TRADE_SIDE]!r}")
            record = records_build.trade(
                exchange=SOURCE,
                symbol=symbol,
                trade_id=None,
                price=exact(trade[TRADE_PRICE]),
                size=exact(trade[TRADE_VOLUME]),
                taker_side=side,
                event_timestamp=ms_from_epoch_seconds(trade[TRADE_TIME]),
                atom_timestamp=atom_timestamp,
            )
            out.append(Output(TRADES, key, record))
        return out

    def _v1_ticker(self, message: list, atom_timestamp: int) -> list[Output]:
        tick = message[V1_PAYLOAD]
        bid, ask, last = tick["b"], tick["a"], tick["c"]
        values = (
            bid[QUOTE_PRICE], bid[QUOTE_LOT_VOLUME], ask[QUOTE_PRICE], ask[QUOTE_LOT_VOLUME],
            last[LAST_PRICE], last[LAST_VOLUME],
        )
        return [self._ticker_record(self._v1_symbol(message), values, atom_timestamp // MS_PER_US, atom_timestamp)]

    def _v1_ohlc(self, message: list, atom_timestamp: int) -> list[Output]:
        """The channel name carries the interval (``ohlc-5``); the candle carries its end, not its start."""
        candle = message[V1_PAYLOAD]
        minutes = message[V1_CHANNEL_NAME].partition("-")[2]
        if not minutes.isdigit():
            raise ValueError(f"ohlc channel name must be ohlc-<minutes>, got {message[V1_CHANNEL_NAME]!r}")
        end = ms_from_epoch_seconds(candle[OHLC_END])
        prices = (candle[i] for i in (OHLC_OPEN, OHLC_HIGH, OHLC_LOW, OHLC_CLOSE, OHLC_VWAP, OHLC_VOLUME))
        return [self._candle(
            self._v1_symbol(message),
            int(minutes),
            end - int(minutes) * MS_PER_MINUTE,
            end,
            tuple(prices),
            candle[OHLC_COUNT],
            ms_from_epoch_seconds(candle[OHLC_TIME]),
            atom_timestamp,
        )]

    # -- shared --------------------------------------------------------------------------------

    def _ticker_record(self, symbol: str, values: tuple, event_timestamp: int, atom_timestamp: int) -> Output:
        """``values``: bid price, bid size, ask price, ask size, last price, last size."""
        bid_price, bid_size, ask_price, ask_size, last_price, last_size = values
        record = records_build.ticker(
            exchange=SOURCE,
            symbol=symbol,
            bid_price=exact(bid_price),
            bid_size=exact(bid_size),
            ask_price=exact(ask_price),
            ask_size=exact(ask_size),
            last_price=optional_exact(last_price),
            last_size=optional_exact(last_size),
            event_timestamp=event_timestamp,
            atom_timestamp=atom_timestamp,
        )
        return Output(TICKER, normalised_key(SOURCE, symbol), record)

    def _candle(
        self, symbol: str, minutes: Any, start: int, end: int, prices: tuple, trades: Any, event_timestamp: int,
        atom_timestamp: int,
    ) -> Output:
        """``prices``: open, high, low, close, vwap, volume."""
        open_, high, low, close, vwap, volume = (exact(p) for p in prices)
        record = records_build.exchange_candle(
            exchange=SOURCE,
            symbol=symbol,
            interval=interval_name(minutes),
            start=start,
            end=end,
            open=open_,
            high=high,
            low=low,
            close=close,
            volume=volume,
            trade_count=integer(trades),
            vwap=vwap,
            closed=end <= event_timestamp,
            event_timestamp=event_timestamp,
            atom_timestamp=atom_timestamp,
        )
        return Output(CANDLE, normalised_key(SOURCE, symbol), record)

