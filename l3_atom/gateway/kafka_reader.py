"""The gateway's Kafka side: every partition of the normalised topics, decoded through the Schema Registry.

No consumer group: like ``runner.py consume``, the reader assigns itself every
partition and commits nothing, so any number of gateways run side by side,
each reading everything, none waiting for a group join (about half the session
timeout on the local broker) or leaving a group behind.  It starts at the end
of each partition, except the book topics (``lob``, ``lob_l3``), read from
their start so that the gateway holds each book as the processor does; what
was already there when it started goes into the books only, never to clients.
"""

from __future__ import annotations

import json
import logging
import struct
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from l3_atom.avro.codecs import decode_wire, wire_schema_id
from l3_atom.config import Settings
from l3_atom.errors import ServiceUnavailable
from l3_atom.topic_admin import ensure_topics

LOG = logging.getLogger(__name__)
METADATA_TIMEOUT_S = 10.0
GROUP_PREFIX = "l3_atom_gateway"


@dataclass(frozen=True)
class Fetched:
    """One message as fetched: decoded only if someone wants it (``KafkaReader.decode``)."""

    topic: str
    partition: int
    offset: int
    key: str
    payload: bytes
    # Already in the topic when the gateway started: for the books, not for clients.
    history: bool


class KafkaReader:
    """Assigns the topics' partitions, fetches (``consume``, blocking) and decodes through the registry."""

    def __init__(self, settings: Settings, topics: Sequence[str], from_start: Sequence[str]):
        kafka = settings.kafka
        self.kafka = kafka
        self.topics = list(topics)
        self.from_start = set(from_start)
        # librdkafka wants a group id even when assigning; unique, so that no broker state is shared.
        self.consumer = Consumer({
            **kafka.client_config(),
            "group.id": f"{GROUP_PREFIX}_{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": kafka.fetch_max_wait_ms,
        })
        self.registry = SchemaRegistryClient(settings.schema_registry.client_config())
        self.schemas: dict[int, dict[str, Any]] = {}
        # End offsets at start of the partitions read from their start: below them is history.
        self.history_end: dict[tuple[str, int], int] = {}
        self.behind: set[tuple[str, int]] = set()
        self.undecodable = 0
        # Messages fetched, by topic (the gateway's metrics; their sum is its /stats "records").
        self.consumed: Counter[str] = Counter()
        self.assigned = False

    def assign(self) -> None:
        """Create missing topics (as the processor does), then read every partition."""
        ensure_topics(self.kafka, self.topics)
        try:
            metadata = self.consumer.list_topics(timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            raise ServiceUnavailable(f"cannot reach Kafka at {self.kafka.bootstrap_servers}: {exc}") from None
        partitions = []
        for topic in self.topics:
            for partition in metadata.topics[topic].partitions:
                if topic in self.from_start:
                    _, high = self.consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=METADATA_TIMEOUT_S
                    )
                    if high > 0:
                        self.history_end[(topic, partition)] = high
                        self.behind.add((topic, partition))
                    partitions.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
                else:
                    partitions.append(TopicPartition(topic, partition, OFFSET_END))
        self.consumer.assign(partitions)
        self.assigned = True
        LOG.info("reading %d partitions of %s; %d book partitions to catch up on",
                 len(partitions), ", ".join(self.topics), len(self.behind))

    @property
    def caught_up(self) -> bool:
        return self.assigned and not self.behind

    def consume(self, count: int, timeout_s: float) -> list[Fetched]:
        """Up to ``count`` messages (blocking up to ``timeout_s``)."""
        fetched = []
        for message in self.consumer.consume(count, timeout_s):
            if message.error():
                LOG.warning("consumer error: %s", message.error())
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            end = self.history_end.get((topic, partition))
            if end is not None and offset >= end - 1:
                self.behind.discard((topic, partition))
            key = message.key().decode(errors="replace") if message.key() else ""
            history = end is not None and offset < end
            fetched.append(Fetched(topic, partition, offset, key, message.value() or b"", history))
            self.consumed[topic] += 1
        return fetched

    def decode(self, message: Fetched) -> dict[str, Any] | None:
        """The record, or None (counted, logged) when it cannot be decoded."""
        try:
            return decode_wire(message.payload, self._schemas_for(message.payload))
        except (KeyError, ValueError, TypeError, struct.error, SchemaRegistryError) as exc:
            self.undecodable += 1
            LOG.warning("%s[%d]@%d: cannot decode (%s); skipped, counted", message.topic, message.partition,
                        message.offset, exc)
            return None

    def _schemas_for(self, value: bytes) -> dict[int, dict[str, Any]]:
        """The schemas by id, fetching from the registry the one this value names if it is new."""
        schema_id = wire_schema_id(value)
        if schema_id not in self.schemas:
            schema = self.registry.get_schema(schema_id)
            self.schemas[schema_id] = fastavro.parse_schema(json.loads(schema.schema_str))
        return self.schemas

    def close(self) -> None:
        self.consumer.close()
