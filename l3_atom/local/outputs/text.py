"""Text outputs: human-readable lines on stdout, and JSON lines to a file (or stdout).

The lines are the ones ``runner.py consume`` prints for the same records
(``format_human`` / ``format_json``), so the two runtimes read alike.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from l3_atom.consume import format_human, json_line
from l3_atom.local.outputs import BlockingOutput, LocalRecord
from l3_atom.local.outputs.files import WholeWrites
from l3_atom.local.progress import StatusLine
from l3_atom.topics import DEAD_LETTER

STDOUT_PATH = "-"
# Dead letters echoed on stderr by the stdout output; later ones are only counted (see the summary).
DEAD_LETTERS_SHOWN = 20


class HumanOutput(BlockingOutput):
    """``topic key field=value ...`` lines on stdout; dead letters on stderr, so stdout stays records only."""

    name = "stdout"

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, status: StatusLine | None = None):
        super().__init__()
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        # Set when the progress line shares the terminal with these lines.
        self.status = status if status is not None and self.out.isatty() else None
        self.dead_letters = 0

    def write_records(self, records: list[LocalRecord]) -> None:
        if self.status is not None:
            self.status.clear()
        lines = []
        for record in records:
            if record.topic == DEAD_LETTER:
                self._dead_letter(record)
            else:
                lines.append(format_human(record.topic, record.key, record.value))
        if lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()

    def _dead_letter(self, record: LocalRecord) -> None:
        self.dead_letters += 1
        if self.dead_letters <= DEAD_LETTERS_SHOWN:
            print(format_human(record.topic, record.key, record.value), file=self.err, flush=True)
        if self.dead_letters == DEAD_LETTERS_SHOWN:
            print(
                "(further dead letters are counted, not shown: keep them with --jsonl, --avro or --parquet)",
                file=self.err,
                flush=True,
            )

    def stats(self) -> dict[str, Any]:
        return {"records": self.records, "dead_letters": self.dead_letters}


def lines(records: list[LocalRecord]) -> bytes:
    """The JSON lines of ``records``, each with its newline, as one UTF-8 string of bytes."""
    return b"".join([json_line(topic, key, value) for topic, key, value in records])


class JsonLinesOutput(BlockingOutput):
    """One JSON object per record, ``{"topic", "key", ...fields}``, decimals as exact strings; appends.

    Lines are made as UTF-8 bytes by orjson (no text layer) on the event loop's thread: orjson holds the
    GIL, so on the output's thread the same work only contended with the loop for it (the thread
    then switched it back and forth, and the process used less of its core).  The output's thread
    only appends the bytes, so a slow disk or pipe still never stalls the loop.  A file gets each
    batch whole or not at all (:class:`WholeWrites`): it always ends at a line boundary.
    """

    name = "jsonl"

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = str(path)
        self._file: BinaryIO | WholeWrites | None = None
        self._batch = 0

    def open(self) -> None:
        if self.path == STDOUT_PATH:
            sys.stdout.flush()
            self._file = sys.stdout.buffer
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.where = self.path
        self._file = WholeWrites(self.path)

    async def write(self, records: list[LocalRecord]) -> None:
        self._batch = len(records)
        await self._write(self._append, lines(records), len(records))

    def write_records(self, records: list[LocalRecord]) -> None:
        self._append(lines(records))

    def _append(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()

    def abandon(self) -> str:
        if isinstance(self._file, WholeWrites):
            self._file.abandon()
        self._file = None
        return f"the file ends at the last whole batch, {self._batch} records of the failed one not in it"

    def close_all(self) -> None:
        if self._file is not None and self._file is not sys.stdout.buffer:
            self._file.close()
        self._file = None
