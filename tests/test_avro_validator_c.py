"""The C validator (``_avro_writer_c.Validator``) gives what the generated Python validator gives, and the round trip.

The generated Python validator (``validator.compile_record_validator``) is the
reference: for random records of every schema, edge values and odd ones, the
C validator returns the same record (types, values, every decimal's digits and
exponent, key order) or the same refusal.  These tests run where the extension
is built and are skipped, with the reason shown, where it is not; on CI (``CI``
set) ``TopicValidator`` must use the C validator.
"""

from __future__ import annotations

import collections
import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3_atom.avro.codecs import available_topics, decode_wire, schema_text
from l3_atom.avro.validator import (
    TopicValidator,
    compile_native_record_validator,
    compile_record_validator,
)
from l3_atom.avro.writer import compile_python_record_writer, compile_record_writer
from l3_atom.config import PROJECT_ROOT
from tests.compiled import compiled
from tests.test_avro_reader import assert_same
from tests.test_avro_writer_c import (
    EDGE_DECIMALS,
    EVERY_KIND,
    GOOD,
    ODD_VALUES,
    REFUSED_DECIMALS,
    Defaults,
    Record,
    Text,
    any_values,
    assert_references_kept,
    fresh_records,
    rebuilt,
)

_avro_writer_c, needs_c = compiled("l3_atom.avro._avro_writer_c", "the C Avro writer (and its validator)")

# The wire header of the round trip's bytes (magic byte 0, schema id 1).
HEADER = b"\x00\x00\x00\x00\x01"
# Edge cases the brief names, each may replace any field: signs, places, specials, sizes, text, types.
EDGE_CASES = [
    Decimal("-0"), Decimal("-0.000"), Decimal("0E-30"), Decimal("0E+5"), Decimal("1E-19"),
    Decimal("1.5000000000000000000"), Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity"),
    Decimal("1E+20"), Decimal("-99999999999999999999.999999999999999999"), Decimal("1" * 60), Decimal(10**38),
    "ünïcødé", "日本語", "🙂", "\ud800", "x\udfff", Text("bid"), Text("text"), True, False, 2**63, -(2**63) - 1,
    2**63 - 1, 1.0, bytearray(b"b"), memoryview(b"m"), None, {}, (), object(),
]
MISSING = object()
LOB_L3 = {
    "exchange": "coinbase", "symbol": "BTC.USD", "event_type": "open", "order_id": "o", "side": "bid",
    "price": Decimal("30000.01"), "size": Decimal("0.5"), "reason": None, "is_snapshot": False, "sequence": 1,
    "prev_sequence": None, "event_timestamp": 2, "atom_timestamp": 3,
}


def round_trip_of(schema: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The record read back from the C writer's bytes of ``schema`` (as ``TopicValidator`` builds it)."""
    encode = compile_record_writer(schema, HEADER)
    schemas = {1: fastavro.parse_schema(schema)}

    def round_trip(record: dict[str, Any]) -> dict[str, Any]:
        return decode_wire(encode(record), schemas)

    round_trip.encode = encode  # type: ignore[attr-defined]
    return round_trip


def validators(schema: dict[str, Any]) -> tuple[Callable, Callable]:
    """``(c, python)``: the C validator and the reference, for ``schema``, over one round trip."""
    round_trip = round_trip_of(schema)
    native = compile_native_record_validator(round_trip.encode, round_trip)  # type: ignore[attr-defined]
    assert isinstance(native, _avro_writer_c.Validator)
    return native, compile_record_validator(schema, round_trip)


def outcome(validate: Callable, record: Any) -> tuple[str, Any]:
    """What validating ``record`` came to: the record, or the exception's type and message."""
    try:
        return "record", validate(record)
    except Exception as exc:  # noqa: BLE001 - any exception is an outcome to compare
        return "error", (type(exc), str(exc))


def assert_same_outcome(native: Callable, python: Callable, record: Any) -> tuple[str, Any]:
    """The C validator's outcome is the reference's: the same record (types, digits, order) or the same refusal."""
    got, want = outcome(native, record), outcome(python, record)
    assert got[0] == want[0], (record, got, want)
    if got[0] == "record":
        assert type(got[1]) is dict
        assert_same(got[1], want[1])
    else:
        assert got[1] == want[1]
    return got


def compiled_topics() -> list[str]:
    topics = []
    for topic in available_topics():
        schema = json.loads(schema_text(topic))
        try:
            compile_python_record_writer(schema)
            compile_record_validator(schema, dict)
        except NotImplementedError:
            continue
        topics.append(topic)
    return topics


@needs_c
@pytest.mark.parametrize("topic", compiled_topics())
def test_the_same_records_as_the_python_validator_for_any_values(topic: str) -> None:
    """Random records of every schema, their fields replaced by edge and odd values, left out, or joined by others."""
    schema = json.loads(schema_text(topic))
    native, python = validators(schema)
    names = [sys.intern(f["name"]) for f in schema["fields"]]
    records = st.fixed_dictionaries({name: any_values(f["type"]) for name, f in zip(names, schema["fields"])})
    changes = st.lists(
        st.tuples(st.sampled_from([*names, "not_in_the_schema"]), st.sampled_from([*EDGE_CASES, MISSING])),
        max_size=2,
    )

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(records, changes, st.permutations(names)), min_size=1, max_size=4))
    def check(batch: list[tuple[dict, list, list]]) -> None:
        for record, changed, order in batch:  # several per validator: its caches must not leak between records
            for name, value in changed:
                if value is MISSING:
                    record.pop(name, None)
                else:
                    record[name] = value
            # As made (read by name), in another key order (read by name, then in that order, learnt).
            for variant in (record, rebuilt(record, [n for n in order if n in record]), dict(record)):
                assert_same_outcome(native, python, variant)

    check()


@needs_c
@pytest.mark.parametrize("field", [f["name"] for f in EVERY_KIND["fields"]])
@pytest.mark.parametrize("value", EDGE_CASES + ODD_VALUES, ids=repr)
def test_every_field_judges_every_edge_case_as_the_python_validator_does(field: str, value: object) -> None:
    native, python = validators(EVERY_KIND)
    # Read by name; then (GOOD read, its key order learnt) copied whole, as a record in the schema's order is.
    for record in ({**GOOD, field: value}, {**GOOD, field: value, "extra": 1}, GOOD, {**GOOD, field: value}):
        assert_same_outcome(native, python, record)


@needs_c
@pytest.mark.parametrize("text", EDGE_DECIMALS + REFUSED_DECIMALS + ["-0.0", "0.000000000000000000", "-1E-18"])
@pytest.mark.parametrize("field", ["price", "maybe_price", "cents", "whole", "units"])
def test_decimals_decoded_at_the_scale_or_refused(text: str, field: str) -> None:
    """Each decimal twice (made, then cached): the reader's value, digits and exponent, zero without a sign."""
    native, python = validators(EVERY_KIND)
    for _ in range(2):
        kind, decoded = assert_same_outcome(native, python, {**GOOD, field: Decimal(text)})
        if kind == "record":
            assert decoded[field].as_tuple().sign == (decoded[field] < 0)


@needs_c
def test_zero_is_decoded_without_a_sign_at_the_scale() -> None:
    native, _ = validators(EVERY_KIND)
    for zero in ("0", "-0", "-0.00", "0E-2", "-0E+3"):
        decoded = native({**GOOD, "price": Decimal(zero), "cents": Decimal(zero)})
        assert (str(decoded["price"]), str(decoded["cents"])) == ("0E-18", "0.00")


@needs_c
def test_a_field_cache_that_fills_starts_over() -> None:
    """More distinct decimals than a field's cache holds, then the first ones again: each as the reference has it."""
    native, python = validators(EVERY_KIND)
    prices = [Decimal(n).scaleb(-(n % 19)) * (-1) ** n for n in range(10_000)]
    for price in prices + prices[:100] + [-price for price in prices[:100]]:
        assert_same_outcome(native, python, {**GOOD, "price": price, "maybe_price": price})


@needs_c
def test_the_fast_path_takes_plain_records_without_the_round_trip() -> None:
    """A valid record in the standardisers' forms never reaches the writer; an odd one does, once."""
    trips = []
    round_trip = round_trip_of(EVERY_KIND)
    native = compile_native_record_validator(round_trip.encode, lambda record: trips.append(record) or {})
    for record in (GOOD, GOOD, {**GOOD, "extra": 1}, dict(reversed(GOOD.items()))):
        decoded = native(record)
        assert decoded == round_trip(GOOD) and list(decoded) == list(GOOD)
        assert decoded is not record
    decoded["text"] = "changed"  # a new dict: the record is not touched
    assert GOOD["text"] == "coinbase" and native(GOOD)["text"] == "coinbase"
    assert trips == []
    for field, value in (("price", Decimal("1E-19")), ("raw", bytearray(b"r")), ("count", True), ("text", Text("t"))):
        odd = {**GOOD, field: value}
        assert native(odd) == {}
        assert trips[-1] is odd
    assert len(trips) == 4


@needs_c
@pytest.mark.parametrize("record", [
    Record(GOOD), Record({}), collections.OrderedDict(GOOD), Defaults({"text": "t"}), Defaults(GOOD),
    collections.defaultdict(lambda: None, GOOD), [], None, "text",
], ids=lambda r: type(r).__name__)
def test_records_that_are_not_plain_dicts(record: object) -> None:
    native, python = validators(EVERY_KIND)
    assert_same_outcome(native, python, record)


@needs_c
def test_topic_validators_use_the_c_validator_with_the_python_one_beside_it() -> None:
    validator = TopicValidator("lob_l3")
    assert isinstance(validator.encode, _avro_writer_c.Validator)
    assert_same_outcome(validator.encode, validator.python, LOB_L3)
    assert_same_outcome(validator.encode, validator.round_trip, LOB_L3)


@needs_c
def test_called_like_a_function_of_one_record() -> None:
    native, _ = validators(EVERY_KIND)
    with pytest.raises(TypeError, match="one argument"):
        native(GOOD, GOOD)
    with pytest.raises(TypeError, match="one argument"):
        native(record=GOOD)
    with pytest.raises(TypeError):
        _avro_writer_c.Validator(compile_python_record_writer(EVERY_KIND), dict)
    with pytest.raises(TypeError, match="callable"):
        _avro_writer_c.Validator(compile_record_writer(EVERY_KIND), None)
    with pytest.raises(NotImplementedError):
        compile_native_record_validator(compile_python_record_writer(EVERY_KIND), dict)
    empty = {"type": "record", "name": "Empty", "fields": []}
    assert validators(empty)[0]({"extra": 1}) == {}


@needs_c
def test_no_references_are_leaked_on_any_path() -> None:
    """Every value's reference count is what it was, after records decoded, round-tripped or refused."""
    native, _ = validators(EVERY_KIND)
    assert_references_kept(native, fresh_records())


@needs_c
def test_validators_take_part_in_garbage_collection() -> None:
    native, _ = validators(EVERY_KIND)
    assert gc.is_tracked(native)
    assert len(gc.get_referents(native)) == 3  # the writer, the round trip, the record template


def test_without_the_extension_the_python_validator_serves() -> None:
    """Where the extension is absent (not built, or blocked here), topic validators are the generated functions."""
    script = (
        "import sys; sys.modules['l3_atom.avro._avro_writer_c'] = None\n"
        "from decimal import Decimal\n"
        "from l3_atom.avro.validator import TopicValidator\n"
        "validator = TopicValidator('trades_l3')\n"
        "print(validator.encode is validator.python, type(validator.encode).__name__)\n"
        "print(validator.encode({'exchange': 'x', 'symbol': 'A.B', 'trade_id': '1', 'price': Decimal(1),"
        " 'size': Decimal('-0'), 'taker_side': 'buy', 'maker_order_id': None, 'taker_order_id': None,"
        " 'sequence': None, 'origin': None, 'event_timestamp': 1, 'atom_timestamp': 1})['size'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["True function", "0E-18"]


def test_ci_validates_in_c() -> None:
    """On CI (``CI`` set) the extension is built, so the one-process runtime validates records in C."""
    if not os.environ.get("CI"):
        pytest.skip("CI is not set: a machine without a C compiler may run the Python validator alone")
    assert _avro_writer_c is not None, "pip install -r requirements.txt did not build _avro_writer_c"
    assert isinstance(TopicValidator("lob_l3").encode, _avro_writer_c.Validator)
