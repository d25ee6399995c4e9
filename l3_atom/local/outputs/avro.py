"""Avro container files, one schema per feed from ``static/schemas`` (decimals exact, as on Kafka).

Any Avro reader opens them (``fastavro.reader``, Spark, DuckDB's avro
extension).  Blocks are flushed at least every ``FLUSH_INTERVAL_S``, so an
open file is readable up to its last complete block while the runtime runs.
A flush is written whole or not at all (``WholeWrites``): when the disk is
full, the file stays cut at its last whole block, valid (or is removed when not
even its header fitted), and the records after it (at most one flush
interval's) are counted as not written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro.write import Writer

from l3_atom.avro.codecs import parsed_schema
from l3_atom.local.outputs.files import WholeWrites
from l3_atom.local.outputs.hourly import HourlyFiles

CODEC = "deflate"
FLUSH_INTERVAL_S = 1.0


@dataclass
class _AvroFile:
    file: WholeWrites
    writer: Writer
    # Records appended since the last flush that reached the disk.
    unflushed: int = 0

    @property
    def path(self) -> Path:
        return self.file.path

    def flush(self) -> None:
        self.writer.flush()
        self.file.flush()
        self.unflushed = 0


class AvroFiles(HourlyFiles):
    name = "avro"
    extension = "avro"
    given_up_as = "cut at their last whole block"

    def __init__(self, directory: str | Path):
        super().__init__(directory)
        self._flushed = time.monotonic()

    def open_file(self, path: Path, topic: str) -> _AvroFile:
        file = WholeWrites(path)
        return _AvroFile(file, Writer(file, parsed_schema(topic), codec=CODEC))

    def append(self, handle: _AvroFile, values: list[dict[str, Any]]) -> None:
        write = handle.writer.write
        for value in values:
            write(value)
        handle.unflushed += len(values)

    def after_batch(self, handles: list[_AvroFile]) -> None:
        now = time.monotonic()
        if now - self._flushed >= FLUSH_INTERVAL_S:
            self._flushed = now
            for handle in handles:
                self.where = handle.path
                handle.flush()

    def close_file(self, handle: _AvroFile) -> None:
        handle.flush()
        handle.file.close()

    def give_up(self, handle: _AvroFile) -> int:
        handle.file.abandon()
        if handle.file.size == 0:
            handle.path.unlink()  # not even its header fitted: no reader could open it
        return handle.unflushed
