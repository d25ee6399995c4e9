"""``runner.py replay-archive``: the Avro/Parquet files ``runner.py local`` wrote, streamed back in time order.

    DIR/<feed>/<exchange>/<symbol>/<date>/<HH>[-n].avro|parquet   (dead letters: DIR/dead_letter/<source>/...)
      └─ one reader per folder (its hourly files in turn) ─> heap-merge by atom_timestamp ─> paced ─> outputs

Records are ordered by ``atom_timestamp``, the receive time the files are
cut by: it is set on every record, where ``event_timestamp`` (the
exchange's) may be null or step back.  Each folder's records keep the order
they were written in (the live stream's order per feed and symbol): a
record whose time is before its predecessor's (a book update published
again after a late snapshot keeps its own) is merged at its predecessor's.  Pacing follows the same clock: ``--speed
1`` spaces records as they were received, ``10`` ten times faster, ``max``
not at all.  A file's hour is in its path, so ``--from``/``--to`` skip whole
files without opening them.  A file that cannot be read (not Avro or
Parquet, truncated) is reported by path; what it gave before is kept and
the rest is replayed.

Outputs are ``runner.py local``'s: JSON lines, and the websocket stream
(``--serve``, the same protocol, so the same clients work; the replay starts
when the first client has subscribed).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import logging
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from l3_atom.errors import UserError
from l3_atom.local.outputs import LocalRecord, Output
from l3_atom.local.outputs.hourly import S_PER_HOUR, US_PER_HOUR
from l3_atom.time_range import time_range
from l3_atom.topics import DEAD_LETTER

LOG = logging.getLogger(__name__)
US_PER_MS = 1000
EXTENSIONS = ("avro", "parquet")
# <date>/<HH>.ext or <date>/<HH>-<n>.ext (a restart within the hour).
FILE_NAME = re.compile(r"^(?P<hour>\d{2})(?:-(?P<attempt>\d+))?\.(?P<ext>avro|parquet)$")
MAX_SPEED = "max"
SPEEDS = ("1", "10", MAX_SPEED)
# Records handed to the outputs at once; pacing sleeps between batches only.
BATCH_RECORDS = 256
# Records closer than this to the previous batch's time go out with it.
PACING_SLACK_S = 0.005
DEFAULT_CLIENT_QUEUE = 10_000
HTTP_SHUTDOWN_TIMEOUT_S = 2.0


@dataclass(frozen=True, order=True)
class ArchiveFile:
    """One hourly file: the folder it belongs to, its hour (since the epoch) and restart number."""

    folder: tuple[str, ...]
    hour: int
    attempt: int
    path: Path

    @property
    def topic(self) -> str:
        return self.folder[0]


def find_files(directory: Path) -> tuple[list[ArchiveFile], list[str]]:
    """The archive's files, and a note per file whose name or place is not one ``runner.py local`` writes."""
    if not directory.is_dir():
        raise UserError(f"{directory} is not a folder")
    found, notes = [], []
    for path in sorted(p for ext in EXTENSIONS for p in directory.rglob(f"*.{ext}")):
        parts = path.relative_to(directory).parts
        match = FILE_NAME.match(parts[-1])
        try:
            day = datetime.strptime(parts[-2], "%Y-%m-%d").replace(tzinfo=UTC) if len(parts) >= 3 else None
        except ValueError:
            day = None
        expected_depth = 4 if parts[0] == DEAD_LETTER else 5
        if match is None or day is None or len(parts) != expected_depth:
            notes.append(f"{path}: not a file runner.py local writes (<feed>/<exchange>/<symbol>/<date>/<HH>.ext)")
            continue
        hour = int(day.timestamp()) // S_PER_HOUR + int(match["hour"])
        found.append(ArchiveFile(parts[:-2], hour, int(match["attempt"] or 0), path))
    if not found:
        raise UserError(f"no Avro or Parquet files under {directory} (runner.py local --avro/--parquet writes them)")
    return sorted(found), notes


def in_range(file: ArchiveFile, start_us: int | None, end_us: int | None) -> bool:
    """Whether the file's hour meets the range: files outside it are never opened."""
    first, after = file.hour * US_PER_HOUR, (file.hour + 1) * US_PER_HOUR
    return (start_us is None or after > start_us) and (end_us is None or first < end_us)


def _rows(file: ArchiveFile) -> Iterator[dict[str, Any]]:
    if file.path.suffix == ".avro":
        import fastavro

        with open(file.path, "rb") as handle:
            yield from fastavro.reader(handle)
    else:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(file.path).iter_batches():
            yield from batch.to_pylist()


def record_key(topic: str, value: dict[str, Any]) -> str:
    """The record's stream key: ``<source>_<symbol>``; a dead letter's raw key (or its source)."""
    if topic == DEAD_LETTER:
        return value["key"] or value["source"]
    return f"{value['exchange']}_{value['symbol']}"


class Archive:
    """The records of an archive folder within a range, in ``atom_timestamp`` order, and what could not be read."""

    def __init__(self, directory: Path, start_ms: int | None = None, end_ms: int | None = None):
        self.directory = directory
        self.start_us = None if start_ms is None else start_ms * US_PER_MS
        self.end_us = None if end_ms is None else end_ms * US_PER_MS
        files, self.bad = find_files(directory)
        self.files = [f for f in files if in_range(f, self.start_us, self.end_us)]
        self.skipped_files = len(files) - len(self.files)
        self.opened = 0

    def _folder(self, files: list[ArchiveFile]) -> Iterator[tuple[int, LocalRecord]]:
        start, end = self.start_us, self.end_us
        # The merge key never steps back within a folder, so the merge keeps the folder's order.
        clock = 0
        for file in files:
            self.opened += 1
            topic = file.topic
            try:
                for value in _rows(file):
                    stamp = value["atom_timestamp"]
                    if start is not None and stamp < start:
                        continue
                    if end is not None and stamp >= end:
                        return
                    clock = max(clock, stamp)
                    yield clock, LocalRecord(topic, record_key(topic, value), value)
            except Exception as exc:  # noqa: BLE001 - any reader's failure is the file's: reported, the rest replayed
                note = f"{file.path}: cannot be read as {file.path.suffix[1:]} ({type(exc).__name__}: {exc})"
                self.bad.append(note)
                LOG.warning("%s; skipped the rest of it", note)

    def records(self) -> Iterator[tuple[int, LocalRecord]]:
        """(merge time in µs, record): the time is the record's ``atom_timestamp`` or its predecessor's, if later."""
        folders: dict[tuple[str, ...], list[ArchiveFile]] = {}
        for file in self.files:
            folders.setdefault(file.folder, []).append(file)
        # The folder index breaks ties, so records are never compared and equal times keep a stable order.
        merged = heapq.merge(
            *(((stamp, index, record) for stamp, record in self._folder(files)) for index, files in
              enumerate(folders.values()))
        )
        for stamp, _index, record in merged:
            yield stamp, record


async def replay(archive: Archive, outputs: list[Output], speed: float | None) -> int:
    """Hand the archive's records to ``outputs`` in batches, paced at ``speed`` times the recorded rate."""
    loop = asyncio.get_running_loop()
    first_us = started = None
    count = 0
    batch: list[LocalRecord] = []

    async def flush() -> None:
        for output in outputs:
            await output.write(batch)

    for stamp, record in archive.records():
        if speed is not None:
            if first_us is None:
                first_us, started = stamp, loop.time()
            due = started + (stamp - first_us) / 1e6 / speed
            wait = due - loop.time()
            if wait > PACING_SLACK_S:
                if batch:
                    await flush()
                    batch = []
                await asyncio.sleep(wait)
        batch.append(record)
        count += 1
        if len(batch) >= BATCH_RECORDS:
            await flush()
            batch = []
            await asyncio.sleep(0)
    if batch:
        await flush()
    return count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``runner.py replay-archive`` options."""
    from l3_atom.local.cli import _address as address  # local mode's [HOST:]PORT, shared

    parser.add_argument("directory", metavar="DIR", help="what runner.py local --avro/--parquet wrote")
    parser.add_argument("--from", dest="start", metavar="TIME", help="ISO-8601 or ms since the epoch (receive time)")
    parser.add_argument("--to", dest="end", metavar="TIME", help="exclusive; ISO-8601 or ms since the epoch")
    parser.add_argument("--speed", choices=SPEEDS, default="1", help="times the recorded pace, or max (default 1)")
    parser.add_argument(
        "--serve", metavar="[HOST:]PORT", type=address,
        help="serve runner.py local's websocket stream (/ws); the replay starts when a client has subscribed",
    )
    parser.add_argument("--jsonl", metavar="FILE", help="JSON lines to FILE ('-': stdout; the default without --serve)")
    parser.add_argument(
        "--client-queue", type=int, default=DEFAULT_CLIENT_QUEUE, metavar="N",
        help="messages a websocket client may have waiting before its records are dropped (default %(default)s)",
    )


async def _serve(archive: Archive, args: argparse.Namespace, outputs: list[Output]) -> None:
    from l3_atom.local.outputs.websocket import WebsocketOutput

    feeds = sorted({f.topic for f in archive.files})
    keys = sorted({"_".join(f.folder[1:]) for f in archive.files if f.topic != DEAD_LETTER})
    websocket = WebsocketOutput(feeds, keys, args.client_queue)
    app = web.Application()
    websocket.register(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    host, port = args.serve
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    try:
        print(f"serving ws://{host}:{runner.addresses[0][1]}/ws; waiting for a subscriber", file=sys.stderr, flush=True)
        while not any(client.subscriptions for client in websocket.clients):
            await asyncio.sleep(0.05)
        await _run(archive, args, [*outputs, websocket])
    finally:
        await runner.cleanup()


async def _run(archive: Archive, args: argparse.Namespace, outputs: list[Output]) -> None:
    speed = None if args.speed == MAX_SPEED else float(args.speed)
    for output in outputs:
        await output.start()
    started = time.monotonic()
    try:
        count = await replay(archive, outputs, speed)
    finally:
        for output in outputs:
            await output.close()
    print(
        f"replayed {count} records from {archive.opened} files in {time.monotonic() - started:.1f} s "
        f"({archive.skipped_files} files outside the range not opened; {len(archive.bad)} bad files)",
        file=sys.stderr, flush=True,
    )


def main(args: argparse.Namespace) -> None:
    from l3_atom.local.outputs.text import STDOUT_PATH, JsonLinesOutput

    start_ms, end_ms = time_range(args.start, args.end)
    archive = Archive(Path(args.directory), start_ms, end_ms)
    for note in archive.bad:
        LOG.warning("%s; skipped", note)
    jsonl = args.jsonl or (None if args.serve else STDOUT_PATH)
    outputs: list[Output] = [JsonLinesOutput(jsonl)] if jsonl else []
    asyncio.run(_serve(archive, args, outputs) if args.serve else _run(archive, args, outputs))
