"""``DataFeed``: the generic connector every source's class fills in.

A source class declares its endpoints and channels as data and implements
three pure methods: ``parse_symbols`` (REST body -> symbol map),
``subscribe_messages`` and ``frame_key``.  This base class does the I/O:
fetch the symbol map, check the requested symbols, open connections (split
to respect per-connection limits), and hand every frame to a ``FrameSink``.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from l3_atom.config import ConnectorSettings
from l3_atom.errors import UserError
from l3_atom.feed import RestClient, WebsocketConnection
from l3_atom.raw_sink import FrameSink
from l3_atom.tokens import Symbol

LOG = logging.getLogger(__name__)
STATS_INTERVAL_S = 10.0
SINK_POLL_INTERVAL_S = 0.1
NEAR_MATCHES = 5


class UnknownSymbol(UserError):
    """A requested symbol the source does not list."""


class DataFeed(ABC):
    """One source's connector.  Subclasses are short and declarative."""

    name: ClassVar[str]
    ws_url: ClassVar[str]
    rest_url: ClassVar[str]
    symbols_path: ClassVar[str]
    channels: ClassVar[tuple[str, ...]]
    # Largest number of symbols one connection may carry (0: no limit).
    max_symbols_per_connection: ClassVar[int] = 0

    def __init__(
        self,
        symbols: Sequence[str],
        sink: FrameSink,
        settings: ConnectorSettings,
        ws_url: str | None = None,
        rest_url: str | None = None,
        channels: Sequence[str] | None = None,
    ):
        self.requested = [str(Symbol.parse(s)) for s in symbols]
        self.sink = sink
        self.settings = settings
        self.ws_endpoint = ws_url or self.ws_url
        self.rest_endpoint = rest_url or self.rest_url
        self.active_channels = tuple(channels or self.channels)
        self.symbol_map: dict[str, str] = {}
        self.connections: list[WebsocketConnection] = []
        self.dead_letters = 0

    # -- pure, per source ------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        """Map normalised symbol -> exchange symbol from the symbols endpoint's body."""

    @abstractmethod
    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        """The frames that subscribe one connection to ``exchange_symbols``."""

    @abstractmethod
    def frame_key(self, frame: bytes) -> str:
        """The raw-topic key of a frame; never raises (unparsable frames get a key too)."""

    # -- I/O -------------------------------------------------------------------------------

    def rest_client(self) -> RestClient:
        return RestClient(self.rest_endpoint)

    async def load_symbol_map(self) -> dict[str, str]:
        client = self.rest_client()
        try:
            return self.parse_symbols(await client.get_text(self.symbols_path))
        finally:
            await client.close()

    def resolve(self, symbol_map: dict[str, str]) -> list[str]:
        """Exchange symbols of the requested symbols; ``UnknownSymbol`` names near matches."""
        missing = [s for s in self.requested if s not in symbol_map]
        if missing:
            hints = []
            for name in missing:
                near = difflib.get_close_matches(name, symbol_map, n=NEAR_MATCHES, cutoff=0.6)
                hints.append(f"{name} (did you mean: {', '.join(near)}?)" if near else name)
            raise UnknownSymbol(f"{self.name} does not list {'; '.join(hints)}")
        return [symbol_map[s] for s in self.requested]

    def _chunks(self, exchange_symbols: list[str]) -> list[list[str]]:
        size = self.max_symbols_per_connection or len(exchange_symbols) or 1
        return [exchange_symbols[i : i + size] for i in range(0, len(exchange_symbols), size)]

    def _on_frame(self, frame: bytes, atom_timestamp: int, connection_id: str) -> None:
        if len(frame) > self.settings.max_frame_bytes:
            self.dead_letters += 1
            error = f"frame of {len(frame)} bytes exceeds max_frame_bytes={self.settings.max_frame_bytes}"
            self.sink.dead_letter(self.frame_key(frame[: self.settings.max_frame_bytes]), frame, error, atom_timestamp)
            return
        self.sink.write(self.frame_key(frame), frame, atom_timestamp, connection_id)

    async def run(self) -> None:
        """Connect and stream until cancelled."""
        self.symbol_map = await self.load_symbol_map()
        exchange_symbols = self.resolve(self.symbol_map)
        for index, chunk in enumerate(self._chunks(exchange_symbols)):
            messages = self.subscribe_messages(chunk)

            async def subscribe(connection: WebsocketConnection, messages: list[str] = messages) -> None:
                for message in messages:
                    await connection.send(message)

            self.connections.append(
                WebsocketConnection(self.ws_endpoint, f"{self.name}.{index}", self.settings, subscribe, self._on_frame)
            )
        LOG.info("%s: streaming %s on %d connection(s)", self.name, ", ".join(self.requested), len(self.connections))
        tasks = [asyncio.create_task(c.run()) for c in self.connections]
        tasks.append(asyncio.create_task(self._housekeeping()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _housekeeping(self) -> None:
        """Serve the sink's delivery reports and log a summary now and then (never per frame)."""
        ticks_per_stats = int(STATS_INTERVAL_S / SINK_POLL_INTERVAL_S)
        tick = 0
        while True:
            await asyncio.sleep(SINK_POLL_INTERVAL_S)
            self.sink.poll()
            tick += 1
            if tick % ticks_per_stats == 0:
                frames = sum(c.stats.frames for c in self.connections)
                connects = sum(c.stats.connects for c in self.connections)
                LOG.info("%s: %d frames, %d dead letters, %d connects", self.name, frames, self.dead_letters, connects)
