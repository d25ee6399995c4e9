"""Where are the holes?  Coverage intervals from ``coverage`` records, and what is missing in a range (pure).

Intervals are ``(start, end)`` in ms since the epoch, half open.  A symbol's
data of one feed is missing while its connection was down (``stream_up``
carries the whole outage; a ``stream_down`` with no ``stream_up`` yet is open)
and, for the books, while the book was lost (``book_resynced`` carries it; a
``book_lost`` not yet resynced is open).  For trades, an outage whose trades
were fetched from the venue (``trades_backfilled``) is no longer missing,
except where ``trades_unrecoverable`` says some could not be.

A record's ``feed`` is ``trades``, ``book`` (both book topics) or null (every
feed on the symbol's connection: stream records).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from l3_atom.topics import LOB, LOB_L3, TRADES, TRADES_L3

Interval = tuple[int, int]

STREAM_DOWN = "stream_down"
STREAM_UP = "stream_up"
BOOK_LOST = "book_lost"
BOOK_RESYNCED = "book_resynced"
TRADES_BACKFILLED = "trades_backfilled"
TRADES_UNRECOVERABLE = "trades_unrecoverable"
KINDS = (STREAM_DOWN, STREAM_UP, BOOK_LOST, BOOK_RESYNCED, TRADES_BACKFILLED, TRADES_UNRECOVERABLE)

# The ``feed`` values of coverage records, and the normalised topics each stands for.
TRADES_FEED = "trades"
BOOK_FEED = "book"
FEED_OF_TOPIC = {TRADES: TRADES_FEED, TRADES_L3: TRADES_FEED, LOB: BOOK_FEED, LOB_L3: BOOK_FEED}
FEEDS = (TRADES_FEED, BOOK_FEED)
# Coverage records kept per symbol for queries (a symbol with more outages than this forgets the oldest).
RECORDS_PER_SYMBOL = 10_000
MS_PER_S = 1000
HTTP_OK, HTTP_BAD_REQUEST = 200, 400


def coverage_record(
    *,
    exchange: str,
    symbol: str,
    kind: str,
    event_timestamp: int,
    atom_timestamp: int,
    feed: str | None = None,
    reason: str | None = None,
    start: int | None = None,
    end: int | None = None,
    sequence_before: int | None = None,
    sequence_after: int | None = None,
    count: int | None = None,
) -> dict[str, Any]:
    """A ``coverage`` record: data of one symbol (and feed) incomplete, complete again, or filled."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "feed": feed,
        "kind": kind,
        "reason": reason,
        "start": start,
        "end": end,
        "sequence_before": sequence_before,
        "sequence_after": sequence_after,
        "count": count,
        "event_timestamp": event_timestamp,
        "atom_timestamp": atom_timestamp,
    }


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint intervals covering the same time; empty ones dropped, touching ones joined."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def subtract(intervals: Iterable[Interval], removed: Iterable[Interval]) -> list[Interval]:
    """The time of ``intervals`` outside every interval of ``removed``."""
    cuts = merge(removed)
    result: list[Interval] = []
    for start, end in merge(intervals):
        for cut_start, cut_end in cuts:
            if cut_end <= start or cut_start >= end:
                continue
            if cut_start > start:
                result.append((start, cut_start))
            start = max(start, cut_end)
            if start >= end:
                break
        if start < end:
            result.append((start, end))
    return result


def clip(intervals: Iterable[Interval], start: int, end: int) -> list[Interval]:
    """``intervals`` within ``[start, end)``."""
    return merge((max(s, start), min(e, end)) for s, e in intervals)


def total_ms(intervals: Iterable[Interval]) -> int:
    return sum(end - start for start, end in merge(intervals))


def _concerns(record: Mapping[str, Any], feed: str) -> bool:
    return record["feed"] is None or record["feed"] == feed


def missing(records: Iterable[Mapping[str, Any]], feed: str, start: int, end: int) -> list[Interval]:
    """The intervals of ``[start, end)`` in which ``feed``'s data is missing, from one symbol's coverage records.

    Open outages (down with no up, lost with no resync) run to ``end``.
    """
    closed: list[Interval] = []
    opened: dict[str, list[int]] = {STREAM_DOWN: [], BOOK_LOST: []}
    ended: dict[str, set[int]] = {STREAM_DOWN: set(), BOOK_LOST: set()}
    filled: list[Interval] = []
    unrecoverable: list[Interval] = []
    for record in records:
        if not _concerns(record, feed) or record["start"] is None:
            continue
        kind, since, until = record["kind"], record["start"], record["end"]
        if kind in opened:
            opened[kind].append(since)
        elif kind in (STREAM_UP, BOOK_RESYNCED) and until is not None:
            closed.append((since, until))
            ended[STREAM_DOWN if kind == STREAM_UP else BOOK_LOST].add(since)
        elif kind == TRADES_BACKFILLED and until is not None:
            filled.append((since, until))
        elif kind == TRADES_UNRECOVERABLE:
            unrecoverable.append((since, until if until is not None else end))
    still_open = [(since, end) for kind, starts in opened.items() for since in starts if since not in ended[kind]]
    holes = subtract(closed + still_open, filled) + unrecoverable
    return clip(holes, start, end)


class Answer(NamedTuple):
    status: int
    body: Any


def parse_range(query: Mapping[str, str], now_ms: int) -> tuple[str, int, int]:
    """``feed``, ``start`` and ``end`` of a coverage query (start defaults to 0, end to now); ValueError if wrong."""
    feed = query.get("feed", TRADES_FEED)
    feed = FEED_OF_TOPIC.get(feed, feed)
    if feed not in FEEDS:
        raise ValueError(f"feed must be one of {', '.join(sorted({*FEEDS, *FEED_OF_TOPIC}))}, got {feed!r}")
    try:
        start = int(query.get("start", 0))
        end = int(query.get("end", now_ms))
    except ValueError:
        raise ValueError("start and end are ms since the epoch") from None
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    return feed, start, end


class CoverageLog:
    """The recent coverage records of every symbol, answering "where are the holes?" (``/coverage``)."""

    def __init__(self, per_symbol: int = RECORDS_PER_SYMBOL):
        self._records: dict[tuple[str, str], deque] = defaultdict(lambda: deque(maxlen=per_symbol))
        self.count = 0

    def add(self, record: Mapping[str, Any]) -> None:
        self._records[record["exchange"], record["symbol"]].append(record)
        self.count += 1

    def records(self, exchange: str, symbol: str) -> list[Mapping[str, Any]]:
        return list(self._records.get((exchange, symbol), ()))

    def answer(self, exchange: str, symbol: str, query: Mapping[str, str], now_ms: int) -> Answer:
        return answer(exchange, symbol, self.records(exchange, symbol), query, now_ms)


def answer(exchange: str, symbol: str, records: Iterable[Mapping[str, Any]], query: Mapping[str, str],
           now_ms: int) -> Answer:
    """``/coverage``: the missing intervals of a symbol's feed in a range, and the seconds they add up to."""
    try:
        feed, start, end = parse_range(query, now_ms)
    except ValueError as exc:
        return Answer(HTTP_BAD_REQUEST, {"error": str(exc)})
    holes = missing(records, feed, start, end)
    return Answer(HTTP_OK, {
        "exchange": exchange, "symbol": symbol, "feed": feed, "start": start, "end": end,
        "missing": [list(hole) for hole in holes], "missing_seconds": total_ms(holes) / MS_PER_S,
    })


def _iso(ms: int | None) -> str:
    if ms is None:
        return "…"
    return datetime.fromtimestamp(ms / MS_PER_S, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe(record: Mapping[str, Any]) -> str:
    """One readable line for a coverage record (``runner.py consume --topic coverage``)."""
    line = f"{record['exchange']} {record['symbol']} {record['feed'] or 'all feeds'}: {record['kind']}"
    start, end = record["start"], record["end"]
    if start is not None:
        line += f" {_iso(start)} -> {_iso(end)}"
        if end is not None:
            line += f" ({(end - start) / MS_PER_S:.3f} s)"
    if record["sequence_before"] is not None or record["sequence_after"] is not None:
        line += f" sequences {record['sequence_before']} .. {record['sequence_after']}"
    if record["count"] is not None:
        line += f" count {record['count']}"
    if record["reason"]:
        line += f" ({record['reason']})"
    return line


# The ``reason`` of a ``book_lost`` record that closes a book for good (the venue no longer lists the symbol):
# a book query then answers that the book is closed rather than serve its last state.
BOOK_CLOSED_PREFIX = "closed: "


def book_closed_reason(why: str) -> str:
    """The ``reason`` of a ``book_lost`` record that closes a book because ``why``."""
    return f"{BOOK_CLOSED_PREFIX}{why}"


def closes_book(record: Mapping[str, Any]) -> bool:
    """Whether a ``coverage`` record closes its symbol's book (see :data:`BOOK_CLOSED_PREFIX`)."""
    reason = record.get("reason")
    return (record.get("kind") == BOOK_LOST and record.get("feed") in (BOOK_FEED, None)
            and isinstance(reason, str) and reason.startswith(BOOK_CLOSED_PREFIX))
