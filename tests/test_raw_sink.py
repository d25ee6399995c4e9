"""``KafkaRawSink`` on a real broker: frames byte for byte with key and headers, dead letters, backpressure, failures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from l3_atom.avro.codecs import AvroEncoder, decode_wire, parsed_schema
from l3_atom.config import KafkaSettings, Settings
from l3_atom.infra.broker import LocalBroker
from l3_atom.infra.processes import LOOPBACK, free_port
from l3_atom.raw_sink import DeliveryFailed, KafkaRawSink
from l3_atom.topic_admin import ensure_topics
from l3_atom.topics import DEAD_LETTER, raw_topic

SOURCE = "coinbase"
# The backpressure test writes to a topic of its own, so that it reads back exactly its frames.
BACKPRESSURE_SOURCE = "backpressure-test"
SCHEMA_ID = 7
READ_TIMEOUT_S = 20.0
POLL_S = 0.2
# A producer queue this short fills at once: writes must wait for the broker, not fail or drop.
TINY_QUEUE = 5
BURST = 500
FAILURE_TIMEOUT_MS = 300


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalBroker]:
    with LocalBroker() as running:
        with mock.patch.dict(os.environ, {"KAFKA_BOOTSTRAP_SERVERS": running.bootstrap_servers}):
            ensure_topics(Settings().kafka, [raw_topic(SOURCE), raw_topic(BACKPRESSURE_SOURCE), DEAD_LETTER])
        yield running


def _kafka(bootstrap: str) -> KafkaSettings:
    with mock.patch.dict(os.environ, {"KAFKA_BOOTSTRAP_SERVERS": bootstrap}):
        return Settings().kafka


def _sink(bootstrap: str, source: str = SOURCE, **producer_overrides: Any) -> KafkaRawSink:
    """A sink whose producer has ``producer_overrides`` on top of the configured settings."""
    configured = KafkaSettings.producer_config
    with mock.patch.object(KafkaSettings, "producer_config", lambda self: {**configured(self), **producer_overrides}):
        return KafkaRawSink(source, _kafka(bootstrap), AvroEncoder(DEAD_LETTER, SCHEMA_ID))


def _read(bootstrap: str, topic: str, count: int) -> list[Message]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "raw-sink-test", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=READ_TIMEOUT_S).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        messages: list[Message] = []
        for _ in range(int(READ_TIMEOUT_S / POLL_S)):
            messages += [m for m in consumer.consume(count, POLL_S) if not m.error()]
            if len(messages) >= count:
                break
        return messages
    finally:
        consumer.close()


@pytest.mark.timeout(60)
def test_frames_keep_their_bytes_key_and_headers_and_dead_letters_their_record(broker: LocalBroker) -> None:
    sink = _sink(broker.bootstrap_servers)
    frames = [
        ("coinbase_BTC-USD_full", b'{"type":"open","product_id":"BTC-USD"}', 1_700_000_000_000_001, "coinbase.0.1",
         "BTC.USD"),
        ("coinbase_BTC-USD_full", b'{"type":"done","product_id":"BTC-USD"}', 1_700_000_000_000_002, "coinbase.0.1",
         "BTC.USD"),
        ("coinbase_all_control", b'{"type":"subscriptions"}', 1_700_000_000_000_003, "coinbase.0.2", None),
        ("coinbase_ETH-USD_full", "{\"price\":\"1\",\"note\":\"\u00e9\"}".encode(), 1_700_000_000_000_004, "rest",
         "ETH.USD"),
    ]
    for frame in frames:
        sink.write(*frame)
    sink.dead_letter("coinbase_all_unparsed", b"x" * 100, "too big", 1_700_000_000_000_005)
    sink.close()
    assert (sink.produced, sink.dead_letters) == (len(frames), 1)

    raw = sorted(_read(broker.bootstrap_servers, raw_topic(SOURCE), len(frames)), key=lambda m: m.headers()[0][1])
    expected = []
    for key, frame, atom_timestamp, connection_id, symbol in frames:
        headers = [("atom_timestamp", str(atom_timestamp).encode()), ("connection_id", connection_id.encode())]
        expected.append((key.encode(), frame, headers + ([("symbol", symbol.encode())] if symbol else [])))
    assert [(m.key(), m.value(), m.headers()) for m in raw] == expected

    [dead] = _read(broker.bootstrap_servers, DEAD_LETTER, 1)
    record = decode_wire(dead.value(), {SCHEMA_ID: parsed_schema(DEAD_LETTER)})
    assert dead.key() == b"coinbase_all_unparsed"
    assert (record["error"], record["original"], record["atom_timestamp"]) == ("too big", b"x" * 100,
                                                                               1_700_000_000_000_005)


@pytest.mark.timeout(60)
def test_a_full_producer_queue_makes_writes_wait_and_loses_nothing(broker: LocalBroker) -> None:
    sink = _sink(broker.bootstrap_servers, BACKPRESSURE_SOURCE, **{"queue.buffering.max.messages": TINY_QUEUE})
    for index in range(BURST):
        sink.write("backpressure-test_SOL-USD_full", b"%d" % index, index, "coinbase.0.1", "SOL.USD")
    sink.close()
    values = [m.value() for m in _read(broker.bootstrap_servers, raw_topic(BACKPRESSURE_SOURCE), BURST)]
    assert values == [b"%d" % index for index in range(BURST)], "every frame, once, in order (one key)"


@pytest.mark.timeout(60)
def test_failed_deliveries_reach_the_producer_wide_callback() -> None:
    # Nothing listens on this port: the frame times out, and the report (no per-message callback) is counted.
    sink = _sink(f"{LOOPBACK}:{free_port()}", **{"message.timeout.ms": FAILURE_TIMEOUT_MS})
    sink.write("coinbase_BTC-USD_full", b"{}", 1, "coinbase.0.1", "BTC.USD")
    sink.close()
    assert dict(sink.delivery_errors) == {"_MSG_TIMED_OUT": 1}


def test_a_fatal_delivery_error_stops_the_next_poll() -> None:
    sink = _sink(f"{LOOPBACK}:{free_port()}")
    fatal = mock.Mock(**{"name.return_value": "FENCED", "fatal.return_value": True})
    sink._on_delivery(fatal, None)
    with pytest.raises(DeliveryFailed, match="cannot recover"):
        sink.poll()
