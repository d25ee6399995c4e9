"""OHLCV candles from trades, in event-time tumbling windows (pure: no Kafka, no Faust).

Each (exchange, symbol) has a watermark: the latest trade time seen.  A
window ``[start, start + interval)`` closes, and its one closed candle is
emitted, once the watermark passes ``end + grace``.  A trade for a window
that has already closed is counted as late, never silently dropped.  Open
and close are the prices of the earliest and latest trades by trade time
(the first arrival wins a tie for open, the last for close), so trades that
arrive out of order within the grace period give the same candle as trades
in order.

Window state is plain dicts (``WindowState``) so that the Faust adapter can
keep it in a table with a changelog and a restarted worker resumes it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from l3_atom.topics import CANDLE

INTERVAL_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_INTERVAL = re.compile(r"^(\d+)([smhd])$")
# Candles share the decimal(38, 18) contract: quote volume and VWAP are rounded (half-even) to 18
# places; sums and products are exact (a context wide enough that nothing rounds before that).
SCALE_QUANTUM = Decimal(1).scaleb(-18)
EXACT = Context(prec=100)
COMPUTED = "computed"


def interval_ms(name: str) -> int:
    """``1m`` -> 60000; intervals are a whole number of s, m, h or d."""
    match = _INTERVAL.match(name)
    if not match or int(match[1]) == 0:
        raise ValueError(f"candle interval {name!r} must look like 1m, 5m, 1h or 1d")
    return int(match[1]) * INTERVAL_UNITS_MS[match[2]]


@dataclass(frozen=True)
class Trade:
    exchange: str
    symbol: str
    price: Decimal
    size: Decimal
    timestamp: int  # ms, the exchange's time
    atom_timestamp: int  # µs, receive time


def _new_window(trade: Trade) -> dict[str, Any]:
    return {
        "open": trade.price, "open_ts": trade.timestamp, "high": trade.price, "low": trade.price,
        "close": trade.price, "close_ts": trade.timestamp, "volume": trade.size,
        "quote_volume": EXACT.multiply(trade.price, trade.size), "trade_count": 1,
        "atom_timestamp": trade.atom_timestamp,
    }


def _add_to_window(window: dict[str, Any], trade: Trade) -> None:
    if trade.timestamp < window["open_ts"]:
        window["open"], window["open_ts"] = trade.price, trade.timestamp
    if trade.timestamp >= window["close_ts"]:
        window["close"], window["close_ts"] = trade.price, trade.timestamp
    window["high"] = max(window["high"], trade.price)
    window["low"] = min(window["low"], trade.price)
    window["volume"] = EXACT.add(window["volume"], trade.size)
    window["quote_volume"] = EXACT.add(window["quote_volume"], EXACT.multiply(trade.price, trade.size))
    window["trade_count"] += 1
    window["atom_timestamp"] = max(window["atom_timestamp"], trade.atom_timestamp)


def candle_record(
    exchange: str, symbol: str, interval: str, start: int, window: dict[str, Any], closed: bool
) -> dict[str, Any]:
    """The ``candle`` record of one window's state."""
    length = interval_ms(interval)
    volume = window["volume"]
    quote_volume = window["quote_volume"]
    vwap = EXACT.divide(quote_volume, volume).quantize(SCALE_QUANTUM, ROUND_HALF_EVEN, EXACT) if volume else None
    return {
        "exchange": exchange,
        "symbol": symbol,
        "origin": COMPUTED,
        "interval": interval,
        "start": start,
        "end": start + length,
        "open": window["open"],
        "high": window["high"],
        "low": window["low"],
        "close": window["close"],
        "volume": volume,
        "quote_volume": quote_volume.quantize(SCALE_QUANTUM, ROUND_HALF_EVEN, EXACT),
        "trade_count": window["trade_count"],
        "vwap": vwap,
        "first_trade_timestamp": window["open_ts"],
        "last_trade_timestamp": window["close_ts"],
        "closed": closed,
        "event_timestamp": start + length if closed else window["close_ts"],
        "atom_timestamp": window["atom_timestamp"],
    }


@dataclass
class WindowState:
    """Everything one (exchange, symbol) needs: its watermark and its open windows per interval."""

    watermark: int | None = None
    # interval -> window start (ms) -> accumulator
    windows: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)


class CandleBuilder:
    """Builds candles for every (exchange, symbol) it sees; state is exposed for persistence."""

    def __init__(self, intervals: list[str], grace_ms: int):
        self.intervals = {name: interval_ms(name) for name in intervals}
        self.grace_ms = grace_ms
        self.states: dict[tuple[str, str], WindowState] = {}
        self.late: Counter[str] = Counter()

    def state(self, exchange: str, symbol: str) -> WindowState:
        key = (exchange, symbol)
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = WindowState()
        return state

    def add(self, trade: Trade) -> list[dict[str, Any]]:
        """Apply one trade; return the candles it closes (by advancing the watermark)."""
        state = self.state(trade.exchange, trade.symbol)
        watermark = state.watermark
        for name, length in self.intervals.items():
            start = trade.timestamp - trade.timestamp % length
            if watermark is not None and start + length + self.grace_ms <= watermark:
                # Its window has closed (or, if it had no trade, would have): too late to count.
                self.late[f"{trade.exchange}_{trade.symbol}_{name}"] += 1
                continue
            windows = state.windows.setdefault(name, {})
            window = windows.get(start)
            if window is None:
                windows[start] = _new_window(trade)
            else:
                _add_to_window(window, trade)
        if state.watermark is None or trade.timestamp > state.watermark:
            state.watermark = trade.timestamp
            return self._close(trade.exchange, trade.symbol, state, trade.timestamp)
        return []

    def advance(self, exchange: str, symbol: str, now_ms: int) -> list[dict[str, Any]]:
        """Close windows by time alone (a quiet symbol still gets its candles); ``now_ms`` is event time."""
        state = self.state(exchange, symbol)
        if state.watermark is None or now_ms > state.watermark:
            state.watermark = now_ms
        return self._close(exchange, symbol, state, state.watermark)

    def _close(self, exchange: str, symbol: str, state: WindowState, watermark: int) -> list[dict[str, Any]]:
        closed = []
        for name, length in self.intervals.items():
            windows = state.windows.get(name, {})
            for start in sorted(s for s in windows if s + length + self.grace_ms <= watermark):
                closed.append(candle_record(exchange, symbol, name, start, windows.pop(start), closed=True))
        return closed

    def open_candles(self, exchange: str, symbol: str) -> list[dict[str, Any]]:
        """In-progress candles (``closed=false``) of one symbol, for queries."""
        state = self.state(exchange, symbol)
        return [
            candle_record(exchange, symbol, name, start, window, closed=False)
            for name, windows in state.windows.items()
            for start, window in sorted(windows.items())
        ]


def candle_output(record: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Where a computed candle is published: the ``candle`` topic, keyed like every normalised record."""
    return CANDLE, f"{record['exchange']}_{record['symbol']}", record
