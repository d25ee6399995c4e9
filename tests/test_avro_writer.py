"""The generated Python Avro writer (the reference; the C writer is checked against it) gives fastavro's bytes."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3_atom.avro.codecs import available_topics, parsed_schema, schema_text
from l3_atom.avro.writer import compile_python_record_writer, varint, writer_source
from tests.avro_strategies import MAX_LONG, values


def compiled_topics() -> list[str]:
    topics = []
    for topic in available_topics():
        try:
            compile_python_record_writer(json.loads(schema_text(topic)))
            topics.append(topic)
        except NotImplementedError:
            continue
    return topics


def fastavro_bytes(topic: str, record: dict) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed_schema(topic), record)
    return buffer.getvalue()


@pytest.mark.parametrize("topic", compiled_topics())
def test_same_bytes_as_fastavro(topic: str) -> None:
    schema = json.loads(schema_text(topic))
    write = compile_python_record_writer(schema)
    records = st.fixed_dictionaries({f["name"]: values(f["type"]) for f in schema["fields"]})

    @settings(max_examples=60, deadline=None)
    @given(records)
    def check(record: dict) -> None:
        encoded = write(record)
        assert encoded == fastavro_bytes(topic, record)
        assert fastavro.schemaless_reader(io.BytesIO(encoded), parsed_schema(topic), None) == record

    check()


def test_every_normalised_schema_compiles() -> None:
    assert {"lob", "lob_l3", "trades", "trades_l3", "ticker", "candle", "dead_letter"} <= set(compiled_topics())


def test_varint_matches_avro_zigzag() -> None:
    assert [varint(n) for n in (0, -1, 1, -2, 63, 64)] == [b"\x00", b"\x01", b"\x02", b"\x03", b"\x7e", b"\x80\x01"]


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [("price", 1.5, TypeError), ("price", Decimal("1e-19"), ValueError), ("price", Decimal("NaN"), ValueError),
     ("price", Decimal("1e20"), ValueError), ("taker_side", "long", ValueError), ("event_timestamp", "1", TypeError)],
)
def test_refuses_what_the_schema_does_not_allow(field: str, value: object, error: type) -> None:
    write = compile_python_record_writer(json.loads(schema_text("trades_l3")))
    record = {"exchange": "x", "symbol": "A.B", "trade_id": "1", "price": Decimal(1), "size": Decimal(1),
              "taker_side": "buy", "maker_order_id": None, "taker_order_id": None, "sequence": None,
              "origin": None, "event_timestamp": 1, "atom_timestamp": 1}
    with pytest.raises(error):
        write({**record, field: value})


def zigzag_varint(n: int) -> bytes:
    """Avro's spec, one 7-bit group per turn: the reference the table-driven writer must match."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


TIMESTAMP_US = 1_700_000_000_123_456
EDGE_LONGS = [0, -1, 1, 63, 64, -64, -65, 8191, 8192, -8192, -8193, 16383, 16384, 2**31, -(2**31), 2**62,
              MAX_LONG, -MAX_LONG - 1, TIMESTAMP_US, TIMESTAMP_US // 1000, -TIMESTAMP_US]


@pytest.mark.parametrize("n", EDGE_LONGS)
def test_varint_edges(n: int) -> None:
    assert varint(n) == zigzag_varint(n)


@pytest.mark.parametrize("n", [2**63, 2**64 + 5, -(2**63) - 1, -(2**70)])
def test_ints_beyond_a_long_keep_their_zigzag_bytes(n: int) -> None:
    """Outside Avro's long the writer never raised: it still writes the same bytes as before."""
    assert varint(n) == zigzag_varint(n)
    write = compile_python_record_writer({"type": "record", "name": "R", "fields": [{"name": "n", "type": "long"}]})
    assert write({"n": n}) == zigzag_varint(n)


LONGS = {"type": "record", "name": "Longs",
         "fields": [{"name": "plain", "type": "long"}, {"name": "optional", "type": ["null", "long"]}]}


@pytest.mark.parametrize("n", EDGE_LONGS)
def test_long_fields_match_fastavro(n: int) -> None:
    write = compile_python_record_writer(LONGS)
    schema = fastavro.parse_schema(LONGS)
    for record in ({"plain": n, "optional": n}, {"plain": n, "optional": None}):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, record)
        assert write(record) == buffer.getvalue()


def test_long_cache_of_high_parts_starts_over_and_stays_right(monkeypatch: pytest.MonkeyPatch) -> None:
    from l3_atom.avro import writer as avro_writer

    monkeypatch.setattr(avro_writer, "HIGH_CACHE_LIMIT", 3)
    write = compile_python_record_writer(LONGS)
    stamps = [TIMESTAMP_US + step * 8192 + low for step in range(10) for low in (0, 1, 8191)] * 2
    for n in stamps:
        assert write({"plain": n, "optional": n}) == zigzag_varint(n) + b"\x02" + zigzag_varint(n)


DECIMAL = {"type": "record", "name": "Price", "fields": [
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 18}},
    {"name": "optional", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 18}]},
]}


@pytest.mark.parametrize("text", [
    "0", "-0", "0.00", "0E-8", "1E+2", "12E-5", "1E-18", "-1.000000000000000000", "30004.27", "-30004.27",
    "0.00000001", "1.43985216", "99999999999999999999.999999999999999999", "-99999999999999999999.999999999999999999",
    "0.000000000000000001", "123456.7E+3",
])
def test_decimals_with_many_and_few_digits_match_fastavro(text: str) -> None:
    write = compile_python_record_writer(DECIMAL)
    schema = fastavro.parse_schema(DECIMAL)
    record = {"price": Decimal(text), "optional": Decimal(text)}
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    assert write(record) == write(record) == buffer.getvalue()  # the second write comes from the cache
    assert fastavro.schemaless_reader(io.BytesIO(write(record)), schema, None) == record


@pytest.mark.parametrize(("text", "message"), [
    ("1E-19", "more than 18 decimal places"),
    ("0.0000000000000000001", "more than 18 decimal places"),
    ("1.50000000000000000000", "more than 18 decimal places"),  # equal to 1.5, but written with 20 places
    ("NaN", "not finite"), ("sNaN", "not finite"), ("-Infinity", "not finite"),
    ("1E+20", "needs more than 38 digits"), ("100000000000000000000", "needs more than 38 digits"),
    ("1" * 5000, "needs more than 38 digits"),
])
def test_decimals_outside_the_schema_are_refused(text: str, message: str) -> None:
    write = compile_python_record_writer(DECIMAL)
    write({"price": Decimal("1.5"), "optional": None})  # 1.5 is cached: an equal value with more places is not
    with pytest.raises(ValueError, match=message):
        write({"price": Decimal(text), "optional": None})


@pytest.mark.parametrize("value", [1.5, 1, "1", True])
def test_only_decimals_are_decimals(value: object) -> None:
    write = compile_python_record_writer(DECIMAL)
    write({"price": Decimal(1), "optional": None})
    with pytest.raises(TypeError, match="expected a Decimal"):
        write({"price": value, "optional": None})


def test_decimal_cache_starts_over_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    from l3_atom.avro import writer as avro_writer

    monkeypatch.setattr(avro_writer, "DECIMAL_CACHE_LIMIT", 4)
    write = compile_python_record_writer(DECIMAL)
    schema = fastavro.parse_schema(DECIMAL)
    for text in [f"{n}.{n:02d}" for n in range(20)] * 2:
        record = {"price": Decimal(text), "optional": None}
        assert fastavro.schemaless_reader(io.BytesIO(write(record)), schema, None) == record


def test_long_strings_and_bytes_match_fastavro() -> None:
    schema = {"type": "record", "name": "Text", "fields": [
        {"name": "text", "type": "string"}, {"name": "note", "type": ["null", "string"]},
        {"name": "raw", "type": "bytes"}]}
    write = compile_python_record_writer(schema)
    for size in (0, 1, 8191, 8192, 20_000):
        record = {"text": "é" * size, "note": "n" * size, "raw": b"r" * size}
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), record)
        assert write(record) == buffer.getvalue()


def test_prefix_goes_first_and_the_source_is_readable() -> None:
    schema = json.loads(schema_text("trades_l3"))
    record = {"exchange": "x", "symbol": "A.B", "trade_id": "1", "price": Decimal(1), "size": Decimal(1),
              "taker_side": "buy", "maker_order_id": None, "taker_order_id": None, "sequence": None,
              "origin": None, "event_timestamp": 1, "atom_timestamp": 1}
    assert compile_python_record_writer(schema, b"\x00head")(record) == b"\x00head" + compile_python_record_writer(schema)(record)
    source = writer_source(schema)
    assert source.startswith("def write_TradeL3(record):")
    assert "record['atom_timestamp']" in source


def test_a_record_without_a_field_is_refused() -> None:
    write = compile_python_record_writer(LONGS)
    with pytest.raises(ValueError, match="record lacks field 'optional'"):
        write({"plain": 1})
