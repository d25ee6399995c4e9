"""Times a user types for a range (``--from``/``--to``): ISO-8601 or milliseconds since the epoch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from l3_atom.errors import UserError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
ACCEPTED = "ISO-8601 (2024-05-01T12:00:00Z; no zone means UTC) or milliseconds since the epoch"


def parse_time(option: str, text: str | None) -> int | None:
    """Milliseconds since the epoch of ``text``; a ``UserError`` naming ``option`` and the accepted forms."""
    if text is None:
        return None
    cleaned = text.strip()
    if cleaned.isdigit():
        return int(cleaned)
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise UserError(f"{option} {text!r} is not a time: use {ACCEPTED}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // ONE_MS


def time_range(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """``--from`` and ``--to`` in ms; refused when the range is empty (``--from`` after ``--to``)."""
    start_ms, end_ms = parse_time("--from", start), parse_time("--to", end)
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise UserError(f"--from {start} is not before --to {end}: the range is empty")
    return start_ms, end_ms


def iso(ms: int) -> str:
    """An ms time as ISO-8601 UTC, for messages."""
    return (EPOCH + ms * ONE_MS).isoformat().replace("+00:00", "Z")
