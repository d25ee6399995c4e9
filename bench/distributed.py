"""The distributed path on the local broker: processor throughput, end-to-end latency, connector rate, memory.

All of it shares this machine's cores with the broker, the producer and the
measuring consumer, as the issue asks; figures are for this machine only.
The connector's rate is measured with no processor running, beside the rate
at which the simulator (a Python process, the producer of frames) can feed a
reader that does nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Self, TypeVar
from unittest import mock

import aiohttp
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench.cpu import CpuSampler
from bench.pure import ATOM, RecordedTraffic, coinbase_frames, encoders, process_captured, recorded_traffic
from l3_atom.avro.codecs import decode_wire, parsed_schema, wire_schema_id
from l3_atom.config import Settings
from l3_atom.infra.broker import LocalBroker
from l3_atom.infra.local_pipeline import READY_TIMEOUT_S, LocalPipeline, LocalStack
from l3_atom.infra.processes import wait_until
from l3_atom.sources import standardiser_class
from l3_atom.topic_admin import ensure_topics
from l3_atom.topics import ATOM_TIMESTAMP_HEADER, CANDLE, LOB_L3, SYMBOL_HEADER, TICKER, TRADES_L3, raw_topic

StackT = TypeVar("StackT", bound=LocalStack)
OUTPUT_TOPICS = [LOB_L3, TRADES_L3, TICKER]
# Fewer captured frames than this arrive in a few fetches: their rate is not a sustained one.
SUSTAINED_FRAMES = 1000
FEW_FRAMES_NOTE = "; too few frames to sustain anything: a few fetches' worth, not a sustained rate"
# Topics an agent of the processor writes besides the raw-message path (candles from trades).
AGENT_TOPICS = {CANDLE}
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
# A span of arrival times is never taken as shorter than this (record timestamps are whole milliseconds).
MIN_SPAN_S = 1e-3
US_PER_S = 1_000_000
US_PER_MS = 1000
NS_PER_MS = 1_000_000
NS_PER_US = 1000
# Frames in the first seconds wait behind the connect-time REST snapshot: reported apart from steady state.
WARMUP_S = 3.0
# Reading goes on this long after the simulator's run before the expected records are counted.
DRAIN_S = 3.0
# Each output record's Kafka timestamp is when the processor produced it: it splits the delay in two hops.
FIRST_HOP = "atom_timestamp -> processor produces"
SECOND_HOP = "processor produces -> consumer receives"
LATENCY_FIGURES = (
    "p50", "p99", "max", f"max in the first {WARMUP_S:g} s (connect backlog)",
    f"{FIRST_HOP}: p50", f"{FIRST_HOP}: p99", f"{SECOND_HOP}: p50", f"{SECOND_HOP}: p99",
)
# CPU of each process over the steady state, % of one core (the machine has os.cpu_count() of them).
CPU_PROCESSES = ("broker", "processor0", "connector", "simulator", "consumer")
CPU_SAMPLE_S = 1.0
MIN_CPU_SAMPLES = 4  # per steady state, at the smoke scale's short runs too
CPU_FIGURES = (
    *(f"CPU, {name}" for name in CPU_PROCESSES),
    "CPU, broker: start of steady state", "CPU, broker: end of steady state",
    "CPU, all of them, % of the machine",
)
LATENCY_NOTES = {
    "CPU, broker": "% of one core, mean over steady state",
    "CPU, broker: start of steady state": f"each over one sampling interval, at most {CPU_SAMPLE_S:g} s",
    "CPU, broker: end of steady state": "Tansu's in-memory store lists every stored batch on each fetch",
    "CPU, consumer": "the measuring consumer (this process); it decodes only after the run",
    "p50": f"steady state: frames after the first {WARMUP_S:g} s",
    f"{FIRST_HOP}: p50": "connector, broker, processor (the record's Kafka timestamp, ms resolution)",
    f"{SECOND_HOP}: p50": "the processor's producer, broker, measuring consumer",
}
HOP_TOPIC = "bench_hop"
HOP_KEYS = 8
# The bare broker's latency is also shown for the first and the last this-percent of a run's records.
AGE_FRACTION = 20


def _consumer(bootstrap: str, topics: list[str]) -> Consumer:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
        # Latency is measured at this consumer: it must not wait to fill fetches.
        "fetch.wait.max.ms": 5, "fetch.min.bytes": 1,
    })
    metadata = consumer.list_topics(timeout=10)
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata.topics[t].partitions])
    return consumer


class Throughput(NamedTuple):
    """A role's sustained rate and the CPU it spent per message meanwhile."""

    per_s: float
    cpu_us: float


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


async def measure_all(add: Callable, scale: Any) -> dict[int, float]:
    """Every distributed measurement at ``scale`` (``bench.run.Scale``); the simulator's ceiling per symbol count."""
    repeats, messages = scale.repeats, scale.broker_messages
    for workers in (1, 2):
        add("distributed path (raw topic -> processor -> topics)", f"{workers} worker(s)", "msg/s",
            [processor_throughput(workers, messages).per_s for _ in range(repeats)], f"{messages} Coinbase full messages")
    # Captured in a thread: the capture runs its own event loop.
    for recorded in await asyncio.to_thread(list, recorded_traffic(scale.recordings)):
        add("distributed path, recordings (raw topic -> 1 worker -> topics)", recorded.source, "msg/s",
            [recording_throughput(recorded) for _ in range(repeats)],
            f"{len(recorded.frames)} captured frames; the pure figure: 'standardise, one core (recordings)'"
            + (FEW_FRAMES_NOTE if len(recorded.frames) < SUSTAINED_FRAMES else ""))
    for rate in (1_000, 10_000):
        runs = [latency(rate, duration_s=scale.latency_s) for _ in range(repeats)]
        section = f"latency at {rate:,} msg/s offered (atom_timestamp -> consumer)"
        for name in LATENCY_FIGURES + CPU_FIGURES:
            add(section, name, "ms" if name in LATENCY_FIGURES else "%", [run[name] for run in runs],
                LATENCY_NOTES.get(name, ""))
        hops = [broker_hop_latency(rate, scale.latency_s) for _ in range(repeats)]
        add(section, "broker alone, one hop: p50", "ms", [hop[0] for hop in hops],
            "produce -> consume on the same broker, same producer/consumer settings: the floor of each of the two hops")
        add(section, "broker alone, one hop: p99", "ms", [hop[1] for hop in hops])
        for index, part in ((2, "first"), (3, "last")):
            add(section, f"broker alone, one hop: p99 of the {part} {AGE_FRACTION}% of the run", "ms",
                [hop[index] for hop in hops],
                "Tansu's in-memory store slows as records pile up" if part == "last" else "")
    measure_metrics_cost(add, scale)
    return measure_connector(add, scale)


def _metrics(stack: StackT, metrics: bool) -> StackT:
    """``stack`` whose connector and workers serve metrics, or run with ``--no-metrics``."""
    stack.metrics = metrics
    return stack


def measure_metrics_cost(add: Callable, scale: Any) -> None:
    """Connector and processor with and without metrics, runs interleaved in one bench run.

    Each role's rate and its CPU µs per message over the same middle 80% are printed both ways: on a
    loaded machine the wall-clock rates move with whatever else runs, the CPU cost much less.
    """
    runs: dict[tuple[str, bool], list[Throughput]] = {}
    for _ in range(scale.repeats):
        for metrics in (True, False):
            runs.setdefault(("connector", metrics), []).append(
                connector_rate(1, scale.connector_frames, workers=0, metrics=metrics)[0])
            runs.setdefault(("processor", metrics), []).append(
                processor_throughput(1, scale.broker_messages, metrics=metrics))
    for role, unit in (("connector", "frames/s"), ("processor", "msg/s")):
        with_metrics, without = runs[role, True], runs[role, False]
        for figure, pick, what in ((unit, _rate, "rate"), (CPU_US_PER_MESSAGE, _cpu_us, "CPU per message")):
            served, bare = [pick(run) for run in with_metrics], [pick(run) for run in without]
            bare_median, served_median = statistics.median(bare), statistics.median(served)
            if not (bare_median and served_median):
                # A short run (the smoke scale) may spend less CPU than /proc's clock ticks show.
                skipped = f"{what}: skipped, the run was shorter than /proc's CPU clock ticks"
                add(METRICS_SECTION, f"{role}, metrics served", figure, served, skipped)
                add(METRICS_SECTION, f"{role}, --no-metrics", figure, bare, skipped)
                continue
            add(METRICS_SECTION, f"{role}, metrics served", figure, served,
                f"{what}: {served_median / bare_median:.1%} of the figure without metrics (medians)")
            add(METRICS_SECTION, f"{role}, --no-metrics", figure, bare, "same inputs, runs interleaved")


def _rate(run: Throughput) -> float:
    return run.per_s


def _cpu_us(run: Throughput) -> float:
    return run.cpu_us


def processor_throughput(workers: int, messages: int, metrics: bool = True) -> Throughput:
    """Raw messages/s one or two workers sustain on simulated Coinbase full traffic (:func:`through_broker`)."""
    frames = coinbase_frames(messages)
    std = standardiser_class("coinbase")()
    # Only the topics read back count: a book the processor lost also asks for a resync (``book_resync``).
    expected = sum(output.topic in OUTPUT_TOPICS for f in frames for output in std.standardise(f, ATOM))

    def key(frame: bytes) -> str:
        product = "BTC-USD" if b"BTC-USD" in frame else "ETH-USD" if b"ETH-USD" in frame else "SOL-USD"
        return f"coinbase_{product}_full"

    return through_broker("coinbase", [(key(f), f, None) for f in frames], OUTPUT_TOPICS, expected, workers,
                          metrics)


def recording_throughput(recorded: RecordedTraffic) -> float:
    """Raw messages/s one worker sustains on a recording's captured frames, read back from its output topics.

    The records expected are those the pure processor makes of the same frames, on the topics only it
    writes (the candle agent writes ``candle`` too, from trades).
    """
    counts = Counter(out.topic for out in process_captured(recorded.source, recorded.frames, encoders()))
    topics = sorted(topic for topic in counts if topic not in AGENT_TOPICS)
    return through_broker(recorded.source, recorded.frames, topics, sum(counts[t] for t in topics), workers=1).per_s


def through_broker(
    source: str, frames: list[tuple[str, bytes, str | None]], topics: list[str], expected: int, workers: int,
    metrics: bool = True,
) -> Throughput:
    """Raw messages/s the workers sustain over the middle 80% of ``expected`` records on ``topics``.

    With it, the workers' CPU µs per raw message over the same records.

    The raw topic is written as fast as the producer goes while the workers read it; the start (group
    join, first fetch) and the tail are not part of a sustained rate.
    """
    with tempfile.TemporaryDirectory() as workdir, _metrics(LocalStack((source,), workers, Path(workdir)),
                                                             metrics) as stack:
        with mock.patch.dict(os.environ, stack.env()):
            producer = Producer(Settings().kafka.producer_config())
        stamp = (ATOM_TIMESTAMP_HEADER, str(ATOM).encode())
        consumer = _consumer(stack.broker.bootstrap_servers, topics)
        arrivals: list[float] = []
        produced_s: list[float] = []

        def arrived(message: Any) -> None:
            arrivals.append(time.monotonic())
            produced_s.append(message.timestamp()[1] / MS_PER_S)

        for key, frame, symbol in frames:
            headers = [stamp, (SYMBOL_HEADER, symbol.encode())] if symbol else [stamp]
            while True:
                try:
                    producer.produce(raw_topic(source), frame, key, headers=headers)
                    break
                except BufferError:  # the producer's queue is full: let it deliver, then retry
                    producer.poll(POLL_S)
        producer.flush()
        del producer  # closed while the broker still runs, so it logs no disconnects
        with _role_cpu(stack, lambda name: name != REGISTRY) as workers_cpu:
            count, _ = _count(consumer, expected, arrived)
        consumer.close()
        if count < expected:
            raise RuntimeError(f"{source}: only {count} of {expected} records arrived")
        per_message = len(frames) / expected  # records -> raw messages
        return Throughput(sustained_rate(arrivals) * per_message, workers_cpu.per_item_us(produced_s) / per_message)


def _role_cpu(stack: LocalStack, is_role: Callable[[str], bool]) -> CpuSampler:
    """A sampler of the CPU time of the stack's processes whose names ``is_role`` accepts."""
    return CpuSampler({name: proc.pid for name, proc in stack.processes.items() if is_role(name)}, ROLE_CPU_SAMPLE_S)


def sustained_rate(times_s: list[float]) -> float:
    """Events/s between the ``SUSTAINED_FROM`` and ``SUSTAINED_TO`` percentiles of their times (s, any order).

    The start (group join, first fetch, connect-time backlog) and the tail are not a sustained rate.
    """
    ordered = sorted(times_s)
    low, high = len(ordered) * SUSTAINED_FROM // PERCENT, len(ordered) * SUSTAINED_TO // PERCENT
    return (high - low) / max(ordered[high] - ordered[low], MIN_SPAN_S)


def latency(rate: int, duration_s: float) -> dict[str, float]:
    """Delays (consumer receive time - atom_timestamp, ms) for the simulator at ``rate``, and the CPU it took.

    Figures are named in ``LATENCY_FIGURES`` and ``CPU_FIGURES``.  Steady state is every record
    received for frames after the first ``WARMUP_S``: at connect the connector holds a symbol's
    frames while it fetches the REST book (so that no update precedes its snapshot), and that
    backlog is reported on its own line.
    """
    messages = int(rate * (duration_s + WARMUP_S))
    # (received µs, value, topic, Kafka timestamp ms) while reading; decoded only after the run, so that the
    # measuring consumer spends no CPU on Avro while the pipeline it measures shares the machine.
    arrivals: list[tuple[int, bytes, str, int]] = []
    with tempfile.TemporaryDirectory() as workdir, LocalPipeline(
        ("BTC.USD", "ETH.USD"), rate=rate, max_messages=messages, workdir=Path(workdir)
    ) as pipeline:
        consumer = _consumer(pipeline.broker.bootstrap_servers, OUTPUT_TOPICS)
        pids = {name: proc.pid for name, proc in pipeline.processes.items() if name in CPU_PROCESSES}
        pids.update(broker=pipeline.broker.process.pid, consumer=os.getpid())

        def on_message(message: Any) -> None:
            arrivals.append((time.time_ns() // NS_PER_US, message.value(), message.topic(), message.timestamp()[1]))

        # Read while the simulator runs and a while after, then until every record its journal implies has
        # arrived: counting them from the journal takes a second or two, and a consumer that stops polling
        # meanwhile would add that to the latency of every record still on its way.
        with CpuSampler(pids, min(CPU_SAMPLE_S, duration_s / MIN_CPU_SAMPLES)) as cpu:
            count, _ = _count(consumer, 10**12, on_message, duration_s + WARMUP_S + DRAIN_S, LATENCY_PAGE_WAIT_S)
        _count(consumer, expected_records(pipeline.journal) - count, on_message, page_wait_s=LATENCY_PAGE_WAIT_S)
        consumer.close()
    samples = _latency_samples(arrivals)
    # A loaded machine may deliver a short run (the smoke scale) in one burst within the warm-up: the whole
    # run is then measured rather than nothing.
    start = min(sample[0] for sample in samples) + int(WARMUP_S * US_PER_S)
    steady = [sample for sample in samples if sample[0] >= start] or samples
    whole, first, second = (sorted(column) for column in list(zip(*steady))[1:])
    warmup = [sample[1] for sample in samples if sample[0] < start]
    delays = (statistics.median(whole), _percentile(whole, 99), whole[-1], max(warmup, default=0.0),
              statistics.median(first), _percentile(first, 99), statistics.median(second), _percentile(second, 99))
    steady_start = start / US_PER_S
    return dict(zip(LATENCY_FIGURES, delays, strict=True)) | _cpu_figures(cpu, steady_start, steady_start + duration_s)


def _cpu_figures(cpu: CpuSampler, start: float, end: float) -> dict[str, float]:
    """``CPU_FIGURES`` for the steady state, from ``start`` to ``end`` (s since the epoch)."""
    samples = cpu.window(start, end)
    means = cpu.share(samples[0], samples[-1])
    return {
        **{f"CPU, {name}": means[name] for name in CPU_PROCESSES},
        "CPU, broker: start of steady state": cpu.share(samples[0], samples[1])["broker"],
        "CPU, broker: end of steady state": cpu.share(samples[-2], samples[-1])["broker"],
        "CPU, all of them, % of the machine": sum(means.values()) / (os.cpu_count() or 1),
    }


def _latency_samples(arrivals: list[tuple[int, bytes, str, int]]) -> list[tuple[int, float, float, float]]:
    """(atom_timestamp µs, whole delay, first hop, second hop) per record read, delays in ms."""
    schemas: dict[int, dict] = {}
    samples = []
    for received, value, topic, produced_ms in arrivals:
        schema_id = wire_schema_id(value)
        if schema_id not in schemas:
            schemas[schema_id] = parsed_schema(topic)
        atom = decode_wire(value, schemas)["atom_timestamp"]
        produced = produced_ms * US_PER_MS
        samples.append((atom, (received - atom) / US_PER_MS, (produced - atom) / US_PER_MS,
                        (received - produced) / US_PER_MS))
    return samples


def _percentile(ordered: list[float], percent: int) -> float:
    return ordered[int(len(ordered) * percent / PERCENT)]


def broker_hop_latency(rate: int, duration_s: float) -> tuple[float, float, float, float]:
    """One produce -> consume hop on a bare local broker at ``rate`` msg/s, nothing else running (ms).

    p50 and p99 of the run, then the p99 of the records produced in its first and in its last
    ``AGE_FRACTION`` percent: the broker's own latency as its topic fills.
    """
    with LocalBroker() as broker, mock.patch.dict(os.environ, {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}):
        ensure_topics(Settings().kafka, [HOP_TOPIC])
        producer = Producer(Settings().kafka.producer_config())
        consumer = _consumer(broker.bootstrap_servers, [HOP_TOPIC])
        # One record first, so that connecting and the first fetch are not counted.
        producer.produce(HOP_TOPIC, b"warm-up", b"warm-up")
        producer.flush()
        _count(consumer, 1)
        # (produced at, ns since epoch; delay, ms)
        delays: list[tuple[int, float]] = []

        def on_message(message: Any) -> None:
            produced = int(message.value())
            delays.append((produced, (time.time_ns() - produced) / NS_PER_MS))

        count = int(rate * duration_s)
        interval = 1 / rate
        started = time.monotonic()
        for index in range(count):
            producer.produce(HOP_TOPIC, str(time.time_ns()).encode(), str(index % HOP_KEYS))
            producer.poll(0)
            for message in consumer.consume(PAGE_SIZE, 0):
                on_message(message)
            pause = started + (index + 1) * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        producer.flush()
        del producer  # closed while the broker still runs, so it logs no disconnects
        _count(consumer, count - len(delays), on_message, page_wait_s=LATENCY_PAGE_WAIT_S)
        consumer.close()
    delays.sort()  # by production time
    edge = max(len(delays) * AGE_FRACTION // PERCENT, 1)
    first, last = sorted(d for _, d in delays[:edge]), sorted(d for _, d in delays[-edge:])
    whole = sorted(d for _, d in delays)
    return statistics.median(whole), _percentile(whole, 99), _percentile(first, 99), _percentile(last, 99)


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


# ----------------------------------------------------------------- connector rate and memory

CONNECTOR_SECTION = "connector (websocket -> raw topic)"
MEMORY_SECTION = "memory (peak RSS)"
CPU_US_PER_MESSAGE = "CPU µs/message"
REGISTRY, CONNECTOR = "registry", "connector"  # LocalStack's process names
ROLE_CPU_SAMPLE_S = 0.1  # how often a role's CPU time is read while its rate is measured
METRICS_SECTION = "what metrics cost (/metrics served vs --no-metrics, 1 symbol / 1 worker)"
SYMBOL_COUNTS = (1, 50)
# The simulator's top rate: it offers more than a connector (or runner.py local) takes.
SIMULATOR_RATE = 100_000
PRODUCT_CHANNELS = ("full", "ticker")  # what the Coinbase connector subscribes to
# A rate over a window is the least-squares slope of a counter sampled this often: the sawtooth of
# send buffers filling and draining averages out instead of landing on the window's two ends.
SAMPLE_INTERVAL_S = 0.25
STATS_PATH = "/_sim/stats"
HTTP_TIMEOUT_S = 5.0
READER_STOP_S = 5.0
# A bare reader needs no warm-up beyond its first frames (no snapshots, nothing held back).
CEILING_WARMUP_S = 1.0
KIB_PER_MIB = 1024
MS_PER_S = 1000


def symbol_names(count: int) -> list[str]:
    """The normalised symbols of a run with ``count`` symbols (the simulator makes up any product)."""
    return [f"S{i:02d}.USD" for i in range(count)] if count > 1 else ["BTC.USD"]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (``VmHWM``) so far, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / KIB_PER_MIB
    return 0.0


class SimulatorOnly(LocalPipeline):
    """The Coinbase simulator exactly as ``LocalPipeline`` starts it (same command, journal on), nothing else.

    Subclasses add their own clients in ``start_connectors``; ``stop`` stops every process even on failure.
    """

    def __init__(self, symbols: list[str], workdir: Path):
        super().__init__(symbols, rate=SIMULATOR_RATE, workers=0, workdir=workdir)

    def start(self) -> Self:
        """The simulator, then what ``start_connectors`` adds; on failure, everything started is stopped."""
        with contextlib.ExitStack() as on_failure:
            on_failure.callback(self.stop)
            self.start_sources()
            self.start_connectors()
            on_failure.pop_all()
        return self

    def start_connectors(self) -> None:
        """No connector: the caller reads the simulator itself."""

    def frames_sent(self) -> int:
        """Frames the simulator has written to all its websocket connections (its own counter)."""
        with urllib.request.urlopen(self.simulator_rest_url + STATS_PATH, timeout=HTTP_TIMEOUT_S) as response:
            return sum(orjson.loads(response.read())["frames_sent"].values())

    def wait_flowing(self) -> None:
        """Until a client has subscribed and frames go out (connecting and subscribing are not measured)."""
        wait_until(lambda: self.frames_sent() > 0, READY_TIMEOUT_S, "the first frames to a client")


def window_rates(counters: list[Callable[[], int]], window_s: float) -> list[float]:
    """Each counter's rate (per s) over the next ``window_s``, all sampled at the same instants."""
    times: list[float] = []
    samples: list[list[int]] = [[] for _ in counters]
    end = time.monotonic() + window_s
    while True:
        times.append(time.monotonic())
        for counter, values in zip(counters, samples, strict=True):
            values.append(counter())
        if times[-1] >= end:
            break
        time.sleep(SAMPLE_INTERVAL_S)
    return [statistics.linear_regression(times, values).slope for values in samples]


class ThreadedClient:
    """A measuring client on its own thread (with its own event loop), so that the caller may sample it meanwhile.

    Subclasses read in ``_read`` (or a blocking ``_work``) until ``_stop`` is set; a failure there is raised
    by ``__exit__``.
    """

    name = "client"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(READER_STOP_S)
        if self._error is not None:
            raise RuntimeError(f"the {self.name} failed: {self._error!r}") from self._error

    def _run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # noqa: BLE001 - reported by __exit__ on the caller's thread
            self._error = exc

    def _work(self) -> None:
        """What the thread does: by default, ``_read`` on an event loop of its own."""
        asyncio.run(self._read())

    async def _read(self) -> None:
        raise NotImplementedError


class BareReader(ThreadedClient):
    """A websocket client that subscribes as the connector does and only counts frames: the simulator sets the pace."""

    name = "bare websocket reader"

    def __init__(self, url: str, symbols: list[str]):
        super().__init__()
        self.url = url
        self.products = [symbol.replace(".", "-") for symbol in symbols]
        self.frames = 0

    async def _read(self) -> None:
        subscribe = {"type": "subscribe", "product_ids": self.products, "channels": list(PRODUCT_CHANNELS)}
        async with aiohttp.ClientSession() as session, session.ws_connect(self.url, max_msg_size=0) as ws:
            await ws.send_bytes(orjson.dumps(subscribe))
            while not self._stop.is_set():
                message = await ws.receive()
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    raise ConnectionError(f"the simulator ended the connection: {message.type.name}")
                self.frames += 1


def simulator_ceiling(symbols: int, window_s: float, warmup_s: float = CEILING_WARMUP_S) -> float:
    """Frames/s a reader that does nothing else receives from the simulator asked for its top rate."""
    with (
        tempfile.TemporaryDirectory() as workdir,
        SimulatorOnly(symbol_names(symbols), Path(workdir)) as simulator,
        BareReader(simulator.simulator_ws_url, simulator.symbols) as reader,
    ):
        simulator.wait_flowing()
        time.sleep(warmup_s)
        [rate] = window_rates([lambda: reader.frames], window_s)
    return rate


def measure_connector(add: Callable, scale: Any) -> dict[int, float]:
    """Connector frames/s beside the simulator's ceiling, and peak RSS; the ceiling per symbol count."""
    ceilings = {}
    for symbols in SYMBOL_COUNTS:
        runs = [connector_rate(symbols, scale.connector_frames, workers=0) for _ in range(scale.repeats)]
        loaded = [connector_rate(symbols, scale.connector_frames, workers=1)[1] for _ in range(scale.repeats)]
        ceiling = [simulator_ceiling(symbols, scale.rate_window_s) for _ in range(scale.repeats)]
        rates = [rate.per_s for rate, _ in runs]
        ceilings[symbols] = statistics.median(ceiling)
        add(CONNECTOR_SECTION, f"{symbols} symbol(s)", "frames/s", rates,
            f"middle {SUSTAINED_TO - SUSTAINED_FROM}% of {scale.connector_frames} frames; alongside: broker, simulator, "
            f"measuring consumer, idle registry, no processor; {statistics.median(rates) / ceilings[symbols]:.0%} "
            "of the simulator's ceiling")
        add(CONNECTOR_SECTION, f"simulator ceiling, {symbols} symbol(s)", "frames/s", ceiling,
            f"the simulator asked for {SIMULATOR_RATE:,} msg/s, to a bare websocket reader (full+ticker), "
            f"{scale.rate_window_s:g} s after {CEILING_WARMUP_S:g} s")
        add(MEMORY_SECTION, f"connector, {symbols} symbol(s)", "MB", [rss["connector"] for _, rss in runs],
            "the connector run above")
        add(MEMORY_SECTION, f"processor, {symbols} symbol(s)", "MB", [rss["processor0"] for rss in loaded],
            "one worker, processing the connector's raw topic at full rate")
    return ceilings


def _wait_for_topic(pipeline: LocalPipeline, topic: str) -> None:
    """Without a processor, the connector creates the raw topic: wait for it (and fail if the connector died)."""
    probe = Consumer({"bootstrap.servers": pipeline.broker.bootstrap_servers, "group.id": "bench"})

    def created() -> bool:
        pipeline.check_alive("connector")
        return topic in probe.list_topics(timeout=HTTP_TIMEOUT_S).topics

    try:
        wait_until(created, READY_TIMEOUT_S, f"topic {topic}")
    finally:
        probe.close()


def connector_rate(symbols: int, messages: int, workers: int, metrics: bool = True,
                   ) -> tuple[Throughput, dict[str, float]]:
    """Frames/s the connector archives from the simulator at its top rate (and its CPU µs per frame), peak RSS.

    The rate is over the middle of the raw topic's records by their timestamps (produce time): the
    start (connecting, frames held behind each symbol's REST snapshot and then produced at once) and
    the simulator's end are left out.  ``workers`` processors alongside compete for the cores: the
    rate is meant with none; run one for its memory under load.
    """
    with tempfile.TemporaryDirectory() as workdir, _metrics(LocalPipeline(
        symbol_names(symbols), rate=SIMULATOR_RATE, workers=workers, max_messages=messages, workdir=Path(workdir)
    ), metrics) as pipeline:
        topic = raw_topic("coinbase")
        _wait_for_topic(pipeline, topic)
        consumer = _consumer(pipeline.broker.bootstrap_servers, [topic])
        stamps: list[int] = []
        with _role_cpu(pipeline, lambda name: name == CONNECTOR) as connector_cpu:
            count, _ = _count(consumer, messages, lambda m: stamps.append(m.timestamp()[1]))
        consumer.close()
        if count < messages:
            raise RuntimeError(f"only {count} of {messages} frames reached {topic}")
        rss = {name: peak_rss_mb(proc.pid) for name, proc in pipeline.processes.items()}
    produced_s = [stamp / MS_PER_S for stamp in stamps]
    return Throughput(sustained_rate(produced_s), connector_cpu.per_item_us(produced_s)), rss
