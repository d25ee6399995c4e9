"""New fields are BACKWARD-compatible changes: old records read with defaults.

The previous versions of ``lob`` and ``lob_l3`` are today's schemas without the fields the order-book
work added, those of ``trades`` and ``trades_l3`` without the backfill work's ``origin``; the registry's own check must accept the new versions after them, and a record written
with an old schema must read, under the new one, with the documented defaults.
"""

from __future__ import annotations

import io
import json
from decimal import Decimal

import fastavro
import pytest

from l3_atom.avro.codecs import schema_text
from l3_atom.infra.schema_registry import AvroSchema, compatibility_problems

ADDED = {"lob": ("prev_sequence", "checksum"), "lob_l3": ("is_snapshot", "prev_sequence"),
         "trades": ("origin",), "trades_l3": ("origin",)}
DEFAULTS = {"prev_sequence": None, "checksum": None, "is_snapshot": False, "origin": None}
TRADE = {"exchange": "coinbase", "symbol": "BTC.USD", "trade_id": "5", "price": Decimal("1.5"), "size": Decimal(2),
         "taker_side": "buy", "sequence": 11, "event_timestamp": 1, "atom_timestamp": 2}
OLD_RECORDS = {
    "lob": {"exchange": "binance", "symbol": "BTC.USDT", "side": "bid", "price": Decimal("1.5"),
            "size": Decimal(2), "is_snapshot": False, "sequence": 7, "event_timestamp": 1, "atom_timestamp": 2},
    "lob_l3": {"exchange": "coinbase", "symbol": "BTC.USD", "event_type": "open", "order_id": "o",
               "side": "ask", "price": Decimal(3), "size": Decimal(1), "reason": None, "sequence": 9,
               "event_timestamp": 1, "atom_timestamp": 2},
    "trades": TRADE,
    "trades_l3": {**TRADE, "maker_order_id": "m", "taker_order_id": None},
}


def previous_version(topic: str) -> str:
    schema = json.loads(schema_text(topic))
    schema["fields"] = [f for f in schema["fields"] if f["name"] not in ADDED[topic]]
    return json.dumps(schema)


@pytest.mark.parametrize("topic", sorted(ADDED))
def test_the_registry_accepts_the_new_version_after_the_old(topic: str) -> None:
    new, old = AvroSchema.parse(schema_text(topic)), AvroSchema.parse(previous_version(topic))
    assert compatibility_problems("BACKWARD", new, [old]) == []
    # The check can fail: a new field without a default cannot be read from old records.
    broken = json.loads(schema_text(topic))
    broken["fields"].append({"name": "required_extra", "type": "long"})
    assert compatibility_problems("BACKWARD", AvroSchema.parse(json.dumps(broken)), [old])


@pytest.mark.parametrize("topic", sorted(ADDED))
def test_old_records_read_with_the_new_schema_get_the_defaults(topic: str) -> None:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(json.loads(previous_version(topic))), OLD_RECORDS[topic])
    buffer.seek(0)
    record = fastavro.schemaless_reader(
        buffer, fastavro.parse_schema(json.loads(previous_version(topic))),
        fastavro.parse_schema(json.loads(schema_text(topic))),
    )
    assert {name: record[name] for name in ADDED[topic]} == {name: DEFAULTS[name] for name in ADDED[topic]}
    assert record["sequence"] == OLD_RECORDS[topic]["sequence"]
