"""``runner.py reprocess``: a raw topic's range through today's standardisers, into files or prefixed topics.

    raw topic <source>_raw [--from, --to) ──> RawMessageProcessor (the processor's, unchanged)
        ──> --jsonl / --avro / --parquet (runner.py local's outputs) or <prefix><topic> on the broker

The raw topic is the archive (ARCHITECTURE.md, principle 4); this reads it by
assignment (no consumer group, nothing committed) the frames stamped in
``[--from, --to)`` (broker timestamps; without ``--to``, up to each
partition's end when it is reached), each partition in order.  It never writes the live normalised topics: records go
to files, or to topics named with a non-empty prefix.  Books start from the
snapshots found in the range; the summary names books that never got one.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from l3_atom.avro.codecs import AvroEncoder, decode_wire, parsed_schema, register_encoders
from l3_atom.config import Settings
from l3_atom.errors import ServiceUnavailable, UserError
from l3_atom.local.cli import file_outputs
from l3_atom.local.outputs import LocalRecord, Output
from l3_atom.local.progress import StatusLine, guard_logging, restore_logging
from l3_atom.sources import standardiser_class
from l3_atom.stream_processing.raw_messages import Encoded, RawMessageProcessor
from l3_atom.time_range import iso, time_range
from l3_atom.topic_admin import ensure_topics
from l3_atom.topics import BOOK_RESYNC, DEAD_LETTER, raw_topic

BOOK_TOPICS = ("lob", "lob_l3")
METADATA_TIMEOUT_S = 10.0
# Raw messages taken from the consumer per call.
FETCH_MESSAGES = 2000
FETCH_WAIT_S = 0.5
# With this long and nothing fetched from partitions not yet at their end, the broker is not delivering.
STALL_S = 60.0
PROGRESS_INTERVAL_S = 0.5
GROUP_ID = "l3_atom_reprocess"


@dataclass
class Span:
    """One partition to read from offset ``first``; ``high`` is its end as the last fetch reported it."""

    partition: int
    first: int
    high: int = 0


class Counts:
    """What a run read and wrote, and the books it saw without a snapshot."""

    def __init__(self, frames: int) -> None:
        self.total_frames = frames
        self.frames = 0
        self.records: Counter[str] = Counter()
        self.books: set[str] = set()
        self.snapshots: set[str] = set()
        self.skipped: dict[str, int] = {}
        self.dead_letters: dict[str, int] = {}
        self.started = time.monotonic()

    def add(self, record: LocalRecord) -> None:
        self.records[record.topic] += 1
        if record.topic in BOOK_TOPICS or record.topic == BOOK_RESYNC:
            self.books.add(record.key)
            if record.value.get("is_snapshot"):
                self.snapshots.add(record.key)

    def progress(self) -> str:
        done = min(1.0, self.frames / self.total_frames) if self.total_frames else 0.0
        elapsed = time.monotonic() - self.started
        eta = f"{elapsed * (1 - done) / done:.0f} s" if done > 0 else "?"
        width = 20
        bar = "#" * int(width * done) + "." * (width - int(width * done))
        return (
            f"[{bar}] frames {self.frames}/{self.total_frames} ({100 * done:.0f}%), "
            f"records {sum(self.records.values())}, ETA {eta}"
        )


def plan(consumer: Consumer, topic: str, start_ms: int | None) -> list[Span]:
    """Each partition and the offset to start at: the first at or after ``start_ms`` (``offsets_for_times``).

    Brokers may answer with the start of the batch holding that time (Tansu does), so messages
    are checked against the range one by one as well.  The end is found by reading: the fetch's
    end of partition, or the first message at or after ``--to`` (ListOffsets' end offset is
    wrong on Tansu after multi-record batches).
    """
    metadata = consumer.list_topics(timeout=METADATA_TIMEOUT_S)
    if topic not in metadata.topics or metadata.topics[topic].error is not None:
        raise UserError(f"raw topic {topic} does not exist on the broker (has its connector run?)")
    partitions = sorted(metadata.topics[topic].partitions)
    if start_ms is None:
        return [Span(p, OFFSET_BEGINNING) for p in partitions]
    found = consumer.offsets_for_times([TopicPartition(topic, p, start_ms) for p in partitions], METADATA_TIMEOUT_S)
    # No message at or after ``start_ms``: start at the end (the fetch then reports the end of partition).
    return [Span(tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END) for tp in found]


class KafkaOutput:
    """Records to ``<prefix><topic>`` with the registry's schema ids; delivery checked at the end."""

    name = "topics"

    def __init__(self, producer: Producer, prefix: str):
        self.producer = producer
        self.prefix = prefix
        self.failures: list[str] = []

    def send(self, encoded: Encoded) -> None:
        self.producer.produce(self.prefix + encoded.topic, encoded.value, encoded.key, on_delivery=self._delivered)
        self.producer.poll(0)

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.failures.append(str(error))

    def close(self) -> None:
        self.producer.flush()
        if self.failures:
            raise ServiceUnavailable(f"{len(self.failures)} records were not delivered: {self.failures[0]}")


@dataclass
class Request:
    """What ``runner.py reprocess`` was asked."""

    source: str
    start: str | None = None
    end: str | None = None
    jsonl: str | None = None
    avro: str | None = None
    parquet: str | None = None
    topic_prefix: str | None = None
    progress: bool | None = None


def reprocess(request: Request, settings: Settings) -> Counts:
    """Run the whole range; the counts for the summary."""
    start_ms, end_ms = time_range(request.start, request.end)
    standardiser = standardiser_class(request.source)()
    topics = [*standardiser.topics, DEAD_LETTER]
    if request.topic_prefix is not None and not request.topic_prefix.strip():
        raise UserError("--topic-prefix must not be empty: reprocessing never writes the live normalised topics")
    chosen = [request.jsonl, request.avro, request.parquet, request.topic_prefix]
    if sum(option is not None for option in chosen) != 1:
        raise UserError("choose one output: --parquet DIR, --avro DIR, --jsonl FILE or --topic-prefix P")
    kafka = settings.kafka
    raw = raw_topic(request.source)
    consumer = Consumer(
        {**kafka.client_config(), "group.id": GROUP_ID, "enable.auto.commit": False, "enable.partition.eof": True}
    )
    try:
        try:
            spans = plan(consumer, raw, start_ms)
        except KafkaException as exc:
            raise ServiceUnavailable(f"cannot read {raw} from {kafka.bootstrap_servers}: {exc}") from None
        if request.topic_prefix:
            encoders = register_encoders(settings.schema_registry.client_config(), topics)
            ensure_topics(kafka, [request.topic_prefix + topic for topic in topics])
            kafka_output: KafkaOutput | None = KafkaOutput(Producer(kafka.producer_config()), request.topic_prefix)
            outputs: list[Output] = []
        else:
            # Schema ids never leave this process (as in runner.py local): any distinct numbers will do.
            encoders = {topic: AvroEncoder(topic, schema_id) for schema_id, topic in enumerate(topics, 1)}
            kafka_output = None
            outputs = file_outputs(request.jsonl, request.avro, request.parquet, topics)
        processor = RawMessageProcessor(request.source, standardiser, encoders, kafka.max_message_bytes)
        show = sys.stderr.isatty() if request.progress is None else request.progress
        counts = Counts(0)
        print(
            f"reprocessing {raw} [{iso(start_ms) if start_ms is not None else 'start'}, "
            f"{iso(end_ms) if end_ms is not None else 'its end now'})", file=sys.stderr, flush=True,
        )
        status = StatusLine() if show else None
        swapped = guard_logging(status) if status is not None else []
        try:
            asyncio.run(_run(consumer, raw, spans, (start_ms, end_ms), processor, outputs, kafka_output, counts, status))
        finally:
            restore_logging(swapped)
            if status is not None:
                status.clear()
        counts.skipped = dict(standardiser.skipped)
        counts.dead_letters = dict(processor.dead_letters)
        return counts
    finally:
        consumer.close()


async def _run(
    consumer: Consumer,
    raw: str,
    spans: list[Span],
    window: tuple[int | None, int | None],
    processor: RawMessageProcessor,
    outputs: list[Output],
    kafka_output: KafkaOutput | None,
    counts: Counts,
    status: StatusLine | None,
) -> None:
    schemas = {encoder.schema_id: parsed_schema(topic) for topic, encoder in processor.encoders.items()}
    start_ms, end_ms = window
    reading = {span.partition: span for span in spans}
    consumer.assign([TopicPartition(raw, span.partition, span.first) for span in spans])
    for output in outputs:
        await output.start()
    shown = last_fetch = time.monotonic()
    try:
        while reading:
            messages = await asyncio.to_thread(consumer.consume, FETCH_MESSAGES, FETCH_WAIT_S)
            batch: list[LocalRecord] = []
            for message in messages:
                partition = message.partition()
                if partition not in reading:
                    continue
                last_fetch = time.monotonic()
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise ServiceUnavailable(f"reading {raw} [{partition}]: {error}")
                    _finished(consumer, raw, reading, partition)
                    continue
                stamp = message.timestamp()[1]
                if end_ms is not None and stamp >= end_ms:
                    _finished(consumer, raw, reading, partition)
                    continue
                if start_ms is not None and stamp < start_ms:
                    continue
                counts.frames += 1
                key = message.key()
                for out in processor.process(
                    message.value(), message.headers(), raw, partition, message.offset(), key.decode() if key else None
                ):
                    record = LocalRecord(out.topic, out.key, decode_wire(out.value, schemas))
                    counts.add(record)
                    if kafka_output is not None:
                        kafka_output.send(out)
                    else:
                        batch.append(record)
            if batch:
                for output in outputs:
                    await output.write(batch)
            now = time.monotonic()
            if reading and now - last_fetch > STALL_S:
                raise ServiceUnavailable(f"{raw}: nothing received for {STALL_S:.0f} s; partitions left: {sorted(reading)}")
            if status is not None and now - shown >= PROGRESS_INTERVAL_S:
                counts.total_frames = _expected_frames(consumer, raw, spans, counts)
                status.show(counts.progress())
                shown = now
    finally:
        for output in outputs:
            await output.close()
        if kafka_output is not None:
            kafka_output.close()


def _expected_frames(consumer: Consumer, raw: str, spans: list[Span], counts: Counts) -> int:
    """Frames read plus those left before each partition's end as last fetched (an estimate for the ETA)."""
    left = 0
    for span in spans:
        position = consumer.position([TopicPartition(raw, span.partition)])[0].offset
        _, high = consumer.get_watermark_offsets(TopicPartition(raw, span.partition), cached=True)
        if position >= 0 and high >= position:
            left += high - position
    return counts.frames + left


def _finished(consumer: Consumer, raw: str, reading: dict[int, Span], partition: int) -> None:
    del reading[partition]
    consumer.pause([TopicPartition(raw, partition)])


def summary(counts: Counts) -> str:
    """The end-of-run report: frames, records per topic, dead letters, skips, books without a snapshot."""
    records = ", ".join(f"{topic} {n}" for topic, n in sorted(counts.records.items())) or "none"
    dead = ", ".join(f"{error} {n}" for error, n in counts.dead_letters.items()) or "none"
    skipped = ", ".join(f"{reason} {n}" for reason, n in counts.skipped.items()) or "none"
    lines = [
        f"frames {counts.frames}; records: {records}",
        f"dead letters: {dead}",
        f"skipped: {skipped}",
    ]
    missing = sorted(counts.books - counts.snapshots)
    if missing:
        lines.append(f"books that never got a snapshot in the range: {', '.join(missing)}")
    return "\n".join(lines)


def main(request: Request) -> None:
    counts = reprocess(request, Settings())
    print(summary(counts), file=sys.stderr, flush=True)
