"""Creates the topics L3 Atom writes, with partitions and replicas from config.ini."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from l3_atom.config import ConfigError, KafkaSettings
from l3_atom.errors import ServiceUnavailable

LOG = logging.getLogger(__name__)
ADMIN_TIMEOUT_S = 10.0
# Topics whose latest value per key is all that matters (e.g. the schema store).
COMPACTED = {"cleanup.policy": "compact"}


def ensure_topics(kafka: KafkaSettings, names: list[str], compacted: bool = False) -> list[str]:
    """Create the missing topics among ``names``; return the ones created.

    Fails with a ``ConfigError`` when ``num_replications`` exceeds the number
    of brokers, instead of the broker's terse INVALID_REPLICATION_FACTOR.
    """
    admin = AdminClient(kafka.client_config())
    try:
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        raise ServiceUnavailable(
            f"cannot reach Kafka at {kafka.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS): {exc.args[0].str()}"
        ) from None
    brokers = len(metadata.brokers)
    if kafka.num_replications > brokers:
        raise ConfigError(
            f"config.ini [kafka] num_replications = {kafka.num_replications}, but the cluster at "
            f"{kafka.bootstrap_servers} has only {brokers} broker(s); lower it to at most {brokers}"
        )
    missing = [name for name in dict.fromkeys(names) if name not in metadata.topics]
    if not missing:
        return []
    config = COMPACTED if compacted else {}
    futures = admin.create_topics(
        [NewTopic(name, kafka.num_partitions, kafka.num_replications, config=config) for name in missing]
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(ADMIN_TIMEOUT_S)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    if created:
        LOG.info("created topics %s (%d partitions, %d replicas)", ", ".join(created), kafka.num_partitions,
                 kafka.num_replications)
    return created
