"""Faust Records of the normalised topics, for Python consumers and agents.

``static/schemas/*.avsc`` is the source of truth; these classes mirror it so
that Python code gets typed records (``TradeL3(**decoded)``), and
``tests/test_records.py`` proves field by field that they agree.
"""

from __future__ import annotations

from decimal import Decimal

import faust

from l3_atom.stream_processing.onchain_records import ONCHAIN_RECORDS


class _Normalised(faust.Record, abstract=True):
    exchange: str
    symbol: str


class LobL3(_Normalised, serializer="json"):
    event_type: str
    order_id: str
    side: str
    price: Decimal | None
    size: Decimal
    reason: str | None
    is_snapshot: bool
    sequence: int | None
    prev_sequence: int | None
    event_timestamp: int
    atom_timestamp: int


class TradeL3(_Normalised, serializer="json"):
    trade_id: str
    price: Decimal
    size: Decimal
    taker_side: str
    maker_order_id: str | None
    taker_order_id: str | None
    sequence: int | None
    origin: str | None
    event_timestamp: int
    atom_timestamp: int


class Trade(_Normalised, serializer="json"):
    trade_id: str | None
    price: Decimal
    size: Decimal
    taker_side: str
    sequence: int | None
    origin: str | None
    event_timestamp: int
    atom_timestamp: int


class Candle(_Normalised, serializer="json"):
    origin: str
    interval: str
    start: int
    end: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal | None
    trade_count: int | None
    vwap: Decimal | None
    first_trade_timestamp: int | None
    last_trade_timestamp: int | None
    closed: bool
    event_timestamp: int
    atom_timestamp: int


class FundingRate(_Normalised, serializer="json"):
    rate: Decimal
    predicted_rate: Decimal | None
    mark_price: Decimal | None
    index_price: Decimal | None
    next_funding_timestamp: int | None
    event_timestamp: int
    atom_timestamp: int


class OpenInterest(_Normalised, serializer="json"):
    open_interest: Decimal
    event_timestamp: int
    atom_timestamp: int


class Ticker(_Normalised, serializer="json"):
    bid_price: Decimal | None
    bid_size: Decimal | None
    ask_price: Decimal | None
    ask_size: Decimal | None
    last_price: Decimal | None
    last_size: Decimal | None
    sequence: int | None
    event_timestamp: int
    atom_timestamp: int


class Lob(_Normalised, serializer="json"):
    side: str
    price: Decimal
    size: Decimal
    is_snapshot: bool
    sequence: int | None
    prev_sequence: int | None
    checksum: int | None
    event_timestamp: int | None
    atom_timestamp: int


class BookResync(_Normalised, serializer="json"):
    reason: str
    detail: str
    atom_timestamp: int


class Coverage(_Normalised, serializer="json"):
    feed: str | None
    kind: str
    reason: str | None
    start: int | None
    end: int | None
    sequence_before: int | None
    sequence_after: int | None
    count: int | None
    event_timestamp: int
    atom_timestamp: int


class DeadLetter(faust.Record, serializer="json"):
    source: str
    stage: str
    error: str
    raw_topic: str | None
    partition: int | None
    offset: int | None
    key: str | None
    original: bytes
    original_size: int
    atom_timestamp: int


# Topic -> Record class; every schema in static/schemas has one.
RECORDS: dict[str, type[faust.Record]] = {
    **ONCHAIN_RECORDS,
    "lob_l3": LobL3,
    "trades_l3": TradeL3,
    "trades": Trade,
    "candle": Candle,
    "funding_rate": FundingRate,
    "open_interest": OpenInterest,
    "ticker": Ticker,
    "lob": Lob,
    "dead_letter": DeadLetter,
    "book_resync": BookResync,
    "coverage": Coverage,
}
