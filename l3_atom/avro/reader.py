"""A compiled Avro binary reader for the flat record schemas L3 Atom publishes.

Why: decoding is the hottest step of the books agent (~32% of the
processor's main thread), the candle agent decodes every trade too, and
fastavro's generic reader spends most of its time on the decimal logical type
(~95,000 ``lob_l3`` records/s here).  So each schema
gets a reader of its own: the mirror image of ``writer.py``.

How: :func:`compile_record_reader` turns a record schema, once, into the
source of one Python function and compiles it with ``exec``
(:func:`reader_source` returns that source, to read or debug it).  The
function reads each field in turn from ``data`` at ``pos`` and returns the
record and the position after it; for ``lob_l3`` it begins::

    def read_LobL3(data, pos):
        if type(data) is not bytes:
            data = bytes(data)
        try:
            # 'exchange': string
            b = data[pos]
            if b & 129:
                size, pos = read_size(data, pos)
            else:
                size = b >> 1
                pos += 1
            end = pos + size
            raw = data[pos:end]
            pos = end
            f0 = strings_0.get(raw)
            if f0 is None:
                f0 = decode_string_0(raw)
            ...
            # 'event_type': enum
            f2 = enum_2[data[pos]]
            if f2 is None:
                f2, pos = read_enum_2(data, pos)
            else:
                pos += 1
            ...
            # 'price': [null, decimal(38, 18)]
            b = data[pos]
            pos += 1
            if b == 2:
                ...                               # size, raw and pos as for a string
                f5 = decimals_5.get(raw)
                if f5 is None:
                    f5 = decode_decimal_5(raw)
            elif b == 0:
                f5 = None
            else:
                raise bad_branch(b)
            ...
            # 'event_timestamp': long
            b = data[pos]
            if b < 128:
                f11 = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                b1 = data[pos + 1]
                high = highs_11.get(data[pos + 2:pos + width_11]) if b1 >= 128 else None
                if high is None:
                    f11, pos = read_long_11(data, pos)
                else:
                    f11 = high | LOW_SECOND[b1] | LOW_FIRST[b]
                    if b & 1:
                        f11 = ~f11
                    pos += width_11
            ...
            if pos > len(data):
                raise truncated(pos, len(data))
        except IndexError:
            raise truncated(pos, len(data)) from None
        return {'exchange': f0, 'symbol': f1, ..., 'atom_timestamp': f12}, pos

The names are bound, per field, to:
- caches from raw bytes to the decoded value (``strings_<i>``,
  ``decimals_<i>``): exchange, symbol, reasons and prices repeat, so most such
  fields cost a slice and one lookup; a miss calls ``decode_<kind>_<i>``,
  which fills the cache (strings: the first ones seen; decimals: starting over
  when full);
- for longs, a cache of high parts: a longer varint's first two bytes hold
  the low 14 bits of the zig-zagged value (``LOW_FIRST`` and ``LOW_SECOND``
  give their share of the long) and the other ``width_<i> - 2`` bytes its high
  part, which timestamps and sequence numbers share with the values before
  them (``highs_<i>``, keyed by those bytes).  A key is always the whole tail
  of a varint of ``width_<i>`` bytes, so a hit is one.  A miss takes
  ``read_long_<i>``, which reads 7 bits at a time and fills the cache; when a
  varint of another width comes, it starts the cache over and rebinds
  ``width_<i>`` (a global of the generated function);
- enum tables from a first byte to its symbol (``None`` where that byte is
  not a whole index of a symbol: ``read_enum_<i>`` then reads a longer
  varint or refuses it), and the errors of bad input.
A length beyond the data is caught once, after the last field: slicing stops
at the end of the data, but ``pos`` then lies beyond it.

Decimals are exact and equal to fastavro's in value and representation
(``str`` and ``as_tuple``): ``Decimal(unscaled).scaleb(-scale)`` in a context
as wide as the precision.  An unscaled value with more digits than the
precision is refused (fastavro would round it).  Bad input raises
``ValueError``: truncated data, a varint beyond a long (fastavro wraps it to
64 bits), a negative length, an enum index or union branch out of range
(branches must be the one-byte 0 or 2), a boolean byte other than 0 or 1,
invalid UTF-8.  Bytes after the record are the caller's business (``pos``
says where it ended).

Supported types: null, boolean, int, long, string, bytes, enum, decimal bytes
and ``["null", T]`` unions, in the JSON form or fastavro's parsed form (named
types by reference included); anything else is refused at compile time with
``NotImplementedError`` (the codec falls back to fastavro).  Tests check the
records against fastavro's for every schema.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Context, Decimal
from typing import Any

from l3_atom.avro.codegen import GeneratedFunction, function_name, keep

RecordReader = Callable[[bytes, int], tuple[dict[str, Any], int]]

# Strings repeat (exchange, symbol, reasons): cache the first ones seen, up to a small bound.
STRING_CACHE_LIMIT = 4096
# Prices repeat and drift: a field's decimal cache starts over when it holds this many.
DECIMAL_CACHE_LIMIT = 4096
# A long field keeps the high parts of this many varints, then starts over.
HIGH_CACHE_LIMIT = 1024
NULL_BRANCH, VALUE_BRANCH = 0, 2
# Any other name in a type position refers to a named type (enum, record, fixed).
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "bytes"})
COMPLEX = frozenset({"record", "error", "array", "map", "fixed"})

# Varints: 7 bits per byte, the high bit set on every byte but the last; longs are zig-zag encoded.
GROUP_BITS = 7
GROUP_MASK = (1 << GROUP_BITS) - 1
CONTINUATION = 0x80
BYTE_VALUES = 256
LONG_BITS = 64
MAX_VARINT_BYTES = -(-LONG_BITS // GROUP_BITS)
# A one-byte varint of a non-negative zig-zagged length has neither the continuation nor the sign bit.
LENGTH_SLOW_BITS = CONTINUATION | 1
# The first two bytes of a longer varint hold its low 14 bits; the rest is its high part.
LOW_BYTES = 2
LOW_BITS = LOW_BYTES * GROUP_BITS
# Each one's share of the decoded (zig-zag undone) value, for a non-negative long; a negative one is its ~.
LOW_FIRST = tuple((b & GROUP_MASK) >> 1 for b in range(BYTE_VALUES))
LOW_SECOND = tuple((b & GROUP_MASK) << (GROUP_BITS - 1) for b in range(BYTE_VALUES))
BOOLEANS = (False, True)


def truncated(pos: int, size: int) -> ValueError:
    return ValueError(f"truncated or corrupt Avro record: it reads past byte {pos} of {size}")


def bad_branch(branch: int) -> ValueError:
    return ValueError(f"union branch byte {branch} is not 0 (null) or 2 (value)")


def bad_boolean(byte: int) -> ValueError:
    return ValueError(f"boolean byte {byte} is not 0 or 1")


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The zig-zagged (unsigned) varint at ``pos`` and the position after it, 7 bits at a time.

    Refuses more bytes or bits than a long has: corrupt data never makes a huge int.
    """
    z = 0
    for shift in range(0, MAX_VARINT_BYTES * GROUP_BITS, GROUP_BITS):
        b = data[pos]
        pos += 1
        z |= (b & GROUP_MASK) << shift
        if b < CONTINUATION:
            if z >> LONG_BITS:
                raise ValueError(f"varint ending at byte {pos} is beyond a long")
            return z, pos
    raise ValueError(f"varint ending past byte {pos} is longer than a long's {MAX_VARINT_BYTES} bytes")


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """The long at ``pos`` and the position after it."""
    z, pos = read_varint(data, pos)
    return (z >> 1) ^ -(z & 1), pos


def read_size(data: bytes, pos: int) -> tuple[int, int]:
    """The length of bytes or a string at ``pos``, refused when negative, and the position after it."""
    size, end = read_long(data, pos)
    if size < 0:
        raise ValueError(f"negative length {size} at byte {pos}")
    return size, end


def _string_decoder(strings: dict[bytes, str]) -> Callable[[bytes], str]:
    """What a string cache miss calls: decode, and keep the result while the cache has room."""

    def decode(raw: bytes) -> str:
        value = raw.decode()
        if len(strings) < STRING_CACHE_LIMIT:
            strings[raw] = value
        return value

    return decode


def _decimal_decoder(precision: int, scale: int, decimals: dict[bytes, Decimal]) -> Callable[[bytes], Decimal]:
    """What a decimal cache miss calls with the two's-complement bytes; the cache starts over when full."""
    limit = 10**precision
    context = Context(prec=precision)

    def decode(raw: bytes) -> Decimal:
        unscaled = int.from_bytes(raw, "big", signed=True)
        if not -limit < unscaled < limit:
            raise ValueError(f"decimal {unscaled}E-{scale} has more than {precision} digits")
        return keep(decimals, raw, Decimal(unscaled).scaleb(-scale, context), DECIMAL_CACHE_LIMIT)

    return decode


def _long_reader(highs: dict[bytes, int], names: dict[str, Any], width: str) -> Callable[[bytes, int], tuple[int, int]]:
    """What a long field calls when its high-part cache cannot answer: read, and cache the high part.

    The cache holds high parts of one width (``names[width]`` bytes in all, a global of the
    generated function) and starts over when full or when a varint of another width comes.
    """

    def read(data: bytes, pos: int) -> tuple[int, int]:
        z, end = read_varint(data, pos)
        size = end - pos
        if size > LOW_BYTES:
            if size != names[width] or len(highs) >= HIGH_CACHE_LIMIT:
                highs.clear()
                names[width] = size
            highs[data[pos + LOW_BYTES:end]] = (z >> LOW_BITS) << (LOW_BITS - 1)
        return (z >> 1) ^ -(z & 1), end

    return read


def _enum_reader(symbols: list[str]) -> Callable[[bytes, int], tuple[str, int]]:
    """What an enum field calls for a first byte its table does not answer: a longer varint, or an error."""

    def read(data: bytes, pos: int) -> tuple[str, int]:
        index, end = read_long(data, pos)
        if not 0 <= index < len(symbols):
            raise ValueError(f"enum index {index} is not one of the {len(symbols)} symbols {symbols}")
        return symbols[index], end

    return read


def _enum_table(symbols: list[str]) -> tuple[str | None, ...]:
    """The symbol of each first byte that is a whole, non-negative index (one byte: even, below 128)."""
    table: list[str | None] = [None] * BYTE_VALUES
    for index, symbol in enumerate(symbols):
        if 2 * index < CONTINUATION:
            table[2 * index] = symbol
    return tuple(table)


# What every generated read function can name.
_BASE_NAMES: dict[str, Any] = {
    "read_size": read_size, "truncated": truncated, "bad_branch": bad_branch, "bad_boolean": bad_boolean,
    "BOOLEANS": BOOLEANS, "LOW_FIRST": LOW_FIRST, "LOW_SECOND": LOW_SECOND,
}


def _emit_raw(src: GeneratedFunction, depth: int) -> None:
    """Lines that set ``raw`` to the length-prefixed bytes at ``pos`` and move past them.

    A length beyond the data is caught once, after the last field: ``pos`` then lies beyond it.
    """
    src.emit(depth, "b = data[pos]")
    src.emit(depth, f"if b & {LENGTH_SLOW_BITS}:")
    src.emit(depth + 1, "size, pos = read_size(data, pos)")
    src.emit(depth, "else:")
    src.emit(depth + 1, "size = b >> 1")
    src.emit(depth + 1, "pos += 1")
    src.emit(depth, "end = pos + size")
    src.emit(depth, "raw = data[pos:end]")
    src.emit(depth, "pos = end")


def _emit_null(src: GeneratedFunction, depth: int, target: str, index: int) -> None:
    src.emit(depth, f"{target} = None")


def _emit_boolean(src: GeneratedFunction, depth: int, target: str, index: int) -> None:
    src.emit(depth, "b = data[pos]")
    src.emit(depth, "if b > 1:")
    src.emit(depth + 1, "raise bad_boolean(b)")
    src.emit(depth, f"{target} = BOOLEANS[b]")
    src.emit(depth, "pos += 1")


def _emit_long(src: GeneratedFunction, depth: int, target: str, index: int) -> None:
    highs: dict[bytes, int] = {}
    width = src.bind(f"width_{index}", 0)
    src.emit(depth, "b = data[pos]")
    src.emit(depth, f"if b < {CONTINUATION}:")
    src.emit(depth + 1, f"{target} = (b >> 1) ^ -(b & 1)")
    src.emit(depth + 1, "pos += 1")
    src.emit(depth, "else:")
    src.emit(depth + 1, "b1 = data[pos + 1]")
    src.emit(depth + 1, f"high = {src.bind(f'highs_{index}', highs)}.get(data[pos + {LOW_BYTES}:pos + {width}])"
                        f" if b1 >= {CONTINUATION} else None")
    src.emit(depth + 1, "if high is None:")
    reader = src.bind(f"read_long_{index}", _long_reader(highs, src.names, width))
    src.emit(depth + 2, f"{target}, pos = {reader}(data, pos)")
    src.emit(depth + 1, "else:")
    src.emit(depth + 2, f"{target} = high | LOW_SECOND[b1] | LOW_FIRST[b]")
    src.emit(depth + 2, "if b & 1:")
    src.emit(depth + 3, f"{target} = ~{target}")
    src.emit(depth + 2, f"pos += {width}")


def _emit_string(src: GeneratedFunction, depth: int, target: str, index: int) -> None:
    strings: dict[bytes, str] = {}
    _emit_raw(src, depth)
    src.emit(depth, f"{target} = {src.bind(f'strings_{index}', strings)}.get(raw)")
    src.emit(depth, f"if {target} is None:")
    src.emit(depth + 1, f"{target} = {src.bind(f'decode_string_{index}', _string_decoder(strings))}(raw)")


def _emit_bytes(src: GeneratedFunction, depth: int, target: str, index: int) -> None:
    _emit_raw(src, depth)
    src.emit(depth, f"{target} = raw")


def _emit_enum(src: GeneratedFunction, depth: int, target: str, index: int, symbols: list[str]) -> None:
    src.emit(depth, f"{target} = {src.bind(f'enum_{index}', _enum_table(symbols))}[data[pos]]")
    src.emit(depth, f"if {target} is None:")
    src.emit(depth + 1, f"{target}, pos = {src.bind(f'read_enum_{index}', _enum_reader(symbols))}(data, pos)")
    src.emit(depth, "else:")
    src.emit(depth + 1, "pos += 1")


def _emit_decimal(src: GeneratedFunction, depth: int, target: str, index: int, precision: int, scale: int) -> None:
    decimals: dict[bytes, Decimal] = {}
    decode = _decimal_decoder(precision, scale, decimals)
    _emit_raw(src, depth)
    src.emit(depth, f"{target} = {src.bind(f'decimals_{index}', decimals)}.get(raw)")
    src.emit(depth, f"if {target} is None:")
    src.emit(depth + 1, f"{target} = {src.bind(f'decode_decimal_{index}', decode)}(raw)")


_SIMPLE = {"null": _emit_null, "boolean": _emit_boolean, "int": _emit_long, "long": _emit_long,
           "string": _emit_string, "bytes": _emit_bytes}


class _Types:
    """Resolves named-type references: fastavro's parsed ``__named_schemas``, and enums defined earlier."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.named: dict[str, Any] = dict(schema.get("__named_schemas", {}))
        self.namespace = schema.get("namespace") or str(schema.get("name", "")).rpartition(".")[0]

    def define(self, avro_type: dict[str, Any]) -> None:
        name = avro_type.get("name")
        if name:
            namespace = avro_type.get("namespace", self.namespace)
            self.named.setdefault(name, avro_type)
            if "." not in name and namespace:
                self.named.setdefault(f"{namespace}.{name}", avro_type)

    def resolve(self, avro_type: Any) -> Any:
        if isinstance(avro_type, str) and avro_type not in PRIMITIVES:
            found = self.named.get(avro_type, self.named.get(f"{self.namespace}.{avro_type}"))
            if found is None:
                raise NotImplementedError(f"unknown named type {avro_type!r}")
            return found
        return avro_type


def _emit_type(src: GeneratedFunction, types: _Types, depth: int, target: str, index: int, avro_type: Any) -> None:
    """Lines that set ``target`` to the value of ``avro_type`` at ``pos`` and move ``pos`` past it."""
    avro_type = types.resolve(avro_type)
    if isinstance(avro_type, list):
        if len(avro_type) != 2 or avro_type[0] != "null" or isinstance(types.resolve(avro_type[1]), list):
            raise NotImplementedError(f"only [null, T] unions are supported, not {avro_type}")
        src.emit(depth, "b = data[pos]")
        src.emit(depth, "pos += 1")
        src.emit(depth, f"if b == {VALUE_BRANCH}:")
        _emit_type(src, types, depth + 1, target, index, avro_type[1])
        src.emit(depth, f"elif b == {NULL_BRANCH}:")
        src.emit(depth + 1, f"{target} = None")
        src.emit(depth, "else:")
        src.emit(depth + 1, "raise bad_branch(b)")
    elif isinstance(avro_type, dict):
        types.define(avro_type)
        kind, logical = avro_type.get("type"), avro_type.get("logicalType")
        if logical == "decimal" and kind == "bytes" and "precision" in avro_type:
            _emit_decimal(src, depth, target, index, avro_type["precision"], avro_type.get("scale", 0))
        elif logical is not None:
            raise NotImplementedError(f"logical type {logical!r} on {kind!r} is not supported by the compiled reader")
        elif kind == "enum":
            _emit_enum(src, depth, target, index, avro_type["symbols"])
        elif isinstance(kind, str) and kind in COMPLEX:
            raise NotImplementedError(f"Avro type {kind!r} is not supported by the compiled reader")
        else:
            _emit_type(src, types, depth, target, index, kind)
    elif isinstance(avro_type, str) and avro_type in _SIMPLE:
        _SIMPLE[avro_type](src, depth, target, index)
    else:
        raise NotImplementedError(f"Avro type {avro_type!r} is not supported by the compiled reader")


def _describe(avro_type: Any) -> str:
    """A field's type in a few printable characters, for the comment above its lines."""
    if isinstance(avro_type, list):
        text = "[" + ", ".join(_describe(t) for t in avro_type) + "]"
    elif isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "decimal":
            text = f"decimal({avro_type.get('precision')}, {avro_type.get('scale', 0)})"
        else:
            text = str(avro_type.get("type"))
    else:
        text = str(avro_type)
    return "".join(c if c.isprintable() else "?" for c in text)


def _generate(schema: dict[str, Any]) -> GeneratedFunction:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise NotImplementedError("only record schemas are compiled")
    types = _Types(schema)
    src = GeneratedFunction(function_name("read_", schema), _BASE_NAMES)
    src.emit(0, f"def {src.function}(data, pos):")
    src.emit(1, "if type(data) is not bytes:")
    src.emit(2, "data = bytes(data)")
    src.emit(1, "try:")
    entries = []
    for index, field in enumerate(schema["fields"]):
        src.emit(2, f"# {field['name']!r}: {_describe(field['type'])}")
        _emit_type(src, types, 2, f"f{index}", index, field["type"])
        entries.append(f"{field['name']!r}: f{index}")
    src.emit(2, "if pos > len(data):")
    src.emit(3, "raise truncated(pos, len(data))")
    src.emit(1, "except IndexError:")
    src.emit(2, "raise truncated(pos, len(data)) from None")
    src.emit(1, f"return {{{', '.join(entries)}}}, pos")
    return src


def reader_source(schema: dict[str, Any]) -> str:
    """The Python source :func:`compile_record_reader` generates for ``schema``."""
    return _generate(schema).source()


def compile_record_reader(schema: dict[str, Any]) -> RecordReader:
    """A function ``(data, pos) -> (record, end)`` that reads a record of ``schema`` (a flat Avro record).

    ``schema`` is the schema as JSON or as fastavro's ``parse_schema`` returns it.  Raises
    ``NotImplementedError`` for a schema with a type it does not cover.
    """
    # The generated function's globals are its names: the long readers rebind its widths there.
    return _generate(schema).compile("avro reader")
