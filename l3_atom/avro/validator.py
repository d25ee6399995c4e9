"""A compiled validator: a record in, the record a reader would decode from its Avro bytes out, without the bytes.

Why: the one-process runtime (``runner.py local``) needs every record
checked against its schema and handed on exactly as a Kafka consumer would
decode it, but it never needs the bytes.  Writing them and reading them
back cost about a third of its time per frame.

How: :func:`compile_record_validator` turns a record schema, once, into one
Python function (as ``writer.py`` and ``reader.py`` do) that checks each
field and builds the decoded record; for ``trades_l3`` it begins::

    def validate_TradeL3(record):
        try:
            value = record['exchange']                    # string
            if type(value) is not str:
                return round_trip(record)
            if not value.isascii() and not encodable(value):
                return round_trip(record)
            f0 = value
            ...
            value = record['price']                       # decimal(38, 18)
            if type(value) is not Decimal:
                return round_trip(record)
            f3 = decimals_3.get(str(value))
            if f3 is None:
                f3 = scaled_3(value)
                if f3 is None:
                    return round_trip(record)
            ...
        except KeyError:
            return round_trip(record)
        return {'exchange': f0, 'symbol': f1, ...}

It takes the fast path only for a value it knows the writer takes and the
reader gives back equal in type, value and representation: a ``str`` (UTF-8
encodable), an ``int`` within a long, ``True``/``False``, ``bytes``, an enum
symbol, ``None`` in a ``["null", T]`` union, and a finite ``Decimal`` with at most
``scale`` places and within the precision, given back
as the reader makes it (``Decimal(unscaled).scaleb(-scale)``: scale 18, so
``str`` shows 18 places).  Anything else (a missing field, a wrong type, too
many places or digits, NaN, a ``bytearray``...) takes ``round_trip``: the
writer's bytes and the reader's record, so a record the writer refuses is
refused with the writer's own error, and one it takes in an unusual form
comes back exactly as decoded.  The record returned is a new dict in the
schema's field order, without any key the schema lacks.  Tests check it
against the round trip for random records of every schema.

In C: where the extension ``_avro_writer_c`` is built, :class:`TopicValidator`
uses its ``Validator`` instead (3-5 times faster on a ``lob_l3`` record): the
same checks over the C writer's own field table, a decimal read as that writer
reads it (its unscaled integer, the fields' caches keyed by it) and decoded as
the reader decodes it.  The generated function stays the reference and
serves where the extension is not built; tests check that both give the same
records (types, values, decimal digits, key order) and refusals.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Context, Decimal, DecimalException, InvalidOperation, Rounded
from typing import Any

from l3_atom.avro.codecs import AvroEncoder, decode_wire, parsed_schema, schema_text
from l3_atom.avro.codegen import FIELD_DEPTH, GeneratedFunction, function_name, keep
from l3_atom.avro.writer import RecordWriter, _avro_writer_c, _unscaled_by_exponent

RecordValidator = Callable[[dict[str, Any]], dict[str, Any]]

# Prices repeat and drift: a field's cache of validated decimals starts over when it holds this many.
DECIMAL_CACHE_LIMIT = 4096
MIN_LONG, MAX_LONG = -(2**63), 2**63 - 1
NULL = "null"
# The schema id of the bytes the round trip writes and reads: they never leave this module.
ROUND_TRIP_SCHEMA_ID = 1


def encodable(text: str) -> bool:
    """Whether the writer can encode ``text`` as UTF-8 (a lone surrogate cannot be)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _decimal_scaler(precision: int, scale: int, decimals: dict[str, Decimal]) -> Callable[[Decimal], Decimal | None]:
    """What a decimal cache miss calls: the decoded value of a Decimal the writer takes, else None.

    The writer's unscaled integer (``writer._decimal_encoder``: the digits without the point at the scale,
    or, for an exponent, its general path), and the reader's value (``reader._decimal_decoder``):
    ``Decimal(unscaled).scaleb(-scale)`` at the precision.  For a non-zero finite value that is
    ``quantize`` to the scale's exponent (the same sign, digits and exponent, at a quarter of the cost
    of building it from the text), refusing, like the writer, any digit beyond the scale (``Rounded``:
    even a zero) or beyond the precision; the general path below decides every other value (zeros,
    whose decoded sign is +, NaN, infinities, the refused).  What the writer refuses is left to it.
    """
    limit = 10**precision
    context = Context(prec=precision)
    # Refuses what the writer refuses: a dropped digit (Rounded, zeros too) or too many (InvalidOperation).
    exact = Context(prec=precision, traps=[InvalidOperation, Rounded])
    quantum = Decimal(1).scaleb(-scale)
    padding = ["0" * (scale - places) for places in range(scale + 1)]

    def general(value: Decimal, text: str) -> Decimal | None:
        whole, _, fraction = text.partition(".")
        places = len(fraction)
        try:
            if places > scale:
                unscaled = _unscaled_by_exponent(value, scale)
            else:
                try:
                    unscaled = int(whole + fraction + padding[places])
                except ValueError:  # an exponent (small sizes print as 1E-8), NaN or Infinity
                    unscaled = _unscaled_by_exponent(value, scale)
        except ValueError:
            return None
        if not -limit < unscaled < limit:
            return None
        return Decimal(unscaled).scaleb(-scale, context)

    def scaled(value: Decimal) -> Decimal | None:
        text = str(value)
        if value and value.is_finite():
            try:
                decoded = value.quantize(quantum, context=exact)
            except DecimalException:  # refused: the general path says so in its own terms
                return general(value, text)
        else:
            decoded = general(value, text)
            if decoded is None:
                return None
        return keep(decimals, text, decoded, DECIMAL_CACHE_LIMIT)
    return scaled


def _emit_string(src: GeneratedFunction, depth: int, target: str, index: int) -> None:
    src.emit(depth, "if type(value) is not str:")
    src.emit(depth + 1, "return round_trip(record)")
    src.emit(depth, "if not value.isascii() and not encodable(value):")
    src.emit(depth + 1, "return round_trip(record)")
    src.emit(depth, f"{target} = value")


def _emit_long(src: GeneratedFunction, depth: int, target: str, index: int) -> None:
    src.emit(depth, f"if type(value) is not int or not {MIN_LONG} <= value <= {MAX_LONG}:")
    src.emit(depth + 1, "return round_trip(record)")
    src.emit(depth, f"{target} = value")


def _emit_boolean(src: GeneratedFunction, depth: int, target: str, index: int) -> None:
    src.emit(depth, "if value is not True and value is not False:")
    src.emit(depth + 1, "return round_trip(record)")
    src.emit(depth, f"{target} = value")


def _emit_bytes(src: GeneratedFunction, depth: int, target: str, index: int) -> None:
    src.emit(depth, "if type(value) is not bytes:")
    src.emit(depth + 1, "return round_trip(record)")
    src.emit(depth, f"{target} = value")


def _emit_enum(src: GeneratedFunction, depth: int, target: str, index: int, symbols: list[str]) -> None:
    table = src.bind(f"symbols_{index}", frozenset(symbols))
    src.emit(depth, f"if type(value) is not str or value not in {table}:")
    src.emit(depth + 1, "return round_trip(record)")
    src.emit(depth, f"{target} = value")


def _emit_decimal(src: GeneratedFunction, depth: int, target: str, index: int, precision: int, scale: int) -> None:
    decimals: dict[str, Decimal] = {}
    scaled = src.bind(f"scaled_{index}", _decimal_scaler(precision, scale, decimals))
    src.emit(depth, "if type(value) is not Decimal:")
    src.emit(depth + 1, "return round_trip(record)")
    src.emit(depth, f"{target} = {src.bind(f'decimals_{index}', decimals)}.get(str(value))")
    src.emit(depth, f"if {target} is None:")
    src.emit(depth + 1, f"{target} = {scaled}(value)")
    src.emit(depth + 1, f"if {target} is None:")
    src.emit(depth + 2, "return round_trip(record)")


_SIMPLE = {"string": _emit_string, "long": _emit_long, "int": _emit_long, "boolean": _emit_boolean,
           "bytes": _emit_bytes}


def _emit_type(src: GeneratedFunction, depth: int, target: str, index: int, avro_type: Any) -> None:
    """Lines that set ``target`` to the decoded form of ``value``, or return the round trip of the record."""
    if isinstance(avro_type, list):
        if len(avro_type) != 2 or avro_type[0] != NULL or isinstance(avro_type[1], list):
            raise NotImplementedError(f"only [null, T] unions are supported, not {avro_type}")
        src.emit(depth, "if value is None:")
        src.emit(depth + 1, f"{target} = None")
        src.emit(depth, "else:")
        _emit_type(src, depth + 1, target, index, avro_type[1])
    elif isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "decimal" and avro_type["type"] == "bytes":
            _emit_decimal(src, depth, target, index, avro_type["precision"], avro_type.get("scale", 0))
        elif avro_type.get("logicalType") is not None:
            raise NotImplementedError(f"logical type {avro_type['logicalType']!r} is not supported by the validator")
        elif avro_type["type"] == "enum":
            _emit_enum(src, depth, target, index, avro_type["symbols"])
        else:
            _emit_type(src, depth, target, index, avro_type["type"])
    elif isinstance(avro_type, str) and avro_type in _SIMPLE:
        _SIMPLE[avro_type](src, depth, target, index)
    else:
        raise NotImplementedError(f"Avro type {avro_type!r} is not supported by the compiled validator")


def _generate(schema: dict[str, Any], round_trip: RecordValidator) -> GeneratedFunction:
    if schema.get("type") != "record":
        raise NotImplementedError("only record schemas are compiled")
    src = GeneratedFunction(
        function_name("validate_", schema), {"Decimal": Decimal, "encodable": encodable, "round_trip": round_trip}
    )
    src.emit(0, f"def {src.function}(record):")
    src.emit(1, "try:")
    targets = src.emit_record_fields(
        schema["fields"], lambda target, index, avro_type: _emit_type(src, FIELD_DEPTH, target, index, avro_type)
    )
    src.emit(1, "except KeyError:")
    src.emit(FIELD_DEPTH, "return round_trip(record)")
    entries = [f"{field['name']!r}: {target}" for field, target in zip(schema["fields"], targets, strict=True)]
    src.emit(1, f"return {{{', '.join(entries)}}}")
    return src


def validator_source(schema: dict[str, Any]) -> str:
    """The Python source :func:`compile_record_validator` generates for ``schema``."""
    return _generate(schema, _no_round_trip).source()


def _no_round_trip(record: dict[str, Any]) -> dict[str, Any]:
    raise NotImplementedError("source only")


def compile_record_validator(schema: dict[str, Any], round_trip: RecordValidator) -> RecordValidator:
    """The validator of ``schema``; ``round_trip`` (write, then read) takes every value off its fast path.

    Raises ``NotImplementedError`` for a schema with a type it does not cover.
    """
    return _generate(schema, round_trip).compile("avro validator")


def compile_native_record_validator(writer: RecordWriter, round_trip: RecordValidator) -> RecordValidator:
    """The C validator over ``writer``'s field table (a C ``Writer`` of the schema); ``round_trip`` as above.

    Raises ``NotImplementedError`` where the extension is not built or ``writer`` is not its ``Writer``.
    """
    if _avro_writer_c is None or not isinstance(writer, _avro_writer_c.Writer):
        raise NotImplementedError("the C validator needs the C extension's Writer of the schema")
    return _avro_writer_c.Validator(writer, round_trip)


class TopicValidator:
    """Validates records of one topic: ``encode(record)`` is the record decoded from its Avro bytes, or a refusal.

    It stands where an ``AvroEncoder`` stands for a caller that wants the decoded record, not the bytes
    (``RawMessageProcessor`` in the one-process runtime): the same refusals (``ValueError``/``TypeError``,
    the writer's own), and the record a Kafka consumer would decode.
    """

    encode: RecordValidator
    python: RecordValidator

    def __init__(self, topic: str):
        self.topic = topic
        encode = AvroEncoder(topic, ROUND_TRIP_SCHEMA_ID).encode
        schemas = {ROUND_TRIP_SCHEMA_ID: parsed_schema(topic)}

        def round_trip(record: dict[str, Any]) -> dict[str, Any]:
            return decode_wire(encode(record), schemas)

        self.round_trip = round_trip
        try:
            # The generated validator: the reference, and the validator where the C one cannot serve.
            self.python = compile_record_validator(json.loads(schema_text(topic)), round_trip)
        except NotImplementedError:
            self.encode = self.python = round_trip
            return
        try:
            self.encode = compile_native_record_validator(encode, round_trip)
        except NotImplementedError:
            self.encode = self.python
