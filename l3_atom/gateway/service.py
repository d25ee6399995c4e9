"""``runner.py gateway``: serves the normalised topics on the websocket protocol of ``runner.py local --serve``.

    ws://HOST:PORT/ws      the record stream (protocol: ``l3_atom.ws_stream``)
    http://HOST:PORT/      the live viewer page (``l3_atom.viewer``)
    /health, /ready        liveness, and whether Kafka is assigned and the books caught up (503 until then)
    /metrics               Prometheus: the same counts as /stats, records consumed by topic, readiness
    /stats                 clients, records sent and dropped, refused requests, undecodable records

Kafka is read on a worker thread (``KafkaReader.consume`` blocks); decoding,
the books and the clients' queues live on the event loop.  A slow client
loses only its own records (``StreamServer``): the reader never waits for a
client, and the pipeline never waits for the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from l3_atom import viewer
from l3_atom.config import Settings
from l3_atom.gateway import DEFAULT_CLIENT_QUEUE
from l3_atom.gateway.kafka_reader import KafkaReader
from l3_atom.http_app import add_probes, serve_app
from l3_atom.observability.metrics import CallbackCollector, GatewayCollector, ready_family
from l3_atom.observability.server import METRICS_PATH, metrics_handler
from l3_atom.sources import SOURCES
from l3_atom.stream_processing.book_agent import BookStore
from l3_atom.topics import DEAD_LETTER, LOB, LOB_L3, NORMALISED_TOPICS
from l3_atom.ws_stream import StreamServer

LOG = logging.getLogger(__name__)
FETCH_COUNT = 1000
FETCH_WAIT_S = 0.2
ROLE = "gateway"
STREAMED_TOPICS = (*NORMALISED_TOPICS, DEAD_LETTER)


class Gateway:
    """The reader, the stream and the HTTP app of one gateway."""

    def __init__(self, settings: Settings, client_queue: int = DEFAULT_CLIENT_QUEUE):
        self.reader = KafkaReader(settings, STREAMED_TOPICS, from_start=(LOB, LOB_L3))
        self.stream = StreamServer(STREAMED_TOPICS, [], client_queue, books=BookStore(), exchanges=SOURCES)
        self.app = web.Application()
        self.stream.register(self.app)
        viewer.register(self.app)
        add_probes(self.app, {"kafka": self._kafka_ready})
        self.app.router.add_get("/stats", self._stats)
        self.registry = CollectorRegistry()
        self.registry.register(GatewayCollector(self.stream, self.reader))
        self.registry.register(CallbackCollector(self._ready_families))
        self.app.router.add_get(METRICS_PATH, metrics_handler(self.registry, ROLE))
        self._stop = asyncio.Event()

    def _kafka_ready(self) -> tuple[bool, str]:
        if not self.reader.assigned:
            return False, "assigning partitions"
        if not self.reader.caught_up:
            return False, f"reading the books: {len(self.reader.behind)} partitions behind"
        return True, "reading"

    def _ready_families(self) -> list[Metric]:
        ready, detail = self._kafka_ready()
        return [ready_family(ROLE, [] if ready else [detail])]

    def stats(self) -> dict[str, Any]:
        return {**self.stream.stats(), "records": self.reader.consumed.total(), "undecodable": self.reader.undecodable,
                "symbols": len(self.stream.symbols)}

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    def stop(self) -> None:
        """Ask :meth:`run` to stop (safe from a signal handler)."""
        self._stop.set()

    async def run(self, host: str, port: int, on_listening: Callable[[str], None] = print) -> None:
        runner = await serve_app(self.app, host, port)
        try:
            await asyncio.to_thread(self.reader.assign)
            bound_host, bound_port = runner.addresses[0][:2]
            on_listening(f"gateway serving http://{bound_host}:{bound_port}/ (viewer), "
                         f"ws://{bound_host}:{bound_port}/ws (stream)")
            reading = asyncio.create_task(self._read())
            stopping = asyncio.create_task(self._stop.wait())
            await asyncio.wait([reading, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not self._stop.is_set():
                reading.result()
                raise RuntimeError("the Kafka reader ended unexpectedly")
            # It stops after its current fetch: the consumer is closed only when no thread polls it.
            await reading
        finally:
            await self.stream.close()
            await runner.cleanup()
            self.reader.close()

    async def _read(self) -> None:
        """Fetch on a thread, hand the records to the stream here, until stopped."""
        stream, reader = self.stream, self.reader
        known: set[str] = set()
        while not self._stop.is_set():
            fetched = await asyncio.to_thread(reader.consume, FETCH_COUNT, FETCH_WAIT_S)
            for message in fetched:
                topic, key = message.topic, message.key
                if topic != DEAD_LETTER and key not in known:
                    known.add(key)
                    stream.add_symbol(key)
                # Records nobody subscribed to are not decoded (the books want theirs).
                if not stream.wanted(topic, key):
                    continue
                value = reader.decode(message)
                if value is None:
                    continue
                if message.history:
                    stream.keep_book(topic, value)
                else:
                    stream.publish(topic, key, value)
            # Let clients be served between fetches.
            await asyncio.sleep(0)


async def run_gateway(settings: Settings, host: str, port: int, client_queue: int) -> None:
    """``runner.py gateway``: serve until SIGINT/SIGTERM."""
    gateway = Gateway(settings, client_queue)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, gateway.stop)
    await gateway.run(host, port, on_listening=lambda line: print(line, flush=True))
