"""OKX v5 public channels -> ``lob``, ``trades``, ``ticker``, ``candle``, ``funding_rate``, ``open_interest``.

Every push is ``{"arg": {"channel", "instId"}, "data": [...]}``; ``books``
adds ``action`` (``snapshot`` or ``update``).  Requests are answered with
``{"event": ...}`` (acks, notices, errors), and the client's ``ping`` with the
bare text ``pong``.  OKX sends numbers as strings, so orjson decodes exactly.
Sizes of derivatives are in contracts, as OKX sends them; candle volume and open
interest use OKX's base-currency figures.

Books: the snapshot came on subscribe; from August 2026 OKX sends none and the
snapshot is the REST ``/api/v5/market/books`` answer the connector fetches when
asked (``book_resync``: a book's first update without a snapshot asks at once), under
the symbol's ``books`` raw key; updates numbered at or below its ``seqId`` are
already in it and skipped.  A book's
``sequence`` is ``seqId`` and its ``prev_sequence`` is ``prevSeqId`` (-1 on a
snapshot: none).  Every book message carries ``checksum``, OKX's signed CRC32 of
the top 25 levels after the message: it goes on the message's last ``lob``
record, and the standardiser checks it against its own copy of each book
(exact decimals, so the exchange's digits hash as sent).  A gap, a repeat or a
checksum that does not match asks for a resync (``book_resync``).  Book messages
sent before OKX added ``seqId``/``prevSeqId`` (2023) carry neither: such a book
is verified by its checksum alone, and its records carry null sequences;
messages without ``checksum`` (delisted by OKX in 2026) by their ``seqId`` alone.  With no
changes for a while OKX sends an update with empty sides and ``seqId`` ==
``prevSeqId``: a keepalive, skipped.  After maintenance OKX may restart
``seqId`` (an update whose ``seqId`` is below its ``prevSeqId``): the count goes
on from the new number, and the checksum still proves the book.

Trades: OKX's ``side`` is the taker's; a push may aggregate ``count`` fills, and its ``tradeId`` is the
last of them.  Trades missed in an outage arrive as ``GET /api/v5/market/history-trades`` answers the
connector archived under the symbol's ``trades`` raw key (``{"code", "msg", "data"}``, no ``arg``):
they become ``trades`` records marked ``origin`` ``backfill``, in trade-id order, of the same shape as
streamed ones (no ``seqId``: null sequence).  Every trade is published once by trade id, streamed or
backfilled; an aggregated push counts as its ``count`` ids ending at its ``tradeId`` (OKX's docs say
``tradeId`` is the last of the ``count`` aggregated fills; that those fills hold the ids just below it, as
an instrument's ids rise one by one, is this standardiser's reading), so the single fills the history
lists for it are not published again.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from l3_atom.books.checksums import OKX_DEPTH as OKX_CHECKSUM_DEPTH
from l3_atom.books.checksums import okx_checksum
from l3_atom.books.engine import ASK, BID, L2Book, Level
from l3_atom.off_chain.okx import TRADES as TRADES_FEED
from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.book_checks import BookChecks, Reason, Verdict, repeat_reason
from l3_atom.stream_processing.standardiser import Output, StandardiseError, Standardiser, exact, integer
from l3_atom.stream_processing.trade_ids import PublishedIds, unpublished
from l3_atom.tokens import Symbol, SymbolError
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

SOURCE = "okx"
PONG = b"pong"
# What ``decode`` makes of the bare ``pong`` text, so that it dispatches to a named skip.
PONG_MESSAGE = object()
PONG_TYPE = "pong"
EVENT_PREFIX = "event:"
# A REST ``/api/v5/market/books`` answer, archived under the symbol's ``books`` raw key.
REST_BOOKS_TYPE = "books (REST snapshot)"
# A ``history-trades`` answer, archived under the symbol's ``trades`` raw key to fill a gap.
TRADE_HISTORY_TYPE = "trades (REST history)"
ALREADY_PUBLISHED = "trade already published (streamed or backfilled)"
NO_SNAPSHOT_DETAIL = "book updates and no snapshot (OKX sends none on subscribe since August 2026)"
CANDLE_TYPE = "candle"

BOOK_ACTIONS = {"snapshot": True, "update": False}
# A book level is [price, size, deprecated, number of orders].
LEVEL_PRICE, LEVEL_SIZE = range(2)
# The books channel's depth: levels pushed beyond it are not removed by OKX.
BOOKS_DEPTH = 400
KEEPALIVE = "books: update without changes (keepalive)"
TAKER_SIDES = ("buy", "sell")
# A candle is [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm].
(
    CANDLE_START,
    CANDLE_OPEN,
    CANDLE_HIGH,
    CANDLE_LOW,
    CANDLE_CLOSE,
    CANDLE_VOLUME,
    CANDLE_VOLUME_CCY,
    CANDLE_VOLUME_QUOTE,
    CANDLE_CONFIRM,
) = range(9)
CANDLE_FIELDS = 9
# The first v5 candles were [ts, o, h, l, c, vol, volCcy]: no volCcyQuote, no confirm (OKX's docs example of
# that time, "data": [["1597026383085","8533.02","8553.74","8527.17","8548.26","45247","529.5858061"]]).
LEGACY_CANDLE_FIELDS = 7
CANDLE_CLOSED = {"0": False, "1": True}
# candle1m, candle4H, candle1Dutc, ...: the intervals of fixed length (months vary, so candle1M is not one).
CANDLE_CHANNEL = re.compile(r"^candle(?P<count>[1-9]\d*)(?P<unit>[smHDW])(?:utc)?$")
UNIT_MS = {"s": 1_000, "m": 60_000, "H": 3_600_000, "D": 86_400_000, "W": 604_800_000}

# instId shapes: BTC-USDT (spot), BTC-USDT-SWAP, BTC-USD-250926 (future), BTC-USD-250926-100000-C (option).
SPOT_PARTS, DERIVATIVE_PARTS, OPTION_PARTS = 2, 3, 5
SWAP = "SWAP"
EXPIRY_DIGITS = 6
CENTURY = "20"


def ms(value: Any) -> int:
    """OKX times are strings of milliseconds since the epoch."""
    if type(value) is not str or not (value.isascii() and value.isdigit()):
        raise ValueError(f"expected a millisecond timestamp string, got {value!r}")
    return int(value)


def blank_exact(value: Any) -> Any:
    """OKX sends ``""`` where it has no value (e.g. no best ask): None, else an exact decimal."""
    return None if value == "" or value is None else exact(value)


def optional_integer(value: Any) -> int | None:
    """A book number OKX does not always send: ``seqId``/``prevSeqId`` came after the first v5 ``books``
    messages, and ``checksum`` is delisted from 2026 (docs-v5 changelog, "Delist initial snapshot and
    checksum field in order book channels", https://www.okx.com/docs-v5/log_en)."""
    return None if value is None else integer(value)


def is_spot(inst_id: str) -> bool:
    return inst_id.count("-") == SPOT_PARTS - 1


class OkxStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB, TRADES, TICKER, CANDLE, FUNDING_RATE, OPEN_INTEREST, BOOK_RESYNC)
    handlers: ClassVar[dict[str, str]] = {
        "books": "_books",
        REST_BOOKS_TYPE: "_rest_books",
        TRADE_HISTORY_TYPE: "_trade_history",
        "trades": "_trades",
        "tickers": "_tickers",
        CANDLE_TYPE: "_candle",
        "funding-rate": "_funding_rate",
        "open-interest": "_open_interest",
        f"{EVENT_PREFIX}error": "_error",
    }
    skips: ClassVar[dict[str, str]] = {
        f"{EVENT_PREFIX}subscribe": "subscription ack",
        f"{EVENT_PREFIX}unsubscribe": "unsubscription ack",
        f"{EVENT_PREFIX}notice": "notice: connection to close for a service upgrade",
        PONG_TYPE: "pong",
    }

    def __init__(self) -> None:
        super().__init__()
        self._symbols: dict[str, str] = {}
        self.book_checks = BookChecks(SOURCE)
        # Normalised symbol -> its book since the last snapshot, to verify OKX's checksums.
        self._books: dict[str, L2Book] = {}
        # Trade ids published, streamed or backfilled: each once.
        self.published = PublishedIds()

    def decode(self, frame: bytes) -> Any:
        if frame == PONG:
            return PONG_MESSAGE
        return super().decode(frame)

    def message_type(self, message: Any) -> str:
        if message is PONG_MESSAGE:
            return PONG_TYPE
        if "event" in message:
            return f"{EVENT_PREFIX}{message['event']}"
        if "arg" not in message and "code" in message:
            return TRADE_HISTORY_TYPE if self.raw_key_parts()[2] == TRADES_FEED else REST_BOOKS_TYPE
        channel = message["arg"]["channel"]
        return CANDLE_TYPE if CANDLE_CHANNEL.match(channel) else channel

    def convert_symbol(self, exchange_symbol: Any) -> str:
        """instIds spell the instrument out: ``BTC-USDT-SWAP`` -> ``BTC.USDT-PERP``, ``BTC-USD-250926`` ->
        ``BTC.USD-20250926``, ``BTC-USD-250926-100000-C`` -> ``BTC.USD-20250926-100000-C``."""
        symbol = self._symbols.get(exchange_symbol)
        if symbol is None:
            symbol = self._symbols[exchange_symbol] = _name_of(exchange_symbol)
        return symbol

    def _pushes(self, message: dict) -> tuple[str, str, list]:
        """(normalised symbol, key, data) of a channel push."""
        symbol = self.symbol_of(message["arg"]["instId"])
        data = message["data"]
        if type(data) is not list or not data:
            raise ValueError(f"data must be a non-empty list, got {data!r}")
        return symbol, normalised_key(SOURCE, symbol), data

    def _books(self, message: dict, atom_timestamp: int) -> list[Output]:
        action = message["action"]
        if action not in BOOK_ACTIONS:
            raise ValueError(f"books action must be 'snapshot' or 'update', got {action!r}")
        symbol, key, data = self._pushes(message)
        outputs = []
        for book in data:
            outputs += self._book(symbol, key, book, BOOK_ACTIONS[action], atom_timestamp)
        return outputs + self.book_checks.requests(symbol, atom_timestamp)

    def _rest_books(self, message: dict, atom_timestamp: int) -> list[Output]:
        """A REST book snapshot: it names no symbol, the connector archived it under the symbol's books key."""
        code = message["code"]
        if code != "0":
            raise StandardiseError(f"okx book snapshot answered code {code!r}: {message.get('msg')!r}")
        symbol = self.keyed_symbol("REST book snapshot")
        key = normalised_key(SOURCE, symbol)
        [book] = message["data"]
        return self._book(symbol, key, book, True, atom_timestamp) + self.book_checks.requests(symbol, atom_timestamp)

    def _book(self, symbol: str, key: str, book: dict, snapshot: bool, atom_timestamp: int) -> list[Output]:
        """One book message: read it in full, check its place in the book, apply it and verify the checksum."""
        sequence = optional_integer(book.get("seqId"))
        prev_sequence = optional_integer(book.get("prevSeqId"))
        checksum = optional_integer(book.get("checksum"))
        event_timestamp = ms(book["ts"])
        bids = [(exact(level[LEVEL_PRICE]), exact(level[LEVEL_SIZE])) for level in book["bids"]]
        asks = [(exact(level[LEVEL_PRICE]), exact(level[LEVEL_SIZE])) for level in book["asks"]]
        if snapshot:
            prev_sequence = None
            self.book_checks.snapshot(symbol, sequence, atom_timestamp)
            self._books[symbol] = L2Book(BOOKS_DEPTH)
        elif not bids and not asks and sequence is not None and sequence == prev_sequence:
            return self.skip(KEEPALIVE)
        else:
            if symbol not in self.book_checks.continuity.books:
                # OKX sends no snapshot since August 2026: ask for the REST one now, not after a wait for it.
                self.book_checks.lost(symbol, Reason.NO_SNAPSHOT, NO_SNAPSHOT_DETAIL, atom_timestamp)
            if sequence is None or prev_sequence is None:
                self.book_checks.update(symbol, sequence, None, atom_timestamp)
            else:
                verdict = self._place(symbol, sequence, prev_sequence, atom_timestamp)
                repeat = repeat_reason(self.book_checks, symbol, sequence, verdict)
                if repeat is not None:
                    return self.skip(repeat)
        self._apply_and_verify(symbol, bids, asks, checksum, atom_timestamp)
        outputs = records_build.book_levels(
            exchange=SOURCE, symbol=symbol, key=key, bids=bids, asks=asks, is_snapshot=snapshot, sequence=sequence,
            prev_sequence=prev_sequence, checksum=checksum, event_timestamp=event_timestamp,
            atom_timestamp=atom_timestamp,
        )
        return outputs or self.skip("books: empty snapshot" if snapshot else "books: update without changes")

    def _place(self, symbol: str, sequence: int, prev_sequence: int, atom_timestamp: int) -> Verdict:
        """The update's place in its book; a restarted ``seqId`` (below ``prevSeqId``) starts a new count.

        A restart cannot be checked by number (the checksum still checks it).
        """
        if sequence >= prev_sequence:
            return self.book_checks.update(symbol, sequence, prev_sequence, atom_timestamp)
        self.book_checks.renumber(symbol, sequence, atom_timestamp)
        return Verdict.NEXT

    def _apply_and_verify(
        self, symbol: str, bids: list[Level], asks: list[Level], checksum: int | None, atom_timestamp: int
    ) -> None:
        """Apply the levels to the book kept since the snapshot and compare its CRC32 with OKX's.

        Only a book in sync is verified: one that is already out of sync has asked for a snapshot.
        A message without ``checksum`` (OKX delists it in 2026) is checked by its ``seqId`` alone.
        """
        local = self._books.get(symbol)
        if local is None:
            return
        for side, levels in ((BID, bids), (ASK, asks)):
            for price, size in levels:
                local.update(side, price, size)
        if checksum is None or not self.book_checks.continuity.in_sync(symbol):
            return
        computed = okx_checksum(local.bids.top(OKX_CHECKSUM_DEPTH), local.asks.top(OKX_CHECKSUM_DEPTH))
        if computed == checksum:
            self.book_checks.continuity.verified()
        else:
            self.book_checks.mismatch(symbol, f"expected {checksum}, computed {computed}", atom_timestamp)

    def _trades(self, message: dict, atom_timestamp: int) -> list[Output]:
        """A push of trades; one whose ids were published already (a backfill got them first) is skipped."""
        symbol, key, data = self._pushes(message)
        outputs = []
        for trade in data:
            output = Output(TRADES, key, self._trade(symbol, trade, atom_timestamp))
            last = int(output.record["trade_id"])
            fills = int(trade.get("count") or 1)
            new = [self.published.add(symbol, trade_id) for trade_id in range(last - fills + 1, last + 1)]
            if new[-1]:
                outputs.append(output)
            else:
                self.skipped[ALREADY_PUBLISHED] += 1
        return outputs

    def _trade_history(self, message: dict, atom_timestamp: int) -> list[Output]:
        """A backfilled ``history-trades`` page (newest first): the trades not yet published, oldest first, marked."""
        code = message["code"]
        if code != "0":
            raise StandardiseError(f"okx history-trades answered code {code!r}: {message.get('msg')!r}")
        symbol = self.keyed_symbol("trade history page")
        key = normalised_key(SOURCE, symbol)
        records = [self._trade(symbol, trade, atom_timestamp, ORIGIN_BACKFILL) for trade in message["data"]]
        trades = ((int(record["trade_id"]), record) for record in records)
        fresh = unpublished(self.published, symbol, trades, self.skipped, ALREADY_PUBLISHED)
        return [Output(TRADES, key, record) for record in fresh]

    @staticmethod
    def _trade(symbol: str, trade: dict, atom_timestamp: int, origin: str | None = None) -> dict[str, Any]:
        """A ``trades`` record of a pushed or a history trade (the same fields; the history has no ``seqId``)."""
        side = trade["side"]
        if side not in TAKER_SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        trade_id = trade["tradeId"]
        if type(trade_id) is not str or not trade_id.isdigit():
            raise TypeError(f"tradeId must be a string of digits, got {trade_id!r}")
        sequence = trade.get("seqId")
        return records_build.trade(
            exchange=SOURCE,
            symbol=symbol,
            trade_id=trade_id,
            price=exact(trade["px"]),
            size=exact(trade["sz"]),
            taker_side=side,
            sequence=None if sequence is None else integer(sequence),
            origin=origin,
            event_timestamp=ms(trade["ts"]),
            atom_timestamp=atom_timestamp,
        )

    def _tickers(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol, key, data = self._pushes(message)
        return [
            Output(
                TICKER,
                key,
                records_build.ticker(
                    exchange=SOURCE,
                    symbol=symbol,
                    bid_price=blank_exact(tick["bidPx"]),
                    bid_size=blank_exact(tick["bidSz"]),
                    ask_price=blank_exact(tick["askPx"]),
                    ask_size=blank_exact(tick["askSz"]),
                    last_price=blank_exact(tick["last"]),
                    last_size=blank_exact(tick["lastSz"]),
                    event_timestamp=ms(tick["ts"]),
                    atom_timestamp=atom_timestamp,
                ),
            )
            for tick in data
        ]

    def _candle(self, message: dict, atom_timestamp: int) -> list[Output]:
        """Volume in the base asset: ``vol`` for spot, ``volCcy`` for derivatives (whose ``vol`` is contracts).

        OKX gives a candle no time but its start, so that is its ``event_timestamp``.  A candle of the
        first v5 shape (7 fields) has no quote volume (null) and no ``confirm``: OKX pushed the window
        in progress, and without the flag it is not known to be final, so ``closed`` is false.
        """
        match = CANDLE_CHANNEL.match(message["arg"]["channel"])
        length_ms = int(match["count"]) * UNIT_MS[match["unit"]]
        interval = f"{match['count']}{match['unit'].lower()}"
        inst_id = message["arg"]["instId"]
        volume_field = CANDLE_VOLUME if is_spot(inst_id) else CANDLE_VOLUME_CCY
        symbol, key, data = self._pushes(message)
        outputs = []
        for row in data:
            if len(row) == LEGACY_CANDLE_FIELDS:
                quote_volume, closed = None, False
            elif len(row) == CANDLE_FIELDS:
                confirm = row[CANDLE_CONFIRM]
                if confirm not in CANDLE_CLOSED:
                    raise ValueError(f"candle confirm must be '0' or '1', got {confirm!r}")
                quote_volume, closed = exact(row[CANDLE_VOLUME_QUOTE]), CANDLE_CLOSED[confirm]
            else:
                raise ValueError(f"a candle has {CANDLE_FIELDS} fields, or {LEGACY_CANDLE_FIELDS} in the first v5 "
                                 f"shape, got {len(row)}")
            start = ms(row[CANDLE_START])
            record = records_build.exchange_candle(
                exchange=SOURCE,
                symbol=symbol,
                interval=interval,
                start=start,
                end=start + length_ms,
                open=exact(row[CANDLE_OPEN]),
                high=exact(row[CANDLE_HIGH]),
                low=exact(row[CANDLE_LOW]),
                close=exact(row[CANDLE_CLOSE]),
                volume=exact(row[volume_field]),
                quote_volume=quote_volume,
                closed=closed,
                event_timestamp=start,
                atom_timestamp=atom_timestamp,
            )
            outputs.append(Output(CANDLE, key, record))
        return outputs

    def _funding_rate(self, message: dict, atom_timestamp: int) -> list[Output]:
        """``fundingRate`` is settled at ``fundingTime``: that is the next funding."""
        symbol, key, data = self._pushes(message)
        return [
            Output(
                FUNDING_RATE,
                key,
                records_build.funding_rate(
                    exchange=SOURCE,
                    symbol=symbol,
                    rate=exact(funding["fundingRate"]),
                    predicted_rate=blank_exact(funding.get("nextFundingRate")),
                    next_funding_timestamp=ms(funding["fundingTime"]),
                    event_timestamp=ms(funding["ts"]),
                    atom_timestamp=atom_timestamp,
                ),
            )
            for funding in data
        ]

    def _open_interest(self, message: dict, atom_timestamp: int) -> list[Output]:
        """``oiCcy`` (base currency, e.g. BTC), comparable across exchanges, rather than ``oi`` (contracts)."""
        symbol, key, data = self._pushes(message)
        return [
            Output(
                OPEN_INTEREST,
                key,
                records_build.open_interest(
                    exchange=SOURCE,
                    symbol=symbol,
                    open_interest=exact(interest["oiCcy"]),
                    event_timestamp=ms(interest["ts"]),
                    atom_timestamp=atom_timestamp,
                ),
            )
            for interest in data
        ]

    def _error(self, message: dict, atom_timestamp: int) -> list[Output]:
        """A refused request (e.g. an unknown instId): surfaced in dead_letter with OKX's own words."""
        raise StandardiseError(f"okx error event, code {message.get('code')!r}: {message.get('msg')!r}")


def _name_of(inst_id: Any) -> str:
    if type(inst_id) is not str:
        raise TypeError(f"instId must be a string, got {inst_id!r}")
    parts = inst_id.split("-")
    base_quote = ".".join(parts[:SPOT_PARTS])
    if len(parts) == SPOT_PARTS:
        name = base_quote
    elif len(parts) == DERIVATIVE_PARTS and parts[2] == SWAP:
        name = f"{base_quote}-PERP"
    elif len(parts) in (DERIVATIVE_PARTS, OPTION_PARTS) and len(parts[2]) == EXPIRY_DIGITS:
        name = "-".join([base_quote, CENTURY + parts[2], *parts[DERIVATIVE_PARTS:]])
    else:
        name = ""
    try:
        return str(Symbol.parse(name))
    except SymbolError:
        raise ValueError(f"instId {inst_id!r} is not spot, swap, future or option") from None
