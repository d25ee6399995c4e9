"""The websocket stream of ``runner.py local --serve``, for any client on ``ws://HOST:PORT/ws``.

The protocol, queues and limits are :mod:`l3_atom.ws_stream`'s, shared with
``runner.py gateway``; this output hands it the runtime's records in order.
Its own books (the runtime's query API keeps others, on another output
queue) give new subscribers of a book feed the book as of their stream.
"""

from __future__ import annotations

from collections.abc import Iterable

from l3_atom.local.outputs import LocalRecord
from l3_atom.stream_processing.book_agent import BookStore
from l3_atom.ws_stream import STREAM_PATH, StreamServer, _Client

__all__ = ["STREAM_PATH", "WebsocketOutput", "_Client"]


class WebsocketOutput(StreamServer):
    """Serves the stream on an aiohttp app; ``write`` hands records to the clients that want them."""

    name = "websocket"

    def __init__(self, feeds: Iterable[str], symbols: Iterable[str], client_queue: int):
        super().__init__(feeds, symbols, client_queue, books=BookStore())

    async def start(self) -> None:
        """Nothing to open: the runtime serves the app."""

    async def write(self, records: list[LocalRecord]) -> None:
        publish = self.publish
        for record in records:
            publish(record.topic, record.key, record.value)
