"""The metric vocabulary of every role, and collectors that read existing counts at scrape time.

Names follow Prometheus conventions: the ``l3_atom_`` prefix, ``_total`` on counters, seconds as the
unit of time, and labels with bounded values only (source, connection, topic, reason, status, ...;
never a price, an order or a symbol).  The hot paths already count what matters (frames and bytes
per connection, messages and records per source, skips, dead letters, book checks); the collectors
here turn those counts into samples when Prometheus scrapes, so no frame pays for a label lookup.
What nothing counted yet is observed once per batch (the latency histogram).

A label whose values come from data (dead-letter reasons, exception names) keeps its first
``MAX_LABEL_VALUES`` values; the rest are summed under ``other``, so no input can grow a series set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LOG = logging.getLogger(__name__)
PREFIX = "l3_atom"
# Distinct values one data-derived label may take; the rest are summed as OTHER.
MAX_LABEL_VALUES = 32
OTHER = "other"
# Every label any L3 Atom metric may carry: each has a bounded set of values (see the module docstring).
BOUNDED_LABELS = frozenset({
    "source", "connection", "topic", "reason", "status", "kind", "outcome", "partition", "error",
    "interval", "state", "role", "le",
})
# atom_timestamp -> produce: 1 ms to 60 s.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
US_PER_S = 1_000_000

# Names, defined once (the README's metric table, the alert rules and the dashboard use them).
CONNECTOR_FRAMES = f"{PREFIX}_connector_frames"
CONNECTOR_BYTES = f"{PREFIX}_connector_bytes"
CONNECTION_UP = f"{PREFIX}_connector_connection_up"
CONNECTS = f"{PREFIX}_connector_connects"
DISCONNECTS = f"{PREFIX}_connector_disconnects"
LAST_FRAME = f"{PREFIX}_connector_last_frame_timestamp_seconds"
SILENCE_TIMEOUT = f"{PREFIX}_connector_silence_timeout_seconds"
REST_REQUESTS = f"{PREFIX}_connector_rest_requests"
SNAPSHOTS = f"{PREFIX}_connector_snapshots_fetched"
RESYNC_REQUESTS = f"{PREFIX}_connector_resync_requests"
RESYNCS = f"{PREFIX}_connector_resyncs"
LISTING_CHANGES = f"{PREFIX}_connector_listing_changes"
CONNECTOR_DEAD_LETTERS = f"{PREFIX}_connector_dead_letters"
FRAMES_WRITTEN = f"{PREFIX}_connector_frames_written"
DELIVERY_FAILURES = f"{PREFIX}_producer_delivery_failures"
PRODUCER_QUEUE = f"{PREFIX}_producer_queue_messages"
RAW_MESSAGES = f"{PREFIX}_processor_raw_messages"
RECORDS = f"{PREFIX}_processor_records"
SKIPPED = f"{PREFIX}_processor_skipped"
PROCESSOR_DEAD_LETTERS = f"{PREFIX}_processor_dead_letters"
BOOK_CHECKS = f"{PREFIX}_processor_book_checks"
BOOKS = f"{PREFIX}_processor_books"
LATENCY = f"{PREFIX}_processor_latency_seconds"
CONSUMER_LAG = f"{PREFIX}_processor_consumer_lag_messages"
CANDLES_CLOSED = f"{PREFIX}_processor_candles_closed"
LATE_TRADES = f"{PREFIX}_processor_late_trades"
BUS_FRAMES = f"{PREFIX}_local_bus_frames"
BUS_CAPACITY = f"{PREFIX}_local_bus_capacity_frames"
WS_DROPPED = f"{PREFIX}_local_websocket_dropped_records"
GATEWAY_CLIENTS = f"{PREFIX}_gateway_clients"
GATEWAY_CONNECTIONS = f"{PREFIX}_gateway_connections"
GATEWAY_SENT = f"{PREFIX}_gateway_messages_sent"
GATEWAY_DROPPED = f"{PREFIX}_gateway_dropped_records"
GATEWAY_REFUSED = f"{PREFIX}_gateway_refused_requests"
GATEWAY_LARGEST_QUEUE = f"{PREFIX}_gateway_largest_client_queue_messages"
GATEWAY_CONSUMED = f"{PREFIX}_gateway_consumed_records"
GATEWAY_UNDECODABLE = f"{PREFIX}_gateway_undecodable_records"
READY = f"{PREFIX}_ready"


def bounded(counts: Mapping[Any, float], limit: int = MAX_LABEL_VALUES) -> dict[str, float]:
    """``counts`` by label value: the first ``limit`` values as they are, the rest summed under ``other``."""
    kept: dict[str, float] = {}
    for index, (value, count) in enumerate(list(counts.items())):
        label = str(value) if index < limit else OTHER
        kept[label] = kept.get(label, 0) + count
    return kept


class SafeCollector(Collector):
    """A collector whose failure (state changing under it at startup or shutdown) costs its samples, not the scrape."""

    def collect(self) -> Iterator[Metric]:
        try:
            families = list(self.families())
        except Exception as exc:  # noqa: BLE001 - state changing under a scrape costs its samples only
            LOG.debug("%s skipped in this scrape: %r", type(self).__name__, exc)
            return iter(())
        return iter(families)

    def families(self) -> Iterable[Metric]:
        raise NotImplementedError


def counter(name: str, documentation: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, labels=labels)


def gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


class ConnectorCollector(SafeCollector):
    """A connector's feed, sink and resync listener, read at scrape time.

    ``feed`` is a :class:`~l3_atom.data_source.DataFeed`; ``sink`` its frame sink (``KafkaRawSink``
    or the local bus sink); ``listener`` the connector's ``ResyncListener`` (absent in local mode).
    """

    def __init__(self, feed: Any, sink: Any = None, listener: Any = None):
        self.feed = feed
        self.sink = sink
        self.listener = listener

    def families(self) -> Iterable[Metric]:
        feed = self.feed
        source = feed.name
        frames = counter(CONNECTOR_FRAMES, "Websocket frames received", ["source", "connection"])
        size = counter(CONNECTOR_BYTES, "Bytes of websocket frames received", ["source", "connection"])
        up = gauge(CONNECTION_UP, "1 while the connection is open and subscribed", ["source", "connection"])
        connects = counter(CONNECTS, "Websocket connections established", ["source", "connection"])
        disconnects = counter(DISCONNECTS, "Established connections that ended, by reason",
                              ["source", "connection", "reason"])
        last = gauge(LAST_FRAME, "Unix time of the last frame received (connection start before any)",
                     ["source", "connection"])
        now = time.time()
        for connection in list(feed.connections):
            labels = [source, connection.name]
            stats = connection.stats
            frames.add_metric(labels, stats.frames)
            size.add_metric(labels, stats.bytes)
            up.add_metric(labels, 1.0 if connection.subscribed else 0.0)
            connects.add_metric(labels, stats.connects)
            for reason, count in bounded(stats.disconnects).items():
                disconnects.add_metric([*labels, reason], count)
            last.add_metric(labels, now - connection.silent_for())
        yield from (frames, size, up, connects, disconnects, last)
        timeout = gauge(SILENCE_TIMEOUT, "A connection silent this long is reconnected (config.ini)", ["source"])
        timeout.add_metric([source], feed.settings.silence_timeout_s)
        yield timeout
        rest = counter(REST_REQUESTS, "REST requests by endpoint kind and HTTP status", ["source", "kind", "status"])
        for (kind, status), count in list(feed.rest_requests.items()):
            rest.add_metric([source, kind, status], count)
        yield rest
        snapshots = counter(SNAPSHOTS, "REST book snapshots fetched", ["source"])
        snapshots.add_metric([source], feed.snapshots)
        yield snapshots
        resyncs = counter(RESYNCS, "Book resyncs started, by the processor's reason", ["source", "reason"])
        for reason, count in bounded(feed.resyncs).items():
            resyncs.add_metric([source, reason or "asked"], count)
        yield resyncs
        listing = counter(LISTING_CHANGES, "Symbols listed, delisted or expired since start (symbol list refresh)",
                          ["source", "kind"])
        for kind, count in list(feed.listing_changes.items()):
            listing.add_metric([source, kind], count)
        yield listing
        dead = counter(CONNECTOR_DEAD_LETTERS, "Frames sent to dead_letter by the connector", ["source", "reason"])
        dead.add_metric([source, "oversize"], feed.dead_letters)
        yield dead
        if self.listener is not None:
            requests = counter(RESYNC_REQUESTS, "book_resync requests received, by outcome", ["source", "outcome"])
            for outcome, count in bounded(self.listener.counts).items():
                requests.add_metric([source, outcome], count)
            yield requests
        if self.sink is not None and hasattr(self.sink, "queue_depth"):
            yield from producer_families(source, "connector", self.sink.delivery_errors, self.sink.queue_depth())
            written = counter(FRAMES_WRITTEN, "Frames handed to the raw topic's producer", ["source"])
            written.add_metric([source], self.sink.produced)
            yield written

    def not_ready(self) -> list[str]:
        """Why this connector is not ready: a connection not subscribed, or silent past its timeout."""
        feed = self.feed
        timeout = feed.settings.silence_timeout_s
        if not feed.connections:
            return [f"{feed.name}: no connection yet (loading symbols)"]
        reasons = []
        for connection in list(feed.connections):
            if not connection.subscribed:
                reasons.append(f"{connection.name}: not connected and subscribed")
            elif connection.silent_for() > timeout:
                reasons.append(f"{connection.name}: no frame for {connection.silent_for():.0f} s "
                               f"(silence timeout {timeout:g} s)")
        return reasons


def producer_families(source: str, role: str, failures: Mapping[str, int], queued: int) -> Iterator[Metric]:
    failed = counter(DELIVERY_FAILURES, "Records the producer could not deliver, by Kafka error",
                     ["source", "role", "error"])
    for error, count in bounded(failures).items():
        failed.add_metric([source, role, error], count)
    yield failed
    queue = gauge(PRODUCER_QUEUE, "Records waiting in the producer's queue", ["source", "role"])
    queue.add_metric([source, role], queued)
    yield queue


def book_checks_of(standardiser: Any) -> list[Any]:
    """The ``BookChecks`` a standardiser keeps (found by their ``continuity``; a source may have several)."""
    return [value for value in vars(standardiser).values() if hasattr(value, "continuity")]


class ProcessorCollector(SafeCollector):
    """Per source: what ``RawMessageProcessor`` and its standardiser counted, and the books' state."""

    def __init__(self, processors: Iterable[Any]):
        self.processors = list(processors)

    def families(self) -> Iterable[Metric]:
        raw = counter(RAW_MESSAGES, "Raw messages standardised", ["source"])
        records = counter(RECORDS, "Normalised records produced, by topic", ["source", "topic"])
        skipped = counter(SKIPPED, "Raw messages skipped on purpose, by reason", ["source", "reason"])
        dead = counter(PROCESSOR_DEAD_LETTERS, "Raw messages sent to dead_letter, by reason", ["source", "reason"])
        checks = counter(BOOK_CHECKS, "Book integrity checks, by outcome", ["source", "outcome"])
        books = gauge(BOOKS, "Books by state (in_sync, lost)", ["source", "state"])
        for processor in self.processors:
            source = processor.source
            raw.add_metric([source], processor.messages)
            for topic, count in list(processor.records.items()):
                records.add_metric([source, topic], count)
            for reason, count in bounded(processor.standardiser.skipped).items():
                skipped.add_metric([source, reason], count)
            for reason, count in bounded(processor.dead_letters).items():
                dead.add_metric([source, reason], count)
            outcomes: dict[str, int] = {}
            in_sync = lost = 0
            for book_checks in book_checks_of(processor.standardiser):
                continuity = book_checks.continuity
                for outcome, count in list(continuity.counts.items()):
                    outcomes[outcome] = outcomes.get(outcome, 0) + count
                states = list(continuity.books.values())
                synced = sum(1 for state in states if state.in_sync)
                in_sync += synced
                lost += len(states) - synced
            for outcome, count in bounded(outcomes).items():
                checks.add_metric([source, outcome], count)
            books.add_metric([source, "in_sync"], in_sync)
            books.add_metric([source, "lost"], lost)
        yield from (raw, records, skipped, dead, checks, books)


class GatewayCollector(SafeCollector):
    """``runner.py gateway``: its websocket clients (``StreamServer.stats``) and its Kafka reader's counts.

    ``stream`` is the gateway's :class:`~l3_atom.ws_stream.StreamServer`; ``reader`` its ``KafkaReader``
    (``consumed`` by topic, ``undecodable``).
    """

    def __init__(self, stream: Any, reader: Any):
        self.stream = stream
        self.reader = reader

    def families(self) -> Iterable[Metric]:
        stats = self.stream.stats()
        for name, kind, documentation, key in (
            (GATEWAY_CLIENTS, gauge, "Websocket clients connected", "clients"),
            (GATEWAY_CONNECTIONS, counter, "Websocket connections accepted", "connections"),
            (GATEWAY_SENT, counter, "Messages sent to websocket clients (records and protocol messages)", "sent"),
            (GATEWAY_DROPPED, counter, "Records dropped for clients whose queue was full (each told how many)",
             "dropped"),
            (GATEWAY_REFUSED, counter, "Client requests refused: too large or too frequent", "refused_requests"),
            (GATEWAY_LARGEST_QUEUE, gauge, "Messages waiting in the fullest client queue", "largest_client_queue"),
        ):
            family = kind(name, documentation, [])
            family.add_metric([], stats[key])
            yield family
        consumed = counter(GATEWAY_CONSUMED, "Records read from the normalised topics, by topic", ["topic"])
        for topic, count in list(self.reader.consumed.items()):
            consumed.add_metric([topic], count)
        yield consumed
        undecodable = counter(GATEWAY_UNDECODABLE, "Records that could not be decoded (skipped)", [])
        undecodable.add_metric([], self.reader.undecodable)
        yield undecodable


def latency_histogram(registry: CollectorRegistry) -> Histogram:
    """atom_timestamp (receive) -> the record handed to the producer; observed once per batch."""
    return Histogram(LATENCY, "Seconds from a frame's receive time to its records' produce (one per batch)",
                     ["source"], registry=registry, buckets=LATENCY_BUCKETS_S)


def observe_latency(child: Any, atom_timestamp_us: int) -> None:
    """One latency observation from a batch's last ``atom_timestamp`` (µs)."""
    child.observe(max(0.0, time.time() - atom_timestamp_us / US_PER_S))


class CallbackCollector(SafeCollector):
    """Families built by a function at scrape time (readiness, lag: state only the role can read)."""

    def __init__(self, build: Callable[[], Iterable[Metric]]):
        self.build = build

    def families(self) -> Iterable[Metric]:
        return self.build()


def ready_family(role: str, reasons: list[str]) -> Metric:
    ready = gauge(READY, "1 when the role is ready (see /ready for the reasons when not)", ["role"])
    ready.add_metric([role], 0.0 if reasons else 1.0)
    return ready
