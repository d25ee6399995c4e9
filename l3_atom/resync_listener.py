"""The connector's ear on ``book_resync``: the processor's requests for fresh book snapshots.

The connector owns the exchange connection, so it is the one that fetches
snapshots; a processor that finds a book wrong (a gap, a checksum mismatch,
updates with no snapshot) publishes a request on ``book_resync``, keyed
``<source>_<symbol>``.  Every connector reads every request (by assignment,
from the end: no consumer group, so several connectors of one source each
see all requests) and acts on those of its own source and symbols.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from l3_atom.avro.codecs import decode_wire, parsed_schema
from l3_atom.config import KafkaSettings
from l3_atom.data_source import DataFeed
from l3_atom.topics import BOOK_RESYNC

LOG = logging.getLogger(__name__)
POLL_INTERVAL_S = 0.2
BATCH = 100
METADATA_TIMEOUT_S = 10.0


class ResyncListener:
    """Delivers this source's ``book_resync`` requests to its feed."""

    def __init__(self, kafka: KafkaSettings, source: str, schema_id: int):
        self.source = source
        self.schemas: dict[int, Any] = {schema_id: parsed_schema(BOOK_RESYNC)}
        self.counts: Counter[str] = Counter()
        self._consumer = Consumer({
            **kafka.client_config(),
            "group.id": f"l3_atom_connector_{source}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        })
        metadata = self._consumer.list_topics(BOOK_RESYNC, timeout=METADATA_TIMEOUT_S)
        partitions = metadata.topics[BOOK_RESYNC].partitions
        self._consumer.assign([TopicPartition(BOOK_RESYNC, p, OFFSET_END) for p in partitions])

    def poll(self, feed: DataFeed) -> None:
        """Hand every request that arrived since the last poll to ``feed`` (never blocks)."""
        try:
            messages = self._consumer.consume(BATCH, timeout=0)
        except KafkaException as exc:
            LOG.warning("%s: reading %s failed: %s", self.source, BOOK_RESYNC, exc)
            return
        for message in messages:
            if message.error() is not None:
                continue
            try:
                request = decode_wire(message.value(), self.schemas)
            except (KeyError, ValueError, TypeError):
                self.counts["undecodable"] += 1
                continue
            if request["exchange"] != self.source:
                continue
            acted = feed.resync(request["symbol"], request["reason"])
            self.counts["acted" if acted else "ignored"] += 1

    async def run(self, feed: DataFeed) -> None:
        try:
            while True:
                self.poll(feed)
                await asyncio.sleep(POLL_INTERVAL_S)
        finally:
            self._consumer.close()
