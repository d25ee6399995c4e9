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
from l3_atom.infra.broker import LocalBroker
from l3_atom.infra.local_pipeline import LocalPipeline, LocalStack
from l3_atom.sources import standardiser_class
from l3_atom.stream_processing.codecs import decode_wire, parsed_schema
from l3_atom.topic_admin import ensure_topics
from l3_atom.topics import ATOM_TIMESTAMP_HEADER, LOB_L3, TICKER, TRADES_L3, raw_topic

OUTPUT_TOPICS = [LOB_L3, TRADES_L3, TICKER]
# Journal lines of level-3 REST books served are from connection "rest:<product id>".
REST_PREFIX = "rest:"
POLL_S = 0.05
# The measuring consumer waits at most this long for a page: its own share of a latency figure.
LATENCY_PAGE_WAIT_S = 0.001
TIMEOUT_S = 180.0
PAGE_SIZE = 4096
PERCENT = 100
# A sustained rate is measured between these percentiles of the records' arrivals.
SUSTAINED_FROM, SUSTAINED_TO = 10, 90
US_PER_S = 1_000_000
NS_PER_MS = 1_000_000
# Frames in the first seconds wait behind the connect-time REST snapshot: reported apart from steady state.
WARMUP_S = 3.0
# Reading goes on this long after the simulator's run before the expected records are counted.
DRAIN_S = 3.0
LATENCY_FIGURES = ("p50", "p99", "max", f"max in the first {WARMUP_S:g} s (connect backlog)")
LATENCY_NOTES = {"p50": f"steady state: frames after the first {WARMUP_S:g} s"}
HOP_TOPIC = "bench_hop"
HOP_KEYS = 8


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
    consumer: Consumer, expected: int, on_message: Callable | None = None, stop_after: float = TIMEOUT_S,
    page_wait_s: float = POLL_S,
) -> tuple[int, float]:
    """Consume until ``expected`` messages (or ``stop_after`` s); return the count and when the last arrived.

    ``consume`` returns when a page is full or ``page_wait_s`` has passed: a latency measurement
    must keep that wait short, or the measuring consumer's own wait is counted.
    """
    count, last = 0, time.monotonic()
    deadline = time.monotonic() + stop_after
    while count < expected and time.monotonic() < deadline:
        for message in consumer.consume(PAGE_SIZE, page_wait_s):
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
    repeats, messages = scale.repeats, scale.broker_messages
    for workers in (1, 2):
        add("distributed path (raw topic -> processor -> topics)", f"{workers} worker(s)", "msg/s",
            [processor_throughput(workers, messages) for _ in range(repeats)], f"{messages} Coinbase full messages")
    for rate in (1_000, 10_000):
        runs = [latency(rate, duration_s=scale.latency_s) for _ in range(repeats)]
        section = f"latency at {rate:,} msg/s offered (atom_timestamp -> consumer)"
        for index, name in enumerate(LATENCY_FIGURES):
            add(section, name, "ms", [run[index] for run in runs], LATENCY_NOTES.get(name, ""))
        hops = [broker_hop_latency(rate, scale.latency_s) for _ in range(repeats)]
        add(section, "broker alone, one hop: p50", "ms", [hop[0] for hop in hops],
            "produce -> consume on the same broker, same producer/consumer settings: the floor of each of the two hops")
        add(section, "broker alone, one hop: p99", "ms", [hop[1] for hop in hops])
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
    """Raw messages/s one or two workers sustain, over the middle 80% of their normalised records.

    The raw topic is written as fast as the producer goes while the workers read it; the start (group
    join, first fetch) and the tail are not part of a sustained rate.
    """
    frames = coinbase_frames(messages)
    std = standardiser_class("coinbase")()
    expected = sum(len(std.standardise(f, ATOM)) for f in frames)
    with tempfile.TemporaryDirectory() as workdir, LocalStack(("coinbase",), workers, Path(workdir)) as stack:
        with mock.patch.dict(os.environ, stack.env()):
            producer = Producer(Settings().kafka.producer_config())
        headers = [(ATOM_TIMESTAMP_HEADER, str(ATOM).encode())]
        consumer = _consumer(stack.broker.bootstrap_servers, OUTPUT_TOPICS)
        arrivals: list[float] = []
        for frame in frames:
            product = b"BTC-USD" if b"BTC-USD" in frame else b"ETH-USD" if b"ETH-USD" in frame else b"SOL-USD"
            while True:
                try:
                    producer.produce(raw_topic("coinbase"), frame, f"coinbase_{product.decode()}_full", headers=headers)
                    break
                except BufferError:  # the producer's queue is full: let it deliver, then retry
                    producer.poll(POLL_S)
        producer.flush()
        count, _ = _count(consumer, expected, lambda _: arrivals.append(time.monotonic()))
        consumer.close()
        if count < expected:
            raise RuntimeError(f"only {count} of {expected} records arrived")
        low, high = count * SUSTAINED_FROM // PERCENT, count * SUSTAINED_TO // PERCENT
        records_per_message = expected / messages
        return (high - low) / records_per_message / max(arrivals[high] - arrivals[low], 1e-3)


def latency(rate: int, duration_s: float) -> tuple[float, ...]:
    """Delays (consumer receive time - atom_timestamp, ms) for the simulator at ``rate``: see ``LATENCY_FIGURES``.

    Steady state is every record received for frames after the first ``WARMUP_S``: at connect the
    connector holds a symbol's frames while it fetches the REST book (so that no update precedes
    its snapshot), and that backlog is reported on its own line.
    """
    messages = int(rate * (duration_s + WARMUP_S))
    samples: list[tuple[int, float]] = []
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
            atom = decode_wire(value, schemas)["atom_timestamp"]
            samples.append((atom, (received - atom) / 1000))

        # Read while the simulator runs and a while after, then until every record its journal implies has
        # arrived: counting them from the journal takes a second or two, and a consumer that stops polling
        # meanwhile would add that to the latency of every record still on its way.
        count, _ = _count(consumer, 10**12, on_message, duration_s + WARMUP_S + DRAIN_S, LATENCY_PAGE_WAIT_S)
        _count(consumer, expected_records(pipeline.journal) - count, on_message, page_wait_s=LATENCY_PAGE_WAIT_S)
        consumer.close()
    start = min(atom for atom, _ in samples) + int(WARMUP_S * US_PER_S)
    steady = sorted(delay for atom, delay in samples if atom >= start)
    warmup = [delay for atom, delay in samples if atom < start]
    return statistics.median(steady), _percentile(steady, 99), steady[-1], max(warmup, default=0.0)


def _percentile(ordered: list[float], percent: int) -> float:
    return ordered[int(len(ordered) * percent / PERCENT)]


def broker_hop_latency(rate: int, duration_s: float) -> tuple[float, float]:
    """p50/p99 (ms) of one produce -> consume hop on a bare local broker at ``rate`` msg/s, nothing else running."""
    with LocalBroker() as broker, mock.patch.dict(os.environ, {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}):
        ensure_topics(Settings().kafka, [HOP_TOPIC])
        producer = Producer(Settings().kafka.producer_config())
        consumer = _consumer(broker.bootstrap_servers, [HOP_TOPIC])
        # One record first, so that connecting and the first fetch are not counted.
        producer.produce(HOP_TOPIC, b"warm-up", b"warm-up")
        producer.flush()
        _count(consumer, 1)
        delays: list[float] = []
        count = int(rate * duration_s)
        interval = 1 / rate
        started = time.monotonic()
        for index in range(count):
            producer.produce(HOP_TOPIC, str(time.time_ns()).encode(), str(index % HOP_KEYS))
            producer.poll(0)
            for message in consumer.consume(PAGE_SIZE, 0):
                delays.append((time.time_ns() - int(message.value())) / NS_PER_MS)
            pause = started + (index + 1) * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        producer.flush()
        _count(consumer, count - len(delays), lambda m: delays.append((time.time_ns() - int(m.value())) / NS_PER_MS),
               page_wait_s=LATENCY_PAGE_WAIT_S)
        consumer.close()
    delays.sort()
    return statistics.median(delays), _percentile(delays, 99)


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
