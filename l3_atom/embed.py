"""L3 Atom as a library: normalised records in your own Python program.

    async with stream({"coinbase": ["BTC.USD"]}, feeds=["trades_l3", "lob"]) as records:
        async for record in records:          # TradeL3, Lob, ... (l3_atom.stream_processing.records)
            ...

``stream`` runs ``runner.py local``'s runtime (connectors, bounded bus,
``RawMessageProcessor``) in the caller's event loop, with one more output: a
bounded queue the ``async for`` reads.  A slow reader therefore slows the
connections exactly as a slow file does in local mode, and memory stays
bounded.  ``kafka_records`` reads the distributed pipeline's normalised topics
into the same typed records through the Schema Registry.

The records are the project's Faust Records (``RECORDS``); ``tests/test_records.py``
proves they agree with ``static/schemas`` field by field, decimals stay
``Decimal``.  The record's feed is ``FEED_OF[type(record)]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp

from l3_atom.config import Settings
from l3_atom.errors import ServiceUnavailable
from l3_atom.local.cli import DEFAULT_BUS_FRAMES, SourceOptions, build_sources
from l3_atom.local.outputs import LocalRecord
from l3_atom.local.outputs.queue import DEFAULT_QUEUE_BATCHES, QueueOutput
from l3_atom.local.runtime import Runtime, SourceRuntime
from l3_atom.stream_processing.records import RECORDS

if TYPE_CHECKING:
    import faust

LOG = logging.getLogger(__name__)
# The feed (topic) of each record class.
FEED_OF: dict[type, str] = {record: topic for topic, record in RECORDS.items()}
# How long the Kafka helper waits for a message before asking again.
KAFKA_POLL_S = 0.5
KAFKA_GROUP_ID = "l3_atom_records"
KAFKA_METADATA_TIMEOUT_S = 10.0


def typed(record: LocalRecord) -> faust.Record:
    """The decoded record as its topic's Record (fields exactly the schema's; decimals stay ``Decimal``)."""
    return RECORDS[record.topic](**record.value)


async def _check_symbols(source: SourceRuntime) -> None:
    """Fetch the source's symbol list now, so an unknown symbol raises at entry (with near matches)."""
    feed = source.feed
    if not feed.requested:
        return
    try:
        symbol_map = await feed.load_symbol_map()
    except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
        raise ServiceUnavailable(f"{source.source} could not be reached: {exc}") from None
    feed.resolve(symbol_map)


class RecordStream:
    """The records of a running :func:`stream`, in the order each source's frames came; ``stats()`` as ``/stats``."""

    def __init__(self, runtime: Runtime, output: QueueOutput, running: asyncio.Task):
        self._runtime = runtime
        self._output = output
        self._running = running
        self._batch: list[LocalRecord] = []
        self._next = 0

    def __aiter__(self) -> RecordStream:
        return self

    async def __anext__(self) -> faust.Record:
        while self._next >= len(self._batch):
            batch = await self._output.queue.get()
            if batch is None:
                # The end of the stream: the runtime stopped (it always closes its outputs); a failure is the reader's.
                await self._running
                raise StopAsyncIteration
            self._batch, self._next = batch, 0
        record = self._batch[self._next]
        self._next += 1
        return typed(record)

    def stats(self) -> dict[str, Any]:
        """Frames, records, dead letters, skips and the bus's fill per source (``runner.py local``'s ``/stats``)."""
        return self._runtime.stats()


@contextlib.asynccontextmanager
async def stream(
    sources: Mapping[str, Sequence[str]],
    feeds: Iterable[str] | None = None,
    *,
    ws_urls: Mapping[str, str] | None = None,
    rest_urls: Mapping[str, str] | None = None,
    channels: Mapping[str, Sequence[str]] | None = None,
    settings: Settings | None = None,
    bus_frames: int = DEFAULT_BUS_FRAMES,
    queue_batches: int = DEFAULT_QUEUE_BATCHES,
) -> AsyncIterator[RecordStream]:
    """Stream ``sources`` (source id -> normalised symbols) as typed records, with dead letters as ``DeadLetter``.

    ``feeds`` (default: every feed the sources publish) are checked, as are the
    sources and symbols, before anything streams: mistakes raise ``UserError``
    (``UnknownSource``, ``UnknownSymbol`` with near matches).  ``ws_urls`` and
    ``rest_urls`` point sources elsewhere (a simulator, a replay server).
    Leaving the block, or cancelling the task in it, stops the connectors and
    leaves no task behind.
    """
    settings = settings or Settings()
    ws_urls, rest_urls, channels = ws_urls or {}, rest_urls or {}, channels or {}
    chosen = [
        SourceOptions(
            name,
            list(symbols),
            ws_urls.get(name),
            rest_urls.get(name),
            ",".join(channels[name]) if name in channels else None,
        )
        for name, symbols in sources.items()
    ]
    requested = ",".join(feeds) if feeds is not None else None
    runtime_sources, chosen_feeds = build_sources(chosen, requested, settings, bus_frames)
    for source in runtime_sources:
        await _check_symbols(source)
    runtime = Runtime(runtime_sources, chosen_feeds)
    output = QueueOutput(queue_batches)
    runtime.add_output(output)
    running = asyncio.create_task(runtime.run(), name="l3_atom stream")
    try:
        yield RecordStream(runtime, output, running)
    finally:
        output.abandon()
        runtime.stop()
        try:
            # Shielded: a second cancellation of the caller must not leave the runtime half shut down.
            await asyncio.shield(running)
        except asyncio.CancelledError:
            if not running.done():
                await running
            raise


def kafka_records(
    topics: Sequence[str],
    bootstrap: str,
    registry_url: str,
    *,
    group_id: str = KAFKA_GROUP_ID,
    from_beginning: bool = False,
    settings: Settings | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> Iterator[faust.Record]:
    """Records of normalised ``topics`` from Kafka, typed like :func:`stream`'s, in a consumer group.

    The group commits its offsets (the client's default), so a new run of the same ``group_id``
    goes on where the last stopped; ``from_beginning`` is where a group with no offsets starts.

    The session timeout is the broker profile's (``config.ini``): the local
    profile's 6 s lets a new member join Tansu's group in ~3.7 s where the
    client default (45 s) took 23.6 s before the first record.  Blocking (it
    is confluent-kafka): run it in a thread from asyncio code.
    """
    from confluent_kafka import Consumer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    settings = settings or Settings()
    kafka = settings.kafka_at(bootstrap)
    # The registry the caller names, with the credentials of keys/.env (SCHEMA_REGISTRY_KEY/SECRET) if any.
    registry = settings.schema_registry.client_config() | {"url": registry_url}
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": group_id,
            "session.timeout.ms": kafka.session_timeout_ms,
            "heartbeat.interval.ms": kafka.heartbeat_interval_ms,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            **(extra_config or {}),
        }
    )
    deserializer = AvroDeserializer(SchemaRegistryClient(registry))
    try:
        present = consumer.list_topics(timeout=KAFKA_METADATA_TIMEOUT_S).topics
        missing = [topic for topic in topics if topic not in present]
        if missing:
            raise ServiceUnavailable(f"topic(s) {', '.join(missing)} do not exist on {bootstrap}")
        consumer.subscribe(list(topics))
        while True:
            message = consumer.poll(KAFKA_POLL_S)
            if message is None:
                continue
            if message.error():
                LOG.warning("kafka_records: %s", message.error())
                continue
            value = deserializer(message.value(), SerializationContext(message.topic(), MessageField.VALUE))
            yield RECORDS[message.topic()](**value)
    finally:
        consumer.close()
