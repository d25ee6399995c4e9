"""A compiled Avro binary writer for the flat record schemas L3 Atom publishes.

Why: encoding is the hottest step of the processor, and fastavro's generic
writer spends most of its time on the decimal logical type (~20,000
records/s here).  So each schema gets a writer of its own.

How: :func:`compile_python_record_writer` turns a record schema, once, into the
source of one Python function and compiles it with ``exec``
(:func:`writer_source` returns that source, to read or debug it).  The
function reads each field, checks its type, picks its bytes and joins them;
for ``trades_l3`` it begins::

    def write_TradeL3(record):
        try:
            value = record['exchange']                    # string
            f0 = strings_0.get(value)
            if f0 is None:
                f0 = encode_string_0(value)
            ...
            value = record['price']                       # decimal
            if type(value) is not Decimal:
                raise not_a_decimal(value)
            text = str(value)
            f3 = decimals_3.get(text)
            if f3 is None:
                f3 = encode_decimal_3(value, text)
            ...
            value = record['sequence']                    # ["null", "long"]
            if value is None:
                f8 = NULL_BRANCH
            else:
                if type(value) is not int:
                    raise not_an_int(value)
                if 8192 <= value < 9223372036854775808:
                    high = highs_8.get(value >> 13)
                    if high is None:
                        high = encode_high_8(value >> 13)
                    f8 = LOW_02[value & 8191] + high
                elif 0 <= value < 8192:
                    f8 = SMALL_02[value]
                else:
                    f8 = prefix_8 + varint(value)
            ...
        except KeyError as exc:
            raise ValueError(f"record lacks field {exc}") from None
        return b''.join((prefix, f0, f1, ..., f10,))

The names are bound, per field, to:
- caches from a value to its finished bytes (``strings_<i>``,
  ``decimals_<i>``): exchange, symbol and prices repeat, so most such fields
  cost one lookup; a miss calls ``encode_<kind>_<i>``, which fills the cache;
- for longs, tables and a cache: a long ``0 <= n < 2**63`` zig-zags to
  ``2n``, so the first two bytes of its varint depend only on its low 13 bits
  (``LOW``, or ``SMALL`` for the whole varint of a small ``n``) and the rest
  on ``n >> 13``, which timestamps and sequence numbers share with the values
  before them (``highs_<i>``); any other int takes :func:`varint`;
- enum tables (symbol -> index bytes) and the errors of a bad value.
An optional field's branch byte (``\\x02``, the ``_02`` tables) is folded
into its cached and table bytes, and ``prefix`` (the Confluent wire header)
into the join, so no bytes are concatenated twice.

Decimals are exact: the unscaled integer at the schema's scale comes from the
Decimal's text (``str`` keeps every digit and the exponent), and values with
more decimal places than the scale, more digits than the precision, or no
finite value are refused.  Supported types: null, boolean, int, long, string,
bytes, enum, decimal bytes and ``["null", T]`` unions; anything else is
refused at compile time (the codec falls back to fastavro).  Tests check the
bytes against fastavro's for random records of every schema.

In C: when the extension ``_avro_writer_c`` is built (``pip install -r
requirements.txt`` compiles it), :func:`compile_record_writer` returns its
``Writer`` instead, several times faster, built from a plan of the schema's
fields.  The generated Python function stays the reference
(:func:`compile_python_record_writer`): each field keeps a Python writer of
its own, which the C writer hands every value it does not handle itself (a
wrong type, an exponent, NaN...), so refusals and their messages are the
same.  One difference: the C writer always refuses a ``str`` subclass, which
the Python writer takes when it equals a string it has cached.  It reads a
Decimal's digits from the object itself rather than from ``str()`` (most of
the cost of a lob record), once an import-time check has proven CPython's
layout of it (``_avro_writer_c.READS_DECIMAL_DIGITS``); else through its text.
Without the extension the Python writer serves alone.

The processor's loop over one message's outputs (look up each topic's writer,
write the record, build the ``Encoded``, count the topic) is
:func:`encode_outputs`: the extension's when built, which writes with a C
``Writer`` directly, without a Python call; :func:`encode_outputs_in_python`,
its reference, otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, MutableMapping
from decimal import Context, Decimal
from functools import cache
from typing import Any

from l3_atom.avro.codegen import FIELD_DEPTH, GeneratedFunction, function_name

try:
    from l3_atom.avro import _avro_writer_c
except ImportError:  # not compiled (no C compiler when installed): the Python writer serves alone
    _avro_writer_c = None

RecordWriter = Callable[[dict[str, Any]], bytes]

# Strings repeat (exchange, symbol, enums-as-strings): cache the first ones seen, up to a small bound.
STRING_CACHE_LIMIT = 4096
# Prices repeat and drift: a field's decimal cache starts over when it holds this many.
DECIMAL_CACHE_LIMIT = 4096
# A long field keeps the encodings of this many high parts (value >> LOW_BITS), then starts over.
HIGH_CACHE_LIMIT = 1024
_DECIMAL_CONTEXT = Context(prec=120)
FALSE, TRUE = b"\x00", b"\x01"
NULL_BRANCH, VALUE_BRANCH = b"\x00", b"\x02"

# Varints: 7 bits per byte, the high bit set on every byte but the last; longs are zig-zag encoded first.
GROUP_BITS = 7
GROUP_MASK = (1 << GROUP_BITS) - 1
CONTINUATION = 0x80
LONG_SIGN_SHIFT = 63
# Tables hold two 7-bit groups (14 bits) per entry.
CHUNK_BITS = 2 * GROUP_BITS
CHUNK = 1 << CHUNK_BITS
CHUNK_MASK = CHUNK - 1
# A long 0 <= n < 2**63 zig-zags to 2n: its first chunk holds its low 13 bits.
LOW_BITS = CHUNK_BITS - 1
LOW_MASK = (1 << LOW_BITS) - 1
SMALL_LONGS = 1 << LOW_BITS
# The first int beyond Avro's long (2**63 - 1).
BEYOND_LONG = 1 << LONG_SIGN_SHIFT


def _groups(z: int) -> bytes:
    """The varint of an unsigned ``z``, one 7-bit group at a time (builds the tables)."""
    out = bytearray()
    while z > GROUP_MASK:
        out.append((z & GROUP_MASK) | CONTINUATION)
        z >>= GROUP_BITS
    out.append(z)
    return bytes(out)


# _LAST[z]: the whole varint of z < 2**14.  _INNER[c]: a 14-bit chunk that more chunks follow.
_LAST = tuple(_groups(z) for z in range(CHUNK))
_INNER = tuple(bytes(((c & GROUP_MASK) | CONTINUATION, (c >> GROUP_BITS) | CONTINUATION)) for c in range(CHUNK))


def unsigned_varint(z: int) -> bytes:
    """The varint of an unsigned (already zig-zagged) ``z``, 14 bits per table lookup."""
    if z < CHUNK:
        return _LAST[z]
    return _INNER[z & CHUNK_MASK] + unsigned_varint(z >> CHUNK_BITS)


def varint(n: int) -> bytes:
    """Avro's zig-zag variable-length encoding of a long."""
    return unsigned_varint((n << 1) ^ (n >> LONG_SIGN_SHIFT))


@cache
def long_tables(prefix: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """``(small, low)``, indexed by a long ``n`` itself, each entry starting with ``prefix``.

    ``small[n]`` is the varint of ``0 <= n < 2**13``; ``low[n & LOW_MASK]`` the first two
    bytes of the varint of a larger ``0 <= n < 2**63`` (the zig-zag's even entries).
    """
    small = tuple(prefix + _LAST[2 * n] for n in range(SMALL_LONGS))
    low = tuple(prefix + _INNER[2 * n] for n in range(SMALL_LONGS))
    return small, low


def not_an_int(value: Any) -> TypeError:
    return TypeError(f"expected an int, got {type(value).__name__} {value!r}")


def not_a_bool(value: Any) -> TypeError:
    return TypeError(f"expected a bool, got {type(value).__name__} {value!r}")


def not_a_decimal(value: Any) -> TypeError:
    return TypeError(f"expected a Decimal, got {type(value).__name__} {value!r}")


def _bytes_encoder(prefix: bytes) -> Callable[[Any], bytes]:
    def encode(value: Any) -> bytes:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"expected bytes, got {type(value).__name__}")
        return prefix + varint(len(value)) + bytes(value)

    return encode


def _string_encoder(prefix: bytes, strings: dict[str, bytes]) -> Callable[[Any], bytes]:
    """What a string cache miss calls: encode, and keep the result while the cache has room."""
    lengths = long_tables(prefix)[0]

    def encode(value: Any) -> bytes:
        if type(value) is not str:
            raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")
        raw = value.encode()
        size = len(raw)
        encoded = (lengths[size] if size < SMALL_LONGS else prefix + varint(size)) + raw
        if len(strings) < STRING_CACHE_LIMIT:
            strings[value] = encoded
        return encoded

    return encode


def _enum_error(symbols: list[str]) -> Callable[[Any], ValueError]:
    def error(value: Any) -> ValueError:
        return ValueError(f"{value!r} is not one of {symbols}")

    return error


def _unscaled_by_exponent(value: Decimal, scale: int) -> int:
    """The general path for any Decimal: refuses more than ``scale`` places or no finite value."""
    exponent = value.as_tuple().exponent
    if type(exponent) is not int or exponent < -scale:
        raise ValueError(f"{value} has more than {scale} decimal places (or is not finite)")
    return int(value.scaleb(scale, _DECIMAL_CONTEXT))


def _decimal_encoder(precision: int, scale: int, prefix: bytes, decimals: dict[str, bytes]) -> Callable[..., bytes]:
    """What a decimal cache miss calls with the Decimal and its text; the cache starts over when full."""
    limit = 10**precision
    padding = ["0" * (scale - places) for places in range(scale + 1)]
    # prefix + the varint of the two's-complement length, for every length a value within the precision has.
    heads = [prefix + varint(size) for size in range((limit.bit_length() + 8) // 8 + 1)]

    def encode(value: Decimal, text: str) -> bytes:
        whole, _, fraction = text.partition(".")
        places = len(fraction)
        if places > scale:
            unscaled = _unscaled_by_exponent(value, scale)
        else:
            try:
                # Plain notation (digits, "-", "."): the digits without the point, times 10 ** (scale - places).
                unscaled = int(whole + fraction + padding[places])
            except ValueError:  # an exponent, NaN or Infinity, or more digits than int() reads
                unscaled = _unscaled_by_exponent(value, scale)
        if not -limit < unscaled < limit:
            raise ValueError(f"{value} needs more than {precision} digits")
        raw = unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
        encoded = heads[len(raw)] + raw
        if len(decimals) >= DECIMAL_CACHE_LIMIT:
            decimals.clear()
        decimals[text] = encoded
        return encoded

    return encode


def _high_encoder(highs: dict[int, bytes]) -> Callable[[int], bytes]:
    """What a miss in a long field's cache of high parts calls; the cache starts over when full."""

    def encode(high: int) -> bytes:
        if len(highs) >= HIGH_CACHE_LIMIT:
            highs.clear()
        encoded = highs[high] = unsigned_varint(high)
        return encoded

    return encode


# What every generated write function can name.
_BASE_NAMES: dict[str, Any] = {
    "Decimal": Decimal, "NULL_BRANCH": NULL_BRANCH, "varint": varint,
    "not_an_int": not_an_int, "not_a_bool": not_a_bool, "not_a_decimal": not_a_decimal,
}


def _emit_long(src: GeneratedFunction, depth: int, target: str, index: int, prefix: bytes) -> None:
    suffix = f"_{prefix.hex()}" if prefix else ""
    small_table, low_table = long_tables(prefix)
    small, low = src.bind(f"SMALL{suffix}", small_table), src.bind(f"LOW{suffix}", low_table)
    highs: dict[int, bytes] = {}
    src.emit(depth, "if type(value) is not int:")
    src.emit(depth + 1, "raise not_an_int(value)")
    src.emit(depth, f"if {SMALL_LONGS} <= value < {BEYOND_LONG}:")
    src.emit(depth + 1, f"high = {src.bind(f'highs_{index}', highs)}.get(value >> {LOW_BITS})")
    src.emit(depth + 1, "if high is None:")
    src.emit(depth + 2, f"high = {src.bind(f'encode_high_{index}', _high_encoder(highs))}(value >> {LOW_BITS})")
    src.emit(depth + 1, f"{target} = {low}[value & {LOW_MASK}] + high")
    src.emit(depth, f"elif 0 <= value < {SMALL_LONGS}:")
    src.emit(depth + 1, f"{target} = {small}[value]")
    src.emit(depth, "else:")
    src.emit(depth + 1, f"{target} = {src.bind(f'prefix_{index}', prefix)} + varint(value)")


def _emit_boolean(src: GeneratedFunction, depth: int, target: str, index: int, prefix: bytes) -> None:
    src.emit(depth, "if value is True:")
    src.emit(depth + 1, f"{target} = {src.bind(f'true_{index}', prefix + TRUE)}")
    src.emit(depth, "elif value is False:")
    src.emit(depth + 1, f"{target} = {src.bind(f'false_{index}', prefix + FALSE)}")
    src.emit(depth, "else:")
    src.emit(depth + 1, "raise not_a_bool(value)")


def _emit_string(src: GeneratedFunction, depth: int, target: str, index: int, prefix: bytes) -> None:
    strings: dict[str, bytes] = {}
    src.emit(depth, f"{target} = {src.bind(f'strings_{index}', strings)}.get(value)")
    src.emit(depth, f"if {target} is None:")
    src.emit(depth + 1, f"{target} = {src.bind(f'encode_string_{index}', _string_encoder(prefix, strings))}(value)")


def _emit_bytes(src: GeneratedFunction, depth: int, target: str, index: int, prefix: bytes) -> None:
    src.emit(depth, f"{target} = {src.bind(f'encode_bytes_{index}', _bytes_encoder(prefix))}(value)")


def _emit_enum(src: GeneratedFunction, depth: int, target: str, index: int, prefix: bytes, symbols: list[str]) -> None:
    table = {symbol: prefix + varint(position) for position, symbol in enumerate(symbols)}
    src.emit(depth, "try:")
    src.emit(depth + 1, f"{target} = {src.bind(f'enum_{index}', table)}[value]")
    src.emit(depth, "except (KeyError, TypeError):")
    src.emit(depth + 1, f"raise {src.bind(f'enum_error_{index}', _enum_error(symbols))}(value) from None")


def _emit_decimal(
    src: GeneratedFunction, depth: int, target: str, index: int, prefix: bytes, precision: int, scale: int
) -> None:
    decimals: dict[str, bytes] = {}
    encode = _decimal_encoder(precision, scale, prefix, decimals)
    src.emit(depth, "if type(value) is not Decimal:")
    src.emit(depth + 1, "raise not_a_decimal(value)")
    src.emit(depth, "text = str(value)")
    src.emit(depth, f"{target} = {src.bind(f'decimals_{index}', decimals)}.get(text)")
    src.emit(depth, f"if {target} is None:")
    src.emit(depth + 1, f"{target} = {src.bind(f'encode_decimal_{index}', encode)}(value, text)")


_SIMPLE = {"long": _emit_long, "int": _emit_long, "boolean": _emit_boolean, "string": _emit_string,
           "bytes": _emit_bytes}


def _emit_type(src: GeneratedFunction, depth: int, target: str, index: int, avro_type: Any, prefix: bytes = b"") -> None:
    """Lines that set ``target`` to ``prefix`` + the encoding of ``value``, a value of ``avro_type``."""
    if isinstance(avro_type, list):
        if len(avro_type) != 2 or avro_type[0] != "null" or prefix or isinstance(avro_type[1], list):
            raise NotImplementedError(f"only [null, T] unions are supported, not {avro_type}")
        src.emit(depth, "if value is None:")
        src.emit(depth + 1, f"{target} = NULL_BRANCH")
        src.emit(depth, "else:")
        _emit_type(src, depth + 1, target, index, avro_type[1], VALUE_BRANCH)
    elif isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "decimal" and avro_type["type"] == "bytes":
            _emit_decimal(src, depth, target, index, prefix, avro_type["precision"], avro_type.get("scale", 0))
        elif avro_type["type"] == "enum":
            _emit_enum(src, depth, target, index, prefix, avro_type["symbols"])
        else:
            _emit_type(src, depth, target, index, avro_type["type"], prefix)
    elif isinstance(avro_type, str) and avro_type in _SIMPLE:
        _SIMPLE[avro_type](src, depth, target, index, prefix)
    else:
        raise NotImplementedError(f"Avro type {avro_type!r} is not supported by the compiled writer")


def _require_record(schema: dict[str, Any]) -> None:
    if schema.get("type") != "record":
        raise NotImplementedError("only record schemas are compiled")


def _generate(schema: dict[str, Any], prefix: bytes) -> GeneratedFunction:
    _require_record(schema)
    src = GeneratedFunction(function_name("write_", schema), _BASE_NAMES)
    src.emit(0, f"def {src.function}(record):")
    src.emit(1, "try:")
    parts = [src.bind("prefix", prefix)] if prefix else []
    parts += src.emit_record_fields(
        schema["fields"], lambda target, index, avro_type: _emit_type(src, FIELD_DEPTH, target, index, avro_type)
    )
    src.emit(1, "except KeyError as exc:")
    src.emit(2, 'raise ValueError(f"record lacks field {exc}") from None')
    src.emit(1, f"return b''.join(({''.join(part + ', ' for part in parts)}))")
    return src


def writer_source(schema: dict[str, Any], prefix: bytes = b"") -> str:
    """The Python source :func:`compile_python_record_writer` generates for ``schema``."""
    return _generate(schema, prefix).source()


def compile_python_record_writer(schema: dict[str, Any], prefix: bytes = b"") -> RecordWriter:
    """The generated Python function that writes a record of ``schema`` as ``prefix`` + its Avro binary."""
    return _generate(schema, prefix).compile("avro writer")


def native_writer_available() -> bool:
    """Whether the C extension is built, so :func:`compile_record_writer` writes in C."""
    return _avro_writer_c is not None


def writer_kind() -> str:
    """Which writer :func:`compile_record_writer` returns, in words (for a log line)."""
    return "C extension (_avro_writer_c)" if native_writer_available() else "generated Python (no C extension built)"


# The C writer's kind of each primitive type (the Python writer writes int as it writes long).
_NATIVE_PRIMITIVES = {"long": "LONG", "int": "LONG", "boolean": "BOOLEAN", "string": "STRING", "bytes": "BYTES"}


def _native_type(avro_type: Any, optional: bool = False) -> tuple[int, bool, dict[str, int] | None, int, int]:
    """``(kind, optional, symbols, precision, scale)`` of a field type the Python writer has compiled."""
    if isinstance(avro_type, list):  # ["null", T]
        return _native_type(avro_type[1], True)
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "decimal" and avro_type["type"] == "bytes":
            return _avro_writer_c.DECIMAL, optional, None, avro_type["precision"], avro_type.get("scale", 0)
        if avro_type["type"] == "enum":
            # Interned, as the symbols written in code are: a lookup matches by identity.
            symbols = {sys.intern(symbol): position for position, symbol in enumerate(avro_type["symbols"])}
            return _avro_writer_c.ENUM, optional, symbols, 0, 0
        return _native_type(avro_type["type"], optional)
    return getattr(_avro_writer_c, _NATIVE_PRIMITIVES[avro_type]), optional, None, 0, 0


def _native_field(schema: dict[str, Any], field: dict[str, Any]) -> tuple[Any, ...]:
    """A field of the C writer's plan: ``(name, kind, optional, python_writer, symbols, precision, scale)``.

    The field's own Python writer comes first: it refuses a type the reference does not support, as it refuses it.
    """
    alone = compile_python_record_writer({**schema, "fields": [field]})
    kind, optional, symbols, precision, scale = _native_type(field["type"])
    return field["name"], kind, optional, alone, symbols, precision, scale


def compile_native_record_writer(schema: dict[str, Any], prefix: bytes = b"") -> RecordWriter:
    """The C writer of ``schema``; it hands what it does not handle to the Python writer of that field alone."""
    if _avro_writer_c is None:
        raise NotImplementedError("the C extension _avro_writer_c is not built")
    _require_record(schema)
    plan = tuple(_native_field(schema, field) for field in schema["fields"])
    return _avro_writer_c.Writer(prefix, plan, Decimal)


def compile_record_writer(schema: dict[str, Any], prefix: bytes = b"") -> RecordWriter:
    """A writer of a record of ``schema`` (a flat Avro record) as ``prefix`` + its Avro binary: C when built."""
    if _avro_writer_c is None:
        return compile_python_record_writer(schema, prefix)
    return compile_native_record_writer(schema, prefix)


# Builds a tuple subclass (a NamedTuple) without its Python-level __new__; the fields are given in order.
_new_tuple = tuple.__new__


def encode_outputs_in_python(
    outputs: Iterable[tuple[str, str, dict[str, Any]]],
    writers: dict[str, Callable[[dict[str, Any]], Any]],
    encoded_type: type[tuple],
    counts: MutableMapping[str, int],
) -> list:
    """``encoded_type((topic, key, writers[topic](record)))`` per output, then ``counts[topic] += 1`` per output.

    The reference of the C ``encode_outputs``.  A writer's refusal propagates before anything is
    counted, so a message that becomes a dead letter leaves the counts as they were.  A record that
    is ``bytes`` is already encoded (book levels the writer encoded itself, ``Writer.lob_levels``).
    """
    encoded = [_new_tuple(encoded_type, (topic, key, record if type(record) is bytes else writers[topic](record)))
               for topic, key, record in outputs]
    for topic, _, _ in encoded:  # not outputs: they may be an iterator, read once
        counts[topic] += 1
    return encoded


# The processor's per-message loop: C when built (a C Writer is then written without a Python call).
encode_outputs = encode_outputs_in_python if _avro_writer_c is None else _avro_writer_c.encode_outputs
