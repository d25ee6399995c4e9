"""Kraken futures websocket -> ``lob``, ``trades``, ``ticker``, ``funding_rate``, ``open_interest``.

Numbers arrive as JSON numbers: decoded as exact decimals.

Books: Kraken sends a ``book_snapshot`` on every subscribe (so a resync is a
reconnect), then a ``book`` message per changed level; both carry their own
time and ``seq``, kept as ``sequence``.  Kraken documents ``seq`` only as "the
subscription message sequence number", never as stepping by one per product
(some clients assume it does), and its documented examples (snapshot 326072249,
delta 326094134) show no such step: ``prev_sequence`` is null and only order is
checked.  A delta repeating the last ``seq`` or inside the snapshot is skipped,
named; an older one after a newer is published and asks for a resync
(``book_resync``), as does a book with deltas and no snapshot.

Trades: ``side`` is the taker's.  A ticker gives a ticker record and an
open-interest record (in contracts, as Kraken reports it); for perpetuals
(``tag: perpetual``) also a funding-rate record: the rate is
``relative_funding_rate`` (a fraction of the price; ``funding_rate`` is an
amount of quote currency), and Kraken leaves the rate fields out when they are
zero.  ``ticker_lite``, the lighter variant Kraken documents beside ``ticker``
(https://docs.kraken.com/api/docs/futures-api/websocket/ticker_lite), gives a
ticker record only: best bid and ask, no sizes, no last trade, and no time of its
own, so its ``event_timestamp`` is the receive time (``atom_timestamp`` in ms).
Funding rates are computed values that can carry more decimal places
than the schema's 18: only those are rounded, half-even, to 18.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, ClassVar

from l3_atom.off_chain.kraken_futures import normalised_product
from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.book_checks import BookChecks, check_order
from l3_atom.stream_processing.standardiser import (
    US_PER_MS,
    Output,
    StandardiseError,
    Standardiser,
    decode_exact,
    exact,
    integer,
    optional_exact,
)
from l3_atom.stream_processing.standardisers.kraken import taker_side
from l3_atom.topics import BOOK_RESYNC, FUNDING_RATE, LOB, OPEN_INTEREST, TICKER, TRADES, normalised_key

SOURCE = "kraken-futures"
BOOK_SIDE = {"buy": "bid", "sell": "ask"}
PERPETUAL_TAG = "perpetual"
ZERO = Decimal(0)
# The schema's decimals have 18 places.
SCHEMA_PLACES = 18
SCHEMA_QUANTUM = Decimal(1).scaleb(-SCHEMA_PLACES)
# Kraken's answers to a request it refused.
REJECTIONS = frozenset({"error", "alert", "subscribed_failed", "unsubscribed_failed"})


def millis(value: Any) -> int:
    """Kraken times are integer milliseconds (documented as floats: an integral decimal is accepted too)."""
    if type(value) is Decimal and value == value.to_integral_value():
        return int(value)
    return integer(value)


def rate(value: Any) -> Decimal:
    """A funding rate; absent means zero (Kraken omits zero rates), rounded to the schema's 18 places if finer."""
    number = ZERO if value is None else exact(value)
    exponent = number.as_tuple().exponent
    return number.quantize(SCHEMA_QUANTUM, ROUND_HALF_EVEN) if type(exponent) is int and exponent < -SCHEMA_PLACES else number


class KrakenFuturesStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB, TRADES, TICKER, FUNDING_RATE, OPEN_INTEREST, BOOK_RESYNC)
    handlers: ClassVar[dict[str, str]] = {
        "book_snapshot": "_book_snapshot",
        "book": "_book",
        "trade_snapshot": "_trade_snapshot",
        "trade": "_trade",
        "ticker": "_ticker",
        "ticker_lite": "_ticker_lite",
    }
    skips: ClassVar[dict[str, str]] = {
        "heartbeat": "heartbeat",
        "info": "connection info",
        "subscribed": "subscription ack",
        "unsubscribed": "subscription ack",
    }

    def __init__(self) -> None:
        super().__init__()
        self.book_checks = BookChecks(SOURCE)

    def decode(self, frame: bytes) -> Any:
        """Prices and sizes are JSON numbers: exact decimals, never floats."""
        return decode_exact(frame)

    def message_type(self, message: Any) -> str:
        """Requests' answers carry ``event``, data carries ``feed``; a refused request raises (to dead_letter)."""
        event = message.get("event")
        if event in REJECTIONS:
            raise StandardiseError(f"Kraken futures rejected a request: {event}: {message.get('message')}")
        kind = event or message["feed"]
        if type(kind) is not str:
            raise TypeError(kind)
        return kind

    def convert_symbol(self, exchange_symbol: Any) -> str:
        """Product ids spell base, quote, kind and expiry: no symbol list is needed."""
        if type(exchange_symbol) is not str:
            raise TypeError(f"product_id must be a string, got {exchange_symbol!r}")
        return normalised_product(exchange_symbol)

    def _record(self, topic: str, symbol: str, fields: dict[str, Any], event_timestamp: int, atom: int) -> Output:
        record = {"exchange": SOURCE, "symbol": symbol, **fields, "event_timestamp": event_timestamp,
                  "atom_timestamp": atom}
        return Output(topic, normalised_key(SOURCE, symbol), record)

    def _book_snapshot(self, message: dict, atom_timestamp: int) -> list[Output]:
        sides = (("bid", message["bids"]), ("ask", message["asks"]))
        return self._levels(message, [(side, level) for side, levels in sides for level in levels], True, atom_timestamp)

    def _book(self, message: dict, atom_timestamp: int) -> list[Output]:
        side = BOOK_SIDE.get(message["side"])
        if side is None:
            raise ValueError(f"side must be 'buy' or 'sell', got {message['side']!r}")
        return self._levels(message, [(side, message)], False, atom_timestamp)

    def _levels(self, message: dict, levels: list[tuple[str, dict]], snapshot: bool, atom: int) -> list[Output]:
        """``lob`` records of a book message's ``(side, {"price", "qty"})`` levels, checked for order."""
        symbol = self.symbol_of(message["product_id"])
        key = normalised_key(SOURCE, symbol)
        sequence, time = integer(message["seq"]), millis(message["timestamp"])
        records = [
            Output(LOB, key, records_build.lob_level(
                exchange=SOURCE, symbol=symbol, side=side, price=exact(level["price"]), size=exact(level["qty"]),
                is_snapshot=snapshot, sequence=sequence, event_timestamp=time, atom_timestamp=atom,
            ))
            for side, level in levels
        ]
        held = check_order(self.book_checks, symbol, sequence, snapshot, atom)
        return (self.skip(held) if held else records) + self.book_checks.requests(symbol, atom)

    def _trade_snapshot(self, message: dict, atom_timestamp: int) -> list[Output]:
        return [out for trade in message["trades"] for out in self._trade(trade, atom_timestamp)]

    def _trade(self, trade: dict, atom_timestamp: int) -> list[Output]:
        uid = trade["uid"]
        if type(uid) is not str:
            raise TypeError(f"uid must be a string, got {uid!r}")
        fields = {
            "trade_id": uid,
            "price": exact(trade["price"]),
            "size": exact(trade["qty"]),
            "taker_side": taker_side(trade["side"]),
            "sequence": integer(trade["seq"]),
            "origin": None,
        }
        return [self._record(TRADES, self.symbol_of(trade["product_id"]), fields, millis(trade["time"]),
                             atom_timestamp)]

    def _ticker_lite(self, message: dict, atom_timestamp: int) -> list[Output]:
        """Best bid and ask; a ``time`` is used if Kraken ever sends one, else the receive time."""
        symbol = self.symbol_of(message["product_id"])
        time = message.get("time")
        ticker = {
            "bid_price": optional_exact(message.get("bid")),
            "bid_size": None,
            "ask_price": optional_exact(message.get("ask")),
            "ask_size": None,
            "last_price": None,
            "last_size": None,
            "sequence": None,
        }
        event_timestamp = atom_timestamp // US_PER_MS if time is None else millis(time)
        return [self._record(TICKER, symbol, ticker, event_timestamp, atom_timestamp)]

    def _ticker(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol_of(message["product_id"])
        time = millis(message["time"])
        ticker = {
            "bid_price": optional_exact(message.get("bid")),
            "bid_size": optional_exact(message.get("bid_size")),
            "ask_price": optional_exact(message.get("ask")),
            "ask_size": optional_exact(message.get("ask_size")),
            "last_price": optional_exact(message.get("last")),
            "last_size": None,
            "sequence": None,
        }
        out = [
            self._record(TICKER, symbol, ticker, time, atom_timestamp),
            self._record(OPEN_INTEREST, symbol, {"open_interest": exact(message["openInterest"])}, time,
                         atom_timestamp),
        ]
        if message.get("tag") == PERPETUAL_TAG:
            funding = {
                "rate": rate(message.get("relative_funding_rate")),
                "predicted_rate": rate(message.get("relative_funding_rate_prediction")),
                "mark_price": optional_exact(message.get("markPrice")),
                "index_price": optional_exact(message.get("index")),
                "next_funding_timestamp": millis(message["next_funding_rate_time"]),
            }
            out.append(self._record(FUNDING_RATE, symbol, funding, time, atom_timestamp))
        return out
