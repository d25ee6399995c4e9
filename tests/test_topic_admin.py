"""Topic creation against a real broker, and the error for too many replicas."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from l3_atom.config import ConfigError, KafkaSettings
from l3_atom.errors import ServiceUnavailable
from l3_atom.infra.broker import LocalBroker
from l3_atom.topic_admin import ensure_topics


def settings_for(bootstrap: str, replications: int = 1) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap, profile="local", num_partitions=3, num_replications=replications,
        session_timeout_ms=6000, heartbeat_interval_ms=1500, changelog_max_batch_size=1, fetch_max_wait_ms=20,
        security_protocol="PLAINTEXT", sasl_mechanism=None, sasl_username=None, sasl_password=None,
        linger_ms=5, max_message_bytes=1_000_000,
    )


@pytest.fixture(scope="module")
def broker():
    with LocalBroker() as running:
        yield running


def test_creates_missing_topics_once(broker: LocalBroker) -> None:
    kafka = settings_for(broker.bootstrap_servers)
    assert ensure_topics(kafka, ["coinbase_raw", "lob_l3", "lob_l3"]) == ["coinbase_raw", "lob_l3"]
    assert ensure_topics(kafka, ["coinbase_raw", "lob_l3"]) == []
    metadata = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=5)
    assert len(metadata.topics["coinbase_raw"].partitions) == 3


def test_more_replicas_than_brokers_is_a_clear_error(broker: LocalBroker) -> None:
    kafka = settings_for(broker.bootstrap_servers, replications=3)
    with pytest.raises(ConfigError, match=r"num_replications = 3, but the cluster at .* has only 1 broker\(s\)"):
        ensure_topics(kafka, ["never_created"])


def test_unreachable_broker_is_a_clear_error() -> None:
    kafka = settings_for("127.0.0.1:1")
    with pytest.raises(ServiceUnavailable, match=r"cannot reach Kafka at 127.0.0.1:1 \(KAFKA_BOOTSTRAP_SERVERS\)"):
        ensure_topics(kafka, ["x"])
