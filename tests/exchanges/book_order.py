"""What a book's order check must act on in recorded traffic, counted from the raw frames without project code.

Each exchange's test lists its book messages as ``(book, number, is snapshot)``
by reading the frames itself; :func:`order_events` then counts, by the
exchanges' documented rules, the updates a standardiser has to skip (a repeat of
the last number, or a number inside the last snapshot), the out-of-order ones
(each asks for a resync) and the updates of a book not yet snapshotted (which ask
for one after 10 s of stream time).  An empty count means: every update is
published and no ``book_resync`` is due.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

REPEAT, IN_SNAPSHOT, OUT_OF_ORDER, NO_SNAPSHOT = "repeat", "in snapshot", "out of order", "no snapshot"


def order_events(messages: Iterable[tuple[str, int | None, bool]]) -> Counter[str]:
    """Counts of the updates that are not simply the next one of a snapshotted book (numbers only ordered)."""
    events: Counter[str] = Counter()
    last: dict[str, int | None] = {}
    snapshots: dict[str, int | None] = {}
    for book, number, is_snapshot in messages:
        if is_snapshot:
            last[book] = snapshots[book] = number
            continue
        if book not in snapshots:
            events[NO_SNAPSHOT] += 1
        previous, snapshot = last.get(book), snapshots.get(book)
        if number is None or previous is None or number > previous:
            last[book] = number
        elif snapshot is not None and number <= snapshot:
            events[IN_SNAPSHOT] += 1
        else:
            events[REPEAT if number == previous else OUT_OF_ORDER] += 1
    return events
