"""Where connectors put frames: the ``FrameSink`` port and its Kafka adapter.

The connector only knows ``FrameSink``; the distributed pipeline plugs in
``KafkaRawSink`` (raw topic, exact bytes, receive time in a header) and the
one-process runtime plugs in an in-memory bus.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from l3_atom.avro.codecs import AvroEncoder
from l3_atom.bounded_memo import BoundedMemo
from l3_atom.config import KafkaSettings
from l3_atom.dead_letter import CONNECTOR, dead_letter_record
from l3_atom.topics import (
    ATOM_TIMESTAMP_HEADER,
    CONNECTION_HEADER,
    COVERAGE,
    DEAD_LETTER,
    ORIGIN_HEADER,
    SYMBOL_HEADER,
    raw_topic,
)

LOG = logging.getLogger(__name__)
# Serve delivery reports every this many produces (not per message: hot path).
POLL_EVERY = 1000
# Distinct (connection, symbol) header tails kept ready-made; past this they are built per frame.
HEADER_TAIL_CACHE = 4096
# ``Producer.produce`` takes (topic, value, key, partition, callback, on_delivery, timestamp, headers).
# Every argument goes by position: a keyword costs about 0.5 µs per call in confluent-kafka's argument
# parsing, a third of a produce.  These are the defaults of the slots before ``headers``.
ANY_PARTITION = -1  # the configured partitioner picks the partition from the key
DEFAULT_CALLBACK = None  # the producer's ``on_delivery``
NOW = 0  # CreateTime: when produce is called
QUEUE_FULL_WAIT_S = 0.05
FLUSH_TIMEOUT_S = 30.0


class FrameSink(Protocol):
    """Receives every frame a connector reads, or the reason it cannot be kept."""

    def write(self, key: str, frame: bytes, atom_timestamp: int, connection_id: str, symbol: str | None) -> None:
        """Archive ``frame``; ``symbol`` is its normalised symbol when the connector knows it."""

    def dead_letter(self, key: str | None, frame: bytes, error: str, atom_timestamp: int) -> None: ...

    def write_marked(
        self, key: str, frame: bytes, atom_timestamp: int, connection_id: str, symbol: str | None, origin: str
    ) -> None:
        """Archive ``frame`` as ``write`` does, with an ``origin`` header (``backfill``: fetched to fill a gap)."""

    def coverage(self, key: str, record: dict) -> None:
        """Publish a ``coverage`` record (a connection lost or back, trades backfilled) under ``key``."""

    def room(self) -> Awaitable[None] | None:
        """None while the sink takes frames; else an awaitable the connector waits on before reading on."""

    def poll(self) -> None:
        """Called now and then from the event loop, for sinks that deliver in the background."""

    def close(self) -> None: ...


def raw_headers(
    atom_timestamp: int, connection_id: str, symbol: str | None, origin: str | None = None
) -> list[tuple[str, bytes]]:
    """The headers a raw frame carries: receive time (µs), connection id, where known its symbol, and its origin.

    ``origin`` (``backfill``) marks a REST body fetched to fill a gap, for whoever reads the raw topic.
    """
    headers = [(ATOM_TIMESTAMP_HEADER, str(atom_timestamp).encode()), (CONNECTION_HEADER, connection_id.encode())]
    if symbol is not None:
        headers.append((SYMBOL_HEADER, symbol.encode()))
    if origin is not None:
        headers.append((ORIGIN_HEADER, origin.encode()))
    return headers


class DeliveryFailed(RuntimeError):
    """The producer could not deliver and will not retry (fatal producer error)."""


class KafkaRawSink:
    """Writes frames to ``<source>_raw`` with an idempotent, acks=all producer.

    ``write`` runs once per frame, so it does only what must be per frame: the timestamp header and
    one ``produce``.  The other headers are encoded once per connection and symbol, the delivery
    callback is the producer's default (not passed per message), and a fatal delivery error is
    looked for after each ``poll``: delivery reports arrive only there.
    """

    def __init__(
        self, source: str, kafka: KafkaSettings, dead_letter_encoder: AvroEncoder,
        coverage_encoder: AvroEncoder | None = None,
    ):
        self.source = source
        self.topic = raw_topic(source)
        self.kafka = kafka
        self._encoder = dead_letter_encoder
        self._coverage_encoder = coverage_encoder
        self.coverage_records = 0
        self._producer = Producer({**kafka.producer_config(), "on_delivery": self._on_delivery})
        # (connection id, symbol) -> the headers after ``atom_timestamp``, encoded once, not per frame.
        self._header_tails = BoundedMemo(lambda key: tuple(raw_headers(0, *key)[1:]), HEADER_TAIL_CACHE)
        self._since_poll = 0
        self.produced = 0
        self.dead_letters = 0
        self.delivery_errors: Counter[str] = Counter()
        self._fatal: KafkaError | None = None

    def write(self, key: str, frame: bytes, atom_timestamp: int, connection_id: str, symbol: str | None) -> None:
        headers = [(ATOM_TIMESTAMP_HEADER, b"%d" % atom_timestamp), *self._header_tails[connection_id, symbol]]
        self._produce(self.topic, key, frame, headers)
        self.produced += 1

    def dead_letter(self, key: str | None, frame: bytes, error: str, atom_timestamp: int) -> None:
        record = dead_letter_record(
            source=self.source,
            stage=CONNECTOR,
            error=error,
            original=frame,
            atom_timestamp=atom_timestamp,
            max_bytes=self.kafka.max_message_bytes,
            key=key,
        )
        self._produce(DEAD_LETTER, key or self.source, self._encoder.encode(record), None)
        self.dead_letters += 1

    def write_marked(
        self, key: str, frame: bytes, atom_timestamp: int, connection_id: str, symbol: str | None, origin: str
    ) -> None:
        """Archive a REST body fetched to fill a gap, with its ``origin`` header (rare: headers built here)."""
        self._produce(self.topic, key, frame, raw_headers(atom_timestamp, connection_id, symbol, origin))
        self.produced += 1

    def coverage(self, key: str, record: dict) -> None:
        if self._coverage_encoder is None:
            raise RuntimeError("this sink was made without a coverage encoder")
        self._produce(COVERAGE, key, self._coverage_encoder.encode(record), None)
        self.coverage_records += 1

    def _produce(self, topic: str, key: str, value: bytes, headers: list | None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, ANY_PARTITION, DEFAULT_CALLBACK, DEFAULT_CALLBACK, NOW, headers)
                break
            except BufferError:
                # The local queue is full: wait for the broker instead of dropping (backpressure).
                self._producer.poll(QUEUE_FULL_WAIT_S)
                self._raise_if_fatal()
        self._since_poll += 1
        if self._since_poll >= POLL_EVERY:
            self.poll()
            self._since_poll = 0

    def _on_delivery(self, err: KafkaError | None, msg: object) -> None:
        if err is None:
            return
        self.delivery_errors[err.name()] += 1
        if err.fatal():
            self._fatal = err
        LOG.error("delivery to %s failed (%s); %d failures so far", self.topic, err, sum(self.delivery_errors.values()))

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise DeliveryFailed(f"producer failed and cannot recover: {self._fatal}")

    def queue_depth(self) -> int:
        """Messages waiting in the producer's queue (read at scrape time)."""
        return len(self._producer)

    def room(self) -> None:
        """Always room: a full producer queue blocks ``write`` itself until the broker catches up."""

    def poll(self) -> None:
        """Serve delivery reports; call now and then from the event loop."""
        self._producer.poll(0)
        self._raise_if_fatal()

    def close(self) -> None:
        """Deliver everything still queued; raise if anything could not be delivered."""
        try:
            remaining = self._producer.flush(FLUSH_TIMEOUT_S)
        except KafkaException as exc:
            raise DeliveryFailed(str(exc)) from exc
        if remaining:
            raise DeliveryFailed(f"{remaining} messages were not delivered within {FLUSH_TIMEOUT_S:.0f} s")
