"""Files rotated per hour: ``<dir>/<feed>/<exchange>/<symbol>/<date>/<hour>.<ext>`` (UTC).

Dead letters, which have a source but no symbol, go to
``<dir>/dead_letter/<source>/<date>/<hour>.<ext>``.  The hour is the
record's ``atom_timestamp`` (receive time: it only moves forward, unlike
exchange time, so a file once closed stays closed).  A file is closed when
the wall clock is past its hour (plus a grace for records still queued) or
at shutdown; an existing file is never overwritten: a restart in the same
hour writes ``<hour>-1.<ext>``, and so on.

When a write fails (a full disk), every open file is closed if it can be,
else given up by the format's own rule (:meth:`HourlyFiles.give_up`), and
the output stops (see ``l3_atom.local.outputs``).
"""

from __future__ import annotations

import contextlib
import time
from abc import abstractmethod
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from l3_atom.local.outputs import BlockingOutput, LocalRecord
from l3_atom.topics import DEAD_LETTER

US_PER_S = 1_000_000
S_PER_HOUR = 3600
US_PER_HOUR = S_PER_HOUR * US_PER_S
# Records of an hour may still be queued when the hour ends: its files stay open this much longer.
CLOSE_GRACE_S = 60.0

Partition = tuple[tuple[str, ...], int]


def partition_of(record: LocalRecord) -> Partition:
    """(folder parts, hour number since the epoch) of one record."""
    value = record.value
    if record.topic == DEAD_LETTER:
        parts: tuple[str, ...] = (DEAD_LETTER, value["source"])
    else:
        parts = (record.topic, value["exchange"], value["symbol"])
    return parts, value["atom_timestamp"] // US_PER_HOUR


def partition_path(directory: Path, parts: tuple[str, ...], hour: int, extension: str) -> Path:
    """The first free name for this partition's file: ``HH.ext``, then ``HH-1.ext``, ..."""
    start = datetime.fromtimestamp(hour * S_PER_HOUR, UTC)
    folder = directory.joinpath(*parts, start.strftime("%Y-%m-%d"))
    folder.mkdir(parents=True, exist_ok=True)
    stem = start.strftime("%H")
    path = folder / f"{stem}.{extension}"
    attempt = 0
    while path.exists():
        attempt += 1
        path = folder / f"{stem}-{attempt}.{extension}"
    return path


class HourlyFiles(BlockingOutput):
    """Groups each batch by partition and appends to that partition's open file; subclasses own the format."""

    extension: ClassVar[str]

    def __init__(self, directory: str | Path):
        super().__init__()
        self.directory = Path(directory)
        self._open: dict[Partition, Any] = {}
        self.files = 0
        # Files that could not be closed whole, and the records not in them.
        self._given_up = self._lost = 0

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.where = self.directory

    def write_records(self, records: list[LocalRecord]) -> None:
        groups: dict[Partition, list[dict[str, Any]]] = {}
        for record in records:
            groups.setdefault(partition_of(record), []).append(record.value)
        for partition, values in groups.items():
            handle = self._open.get(partition)
            if handle is None:
                parts, hour = partition
                self.where = partition_path(self.directory, parts, hour, self.extension)
                handle = self._open[partition] = self.open_file(self.where, parts[0])
                self.files += 1
            self.where = handle.path
            self.append(handle, values)
        self._close_past_hours()
        self.after_batch(list(self._open.values()))

    def _close_past_hours(self) -> None:
        current = int((time.time() - CLOSE_GRACE_S) // S_PER_HOUR)
        for partition in [p for p in self._open if p[1] < current]:
            self._close(self._open.pop(partition))

    def _close(self, handle: Any) -> None:
        """Close a file; one that cannot be closed whole is given up (counted) before the error is raised."""
        self.where = handle.path
        try:
            self.close_file(handle)
        except OSError:
            self._given_up += 1
            self._lost += self.give_up(handle)
            raise

    def close_all(self) -> None:
        """Close every open file, even after one failed; then raise the first failure."""
        failure = None
        while self._open:
            try:
                self._close(self._open.popitem()[1])
            except OSError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def abandon(self) -> str:
        """Close every open file; say how many could not be closed whole and what that cost."""
        with contextlib.suppress(OSError):
            self.close_all()
        if not self._given_up:
            return ""
        return f"{self._given_up} {self.extension} files {self.given_up_as}, {self._lost} records not in them"

    def stats(self) -> dict[str, Any]:
        return {"records": self.records, "files": self.files, "open_files": len(self._open)}

    # How :meth:`give_up` leaves a file, for the error line.
    given_up_as: ClassVar[str]

    @abstractmethod
    def open_file(self, path: Path, topic: str) -> Any:
        """A new file at ``path`` for records of ``topic``: the handle (with its ``path``) :meth:`append` gets."""

    @abstractmethod
    def give_up(self, handle: Any) -> int:
        """Leave a file that could not be closed whole readable (or gone); the records that are not in it."""

    @abstractmethod
    def append(self, handle: Any, values: list[dict[str, Any]]) -> None: ...

    def after_batch(self, handles: list[Any]) -> None:
        """Called after every batch with the open files (e.g. to flush now and then)."""

    @abstractmethod
    def close_file(self, handle: Any) -> None: ...
