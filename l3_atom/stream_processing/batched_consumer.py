"""Faust delivering a topic's records to its agent in batches: one event per fetched run of a partition.

Why: Faust hands every Kafka record to a stream as its own event.  Per record
its consumer starts four tasks (``Service.wait_first``), its stream iterator
yields to the event loop (``sleep(0)``) and half a dozen sensors run.
Measured on this project's machines, that alone caps a worker at about 5,600
records/s before any work is done; L3 Atom's processor has to do several
times that.

How: for the topics an app names with :meth:`BatchingApp.batched_topic`, the
consumer turns what one fetch returned for one partition into a single Faust
message whose ``value`` is a :class:`RecordBatch` (the aiokafka
``ConsumerRecord`` objects, each with ``topic``, ``partition``, ``offset``,
``key``, ``value`` and ``headers``) and whose ``offset`` is the batch's last.
Everything else stays Faust's: consumer groups, assignment, rebalancing,
flow control, tables, and offset commits.  An agent iterates its stream
(``async for batch in stream``) and each batch's records.

Offsets stay at least once: the offsets inside a batch are registered with
Faust's consumer as covered by the batch (its own gap bookkeeping, which it
fills in only up to the highest offset acked), so a commit moves past a batch
only after the stream has acked the batch's event, that is after the agent
has processed every record in it.  Topics not named (changelogs, Faust's own)
get Faust's usual delivery, one event per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from faust.types.tuples import ConsumerMessage

FETCH_TIMEOUT_S = 1.0
MS_PER_S = 1000.0


class RecordBatch(list):
    """One fetch's records of one partition, in offset order: the value of a batched topic's event."""


class BatchingConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer, delivering the app's batched topics one batch per partition and fetch."""

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by the e2e tests
        """Faust's own fetch loop (``Consumer._drain_messages``), with batched topics delivered per batch."""
        batched = getattr(self.app, "batched_topics", frozenset())
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(FETCH_TIMEOUT_S)
                await self.sleep(0)
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:
                    await self.perform_seek()
                    continue
                generation = self.app.consumer_generation_id
                for tp, tp_records in records.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        break
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    if tp.topic in batched:
                        await self._deliver_batch(tp, tp_records)
                    else:
                        for record in tp_records:
                            await self._deliver(tp, self._to_message(tp, record), record.offset)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise

    async def _deliver_batch(self, tp: TP, records: Sequence[Any]) -> None:
        read = self._read_offset[tp]
        fresh = RecordBatch(r for r in records if read is None or r.offset > read)
        if not fresh:
            return
        last = fresh[-1]
        message = ConsumerMessage(
            last.topic, last.partition, last.offset,
            last.timestamp / MS_PER_S if last.timestamp is not None else None,
            last.timestamp_type, last.headers, None, fresh, None,
            0, sum(r.serialized_value_size for r in fresh), tp,
            generation_id=self.app.consumer_generation_id,
        )
        await self._deliver(tp, message, fresh[0].offset)

    async def _deliver(self, tp: TP, message: ConsumerMessage, first_offset: int) -> None:
        """Hand one message (a record, or a batch ending at ``message.offset``) to the streams, as Faust does."""
        offset = message.offset
        read = self._read_offset[tp]
        if read is not None and offset < read:
            return  # already delivered before a seek: Faust drops these too
        if self.app.topics.acks_enabled_for(message.topic):
            if read and first_offset - read > 1:
                await self._add_gap(tp, read + 1, first_offset)  # offsets missing from the log
            if first_offset < offset:
                await self._add_gap(tp, first_offset, offset - 1)  # inside the batch: acked with it
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()
        await self.wait_first(self.callback(message), self.suspend_flow.wait())
        self._read_offset[tp] = offset


class BatchingTransport(aiokafka_driver.Transport):
    Consumer = BatchingConsumer


class BatchingApp(faust.App):
    """A Faust app whose agents can read topics in batches (:meth:`batched_topic`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.batched_topics: set[str] = set()
        super().__init__(*args, **kwargs)

    def batched_topic(self, *names: str) -> faust.TopicT:
        """A raw-bytes topic whose events are :class:`RecordBatch` values (read them with :func:`records_of`)."""
        self.batched_topics.update(names)
        return self.topic(*names, key_serializer="raw", value_serializer="raw")

    def _new_transport(self) -> BatchingTransport:
        return BatchingTransport(self.conf.broker_consumer, self)
