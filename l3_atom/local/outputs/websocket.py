"""The websocket stream of ``runner.py local --serve``, for any client on ``ws://HOST:PORT/ws``.

The protocol, queues and limits are :mod:`l3_atom.ws_stream`'s, shared with
``runner.py gateway``; this output hands it the runtime's records in order.
Its books give new subscribers of a book feed the book as of their stream;
the runtime's query API answers from the same books (``books``), so each
book record is applied once, and their snapshot requests go to the sources
(``on_resync``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from l3_atom.local.outputs import LocalRecord
from l3_atom.stream_processing.book_agent import BookStore
from l3_atom.ws_stream import STREAM_PATH, StreamServer, _Client

__all__ = ["STREAM_PATH", "WebsocketOutput", "_Client"]


class WebsocketOutput(StreamServer):
    """Serves the stream on an aiohttp app; ``write`` hands records to the clients that want them."""

    name = "websocket"

    def __init__(
        self,
        feeds: Iterable[str],
        symbols: Iterable[str],
        client_queue: int,
        on_resync: Callable[[dict[str, Any]], None] | None = None,
    ):
        super().__init__(feeds, symbols, client_queue, books=BookStore(), on_resync=on_resync)

    async def start(self) -> None:
        """Nothing to open: the runtime serves the app."""

    async def write(self, records: list[LocalRecord]) -> None:
        publish = self.publish
        for record in records:
            publish(record.topic, record.key, record.value)
