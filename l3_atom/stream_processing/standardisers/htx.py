"""HTX (formerly Huobi) spot -> ``lob``, ``trades``, ``ticker``, ``candle`` (and ``book_resync`` requests).

Frames are gzip-compressed JSON with prices as JSON numbers, so :meth:`decode`
gunzips and parses every number as an exact ``Decimal`` (never a float).

Books, both shapes HTX has served:
``market.$symbol.mbp.150`` (current): incremental updates, ``sequence`` =
``seqNum`` and ``prev_sequence`` = ``prevSeqNum`` (HTX's number of the update
before), so an update whose ``prevSeqNum`` is beyond the book's last number is
a gap.  The snapshot is the ``req`` refresh of the same channel, which the
connector asks for on the same connection after every subscription ack:
``is_snapshot``, ``sequence`` = its ``seqNum``.  Updates numbered at or below
it are already in it and are skipped; updates that came before it but are
newer are published again after it (HTX: cache the updates, line them up with
the refresh by ``seqNum``).  A resync reconnects the connection, whose new
subscription brings a new refresh.  ``market.$symbol.depth.step0`` (older
clients, the 2021 recording): every message is a full 150-level snapshot,
``sequence`` = ``version``.

Trades: ``direction`` is the taker's side.  Klines: HTX marks no kline as
final, it re-sends the current one as it changes, so ``closed`` is false.
"""

from __future__ import annotations

import zlib
from typing import Any, ClassVar, NamedTuple

from l3_atom.off_chain.htx import LOB as MBP
from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.book_checks import BookChecks, RecentUpdates, repeat_reason
from l3_atom.stream_processing.standardiser import (
    Output,
    StandardiseError,
    Standardiser,
    decode_exact,
    exact,
    integer,
)
from l3_atom.topics import BOOK_RESYNC, CANDLE, LOB, TICKER, TRADES, normalised_key

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


def split_channel(channel: Any) -> tuple[str, str]:
    """``market.btcusdt.depth.step0`` -> ``("btcusdt", "depth.step0")``."""
    parts = channel.split(".", CHANNEL_PARTS - 1)
    if len(parts) != CHANNEL_PARTS or parts[0] != "market" or not parts[CHANNEL_SYMBOL]:
        raise StandardiseError(f"channel {channel!r} is not market.<symbol>.<kind>")
    return parts[CHANNEL_SYMBOL], parts[CHANNEL_KIND]


class MbpUpdate(NamedTuple):
    """An MBP update, read: its numbers and its records."""

    sequence: int
    prev_sequence: int
    outputs: tuple[Output, ...]


def taker_side(direction: Any) -> str:
    if direction not in TAKER_SIDES:
        raise ValueError(f"direction must be 'buy' or 'sell', got {direction!r}")
    return direction


class HtxStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB, TRADES, TICKER, CANDLE, BOOK_RESYNC)
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

    def __init__(self) -> None:
        super().__init__()
        self.book_checks = BookChecks(SOURCE)
        self._recent = RecentUpdates()

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

    def _book_levels(
        self,
        symbol: str,
        bids: Any,
        asks: Any,
        snapshot: bool,
        sequence: int,
        prev_sequence: int | None,
        event_timestamp: int | None,
        atom_timestamp: int,
    ) -> list[Output]:
        return records_build.book_levels(
            exchange=SOURCE, symbol=symbol, key=normalised_key(SOURCE, symbol), bids=bids, asks=asks,
            is_snapshot=snapshot, sequence=sequence, prev_sequence=prev_sequence, event_timestamp=event_timestamp,
            atom_timestamp=atom_timestamp, writer=self.lob_writer,
        )

    def _snapshot(
        self, channel: str, book: dict, sequence: int, event_timestamp: int | None, atom_timestamp: int
    ) -> list[Output]:
        """A full book (a depth.step0 push, an MBP refresh) replaces the book from ``sequence`` on."""
        symbol = self.symbol_of(split_channel(channel)[0])
        outputs = self._book_levels(
            symbol, book["bids"], book["asks"], True, sequence, None, event_timestamp, atom_timestamp
        )
        self.book_checks.snapshot(symbol, sequence, atom_timestamp)
        if not outputs:
            outputs = self.skip("snapshot of an empty book")
        for kept in self._recent.replay(self.book_checks, symbol, sequence, atom_timestamp):
            outputs += self._apply_mbp(symbol, kept.update, kept.atom_timestamp)
        return outputs + self.book_checks.requests(symbol, atom_timestamp)

    def _depth(self, message: dict, atom_timestamp: int) -> list[Output]:
        tick = message["tick"]
        return self._snapshot(message["ch"], tick, integer(tick["version"]), integer(tick["ts"]), atom_timestamp)

    def _mbp(self, message: dict, atom_timestamp: int) -> list[Output]:
        """Read in full first (a malformed update moves no book); kept for a late refresh, then applied."""
        symbol = self.symbol_of(split_channel(message["ch"])[0])
        tick = message["tick"]
        sequence, prev_sequence = integer(tick["seqNum"]), integer(tick["prevSeqNum"])
        # An update may carry one side only (HTX leaves the unchanged side out).
        outputs = self._book_levels(
            symbol, tick.get("bids", ()), tick.get("asks", ()), False, sequence, prev_sequence,
            integer(message["ts"]), atom_timestamp,
        )
        update = MbpUpdate(sequence, prev_sequence, tuple(outputs))
        self._recent.keep(symbol, sequence, update, atom_timestamp)
        return self._apply_mbp(symbol, update, atom_timestamp) + self.book_checks.requests(symbol, atom_timestamp)

    def _apply_mbp(self, symbol: str, update: MbpUpdate, atom_timestamp: int) -> list[Output]:
        """An update's records, or a named skip; even an update without levels moves the book's number."""
        verdict = self.book_checks.update(symbol, update.sequence, update.prev_sequence, atom_timestamp)
        repeat = repeat_reason(self.book_checks, symbol, update.sequence, verdict)
        if repeat is not None:
            return self.skip(repeat)
        return list(update.outputs) or self.skip("book update without levels")

    def _mbp_snapshot(self, message: dict, atom_timestamp: int) -> list[Output]:
        data = message["data"]
        ts = message.get("ts")
        return self._snapshot(
            message["rep"], data, integer(data["seqNum"]), None if ts is None else integer(ts), atom_timestamp
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
