"""The Faust processor: one agent per source's raw topic.

Faust owns consumption (consumer group, partition assignment across
workers, offset commits).  It delivers a raw topic one fetched batch per
partition at a time (``batched_consumer.py``: per-record events cost more than
the work); the agent hands each record to the pure ``RawMessageProcessor``
and queues the results on the record publisher.  Delivery is confirmed where it matters: Faust flushes its
producer before it commits offsets, and that flush now also waits for every
queued record (``_flush_records_before_commits``), so an offset is never
committed ahead of the records made from it.  Waiting per batch instead
stalled the stream on every broker round trip.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import faust

from l3_atom.avro.codecs import register_encoders
from l3_atom.avro.writer import writer_kind
from l3_atom.config import SASL_PROTOCOLS, Settings
from l3_atom.gc_tuning import tune_for_streaming
from l3_atom.observability.server import bind_metrics_socket
from l3_atom.sources import standardiser_class
from l3_atom.stream_processing.batched_consumer import BatchingApp
from l3_atom.stream_processing.book_agent import add_books
from l3_atom.stream_processing.candle_agent import add_candles
from l3_atom.stream_processing.coverage_agent import CoverageService
from l3_atom.stream_processing.processor_metrics import ROLE, ProcessorMetrics
from l3_atom.stream_processing.publisher import RecordPublisher
from l3_atom.stream_processing.raw_messages import RawMessageProcessor
from l3_atom.topic_admin import ensure_topics
from l3_atom.topic_watch import watch_topics
from l3_atom.topics import BOOK_RESYNC, CANDLE, COVERAGE, DEAD_LETTER, LOB, LOB_L3, TRADES, TRADES_L3, raw_topic

LOG = logging.getLogger(__name__)
STATS_INTERVAL_S = 10.0
MS_PER_S = 1000.0
ALL_INTERFACES = "0.0.0.0"


def _broker_credentials(settings: Settings) -> Any:
    kafka = settings.kafka
    if kafka.security_protocol not in SASL_PROTOCOLS:
        return None
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=kafka.sasl_password,
        mechanism=kafka.sasl_mechanism or "PLAIN",
        ssl_context=ssl.create_default_context() if kafka.security_protocol == "SASL_SSL" else None,
    )


def create_app(
    settings: Settings, sources: list[str], web_port: int | None = None, metrics_port: int | None = None
) -> BatchingApp:
    """A Faust app that standardises ``sources``; topics and schemas are set up here, before it starts.

    The metrics port is taken first, so a clash stops the command before it touches Kafka.
    """
    metrics_socket = bind_metrics_socket(settings.metrics.host, settings.metrics.port(ROLE, metrics_port), ROLE)
    kafka = settings.kafka
    standardisers = {source: standardiser_class(source)() for source in sources}
    candles = settings.candles
    candle_topics = {TRADES, TRADES_L3, CANDLE} if candles.intervals else set()
    # coverage: the books' losses are published here, the connectors' outages read here (/coverage).
    produced = {topic for s in standardisers.values() for topic in s.topics} | {DEAD_LETTER, COVERAGE} | candle_topics
    if produced & {LOB, LOB_L3}:
        produced.add(BOOK_RESYNC)  # the books ask connectors for snapshots
    output_topics = sorted(produced)
    topics = [raw_topic(s) for s in sources] + output_topics
    ensure_topics(kafka, topics)
    encoders = register_encoders(settings.schema_registry.client_config(), output_topics)
    LOG.info("Avro writer: %s", writer_kind())

    host, port = settings.processor.web_host, web_port or settings.processor.web_port
    app = BatchingApp(
        settings.processor.app_id,
        broker=[f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",")],
        broker_credentials=_broker_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        web_port=port,
        web_host=host,
        # Where other workers forward queries for symbols this worker holds.
        canonical_url=f"http://{socket.gethostname() if host == ALL_INTERFACES else host}:{port}",
        table_standby_replicas=0,
        broker_session_timeout=kafka.session_timeout_ms / MS_PER_S,
        broker_heartbeat_interval=kafka.heartbeat_interval_ms / MS_PER_S,
        producer_max_batch_size=kafka.changelog_max_batch_size,
        producer_acks=-1,
        topic_partitions=kafka.num_partitions,
        topic_replication_factor=kafka.num_replications,
        consumer_auto_offset_reset="earliest",
        store="memory://",
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
    )
    publisher = RecordPublisher(kafka)
    processors = {
        source: RawMessageProcessor(source, standardiser, encoders, kafka.max_message_bytes)
        for source, standardiser in standardisers.items()
    }
    metrics = None if metrics_socket is None else ProcessorMetrics(
        app, metrics_socket, list(processors.values()), publisher
    )
    for processor in processors.values():
        _add_source_agent(app, processor, publisher, metrics)
    state_writers = []
    if candles.intervals:
        candle_service = add_candles(
            app, candles.intervals, candles.grace_ms, candles.idle_close_ms, encoders[CANDLE], publisher,
            {topic: encoders[topic].schema_id for topic in (TRADES, TRADES_L3)},
        )
        state_writers.append(candle_service.write_dirty)
        if metrics is not None:
            metrics.candles = candle_service
    _before_commits(app, publisher, state_writers)
    book_schema_ids = {topic: encoders[topic].schema_id for topic in (LOB, LOB_L3) if topic in encoders}
    if book_schema_ids:
        add_books(
            app, book_schema_ids, (encoders[BOOK_RESYNC], publisher), encoders[COVERAGE].schema_id,
        )

    CoverageService(app, encoders[COVERAGE].schema_id)

    @app.task
    async def watch_broker() -> None:
        """A broker restarted without its topics ends the worker with one line (see ``topic_watch``)."""
        watch_topics(kafka, topics, "processor")

    @app.timer(STATS_INTERVAL_S)
    async def log_stats() -> None:
        for source, processor in processors.items():
            LOG.info(
                "%s: %d raw messages, records %s, skipped %s, dead letters %s, unknown message types %s",
                source,
                processor.messages,
                dict(processor.records),
                dict(processor.standardiser.skipped),
                dict(processor.dead_letters),
                dict(processor.standardiser.unknown_types),
            )

    if metrics is not None:

        @app.task
        async def serve_metrics() -> None:
            await metrics.server.start()
            print(f"processor: metrics on {metrics.server.address}/metrics", flush=True)

    @app.task
    async def freeze_startup_heap() -> None:
        """The collector as every streaming role sets it (``gc_tuning.py``): startup's objects out of its
        full passes (~50 ms stalls each), young collections far less often."""
        tune_for_streaming()

    return app


def _before_commits(app: faust.App, publisher: RecordPublisher, state_writers: list[Callable[[], None]]) -> None:
    """Make Faust's pre-commit producer flush also write held state and deliver the records we publish.

    Faust flushes its producer before committing offsets: the records published so far and
    the table writes the ``state_writers`` make then land before the commit (at least once).
    """
    producer = app.producer
    flush_changelogs = producer.flush

    async def flush() -> None:
        for write in state_writers:
            write()
        await publisher.flush()
        await flush_changelogs()

    producer.flush = flush


def _add_source_agent(
    app: BatchingApp, processor: RawMessageProcessor, publisher: RecordPublisher, metrics: ProcessorMetrics | None
) -> None:
    topic_name = raw_topic(processor.source)
    topic = app.batched_topic(topic_name)

    async def standardise(stream: faust.StreamT) -> None:
        process = processor.process
        produce = publisher.produce
        latency = metrics and metrics.latency_of(processor.source)
        batch_done = metrics and metrics.batch_done
        async for batch in stream:
            for record in batch:
                key = record.key.decode() if record.key else None
                for out in process(record.value, record.headers, topic_name, record.partition, record.offset, key):
                    produce(out.topic, out.key, out.value)
            publisher.poll()
            if batch_done and batch:
                batch_done(latency, topic_name, batch)

    app.agent(topic, name=f"standardise_{processor.source.replace('-', '_')}")(standardise)
