"""The compiled validators give what writing and reading back gives: the same record, or the same refusal.

Each test runs the topic's validator (``TopicValidator.encode``: the C one where the extension is built) and
the generated Python one (``TopicValidator.python``, the reference) alike.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3_atom.avro.codecs import AvroEncoder, available_topics, decode_wire, parsed_schema, schema_text
from l3_atom.avro.validator import TopicValidator, compile_record_validator, validator_source
from tests.avro_strategies import MAX_LONG, MIN_LONG, values
from tests.test_avro_reader import assert_same

# Values off the fast path, or outside a schema: each may replace any field of a valid record.
ODD_VALUES = [
    1.5, "1", None, True, False, 0, -1, MAX_LONG, MIN_LONG, MAX_LONG + 1, MIN_LONG - 1,
    Decimal("1e-19"), Decimal("1.5000000000000000000"), Decimal("1E+3"), Decimal("-0"), Decimal("0E-30"),
    Decimal("NaN"), Decimal("-Infinity"), Decimal("1e20"), Decimal("99999999999999999999.999999999999999999"),
    Decimal(-100000000000000000000), bytearray(b"x"), b"x", "\ud800", "ünïcødé", "open", "bid", "processor",
    "bogus", [], object(),
]
MISSING = object()
# A TopicValidator's validators: the one it uses (C where built) and the generated Python one.
VALIDATORS = ["encode", "python"]


def reference(topic: str) -> Any:
    """What the runtime did before the validator: the Avro bytes, read back."""
    encode = AvroEncoder(topic, 1).encode
    schemas = {1: parsed_schema(topic)}
    return lambda record: decode_wire(encode(record), schemas)


def outcome(function: Any, record: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "record", function(record)
    except (ValueError, TypeError) as exc:
        return "refused", (type(exc), str(exc))


@pytest.mark.parametrize("kind", VALIDATORS)
@pytest.mark.parametrize("topic", available_topics())
def test_every_schema_validates_as_the_writer_and_reader_do(topic: str, kind: str) -> None:
    schema = json.loads(schema_text(topic))
    validate = getattr(TopicValidator(topic), kind)
    expected = reference(topic)
    records = st.fixed_dictionaries({f["name"]: values(f["type"]) for f in schema["fields"]})
    names = [f["name"] for f in schema["fields"]]
    changes = st.lists(
        st.tuples(st.sampled_from([*names, "not_in_the_schema"]), st.sampled_from([*ODD_VALUES, MISSING])),
        max_size=2,
    )

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(records, changes), min_size=1, max_size=4))
    def check(batch: list[tuple[dict, list]]) -> None:
        for record, changed in batch:  # several per validator: its caches must not leak between records
            for name, value in changed:
                if value is MISSING:
                    record.pop(name, None)
                else:
                    record[name] = value
            got, want = outcome(validate, dict(record)), outcome(expected, dict(record))
            assert got[0] == want[0], (record, got, want)
            if got[0] == "record":
                assert_same(got[1], want[1])
            else:
                assert got[1] == want[1]

    check()


def test_the_fast_path_takes_plain_records_without_the_round_trip() -> None:
    """A valid record in the standardisers' forms never reaches the writer; an odd one does."""
    trips = []
    schema = json.loads(schema_text("trades_l3"))
    validate = compile_record_validator(schema, lambda record: trips.append(record) or {})
    record = {
        "exchange": "coinbase", "symbol": "BTC.USD", "trade_id": "10", "price": Decimal("30000.5"),
        "size": Decimal("1E-8"), "taker_side": "buy", "maker_order_id": "m", "taker_order_id": None,
        "sequence": 5, "origin": None, "event_timestamp": 1, "atom_timestamp": 2, "extra": "dropped",
    }
    got = validate(record)
    assert trips == []
    assert str(got["price"]) == "30000.500000000000000000"
    assert str(got["size"]) == str(reference("trades_l3")(record)["size"])
    assert "extra" not in got
    assert validate({**record, "price": Decimal("1e-19")}) == {}
    assert validate({**record, "size": bytearray(b"1")}) == {}
    assert len(trips) == 2


def test_the_source_is_readable() -> None:
    source = validator_source(json.loads(schema_text("lob_l3")))
    assert source.startswith("def validate_LobL3(record):")
    assert "round_trip(record)" in source


# Decimal texts of every shape: digits around the scale (18) and the precision (38), signs, exponents, zeros.
DECIMAL_TEXTS = st.from_regex(r"[-+]?\d{1,40}(\.\d{0,22})?([eE][-+]?\d{1,2})?", fullmatch=True)


@pytest.mark.parametrize("kind", VALIDATORS)
def test_each_decimal_is_decoded_or_refused_as_the_writer_and_reader_do(kind: str) -> None:
    """The decimal fast path (a cache miss, then a hit) against the bytes read back, digit for digit."""
    validate = getattr(TopicValidator("trades_l3"), kind)
    texts = DECIMAL_TEXTS | st.sampled_from(["NaN", "-Infinity", "-0", "0E-19", "0E+5"])

    @settings(max_examples=400, deadline=None)
    @given(st.lists(texts, min_size=1, max_size=8))
    def check(texts: list[str]) -> None:
        each_decimal_as_the_round_trip(validate, texts)

    check()


def each_decimal_as_the_round_trip(validate: Any, texts: list[str]) -> None:
    """Each text as a trades_l3 price, twice: the same record (digit for digit) or refusal as the round trip."""
    expected = reference("trades_l3")
    record = {
        "exchange": "coinbase", "symbol": "BTC.USD", "trade_id": "10", "price": Decimal(1), "size": Decimal(1),
        "taker_side": "buy", "maker_order_id": "m", "taker_order_id": None, "sequence": 5, "origin": None,
        "event_timestamp": 1, "atom_timestamp": 2,
    }
    for text in texts:  # twice each: a miss, then the cached value
        for _ in range(2):
            changed = {**record, "price": Decimal(text)}
            got, want = outcome(validate, changed), outcome(expected, changed)
            assert got[0] == want[0], (text, got, want)
            if got[0] == "record":
                assert got[1]["price"].as_tuple() == want[1]["price"].as_tuple(), text
                assert_same(got[1], want[1])
            else:
                assert got[1] == want[1]
