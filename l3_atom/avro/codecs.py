"""Avro in the Confluent wire format, with schemas from ``static/schemas/``.

A message value is: magic byte 0, the 4-byte big-endian schema id the Schema
Registry gave the topic's schema (subject ``<topic>-value``), then the Avro
body.  Schemas are parsed once and reused (ARCHITECTURE.md, principle 7):
records are written and read by code compiled from the schema
(``writer.py``, ``reader.py``), or by fastavro for schemas they do
not cover.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import httpx

from l3_atom.avro.reader import RecordReader, compile_record_reader
from l3_atom.avro.writer import compile_record_writer
from l3_atom.errors import ServiceUnavailable

# static/schemas/ at the project's top level, the source of truth for every normalised topic.
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "static" / "schemas"
MAGIC_BYTE = 0
_WIRE_HEADER = struct.Struct(">bI")
WIRE_HEADER_SIZE = _WIRE_HEADER.size


class UnknownSchema(KeyError):
    """No ``static/schemas/<topic>.avsc`` exists for a topic."""


def subject(topic: str) -> str:
    return f"{topic}-value"


def schema_path(topic: str) -> Path:
    return SCHEMA_DIR / f"{topic}.avsc"


@cache
def schema_text(topic: str) -> str:
    """The schema of ``topic`` exactly as stored in ``static/schemas``."""
    path = schema_path(topic)
    if not path.exists():
        raise UnknownSchema(f"no schema for topic {topic!r}: {path} does not exist")
    return path.read_text()


@cache
def parsed_schema(topic: str) -> dict[str, Any]:
    return fastavro.parse_schema(json.loads(schema_text(topic)))


def available_topics() -> list[str]:
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc"))


class AvroEncoder:
    """Encodes records of one topic to Confluent wire-format bytes.

    ``encode(record)`` raises ``ValueError``/``TypeError`` when a record does not fit
    the schema.  It is the compiled writer itself, with the wire header folded in:
    it runs once per record, so no method call or concatenation wraps it.
    """

    encode: Callable[[dict[str, Any]], bytes]

    def __init__(self, topic: str, schema_id: int):
        self.topic = topic
        self.schema_id = schema_id
        self._header = _WIRE_HEADER.pack(MAGIC_BYTE, schema_id)
        try:
            self.encode = compile_record_writer(json.loads(schema_text(topic)), prefix=self._header)
        except NotImplementedError:
            self.encode = self._fastavro_writer(parsed_schema(topic), self._header)

    @staticmethod
    def _fastavro_writer(schema: dict[str, Any], header: bytes) -> Callable[[dict[str, Any]], bytes]:
        buffer = io.BytesIO()

        def write(record: dict[str, Any]) -> bytes:
            buffer.seek(0)
            buffer.truncate()
            buffer.write(header)
            fastavro.schemaless_writer(buffer, schema, record)
            return buffer.getvalue()

        return write


# Readers by id(schema), each beside its schema: kept alive, no schema's id is reused while cached.
_READERS: dict[int, tuple[RecordReader, dict[str, Any]]] = {}
READER_CACHE_LIMIT = 256


def _fastavro_reader(schema: dict[str, Any]) -> RecordReader:
    """fastavro's reader, for a schema the compiled reader refuses; bad input raises ``ValueError`` too."""
    parsed = fastavro.parse_schema(schema)

    def read(value: bytes, pos: int) -> tuple[dict[str, Any], int]:
        buffer = io.BytesIO(value)
        buffer.seek(pos)
        try:
            record = fastavro.schemaless_reader(buffer, parsed, None)
        except (EOFError, IndexError) as exc:
            raise ValueError(f"truncated or corrupt Avro record: {exc!r}") from None
        return record, buffer.tell()

    return read


def _reader(schema: dict[str, Any]) -> tuple[RecordReader, dict[str, Any]]:
    """Compile (or fall back to fastavro for) ``schema`` once, and cache it by identity."""
    try:
        reader = compile_record_reader(schema)
    except NotImplementedError:
        reader = _fastavro_reader(schema)
    if len(_READERS) >= READER_CACHE_LIMIT:
        _READERS.clear()
    entry = _READERS[id(schema)] = (reader, schema)
    return entry


def wire_schema_id(value: bytes) -> int:
    """The registry id of the schema a Confluent wire-format value was written with."""
    return _WIRE_HEADER.unpack_from(value)[1]


def decode_wire(value: bytes, schemas_by_id: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Decode Confluent wire-format bytes with already fetched, parsed schemas.

    Each schema is read by a reader compiled from it (``reader.py``), or by fastavro for
    schemas it does not cover.  Raises ``KeyError`` for a schema id not in ``schemas_by_id``
    and ``ValueError`` for bytes that are not a record of its schema.
    """
    try:
        magic, schema_id = _WIRE_HEADER.unpack_from(value)
    except struct.error:
        raise ValueError(f"not Confluent wire format ({len(value)} bytes, no header)") from None
    if magic != MAGIC_BYTE:
        raise ValueError(f"not Confluent wire format (magic byte {magic})")
    schema = schemas_by_id[schema_id]
    entry = _READERS.get(id(schema))
    if entry is None:
        entry = _reader(schema)
    return entry[0](value, WIRE_HEADER_SIZE)[0]


def register_encoders(registry_config: dict[str, Any], topics: list[str]) -> dict[str, AvroEncoder]:
    """Register each topic's schema under ``<topic>-value`` and return its encoder.

    Registering an unchanged schema returns its existing id, so every process
    can do this at start-up; an incompatible change fails here, loudly.
    """
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient(registry_config)
    encoders = {}
    for topic in topics:
        try:
            schema_id = client.register_schema(subject(topic), Schema(schema_text(topic), "AVRO"))
        except (OSError, httpx.HTTPError) as exc:
            raise ServiceUnavailable(
                f"cannot reach the schema registry at {registry_config['url']} (SCHEMA_REGISTRY_URL): {exc}"
            ) from None
        encoders[topic] = AvroEncoder(topic, schema_id)
    return encoders
