"""On-chain schemas: Faust Records agree field by field, the contract holds, extreme values round-trip.

Uses ``tests/test_records.py``'s own rules, so these records merge into
``records.RECORDS`` unchanged.
"""

from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from l3_atom.avro.codecs import available_topics, parsed_schema, schema_text
from l3_atom.on_chain.topics import ONCHAIN_TOPICS
from l3_atom.stream_processing.onchain_records import ONCHAIN_RECORDS
from tests import test_records as contract

LARGEST_DECIMAL = Decimal("99999999999999999999.999999999999999999")
UINT256_MAX = str(2**256 - 1)
LARGEST = {"string": UINT256_MAX, "long": 2**63 - 1, "int": 2**31 - 1, "boolean": True}


def test_every_onchain_topic_has_a_schema_and_a_record() -> None:
    assert set(ONCHAIN_TOPICS) <= set(available_topics())
    assert list(ONCHAIN_RECORDS) == list(ONCHAIN_TOPICS)


@pytest.mark.parametrize("topic", ONCHAIN_TOPICS)
def test_record_fields_match_schema(topic: str) -> None:
    schema = json.loads(schema_text(topic))
    fields = ONCHAIN_RECORDS[topic]._options.fields
    assert list(fields) == [f["name"] for f in schema["fields"]]
    for field in schema["fields"]:
        assert fields[field["name"]] == contract.python_type(field["type"]), field["name"]


@pytest.mark.parametrize("topic", ONCHAIN_TOPICS)
def test_schema_follows_the_contract(topic: str) -> None:
    contract.test_schema_follows_the_contract(topic)
    names = [f["name"] for f in json.loads(schema_text(topic))["fields"]]
    assert names[-3:] == ["removed", "event_timestamp", "atom_timestamp"], "every on-chain record can be retracted"


def extreme(avro_type: Any) -> Any:
    """The largest value a field of this type holds (uint256 max for strings: raw quantities)."""
    if isinstance(avro_type, list):
        return extreme(avro_type[1])
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "decimal":
            return LARGEST_DECIMAL
        return avro_type["symbols"][-1]
    return LARGEST[avro_type]


@pytest.mark.parametrize("topic", ONCHAIN_TOPICS)
@pytest.mark.parametrize("nulls", [False, True], ids=["largest values", "nulls"])
def test_extreme_values_round_trip_exactly(topic: str, nulls: bool) -> None:
    fields = json.loads(schema_text(topic))["fields"]
    record = {
        f["name"]: None if nulls and isinstance(f["type"], list) else extreme(f["type"]) for f in fields
    }  # fmt: skip
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed_schema(topic), record)
    buffer.seek(0)
    assert fastavro.schemaless_reader(buffer, parsed_schema(topic), None) == record


def test_a_uint256_does_not_fit_decimal_38_18() -> None:
    """Why raw quantities are strings: fastavro refuses them in the contract's decimal."""
    record = {f["name"]: extreme(f["type"]) for f in json.loads(schema_text("dex_trades"))["fields"]}
    with pytest.raises(ValueError, match="precision"):
        fastavro.schemaless_writer(io.BytesIO(), parsed_schema("dex_trades"), {**record, "size": Decimal(UINT256_MAX)})
