"""Computed 1-minute candles beside Binance's own klines for the same minutes, on the real recording.

The recording covers about 30 seconds, so both sides see only part of each
minute and the exchange's kline also counts trades from before the recording
began: the figures are reported side by side, not forced to agree.  What must
hold: both are exact decimals for the same (symbol, minute), and the computed
candle's trades lie within the kline's high-low range.
"""

from __future__ import annotations

from pathlib import Path

from l3_atom.off_chain.binance import Binance
from l3_atom.stream_processing.candles import CandleBuilder, Trade
from l3_atom.stream_processing.standardisers.binance import BinanceStandardiser
from tests.exchanges.test_binance import RECORDING, SYMBOLS, replay

FAR_FUTURE_MS = 2**62


def test_computed_candles_beside_exchange_klines(recordings: Path) -> None:
    outputs = replay(Binance, BinanceStandardiser(), recordings / RECORDING, SYMBOLS)
    builder = CandleBuilder(["1m"], grace_ms=0)
    for out in outputs:
        if out.topic == "trades":
            r = out.record
            builder.add(Trade(r["exchange"], r["symbol"], r["price"], r["size"], r["event_timestamp"], 0))
    computed = [c for exchange, symbol in list(builder.states) for c in builder.advance(exchange, symbol, FAR_FUTURE_MS)]
    klines = {(o.record["symbol"], o.record["start"]): o.record for o in outputs if o.topic == "candle"}
    assert computed, "the recording has trades"
    print("\nsymbol     minute (ms)    computed o/h/l/c vol n          | exchange kline o/h/l/c vol n")
    compared = 0
    for candle in computed:
        kline = klines.get((candle["symbol"], candle["start"]))
        theirs = "no kline for this minute in the recording"
        if kline is not None:
            compared += 1
            assert kline["low"] <= candle["low"] <= candle["high"] <= kline["high"]
            theirs = (f"{kline['open']}/{kline['high']}/{kline['low']}/{kline['close']} {kline['volume']} "
                      f"{kline['trade_count']}")
        print(f"{candle['symbol']:10} {candle['start']} {candle['open']}/{candle['high']}/{candle['low']}/"
              f"{candle['close']} {candle['volume']} {candle['trade_count']} | {theirs}")
    print(f"{len(computed)} computed candles, {compared} with an exchange kline for the same minute")
