"""Producers report failed deliveries only: successes cost no Python call, failures still reach us."""

from __future__ import annotations

import os
from unittest import mock

from confluent_kafka import Producer

from l3_atom.config import Settings
from l3_atom.infra.broker import LocalBroker
from l3_atom.infra.processes import LOOPBACK, free_port
from l3_atom.topic_admin import ensure_topics

TOPIC = "delivery_reports"
RECORDS = 50
FAILURE_TIMEOUT_MS = 300
FLUSH_TIMEOUT_S = 10.0


def _producer(bootstrap: str, **overrides: object) -> Producer:
    with mock.patch.dict(os.environ, {"KAFKA_BOOTSTRAP_SERVERS": bootstrap}):
        return Producer({**Settings().kafka.producer_config(), **overrides})


def test_delivered_records_make_no_callback_and_failed_ones_do() -> None:
    reports: list[object] = []

    def report(err: object, _msg: object) -> None:
        reports.append(err)

    with LocalBroker() as broker:
        with mock.patch.dict(os.environ, {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}):
            ensure_topics(Settings().kafka, [TOPIC])
        delivered = _producer(broker.bootstrap_servers)
        for index in range(RECORDS):
            delivered.produce(TOPIC, b"value", str(index), on_delivery=report)
        assert delivered.flush(FLUSH_TIMEOUT_S) == 0
        delivered.poll(0)
    assert reports == [], "a delivered record made a callback"

    # Nothing listens on this port: every record times out and must be reported.
    failing = _producer(f"{LOOPBACK}:{free_port()}", **{"message.timeout.ms": FAILURE_TIMEOUT_MS})
    for index in range(RECORDS):
        failing.produce(TOPIC, b"value", str(index), on_delivery=report)
    assert failing.flush(FLUSH_TIMEOUT_S) == 0
    assert len(reports) == RECORDS and all(err is not None for err in reports)
