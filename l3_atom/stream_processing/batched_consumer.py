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

Offsets stay at least once: Faust acks a batch's event (its last offset) after
the agent has processed every record in it; when it next computes what to
commit, the consumer counts the rest of that batch's offsets as acked too, so
a commit never moves past a record before its batch is done.  (Faust's gap bookkeeping, an interval tree rebuilt per call,
cost a seventh of the worker's time when used per batch.)  Topics not named (changelogs, Faust's own)
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per partition: a delivered batch's last offset -> its first (see ``_new_offset``).
        self._batch_spans: dict[TP, dict[int, int]] = {}

    def _new_consumer_thread(self) -> FetchWaitConsumerThread:
        return FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

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
        # As Faust's own drain: the read offset is the last delivered offset, or after a seek the
        # committed one, which is the next to read: a record at it is fresh (``>``, not ``>=``,
        # dropped the first record after every takeover of a partition with a committed offset).
        read = self._read_offset[tp]
        fresh = RecordBatch(r for r in records if read is None or r.offset >= read)
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
        self._batch_spans.setdefault(tp, {})[last.offset] = fresh[0].offset
        await self._deliver(tp, message, fresh[0].offset)

    async def _deliver(self, tp: TP, message: ConsumerMessage, first_offset: int) -> None:
        """Hand one message (a record, or a batch ending at ``message.offset``) to the streams, as Faust does."""
        offset = message.offset
        read = self._read_offset[tp]
        if read is not None and offset < read:
            return  # already delivered before a seek: Faust drops these too
        if read and first_offset - read > 1 and self.app.topics.acks_enabled_for(message.topic):
            await self._add_gap(tp, read + 1, first_offset - 1)  # offsets the log no longer holds
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()
        await self.wait_first(self.callback(message), self.suspend_flow.wait())
        self._read_offset[tp] = offset

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's next commit offset, once each acked batch's other offsets are counted as acked too.

        Faust acks an event's one offset (its C stream iterator inlines the ack, so this is where
        a batch's span can be added); commits are rare, so the span is added then.  Faust's merge
        of the offsets the log no longer holds (gaps) is done here too, so that every offset is
        counted once: batches delivered again after a seek overlap, and so do gaps noted while a
        fetch from before a seek was delivered.  Faust's scan for the first run of consecutive
        offsets stops at a repeated one: the commit then crept one offset per commit interval, and
        a taken-over partition's backlog stayed uncommitted for hours.
        """
        acked = self._acked[tp]
        if not acked:
            return super()._new_offset(tp)
        index = self._acked_index[tp]
        committed = self._committed_offset[tp] or 0
        done: set[int] = set()
        spans = self._batch_spans.get(tp)
        if spans:
            for last in acked:
                first = spans.pop(last, None)
                if first is not None:
                    # The batch's whole span: its records, and any offsets between them the log no longer holds.
                    done.update(range(max(first, committed), last))
        gaps = self._gap[tp]
        if gaps:
            top = max(acked)
            found = sorted(gaps.overlap(0, top), key=lambda gap: gap.begin)
            if found:
                for gap in found:
                    done.update(range(gap.begin, gap.end))
                gaps.chop(0, max(found[-1].end - 1, top + 1))  # as Faust does
        done.difference_update(index)
        acked.extend(done)
        index.update(done)
        if len(acked) != len(index):  # a repeat that came some other way
            acked[:] = sorted(set(acked))
        return super()._new_offset(tp)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._batch_spans.pop(tp, None)
        await super().on_partitions_revoked(revoked)


class FetchWaitConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's consumer thread, giving its aiokafka consumer the app's fetch wait.

    On Tansu a fetch is answered only when its wait ends, so the wait is the latency of every
    record (``config.ini``, the local profile); Faust has no setting for it.
    """

    def _create_consumer(self, loop: Any) -> Any:
        consumer = super()._create_consumer(loop)
        wait = getattr(self.app, "fetch_max_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = wait  # read when the consumer starts and builds its fetcher
        return consumer


class BatchingTransport(aiokafka_driver.Transport):
    Consumer = BatchingConsumer


class BatchingApp(faust.App):
    """A Faust app whose agents can read topics in batches (:meth:`batched_topic`)."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int | None = None, **kwargs: Any) -> None:
        self.batched_topics: set[str] = set()
        # How long the broker may hold a fetch (Faust fixes it at 1500 ms; a broker profile sets it).
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def batched_topic(self, *names: str) -> faust.TopicT:
        """A raw-bytes topic whose events are :class:`RecordBatch` values (``async for batch in stream``)."""
        self.batched_topics.update(names)
        return self.topic(*names, key_serializer="raw", value_serializer="raw")

    def _new_transport(self) -> BatchingTransport:
        return BatchingTransport(self.conf.broker_consumer, self)
