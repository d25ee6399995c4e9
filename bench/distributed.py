"""The distributed path on the local broker: processor throughput, end-to-end latency, connector rate, memory.

All of it shares this machine's cores with the broker, the producer and the
measuring consumer, as the issue asks; figures are for this machine only.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench.pure import ATOM, coinbase_frames
from l3_atom.config import Settings
from l3_atom.infra.local_pipeline import LocalPipeline, LocalStack
from l3_atom.sources import standardiser_class
from l3_atom.stream_processing.codecs import decode_wire, parsed_schema
from l3_atom.topics import ATOM_TIMESTAMP_HEADER, LOB_L3, TICKER, TRADES_L3, raw_topic

OUTPUT_TOPICS = [LOB_L3, TRADES_L3, TICKER]
# Journal lines of level-3 REST books served are from connection "rest:<product id>".
REST_PREFIX = "rest:"
POLL_S = 0.05
TIMEOUT_S = 180.0
PAGE_SIZE = 4096
PERCENT = 100


def _consumer(bootstrap: str, topics: list[str]) -> Consumer:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
        # Latency is measured at this consumer: it must not wait to fill fetches.
        "fetch.wait.max.ms": 5, "fetch.min.bytes": 1,
    })
    metadata = consumer.list_topics(timeout=10)
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata.topics[t].partitions])
    return consumer


def _count(
    consumer: Consumer, expected: int, on_message: Callable | None = None, stop_after: float = TIMEOUT_S
) -> tuple[int, float]:
    """Consume until ``expected`` messages (or ``stop_after`` s); return the count and when the last arrived."""
    count, last = 0, time.monotonic()
    deadline = time.monotonic() + stop_after
    while count < expected and time.monotonic() < deadline:
        for message in consumer.consume(PAGE_SIZE, POLL_S):
            if message.error():
                continue
            count += 1
            last = time.monotonic()
            if on_message is not None:
                on_message(message)
    return count, last


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure_all(add: Callable, scale: Any) -> None:
    """Every distributed measurement at ``scale`` (``bench.run.Scale``)."""
    repeats, messages = scale.repeats, scale.messages
    for workers in (1, 2):
        add("distributed path (raw topic -> processor -> topics)", f"{workers} worker(s)", "msg/s",
            [processor_throughput(workers, messages) for _ in range(repeats)], f"{messages} Coinbase full messages")
    for rate in (1_000, 10_000):
        p50, p99, worst = [], [], []
        for _ in range(repeats):
            samples = latency(rate, duration_s=scale.latency_s)
            p50.append(samples[0])
            p99.append(samples[1])
            worst.append(samples[2])
        section = f"latency at {rate:,} msg/s offered (atom_timestamp -> consumer)"
        add(section, "p50", "ms", p50)
        add(section, "p99", "ms", p99)
        add(section, "max", "ms", worst)
    for symbols in (1, 50):
        rates, connector_mb, processor_mb = [], [], []
        for _ in range(repeats):
            frames_per_s, rss = connector_rate(symbols, scale.connector_frames)
            rates.append(frames_per_s)
            connector_mb.append(rss["connector"])
            processor_mb.append(rss["processor0"])
        add("connector (websocket -> raw topic)", f"{symbols} symbol(s)", "frames/s", rates)
        add("memory (peak RSS)", f"connector, {symbols} symbol(s)", "MB", connector_mb)
        add("memory (peak RSS)", f"processor, {symbols} symbol(s)", "MB", processor_mb)


def processor_throughput(workers: int, messages: int) -> float:
    """Raw messages/s one or two workers turn into normalised records, with the raw topic preloaded."""
    frames = coinbase_frames(messages)
    std = standardiser_class("coinbase")()
    expected = sum(len(std.standardise(f, ATOM)) for f in frames)
    with tempfile.TemporaryDirectory() as workdir, LocalStack(("coinbase",), workers, Path(workdir)) as stack:
        with mock.patch.dict(os.environ, stack.env()):
            producer = Producer(Settings().kafka.producer_config())
        headers = [(ATOM_TIMESTAMP_HEADER, str(ATOM).encode())]
        consumer = _consumer(stack.broker.bootstrap_servers, OUTPUT_TOPICS)
        started = time.monotonic()
        for frame in frames:
            product = b"BTC-USD" if b"BTC-USD" in frame else b"ETH-USD" if b"ETH-USD" in frame else b"SOL-USD"
            while True:
                try:
                    producer.produce(raw_topic("coinbase"), frame, f"coinbase_{product.decode()}_full", headers=headers)
                    break
                except BufferError:  # the producer's queue is full: let it deliver, then retry
                    producer.poll(POLL_S)
        producer.flush()
        count, last = _count(consumer, expected)
        consumer.close()
        if count < expected:
            raise RuntimeError(f"only {count} of {expected} records arrived")
        return messages / (last - started)


def latency(rate: int, duration_s: float) -> tuple[float, float, float]:
    """p50, p99 and max of (consumer receive time - atom_timestamp) in ms, for the simulator at ``rate``."""
    messages = int(rate * duration_s)
    delays: list[float] = []
    schemas: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as workdir, LocalPipeline(
        ("BTC.USD", "ETH.USD"), rate=rate, max_messages=messages, workdir=Path(workdir)
    ) as pipeline:
        consumer = _consumer(pipeline.broker.bootstrap_servers, OUTPUT_TOPICS)

        def on_message(message: object) -> None:
            received = time.time_ns() // 1000
            value = message.value()
            schema_id = int.from_bytes(value[1:5], "big")
            if schema_id not in schemas:
                schemas[schema_id] = parsed_schema(message.topic())
            record = decode_wire(value, schemas)
            delays.append((received - record["atom_timestamp"]) / 1000)

        # Read while the simulator runs, then until every record its journal implies has arrived.
        count, _ = _count(consumer, 10**12, on_message, stop_after=duration_s)
        _count(consumer, expected_records(pipeline.journal) - count, on_message)
        consumer.close()
    delays.sort()
    return statistics.median(delays), delays[int(len(delays) * 99 / PERCENT)], delays[-1]


def expected_records(journal: Path) -> int:
    """Records of the read topics that the frames and REST books in a simulator journal give (pure standardiser).

    Journal order is close to the raw topic's, not equal (a REST book may land a few frames apart), so
    the count can be off by the few book events a snapshot holds: reading then ends at ``TIMEOUT_S``.
    """
    std = standardiser_class("coinbase")()
    count = 0
    for line in journal.open():
        entry = json.loads(line)
        conn = str(entry["conn"])
        key = f"coinbase_{conn.removeprefix(REST_PREFIX)}_full" if conn.startswith(REST_PREFIX) else None
        count += sum(out.topic in OUTPUT_TOPICS for out in std.standardise(entry["data"].encode(), ATOM, key))
    return count


def connector_rate(symbols: int, messages: int) -> tuple[float, dict[str, float]]:
    """Frames/s the connector archives from the simulator at its top rate, and peak RSS per process."""
    names = [f"S{i:02d}.USD" for i in range(symbols)] if symbols > 1 else ["BTC.USD"]
    with tempfile.TemporaryDirectory() as workdir, LocalPipeline(
        names, rate=100_000, max_messages=messages, workdir=Path(workdir)
    ) as pipeline:
        consumer = _consumer(pipeline.broker.bootstrap_servers, [raw_topic("coinbase")])
        stamps: list[int] = []
        _count(consumer, messages, lambda m: stamps.append(m.timestamp()[1]))
        consumer.close()
        rss = {name: _peak_rss_mb(proc.pid) for name, proc in pipeline.processes.items()}
    stamps.sort()
    return len(stamps) / max((stamps[-1] - stamps[0]) / 1000, 1e-3), rss
