"""The in-memory stand-in for a source's raw topic: a bounded queue between connector and standardiser.

The connector's frame handler is synchronous, so a write never waits and
never drops: it appends.  Backpressure comes right after, through
``FrameSink.room``: once the bus holds ``capacity`` items the connection
stops reading its socket until the standardiser has taken a batch.  The
socket's buffers then fill and TCP slows the sender, as a slow Kafka broker
slows the distributed connector.  The bus therefore holds at most
``capacity`` items plus one per writer that was between its write and its
room check.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from typing import Any, NamedTuple

from l3_atom.bounded_memo import BoundedMemo
from l3_atom.dead_letter import CONNECTOR, dead_letter_record
from l3_atom.raw_sink import HEADER_TAIL_CACHE, raw_headers
from l3_atom.topics import ATOM_TIMESTAMP_HEADER

# Builds a NamedTuple without its Python-level __new__ (the fields are given in order).
_new_tuple = tuple.__new__


class RawFrame(NamedTuple):
    """A frame as the raw topic would hold it: key, exact bytes, headers."""

    key: str
    frame: bytes
    headers: list[tuple[str, bytes]]


class ConnectorDeadLetter(NamedTuple):
    """A frame the connector could not archive (too large), as its dead-letter record."""

    key: str
    record: dict[str, Any]


class ConnectorCoverage(NamedTuple):
    """A ``coverage`` record from the connector (a connection lost or back, trades backfilled)."""

    key: str
    record: dict[str, Any]


BusItem = RawFrame | ConnectorDeadLetter | ConnectorCoverage


def _header_tail(connection_symbol: tuple[str, str | None]) -> tuple[tuple[str, bytes], ...]:
    """The headers ``raw_headers`` puts after the timestamp, for one connection and symbol."""
    return tuple(raw_headers(0, *connection_symbol)[1:])


class FrameBus:
    """A bounded FIFO of one source's frames, in the order the connector received them.

    ``put`` and ``room`` run once per frame: they test plain attributes and touch the events only
    when the bus fills, empties or has a taker waiting.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"bus capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._items: deque[BusItem] = deque()
        self._readable = asyncio.Event()
        self._taker_waiting = False
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._room = True
        self._closed = False
        self.puts = 0
        self.pauses = 0
        self.high_water = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: BusItem) -> None:
        """Append ``item`` (never waits, never drops); writers then ask :meth:`room`."""
        items = self._items
        items.append(item)
        self.puts += 1
        size = len(items)
        self.high_water = max(self.high_water, size)
        if size >= self.capacity and self._room:
            self._room = False
            self._has_room.clear()
        if self._taker_waiting:
            self._readable.set()

    def room(self) -> Awaitable[None] | None:
        """None while the bus has room; else an awaitable that completes when the standardiser made some."""
        if self._room:
            return None
        self.pauses += 1
        # A fresh waiter per caller: cancelling one connection must not wake or cancel the others.
        return self._has_room.wait()

    async def take(self, limit: int) -> list[BusItem]:
        """Up to ``limit`` items, waiting for the first; ``[]`` once closed and empty."""
        items = self._items
        while not items:
            if self._closed:
                return []
            self._readable.clear()
            self._taker_waiting = True
            try:
                await self._readable.wait()
            finally:
                self._taker_waiting = False
        popleft = items.popleft
        batch = [popleft() for _ in range(min(limit, len(items)))]
        if not self._room and len(items) < self.capacity:
            self._room = True
            self._has_room.set()
        return batch

    def close(self) -> None:
        """No more items will come: :meth:`take` drains what is left, then returns ``[]``; writers are freed."""
        self._closed = True
        self._readable.set()
        self._room = True
        self._has_room.set()


class BusSink:
    """The ``FrameSink`` the local runtime hands a source's ``DataFeed``: frames go on the bus."""

    def __init__(self, source: str, bus: FrameBus, max_message_bytes: int):
        self.source = source
        self.bus = bus
        self.max_message_bytes = max_message_bytes
        self.dead_letters = 0
        # (connection id, symbol) -> the headers after the timestamp, encoded once.
        self._header_tails = BoundedMemo(_header_tail, HEADER_TAIL_CACHE)

    def write(self, key: str, frame: bytes, atom_timestamp: int, connection_id: str, symbol: str | None) -> None:
        """Once per frame: only the timestamp header is made here (as ``KafkaRawSink`` does)."""
        tail = self._header_tails[connection_id, symbol]
        self.bus.put(_new_tuple(RawFrame, (key, frame, [(ATOM_TIMESTAMP_HEADER, b"%d" % atom_timestamp), *tail])))

    def write_marked(
        self, key: str, frame: bytes, atom_timestamp: int, connection_id: str, symbol: str | None, origin: str
    ) -> None:
        self.bus.put(RawFrame(key, frame, raw_headers(atom_timestamp, connection_id, symbol, origin)))

    def coverage(self, key: str, record: dict[str, Any]) -> None:
        """On the bus, so it keeps its place among the frames around it."""
        self.bus.put(ConnectorCoverage(key, record))

    def dead_letter(self, key: str | None, frame: bytes, error: str, atom_timestamp: int) -> None:
        """The same record ``KafkaRawSink`` publishes, on the bus so it keeps its place in the stream."""
        record = dead_letter_record(
            source=self.source,
            stage=CONNECTOR,
            error=error,
            original=frame,
            atom_timestamp=atom_timestamp,
            max_bytes=self.max_message_bytes,
            key=key,
        )
        self.bus.put(ConnectorDeadLetter(key or self.source, record))
        self.dead_letters += 1

    def room(self) -> Awaitable[None] | None:
        return self.bus.room()

    def poll(self) -> None:
        """Nothing is delivered in the background."""

    def close(self) -> None:
        """Nothing to flush: the runtime drains the bus."""
