"""Pure-code throughput on one core: standardise and encode, and the floor costs they are made of."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import itertools
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import faust
import orjson
from prometheus_client import CollectorRegistry, generate_latest

from l3_atom.avro.codecs import AvroEncoder, available_topics, schema_text
from l3_atom.avro.validator import TopicValidator
from l3_atom.avro.writer import (
    compile_python_record_writer,
    native_writer_available,
    writer_kind,
)
from l3_atom.config import ConnectorSettings
from l3_atom.data_source import DataFeed
from l3_atom.infra.processes import LOOPBACK
from l3_atom.observability.metrics import ProcessorCollector
from l3_atom.observability.server import bind_metrics_socket
from l3_atom.sim.orderflow import OrderFlow
from l3_atom.sim.replay import ReplayServer
from l3_atom.sources import connector_class, standardiser_class
from l3_atom.stream_processing.processor_metrics import ProcessorMetrics
from l3_atom.stream_processing.raw_messages import Encoded, RawMessageProcessor
from l3_atom.topics import ATOM_TIMESTAMP_HEADER, SYMBOL_HEADER
from tests.recorded import ws_frames

EXCHANGE_TESTS = Path(__file__).resolve().parents[1] / "tests" / "exchanges"
ATOM = 1_700_000_000_000_000
CAPTURE_TIMEOUT_S = 60.0
# Once every frame is sent, the capture ends when nothing new (a late snapshot) has arrived for this long.
CAPTURE_SETTLE_S = 0.3
# The simulated clock's step between order-flow steps (10 µs: 100k steps a second).
FRAME_INTERVAL_US = 10
CONNECTOR_SETTINGS = ConnectorSettings(0.1, 1.0, 30.0, 16 << 20)
US_PER_S = 1_000_000
MS_PER_S = 1000
METRICS_BATCH = 100
METRICS_CALLS = 20_000
METRICS_SCRAPES = 200
# Records per fetched batch the processor typically sees at 10k msg/s.
METRICS_TYPICAL_BATCH = 100


def encoders() -> dict[str, AvroEncoder]:
    return {topic: AvroEncoder(topic, index) for index, topic in enumerate(available_topics())}


def python_writers() -> dict[str, Callable[[dict], bytes]]:
    """The generated Python writer of every topic: the reference, and the fallback where C is not built."""
    return {topic: compile_python_record_writer(json.loads(schema_text(topic))) for topic in available_topics()}


def rate(count: int, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def coinbase_frames(count: int) -> list[bytes]:
    """Coinbase full-channel traffic from the simulator's seeded order flow, its clock moving as it would live.

    Each order-flow step (a taker's match, done and ticker share one) is stamped ``FRAME_INTERVAL_US``
    after the last, so times vary the way real traffic's do and no time-parsing cache is flattered.
    """
    clock = itertools.count(ATOM, FRAME_INTERVAL_US).__next__
    return [orjson.dumps(m) for m in itertools.islice(OrderFlow(seed=1).messages(clock), count)]


def measure_coinbase(add: Callable, repeat: Callable, repeats: int, messages: int) -> None:
    frames = coinbase_frames(messages)
    std = standardiser_class("coinbase")()
    outputs = [out for frame in frames for out in std.standardise(frame, ATOM)]
    enc = encoders()
    headers = [(ATOM_TIMESTAMP_HEADER, str(ATOM).encode())]
    section = "standardise, one core (Coinbase full, simulator)"

    def decode_all() -> None:
        for frame in frames:
            orjson.loads(frame)

    def standardise_all() -> None:
        s = standardiser_class("coinbase")()
        for frame in frames:
            s.standardise(frame, ATOM)

    def encode_all() -> None:
        for out in outputs:
            enc[out.topic].encode(out.record)

    def encode_all_in_python() -> None:
        writers = python_writers()
        for out in outputs:
            writers[out.topic](out.record)

    validators = {topic: TopicValidator(topic) for topic in {out.topic for out in outputs}}

    def validate_all(kind: str) -> Callable[[], None]:
        """Every output through its topic's validator: ``encode`` (C where built) or ``python`` (the reference)."""
        chosen = {topic: getattr(validator, kind) for topic, validator in validators.items()}

        def run() -> None:
            for out in outputs:
                chosen[out.topic](out.record)

        return run

    def process_all() -> None:
        processor = RawMessageProcessor("coinbase", standardiser_class("coinbase")(), enc, 1_000_000)
        for frame in frames:
            processor.process(frame, headers, "coinbase_raw", 0, 0, "coinbase_BTC-USD_full")

    json_rate = repeat(repeats, lambda: rate(len(frames), decode_all))
    encode_rate = repeat(repeats, lambda: rate(len(outputs), encode_all))
    full = repeat(repeats, lambda: rate(len(frames), process_all))
    per_message = len(outputs) / len(frames)
    ceiling = 1 / (1 / max(json_rate) + per_message / max(encode_rate))
    add(section, "JSON decode alone (orjson)", "msg/s", json_rate)
    add(section, f"Avro encode alone ({writer_kind()})", "records/s", encode_rate,
        f"{per_message:.2f} records per message")
    if native_writer_available():
        add(section, "Avro encode alone (generated Python writer, the fallback)", "records/s",
            repeat(repeats, lambda: rate(len(outputs), encode_all_in_python)), "beside the C writer, same records")
    validator_kind = type(validators["lob_l3"].encode).__name__
    add(section, f"validate alone (runner.py local: {validator_kind})", "records/s",
        repeat(repeats, lambda: rate(len(outputs), validate_all("encode"))), "the record a consumer decodes, no bytes")
    if validators["lob_l3"].encode is not validators["lob_l3"].python:
        add(section, "validate alone (generated Python validator, the fallback)", "records/s",
            repeat(repeats, lambda: rate(len(outputs), validate_all("python"))), "beside the C validator, same records")
    add(section, "standardise alone (no encode)", "msg/s", repeat(repeats, lambda: rate(len(frames), standardise_all)))
    add(section, "standardise + encode (the processor's work)", "msg/s", full,
        f"{max(full) / ceiling:.0%} of the decode+encode ceiling ({ceiling:,.0f} msg/s)")


class CaptureSink:
    """A FrameSink that keeps what the connector archives (key, frame, symbol header)."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes, str | None]] = []
        # The connection each frame came on (parallel to ``frames``): some keys depend on it.
        self.connections: list[str] = []

    def write(self, key: str, frame: bytes, atom_timestamp: int, connection_id: str, symbol: str | None) -> None:
        self.frames.append((key, frame, symbol))
        self.connections.append(connection_id)

    def dead_letter(self, key: str | None, frame: bytes, error: str, atom_timestamp: int) -> None:
        self.frames.append((key or "", frame, None))
        self.connections.append("")

    def write_marked(
        self, key: str, frame: bytes, atom_timestamp: int, connection_id: str, symbol: str | None, origin: str
    ) -> None:
        self.frames.append((key, frame, symbol))

    def coverage(self, key: str, record: dict) -> None:
        """Coverage is not what the bench measures."""

    def poll(self) -> None:
        """Nothing is delivered in the background."""

    def room(self) -> None:
        """Always room: frames are kept in a list."""

    def close(self) -> None:
        """Nothing to flush."""


async def capture(source: str, symbols: list[str], folder: Path) -> list[tuple[str, bytes, str | None]]:
    """Run the real connector against the replay server and keep what it would archive."""
    _, sink = await capture_feed(source, symbols, folder)
    return sink.frames


async def capture_feed(source: str, symbols: list[str], folder: Path) -> tuple[DataFeed, CaptureSink]:
    """``capture``, also handing back the connector (its keying) and the connections frames came on."""
    server = await ReplayServer(folder).start()
    sink = CaptureSink()
    feed = connector_class(source)(symbols, sink, CONNECTOR_SETTINGS, ws_url=server.ws_url, rest_url=server.rest_url)
    task = asyncio.create_task(feed.run())
    try:
        deadline = time.monotonic() + CAPTURE_TIMEOUT_S
        while time.monotonic() < deadline and (
            server.frames_sent < server.recording.frame_count or len(sink.frames) < server.recording.frame_count
        ):
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        held = -1
        while held != len(sink.frames) and time.monotonic() < deadline:
            held = len(sink.frames)
            await asyncio.sleep(CAPTURE_SETTLE_S)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()
    return feed, sink


def traffic(module: object) -> Path | None:
    if hasattr(module, "FIXTURE"):
        return Path(module.FIXTURE)
    from tests.conftest import recordings_dir

    found = recordings_dir()
    return found / module.RECORDING if found else None


Captured = list[tuple[str, bytes, str | None]]


@dataclass(frozen=True)
class RecordedTraffic:
    """One recording as our connector captured it (key, frame, symbol header), in the recording's order."""

    source: str
    recording: str
    folder: Path
    symbols: list[str]
    frames: Captured


def in_recorded_order(captured: Captured, folder: Path) -> Captured:
    """The captured frames in the order the recording holds them, each REST snapshot once, after every frame.

    The connector interleaves its connections and its snapshot fetches as timing falls, and fetches a
    snapshot again when a resync is asked for before the first one came back; so its capture differs
    from run to run (Binance futures' snapshots land among different diffs).  This order does not, so
    the records made from it are the same on every run.
    """
    positions: dict[bytes, deque[int]] = defaultdict(deque)
    for index, frame in enumerate(ws_frames(folder)):
        positions[frame].append(index)
    after_every_frame = sum(map(len, positions.values()))

    def place(item: tuple[str, bytes, str | None]) -> tuple[int, str]:
        key, frame, _ = item
        found = positions.get(frame)
        return (found.popleft(), "") if found else (after_every_frame, key)

    placed = sorted(((place(item), item) for item in captured), key=lambda pair: pair[0])
    frames = [item for (index, _), item in placed if index < after_every_frame]
    snapshots = dict.fromkeys((key, frame, symbol) for (index, _), (key, frame, symbol) in placed
                              if index == after_every_frame)
    return frames + list(snapshots)


def recorded_traffic(only: set[str] | None = None) -> Iterator[RecordedTraffic]:
    """Each real recording a venue test names (``only``: these recording folders), captured by our connector."""
    for path in sorted(EXCHANGE_TESTS.glob("test_*.py")):
        module = importlib.import_module(f"tests.exchanges.{path.stem}")
        if not hasattr(module, "RECORDING") or (only is not None and module.RECORDING not in only):
            continue
        folder = traffic(module)
        if folder is None:
            continue
        captured = asyncio.run(capture(module.SOURCE, module.SYMBOLS, folder))
        yield RecordedTraffic(module.SOURCE, module.RECORDING, folder, module.SYMBOLS,
                              in_recorded_order(captured, folder))


Prepared = list[tuple[bytes, list[tuple[str, bytes]], str]]


def prepared(captured: Captured) -> Prepared:
    """Each captured frame as the processor receives it from Kafka: value, headers (stamped ``ATOM``) and key."""
    stamp = (ATOM_TIMESTAMP_HEADER, str(ATOM).encode())
    return [(frame, [stamp, (SYMBOL_HEADER, symbol.encode())] if symbol else [stamp], key)
            for key, frame, symbol in captured]


def process_captured(source: str, captured: Captured, enc: dict[str, AvroEncoder]) -> Iterator[Encoded]:
    """Every captured frame through a fresh processor, stamped ``ATOM``: the encoded records (dead letters too)."""
    processor = RawMessageProcessor(source, standardiser_class(source)(), enc, 1_000_000)
    for frame, headers, key in prepared(captured):
        yield from processor.process(frame, headers, "raw", 0, 0, key)


def process_prepared(source: str, frames: Prepared, enc: dict[str, AvroEncoder]) -> None:
    """Every prepared frame through a fresh processor, its records dropped: the processor's work alone, to time."""
    process = RawMessageProcessor(source, standardiser_class(source)(), enc, 1_000_000).process
    for frame, headers, key in frames:
        process(frame, headers, "raw", 0, 0, key)


def records_digest(source: str, captured: Captured, enc: dict[str, AvroEncoder]) -> tuple[str, int]:
    """sha256 of the encoded stream (each record's topic, key and Avro bytes, length-prefixed) and its length."""
    digest = hashlib.sha256()
    count = 0
    for topic, key, value in process_captured(source, captured, enc):
        for part in (topic.encode(), key.encode(), value):
            digest.update(len(part).to_bytes(4, "big"))
            digest.update(part)
        count += 1
    return digest.hexdigest(), count


def measure_recordings(add: Callable, repeat: Callable, repeats: int) -> None:
    """Standardise + encode throughput on each real recording (fixtures are too small to time)."""
    enc = encoders()
    section = "standardise, one core (recordings)"
    measured = False
    for recorded in recorded_traffic():
        measured = True
        captured = recorded.frames

        def process_all(captured: Captured = captured, source: str = recorded.source) -> int:
            """Every captured frame through a fresh processor; the number of records out (dead letters too)."""
            return sum(1 for _ in process_captured(source, captured, enc))

        per_frame = process_all() / max(len(captured), 1)
        add(section, recorded.source, "msg/s",
            repeat(repeats, lambda c=captured, p=process_all: rate(len(c), p)),
            f"{len(captured)} frames, {per_frame:.1f} records each (dead letters included)")
    if not measured:
        add(section, "every recording", "msg/s", [0.0], "skipped: no recordings")


def measure_metrics(add: Callable, repeat: Callable, repeats: int, messages: int) -> None:
    """What metrics add to the processor's work on one core, measured apart from the noise of a loaded machine.

    Per batch the agent records the batch's last offset and one latency sample (``batch_done``); a
    scrape reads the counts.  Both are timed here against the processor's own cost per message.
    """
    section = "what metrics cost (/metrics served vs --no-metrics, 1 symbol / 1 worker)"
    frames = coinbase_frames(messages)
    headers = [(ATOM_TIMESTAMP_HEADER, str(ATOM).encode())]
    processor = RawMessageProcessor("coinbase", standardiser_class("coinbase")(), encoders(), 1_000_000)

    def process_all() -> None:
        for frame in frames:
            processor.process(frame, headers, "coinbase_raw", 0, 0, "coinbase_BTC-USD_full")

    per_message_us = [US_PER_S / rate(len(frames), process_all) for _ in range(repeats)]
    sock = bind_metrics_socket(LOOPBACK, 0, "processor")
    try:
        metrics = ProcessorMetrics(faust.App("l3_atom_bench_metrics"), sock, [processor], publisher=None)
        latency = metrics.latency_of("coinbase")
        batch = [_Record(0, offset, headers) for offset in range(METRICS_BATCH)]

        def batches() -> None:
            for _ in range(METRICS_CALLS):
                metrics.batch_done(latency, "coinbase_raw", batch)

        per_batch_us = [US_PER_S / rate(METRICS_CALLS, batches) for _ in range(repeats)]
    finally:
        sock.close()
    registry = CollectorRegistry()
    registry.register(ProcessorCollector([processor]))
    scrape_ms = repeat(repeats, lambda: MS_PER_S / rate(METRICS_SCRAPES, lambda: [
        generate_latest(registry) for _ in range(METRICS_SCRAPES)]))
    share = min(per_batch_us) / min(per_message_us)
    add(section, "per-batch metrics work (offset, one latency sample)", "µs", per_batch_us,
        f"{share:.1%} of one message's standardise+encode ({min(per_message_us):.1f} µs): the whole cost for a "
        f"batch of one, {share / METRICS_TYPICAL_BATCH:.3%} for a batch of {METRICS_TYPICAL_BATCH}")
    add(section, "one scrape of the processor's counters", "ms", scrape_ms, "once per scrape interval (15 s)")


class _Record(NamedTuple):
    partition: int
    offset: int
    headers: list[tuple[str, bytes]]
