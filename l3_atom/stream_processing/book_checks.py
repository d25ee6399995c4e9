"""Book integrity inside a standardiser: sequence checks on the exchange's own numbers, and resync requests.

A standardiser that publishes a book keeps one :class:`BookChecks`.  It tells
the standardiser whether a message continues its book (see
:class:`~l3_atom.books.integrity.Continuity`) and turns a lost book into a
``book_resync`` output, which the runtime delivers to the source's connector
(Kafka topic ``book_resync`` in the distributed pipeline, a direct call in
``runner.py local``).  State is one small entry per book.
"""

from __future__ import annotations

from l3_atom.books.integrity import Continuity, Reason, Verdict
from l3_atom.stream_processing.records_build import book_resync
from l3_atom.stream_processing.standardiser import Output
from l3_atom.topics import BOOK_RESYNC, normalised_key

__all__ = ["BookChecks", "Reason", "Verdict"]


class BookChecks:
    """Continuity of one source's books by normalised symbol, and the requests it calls for."""

    def __init__(self, source: str, continuity: Continuity | None = None):
        self.source = source
        self.continuity = continuity or Continuity()

    def snapshot(self, symbol: str, sequence: int | None, atom_timestamp: int) -> None:
        self.continuity.snapshot(symbol, sequence, atom_timestamp)

    def update(self, symbol: str, sequence: int | None, prev_sequence: int | None, atom_timestamp: int) -> Verdict:
        return self.continuity.update(symbol, sequence, prev_sequence, atom_timestamp)

    def mismatch(self, symbol: str, detail: str, atom_timestamp: int) -> None:
        self.continuity.mismatch(symbol, detail, atom_timestamp)

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
        return [Output(BOOK_RESYNC, normalised_key(self.source, symbol), record)]

    def stats(self) -> dict[str, int]:
        return dict(self.continuity.counts)
