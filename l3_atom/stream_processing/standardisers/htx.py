"""HTX (formerly Huobi) spot -> ``lob``, ``trades``, ``ticker``, ``candle``.

Frames are gzip-compressed JSON with prices as JSON numbers, so :meth:`decode`
gunzips and parses every number as an exact ``Decimal`` (never a float).

Books, both shapes HTX has served:
``market.$symbol.mbp.150`` (current): incremental updates, ``sequence`` =
``seqNum``; the ``req`` refresh of the same channel is the snapshot
(``is_snapshot``), whose ``seqNum`` a consumer lines up with the updates'
``prevSeqNum``.  ``market.$symbol.depth.step0`` (older clients, the 2021
recording): every message is a full 150-level snapshot, ``sequence`` =
``version``.

Trades: ``direction`` is the taker's side.  Klines: HTX marks no kline as
final, it re-sends the current one as it changes, so ``closed`` is false.
"""

from __future__ import annotations

import zlib
from typing import Any, ClassVar

from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.standardiser import (
    Output,
    StandardiseError,
    Standardiser,
    decode_exact,
    exact,
    integer,
)
from l3_atom.topics import CANDLE, LOB, TICKER, TRADES, normalised_key

SOURCE = "htx"
GZIP_WBITS = 16 + zlib.MAX_WBITS
TAKER_SIDES = frozenset({"buy", "sell"})
# A channel is market.<symbol>.<kind>, the kind possibly dotted (depth.step0, kline.1min).
CHANNEL_PARTS = 3
CHANNEL_SYMBOL, CHANNEL_KIND = 1, 2
MS_PER_S = 1000
MS_PER_MINUTE = 60 * MS_PER_S
# HTX kline periods of fixed length -> (normalised interval, length in ms); 1mon has no fixed length.
KLINE_PERIODS = {
    "1min": ("1m", MS_PER_MINUTE),
    "5min": ("5m", 5 * MS_PER_MINUTE),
    "15min": ("15m", 15 * MS_PER_MINUTE),
    "30min": ("30m", 30 * MS_PER_MINUTE),
    "60min": ("1h", 60 * MS_PER_MINUTE),
    "4hour": ("4h", 240 * MS_PER_MINUTE),
    "1day": ("1d", 1440 * MS_PER_MINUTE),
    "1week": ("1w", 7 * 1440 * MS_PER_MINUTE),
}
SNAPSHOT_SUFFIX = " snapshot"
MBP = "mbp.150"


def split_channel(channel: Any) -> tuple[str, str]:
    """``market.btcusdt.depth.step0`` -> ``("btcusdt", "depth.step0")``."""
    parts = channel.split(".", CHANNEL_PARTS - 1)
    if len(parts) != CHANNEL_PARTS or parts[0] != "market" or not parts[CHANNEL_SYMBOL]:
        raise StandardiseError(f"channel {channel!r} is not market.<symbol>.<kind>")
    return parts[CHANNEL_SYMBOL], parts[CHANNEL_KIND]


def taker_side(direction: Any) -> str:
    if direction not in TAKER_SIDES:
        raise ValueError(f"direction must be 'buy' or 'sell', got {direction!r}")
    return direction


class HtxStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB, TRADES, TICKER, CANDLE)
    handlers: ClassVar[dict[str, str]] = {
        "depth.step0": "_depth",
        MBP: "_mbp",
        MBP + SNAPSHOT_SUFFIX: "_mbp_snapshot",
        "trade.detail": "_trades",
        "bbo": "_bbo",
        **{f"kline.{period}": "_kline" for period in KLINE_PERIODS},
    }
    skips: ClassVar[dict[str, str]] = {
        "ping": "heartbeat",
        "subbed": "subscription ack",
        "unsubbed": "unsubscription ack",
    }

    def decode(self, frame: bytes) -> Any:
        try:
            text = zlib.decompress(frame, GZIP_WBITS)
        except zlib.error as exc:
            raise StandardiseError(f"not a gzip-compressed frame: {exc}") from None
        return decode_exact(text)

    def message_type(self, message: Any) -> str:
        channel = message.get("ch")
        if channel is not None:
            return split_channel(channel)[1]
        if "ping" in message:
            return "ping"
        if message.get("status") == "error":
            raise StandardiseError(f"HTX error reply {message.get('err-code')!r}: {message.get('err-msg')!r}")
        if "subbed" in message:
            return "subbed"
        if "unsubbed" in message:
            return "unsubbed"
        return split_channel(message["rep"])[1] + SNAPSHOT_SUFFIX

    def _levels(
        self,
        channel: str,
        bids: Any,
        asks: Any,
        snapshot: bool,
        sequence: int,
        event_timestamp: int | None,
        atom_timestamp: int,
    ) -> list[Output]:
        symbol = self.symbol_of(split_channel(channel)[0])
        key = normalised_key(SOURCE, symbol)
        outputs = records_build.book_levels(
            exchange=SOURCE, symbol=symbol, key=key, bids=bids, asks=asks, is_snapshot=snapshot,
            sequence=sequence, event_timestamp=event_timestamp, atom_timestamp=atom_timestamp,
        )
        if not outputs:
            return self.skip("snapshot of an empty book" if snapshot else "book update without levels")
        return outputs

    def _depth(self, message: dict, atom_timestamp: int) -> list[Output]:
        tick = message["tick"]
        return self._levels(
            message["ch"],
            tick["bids"],
            tick["asks"],
            True,
            integer(tick["version"]),
            integer(tick["ts"]),
            atom_timestamp,
        )

    def _mbp(self, message: dict, atom_timestamp: int) -> list[Output]:
        tick = message["tick"]
        # An update may carry one side only (HTX leaves the unchanged side out).
        return self._levels(
            message["ch"],
            tick.get("bids", ()),
            tick.get("asks", ()),
            False,
            integer(tick["seqNum"]),
            integer(message["ts"]),
            atom_timestamp,
        )

    def _mbp_snapshot(self, message: dict, atom_timestamp: int) -> list[Output]:
        data = message["data"]
        ts = message.get("ts")
        return self._levels(
            message["rep"],
            data["bids"],
            data["asks"],
            True,
            integer(data["seqNum"]),
            None if ts is None else integer(ts),
            atom_timestamp,
        )

    def _trades(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol_of(split_channel(message["ch"])[0])
        key = normalised_key(SOURCE, symbol)
        outputs = [
            Output(
                TRADES,
                key,
                records_build.trade(
                    exchange=SOURCE,
                    symbol=symbol,
                    # tradeId is HTX's trade id; id, the older one, is being retired.
                    trade_id=str(integer(trade["tradeId"] if "tradeId" in trade else trade["id"])),
                    price=exact(trade["price"]),
                    size=exact(trade["amount"]),
                    taker_side=taker_side(trade["direction"]),
                    event_timestamp=integer(trade["ts"]),
                    atom_timestamp=atom_timestamp,
                ),
            )
            for trade in message["tick"]["data"]
        ]
        return outputs or self.skip("trade message without trades")

    def _bbo(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol_of(split_channel(message["ch"])[0])
        tick = message["tick"]
        record = records_build.ticker(
            exchange=SOURCE,
            symbol=symbol,
            bid_price=exact(tick["bid"]),
            bid_size=exact(tick["bidSize"]),
            ask_price=exact(tick["ask"]),
            ask_size=exact(tick["askSize"]),
            sequence=integer(tick["seqId"]),
            event_timestamp=integer(tick["quoteTime"]),
            atom_timestamp=atom_timestamp,
        )
        return [Output(TICKER, normalised_key(SOURCE, symbol), record)]

    def _kline(self, message: dict, atom_timestamp: int) -> list[Output]:
        exchange_symbol, kind = split_channel(message["ch"])
        interval, length_ms = KLINE_PERIODS[kind.partition(".")[2]]
        symbol = self.symbol_of(exchange_symbol)
        tick = message["tick"]
        start = integer(tick["id"]) * MS_PER_S
        record = records_build.exchange_candle(
            exchange=SOURCE,
            symbol=symbol,
            interval=interval,
            start=start,
            end=start + length_ms,
            open=exact(tick["open"]),
            high=exact(tick["high"]),
            low=exact(tick["low"]),
            close=exact(tick["close"]),
            # HTX: amount is the base-asset volume, vol the quote-asset turnover.
            volume=exact(tick["amount"]),
            quote_volume=exact(tick["vol"]),
            trade_count=integer(tick["count"]),
            closed=False,
            event_timestamp=integer(message["ts"]),
            atom_timestamp=atom_timestamp,
        )
        return [Output(CANDLE, normalised_key(SOURCE, symbol), record)]
