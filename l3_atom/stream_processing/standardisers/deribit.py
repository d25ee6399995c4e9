"""Deribit JSON-RPC websocket (API v2) -> ``lob``, ``trades``, ``ticker``, ``funding_rate``, ``open_interest``, ``candle``.

Notifications are ``{"method": "subscription", "params": {"channel": ..., "data": ...}}``; the channel names
its kind and instrument (``book.BTC-PERPETUAL.raw``, ``chart.trades.BTC-PERPETUAL.1``).  Books carry
``[action, price, amount]`` levels (``delete`` removes one); the first book message after subscribing is
a ``snapshot`` (a resync reconnects), then ``change``s.  ``change_id`` is the sequence and a change's
``prev_change_id`` (the previous message's ``change_id``) its ``prev_sequence``: a change that does not
follow the book is a gap and asks for a resync (``book_resync``); a repeat, or a change already inside
the snapshot, is skipped.  A public trade's ``direction`` is the taker's; ``trade_seq`` numbers an
instrument's trades one by one and is each trade's ``sequence``.  Trades missed in an outage arrive as
``get_last_trades_by_instrument_and_time`` answers (``{"result": {"trades": [...]}}``) the connector archived
under the instrument's ``trades`` raw key: the same records, marked ``origin`` ``backfill``, in
``trade_seq`` order; every trade is published once by ``trade_seq``, streamed or backfilled.  The ticker gives
``open_interest`` (derivatives) and, for perpetuals, ``current_funding``: each is published when it
differs from the last one published for the instrument (small, pure state; ARCHITECTURE principle 2),
not with every ticker.  Deribit's ``funding_8h``
(funding realised over the last 8 hours) has no field in ``funding_rate`` and is not published.  Candles
(``chart.trades``) have no closed flag and no event time: the receive time stands in, and a candle is
closed once that time is past its window.  RPC results and heartbeats are counted skips; a JSON-RPC error
raises (dead letter), with Deribit's code and message.

Amounts are Deribit's: USD for inverse futures and perpetuals, the base coin for options and linear
instruments.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from l3_atom.bounded_memo import BoundedMemo
from l3_atom.off_chain.deribit import (
    BOOK,
    CHART,
    TICKER_CHANNEL,
    TRADES_CHANNEL,
    channel_parts,
    normalise_instrument,
)
from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.book_checks import BookChecks, repeat_reason
from l3_atom.stream_processing.standardiser import (
    Output,
    StandardiseError,
    Standardiser,
    decode_number_texts,
    exact,
    integer,
    optional_exact,
)
from l3_atom.stream_processing.trade_ids import PublishedIds, unpublished
from l3_atom.topics import (
    BOOK_RESYNC,
    CANDLE,
    FUNDING_RATE,
    LOB,
    OPEN_INTEREST,
    ORIGIN_BACKFILL,
    TICKER,
    TRADES,
    normalised_key,
)

SOURCE = "deribit"
# Channel names a standardiser keeps split (one per subscription).
CHANNEL_CACHE = 4096


# A book level: [action, price, amount].
LEVEL_ACTION, LEVEL_PRICE, LEVEL_AMOUNT = range(3)
LEVEL_ACTIONS = ("new", "change", "delete")
# Book message types.
BOOK_SNAPSHOT = "snapshot"
BOOK_CHANGE = "change"
DELETE = "delete"
# The book message's fields of each side, bids first.
BOOK_FIELDS = ("bids", "asks")
TAKER_SIDES = ("buy", "sell")
ZERO = Decimal(0)

# A REST trade history answer (``result.trades``), archived by the connector to fill a gap.
TRADE_HISTORY = "trade history"
ALREADY_PUBLISHED = "trade already published (streamed or backfilled)"
MINUTE_MS = 60_000
DAY_RESOLUTION = "1D"


def candle_length(resolution: str) -> tuple[str, int]:
    """Deribit's chart resolution (minutes, or ``1D``) -> (normalised interval, length in ms)."""
    if resolution == DAY_RESOLUTION:
        return "1d", 1440 * MINUTE_MS
    minutes = int(resolution)
    if minutes <= 0:
        raise ValueError(f"chart resolution must be positive, got {resolution!r}")
    interval = f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
    return interval, minutes * MINUTE_MS


class DeribitStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB, TRADES, TICKER, FUNDING_RATE, OPEN_INTEREST, CANDLE, BOOK_RESYNC)
    handlers: ClassVar[dict[str, str]] = {
        BOOK: "_book",
        TRADES_CHANNEL: "_trades",
        TRADE_HISTORY: "_trade_history",
        TICKER_CHANNEL: "_ticker",
        CHART: "_chart",
    }
    skips: ClassVar[dict[str, str]] = {
        "rpc result": "rpc result (subscribe, set_heartbeat, test, auth)",
        "heartbeat": "heartbeat",
        "test_request": "heartbeat test_request (answered by the connector)",
    }

    def __init__(self) -> None:
        super().__init__()
        self._symbols: dict[str, str] = {}
        # Instrument (normalised) -> the last open interest / funding rate published.
        self._open_interest: dict[str, Decimal] = {}
        self._funding: dict[str, Decimal] = {}
        self.book_checks = BookChecks(SOURCE)
        # Per instrument, the trade_seq numbers published, streamed or backfilled: each trade once.
        self.published = PublishedIds()
        # Channel names repeat (one per subscription): each is split once, not twice per message.
        self._channel_parts: BoundedMemo[str, tuple[str, str, str]] = BoundedMemo(channel_parts, CHANNEL_CACHE)

    def _channel(self, channel: Any) -> tuple[str, str, str]:
        """``channel_parts(channel)``, kept per name (anything but a str goes to it for its error)."""
        return self._channel_parts[channel] if type(channel) is str else channel_parts(channel)

    def decode(self, frame: bytes) -> Any:
        return decode_number_texts(frame)

    def message_type(self, message: Any) -> str:
        method = message.get("method")
        if method == "subscription":
            try:
                return self._channel(message["params"]["channel"])[0]
            except ValueError as exc:
                raise StandardiseError(str(exc)) from None
        if method == "heartbeat":
            return str(message["params"]["type"])
        if method is not None:
            return str(method)
        if "error" in message:
            error = message["error"]
            request = message.get("id")
            raise StandardiseError(f"Deribit error {error.get('code')}: {error.get('message')} (request {request})")
        if "result" in message:
            result = message["result"]
            return TRADE_HISTORY if type(result) is dict and "trades" in result else "rpc result"
        raise KeyError("method")

    def convert_symbol(self, exchange_symbol: str) -> str:
        symbol = self._symbols.get(exchange_symbol)
        if symbol is None:
            symbol = self._symbols[exchange_symbol] = normalise_instrument(exchange_symbol)
        return symbol

    def _params(self, message: dict) -> tuple[str, str, Any]:
        """(instrument, interval or resolution, data) of a notification."""
        params = message["params"]
        _, instrument, interval = self._channel(params["channel"])
        return instrument, interval, params["data"]

    def _book(self, message: dict, atom_timestamp: int) -> list[Output]:
        """Read in full first (a malformed message moves no book); then even one without levels moves the book."""
        instrument, _, data = self._params(message)
        symbol = self.symbol_of(instrument)
        kind = data["type"]
        snapshot = kind == BOOK_SNAPSHOT
        if not snapshot and kind != BOOK_CHANGE:
            raise ValueError(f"book type must be 'snapshot' or 'change', got {kind!r}")
        sequence = integer(data["change_id"])
        prev_sequence = None if snapshot else integer(data["prev_change_id"])
        event_timestamp = integer(data["timestamp"])
        key = normalised_key(SOURCE, symbol)
        bids, asks = ([(exact(level[LEVEL_PRICE]), level_size(level)) for level in data[field]] for field in BOOK_FIELDS)
        outputs = records_build.book_levels(
            exchange=SOURCE, symbol=symbol, key=key, bids=bids, asks=asks, is_snapshot=snapshot, sequence=sequence,
            prev_sequence=prev_sequence, event_timestamp=event_timestamp, atom_timestamp=atom_timestamp,
            writer=self.lob_writer,
        )
        repeat = None
        if snapshot:
            self.book_checks.snapshot(symbol, sequence, atom_timestamp)
        else:
            verdict = self.book_checks.update(symbol, sequence, prev_sequence, atom_timestamp)
            repeat = repeat_reason(self.book_checks, symbol, sequence, verdict)
        if repeat is not None:
            outputs = self.skip(repeat)
        elif not outputs:
            outputs = self.skip(f"book {kind} without levels")
        return outputs + self.book_checks.requests(symbol, atom_timestamp)

    def _trades(self, message: dict, atom_timestamp: int) -> list[Output]:
        instrument, _, trades = self._params(message)
        if type(trades) is not list:
            raise TypeError(f"trades data must be a list, got {type(trades).__name__}")
        if not trades:
            return self.skip("trades notification without trades")
        return self._once(self.symbol_of(instrument), trades, atom_timestamp, None)

    def _trade_history(self, message: dict, atom_timestamp: int) -> list[Output]:
        """A backfilled page: the trades not yet published, in ``trade_seq`` order, marked ``backfill``."""
        trades = message["result"]["trades"]
        if type(trades) is not list:
            raise TypeError(f"result.trades must be a list, got {type(trades).__name__}")
        return self._once(self.keyed_symbol("trade history page"), trades, atom_timestamp, ORIGIN_BACKFILL)

    def _once(self, symbol: str, trades: list, atom_timestamp: int, origin: str | None) -> list[Output]:
        """``trades`` records of the trades whose ``trade_seq`` was not published yet, in that order."""
        key = normalised_key(SOURCE, symbol)
        records = []
        for trade in trades:
            direction = trade["direction"]
            if direction not in TAKER_SIDES:
                raise ValueError(f"direction must be 'buy' or 'sell', got {direction!r}")
            records.append(records_build.trade(
                exchange=SOURCE,
                symbol=symbol,
                trade_id=str(trade["trade_id"]),
                price=exact(trade["price"]),
                size=exact(trade["amount"]),
                taker_side=direction,
                sequence=integer(trade["trade_seq"]),
                origin=origin,
                event_timestamp=integer(trade["timestamp"]),
                atom_timestamp=atom_timestamp,
            ))
        fresh = unpublished(self.published, symbol, ((r["sequence"], r) for r in records), self.skipped,
                            ALREADY_PUBLISHED)
        return [Output(TRADES, key, record) for record in fresh]

    def _ticker(self, message: dict, atom_timestamp: int) -> list[Output]:
        instrument, _, data = self._params(message)
        symbol = self.symbol_of(instrument)
        key = normalised_key(SOURCE, symbol)
        event_timestamp = integer(data["timestamp"])
        outputs = [Output(TICKER, key, records_build.ticker(
            exchange=SOURCE,
            symbol=symbol,
            bid_price=optional_exact(data.get("best_bid_price")),
            bid_size=optional_exact(data.get("best_bid_amount")),
            ask_price=optional_exact(data.get("best_ask_price")),
            ask_size=optional_exact(data.get("best_ask_amount")),
            last_price=optional_exact(data.get("last_price")),
            event_timestamp=event_timestamp,
            atom_timestamp=atom_timestamp,
        ))]
        open_interest = optional_exact(data.get("open_interest"))
        if open_interest is not None and self._open_interest.get(symbol) != open_interest:
            self._open_interest[symbol] = open_interest
            outputs.append(Output(OPEN_INTEREST, key, records_build.open_interest(
                exchange=SOURCE,
                symbol=symbol,
                open_interest=open_interest,
                event_timestamp=event_timestamp,
                atom_timestamp=atom_timestamp,
            )))
        funding = optional_exact(data.get("current_funding"))
        if funding is not None and self._funding.get(symbol) != funding:
            self._funding[symbol] = funding
            outputs.append(Output(FUNDING_RATE, key, records_build.funding_rate(
                exchange=SOURCE,
                symbol=symbol,
                rate=funding,
                mark_price=optional_exact(data.get("mark_price")),
                index_price=optional_exact(data.get("index_price")),
                event_timestamp=event_timestamp,
                atom_timestamp=atom_timestamp,
            )))
        return outputs

    def _chart(self, message: dict, atom_timestamp: int) -> list[Output]:
        instrument, resolution, data = self._params(message)
        interval, length = candle_length(resolution)
        symbol = self.symbol_of(instrument)
        start = integer(data["tick"])
        now = atom_timestamp // 1000
        record = records_build.exchange_candle(
            exchange=SOURCE,
            symbol=symbol,
            interval=interval,
            start=start,
            end=start + length,
            open=exact(data["open"]),
            high=exact(data["high"]),
            low=exact(data["low"]),
            close=exact(data["close"]),
            volume=exact(data["volume"]),
            quote_volume=optional_exact(data.get("cost")),
            closed=now >= start + length,
            event_timestamp=now,
            atom_timestamp=atom_timestamp,
        )
        return [Output(CANDLE, normalised_key(SOURCE, symbol), record)]


def level_size(level: list) -> Decimal:
    """The size after a level's action: 0 for ``delete``."""
    action = level[LEVEL_ACTION]
    if action not in LEVEL_ACTIONS:
        raise ValueError(f"book action must be one of {', '.join(LEVEL_ACTIONS)}, got {action!r}")
    return ZERO if action == DELETE else exact(level[LEVEL_AMOUNT])
