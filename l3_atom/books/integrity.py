"""Is a book still right?  Sequence continuity per book, and when to ask for a fresh snapshot (pure).

Both the standardisers (which see the exchange's own numbers: Binance ``U``/``pu``,
OKX ``prevSeqId``, Coinbase's per-product sequence, checksums) and the books agent
(which sees the normalised ``sequence``/``prev_sequence``) keep one
:class:`Continuity`.  It says, for each message, whether it continues the book
(``NEXT``), repeats one already applied (``DUPLICATE``), is older than the book
(``STALE``: out of order, or already inside the last snapshot) or shows that updates
were missed (``GAP``).  A book that is out of sync (a gap, an out-of-order message,
a checksum mismatch, or updates with no snapshot yet) stays so until a snapshot
resets it, and :meth:`Continuity.resync_due` says when to ask the connector for one:
at once, then again every ``retry_us`` while none comes, so nothing waits forever.

Time is the frames' ``atom_timestamp`` (µs), never the wall clock, so the same
frames give the same requests in every runtime and in tests.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

# Stream time (µs) between two requests for the same book while no snapshot comes.
DEFAULT_RETRY_US = 10_000_000


class Verdict(enum.Enum):
    """What one message is to its book."""

    NEXT = "next"
    DUPLICATE = "duplicate"
    STALE = "stale"
    GAP = "gap"


# The verdict on almost every message, named once: looking a member up on its Enum class costs more.
NEXT = Verdict.NEXT


class Reason(enum.StrEnum):
    """Why a book needs a snapshot (the ``book_resync`` schema's ``reason``)."""

    GAP = "gap"
    OUT_OF_ORDER = "out_of_order"
    CHECKSUM = "checksum"
    NO_SNAPSHOT = "no_snapshot"
    TIMEOUT = "timeout"


@dataclass(slots=True)
class BookState:
    """One book's position: the last sequence applied and whether the book can be trusted."""

    last: int | None = None
    # The last snapshot's sequence: book updates numbered at or below it are already inside it.
    snapshot_sequence: int | None = None
    snapshot_seen: bool = False
    in_sync: bool = False
    # Why it is out of sync, and the detail for people; None when in sync.
    reason: Reason | None = None
    detail: str = ""
    # atom_timestamp of the last request (or of the first sighting, which starts the first wait).
    requested_at: int | None = None
    requests: int = 0


class Continuity:
    """Sequence continuity of many books, by key, with the counts an operator wants to see."""

    def __init__(self, retry_us: int = DEFAULT_RETRY_US):
        self.retry_us = retry_us
        self.books: dict[str, BookState] = {}
        self.counts: Counter[str] = Counter()

    def state(self, book: str, atom_timestamp: int) -> BookState:
        state = self.books.get(book)
        if state is None:
            # A book first seen without a snapshot: give the connector's own snapshot one wait to arrive.
            state = self.books[book] = BookState(reason=Reason.NO_SNAPSHOT, requested_at=atom_timestamp)
            state.detail = "updates before any snapshot"
        return state

    def snapshot(self, book: str, sequence: int | None, atom_timestamp: int) -> None:
        """A full snapshot replaced the book: it is right again from ``sequence`` on."""
        state = self.state(book, atom_timestamp)
        state.last = sequence
        state.snapshot_sequence = sequence
        state.snapshot_seen = True
        state.in_sync = True
        state.reason = None
        state.detail = ""
        state.requested_at = None
        self.counts["snapshots"] += 1

    def update(self, book: str, sequence: int | None, prev_sequence: int | None, atom_timestamp: int) -> Verdict:
        """The verdict on one update message numbered ``sequence`` that follows ``prev_sequence``.

        ``prev_sequence`` is the number the exchange says came before (None: it does not say, and
        then only order is checked).  A message may overlap the book (its ``prev_sequence`` below
        the book's: Binance's first diff after a snapshot); it is a gap only when it starts beyond.
        """
        state = self.books.get(book) or self.state(book, atom_timestamp)
        last = state.last
        if sequence is None:
            return NEXT
        if last is not None:
            if sequence == last:
                self.counts["duplicates"] += 1
                return Verdict.DUPLICATE
            if sequence < last:
                if state.snapshot_sequence is None or sequence > state.snapshot_sequence:
                    self.counts["out_of_order"] += 1
                    self._lose(state, Reason.OUT_OF_ORDER, f"sequence {sequence} after {last}")
                return Verdict.STALE
            if prev_sequence is not None and prev_sequence > last:
                state.last = sequence
                self.counts["gaps"] += 1
                self._lose(state, Reason.GAP, f"expected an update after {last}, got {prev_sequence}->{sequence}")
                return Verdict.GAP
        state.last = sequence
        return NEXT

    def renumber(self, book: str, sequence: int, atom_timestamp: int) -> None:
        """The exchange restarted its count (OKX after maintenance): go on from ``sequence``, unchecked by number.

        The snapshot's bound goes too, so no later update is taken for one already inside the snapshot.
        """
        state = self.state(book, atom_timestamp)
        state.last = sequence
        state.snapshot_sequence = None

    def mismatch(self, book: str, detail: str, atom_timestamp: int) -> None:
        """The book does not hash to the exchange's checksum."""
        self.counts["checksum_mismatches"] += 1
        self._lose(self.state(book, atom_timestamp), Reason.CHECKSUM, detail)

    def lost(self, book: str, reason: Reason, detail: str, atom_timestamp: int) -> None:
        """Something outside the book's own numbers shows it is wrong (e.g. a gap in a wider stream)."""
        self._lose(self.state(book, atom_timestamp), reason, detail)

    def verified(self) -> None:
        self.counts["checksums_verified"] += 1

    def resync_due(self, book: str, atom_timestamp: int) -> tuple[Reason, str] | None:
        """(reason, detail) when a snapshot request for ``book`` should go out now, else None."""
        state = self.books.get(book)
        if state is None or state.in_sync:
            return None
        if state.requested_at is not None and atom_timestamp - state.requested_at < self.retry_us:
            return None
        # The first request names what went wrong; a repeat means the last request brought no snapshot.
        reason = state.reason if state.requests == 0 and state.reason is not None else Reason.TIMEOUT
        state.requested_at = atom_timestamp
        state.requests += 1
        self.counts["resyncs_requested"] += 1
        return reason, state.detail

    def in_sync(self, book: str) -> bool:
        state = self.books.get(book)
        return state is not None and state.in_sync

    @staticmethod
    def _lose(state: BookState, reason: Reason, detail: str) -> None:
        """The book went wrong: ask now (a lost book is worth a request even right after another)."""
        if state.in_sync or state.reason is Reason.NO_SNAPSHOT:
            state.requested_at = None
            state.requests = 0
        state.in_sync = False
        state.reason = reason
        state.detail = detail
