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
# Lines held back (``hold``) are handed to the output's thread at this size at the latest.
HANDOFF_BYTES = 1 << 18
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
    write whole or not at all (:class:`WholeWrites`): it always ends at a line boundary.

    With ``hold`` (the runtime's), batches made while more frames wait are kept and handed over
    together when the runtime has caught up (:meth:`flush`) or ``HANDOFF_BYTES`` are held: each hand-over
    wakes the thread, which then takes the GIL from the loop, a cost per hand-over that at full rate
    was about a tenth of the process's CPU.  Caught up, every batch is flushed at once (latency unchanged).
    """

    name = "jsonl"

    def __init__(self, path: str | Path, hold: bool = False):
        """``hold``: keep lines until :meth:`flush` (the runtime's, once it has caught up) or ``HANDOFF_BYTES``."""
        super().__init__()
        self.path = str(path)
        self.hold = hold
        self._file: BinaryIO | WholeWrites | None = None
        self._batch = 0
        # Lines made but not yet handed to the output's thread, and their records.
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._pending_records = 0

    def open(self) -> None:
        if self.path == STDOUT_PATH:
            sys.stdout.flush()
            self._file = sys.stdout.buffer
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.where = self.path
        self._file = WholeWrites(self.path)

    async def write(self, records: list[LocalRecord]) -> None:
        data = lines(records)
        self._pending.append(data)
        self._pending_bytes += len(data)
        self._pending_records += len(records)
        if not self.hold or self._pending_bytes >= HANDOFF_BYTES:
            await self.flush()

    async def flush(self) -> None:
        """Hand what is held to the output's thread, as one write (whole or not at all)."""
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._batch = records = self._pending_records
        self._pending, self._pending_bytes, self._pending_records = [], 0, 0
        await self._write(self._append, data, records)

    async def close(self) -> None:
        try:
            await self.flush()
        finally:
            await super().close()

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
