"""Kraken spot websocket -> ``lob``, ``trades``, ``ticker``, ``candle``; API v2 and v1 frames.

The connector speaks v2 (JSON objects, numbers as JSON numbers: decoded as
exact decimals).  Raw topics and recordings made before it may hold v1
frames (arrays ``[channel id, payload, channel name, pair]``, numbers as
strings, times as epoch seconds): both are understood, so old archives
reprocess unchanged.

Book: Kraken has no sequence numbers (``sequence`` and ``prev_sequence`` are
null); the websocket sends a snapshot on subscribe (v1 sides ``as``/``bs``,
v2 ``type: snapshot``), marked ``is_snapshot``, so a resync reconnects.  After
each message Kraken gives a CRC32 of the top 10 levels (v1 ``c``, v2
``checksum``; v1 snapshots carry none): it goes on the message's last ``lob``
record, and the standardiser proves it on its own copy of each book (exact
Decimals, truncated to the subscribed depth as Kraken asks); a mismatch makes
a ``book_resync`` request.  Kraken hashes the digits of the pair's precision:
v1 strings carry them, v2 numbers drop trailing zeros (``0.566`` for
``0.5660``), so after each v2 snapshot the pair's precision is found from
its checksum: the fewest decimals, at or above those written, that hash to it.
v1 levels carry their own time (used as ``event_timestamp``) and may carry an
``r`` flag (a level republished when it re-enters the subscribed depth: an
update like any other).  Trades: ``side`` is the taker's in both versions.
Ticker: v1 frames, and v2 frames from before Kraken added ``timestamp``,
carry no time: the receive time stands in.  Pages of the REST trade history
(``GET /0/public/Trades``, ``{"error", "result": {<pair>: [[price, volume, time, side,
order type, misc, trade_id], ...], "last"}}``) the connector archived under the pair's
``trade`` key to fill a gap become trades with ``origin`` ``backfill``: their
``trade_id`` is the v2 stream's, and each trade id, streamed or backfilled, is
published once.  Candles: Kraken has no "closed"
flag; a candle is closed when its window ended before the message's time
(true for the older candles of a snapshot, false for running updates).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import Any, ClassVar

from l3_atom.books.checksums import KRAKEN_DEPTH, KrakenLevelTexts, kraken_checksum
from l3_atom.books.engine import ASK, BID, SUBSCRIBED_DEPTHS, L2Book, Level
from l3_atom.off_chain.kraken import (
    BOOK,
    OHLC,
    REST_TRADE_ID,
    TRADE,
    V1_CHANNEL_NAME,
    V1_PAIR,
    normalised_pair,
    pair_trades,
)
from l3_atom.off_chain.kraken import TICKER as TICKER_CHANNEL
from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.book_checks import BookChecks
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
from l3_atom.stream_processing.trade_ids import PublishedIds
from l3_atom.topics import BOOK_RESYNC, CANDLE, LOB, ORIGIN_BACKFILL, TICKER, TRADES, normalised_key

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
# v1 trade: [price, volume, time, side, order type, misc]; a REST trade adds trade_id.
TRADE_PRICE, TRADE_VOLUME, TRADE_TIME, TRADE_SIDE = range(4)
# A page of the REST trade history (``{"error": [], "result": {...}}``), archived by the connector to fill a gap.
TRADE_HISTORY = "tradeHistory"
ALREADY_PUBLISHED = "trade already published (streamed or backfilled)"
# v1 ticker "a"/"b": [price, whole lot volume, lot volume]; "c" (last trade): [price, lot volume].
QUOTE_PRICE, QUOTE_LOT_VOLUME = 0, 2
LAST_PRICE, LAST_VOLUME = range(2)
# v1 ohlc: [time, end time, open, high, low, close, vwap, volume, count].
OHLC_TIME, OHLC_END, OHLC_OPEN, OHLC_HIGH, OHLC_LOW, OHLC_CLOSE, OHLC_VWAP, OHLC_VOLUME, OHLC_COUNT = range(9)
V1_PAYLOAD = 1
# The shortest v1 data frame: [channel id, payload, channel name, pair].
V1_MIN_LENGTH = 4
BOOK_MESSAGE_TYPES = frozenset({"snapshot", "update"})
# v1 book channel names carry the subscribed depth: ``book-1000``.
V1_DEPTH_SEPARATOR = "-"
# Decimals (price, size) Kraken formats a pair's levels with before hashing; None: as written.
Places = tuple[int | None, int | None]
# v1 strings carry the pair's digits (trailing zeros included): hashed as written.
AS_WRITTEN: Places = (None, None)
# The most decimals tried when finding a v2 pair's precision (Avro decimals keep 18).
MAX_PLACES = 18


MS_PER_S = 1000
# A v1 data frame is a JSON array; everything else (v1 events, v2) is an object.
V1_FRAME_START = b"["
MS_DIGITS = 3  # decimals of a second kept: milliseconds
MS_PADDING = "0" * MS_DIGITS
# "1618678142.557535": a v1 time's length and where its point is.
V1_TIME_LENGTH = 17
V1_TIME_POINT = 10


def ms_from_epoch_seconds(value: Any) -> int:
    """``"1618678142.557535"`` (v1: seconds as a decimal string) -> 1618678142557.

    Every v1 book level carries one: plain ``digits.digits`` is cut at the millisecond as
    text (what the ``Decimal`` would give, truncated); any other form goes through ``Decimal``.
    """
    if type(value) is str:
        if len(value) == V1_TIME_LENGTH and value[V1_TIME_POINT] == ".":
            # The form every v1 time has had: ten digits of seconds, six of microseconds.
            digits = value[:V1_TIME_POINT] + value[V1_TIME_POINT + 1 : V1_TIME_POINT + 1 + MS_DIGITS]
            if digits.isascii() and digits.isdigit() and value[V1_TIME_POINT + 1 :].isdigit():
                return int(digits)
        whole, _, fraction = value.partition(".")
        if whole.isascii() and whole.isdigit() and fraction.isascii() and (fraction.isdigit() or not fraction):
            return int(whole) * MS_PER_S + int((fraction + MS_PADDING)[:MS_DIGITS])
    return int(exact(value).scaleb(MS_DIGITS))


def v1_levels(records: list[Output], template: dict, key: str, side: str, levels: list) -> None:
    """Append one side's v1 levels ``[price, volume, time]`` (or ``[..., "r"]``, republished) as ``lob`` outputs.

    Every level's shape is checked first, then the records are built (in C where built), then each
    takes its level's time: three passes, each without a Python call per level that it can avoid.
    """
    for level in levels:
        if len(level) > LEVEL_FLAG and level[LEVEL_FLAG] != REPUBLISHED or len(level) > LEVEL_FLAG + 1:
            raise ValueError(f"book level must be [price, volume, time] or [..., 'r'], got {level!r}")
    start = len(records)
    records_build.lob_outputs(records, template, key, side, levels)
    for output, level in zip(islice(records, start, None), levels, strict=True):
        output.record["event_timestamp"] = ms_from_epoch_seconds(level[LEVEL_TIME])


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


def v1_taker_side(side: Any) -> str:
    """v1 and REST trades name the taker's side ``b`` or ``s``."""
    try:
        return V1_TAKER_SIDE[side]
    except (KeyError, TypeError):
        raise ValueError(f"trade side must be 'b' or 's', got {side!r}") from None


def checksum(value: Any) -> int:
    """A CRC32: an integer (v2) or its decimal string (v1)."""
    number = int(value) if type(value) is str and value.isdigit() else integer(value)
    if not 0 <= number < CRC32_LIMIT:
        raise ValueError(f"checksum must be an unsigned 32-bit integer, got {value!r}")
    return number


def v1_depth(channel_name: str) -> int:
    """``book-1000`` -> 1000: the depth the v1 book was subscribed with (where Kraken truncates it)."""
    depth = channel_name.partition(V1_DEPTH_SEPARATOR)[2]
    if not depth.isdigit():
        raise ValueError(f"book channel name must be book-<depth>, got {channel_name!r}")
    return int(depth)


def decimals(value: Decimal) -> int:
    """Digits after the point as written: ``Decimal("0.5660")`` -> 4, ``Decimal("12")`` -> 0."""
    return max(0, -int(value.as_tuple().exponent))


def hashing_places(asks: list[Level], bids: list[Level], expected: int) -> Places | None:
    """The (price, size) decimals that make this top of book hash to ``expected``; None if none do.

    v2 numbers drop trailing zeros, never digits: the fewest decimals at or above the most
    written are tried first.  A false match would need a CRC32 collision (1 in 2**32 per try).
    """
    levels = asks + bids
    if not levels:
        return None
    price_from = max(decimals(price) for price, _ in levels)
    size_from = max(decimals(size) for _, size in levels)
    for price_places in range(price_from, MAX_PLACES + 1):
        for size_places in range(size_from, MAX_PLACES + 1):
            if kraken_checksum(asks, bids, price_places, size_places) == expected:
                return price_places, size_places
    return None


def v2_levels(levels: list[dict]) -> list[tuple[Any, Any]]:
    """v2 levels ``{"price": p, "qty": q}`` -> ``(p, q)``, as ``records_build.book_levels`` reads them."""
    return [(level["price"], level["qty"]) for level in levels]


@dataclass(slots=True)
class KrakenBook:
    """One symbol's book as Kraken hashes it: exact levels, truncated to the subscribed depth."""

    levels: L2Book
    # The decimals Kraken hashes with: AS_WRITTEN (v1), or found at the first checksum (v2; None until then).
    places: Places | None
    # The checksum with each level's text kept, made with ``places`` once they are known.
    texts: KrakenLevelTexts | None = None


def rejection(message: dict) -> str | None:
    """Why Kraken refused a request, or None: v1 ``status: error`` / ``event: error``, v2 ``success: false``."""
    if message.get("status") == "error" or message.get("event") == "error" or message.get("success") is False:
        return str(message.get("errorMessage") or message.get("error") or "no reason given")
    return None


class KrakenStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB, TRADES, TICKER, CANDLE, BOOK_RESYNC)
    handlers: ClassVar[dict[str, str]] = {
        BOOK: "_book",
        TRADE: "_trade",
        TICKER_CHANNEL: "_ticker",
        OHLC: "_ohlc",
        V1 + BOOK: "_v1_book",
        V1 + TRADE: "_v1_trade",
        V1 + TICKER_CHANNEL: "_v1_ticker",
        V1 + OHLC: "_v1_ohlc",
        TRADE_HISTORY: "_trade_history",
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
        # Normalised symbol -> its book since the last snapshot, to prove Kraken's checksums.
        self.books: dict[str, KrakenBook] = {}
        self.book_checks = BookChecks(SOURCE)
        # Trade ids published, streamed or backfilled: each once.
        self.published = PublishedIds()

    def decode(self, frame: bytes) -> Any:
        """v2 sends prices as JSON numbers: exact decimals, never floats.

        v1 data frames (arrays) carry every price, size and time as a string (docs.kraken.com,
        websockets v1 "book", "trade", "ticker", "ohlc"): orjson reads them at several times
        yapic's speed with ``parse_float``.  A JSON number where v1 puts a string would stay a
        float, which ``exact`` refuses: a dead letter, never a rounded value.
        """
        if frame[:1] == V1_FRAME_START:
            return super().decode(frame)
        return decode_exact(frame)

    def message_type(self, message: Any) -> str:
        """v1 data: ``v1 <channel>``; v1 events, v2 channels and v2 method acks: their own name.

        A rejected request (unknown pair, bad subscription) raises: it must reach dead_letter, not a skip count.
        """
        if isinstance(message, list):
            if len(message) < V1_MIN_LENGTH:
                raise TypeError(f"a v1 data frame has at least {V1_MIN_LENGTH} elements")
            return V1 + message[V1_CHANNEL_NAME].partition("-")[0]
        if "result" in message and "error" in message and "method" not in message:  # a REST answer, not an ack
            if message["error"]:
                raise StandardiseError(f"Kraken answered errors: {message['error']}")
            return TRADE_HISTORY
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

    # -- v2 ------------------------------------------------------------------------------------

    def _book(self, message: dict, atom_timestamp: int) -> list[Output]:
        kind = message["type"]
        if kind not in BOOK_MESSAGE_TYPES:
            raise ValueError(f"book type must be 'snapshot' or 'update', got {kind!r}")
        snapshot = kind == "snapshot"
        out = []
        for book in message["data"]:
            symbol = self.symbol_of(book["symbol"])
            expected = checksum(book["checksum"])
            stamp = book.get("timestamp")
            event_timestamp = None if stamp is None and snapshot else ms_from_iso(book["timestamp"])
            records = records_build.book_levels(
                exchange=SOURCE,
                symbol=symbol,
                key=normalised_key(SOURCE, symbol),
                bids=v2_levels(book["bids"]),
                asks=v2_levels(book["asks"]),
                is_snapshot=snapshot,
                checksum=expected,
                event_timestamp=event_timestamp,
                atom_timestamp=atom_timestamp,
            )
            # v2 numbers lost their trailing zeros: the places are found at the first checksum.
            out += self._book_message(symbol, records, snapshot, expected, SUBSCRIBED_DEPTHS[SOURCE], None,
                                      atom_timestamp)
        return out

    def _trade(self, message: dict, atom_timestamp: int) -> list[Output]:
        out = []
        for trade in message["data"]:
            symbol = self.symbol_of(trade["symbol"])
            out += self._once(symbol, trade["trade_id"], trade["price"], trade["qty"], taker_side(trade["side"]),
                              ms_from_iso(trade["timestamp"]), None, atom_timestamp)
        return out

    def _trade_history(self, message: dict, atom_timestamp: int) -> list[Output]:
        """A backfilled page (the raw key names the pair): its trades not yet published, in id order, marked."""
        symbol = self.keyed_symbol("REST trade page")
        trades = pair_trades(message["result"])
        if any(len(trade) <= REST_TRADE_ID for trade in trades):
            raise ValueError("a trade page without trade ids cannot be told from the streamed trades")
        out = []
        for trade in sorted(trades, key=lambda trade: integer(trade[REST_TRADE_ID])):
            out += self._once(symbol, trade[REST_TRADE_ID], trade[TRADE_PRICE], trade[TRADE_VOLUME],
                              v1_taker_side(trade[TRADE_SIDE]), ms_from_epoch_seconds(trade[TRADE_TIME]),
                              ORIGIN_BACKFILL, atom_timestamp)
        return out

    def _once(self, symbol: str, trade_id: Any, price: Any, size: Any, side: str, event_timestamp: int,
              origin: str | None, atom_timestamp: int) -> list[Output]:
        """A trade's record, unless its id was published already (streamed or backfilled)."""
        trade_id = integer(trade_id)
        record = records_build.trade(
            exchange=SOURCE,
            symbol=symbol,
            trade_id=str(trade_id),
            price=exact(price),
            size=exact(size),
            taker_side=side,
            # Kraken's trade id is a sequence number, unique per book.
            sequence=trade_id,
            origin=origin,
            event_timestamp=event_timestamp,
            atom_timestamp=atom_timestamp,
        )
        if not self.published.add(symbol, trade_id):
            return self.skip(ALREADY_PUBLISHED)
        return [Output(TRADES, normalised_key(SOURCE, symbol), record)]

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
        """A snapshot (``as``/``bs``, no checksum) or an update (``a`` and/or ``b``, then ``c``)."""
        symbol = self._v1_symbol(message)
        depth = v1_depth(message[V1_CHANNEL_NAME])
        key = normalised_key(SOURCE, symbol)
        template = records_build.lob_template(
            exchange=SOURCE, symbol=symbol, is_snapshot=False, atom_timestamp=atom_timestamp,
        )
        records: list[Output] = []
        expected = None
        snapshot = False
        for part in message[V1_PAYLOAD:V1_CHANNEL_NAME]:
            for name, levels in part.items():
                if name == V1_CHECKSUM:
                    expected = checksum(levels)
                    continue
                snapshot = template["is_snapshot"] = name in V1_SNAPSHOT_SIDES
                side = V1_SNAPSHOT_SIDES[name] if snapshot else V1_UPDATE_SIDES[name]
                v1_levels(records, template, key, side, levels)
        if expected is not None and records:
            records[-1].record["checksum"] = expected
        return self._book_message(symbol, records, snapshot, expected, depth, AS_WRITTEN, atom_timestamp)

    def _v1_trade(self, message: list, atom_timestamp: int) -> list[Output]:
        symbol = self._v1_symbol(message)
        key = normalised_key(SOURCE, symbol)
        out = []
        for trade in message[V1_PAYLOAD]:
            record = records_build.trade(
                exchange=SOURCE,
                symbol=symbol,
                trade_id=None,
                price=exact(trade[TRADE_PRICE]),
                size=exact(trade[TRADE_VOLUME]),
                taker_side=v1_taker_side(trade[TRADE_SIDE]),
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

    def _book_message(
        self, symbol: str, records: list[Output], snapshot: bool, expected: int | None, depth: int,
        places: Places | None, atom_timestamp: int,
    ) -> list[Output]:
        """Apply one message's ``lob`` records to ``symbol``'s book, prove its checksum, add any resync request.

        A snapshot starts a new book.  Kraken numbers nothing, so an update's verdict is always
        NEXT: its checksum is the proof.  A book out of sync (a mismatch, no snapshot yet) is not
        checked again until the next snapshot: one problem, one mismatch.
        """
        checks = self.book_checks
        if snapshot:
            book = self.books[symbol] = KrakenBook(L2Book(depth), places)
            checks.snapshot(symbol, None, atom_timestamp)
        else:
            checks.update(symbol, None, None, atom_timestamp)
            book = self.books.get(symbol)
        if book is not None:
            for output in records:
                record = output.record
                book.levels.update(record["side"], record["price"], record["size"])
        if expected is not None:
            self.book_checksums[symbol] = expected
            if book is not None and checks.continuity.in_sync(symbol):
                self._verify(symbol, book, expected, atom_timestamp)
        return records + checks.requests(symbol, atom_timestamp)

    def _verify(self, symbol: str, book: KrakenBook, expected: int, atom_timestamp: int) -> None:
        """Kraken's CRC32 of its top 10 levels against ours: a match counts, a mismatch loses the book."""
        levels = book.levels
        if book.places is None:
            top = levels.top(KRAKEN_DEPTH)
            book.places = hashing_places(top[ASK], top[BID], expected)
        places = book.places or AS_WRITTEN
        if book.texts is None or book.texts.places != places:
            book.texts = KrakenLevelTexts(*places)
        computed = book.texts.checksum_of(levels.asks, levels.bids)
        if computed == expected:
            self.book_checks.continuity.verified()
        else:
            self.book_checks.mismatch(symbol, f"expected {expected}, computed {computed}", atom_timestamp)

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

