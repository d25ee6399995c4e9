"""dYdX v4 indexer websocket -> ``lob``, ``trades``, ``candle``, ``funding_rate``, ``open_interest``.

Every frame is ``{"type", "channel", "id", "message_id", "contents"}``:
``subscribed`` carries a channel's initial data, ``channel_data`` one update
and ``channel_batch_data`` a list of updates (batched subscriptions).  All
numbers are decimal strings.

- ``v4_orderbook``: the ``subscribed`` frame's book (levels ``{"price",
  "size"}``) is the snapshot, sent on every subscribe, so a resync is a
  reconnect; ``channel_data`` (or a batch of them) are updates, ``[price,
  size]`` (an optional third element, the offset of ``includeOffsets``
  subscriptions, is accepted).  dYdX books carry no time.  ``sequence`` is the
  frame's ``message_id``: numbered per connection across all its channels, it
  orders a book's frames between two snapshots but skips the numbers of other
  channels, so ``prev_sequence`` is null and only order is checked (a batch is
  one frame, one number).  An update repeating the last number or inside the
  snapshot is skipped, named; an older one after a newer is published and asks
  for a resync (``book_resync``), as does a book with updates and no snapshot.
- ``v4_trades``: ``side`` is the taker's; the initial history is skipped,
  counted (replayed on every subscribe; the raw topic keeps it).
- ``v4_candles``: no "closed" flag; a candle is closed when a later window is
  in the same frame.  ``event_timestamp`` is the window start, the only time
  a candle carries.
- ``v4_markets`` (one channel for every market): each market with a
  ``nextFundingRate`` gives a ``funding_rate`` record (the rate accruing for
  the next hourly payment; dYdX marks and indexes to its oracle price, so that
  is both ``mark_price`` and ``index_price``), each with an ``openInterest``
  an ``open_interest`` record (base-asset units).  The channel carries no
  time: ``event_timestamp`` is the receive time.  Records come for every
  market the frame names, not only the subscribed symbols.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from l3_atom.off_chain.dydx import CANDLE_ID_SEPARATOR, TICKER_SEPARATOR
from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.book_checks import BookChecks, check_order
from l3_atom.stream_processing.standardiser import (
    Output,
    StandardiseError,
    Standardiser,
    exact,
    integer,
    ms_from_iso,
    optional_exact,
)
from l3_atom.topics import BOOK_RESYNC, CANDLE, FUNDING_RATE, LOB, OPEN_INTEREST, TRADES, normalised_key

SOURCE = "dydx"
ORDERBOOK, TRADES_CHANNEL, CANDLES, MARKETS = "v4_orderbook", "v4_trades", "v4_candles", "v4_markets"
SUBSCRIBED, CHANNEL_DATA, BATCH_DATA = "subscribed", "channel_data", "channel_batch_data"
# Frame types that are not channel data (their type is their message type).
CONTROL_TYPES = frozenset({"connected", "unsubscribed", "pong"})
ERROR = "error"

PERPETUAL_SUFFIX = "-PERP"
# Candle channel ids are "<ticker>/<resolution>".
MINUTE_MS = 60_000
# dYdX candle resolution -> (normalised interval, length in ms).
RESOLUTIONS = {
    "1MIN": ("1m", MINUTE_MS),
    "5MINS": ("5m", 5 * MINUTE_MS),
    "15MINS": ("15m", 15 * MINUTE_MS),
    "30MINS": ("30m", 30 * MINUTE_MS),
    "1HOUR": ("1h", 60 * MINUTE_MS),
    "4HOURS": ("4h", 240 * MINUTE_MS),
    "1DAY": ("1d", 1440 * MINUTE_MS),
}
TAKER_SIDE = {"BUY": "buy", "SELL": "sell"}
US_PER_MS = 1000
# An update level is [price, size] or [price, size, offset].
LEVEL_PRICE, LEVEL_SIZE = range(2)
# The book contents' keys of each side.
SIDES = ("bids", "asks")

Handler = Callable[[dict, Any, int], list[Output]]


def level_of(level: Any) -> tuple[Any, Any]:
    """``(price, size)`` of a level, ``{"price", "size"}`` (initial book) or ``[price, size(, offset)]``."""
    if type(level) is dict:
        return level["price"], level["size"]
    if type(level) is list:
        return level[LEVEL_PRICE], level[LEVEL_SIZE]
    raise TypeError(f"a book level is an object or a list, got {level!r}")


class DydxStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB, TRADES, CANDLE, FUNDING_RATE, OPEN_INTEREST, BOOK_RESYNC)
    handlers: ClassVar[dict[str, str]] = {
        f"{SUBSCRIBED}:{ORDERBOOK}": "_book_snapshot",
        f"{CHANNEL_DATA}:{ORDERBOOK}": "_book_update",
        f"{BATCH_DATA}:{ORDERBOOK}": "_book_batch",
        f"{CHANNEL_DATA}:{TRADES_CHANNEL}": "_trades",
        f"{BATCH_DATA}:{TRADES_CHANNEL}": "_trades_batch",
        f"{SUBSCRIBED}:{CANDLES}": "_candles_snapshot",
        f"{CHANNEL_DATA}:{CANDLES}": "_candle_update",
        f"{BATCH_DATA}:{CANDLES}": "_candles_batch",
        f"{SUBSCRIBED}:{MARKETS}": "_markets_snapshot",
        f"{CHANNEL_DATA}:{MARKETS}": "_markets_update",
        f"{BATCH_DATA}:{MARKETS}": "_markets_batch",
    }
    skips: ClassVar[dict[str, str]] = {
        "connected": "connection ack",
        "unsubscribed": "unsubscribe ack",
        "pong": "pong (heartbeat reply)",
        f"{SUBSCRIBED}:{TRADES_CHANNEL}": "trade history replayed on subscribe",
    }

    def __init__(self) -> None:
        super().__init__()
        self.book_checks = BookChecks(SOURCE)

    def message_type(self, message: Any) -> str:
        kind = message["type"]
        if kind == ERROR:
            raise StandardiseError(f"dYdX error: {message.get('message')!r}")
        if kind in CONTROL_TYPES:
            return kind
        return f"{kind}:{message['channel']}"

    def convert_symbol(self, exchange_symbol: Any) -> str:
        """dYdX v4 markets are all perpetuals named ``BASE-QUOTE``: ``BTC-USD`` -> ``BTC.USD-PERP``."""
        if type(exchange_symbol) is not str or exchange_symbol.count(TICKER_SEPARATOR) != 1:
            raise ValueError(f"market must look like BASE-QUOTE, got {exchange_symbol!r}")
        return exchange_symbol.replace(TICKER_SEPARATOR, ".") + PERPETUAL_SUFFIX

    @staticmethod
    def _updates(message: dict) -> list:
        """The updates of a ``channel_batch_data`` frame."""
        updates = message["contents"]
        if type(updates) is not list:
            raise TypeError(f"batched contents must be a list, got {type(updates).__name__}")
        return updates

    def _batch(self, message: dict, atom_timestamp: int, one: Handler) -> list[Output]:
        """A batched frame's updates, each as its own ``channel_data`` would give."""
        return [out for contents in self._updates(message) for out in one(message, contents, atom_timestamp)]

    # -- order book ------------------------------------------------------------------------

    def _book_snapshot(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._book(message, [message["contents"]], True, atom_timestamp)

    def _book_update(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._book(message, [message["contents"]], False, atom_timestamp)

    def _book_batch(self, message: dict, atom_timestamp: int) -> list[Output]:
        """Updates batched in one frame: one ``message_id``, so one step of the book's order."""
        return self._book(message, self._updates(message), False, atom_timestamp)

    def _book(self, message: dict, parts: list, snapshot: bool, atom_timestamp: int) -> list[Output]:
        """``lob`` records of one frame's book contents (``parts``), checked for order as one message."""
        symbol = self.symbol_of(message["id"])
        key = normalised_key(SOURCE, symbol)
        sequence = integer(message["message_id"])
        # Within a side, the parts' order is kept: a later change of a level wins.
        bids, asks = ([level_of(level) for contents in parts for level in contents.get(side, [])] for side in SIDES)
        records = records_build.book_levels(
            exchange=SOURCE, symbol=symbol, key=key, bids=bids, asks=asks, is_snapshot=snapshot, sequence=sequence,
            atom_timestamp=atom_timestamp, writer=self.lob_writer,
        )
        held = check_order(self.book_checks, symbol, sequence, snapshot, atom_timestamp)
        return (self.skip(held) if held else records) + self.book_checks.requests(symbol, atom_timestamp)

    # -- trades ----------------------------------------------------------------------------

    def _trades(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._trade_records(message, message["contents"], atom_timestamp)

    def _trades_batch(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._batch(message, atom_timestamp, self._trade_records)

    def _trade_records(self, message: dict, contents: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol_of(message["id"])
        key = normalised_key(SOURCE, symbol)
        sequence = integer(message["message_id"])
        return [
            Output(
                TRADES,
                key,
                records_build.trade(
                    exchange=SOURCE,
                    symbol=symbol,
                    trade_id=self._trade_id(trade["id"]),
                    price=exact(trade["price"]),
                    size=exact(trade["size"]),
                    taker_side=self._taker_side(trade["side"]),
                    sequence=sequence,
                    event_timestamp=ms_from_iso(trade["createdAt"]),
                    atom_timestamp=atom_timestamp,
                ),
            )
            for trade in contents["trades"]
        ]

    @staticmethod
    def _trade_id(value: Any) -> str:
        if type(value) is not str:
            raise TypeError(f"trade id must be a string, got {value!r}")
        return value

    @staticmethod
    def _taker_side(side: Any) -> str:
        """dYdX's trade side is the taker order's."""
        try:
            return TAKER_SIDE[side]
        except (KeyError, TypeError):
            raise ValueError(f"trade side must be 'BUY' or 'SELL', got {side!r}") from None

    # -- candles ---------------------------------------------------------------------------

    def _candles_snapshot(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._candles(message, message["contents"]["candles"], atom_timestamp)

    def _candle_update(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._candles(message, [message["contents"]], atom_timestamp)

    def _candles_batch(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._candles(message, self._updates(message), atom_timestamp)

    def _candles(self, message: dict, candles: list, atom_timestamp: int) -> list[Output]:
        ticker, _, resolution = message["id"].partition(CANDLE_ID_SEPARATOR)
        if resolution not in RESOLUTIONS:
            raise ValueError(f"candle id must be <market>/<resolution>, got {message['id']!r}")
        interval, length_ms = RESOLUTIONS[resolution]
        symbol = self.symbol_of(ticker)
        key = normalised_key(SOURCE, symbol)
        starts = [ms_from_iso(candle["startedAt"]) for candle in candles]
        newest = max(starts, default=None)
        return [
            Output(
                CANDLE,
                key,
                records_build.exchange_candle(
                    exchange=SOURCE,
                    symbol=symbol,
                    interval=interval,
                    start=start,
                    end=start + length_ms,
                    open=exact(candle["open"]),
                    high=exact(candle["high"]),
                    low=exact(candle["low"]),
                    close=exact(candle["close"]),
                    volume=exact(candle["baseTokenVolume"]),
                    quote_volume=exact(candle["usdVolume"]),
                    trade_count=integer(candle["trades"]),
                    closed=start < newest,
                    event_timestamp=start,
                    atom_timestamp=atom_timestamp,
                ),
            )
            for start, candle in zip(starts, candles, strict=True)
        ]

    # -- markets: funding and open interest ------------------------------------------------

    def _markets_snapshot(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._market_records(message["contents"]["markets"], {}, atom_timestamp)

    def _markets_update(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._market_changes(message, message["contents"], atom_timestamp)

    def _markets_batch(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._batch(message, atom_timestamp, self._market_changes)

    def _market_changes(self, message: dict, contents: dict, atom_timestamp: int) -> list[Output]:
        trading = contents.get("trading")
        if not trading:
            if "oraclePrices" not in contents:
                raise KeyError("trading")
            return self.skip("markets update: oracle prices only (no funding rate or open interest)")
        return self._market_records(trading, contents.get("oraclePrices") or {}, atom_timestamp)

    def _market_records(self, markets: dict, oracle_prices: dict, atom_timestamp: int) -> list[Output]:
        received_ms = atom_timestamp // US_PER_MS
        outputs = []
        for ticker, market in markets.items():
            symbol = self.symbol_of(ticker)
            key = normalised_key(SOURCE, symbol)
            if "nextFundingRate" in market:
                oracle = market.get("oraclePrice") or oracle_prices.get(ticker, {}).get("oraclePrice")
                funding = records_build.funding_rate(
                    exchange=SOURCE,
                    symbol=symbol,
                    rate=exact(market["nextFundingRate"]),
                    mark_price=optional_exact(oracle),
                    index_price=optional_exact(oracle),
                    event_timestamp=received_ms,
                    atom_timestamp=atom_timestamp,
                )
                outputs.append(Output(FUNDING_RATE, key, funding))
            if "openInterest" in market:
                interest = records_build.open_interest(
                    exchange=SOURCE,
                    symbol=symbol,
                    open_interest=exact(market["openInterest"]),
                    event_timestamp=received_ms,
                    atom_timestamp=atom_timestamp,
                )
                outputs.append(Output(OPEN_INTEREST, key, interest))
        return outputs
