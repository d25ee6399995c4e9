"""Publishes encoded records with confluent-kafka's idempotent producer.

Faust consumes the raw topics (group membership, offsets, rebalancing); the
records go out through librdkafka rather than Faust's own aiokafka producer
because (a) aiokafka's idempotent producer does not work on every broker we
support (Tansu), and (b) producing from C is far cheaper per record.  The
processor flushes it before Faust commits offsets (see ``app.py``), so an
offset is only committed once every record made from it is acknowledged
(at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from confluent_kafka import KafkaError, Producer

from l3_atom.config import KafkaSettings

LOG = logging.getLogger(__name__)
QUEUE_FULL_WAIT_S = 0.05
FLUSH_SLICE_S = 1.0


class DeliveryFailed(RuntimeError):
    """A record could not be delivered after the producer's own retries."""


class RecordPublisher:
    def __init__(self, kafka: KafkaSettings):
        self._producer = Producer(kafka.producer_config())
        self.failures: Counter[str] = Counter()
        self._first_failure: KafkaError | None = None
        # time.monotonic() of the last failed delivery (readiness), None before any.
        self.last_failure_at: float | None = None
        # Bound once: produce runs for every record.
        self._report = self._on_delivery

    def produce(self, topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._report)
                return
            except BufferError:
                # Local queue full: serve deliveries until there is room (backpressure, no drop).
                self._producer.poll(QUEUE_FULL_WAIT_S)

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self.failures[err.name()] += 1
            self._first_failure = self._first_failure or err
            self.last_failure_at = time.monotonic()

    def queue_depth(self) -> int:
        """Records waiting in the producer's queue (read at scrape time)."""
        return len(self._producer)

    def poll(self) -> None:
        """Serve delivery reports without waiting (between batches); failures surface at the next flush."""
        self._producer.poll(0)

    async def flush(self) -> None:
        """Wait, without blocking the event loop, until every queued record is acknowledged."""
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, self._producer.flush, FLUSH_SLICE_S):
            pass
        if self._first_failure is not None:
            error, self._first_failure = self._first_failure, None
            raise DeliveryFailed(f"records were not delivered: {error}; failures so far: {dict(self.failures)}")

    def close(self) -> None:
        self._producer.flush()
