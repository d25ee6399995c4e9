"""KuCoin spot public websocket -> ``lob``, ``trades``, ``ticker``, ``candle``.

Data frames are ``{"type": "message", "topic": "/market/<channel>:<symbol>",
"subject", "data"}``; the server also sends ``welcome``, ``ack`` (to a
subscribe), ``pong`` (to the client's ping) and ``error``.  ``/market/level2``
carries increments only (KuCoin serves book snapshots over REST): every
change is ``[price, size, sequence]`` and its own ``sequence`` is the record's,
so a consumer can merge it with a REST snapshot as KuCoin documents.
Prices and sizes are strings, so orjson decodes exactly.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.standardiser import Output, StandardiseError, Standardiser, exact, integer
from l3_atom.tokens import Symbol, SymbolError
from l3_atom.topics import CANDLE, LOB, TICKER, TRADES, normalised_key

SOURCE = "kucoin"
MESSAGE = "message"
MESSAGE_PREFIX = "message:"
LEVEL2, MATCH, TICKER_CHANNEL, CANDLES = "level2", "match", "ticker", "candles"

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


def split_topic(topic: str) -> tuple[str, str, str]:
    """``/market/candles:BTC-USDT_1min`` -> ``("candles", "BTC-USDT", "1min")``; no interval elsewhere (``""``)."""
    path, _, symbol = topic.partition(":")
    channel = path.rpartition("/")[2]
    interval = ""
    if channel == CANDLES:
        symbol, _, interval = symbol.rpartition("_")
    return channel, symbol, interval


def digits(value: Any) -> int:
    """KuCoin sends sequences and some times as strings of digits."""
    if type(value) is not str or not (value.isascii() and value.isdigit()):
        raise ValueError(f"expected a string of digits, got {value!r}")
    return int(value)


def ms_from_ns(value: Any) -> int:
    """Nanoseconds since the epoch (a string for trades, a number for candles) -> milliseconds."""
    return (value if type(value) is int else digits(value)) // NS_PER_MS


class KucoinStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB, TRADES, TICKER, CANDLE)
    handlers: ClassVar[dict[str, str]] = {
        f"{MESSAGE_PREFIX}{LEVEL2}": "_level2",
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

    def message_type(self, message: Any) -> str:
        kind = message["type"]
        if kind != MESSAGE:
            return kind
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
        symbol, key, _, data = self._target(message)
        changes = data["changes"]
        time = data.get("time")
        event_timestamp = None if time is None else integer(time)
        outputs = []
        for side, field in BOOK_SIDES:
            for change in changes[field]:
                record = records_build.lob_level(
                    exchange=SOURCE,
                    symbol=symbol,
                    side=side,
                    price=exact(change[CHANGE_PRICE]),
                    size=exact(change[CHANGE_SIZE]),
                    is_snapshot=False,
                    sequence=digits(change[CHANGE_SEQUENCE]),
                    event_timestamp=event_timestamp,
                    atom_timestamp=atom_timestamp,
                )
                outputs.append(Output(LOB, key, record))
        if not outputs:
            return self.skip("level2: no changes")
        return outputs

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
