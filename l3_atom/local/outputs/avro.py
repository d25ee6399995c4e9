"""Avro container files, one schema per feed from ``static/schemas`` (decimals exact, as on Kafka).

Any Avro reader opens them (``fastavro.reader``, Spark, DuckDB's avro
extension).  Blocks are flushed at least every ``FLUSH_INTERVAL_S``, so an
open file is readable up to its last complete block while the runtime runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from fastavro.write import Writer

from l3_atom.avro.codecs import parsed_schema
from l3_atom.local.outputs.hourly import HourlyFiles

CODEC = "deflate"
FLUSH_INTERVAL_S = 1.0


@dataclass
class _AvroFile:
    file: BinaryIO
    writer: Writer


class AvroFiles(HourlyFiles):
    name = "avro"
    extension = "avro"

    def __init__(self, directory: str | Path):
        super().__init__(directory)
        self._flushed = time.monotonic()

    def open_file(self, path: Path, topic: str) -> _AvroFile:
        file = open(path, "wb")  # noqa: SIM115 - closed in close_file
        return _AvroFile(file, Writer(file, parsed_schema(topic), codec=CODEC))

    def append(self, handle: _AvroFile, values: list[dict[str, Any]]) -> None:
        write = handle.writer.write
        for value in values:
            write(value)

    def after_batch(self, handles: list[_AvroFile]) -> None:
        now = time.monotonic()
        if now - self._flushed >= FLUSH_INTERVAL_S:
            self._flushed = now
            for handle in handles:
                handle.writer.flush()
                handle.file.flush()

    def close_file(self, handle: _AvroFile) -> None:
        handle.writer.flush()
        handle.file.close()
