"""Candles from trades: every closed candle equals a brute-force computation from the same trades."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3_atom.stream_processing.candles import CandleBuilder, Trade, interval_ms

MINUTE = 60_000
GRACE = 5_000
INTERVALS = ["1m", "1h"]


def brute_force(trades: list[Trade], intervals: list[str], grace: int) -> tuple[list[dict], int]:
    """The specification, computed the slow way: which trades count, and each window's candle."""
    accepted: dict[tuple[str, int], list[tuple[int, Trade]]] = {}
    late = 0
    watermark = None
    for arrival, trade in enumerate(trades):
        for name in intervals:
            length = interval_ms(name)
            start = trade.timestamp // length * length
            if watermark is not None and start + length + grace <= watermark:
                late += 1
                continue
            accepted.setdefault((name, start), []).append((arrival, trade))
        watermark = trade.timestamp if watermark is None else max(watermark, trade.timestamp)
    candles = []
    for (name, start), window in accepted.items():
        length = interval_ms(name)
        if start + length + grace > watermark:
            continue  # not closed yet
        first = min(window, key=lambda at: (at[1].timestamp, at[0]))[1]
        last = max(window, key=lambda at: (at[1].timestamp, at[0]))[1]
        volume = sum((t.size for _, t in window), Decimal(0))
        quote = sum((t.price * t.size for _, t in window), Decimal(0))
        candles.append({
            "exchange": "coinbase", "symbol": "BTC.USD", "origin": "computed", "interval": name,
            "start": start, "end": start + length, "open": first.price,
            "high": max(t.price for _, t in window), "low": min(t.price for _, t in window), "close": last.price,
            "volume": volume, "quote_volume": quote.quantize(Decimal(1).scaleb(-18), ROUND_HALF_EVEN),
            "trade_count": len(window),
            "vwap": (quote / volume).quantize(Decimal(1).scaleb(-18), ROUND_HALF_EVEN),
            "first_trade_timestamp": first.timestamp, "last_trade_timestamp": last.timestamp, "closed": True,
            "event_timestamp": start + length, "atom_timestamp": max(t.atom_timestamp for _, t in window),
        })
    return candles, late


def key(candle: dict) -> tuple:
    return candle["interval"], candle["start"]


def trade(ts: int, price: str, size: str = "1") -> Trade:
    return Trade("coinbase", "BTC.USD", Decimal(price), Decimal(size), ts, ts * 1000 + 7)


def test_known_sequence_with_out_of_order_and_late_trades() -> None:
    builder = CandleBuilder(["1m"], GRACE)
    trades = [
        trade(1_000, "100"), trade(30_000, "105", "2"), trade(10_000, "95"),  # out of order, same window
        trade(61_000, "101"),  # next window; the first is not closed yet (grace)
        trade(59_000, "99"),  # late-ish but within grace: counts in the first window, as its close
        trade(66_000, "102"),  # watermark 66 s passes 60 s + 5 s grace: the first window closes
        trade(20_000, "1"),  # too late: counted, not used
    ]
    emitted = [c for t in trades for c in builder.add(t)]
    assert len(emitted) == 1
    [candle] = emitted
    assert (candle["open"], candle["high"], candle["low"], candle["close"]) == (
        Decimal(100), Decimal(105), Decimal(95), Decimal(99),
    )
    assert candle["volume"] == Decimal(5) and candle["trade_count"] == 4
    assert candle["vwap"] == Decimal("100.8")  # (100 + 210 + 95 + 99) / 5
    assert (candle["start"], candle["end"], candle["first_trade_timestamp"], candle["last_trade_timestamp"]) == (
        0, MINUTE, 1_000, 59_000,
    )
    assert dict(builder.late) == {"coinbase_BTC.USD_1m": 1}
    assert emitted == brute_force(trades, ["1m"], GRACE)[0]


def test_a_quiet_symbol_closes_by_time() -> None:
    builder = CandleBuilder(["1m"], GRACE)
    assert builder.add(trade(1_000, "100")) == []
    assert builder.advance("coinbase", "BTC.USD", 64_000) == []
    [candle] = builder.advance("coinbase", "BTC.USD", 65_000)
    assert candle["closed"] and candle["trade_count"] == 1


def test_interval_names() -> None:
    assert interval_ms("1m") == MINUTE and interval_ms("1h") == 60 * MINUTE and interval_ms("1d") == 1440 * MINUTE
    with pytest.raises(ValueError, match="must look like 1m"):
        interval_ms("1w")


prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100000), places=2)
sizes = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(50), places=8)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * 3_600_000), prices, sizes), min_size=1, max_size=60),
       st.integers(0, 3 * 60_000))
def test_any_trade_sequence_equals_brute_force(raw: list, jitter: int) -> None:
    # Mostly increasing times with some going backwards by up to `jitter` (out-of-order and late trades).
    trades = [trade(max(0, ts - (jitter if i % 3 == 2 else 0)), str(p), str(s)) for i, (ts, p, s) in enumerate(raw)]
    builder = CandleBuilder(INTERVALS, GRACE)
    emitted = [c for t in trades for c in builder.add(t)]
    expected, late = brute_force(trades, INTERVALS, GRACE)
    assert sorted(emitted, key=key) == sorted(expected, key=key)
    assert sum(builder.late.values()) == late
    assert len({key(c) for c in emitted}) == len(emitted), "one closed candle per window"


def test_a_trade_published_twice_counts_once_across_a_takeover() -> None:
    """A processor's replay publishes a trade again at a later offset: the candle state knows its id."""
    from l3_atom.stream_processing.candle_agent import TRADE_ID_HORIZON_MS, SymbolCandles
    from l3_atom.stream_processing.candles import WindowState

    entry = SymbolCandles(WindowState(watermark=MINUTE), {}, [])
    assert entry.first_time("7", MINUTE)
    assert entry.first_time(None, MINUTE) and entry.first_time(None, MINUTE), "a trade without an id always counts"
    taken_over = SymbolCandles.decode(entry.encode())  # what a new owner reads from the changelog
    assert not taken_over.first_time("7", MINUTE)
    assert taken_over.first_time("8", MINUTE)
    # Ids older than the horizon are forgotten; states written before ids were kept decode without any.
    taken_over.state.watermark = MINUTE + TRADE_ID_HORIZON_MS + 1
    assert taken_over.first_time("9", taken_over.state.watermark)
    assert list(taken_over.trade_ids) == ["9"]
    assert SymbolCandles.decode(b'{"watermark": null, "windows": {}, "offsets": {}, "pending": []}').trade_ids == {}
