"""Dead-letter records: what failed, where, and the original bytes.

Nothing is dropped silently (ARCHITECTURE.md, principle 5): a frame the
connector cannot archive, or a raw message the processor cannot standardise,
becomes one record on the ``dead_letter`` topic.
"""

from __future__ import annotations

from typing import Any

CONNECTOR = "connector"
PROCESSOR = "processor"
# Room left for the record's other fields inside the broker's message limit.
ENVELOPE_BYTES = 4096


def dead_letter_record(
    *,
    source: str,
    stage: str,
    error: str,
    original: bytes,
    atom_timestamp: int,
    max_bytes: int,
    raw_topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """A ``dead_letter`` record; ``original`` is cut to fit the broker's message limit."""
    keep = max(0, max_bytes - ENVELOPE_BYTES)
    return {
        "source": source,
        "stage": stage,
        "error": error,
        "raw_topic": raw_topic,
        "partition": partition,
        "offset": offset,
        "key": key,
        "original": bytes(original[:keep]),
        "original_size": len(original),
        "atom_timestamp": atom_timestamp,
    }
