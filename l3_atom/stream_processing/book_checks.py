"""Book integrity inside a standardiser: sequence checks on the exchange's own numbers, and resync requests.

A standardiser that publishes a book keeps one :class:`BookChecks`.  It tells
the standardiser whether a message continues its book (see
:class:`~l3_atom.books.integrity.Continuity`) and turns a lost book into a
``book_resync`` output, which the runtime delivers to the source's connector
(Kafka topic ``book_resync`` in the distributed pipeline, a direct call in
``runner.py local``).  State is one small entry per book.

A book that was right and went wrong is published on ``coverage`` (``book_lost``,
with the reason and the last good sequence), and so is the snapshot that makes it
right again (``book_resynced``, with the interval it could not be trusted).  These
wait in :attr:`BookChecks.notices` for the runtime (``RawMessageProcessor``), which
publishes them after the message that caused them: the standardisers' outputs stay
what they were.

Also here, for every book standardiser: the named reasons an update is
skipped (:func:`repeat_reason`, :func:`check_order` for order-only sources)
and :class:`RecentUpdates`, the "cache, then replay after a late snapshot"
step some exchanges document.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

from l3_atom.books.integrity import Continuity, Reason, Verdict
from l3_atom.coverage import BOOK_FEED, BOOK_LOST, BOOK_RESYNCED, coverage_record
from l3_atom.stream_processing.records_build import book_resync
from l3_atom.stream_processing.standardiser import Output
from l3_atom.topics import BOOK_RESYNC, COVERAGE, normalised_key

__all__ = ["DUPLICATE_UPDATE", "IN_SNAPSHOT", "BookChecks", "Reason", "RecentUpdates", "Verdict", "check_order",
           "repeat_reason", "snapshot_sequence"]

# Why a book update is dropped: it holds nothing the book does not have.
IN_SNAPSHOT = "stale: already in the book snapshot"
DUPLICATE_UPDATE = "duplicate book update"
# Book updates kept to be published again after a late snapshot: this much stream time, this many at most.
RECENT_WINDOW_US = 5_000_000
RECENT_LIMIT = 1024
US_PER_MS = 1000


class BookChecks:
    """Continuity of one source's books by normalised symbol, and the requests it calls for."""

    def __init__(self, source: str, continuity: Continuity | None = None):
        self.source = source
        self.continuity = continuity or Continuity()
        # ``update(symbol, sequence, prev_sequence, atom_timestamp) -> Verdict`` runs for every book message:
        # it is the continuity's own method, with no forwarding call in between.
        self.update = self.continuity.update
        # Per symbol: since when (µs) a book that had been right is lost, and its last good sequence.
        self._lost_since: dict[str, tuple[int, int | None]] = {}
        # ``coverage`` outputs for the runtime to take (and clear) after each message.
        self.notices: list[Output] = []

    def snapshot(self, symbol: str, sequence: int | None, atom_timestamp: int) -> None:
        lost = self._lost_since.pop(symbol, None)
        if lost is not None:
            since, before = lost
            self.notices.append(self._coverage(
                symbol, BOOK_RESYNCED, atom_timestamp, start=since // US_PER_MS, end=atom_timestamp // US_PER_MS,
                sequence_before=before, sequence_after=sequence,
            ))
        self.continuity.snapshot(symbol, sequence, atom_timestamp)

    def mismatch(self, symbol: str, detail: str, atom_timestamp: int) -> None:
        self.continuity.mismatch(symbol, detail, atom_timestamp)

    def renumber(self, symbol: str, sequence: int, atom_timestamp: int) -> None:
        self.continuity.renumber(symbol, sequence, atom_timestamp)

    def lost(self, symbol: str, reason: Reason, detail: str, atom_timestamp: int) -> None:
        self.continuity.lost(symbol, reason, detail, atom_timestamp)

    def requests(self, symbol: str, atom_timestamp: int) -> list[Output]:
        """A ``book_resync`` output when ``symbol``'s book needs a snapshot now (rate-limited), else none."""
        due = self.continuity.resync_due(symbol, atom_timestamp)
        if due is None:
            return []
        reason, detail = due
        record = book_resync(
            exchange=self.source, symbol=symbol, reason=reason.value, detail=detail, atom_timestamp=atom_timestamp
        )
        state = self.continuity.books[symbol]
        if state.snapshot_seen and symbol not in self._lost_since:
            # A book that had been right went wrong (not one still waiting for its first snapshot).
            self._lost_since[symbol] = (atom_timestamp, state.last)
            self.notices.append(self._coverage(
                symbol, BOOK_LOST, atom_timestamp, reason=f"{reason.value}: {detail}",
                start=atom_timestamp // US_PER_MS, sequence_before=state.last,
            ))
        return [Output(BOOK_RESYNC, normalised_key(self.source, symbol), record)]

    def _coverage(self, symbol: str, kind: str, atom_timestamp: int, **fields: object) -> Output:
        record = coverage_record(exchange=self.source, symbol=symbol, kind=kind, feed=BOOK_FEED,
                                 event_timestamp=atom_timestamp // US_PER_MS, atom_timestamp=atom_timestamp, **fields)
        return Output(COVERAGE, normalised_key(self.source, symbol), record)

    def stats(self) -> dict[str, int]:
        return dict(self.continuity.counts)


def snapshot_sequence(checks: BookChecks, symbol: str) -> int | None:
    """The sequence of ``symbol``'s last book snapshot; None before any."""
    state = checks.continuity.books.get(symbol)
    return None if state is None else state.snapshot_sequence


def repeat_reason(
    checks: BookChecks, symbol: str, sequence: int | None, verdict: Verdict, *, numbered_once: bool = True
) -> str | None:
    """Why a book update is dropped, or None to publish it.

    Only updates that are surely not new are dropped: those numbered at or below the book's
    last snapshot and, where the exchange gives each update its own number
    (``numbered_once``), a repeat of the update just applied.  An older update above the
    snapshot (out of order) may be new: it is published, and the book, now out of sync,
    asks for a snapshot.
    """
    if sequence is None or (verdict is not Verdict.DUPLICATE and verdict is not Verdict.STALE):
        return None
    floor = snapshot_sequence(checks, symbol)
    if floor is not None and sequence <= floor:
        return IN_SNAPSHOT
    return DUPLICATE_UPDATE if numbered_once and verdict is Verdict.DUPLICATE else None


class Kept(NamedTuple):
    """A book update as its standardiser parsed it, with its number and receive time."""

    sequence: int
    update: Any
    atom_timestamp: int


class RecentUpdates:
    """Each book's updates of the last few seconds, to publish again after a snapshot older than some of them.

    A REST snapshot reaches the raw topic after the websocket updates the exchange sent
    while it answered, and some of those are newer than the snapshot.  The exchanges'
    procedure is to cache the updates and apply those newer than the snapshot after it;
    the standardiser does the same on the stream, so that a consumer replacing its book
    with the snapshot misses none of them.
    """

    def __init__(self, window_us: int = RECENT_WINDOW_US, limit: int = RECENT_LIMIT):
        self.window_us = window_us
        self.limit = limit
        self._kept: dict[str, deque[Kept]] = {}
        # Per book: the highest number of an update no longer kept.
        self._forgotten: dict[str, int] = {}

    def keep(self, book: str, sequence: int, update: Any, atom_timestamp: int) -> None:
        kept = self._kept.setdefault(book, deque())
        kept.append(Kept(sequence, update, atom_timestamp))
        oldest = atom_timestamp - self.window_us
        while len(kept) > self.limit or kept[0].atom_timestamp < oldest:
            gone = kept.popleft()
            self._forgotten[book] = max(gone.sequence, self._forgotten.get(book, gone.sequence))

    def replay(self, checks: BookChecks, book: str, sequence: int, atom_timestamp: int) -> list[Kept]:
        """The kept updates of ``book`` numbered above its new snapshot's ``sequence``, oldest first.

        When one such update is no longer kept, the book has a gap and asks for another snapshot.
        """
        if self._forgotten.get(book, sequence) > sequence:
            checks.lost(book, Reason.GAP, f"updates after the snapshot's {sequence} were no longer kept", atom_timestamp)
        return [kept for kept in self._kept.get(book, ()) if kept.sequence > sequence]


def check_order(checks: BookChecks, symbol: str, sequence: int | None, snapshot: bool, atom: int) -> str | None:
    """Enter a book message in ``checks``; the reason to skip it when the book already holds it, else None.

    For sources whose updates carry one number each and no documented predecessor
    (only order is checked): a repeat of the last number, or a number at or below
    the last snapshot's, is already in the book.  An older update above the
    snapshot (out of order) may hold a change the book lacks: it is published, and
    its book stays out of sync, asking for a resync, until a snapshot.
    """
    if snapshot:
        checks.snapshot(symbol, sequence, atom)
        return None
    verdict = checks.update(symbol, sequence, None, atom)
    if verdict is not Verdict.DUPLICATE and verdict is not Verdict.STALE:
        return None
    held = snapshot_sequence(checks, symbol)
    if held is not None and sequence is not None and sequence <= held:
        return IN_SNAPSHOT
    return DUPLICATE_UPDATE if verdict is Verdict.DUPLICATE else None
