"""An output the caller's own code reads: batches on a bounded asyncio queue (``l3_atom.stream``).

A reader slower than the stream fills the queue; ``write`` then waits, the
runtime's output worker fills, the standardiser waits and the bus stops the
connections (backpressure, as for every other output).  Once the reader has
left (:meth:`abandon`), batches are dropped so that the runtime can shut
down without waiting for a reader that will not come back.
"""

from __future__ import annotations

import asyncio
from typing import Any

from l3_atom.local.outputs import LocalRecord

# Batches (of up to a standardiser batch of records each) waiting for the reader.
DEFAULT_QUEUE_BATCHES = 4


class QueueOutput:
    """Record batches for an in-process reader; ``None`` on the queue marks the end of the stream."""

    name = "queue"

    def __init__(self, capacity: int = DEFAULT_QUEUE_BATCHES):
        self.queue: asyncio.Queue[list[LocalRecord] | None] = asyncio.Queue(capacity)
        self.records = 0
        self._abandoned = False

    async def start(self) -> None:
        """Nothing to open."""

    async def write(self, records: list[LocalRecord]) -> None:
        if not self._abandoned:
            await self.queue.put(records)
            self.records += len(records)

    async def close(self) -> None:
        if not self._abandoned:
            await self.queue.put(None)

    def abandon(self) -> None:
        """The reader has left: drop what is queued and what comes, and free a writer waiting for room."""
        self._abandoned = True
        while not self.queue.empty():
            self.queue.get_nowait()

    def stats(self) -> dict[str, Any]:
        return {"records": self.records, "queued_batches": self.queue.qsize()}
