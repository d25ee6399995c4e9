"""The compiled Avro reader gives fastavro's records, for every schema, and refuses bad input with ValueError."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3_atom.avro import reader as avro_reader
from l3_atom.avro.codecs import AvroEncoder, available_topics, decode_wire, parsed_schema, schema_text
from l3_atom.avro.reader import compile_record_reader, reader_source
from l3_atom.avro.writer import compile_record_writer
from tests.avro_strategies import MAX_LONG, MIN_LONG, values

TIMESTAMP_US = 1_700_000_000_123_456
EDGE_LONGS = [0, -1, 1, 63, 64, -64, -65, 8191, 8192, -8192, -8193, 16383, 16384, 2**31, -(2**31), 2**62,
              MAX_LONG, MIN_LONG, TIMESTAMP_US, TIMESTAMP_US // 1000, -TIMESTAMP_US]
EDGE_STRINGS = ["", "a", "BTC.USD", "ünïcødé ✓ 🚀", "x" * 63, "y" * 64, "z" * 5000]
DECIMAL_38_18 = {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 18}
DECIMAL_10_0 = {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 0}
SIDE = {"type": "enum", "name": "Side", "symbols": ["bid", "ask"]}
EDGES = {
    "type": "record", "name": "Edges", "namespace": "test",
    "fields": [
        {"name": "text", "type": "string"},
        {"name": "maybe_text", "type": ["null", "string"]},
        {"name": "n", "type": "long"},
        {"name": "maybe_n", "type": ["null", "long"]},
        {"name": "i", "type": "int"},
        {"name": "flag", "type": "boolean"},
        {"name": "blob", "type": "bytes"},
        {"name": "side", "type": SIDE},
        {"name": "maybe_side", "type": ["null", "test.Side"]},
        {"name": "price", "type": DECIMAL_38_18},
        {"name": "maybe_price", "type": ["null", DECIMAL_38_18]},
        {"name": "whole", "type": DECIMAL_10_0},
        {"name": "nothing", "type": "null"},
    ],
}
EDGE_RECORD = {
    "text": "", "maybe_text": None, "n": 0, "maybe_n": None, "i": 0, "flag": False, "blob": b"", "side": "bid",
    "maybe_side": None, "price": Decimal("0E-18"), "maybe_price": None, "whole": Decimal(0), "nothing": None,
}


def fastavro_record(schema: dict[str, Any], body: bytes) -> dict[str, Any]:
    return fastavro.schemaless_reader(io.BytesIO(body), fastavro.parse_schema(schema), None)


def fastavro_body(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """fastavro writes the test schemas: the compiled writer does not take named-type references."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), record)
    return buffer.getvalue()


def assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal, field order kept, and every Decimal with fastavro's digits and exponent."""
    assert got == expected
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert type(got[name]) is type(value)
        if isinstance(value, Decimal):
            assert str(got[name]) == str(value)
            assert got[name].as_tuple() == value.as_tuple()


def round_trip(schema: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Write with fastavro, read with the compiled reader, and check it against fastavro's reader."""
    body = fastavro_body(schema, record)
    got, end = compile_record_reader(schema)(body, 0)
    assert end == len(body)
    assert_same(got, fastavro_record(schema, body))
    return got


# Primitive values with the edge cases added.
EDGE_VALUES = {
    "string": st.text(max_size=40) | st.sampled_from(EDGE_STRINGS),
    "long": st.integers(MIN_LONG, MAX_LONG) | st.sampled_from(EDGE_LONGS),
    "bytes": st.binary(max_size=200),
}


@pytest.mark.parametrize("topic", available_topics())
def test_every_schema_reads_what_fastavro_reads(topic: str) -> None:
    schema = json.loads(schema_text(topic))
    write = compile_record_writer(schema)
    read = compile_record_reader(parsed_schema(topic))
    records = st.fixed_dictionaries({f["name"]: values(f["type"], EDGE_VALUES) for f in schema["fields"]})

    @settings(max_examples=80, deadline=None)
    @given(st.lists(records, min_size=1, max_size=4))
    def check(batch: list[dict]) -> None:
        for record in batch:  # several per reader call sequence: the caches must not leak between records
            body = write(record)
            got, end = read(body, 0)
            assert end == len(body)
            assert_same(got, fastavro_record(schema, body))
            assert got == record

    check()


def test_the_json_and_the_parsed_schema_compile_to_the_same_reader() -> None:
    for topic in available_topics():
        assert reader_source(json.loads(schema_text(topic))) == reader_source(parsed_schema(topic))


def test_edge_values_round_trip() -> None:
    assert round_trip(EDGES, EDGE_RECORD) == EDGE_RECORD
    full = {
        "text": "ünïcødé ✓ 🚀", "maybe_text": "", "n": MIN_LONG, "maybe_n": MAX_LONG, "i": -(2**31),
        "flag": True, "blob": bytes(range(256)), "side": "ask", "maybe_side": "bid",
        "price": Decimal("-99999999999999999999.999999999999999999"),
        "maybe_price": Decimal("99999999999999999999.999999999999999999"), "whole": Decimal(-9999999999),
        "nothing": None,
    }
    assert round_trip(EDGES, full) == full


@pytest.mark.parametrize("n", EDGE_LONGS)
def test_long_edges(n: int) -> None:
    for maybe in (n, None):
        assert round_trip(EDGES, {**EDGE_RECORD, "n": n, "maybe_n": maybe})["n"] == n


@pytest.mark.parametrize(
    "text", ["0", "-0.000000000000000001", "0.000000000000000001", "30000.123456789012345678", "-1.5", "1E+5",
             "12345678901234567890", "-12345678901234567890.123456789012345678", "1.10", "0E-18"],
)
def test_decimals_keep_fastavros_digits_and_exponent(text: str) -> None:
    value = Decimal(text)
    got = round_trip(EDGES, {**EDGE_RECORD, "price": value, "maybe_price": -value})
    assert got["price"] == value
    assert got["price"].as_tuple().exponent == -18


def test_long_cache_of_high_parts_starts_over_and_stays_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(avro_reader, "HIGH_CACHE_LIMIT", 3)
    schema = {"type": "record", "name": "Longs",
              "fields": [{"name": "plain", "type": "long"}, {"name": "maybe", "type": ["null", "long"]}]}
    write, read = compile_record_writer(schema), compile_record_reader(schema)
    stamps = [TIMESTAMP_US + step * 8192 + low for step in range(10) for low in (0, 1, 8191)]
    # Widths change under the cache: 8-byte timestamps, 6-byte ms, 2-byte and 1-byte values, negatives.
    values = stamps + [n // 1000 for n in stamps] + [-n for n in stamps] + [200, 5, -200] + EDGE_LONGS + stamps
    for n in values:
        assert read(write({"plain": n, "maybe": n}), 0)[0] == {"plain": n, "maybe": n}


def test_decimal_and_string_caches_are_bounded_and_stay_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(avro_reader, "DECIMAL_CACHE_LIMIT", 4)
    monkeypatch.setattr(avro_reader, "STRING_CACHE_LIMIT", 4)
    read = compile_record_reader(EDGES)
    for round_ in range(3):
        for k in range(20):
            record = {**EDGE_RECORD, "text": f"t{k}", "price": Decimal(k).scaleb(-2), "maybe_price": Decimal(-k)}
            assert read(fastavro_body(EDGES, record), 0)[0] == record, round_
    caches = [v for name, v in read.__globals__.items() if name.startswith(("strings_", "decimals_"))]
    assert caches and all(len(cache) <= 4 for cache in caches)


def test_reads_any_buffer_from_any_position_and_leaves_what_follows() -> None:
    body = fastavro_body(EDGES, EDGE_RECORD)
    read = compile_record_reader(EDGES)
    for data in (b"head" + body + b"tail", bytearray(b"head" + body + b"tail"), memoryview(b"head" + body + b"tail")):
        assert read(data, 4) == (EDGE_RECORD, 4 + len(body))


def test_enums_beyond_one_byte_and_longer_varints_of_an_index() -> None:
    symbols = [f"s{i}" for i in range(200)]
    schema = {"type": "record", "name": "Many", "fields": [{"name": "e", "type": {
        "type": "enum", "name": "E", "symbols": symbols}}]}
    for symbol in (symbols[0], symbols[63], symbols[64], symbols[199]):
        assert round_trip(schema, {"e": symbol}) == {"e": symbol}
    # Index 1 written in two bytes is still index 1, as fastavro reads it.
    assert compile_record_reader(schema)(b"\x82\x00", 0) == ({"e": "s1"}, 2)


# Corrupt or truncated input: always ValueError, which the books and candle agents count and skip.

def body_of(record: dict[str, Any] = EDGE_RECORD) -> bytes:
    return fastavro_body(EDGES, record)


FULL = {**EDGE_RECORD, "text": "abc", "maybe_text": "d", "n": TIMESTAMP_US, "maybe_n": -5, "blob": b"\x00\x01",
        "side": "ask", "maybe_side": "ask", "price": Decimal("1.5"), "maybe_price": Decimal(-2)}


@pytest.mark.parametrize("record", [EDGE_RECORD, FULL])
def test_every_truncation_raises_value_error(record: dict[str, Any]) -> None:
    body = body_of(record)
    read = compile_record_reader(EDGES)
    for size in range(len(body)):
        with pytest.raises(ValueError, match="truncated"):
            read(body[:size], 0)


@pytest.mark.parametrize(
    ("field", "fields_before", "corrupt", "message"),
    [
        ("text", 0, b"\x01", "negative length"),
        ("text", 0, b"\x02\xff", "utf-8"),
        ("maybe_text", 1, b"\x04", "union branch"),
        ("maybe_text", 1, b"\x01", "union branch"),
        ("n", 2, b"\xff" * 11, "longer than a long"),
        ("n", 2, b"\x80" * 9 + b"\x02", "beyond a long"),
        ("flag", 5, b"\x02", "boolean"),
        ("side", 7, b"\x04", "enum index"),
        ("side", 7, b"\x01", "enum index"),
        ("price", 9, b"\x22" + b"\x7f" * 17, "more than 38 digits"),
    ],
)
def test_corrupt_values_raise_value_error(field: str, fields_before: int, corrupt: bytes, message: str) -> None:
    """Replace one field's bytes of an all-zero record (one byte each before it, but blob: none) with junk."""
    body = body_of()
    assert body[:fields_before] == bytes(fields_before)
    with pytest.raises(ValueError, match=message):
        compile_record_reader(EDGES)(body[:fields_before] + corrupt + body[fields_before + 1:], 0)


def test_decode_wire_raises_what_the_agents_catch() -> None:
    """Unknown schema id: KeyError; not the wire format or not a record: ValueError."""
    value = AvroEncoder("lob_l3", 5).encode({
        "exchange": "coinbase", "symbol": "BTC.USD", "event_type": "open", "order_id": "o", "side": "bid",
        "price": Decimal(1), "size": Decimal(2), "reason": None, "is_snapshot": False, "sequence": 1,
        "prev_sequence": None, "event_timestamp": 1, "atom_timestamp": 2,
    })
    schemas = {5: parsed_schema("lob_l3")}
    assert decode_wire(value, schemas)["price"] == Decimal(1)
    with pytest.raises(KeyError):
        decode_wire(value, {6: parsed_schema("lob_l3")})
    with pytest.raises(ValueError, match="magic byte 1"):
        decode_wire(b"\x01" + value[1:], schemas)
    with pytest.raises(ValueError, match="no header"):
        decode_wire(value[:3], schemas)
    for size in range(5, len(value)):
        with pytest.raises(ValueError):
            decode_wire(value[:size], schemas)


def test_decode_wire_falls_back_to_fastavro_for_schemas_the_reader_refuses() -> None:
    schema = {"type": "record", "name": "Floats", "fields": [{"name": "x", "type": "double"},
                                                              {"name": "when", "type": {"type": "long",
                                                               "logicalType": "timestamp-millis"}}]}
    parsed = fastavro.parse_schema(schema)
    buffer = io.BytesIO()
    record = {"x": 1.5, "when": 1_700_000_000_000}
    fastavro.schemaless_writer(buffer, parsed, record)
    value = b"\x00\x00\x00\x00\x09" + buffer.getvalue()
    decoded = decode_wire(value, {9: parsed})
    assert decoded == fastavro_record(schema, buffer.getvalue())
    assert decoded["x"] == 1.5
    with pytest.raises(ValueError, match="truncated"):
        decode_wire(value[:-1], {9: parsed})


@pytest.mark.parametrize(
    "avro_type",
    ["float", "double", {"type": "array", "items": "long"}, {"type": "map", "values": "string"},
     {"type": "fixed", "name": "F", "size": 4}, {"type": "record", "name": "Inner", "fields": []},
     ["string", "null"], ["null", "string", "long"], ["null", ["null", "long"]], "Undefined",
     {"type": "long", "logicalType": "timestamp-millis"}, {"type": "string", "logicalType": "uuid"},
     {"type": "fixed", "name": "D", "size": 16, "logicalType": "decimal", "precision": 38, "scale": 18}],
)
def test_unsupported_types_are_refused_at_compile_time(avro_type: object) -> None:
    with pytest.raises(NotImplementedError):
        compile_record_reader({"type": "record", "name": "R", "fields": [{"name": "f", "type": avro_type}]})


def test_only_records_compile() -> None:
    with pytest.raises(NotImplementedError):
        compile_record_reader({"type": "enum", "name": "E", "symbols": ["a"]})
