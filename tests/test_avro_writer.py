"""The compiled Avro writer gives the same bytes as fastavro, for every schema it compiles."""

from __future__ import annotations

import io
import json
from decimal import Context, Decimal

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3_atom.stream_processing.avro_writer import compile_record_writer, varint
from l3_atom.stream_processing.codecs import available_topics, parsed_schema, schema_text

MAX_LONG = 2**63 - 1
WIDE = Context(prec=100)  # the default context (28 digits) would round 38-digit decimals


@st.composite
def decimals(draw: st.DrawFn, precision: int, scale: int) -> Decimal:
    places = draw(st.integers(0, scale))
    bound = 10 ** (precision - scale + places) - 1
    return Decimal(draw(st.integers(-bound, bound))).scaleb(-places, WIDE)


def values(avro_type: object) -> st.SearchStrategy:
    if isinstance(avro_type, list):
        return st.none() | values(avro_type[1])
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "decimal":
            return decimals(avro_type["precision"], avro_type["scale"])
        if avro_type["type"] == "enum":
            return st.sampled_from(avro_type["symbols"])
        return values(avro_type["type"])
    return {
        "string": st.text(max_size=40), "long": st.integers(-MAX_LONG - 1, MAX_LONG),
        "int": st.integers(-(2**31), 2**31 - 1), "boolean": st.booleans(), "bytes": st.binary(max_size=64),
    }[avro_type]


def compiled_topics() -> list[str]:
    topics = []
    for topic in available_topics():
        try:
            compile_record_writer(json.loads(schema_text(topic)))
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
    write = compile_record_writer(schema)
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
    write = compile_record_writer(json.loads(schema_text("trades_l3")))
    record = {"exchange": "x", "symbol": "A.B", "trade_id": "1", "price": Decimal(1), "size": Decimal(1),
              "taker_side": "buy", "maker_order_id": None, "taker_order_id": None, "sequence": None,
              "event_timestamp": 1, "atom_timestamp": 1}
    with pytest.raises(error):
        write({**record, field: value})
