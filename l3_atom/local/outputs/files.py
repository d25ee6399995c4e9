"""A file that takes what is written between two flushes whole or not at all.

A full disk fails a write part of the way: the file would end inside a JSON
line or an Avro block, and readers would fail on it.  Here writes are kept
in memory until :meth:`WholeWrites.flush`, which appends them with
``os.write`` until all are written; when one fails, the file is cut back to
where the previous flush ended, what it held is given up and the error is
raised (naming the file).  The outputs flush at record boundaries (a batch
of lines, a finished Avro block), so the file on disk always ends at one.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND
FILE_MODE = 0o644


class WholeWrites:
    """An append-only binary file (``write``, ``flush``, ``close``) whose flushes are all or nothing."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd = os.open(self.path, APPEND, FILE_MODE)
        # Where the last whole flush ended: the file is cut back to it when a flush fails.
        self.size = os.fstat(self._fd).st_size
        self._pending = bytearray()
        # Set by a failed flush: what a writer wrote before it (an Avro header) is gone, so nothing may follow.
        self._broken = False

    def write(self, data: bytes) -> int:
        self._pending += data
        return len(data)

    def flush(self) -> None:
        """Append what was written since the last flush; on failure cut it off again (it is given up) and raise."""
        if self._broken:
            raise OSError(errno.EIO, "an earlier write to this file failed", str(self.path))
        if not self._pending:
            return
        data, self._pending = self._pending, bytearray()
        written = 0
        with memoryview(data) as view:
            try:
                while written < len(view):
                    written += os.write(self._fd, view[written:])
            except OSError as exc:
                os.ftruncate(self._fd, self.size)
                self._broken = True
                raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
        self.size += written

    def seekable(self) -> bool:
        """Never: fastavro would take a file it can seek in for one to append to."""
        return False

    def abandon(self) -> None:
        """Close without writing what is pending (after a failed flush nothing more fits)."""
        self._pending.clear()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1
