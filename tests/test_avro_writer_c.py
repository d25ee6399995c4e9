"""The C Avro writer writes the Python writer's bytes (and fastavro's), and refuses what it refuses, as it does.

The Python writer (``compile_python_record_writer``) is the reference.  These
tests run where the extension is built (``pip install -r requirements.txt``
compiles it) and are skipped, with the reason shown, where it is not; on CI
(``CI`` set) the build itself is checked.
"""

from __future__ import annotations

import collections
import gc
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3_atom.avro.codecs import available_topics, schema_text
from l3_atom.avro.writer import (
    compile_python_record_writer,
    compile_record_writer,
    native_writer_available,
)
from l3_atom.config import PROJECT_ROOT
from tests.avro_strategies import MAX_LONG, MIN_LONG, values
from tests.compiled import compiled

_avro_writer_c, needs_c = compiled("l3_atom.avro._avro_writer_c", "the C Avro writer")

EDGE_LONGS = [0, 1, -1, 63, 64, -64, -65, 8191, 8192, -8192, -8193, 2**31, -(2**31), MAX_LONG, MIN_LONG,
              1_700_000_000_123_456, -1_700_000_000_123_456]
BEYOND_LONGS = [MAX_LONG + 1, MIN_LONG - 1, 2**64 + 5, -(2**70)]
EDGE_STRINGS = ["", "a", "é", "日本語", "🙂", "\x00", "a" * 600, "é" * 9000]
EDGE_DECIMALS = ["0", "-0", "0.00", "0E-8", "1E+3", "1.5E-7", "-1.5E-7", "123456.7E+3", "30004.27", "-30004.27",
                 "0.00000001", "-0.00000001", "1E-18", "-1E-18", "0.000000000000000001", "127", "-128", "128",
                 "-129", "255", "-256", "32767", "-32768", "999999999999999999", "9223372036854775807",
                 "-9223372036854775808", "99999999999999999999.999999999999999999",
                 "-99999999999999999999.999999999999999999", "1.43985216"]
REFUSED_DECIMALS = ["1E-19", "0.0000000000000000001", "1.50000000000000000000", "NaN", "-NaN", "sNaN", "Infinity",
                    "-Infinity", "1E+20", "100000000000000000000", "-100000000000000000000", "1" * 5000]
# Values of the wrong type (or of none) for some field or other.
ODD_VALUES = [None, True, False, 0, -1, 1.5, "", "x", "bid", "buy", b"x", bytearray(b"y"), [], {}, "\ud800",
              Decimal("NaN"), Decimal("1E+3"), Decimal("-0"), Decimal("1E-19"), Decimal("1E+20"), MAX_LONG + 1,
              memoryview(b"z"), object]

PRICE = {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 18}
EVERY_KIND = {"type": "record", "name": "EveryKind", "fields": [
    {"name": "text", "type": "string"}, {"name": "note", "type": ["null", "string"]},
    {"name": "count", "type": "long"}, {"name": "maybe", "type": ["null", "long"]}, {"name": "small", "type": "int"},
    {"name": "flag", "type": "boolean"}, {"name": "maybe_flag", "type": ["null", "boolean"]},
    {"name": "raw", "type": "bytes"}, {"name": "maybe_raw", "type": ["null", "bytes"]},
    {"name": "side", "type": {"type": "enum", "name": "Side", "symbols": ["bid", "ask"]}},
    {"name": "maybe_side", "type": ["null", {"type": "enum", "name": "Taker", "symbols": ["buy", "sell"]}]},
    {"name": "price", "type": PRICE}, {"name": "maybe_price", "type": ["null", PRICE]},
    {"name": "cents", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}},
    {"name": "whole", "type": {"type": "bytes", "logicalType": "decimal", "precision": 5}},
    {"name": "units", "type": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 0}},
]}
GOOD = {"text": "coinbase", "note": None, "count": 1, "maybe": None, "small": 2, "flag": True, "maybe_flag": None,
        "raw": b"r", "maybe_raw": None, "side": "bid", "maybe_side": None, "price": Decimal("30004.27"),
        "maybe_price": None, "cents": Decimal("12.34"), "whole": Decimal(12345), "units": Decimal(0)}


def compiled_topics() -> list[str]:
    topics = []
    for topic in available_topics():
        try:
            compile_python_record_writer(json.loads(schema_text(topic)))
        except NotImplementedError:
            continue
        topics.append(topic)
    return topics


def outcome(write: Callable[[Any], bytes], record: Any) -> tuple[str, Any, str]:
    """What writing ``record`` came to: its bytes, or the exception's type and message."""
    try:
        return "bytes", write(record), ""
    except Exception as exc:  # noqa: BLE001 - any exception is an outcome to compare
        return "error", type(exc), str(exc)


def fastavro_bytes(schema: dict, record: dict) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), record)
    return buffer.getvalue()


def writers(schema: dict, prefix: bytes = b"") -> tuple[Callable, Callable]:
    """``(c, python)``: the C writer and the reference, for ``schema``."""
    native = compile_record_writer(schema, prefix)
    assert isinstance(native, _avro_writer_c.Writer)
    return native, compile_python_record_writer(schema, prefix)


def edge_values(avro_type: object) -> st.SearchStrategy:
    """Valid values of ``avro_type``, with the boundaries drawn often."""
    return values(avro_type, {
        "string": st.text(max_size=40) | st.sampled_from(EDGE_STRINGS),
        "long": st.integers(MIN_LONG, MAX_LONG) | st.sampled_from(EDGE_LONGS),
    })


def any_values(avro_type: object) -> st.SearchStrategy:
    """A valid value of ``avro_type``, or one that is not, or a long beyond Avro's, or an odd decimal."""
    decimals = st.sampled_from(EDGE_DECIMALS + REFUSED_DECIMALS).map(Decimal)
    return edge_values(avro_type) | st.sampled_from(ODD_VALUES + BEYOND_LONGS) | decimals


@needs_c
@pytest.mark.parametrize("topic", compiled_topics())
def test_same_bytes_as_the_python_writer_and_fastavro(topic: str) -> None:
    schema = json.loads(schema_text(topic))
    native, python = writers(schema)
    records = st.fixed_dictionaries({f["name"]: edge_values(f["type"]) for f in schema["fields"]})

    @settings(max_examples=100, deadline=None)
    @given(records)
    def check(record: dict) -> None:
        encoded = native(record)
        assert encoded == python(record) == fastavro_bytes(schema, record)
        assert fastavro.schemaless_reader(io.BytesIO(encoded), fastavro.parse_schema(schema), None) == record

    check()


@needs_c
@pytest.mark.parametrize("topic", compiled_topics())
def test_same_outcome_as_the_python_writer_for_any_values(topic: str) -> None:
    """Good or bad values, or a field left out: the same bytes, or the same exception with the same message."""
    schema = json.loads(schema_text(topic))
    native, python = writers(schema, b"\x00\x00\x00\x00\x07")
    names = [f["name"] for f in schema["fields"]]
    records = st.fixed_dictionaries({f["name"]: any_values(f["type"]) for f in schema["fields"]})

    @settings(max_examples=150, deadline=None)
    @given(records, st.none() | st.sampled_from(names))
    def check(record: dict, left_out: str | None) -> None:
        record.pop(left_out, None)
        assert outcome(native, record) == outcome(python, record)

    check()


@needs_c
@pytest.mark.parametrize("n", EDGE_LONGS + BEYOND_LONGS)
def test_longs_at_and_beyond_the_boundaries(n: int) -> None:
    native, python = writers(EVERY_KIND)
    record = {**GOOD, "count": n, "maybe": n, "small": n}  # an int field is written as a long, unchecked
    assert native(record) == python(record)
    if MIN_LONG <= n <= MAX_LONG:
        record["small"] = 7
        assert native(record) == python(record) == fastavro_bytes(EVERY_KIND, record)


@needs_c
@pytest.mark.parametrize("text", EDGE_STRINGS)
def test_strings_are_utf8_with_their_length(text: str) -> None:
    native, python = writers(EVERY_KIND)
    record = {**GOOD, "text": text, "note": text, "raw": text.encode(), "maybe_raw": bytearray(text.encode())}
    assert native(record) == python(record) == fastavro_bytes(EVERY_KIND, record)


@needs_c
@pytest.mark.parametrize("text", EDGE_DECIMALS)
def test_decimals_at_the_scale_and_in_exponent_notation(text: str) -> None:
    native, python = writers(EVERY_KIND)
    record = {**GOOD, "price": Decimal(text), "maybe_price": Decimal(text)}
    assert native(record) == python(record) == fastavro_bytes(EVERY_KIND, record)


@needs_c
@pytest.mark.parametrize("text", REFUSED_DECIMALS)
@pytest.mark.parametrize("field", ["price", "maybe_price"])
def test_decimals_beyond_the_schema_are_refused_with_the_same_message(text: str, field: str) -> None:
    native, python = writers(EVERY_KIND)
    record = {**GOOD, field: Decimal(text)}
    refused = outcome(native, record)
    assert refused[0] == "error" and refused[1] is ValueError
    assert refused == outcome(python, record)


# Unscaled integers around the two's-complement byte boundaries (scale 0: the integer is the value).
BOUNDARY_INTEGERS = [n * sign for sign in (1, -1) for n in (
    0, 1, 127, 128, 129, 255, 256, 32767, 32768, 2**31, 2**63 - 1, 2**63, 2**64, 2**120, 10**38 - 1, 10**38)]


@needs_c
@pytest.mark.parametrize("n", BOUNDARY_INTEGERS)
def test_decimal_bytes_around_byte_boundaries(n: int) -> None:
    native, python = writers(EVERY_KIND)
    record = {**GOOD, "units": Decimal(n)}
    assert outcome(native, record) == outcome(python, record)
    if abs(n) < 10**38:
        assert native(record) == fastavro_bytes(EVERY_KIND, record)


@needs_c
@pytest.mark.parametrize(("field", "text"), [
    ("cents", "99.99"), ("cents", "-99.99"), ("cents", "0.01"), ("cents", "1.5"), ("cents", "100.00"),
    ("cents", "-100"), ("cents", "0.001"), ("cents", "1.500"), ("whole", "99999"), ("whole", "-99999"),
    ("whole", "100000"), ("whole", "1.0"), ("whole", "1E+4"), ("whole", "1E+5"), ("whole", "-0"),
])
def test_small_precisions_and_scales(field: str, text: str) -> None:
    native, python = writers(EVERY_KIND)
    record = {**GOOD, field: Decimal(text)}
    assert outcome(native, record) == outcome(python, record)


@needs_c
@pytest.mark.parametrize("field", [f["name"] for f in EVERY_KIND["fields"]])
@pytest.mark.parametrize("value", ODD_VALUES + BEYOND_LONGS, ids=repr)
def test_every_field_judges_every_odd_value_as_the_python_writer_does(field: str, value: object) -> None:
    native, python = writers(EVERY_KIND)
    record = {**GOOD, field: value}
    assert outcome(native, record) == outcome(python, record)


@needs_c
@pytest.mark.parametrize(("field", "value", "error", "message"), [
    ("count", "1", TypeError, "expected an int, got str '1'"),
    ("count", True, TypeError, "expected an int, got bool True"),
    ("maybe", 1.0, TypeError, "expected an int, got float 1.0"),
    ("flag", 1, TypeError, "expected a bool, got int 1"),
    ("text", 5, TypeError, "expected a string, got int 5"),
    ("text", [], TypeError, "unhashable type: 'list'"),
    ("raw", "r", TypeError, "expected bytes, got str"),
    ("side", "buy", ValueError, "'buy' is not one of ['bid', 'ask']"),
    ("maybe_side", [], ValueError, "[] is not one of ['buy', 'sell']"),
    ("price", 1.5, TypeError, "expected a Decimal, got float 1.5"),
    ("price", Decimal("NaN"), ValueError, "NaN has more than 18 decimal places (or is not finite)"),
    ("price", Decimal("1.5000000000000000000"), ValueError, "has more than 18 decimal places"),
    ("price", Decimal("1E+20"), ValueError, "1E+20 needs more than 38 digits"),
    ("cents", Decimal(100), ValueError, "100 needs more than 4 digits"),
])
def test_refusals_raise_the_python_writers_exceptions(field: str, value: object, error: type, message: str) -> None:
    native, python = writers(EVERY_KIND)
    record = {**GOOD, field: value}
    for write in (native, python):
        with pytest.raises(error, match=re.escape(message)):
            write(record)
    assert outcome(native, record) == outcome(python, record)


class Text(str):
    """A str subclass."""


@needs_c
def test_a_str_subclass_is_always_refused() -> None:
    """The one documented difference: the Python writer takes one equal to a string it has cached."""
    native, python = writers(EVERY_KIND)
    python(GOOD)
    assert python({**GOOD, "text": Text("coinbase")}) == python(GOOD)
    with pytest.raises(TypeError, match="expected a string, got Text 'coinbase'"):
        native({**GOOD, "text": Text("coinbase")})
    assert native({**GOOD, "side": Text("bid")}) == native(GOOD)  # an enum takes any equal string, as in Python


@needs_c
def test_a_missing_field_is_named_and_the_first_bad_field_wins() -> None:
    native, python = writers(EVERY_KIND)
    for record in ({k: v for k, v in GOOD.items() if k != "side"}, {**GOOD, "count": "x", "price": 1.5}, {}):
        assert outcome(native, record) == outcome(python, record)
    with pytest.raises(ValueError, match="record lacks field 'side'"):
        native({k: v for k, v in GOOD.items() if k != "side"})


def rebuilt(record: dict, order: list[str], extra: bool = False, left_out: str | None = None,
            fresh_key: str | None = None) -> dict:
    """``record`` with its keys in ``order``, maybe one more key, one fewer, or one an equal new string."""
    rebuilt = {fresh_str(key) if key == fresh_key else key: record[key] for key in order if key != left_out}
    if extra:
        rebuilt["extra"] = 1
    return rebuilt


@needs_c
@pytest.mark.parametrize("topic", compiled_topics())
def test_records_in_any_key_order_are_written_as_the_python_writer_writes_them(topic: str) -> None:
    """The writer reads a record in the key order of the last one it read by name: any other order, an extra
    key, a missing one or a key equal to a field's name but another object is read by name, to the same outcome."""
    schema = json.loads(schema_text(topic))
    native, python = writers(schema, b"\x00\x00\x00\x00\x07")
    # Interned, as the keys of the dict literals records are made from are: the writer compares keys by identity.
    names = [sys.intern(f["name"]) for f in schema["fields"]]
    records = st.fixed_dictionaries({name: edge_values(f["type"]) for name, f in zip(names, schema["fields"])})
    odd_values = st.none() | st.tuples(st.sampled_from(names), st.sampled_from(ODD_VALUES + BEYOND_LONGS))
    changes = st.tuples(st.booleans(), st.none() | st.sampled_from(names), st.none() | st.sampled_from(names))

    @settings(max_examples=100, deadline=None)
    @given(records, odd_values, st.lists(st.tuples(st.permutations(names), changes), min_size=2, max_size=4))
    def check(record: dict, odd: tuple | None, orders: list[tuple[list[str], tuple]]) -> None:
        if odd is not None:
            record[odd[0]] = odd[1]
        for order, (extra, left_out, fresh_key) in orders:
            # Read by name (the order before differs), then by this order, learnt; then changed, by name.
            for changed in (rebuilt(record, order), rebuilt(record, order),
                            rebuilt(record, order, extra, left_out, fresh_key)):
                assert outcome(native, changed) == outcome(python, changed)

    check()


@needs_c
def test_records_alternating_between_key_orders() -> None:
    native, python = writers(EVERY_KIND)
    reverse = dict(reversed(list(GOOD.items())))
    for record in [GOOD, GOOD, reverse, reverse, GOOD, {**GOOD, "side": "ask"}, reverse, {**reverse, "count": 9}]:
        assert native(record) == python(record) == fastavro_bytes(EVERY_KIND, record)
    for left_out in GOOD:  # after an order is learnt, a record without one of its fields still names the field
        native(GOOD)
        missing = {key: value for key, value in GOOD.items() if key != left_out}
        with pytest.raises(ValueError, match=f"record lacks field '{left_out}'"):
            native(missing)


class Record(Mapping):
    """A read-only mapping, not a dict."""

    def __init__(self, fields: dict) -> None:
        self.fields = fields

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def __iter__(self) -> Any:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)


class Defaults(dict):
    def __missing__(self, key: str) -> Any:
        return None


@needs_c
@pytest.mark.parametrize("record", [
    Record(GOOD), Record({}), collections.OrderedDict(GOOD), Defaults({"text": "t"}),
    collections.defaultdict(lambda: None, GOOD), [], None, "text",
], ids=lambda r: type(r).__name__)
def test_records_that_are_not_plain_dicts(record: object) -> None:
    native, python = writers(EVERY_KIND)
    assert outcome(native, record) == outcome(python, record)


@needs_c
def test_the_prefix_goes_first_and_the_writer_is_called_like_a_function() -> None:
    native, python = writers(EVERY_KIND, b"\x00\x00\x00\x00\x07")
    assert native(GOOD).startswith(b"\x00\x00\x00\x00\x07")
    assert native(GOOD) == python(GOOD)
    with pytest.raises(TypeError, match="one argument"):
        native(GOOD, GOOD)
    with pytest.raises(TypeError, match="one argument"):
        native(record=GOOD)
    empty = compile_record_writer({"type": "record", "name": "Empty", "fields": []}, b"head")
    assert empty({}) == b"head"


@needs_c
def test_schemas_the_python_writer_refuses_are_refused() -> None:
    for schema in ({"type": "record", "name": "R", "fields": [{"name": "f", "type": "double"}]},
                   {"type": "record", "name": "R", "fields": [{"name": "f", "type": ["null", "long", "string"]}]},
                   {"type": "enum", "name": "E", "symbols": ["a"]}):
        with pytest.raises(NotImplementedError):
            compile_record_writer(schema)


@needs_c
def test_a_bad_plan_is_refused() -> None:
    def alone(record: dict) -> bytes:
        return b""

    with pytest.raises(TypeError):
        _avro_writer_c.Writer(b"", (("f", _avro_writer_c.ENUM, False, alone, None, 0, 0),), Decimal)
    with pytest.raises(ValueError, match="unknown field kind"):
        _avro_writer_c.Writer(b"", (("f", 99, False, alone, None, 0, 0),), Decimal)
    with pytest.raises(ValueError, match="precision"):
        _avro_writer_c.Writer(b"", (("f", _avro_writer_c.DECIMAL, False, alone, None, 2, 3),), Decimal)
    with pytest.raises(TypeError):
        _avro_writer_c.Writer("not bytes", (), Decimal)


def fresh_str(text: str) -> str:
    """An equal string that is a new object (not the interned constant)."""
    return text.encode().decode()


@needs_c
@pytest.mark.parametrize("side", ["bid", "ask", fresh_str("bid"), fresh_str("ask"), "nope", fresh_str("nope")])
def test_enum_symbols_the_interned_ones_or_equal_strings(side: str) -> None:
    """A symbol the standardisers write (interned) is found by identity, an equal string by the symbols' dict."""
    native, python = writers(EVERY_KIND)
    assert outcome(native, {**GOOD, "side": side}) == outcome(python, {**GOOD, "side": side})


@needs_c
def test_a_writer_keeps_its_own_copy_of_the_enum_symbols() -> None:
    def alone(record: dict) -> bytes:
        raise ValueError(f"not a symbol: {record}")

    symbols = {"bid": 0, "ask": 1}
    native = _avro_writer_c.Writer(b"", (("side", _avro_writer_c.ENUM, False, alone, symbols, 0, 0),), Decimal)
    symbols.clear()
    symbols["ask"] = 0
    assert (native({"side": "bid"}), native({"side": fresh_str("ask")})) == (b"\x00", b"\x02")


def fresh_records() -> list[dict]:
    """A good record of EVERY_KIND and variants with an odd value each, of objects of the caller alone (no shared
    singletons, small ints or interned strings), so reference counts are exact."""
    fresh = {**GOOD, "text": fresh_str("coinbase"), "note": fresh_str("ét"), "count": int("1700000000123456"),
             "maybe": int("-70000"), "small": int("70000"), "raw": bytes(bytearray(b"raw")),
             "maybe_raw": bytes(bytearray(b"r")), "side": fresh_str("bid"), "price": Decimal("30004.27"),
             "maybe_price": Decimal("-0.5"), "cents": Decimal("1.5"), "whole": Decimal(99), "units": Decimal(-129)}
    odd = {"maybe": 2**70, "price": Decimal("1E+3"), "text": "x\ud800", "side": fresh_str("nope"),
           "cents": Decimal("NaN"), "count": 1.5, "maybe_raw": bytearray(b"r")}
    records = [fresh, dict(reversed(fresh.items()))] + [{**fresh, field: value} for field, value in odd.items()]
    return records + [{"text": fresh["text"]}, {**fresh, "extra": fresh_str("x")}]


def assert_references_kept(call: Callable[[Any], Any], records: list[dict]) -> None:
    """Every value's and record's reference count is what it was after ``call`` took each record 1000 times more."""
    watched = [value for record in records for value in record.values()
               if value is not None and type(value) is not bool]
    watched += records
    for record in records:  # warm up: caches fill once
        outcome(call, record)
    gc.collect()
    before = [sys.getrefcount(value) for value in watched]
    for _ in range(1000):
        for record in records:
            outcome(call, record)
    gc.collect()
    assert [sys.getrefcount(value) for value in watched] == before


@needs_c
def test_no_references_are_leaked_on_any_path() -> None:
    """Every value's reference count is what it was, after writes that succeed, fall back to Python, or fail."""
    native, _ = writers(EVERY_KIND, b"\x00\x00\x00\x00\x07")
    assert_references_kept(native, fresh_records())


@needs_c
def test_memory_stays_flat_over_many_writes() -> None:
    """Resident memory does not grow with the number of records written (Linux: /proc/self/statm)."""
    statm = "/proc/self/statm"
    if not os.path.exists(statm):
        pytest.skip("no /proc/self/statm to read resident memory from")
    native, _ = writers(EVERY_KIND, b"\x00\x00\x00\x00\x07")
    records = [dict(GOOD), {**GOOD, "text": "é" * 2000, "maybe": 2**70, "price": Decimal("1E+3")},
               {**GOOD, "side": "nope"}]
    page = os.sysconf("SC_PAGE_SIZE")

    def resident_after(writes: int) -> int:
        for _ in range(writes):
            for record in records:
                outcome(native, record)
        gc.collect()
        with open(statm) as file:
            return int(file.read().split()[1]) * page

    resident_after(20_000)
    start = resident_after(50_000)
    assert resident_after(100_000) - start < 1 << 20


@needs_c
def test_writers_take_part_in_garbage_collection() -> None:
    native, _ = writers(EVERY_KIND)
    assert gc.is_tracked(native)
    assert len(gc.get_referents(native)) >= len(EVERY_KIND["fields"])


def test_without_the_extension_the_python_writer_serves() -> None:
    """Where the extension is absent (not built, or blocked here), imports work and records are written in Python."""
    script = (
        "import sys; sys.modules['l3_atom.avro._avro_writer_c'] = None\n"
        "from decimal import Decimal\n"
        "from l3_atom.avro import writer as avro_writer\n"
        "from l3_atom.avro.codecs import AvroEncoder\n"
        "encode = AvroEncoder('trades_l3', 7).encode\n"
        "print(avro_writer.native_writer_available(), type(encode).__name__, avro_writer.writer_kind())\n"
        "print(encode({'exchange': 'x', 'symbol': 'A.B', 'trade_id': '1', 'price': Decimal(1), 'size': Decimal(1),"
        " 'taker_side': 'buy', 'maker_order_id': None, 'taker_order_id': None, 'sequence': None,"
        " 'origin': None, 'event_timestamp': 1, 'atom_timestamp': 1}).hex())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    kind, encoded = done.stdout.splitlines()
    assert kind == "False function generated Python (no C extension built)"
    assert encoded.startswith("0000000007")


def test_ci_builds_the_c_writer() -> None:
    """On CI (``CI`` set) ``pip install -r requirements.txt`` must have compiled the extension."""
    if not os.environ.get("CI"):
        pytest.skip("CI is not set: a machine without a C compiler may run the Python writer alone")
    assert _avro_writer_c is not None, "pip install -r requirements.txt did not build _avro_writer_c"
    assert native_writer_available()
    assert isinstance(compile_record_writer(EVERY_KIND), _avro_writer_c.Writer)


def test_ci_reads_decimal_digits_directly() -> None:
    """On CI the writer reads a Decimal's digits without str(): its import-time check of CPython's layout passed.

    Elsewhere (another Python build) the check may fail, and every Decimal is read through its text.
    """
    if not os.environ.get("CI"):
        pytest.skip("CI is not set: another Python build may lay Decimals out otherwise (the text path serves)")
    assert _avro_writer_c is not None and _avro_writer_c.READS_DECIMAL_DIGITS == 1
