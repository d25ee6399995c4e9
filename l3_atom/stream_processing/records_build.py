"""Builders of the normalised records that the exchange standardisers emit.

One place knows each record's shape: every builder returns a dict with
exactly its schema's fields (``static/schemas/<topic>.avsc``) in schema order,
so a standardiser only extracts and converts the exchange's values and cannot
misspell, forget or reorder a field.  ``tests/test_records_build.py`` checks
the builders against the schemas.

The builders copy their arguments unchanged: converting exchange values
(``exact``, ``integer``, ...) stays with each standardiser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, Protocol

from l3_atom.stream_processing.standardiser import Output, exact
from l3_atom.topics import LOB

try:
    from l3_atom.stream_processing import _levels_c
except ImportError:  # not compiled (no C compiler when installed): book_levels' loop runs in Python
    _levels_c = None

EXCHANGE_ORIGIN = "exchange"
ZERO = Decimal(0)
# Builds a NamedTuple without its Python-level __new__ (the fields are given in order).
_new_tuple = tuple.__new__
# Most exchanges send a book level as [price, size, ...].
LEVEL_PRICE, LEVEL_SIZE = range(2)
# Coinbase's and Gemini's changes are [side, price, size].
SIDED_SIDE, SIDED_PRICE, SIDED_SIZE = range(3)


def lob_level(
    *,
    exchange: str,
    symbol: str,
    side: str,
    price: Decimal,
    size: Decimal,
    is_snapshot: bool,
    atom_timestamp: int,
    sequence: int | None = None,
    prev_sequence: int | None = None,
    checksum: int | None = None,
    event_timestamp: int | None = None,
) -> dict[str, Any]:
    """A ``lob`` record: one price level of one side of a book."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "side": side,
        "price": price,
        "size": size,
        "is_snapshot": is_snapshot,
        "sequence": sequence,
        "prev_sequence": prev_sequence,
        "checksum": checksum,
        "event_timestamp": event_timestamp,
        "atom_timestamp": atom_timestamp,
    }


def lob_template(
    *,
    exchange: str,
    symbol: str,
    is_snapshot: bool,
    atom_timestamp: int,
    sequence: int | None = None,
    prev_sequence: int | None = None,
    checksum: int | None = None,
    event_timestamp: int | None = None,
) -> dict[str, Any]:
    """What one book message's ``lob`` records share (:func:`lob_level`'s arguments but side, price
    and size): a record whose side, price and size :func:`lob_outputs` fills in per level.

    Called once per book message: its arguments are named, not packed into a dict and unpacked
    again (``**shared`` cost more than half a microsecond per message).
    """
    return lob_level(
        exchange=exchange, symbol=symbol, side="", price=ZERO, size=ZERO, is_snapshot=is_snapshot,
        atom_timestamp=atom_timestamp, sequence=sequence, prev_sequence=prev_sequence, checksum=checksum,
        event_timestamp=event_timestamp,
    )


def book_levels(
    *,
    exchange: str,
    symbol: str,
    key: str,
    bids: Iterable[Sequence[Any]],
    asks: Iterable[Sequence[Any]],
    is_snapshot: bool,
    atom_timestamp: int,
    sequence: int | None = None,
    prev_sequence: int | None = None,
    checksum: int | None = None,
    event_timestamp: int | None = None,
    price: Callable[[Any], Decimal] = exact,
    size: Callable[[Any], Decimal] = exact,
    writer: LevelsWriter | None = None,
) -> list[Output]:
    """``lob`` outputs of a book message whose sides are lists of ``[price, size, ...]`` levels.

    ``price`` and ``size`` convert the exchange's values (exact decimal strings by default).
    ``checksum`` (the book's after the whole message) goes on the last record only.  A book
    snapshot is hundreds of levels that share all but three fields: each record is a copy of one
    template, not a call per level (:func:`lob_outputs`).

    With a ``writer`` (:attr:`Standardiser.lob_writer <l3_atom.stream_processing.standardiser.Standardiser.lob_writer>`,
    given by a runtime that only encodes), each output's record is its Avro encoding instead of a
    dict: the same bytes the writer makes of the dict, without making the dict (or, from the
    exchange's texts, the Decimals).  A message it cannot take whole goes the dict way.
    """
    record = lob_template(
        exchange=exchange, symbol=symbol, is_snapshot=is_snapshot, sequence=sequence, prev_sequence=prev_sequence,
        event_timestamp=event_timestamp, atom_timestamp=atom_timestamp,
    )
    outputs: list[Output] = []
    if (
        writer is not None and checksum is None and price is exact and size is exact
        and writer.lob_levels(outputs, Output, LOB, key, record, "bid", bids)
        and writer.lob_levels(outputs, Output, LOB, key, record, "ask", asks)
    ):
        return outputs
    outputs.clear()
    lob_outputs(outputs, record, key, "bid", bids, price, size)
    lob_outputs(outputs, record, key, "ask", asks, price, size)
    if checksum is not None and outputs:
        outputs[-1].record["checksum"] = checksum
    return outputs


class LevelsWriter(Protocol):
    """The ``lob`` Avro writer's level method (``_avro_writer_c.Writer.lob_levels``): appends each level's
    output with its record encoded, or returns False, ``outputs`` unchanged, for the dict way."""

    def lob_levels(
        self, outputs: list[Output], output_type: type, topic: str, key: str, template: dict[str, Any], side: str,
        levels: Any,
    ) -> bool: ...

    def lob_sided_levels(
        self, outputs: list[Output], output_type: type, topic: str, key: str, template: dict[str, Any],
        sides: dict[str, str], levels: Any,
    ) -> bool: ...


def lob_outputs(
    outputs: list[Output], template: dict[str, Any], key: str, side: str, levels: Iterable[Sequence[Any]],
    price: Callable[[Any], Decimal] = exact, size: Callable[[Any], Decimal] = exact,
) -> None:
    """Append one ``lob`` output per ``[price, size, ...]`` level of one side: a copy of ``template``
    (:func:`lob_template`) with ``side`` and the level's converted price and size.

    With the default converters the loop runs in C when ``_levels_c`` is built (``setup.py``);
    :func:`_python_levels` is its reference.
    """
    if _levels_c is not None and price is exact and size is exact:
        _levels_c.lob_levels(outputs, template, Output, LOB, key, side, levels, exact)
    else:
        _python_levels(outputs, template, key, side, levels, price, size)


def lob_sided_outputs(
    outputs: list[Output], template: dict[str, Any], key: str, sides: dict[str, str], side_of: Callable[[Any], str],
    levels: Iterable[Sequence[Any]], writer: LevelsWriter | None = None,
) -> None:
    """As :func:`lob_outputs` for levels ``[side, price, size, ...]`` (exact decimal strings): each record's
    side is ``sides[level[0]]``, or ``side_of(level[0])`` for a name ``sides`` lacks (it raises for a bad one).

    In C when ``_levels_c`` is built; :func:`_python_sided_levels` is its reference.  With a ``writer``,
    records come out encoded as in :func:`book_levels`.
    """
    if writer is not None and writer.lob_sided_levels(outputs, Output, LOB, key, template, sides, levels):
        return
    if _levels_c is not None:
        _levels_c.lob_sided_levels(outputs, template, Output, LOB, key, sides, side_of, levels, exact)
    else:
        _python_sided_levels(outputs, template, key, side_of, levels)


def _python_sided_levels(
    outputs: list[Output], template: dict[str, Any], key: str, side_of: Callable[[Any], str],
    levels: Iterable[Sequence[Any]],
) -> None:
    """:func:`lob_sided_outputs`' loop in Python: the reference of ``_levels_c.lob_sided_levels``."""
    for level in levels:
        record = template.copy()
        record["side"] = side_of(level[SIDED_SIDE])
        record["price"] = exact(level[SIDED_PRICE])
        record["size"] = exact(level[SIDED_SIZE])
        outputs.append(_new_tuple(Output, (LOB, key, record)))


def _python_levels(
    outputs: list[Output], template: dict[str, Any], key: str, side: str, levels: Iterable[Sequence[Any]],
    price: Callable[[Any], Decimal], size: Callable[[Any], Decimal],
) -> None:
    """:func:`lob_outputs`' loop in Python: the reference of ``_levels_c.lob_levels``, and where it is not built."""
    for level in levels:
        record = template.copy()
        record["side"] = side
        record["price"] = price(level[LEVEL_PRICE])
        record["size"] = size(level[LEVEL_SIZE])
        outputs.append(_new_tuple(Output, (LOB, key, record)))


def lob_l3_event(
    *,
    exchange: str,
    symbol: str,
    event_type: str,
    order_id: str,
    side: str,
    price: Decimal | None,
    size: Decimal,
    event_timestamp: int,
    atom_timestamp: int,
    reason: str | None = None,
    is_snapshot: bool = False,
    sequence: int | None = None,
    prev_sequence: int | None = None,
) -> dict[str, Any]:
    """A ``lob_l3`` record: one order opened, changed or done (snapshot orders are ``open``)."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "event_type": event_type,
        "order_id": order_id,
        "side": side,
        "price": price,
        "size": size,
        "reason": reason,
        "is_snapshot": is_snapshot,
        "sequence": sequence,
        "prev_sequence": prev_sequence,
        "event_timestamp": event_timestamp,
        "atom_timestamp": atom_timestamp,
    }


def book_resync(*, exchange: str, symbol: str, reason: str, detail: str, atom_timestamp: int) -> dict[str, Any]:
    """A ``book_resync`` request: the connector should fetch a fresh snapshot of this book."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "reason": reason,
        "detail": detail,
        "atom_timestamp": atom_timestamp,
    }


def trade(
    *,
    exchange: str,
    symbol: str,
    trade_id: str | None,
    price: Decimal,
    size: Decimal,
    taker_side: str,
    event_timestamp: int,
    atom_timestamp: int,
    sequence: int | None = None,
    origin: str | None = None,
) -> dict[str, Any]:
    """A ``trades`` record (``origin`` ``backfill`` for trades fetched after an outage, else None)."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "trade_id": trade_id,
        "price": price,
        "size": size,
        "taker_side": taker_side,
        "sequence": sequence,
        "origin": origin,
        "event_timestamp": event_timestamp,
        "atom_timestamp": atom_timestamp,
    }


def trade_l3(
    *,
    exchange: str,
    symbol: str,
    trade_id: str,
    price: Decimal,
    size: Decimal,
    taker_side: str,
    event_timestamp: int,
    atom_timestamp: int,
    maker_order_id: str | None = None,
    taker_order_id: str | None = None,
    sequence: int | None = None,
    origin: str | None = None,
) -> dict[str, Any]:
    """A ``trades_l3`` record: a trade with the order ids of both sides (None where a REST history lacks them)."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "trade_id": trade_id,
        "price": price,
        "size": size,
        "taker_side": taker_side,
        "maker_order_id": maker_order_id,
        "taker_order_id": taker_order_id,
        "sequence": sequence,
        "origin": origin,
        "event_timestamp": event_timestamp,
        "atom_timestamp": atom_timestamp,
    }


def ticker(
    *,
    exchange: str,
    symbol: str,
    event_timestamp: int,
    atom_timestamp: int,
    bid_price: Decimal | None = None,
    bid_size: Decimal | None = None,
    ask_price: Decimal | None = None,
    ask_size: Decimal | None = None,
    last_price: Decimal | None = None,
    last_size: Decimal | None = None,
    sequence: int | None = None,
) -> dict[str, Any]:
    """A ``ticker`` record: best bid and ask, and the last trade."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "bid_price": bid_price,
        "bid_size": bid_size,
        "ask_price": ask_price,
        "ask_size": ask_size,
        "last_price": last_price,
        "last_size": last_size,
        "sequence": sequence,
        "event_timestamp": event_timestamp,
        "atom_timestamp": atom_timestamp,
    }


def exchange_candle(
    *,
    exchange: str,
    symbol: str,
    interval: str,
    start: int,
    end: int,
    open: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
    volume: Decimal,
    closed: bool,
    event_timestamp: int,
    atom_timestamp: int,
    quote_volume: Decimal | None = None,
    trade_count: int | None = None,
    vwap: Decimal | None = None,
    first_trade_timestamp: int | None = None,
    last_trade_timestamp: int | None = None,
) -> dict[str, Any]:
    """A ``candle`` record as the exchange publishes it (origin ``exchange``)."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "origin": EXCHANGE_ORIGIN,
        "interval": interval,
        "start": start,
        "end": end,
        "open": open,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "quote_volume": quote_volume,
        "trade_count": trade_count,
        "vwap": vwap,
        "first_trade_timestamp": first_trade_timestamp,
        "last_trade_timestamp": last_trade_timestamp,
        "closed": closed,
        "event_timestamp": event_timestamp,
        "atom_timestamp": atom_timestamp,
    }


def funding_rate(
    *,
    exchange: str,
    symbol: str,
    rate: Decimal,
    event_timestamp: int,
    atom_timestamp: int,
    predicted_rate: Decimal | None = None,
    mark_price: Decimal | None = None,
    index_price: Decimal | None = None,
    next_funding_timestamp: int | None = None,
) -> dict[str, Any]:
    """A ``funding_rate`` record of a perpetual."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "rate": rate,
        "predicted_rate": predicted_rate,
        "mark_price": mark_price,
        "index_price": index_price,
        "next_funding_timestamp": next_funding_timestamp,
        "event_timestamp": event_timestamp,
        "atom_timestamp": atom_timestamp,
    }


def open_interest(
    *,
    exchange: str,
    symbol: str,
    open_interest: Decimal,
    event_timestamp: int,
    atom_timestamp: int,
) -> dict[str, Any]:
    """An ``open_interest`` record of a derivative."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "open_interest": open_interest,
        "event_timestamp": event_timestamp,
        "atom_timestamp": atom_timestamp,
    }
