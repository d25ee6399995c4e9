"""Faust Records and Avro schemas agree field by field (ARCHITECTURE.md, principle 1)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from l3_atom.avro.codecs import available_topics, schema_text
from l3_atom.stream_processing.records import RECORDS

AVRO_TO_PYTHON = {"string": str, "long": int, "int": int, "boolean": bool, "bytes": bytes}


def python_type(avro_type: object) -> object:
    """The Python annotation a Record field must have for this Avro type."""
    if isinstance(avro_type, list):
        assert avro_type[0] == "null" and len(avro_type) == 2, "optional fields are [null, T] unions"
        return python_type(avro_type[1]) | None
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "decimal":
            assert (avro_type["precision"], avro_type["scale"]) == (38, 18)
            return Decimal
        if avro_type["type"] == "enum":
            return str
        return python_type(avro_type["type"])
    return AVRO_TO_PYTHON[avro_type]


def test_every_schema_has_a_record() -> None:
    assert sorted(RECORDS) == available_topics()


@pytest.mark.parametrize("topic", sorted(RECORDS))
def test_record_fields_match_schema(topic: str) -> None:
    schema = json.loads(schema_text(topic))
    record_fields = RECORDS[topic]._options.fields
    assert list(record_fields) == [f["name"] for f in schema["fields"]]
    for field in schema["fields"]:
        assert record_fields[field["name"]] == python_type(field["type"]), field["name"]


@pytest.mark.parametrize("topic", available_topics())
def test_schema_follows_the_contract(topic: str) -> None:
    schema = json.loads(schema_text(topic))
    assert schema["namespace"] == "l3_atom"
    names = [f["name"] for f in schema["fields"]]
    assert all(name == name.lower() for name in names), "field names are snake_case"
    for field in schema["fields"]:
        if isinstance(field["type"], list):
            assert field.get("default", "missing") is None, f"{field['name']}: optional fields default to null"
    if topic != "dead_letter":
        assert names[:2] == ["exchange", "symbol"]
        assert "atom_timestamp" in names
    if topic not in ("dead_letter", "book_resync"):  # control topics: no exchange event behind them
        assert "event_timestamp" in names
