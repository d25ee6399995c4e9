"""What a connector archived last: the tail of its raw topic, read on start to resume (``runner.py connector``).

A restarted connector learns, per raw key, the receive time of the last frame it
archived before it stopped (or was killed), so that it backfills its own downtime
(:attr:`DataFeed.resume_from`).  Only the last ``TAIL_MESSAGES`` of each partition
are read; a key silent for longer than that is not resumed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from l3_atom.config import KafkaSettings
from l3_atom.topics import ATOM_TIMESTAMP_HEADER, raw_topic

LOG = logging.getLogger(__name__)
TAIL_MESSAGES = 20_000
METADATA_TIMEOUT_S = 10.0
# Reading stops when nothing came for this long past the end offsets (the local broker may report the
# end of a batch early: see ARCHITECTURE.md), or after READ_LIMIT_S in all.
QUIET_S = 1.0
READ_LIMIT_S = 30.0
BATCH = 1000


def last_times(messages: Iterable[tuple[str | None, Any]], feed: str) -> dict[str, int]:
    """Raw key -> the largest ``atom_timestamp`` (µs) among ``(key, headers)`` of frames of ``feed`` (pure)."""
    suffix = f"_{feed}"
    last: dict[str, int] = {}
    for key, headers in messages:
        if key is None or not key.endswith(suffix):
            continue
        for name, value in headers or ():
            if name == ATOM_TIMESTAMP_HEADER and value and value.isdigit():
                stamp = int(value)
                if stamp > last.get(key, 0):
                    last[key] = stamp
                break
    return last


def read_tail(kafka: KafkaSettings, source: str, feed: str, tail: int = TAIL_MESSAGES) -> dict[str, int]:
    """Raw key of ``feed`` -> receive time (µs) of the last frame archived under it; {} when nothing is there."""
    topic = raw_topic(source)
    consumer = Consumer({**kafka.client_config(), "group.id": f"l3_atom_tail_{source}", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            return {}
        assigned = []
        ends: dict[int, int] = {}
        for partition in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=METADATA_TIMEOUT_S)
            if high > low:
                assigned.append(TopicPartition(topic, partition, max(low, high - tail)))
                ends[partition] = high
        if not assigned:
            return {}
        consumer.assign(assigned)
        return last_times(drain(consumer, ends), feed)
    except KafkaException as exc:
        LOG.warning("%s: could not read the tail of %s: %s", source, topic, exc)
        return {}
    finally:
        consumer.close()


def drain(consumer: Any, ends: dict[int, int]) -> Iterator[tuple[str | None, Any]]:
    """``(key, headers)`` of every message from the assigned offsets on, until each partition has reached the
    end offset it reported (``ends``) and then nothing more came for ``QUIET_S``, or ``READ_LIMIT_S`` passed.

    Quiet alone is not the end: on a loaded machine the first fetch can take longer than ``QUIET_S``, and a
    restarted connector that read nothing would report no downtime and backfill none of it.
    """
    deadline = time.monotonic() + READ_LIMIT_S
    waiting = dict(ends)
    while time.monotonic() < deadline:
        messages = consumer.consume(BATCH, timeout=QUIET_S)
        if not messages and not waiting:
            return
        for message in messages:
            if message.error() is None:
                if message.offset() + 1 >= waiting.get(message.partition(), 0):
                    waiting.pop(message.partition(), None)
                key = message.key()
                yield (key.decode() if key else None), [(n, v.decode() if v else "") for n, v in message.headers() or ()]
