"""A compiled Avro binary writer for the flat record schemas L3 Atom publishes.

fastavro's generic writer spends most of its time on the decimal logical
type (~20,000 records/s here); encoding is the hottest step of the
processor.  This module turns a schema, once, into a list of small field
writers (strings cached, enums and unions precomputed, decimals converted
exactly to their scaled integer) and is several times faster.  It supports
the types our schemas use: null, boolean, int, long, string, bytes, enum,
decimal bytes and ``["null", T]`` unions; anything else is refused at
compile time.  Tests check its bytes decode, with fastavro, to the records.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Context, Decimal
from typing import Any

Writer = Callable[[Any], bytes]
# Strings repeat (exchange, symbol, enums-as-strings): cache the first ones seen, up to a small bound.
STRING_CACHE_LIMIT = 4096
_DECIMAL_CONTEXT = Context(prec=120)
_FALSE, _TRUE = b"\x00", b"\x01"
NULL_BRANCH, VALUE_BRANCH = b"\x00", b"\x02"


def varint(n: int) -> bytes:
    """Avro's zig-zag variable-length encoding of a long."""
    n = (n << 1) ^ (n >> 63)
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _long(value: Any) -> bytes:
    if type(value) is not int:
        raise TypeError(f"expected an int, got {type(value).__name__} {value!r}")
    return varint(value)


def _boolean(value: Any) -> bytes:
    if type(value) is not bool:
        raise TypeError(f"expected a bool, got {type(value).__name__} {value!r}")
    return _TRUE if value else _FALSE


def _bytes(value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    return varint(len(value)) + bytes(value)


def _string_writer() -> Writer:
    cache: dict[str, bytes] = {}

    def write(value: Any) -> bytes:
        encoded = cache.get(value)
        if encoded is None:
            if type(value) is not str:
                raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")
            raw = value.encode()
            encoded = varint(len(raw)) + raw
            if len(cache) < STRING_CACHE_LIMIT:
                cache[value] = encoded
        return encoded

    return write


def _enum_writer(symbols: list[str]) -> Writer:
    table = {symbol: varint(index) for index, symbol in enumerate(symbols)}

    def write(value: Any) -> bytes:
        try:
            return table[value]
        except (KeyError, TypeError):
            raise ValueError(f"{value!r} is not one of {symbols}") from None

    return write


def _decimal_writer(precision: int, scale: int) -> Writer:
    limit = 10**precision

    def write(value: Any) -> bytes:
        if type(value) is not Decimal:
            raise TypeError(f"expected a Decimal, got {type(value).__name__} {value!r}")
        exponent = value.as_tuple().exponent
        if type(exponent) is not int or exponent < -scale:
            raise ValueError(f"{value} has more than {scale} decimal places (or is not finite)")
        unscaled = int(value.scaleb(scale, _DECIMAL_CONTEXT))
        if not -limit < unscaled < limit:
            raise ValueError(f"{value} needs more than {precision} digits")
        raw = unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
        return varint(len(raw)) + raw

    return write


def _optional(inner: Writer) -> Writer:
    def write(value: Any) -> bytes:
        return NULL_BRANCH if value is None else VALUE_BRANCH + inner(value)

    return write


def _type_writer(avro_type: Any) -> Writer:
    if isinstance(avro_type, list):
        if len(avro_type) != 2 or avro_type[0] != "null":
            raise NotImplementedError(f"only [null, T] unions are supported, not {avro_type}")
        return _optional(_type_writer(avro_type[1]))
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "decimal" and avro_type["type"] == "bytes":
            return _decimal_writer(avro_type["precision"], avro_type.get("scale", 0))
        if avro_type["type"] == "enum":
            return _enum_writer(avro_type["symbols"])
        return _type_writer(avro_type["type"])
    simple = {"long": _long, "int": _long, "boolean": _boolean, "bytes": _bytes}
    if avro_type == "string":
        return _string_writer()
    if avro_type in simple:
        return simple[avro_type]
    raise NotImplementedError(f"Avro type {avro_type!r} is not supported by the compiled writer")


def compile_record_writer(schema: dict[str, Any]) -> Callable[[dict[str, Any]], bytes]:
    """A function that writes a record of ``schema`` (a flat Avro record) as Avro binary."""
    if schema.get("type") != "record":
        raise NotImplementedError("only record schemas are compiled")
    fields = [(field["name"], _type_writer(field["type"])) for field in schema["fields"]]

    def write(record: dict[str, Any]) -> bytes:
        try:
            return b"".join([writer(record[name]) for name, writer in fields])
        except KeyError as exc:
            raise ValueError(f"record lacks field {exc}") from None

    return write
