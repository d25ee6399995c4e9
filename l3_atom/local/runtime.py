"""The one-process runtime: each source's connector, bus and standardiser, then outputs.

    DataFeed ──write──> FrameBus (bounded) ──take──> RawMessageProcessor ──> OutputWorker queues ──> outputs
    (unchanged)        ("<source>_raw")              (standardise, Avro-validate,  (bounded; slow output =
                                                      dead-letter rule)             the runtime waits)

Every record goes through exactly what the distributed processor does with
it (``RawMessageProcessor``: standardise, validate against
``static/schemas``, or dead-letter), with a ``TopicValidator`` where the
processor has an ``AvroEncoder``: it refuses what the Avro writer refuses and
returns the record a reader would decode from the writer's bytes, without
writing them.  So an output gets the very record a Kafka consumer would, and
no record is encoded to Avro and decoded back.  Memory is bounded at
every step; where a step is full, the one before it waits, back to the
connector, which stops reading its socket (see ``bus.py``).

Extension point: ``Runtime.http_app`` is the aiohttp application served with
``--serve`` (``/ws`` stream, ``/stats``); add routes to it, and add an output
(``add_output``) to see the records, e.g. a book or candle API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
from aiohttp import web

from l3_atom.avro.validator import TopicValidator
from l3_atom.data_source import SKIPPED_PRODUCTS, DataFeed
from l3_atom.errors import ServiceUnavailable, UserError
from l3_atom.http_app import serve_app
from l3_atom.local.bus import BusItem, BusSink, ConnectorCoverage, FrameBus, RawFrame
from l3_atom.local.outputs import LocalRecord, Output, OutputStopped
from l3_atom.local.progress import Progress, StatusLine
from l3_atom.observability.server import MetricsServer
from l3_atom.raw_sink import FrameSink
from l3_atom.sources import standardiser_class
from l3_atom.stream_processing.raw_messages import RawMessageProcessor
from l3_atom.topics import BOOK_RESYNC, COVERAGE, DEAD_LETTER, normalised_key, raw_topic

LOG = logging.getLogger(__name__)
# Frames standardised per batch: large enough to amortise the hand-over, small enough to keep latency low.
BATCH_FRAMES = 256
# Batches an output may have queued before the runtime waits for it.
OUTPUT_QUEUE_BATCHES = 8
# At shutdown, how long each step may take to hand on what it holds before it is given up.
DRAIN_TIMEOUT_S = 10.0
PROGRESS_INTERVAL_S = 1.0
STATS_PATH = "/stats"
CONNECTOR_DEAD_LETTER = "connector: frame too large"
# Put after the batches of a run of frames once the bus is empty: outputs that hold batches flush them.
CAUGHT_UP: list[LocalRecord] = []
# Builds a NamedTuple without its Python-level __new__ (the fields are given in order).
_new_tuple = tuple.__new__


class SourceRuntime:
    """One source: its ``DataFeed`` on a bus, and the processor that turns the bus's frames into records."""

    def __init__(
        self,
        source: str,
        make_feed: Callable[[FrameSink], DataFeed],
        feeds: Iterable[str],
        max_message_bytes: int,
        bus_frames: int,
    ):
        self.source = source
        self.bus = FrameBus(bus_frames)
        self.sink = BusSink(source, self.bus, max_message_bytes)
        self.feed = make_feed(self.sink)
        standardiser = standardiser_class(source)()
        # Validators in the encoders' place: each "encoded" value is the record a consumer would decode.
        validators = {topic: TopicValidator(topic) for topic in [*standardiser.topics, DEAD_LETTER, COVERAGE]}
        # Records the connector side makes itself (coverage of its connections), by item type; else dead letters.
        self._connector_validators = {ConnectorCoverage: (COVERAGE, validators[COVERAGE].encode)}
        self._dead_letter = (DEAD_LETTER, validators[DEAD_LETTER].encode)
        self.processor = RawMessageProcessor(source, standardiser, validators, max_message_bytes)
        self.wanted = frozenset(feeds) | {DEAD_LETTER, COVERAGE}
        self.raw_topic = raw_topic(source)
        # Position of the next frame in this run: the "offset" a processor dead letter names.
        self.offset = 0

    @property
    def keys(self) -> list[str]:
        """The record keys this source streams (``<source>_<symbol>``)."""
        return [normalised_key(self.source, symbol) for symbol in self.feed.requested]

    def standardise(self, items: list[BusItem]) -> list[LocalRecord]:
        """The records (and dead letters) of a batch of frames, for the wanted feeds, in frame order."""
        process = self.processor.process
        raw_name = self.raw_topic
        wanted = self.wanted
        records = []
        append = records.append
        for item in items:
            if type(item) is RawFrame:
                key, frame, headers = item
                validated = process(frame, headers, raw_name, None, self.offset, key)
                self.offset += 1
                for record in validated:
                    topic = record[0]
                    if topic == BOOK_RESYNC:
                        self.resync(record[2])
                    if topic in wanted:
                        # An Encoded is (topic, key, value) as a LocalRecord is: the same fields, retyped.
                        append(_new_tuple(LocalRecord, record))
            else:
                topic, validate = self._connector_validators.get(type(item), self._dead_letter)
                if topic == COVERAGE:
                    self.processor.records[COVERAGE] += 1
                append(LocalRecord(topic, item.key, validate(item.record)))
        return records

    def resync(self, request: dict[str, Any]) -> None:
        """A book of this source needs a fresh snapshot: the feed fetches one (as the connector does on Kafka)."""
        self.feed.resync(request["symbol"], request["reason"])

    def stats(self) -> dict[str, Any]:
        dead_letters = dict(self.processor.dead_letters)
        if self.sink.dead_letters:
            dead_letters[CONNECTOR_DEAD_LETTER] = self.sink.dead_letters
        return {
            "frames": self.bus.puts,
            "bus": len(self.bus),
            "bus_capacity": self.bus.capacity,
            "bus_high_water": self.bus.high_water,
            "paused": self.bus.pauses,
            "skipped": dict(self.processor.standardiser.skipped),
            "unknown_message_types": dict(self.processor.standardiser.unknown_types),
            "book_resyncs": dict(self.feed.resyncs),
            "listing_changes": dict(getattr(self.feed, "listing_changes", {})),
            "skipped_products": SKIPPED_PRODUCTS[self.source],
            "dead_letters": dead_letters,
        }


class OutputWorker:
    """One output behind a bounded queue of batches: when it is full, whoever publishes waits.

    An output that stops (:class:`OutputStopped`: its disk is full) says so in one line and takes
    nothing more (the batches it misses are counted); the others go on.  When every output of
    ``siblings`` has stopped, the last one ends the run.
    """

    def __init__(self, output: Output, siblings: list[OutputWorker], capacity: int = OUTPUT_QUEUE_BATCHES):
        self.output = output
        self.siblings = siblings
        self.queue: asyncio.Queue[list[LocalRecord] | None] = asyncio.Queue(capacity)
        self.failed = False
        self.stopped: str | None = None
        self.dropped = 0

    async def put(self, batch: list[LocalRecord] | None) -> None:
        if self.stopped is not None and batch is not None:
            self.dropped += len(batch)  # CAUGHT_UP is empty
        elif not self.failed:
            await self.queue.put(batch)

    async def run(self) -> None:
        """Write batches until the ``None`` that ends the stream; on failure, free those waiting to put."""
        flush = getattr(self.output, "flush", None)
        try:
            while (batch := await self.queue.get()) is not None:
                if batch is CAUGHT_UP:
                    if flush is not None:
                        await flush()
                else:
                    await self.output.write(batch)
        except OutputStopped as exc:
            self.stopped = str(exc)
            if all(worker.stopped for worker in self.siblings):
                self._drain()
                raise OutputStopped(f"every output has stopped, the last: {exc}") from None
            LOG.error("%s; the other outputs and the stream go on", exc)
            # Nothing more is queued (put drops it), but a put that waited for room lands: count it too.
            while (batch := await self.queue.get()) is not None:
                self.dropped += len(batch)
        except Exception:
            self.failed = True
            self._drain()
            raise

    def _drain(self) -> None:
        """Empty the queue (freeing whoever waits to put); after a stop, what it held is counted as dropped."""
        while not self.queue.empty():
            batch = self.queue.get_nowait()
            if batch is not None and self.stopped is not None:
                self.dropped += len(batch)

    def stats(self) -> dict[str, Any]:
        stats = {**self.output.stats(), "queued_batches": self.queue.qsize()}
        if self.stopped is not None:
            stats |= {"stopped": self.stopped, "dropped": self.dropped}
        return stats


class Runtime:
    """Runs sources into outputs until :meth:`stop`, or until a source or an output fails."""

    def __init__(
        self,
        sources: list[SourceRuntime],
        feeds: Iterable[str],
        serve: tuple[str, int] | None = None,
        status: StatusLine | None = None,
    ):
        self.sources = sources
        self.feeds = list(feeds)
        self.serve = serve
        self.status = status
        self.workers: list[OutputWorker] = []
        self.http_app = web.Application()
        self.http_app.router.add_get(STATS_PATH, self._stats_handler)
        self.address: tuple[str, int] | None = None
        # Serves /metrics, /health and /ready while the runtime runs (see ``local/metrics.py``).
        self.metrics: MetricsServer | None = None
        self._stop = asyncio.Event()

    @property
    def keys(self) -> list[str]:
        return [key for source in self.sources for key in source.keys]

    def add_output(self, output: Output) -> None:
        self.workers.append(OutputWorker(output, self.workers))

    def resync(self, request: dict[str, Any]) -> None:
        """A ``book_resync`` request from an output that keeps books: to the source it names."""
        for source in self.sources:
            if source.source == request["exchange"]:
                source.resync(request)

    def stop(self) -> None:
        """Ask :meth:`run` to stop (safe from a signal handler)."""
        self._stop.set()

    def stats(self) -> dict[str, Any]:
        records: Counter[str] = Counter()
        for source in self.sources:
            records.update(source.processor.records)
        sources = {source.source: source.stats() for source in self.sources}
        counted = {topic: records[topic] for topic in self.feeds}
        if records[COVERAGE]:
            counted[COVERAGE] = records[COVERAGE]  # coverage reaches the outputs whatever the feeds
        return {
            "sources": sources,
            "records": counted,
            "dead_letters": sum(sum(state["dead_letters"].values()) for state in sources.values()),
            "outputs": {w.output.name: w.stats() for w in self.workers},
        }

    async def _stats_handler(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def run(self) -> None:
        """Stream until stopped; then drain what was received into the outputs, close them, and re-raise a failure."""
        http = await self._serve() if self.serve else None
        if self.metrics is not None:
            await self.metrics.start()
            print(f"metrics on {self.metrics.address}/metrics", file=sys.stderr, flush=True)
        tasks: dict[str, list[asyncio.Task]] = {"feeds": [], "processing": [], "outputs": []}
        progress = stopping = None
        try:
            for worker in self.workers:
                try:
                    await worker.output.start()
                except OSError as exc:
                    raise UserError(f"cannot open the {worker.output.name} output: {exc}") from None
                tasks["outputs"].append(asyncio.create_task(worker.run(), name=f"output {worker.output.name}"))
            for source in self.sources:
                tasks["processing"].append(asyncio.create_task(self._process(source), name=f"{source.source} std"))
                tasks["feeds"].append(asyncio.create_task(self._connect(source), name=f"{source.source} connector"))
            if self.status is not None:
                progress = asyncio.create_task(self._progress())
            stopping = asyncio.create_task(self._stop.wait())
            running = [task for group in tasks.values() for task in group]
            done, _ = await asyncio.wait([*running, stopping], return_when=asyncio.FIRST_COMPLETED)
            ended = [task for task in done if task is not stopping]
            for task in ended:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()
            if ended:
                raise RuntimeError(f"{ended[0].get_name()} ended unexpectedly")
        finally:
            for helper in (progress, stopping):
                if helper is not None:
                    helper.cancel()
            await self._shutdown(tasks)
            if self.status is not None:
                self.status.clear()
            if http is not None:
                await http.cleanup()
            if self.metrics is not None:
                await self.metrics.stop()

    async def _serve(self) -> web.AppRunner:
        host, port = self.serve
        runner = await serve_app(self.http_app, host, port)
        self.address = runner.addresses[0][:2]
        paths = sorted({route.resource.canonical for route in self.http_app.router.routes()})
        LOG.info("serving http://%s:%d: %s", *self.address, ", ".join(paths))
        return runner

    @staticmethod
    async def _connect(source: SourceRuntime) -> None:
        """The source's connector; failing to reach it at start (its symbol list) is the user's to fix."""
        try:
            await source.feed.run()
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            raise ServiceUnavailable(f"{source.source} could not be reached: {exc}") from None

    async def _process(self, source: SourceRuntime) -> None:
        take = source.bus.take
        standardise = source.standardise
        workers = self.workers
        bus = source.bus
        held = False
        while items := await take(BATCH_FRAMES):
            records = standardise(items)
            if records:
                for worker in workers:
                    await worker.put(records)
                held = True
            if held and not bus:  # caught up: outputs that hold batches (JSON lines) write them now
                for worker in workers:
                    await worker.put(CAUGHT_UP)
                held = False
            # Let connections read and clients be served between batches.
            await asyncio.sleep(0)

    async def _shutdown(self, tasks: dict[str, list[asyncio.Task]]) -> None:
        """Connectors first, then what the buses hold, then the outputs' queues; each step has a time limit."""
        for task in tasks["feeds"]:
            task.cancel()
        await asyncio.gather(*tasks["feeds"], return_exceptions=True)
        for source in self.sources:
            source.bus.close()
        await _finish(tasks["processing"], "standardising what the buses hold")
        for worker in self.workers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.put(None), DRAIN_TIMEOUT_S)
        await _finish(tasks["outputs"], "writing what the outputs hold")
        for worker in self.workers:
            try:
                await asyncio.wait_for(worker.output.close(), DRAIN_TIMEOUT_S)
            except Exception:  # close the others; this one is logged
                LOG.exception("could not close output %s", worker.output.name)

    async def _progress(self) -> None:
        loop = asyncio.get_running_loop()
        progress = Progress()
        progress.line(self.stats(), 0.0)
        last = loop.time()
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            now = loop.time()
            self.status.show(progress.line(self.stats(), now - last))
            last = now


async def _finish(tasks: list[asyncio.Task], what: str) -> None:
    """Wait for ``tasks`` up to the drain limit, cancel the ones still running, and log new failures."""
    # Tasks already done failed or ended before the shutdown: run() has reported that.
    running = [task for task in tasks if not task.done()]
    if running:
        _, pending = await asyncio.wait(running, timeout=DRAIN_TIMEOUT_S)
        if pending:
            LOG.warning("gave up %s after %.0f s (an output is stuck)", what, DRAIN_TIMEOUT_S)
            for task in pending:
                task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if task in running and isinstance(result, Exception):
            LOG.error("%s failed while %s: %r", task.get_name(), what, result)
