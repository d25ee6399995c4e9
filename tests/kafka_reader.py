"""An independent reader of normalised topics for tests: plain confluent-kafka + AvroDeserializer.

It shares no code with the pipeline's own consumer, so a test that passes
here passes for any Kafka consumer that reads through a Schema Registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

POLL_S = 0.2
PAGE_SIZE = 2000


@dataclass
class Received:
    topic: str
    partition: int
    offset: int
    key: str
    value: dict[str, Any]


class TopicReader:
    """Reads topics from the beginning by assignment (no consumer group) and keeps every record."""

    def __init__(self, bootstrap_servers: str, registry_url: str, topics: list[str]):
        self.consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "test-reader",
                                  "enable.auto.commit": False})
        self.deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
        self.topics = topics
        self.records: list[Received] = []
        self._assigned = False

    def _assign(self) -> bool:
        metadata = self.consumer.list_topics(timeout=5)
        if not all(topic in metadata.topics for topic in self.topics):
            return False
        self.consumer.assign([
            TopicPartition(topic, partition, OFFSET_BEGINNING)
            for topic in self.topics
            for partition in metadata.topics[topic].partitions
        ])
        self._assigned = True
        return True

    def read_until(self, done: Callable[[list[Received]], bool], timeout_s: float) -> list[Received]:
        """Keep reading until ``done(records)`` or the timeout; return everything read so far.

        ``done`` is asked between pages of messages (not after each one), so it may look at every record.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not done(self.records):
            if not self._assigned and not self._assign():
                time.sleep(POLL_S)
                continue
            for message in self.consumer.consume(PAGE_SIZE, POLL_S):
                if message.error():
                    continue
                value = self.deserializer(message.value(), SerializationContext(message.topic(), MessageField.VALUE))
                self.records.append(
                    Received(message.topic(), message.partition(), message.offset(), message.key().decode(), value)
                )
        return self.records

    def by_topic(self, topic: str) -> list[Received]:
        return [r for r in self.records if r.topic == topic]

    def close(self) -> None:
        self.consumer.close()


def read_raw(bootstrap_servers: str, topic: str, count: int, timeout_s: float) -> list:
    """The first ``count`` messages of every partition of ``topic``, undecoded (confluent-kafka Messages)."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "test-raw", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=5).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        messages = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(POLL_S)
            if message is not None and not message.error():
                messages.append(message)
        return messages
    finally:
        consumer.close()
