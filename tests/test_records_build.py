"""The record builders give exactly their schema's fields, in schema order."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import pytest

from l3_atom.avro.codecs import schema_text
from l3_atom.coverage import coverage_record
from l3_atom.stream_processing import records_build

BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "lob": records_build.lob_level,
    "lob_l3": records_build.lob_l3_event,
    "book_resync": records_build.book_resync,
    "trades": records_build.trade,
    "trades_l3": records_build.trade_l3,
    "coverage": coverage_record,
    "ticker": records_build.ticker,
    "candle": records_build.exchange_candle,
    "funding_rate": records_build.funding_rate,
    "open_interest": records_build.open_interest,
}


def schema_fields(topic: str) -> list[str]:
    return [field["name"] for field in json.loads(schema_text(topic))["fields"]]


@pytest.mark.parametrize("topic", sorted(BUILDERS))
def test_builder_keys_are_schema_fields_in_order(topic: str) -> None:
    builder = BUILDERS[topic]
    parameters = inspect.signature(builder).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    # Each argument a distinct marker, so a field fed from the wrong argument shows.
    record = builder(**{name: f"<{name}>" for name in parameters})
    assert list(record) == schema_fields(topic)
    for name in parameters:
        assert record[name] == f"<{name}>"


def test_optional_fields_default_to_none() -> None:
    record = records_build.exchange_candle(
        exchange="x", symbol="s", interval="1m", start=0, end=60_000, open=1, high=1, low=1, close=1,
        volume=0, closed=True, event_timestamp=0, atom_timestamp=0,
    )
    assert record["origin"] == "exchange"
    for name in ("quote_volume", "trade_count", "vwap", "first_trade_timestamp", "last_trade_timestamp"):
        assert record[name] is None
