"""Coinbase Exchange ws-feed -> ``lob_l3``, ``trades_l3``, ``ticker``, ``lob``.

Full channel: ``open``/``change``/``done`` change the level-3 book;
``match``/``last_match`` are trades (Coinbase's ``side`` is the maker's, so
the taker is the other side); ``received`` and ``activate`` are not on the
book yet and are skipped, counted.  The level2 channel (``snapshot``,
``l2update``) feeds ``lob``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.standardiser import (
    Output,
    Standardiser,
    exact,
    integer,
    ms_from_iso,
    optional_exact,
)
from l3_atom.topics import LOB, LOB_L3, TICKER, TRADES_L3, normalised_key

SOURCE = "coinbase"
BOOK_SIDE = {"buy": "bid", "sell": "ask"}
TAKER_SIDE_OF_MAKER = {"buy": "sell", "sell": "buy"}
ZERO = exact("0")
# A level2 change is [side, price, size].
CHANGE_SIDE, CHANGE_PRICE, CHANGE_SIZE = range(3)
# A snapshot level is [price, size].
LEVEL_PRICE, LEVEL_SIZE = range(2)


def book_side(side: Any) -> str:
    try:
        return BOOK_SIDE[side]
    except (KeyError, TypeError):
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}") from None


class CoinbaseStandardiser(Standardiser):
    source = SOURCE
    topics = (LOB_L3, TRADES_L3, TICKER, LOB)
    handlers: ClassVar[dict[str, str]] = {
        "open": "_open",
        "change": "_change",
        "done": "_done",
        "match": "_match",
        "last_match": "_match",
        "ticker": "_ticker",
        "snapshot": "_snapshot",
        "l2update": "_l2update",
    }
    skips: ClassVar[dict[str, str]] = {
        "received": "received: order not on the book yet",
        "activate": "activate: stop order not on the book yet",
        "subscriptions": "subscription ack",
        "heartbeat": "heartbeat",
    }

    def __init__(self) -> None:
        super().__init__()
        self._symbols: dict[str, str] = {}

    def message_type(self, message: Any) -> str:
        return message["type"]

    def symbol(self, product_id: Any) -> str:
        """``BTC-USD`` -> ``BTC.USD`` (cached: products repeat)."""
        symbol = self._symbols.get(product_id)
        if symbol is None:
            symbol = self._symbols[product_id] = self.convert_symbol(product_id)
        return symbol

    def convert_symbol(self, exchange_symbol: Any) -> str:
        """Coinbase product ids are ``BASE-QUOTE``: the normalised name follows without a symbol list."""
        if type(exchange_symbol) is not str or exchange_symbol.count("-") != 1:
            raise ValueError(f"product_id must look like BASE-QUOTE, got {exchange_symbol!r}")
        return exchange_symbol.replace("-", ".")

    def _order_event(
        self, message: dict, atom_timestamp: int, event_type: str, price: Any, size: Any, reason: Any = None
    ) -> list[Output]:
        if reason is not None and type(reason) is not str:
            raise TypeError(f"reason must be a string, got {reason!r}")
        symbol = self.symbol(message["product_id"])
        record = {
            "exchange": SOURCE,
            "symbol": symbol,
            "event_type": event_type,
            "order_id": message["order_id"],
            "side": book_side(message["side"]),
            "price": price,
            "size": size,
            "reason": reason,
            "sequence": integer(message["sequence"]),
            "event_timestamp": ms_from_iso(message["time"]),
            "atom_timestamp": atom_timestamp,
        }
        return [Output(LOB_L3, normalised_key(SOURCE, symbol), record)]

    def _open(self, message: dict, atom_timestamp: int) -> list[Output]:
        return self._order_event(
            message, atom_timestamp, "open", exact(message["price"]), exact(message["remaining_size"])
        )

    def _change(self, message: dict, atom_timestamp: int) -> list[Output]:
        if "new_size" not in message and "new_funds" in message:
            return self.skip("change: funds of a market order, not on the book")
        price = optional_exact(message.get("price"))
        reason = message.get("reason")
        return self._order_event(message, atom_timestamp, "change", price, exact(message["new_size"]), reason)

    def _done(self, message: dict, atom_timestamp: int) -> list[Output]:
        reason = message["reason"]
        return self._order_event(message, atom_timestamp, "done", optional_exact(message.get("price")), ZERO, reason)

    def _match(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol(message["product_id"])
        maker_side = message["side"]
        book_side(maker_side)
        record = {
            "exchange": SOURCE,
            "symbol": symbol,
            "trade_id": str(integer(message["trade_id"])),
            "price": exact(message["price"]),
            "size": exact(message["size"]),
            "taker_side": TAKER_SIDE_OF_MAKER[maker_side],
            "maker_order_id": message["maker_order_id"],
            "taker_order_id": message["taker_order_id"],
            "sequence": integer(message["sequence"]),
            "event_timestamp": ms_from_iso(message["time"]),
            "atom_timestamp": atom_timestamp,
        }
        return [Output(TRADES_L3, normalised_key(SOURCE, symbol), record)]

    def _ticker(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol(message["product_id"])
        if "time" not in message:
            return self.skip("ticker: first ticker after subscribing has no time")
        sequence = message.get("sequence")
        record = records_build.ticker(
            exchange=SOURCE,
            symbol=symbol,
            bid_price=optional_exact(message.get("best_bid")),
            bid_size=optional_exact(message.get("best_bid_size")),
            ask_price=optional_exact(message.get("best_ask")),
            ask_size=optional_exact(message.get("best_ask_size")),
            last_price=optional_exact(message.get("price")),
            last_size=optional_exact(message.get("last_size")),
            sequence=None if sequence is None else integer(sequence),
            event_timestamp=ms_from_iso(message["time"]),
            atom_timestamp=atom_timestamp,
        )
        return [Output(TICKER, normalised_key(SOURCE, symbol), record)]

    def _level(
        self, symbol: str, side: str, price: Any, size: Any, snapshot: bool, event_timestamp: int | None, atom: int
    ) -> dict[str, Any]:
        return records_build.lob_level(
            exchange=SOURCE,
            symbol=symbol,
            side=side,
            price=exact(price),
            size=exact(size),
            is_snapshot=snapshot,
            event_timestamp=event_timestamp,
            atom_timestamp=atom,
        )

    def _snapshot(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol(message["product_id"])
        key = normalised_key(SOURCE, symbol)
        return [
            Output(LOB, key, self._level(symbol, side, lvl[LEVEL_PRICE], lvl[LEVEL_SIZE], True, None, atom_timestamp))
            for side, levels in (("bid", message["bids"]), ("ask", message["asks"]))
            for lvl in levels
        ]

    def _l2update(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol(message["product_id"])
        key = normalised_key(SOURCE, symbol)
        event_timestamp = ms_from_iso(message["time"])
        return [
            Output(
                LOB,
                key,
                self._level(
                    symbol,
                    book_side(change[CHANGE_SIDE]),
                    change[CHANGE_PRICE],
                    change[CHANGE_SIZE],
                    False,
                    event_timestamp,
                    atom_timestamp,
                ),
            )
            for change in message["changes"]
        ]
