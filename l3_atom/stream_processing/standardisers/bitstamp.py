"""Bitstamp websocket v2 -> ``lob_l3``, ``lob``, ``trades_l3``.

Bitstamp sends every price and amount twice: as a JSON number (``price``) and
as the exact string (``price_str``); only the strings are read.

``live_orders``: ``order_created`` / ``order_changed`` / ``order_deleted`` are
``open`` / ``change`` / ``done`` of one order (``order_type`` 0 is a bid, 1 an
ask); ``amount_str`` is what still rests on the book.  Bitstamp says neither
why an order changed or left nor in which sequence: ``reason`` and
``sequence`` are null.

``live_trades``: ``type`` is the taker's side (0 buy, 1 sell), and the trade
names both orders (``buy_order_id``, ``sell_order_id``), so the taker's order
is the one on the taker's side and the maker's the other: each trade is one
``trades_l3`` record.  It is not also published on ``trades``: a consumer
reading both topics (the candle builder does) would count it twice.

``diff_order_book``: changed levels, amount 0 removes one; no snapshot and no
sequence number on this channel.  Times are ``microtimestamp`` (µs) in ms.
"""

from __future__ import annotations

from typing import Any, ClassVar

from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.standardiser import Output, StandardiseError, Standardiser, exact, integer
from l3_atom.topics import LOB, LOB_L3, TRADES_L3, normalised_key

SOURCE = "bitstamp"
BOOK_SIDE = {0: "bid", 1: "ask"}
TAKER_SIDE = {0: "buy", 1: "sell"}
EVENT_TYPE = {"order_created": "open", "order_changed": "change", "order_deleted": "done"}
ZERO = exact("0")
US_PER_MS = 1000
DIFF_ORDER_BOOK = "diff_order_book"


def ms_from_microtimestamp(value: Any) -> int:
    """Bitstamp's ``microtimestamp`` (a string of µs since the epoch) in ms."""
    if type(value) is not str or not value.isdigit():
        raise TypeError(f"expected a microtimestamp string, got {type(value).__name__} {value!r}")
    return int(value) // US_PER_MS


def side_of(sides: dict[int, str], value: Any, field: str) -> str:
    if type(value) is not int or value not in sides:
        raise ValueError(f"{field} must be 0 or 1, got {value!r}")
    return sides[value]


class BitstampStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB_L3, LOB, TRADES_L3)
    handlers: ClassVar[dict[str, str]] = {
        **{event: "_order" for event in EVENT_TYPE},
        "trade": "_trade",
        DIFF_ORDER_BOOK: "_diff",
    }
    skips: ClassVar[dict[str, str]] = {
        "bts:subscription_succeeded": "subscription ack",
        "bts:unsubscription_succeeded": "unsubscription ack",
        "bts:heartbeat": "heartbeat",
        "bts:request_reconnect": "reconnect request (the connector reconnects)",
    }

    def message_type(self, message: Any) -> str:
        event = message["event"]
        if event == "bts:error":
            raise StandardiseError(f"Bitstamp error: {message.get('data')!r}")
        if event == "data":
            # Book channels all send "data"; the channel tells them apart.
            return message["channel"].rpartition("_")[0]
        return event

    def _pair_symbol(self, message: dict) -> str:
        return self.symbol_of(message["channel"].rpartition("_")[2])

    def _order(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self._pair_symbol(message)
        data = message["data"]
        event_type = EVENT_TYPE[message["event"]]
        record = {
            "exchange": SOURCE,
            "symbol": symbol,
            "event_type": event_type,
            "order_id": str(integer(data["id"])),
            "side": side_of(BOOK_SIDE, data["order_type"], "order_type"),
            "price": exact(data["price_str"]),
            "size": ZERO if event_type == "done" else exact(data["amount_str"]),
            "reason": None,
            "sequence": None,
            "event_timestamp": ms_from_microtimestamp(data["microtimestamp"]),
            "atom_timestamp": atom_timestamp,
        }
        return [Output(LOB_L3, normalised_key(SOURCE, symbol), record)]

    def _trade(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self._pair_symbol(message)
        data = message["data"]
        taker_side = side_of(TAKER_SIDE, data["type"], "type")
        buy_order, sell_order = str(integer(data["buy_order_id"])), str(integer(data["sell_order_id"]))
        taker_order, maker_order = (buy_order, sell_order) if taker_side == "buy" else (sell_order, buy_order)
        record = {
            "exchange": SOURCE,
            "symbol": symbol,
            "trade_id": str(integer(data["id"])),
            "price": exact(data["price_str"]),
            "size": exact(data["amount_str"]),
            "taker_side": taker_side,
            "maker_order_id": maker_order,
            "taker_order_id": taker_order,
            "sequence": None,
            "event_timestamp": ms_from_microtimestamp(data["microtimestamp"]),
            "atom_timestamp": atom_timestamp,
        }
        return [Output(TRADES_L3, normalised_key(SOURCE, symbol), record)]

    def _diff(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self._pair_symbol(message)
        key = normalised_key(SOURCE, symbol)
        data = message["data"]
        event_timestamp = ms_from_microtimestamp(data["microtimestamp"])
        outputs = records_build.book_levels(
            exchange=SOURCE, symbol=symbol, key=key, bids=data["bids"], asks=data["asks"], is_snapshot=False,
            event_timestamp=event_timestamp, atom_timestamp=atom_timestamp,
        )
        return outputs or self.skip("book diff without levels")
