"""Parquet files, columns typed from the feed's Avro schema; decimals as ``decimal128(38, 18)``, exact.

A Parquet file is only readable once closed (its footer comes last): at the
end of its hour or at shutdown.  Rows are written in row groups of
``ROW_GROUP_ROWS``, which bounds the memory each open file holds.  The Avro
schema the columns come from is kept in the file's metadata.  A file whose
footer cannot be written (a full disk) is unreadable: it is removed, and the
error line counts the records it held.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from l3_atom.avro.codecs import schema_text
from l3_atom.local.outputs.hourly import HourlyFiles

ROW_GROUP_ROWS = 10_000
COMPRESSION = "zstd"
AVRO_SCHEMA_METADATA = b"avro.schema"
NULL = "null"
PRIMITIVES = {
    "string": pa.string(),
    "long": pa.int64(),
    "int": pa.int32(),
    "boolean": pa.bool_(),
    "bytes": pa.binary(),
    "double": pa.float64(),
    "float": pa.float32(),
}


class UnsupportedSchema(ValueError):
    """An Avro type with no column mapping here (arrays, maps, nested records)."""


def arrow_type(avro_type: Any) -> tuple[pa.DataType, bool]:
    """(column type, nullable) of an Avro field type; ``["null", T]`` is a nullable T."""
    if isinstance(avro_type, list):
        others = [t for t in avro_type if t != NULL]
        if len(others) != 1:
            raise UnsupportedSchema(f"only [null, T] unions map to a column, not {avro_type}")
        return arrow_type(others[0])[0], True
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "decimal":
            return pa.decimal128(avro_type["precision"], avro_type["scale"]), False
        if avro_type["type"] == "enum":
            return pa.string(), False
        return arrow_type(avro_type["type"])
    try:
        return PRIMITIVES[avro_type], False
    except (KeyError, TypeError):
        raise UnsupportedSchema(f"no Parquet column type for Avro type {avro_type!r}") from None


@cache
def arrow_schema(topic: str) -> pa.Schema:
    """The columns of ``static/schemas/<topic>.avsc``, in its field order."""
    text = schema_text(topic)
    columns = [pa.field(f["name"], *arrow_type(f["type"])) for f in json.loads(text)["fields"]]
    return pa.schema(columns, metadata={AVRO_SCHEMA_METADATA: text.encode()})


@dataclass
class _ParquetFile:
    path: Path
    writer: pq.ParquetWriter
    schema: pa.Schema
    rows: list[dict[str, Any]] = field(default_factory=list)
    written: int = 0


class ParquetFiles(HourlyFiles):
    name = "parquet"
    extension = "parquet"
    given_up_as = "removed (unreadable without their footer)"

    def __init__(self, directory: str | Path, topics: list[str]):
        super().__init__(directory)
        # Map every schema now, so that a schema without a column mapping stops the start, not the stream.
        for topic in topics:
            arrow_schema(topic)

    def open_file(self, path: Path, topic: str) -> _ParquetFile:
        schema = arrow_schema(topic)
        return _ParquetFile(path, pq.ParquetWriter(path, schema, compression=COMPRESSION), schema)

    def append(self, handle: _ParquetFile, values: list[dict[str, Any]]) -> None:
        handle.rows.extend(values)
        if len(handle.rows) >= ROW_GROUP_ROWS:
            self._write_rows(handle)

    @staticmethod
    def _write_rows(handle: _ParquetFile) -> None:
        if handle.rows:
            handle.writer.write_table(pa.Table.from_pylist(handle.rows, schema=handle.schema))
            handle.written += len(handle.rows)
            handle.rows = []

    def close_file(self, handle: _ParquetFile) -> None:
        self._write_rows(handle)
        handle.writer.close()

    def give_up(self, handle: _ParquetFile) -> int:
        # Closing again releases the file; it fails the same way (no room for the footer).
        with contextlib.suppress(OSError):
            handle.writer.close()
        handle.path.unlink(missing_ok=True)
        return handle.written + len(handle.rows)
