"""``runner.py local`` (the whole pipeline in one process, no Kafka) against the Coinbase simulator.

The simulator is started exactly as the distributed runs start it and asked for its top rate, more
than the one process takes: the runtime's bus fills, its connection stops reading until there is
room, and TCP holds the simulator back.  Rates are taken over a window after a warm-up, from what
the runtime itself reports and writes.  The warm-up covers connecting, the REST snapshots, and the
backlog the socket buffers took in meanwhile: frames just after a snapshot are mostly skipped as
already in it, cheap frames that would flatter the rate (with 50 symbols, for about 5 s).

- frames/s: the runtime's progress line (``--progress``: once a second, the frames its connection
  took from the websocket onto the bus, and how full the bus is).  While the bus stays full, frames
  go onto it as fast as they are standardised off it.  The simulator's own count of frames sent is
  no measure here: the kernel's socket buffers (tens of MB on loopback) absorb its bursts for seconds.
- records/s: lines appended to the JSON-lines output (``--jsonl FILE``: cheap, and every record is
  written out as a user would keep it).

Latency, with the simulator at a set rate (as the distributed latency runs set it): from the
connector's receive time (each record's ``atom_timestamp``, stamped as the frame comes off the
websocket) to the moment the record's JSON line can be read by another process (``--jsonl`` on a
named pipe, read as it is written), and, in a run of its own, to the moment a websocket client of
``--serve`` receives it.  Steady state only: records of frames after the first ``WARMUP_S``.
"""

from __future__ import annotations

import os
import re
import select
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.cpu import CpuSampler, cpu_seconds
from bench.distributed import (
    CPU_SAMPLE_S,
    MEMORY_SECTION,
    MIN_CPU_SAMPLES,
    NS_PER_US,
    SYMBOL_COUNTS,
    US_PER_MS,
    US_PER_S,
    WARMUP_S,
    SimulatorOnly,
    ThreadedClient,
    _percentile,
    peak_rss_mb,
    symbol_names,
    window_rates,
)
from l3_atom.infra.processes import LOOPBACK, free_port, wait_until
from l3_atom.local.cli import DEFAULT_BUS_FRAMES
from l3_atom.local.progress import CLEAR_LINE

SECTION = "runner.py local (websocket -> standardise -> JSON lines)"
LOCAL = "local"
SOURCE = "coinbase"
JSONL_NAME = "records.jsonl"
THOUSAND = 1000
PROGRESS_TIMEOUT_S = 10.0
# One refresh of the progress line: "<source> 12.3k frames/s, bus 100% | ..." (l3_atom/local/progress.py).
PROGRESS_RATE = re.compile(rf"^{SOURCE} ([\d.]+)(k?) frames/s, bus (\d+)%")
LATENCY_RATES = (1_000, 10_000)
LATENCY_SYMBOLS = ("BTC.USD", "ETH.USD")  # as the distributed latency runs
# The two ends a latency is measured to, and the runtime's output for each.
TO_JSONL = "JSON line written"
TO_WEBSOCKET = "websocket client receives"
PIPE_NAME = "records.pipe"
STREAM_PATH = "/ws"
READ_BYTES = 1 << 20
# The measuring readers check this often whether they are asked to stop (they stamp arrivals as they come).
READER_POLL_S = 0.1
# The run ends once no record has arrived for this long after the simulator's last message.
QUIET_S = 1.5
LATENCY_TIMEOUT_S = 120.0


def local_args(symbols: list[str], ws_url: str, rest_url: str, jsonl: Path) -> list[str]:
    """``runner.py local`` arguments: one Coinbase source pointed at the simulator, JSON lines to a file."""
    args = [LOCAL, "--source", SOURCE]
    for symbol in symbols:
        args += ["--symbol", symbol]
    return [*args, "--ws-url", ws_url, "--rest-url", rest_url, "--jsonl", str(jsonl), "--progress"]


class NewBytes:
    """What a file another process appends to has gained since the last call (cheap to ask often)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0

    def __call__(self) -> bytes:
        if not self.path.exists():
            return b""
        with self.path.open("rb") as file:
            file.seek(self.offset)
            data = file.read()
        self.offset += len(data)
        return data


class LineCounter(NewBytes):
    """Complete lines in a file another process appends to."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.lines = 0

    def count(self) -> int:
        self.lines += self().count(b"\n")
        return self.lines


def progress_ticks(text: str) -> list[tuple[float, int]]:
    """(frames/s, bus fill %) of each progress-line refresh in ``text`` (the runtime's stderr)."""
    ticks = []
    for segment in text.split(CLEAR_LINE):
        if match := PROGRESS_RATE.match(segment):
            number, thousands, fill = match.groups()
            ticks.append((float(number) * (THOUSAND if thousands else 1), int(fill)))
    return ticks


class LocalModeRun(SimulatorOnly):
    """The simulator, and ``runner.py local`` reading it; every process stopped on exit, even on failure."""

    def __init__(self, symbols: list[str], workdir: Path):
        super().__init__(symbols, workdir)
        self.jsonl = self.workdir / JSONL_NAME

    def start_connectors(self) -> None:
        self.start_runner(LOCAL, *local_args(self.symbols, self.simulator_ws_url, self.simulator_rest_url, self.jsonl))

    def lines_written(self, counter: LineCounter) -> int:
        self.check_alive(LOCAL)  # a runtime that died must not pass for a slow one
        return counter.count()


def local_rate(symbols: int, warmup_s: float, window_s: float) -> tuple[float, float, int, float, float]:
    """``runner.py local`` with the simulator at its top rate.

    Returns frames/s, records/s, the lowest bus fill (%), peak RSS (MB) and the runtime's CPU share
    over the window (cores).
    """
    with tempfile.TemporaryDirectory() as workdir, LocalModeRun(symbol_names(symbols), Path(workdir)) as run:
        run.wait_flowing()
        time.sleep(warmup_s)
        progress = NewBytes(run.log_path(LOCAL))
        progress()  # the window starts here
        lines = LineCounter(run.jsonl)
        pid = run.processes[LOCAL].pid
        cpu_before, started = cpu_seconds(pid), time.monotonic()
        [records] = window_rates([lambda: run.lines_written(lines)], window_s)
        cores = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - started)
        ticks: list[tuple[float, int]] = []

        def ticked() -> bool:  # a short window may end before the first refresh
            ticks.extend(progress_ticks(progress().decode(errors="replace")))
            return bool(ticks)

        wait_until(ticked, PROGRESS_TIMEOUT_S, "runner.py local's progress line")
        rss = peak_rss_mb(run.processes[LOCAL].pid)
    return statistics.mean(rate for rate, _ in ticks), records, min(fill for _, fill in ticks), rss, cores


class ArrivalReader(ThreadedClient):
    """A reader of the runtime's output on its own thread: what it reads, stamped with the time it arrived."""

    def __init__(self, source: Path | str):
        super().__init__()
        self.source = source
        # (arrival µs, what was read): parsed only after the run, so the reader spends little CPU meanwhile.
        self.arrived: list[tuple[int, Any]] = []

    def stamp(self, data: Any) -> None:
        self.arrived.append((time.time_ns() // NS_PER_US, data))

    def arrivals(self) -> list[tuple[int, bytes | str]]:
        """(arrival µs, one output message): one JSON object each."""
        return self.arrived


class PipeReader(ArrivalReader):
    """Reads the runtime's JSON lines from a named pipe as they are written."""

    name = "JSON-lines pipe reader"

    def _work(self) -> None:
        fd = os.open(self.source, os.O_RDONLY | os.O_NONBLOCK)
        try:
            while True:
                ready, _, _ = select.select([fd], [], [], READER_POLL_S)
                chunk = os.read(fd, READ_BYTES) if ready else b""
                if chunk:
                    self.stamp(chunk)
                elif self._stop.is_set():
                    return
                elif ready:  # no writer (not yet, or no more): the pipe reads as empty at once
                    time.sleep(READER_POLL_S)
        finally:
            os.close(fd)

    def arrivals(self) -> list[tuple[int, bytes]]:
        """(arrival µs, line) per complete line: a line arrives with the chunk that ends it."""
        lines, pending = [], b""
        for stamp, chunk in self.arrived:
            *complete, pending = (pending + chunk).split(b"\n")
            lines += [(stamp, line) for line in complete]
        return lines


class StreamClient(ArrivalReader):
    """A websocket client of ``--serve``, subscribed to everything."""

    name = "websocket stream client"

    async def _read(self) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(self.source, max_msg_size=0) as ws:
            await ws.send_str(orjson.dumps({"op": "subscribe"}).decode())
            while not self._stop.is_set():
                try:
                    message = await ws.receive(READER_POLL_S)
                except TimeoutError:
                    continue
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"the stream ended: {message.type.name}")
                self.stamp(message.data)


class LatencyRun(SimulatorOnly):
    """The simulator at ``rate`` for ``messages`` messages, and ``runner.py local`` writing to one measured output."""

    def __init__(self, workdir: Path, rate: int, messages: int, to: str):
        super().__init__(list(LATENCY_SYMBOLS), workdir)
        self.rate, self.max_messages, self.to = rate, messages, to
        self.port = free_port()
        self.pipe = self.workdir / PIPE_NAME
        if to == TO_JSONL:  # before the runtime opens it, which then waits for its reader
            os.mkfifo(self.pipe)

    def start_connectors(self) -> None:
        args = [LOCAL, "--source", SOURCE]
        for symbol in self.symbols:
            args += ["--symbol", symbol]
        output = ["--jsonl", str(self.pipe)] if self.to == TO_JSONL else ["--serve", f"{LOOPBACK}:{self.port}"]
        self.start_runner(LOCAL, *args, "--ws-url", self.simulator_ws_url, "--rest-url", self.simulator_rest_url,
                          *output, "--no-progress")

    def reader(self) -> ArrivalReader:
        if self.to == TO_JSONL:
            return PipeReader(self.pipe)
        self.wait_port(LOCAL, self.port)
        return StreamClient(f"ws://{LOOPBACK}:{self.port}{STREAM_PATH}")


def local_latency(rate: int, duration_s: float, to: str) -> tuple[float, float, float, float]:
    """p50, p99 and max delay (ms) from receive time to ``to``, in steady state, and the runtime's CPU share (%)."""
    messages = int(rate * (duration_s + WARMUP_S))
    with tempfile.TemporaryDirectory() as workdir, LatencyRun(Path(workdir), rate, messages, to) as run:
        reader = run.reader()
        interval = min(CPU_SAMPLE_S, duration_s / MIN_CPU_SAMPLES)
        with reader, CpuSampler({LOCAL: run.processes[LOCAL].pid}, interval) as cpu:
            counted = [0, time.monotonic()]

            def quiet() -> bool:
                run.check_alive(LOCAL)
                arrived = len(reader.arrived)
                if arrived != counted[0]:
                    counted[:] = [arrived, time.monotonic()]
                return arrived > 0 and time.monotonic() - counted[1] > QUIET_S

            time.sleep(duration_s + WARMUP_S)
            wait_until(quiet, LATENCY_TIMEOUT_S, f"records to stop arriving at the {reader.name}")
    delays = []
    for arrived, line in reader.arrivals():
        record = orjson.loads(line)
        if "topic" in record:  # not a protocol message of the stream
            delays.append((record["atom_timestamp"], (arrived - record["atom_timestamp"]) / US_PER_MS))
    start = min(atom for atom, _ in delays) + WARMUP_S * US_PER_S
    steady = sorted(delay for atom, delay in delays if atom >= start)
    if not steady:
        raise RuntimeError(f"no record of the steady state reached the {reader.name} ({len(delays)} before it)")
    samples = cpu.window(start / US_PER_S, start / US_PER_S + duration_s)
    share = cpu.share(samples[0], samples[-1])[LOCAL]
    return statistics.median(steady), _percentile(steady, 99), steady[-1], share


def measure_latency(add: Callable, scale: Any) -> None:
    """Receive -> JSON line and receive -> websocket client, at each of ``LATENCY_RATES``."""
    for rate in LATENCY_RATES:
        section = f"runner.py local latency at {rate:,} msg/s offered (receive -> output)"
        for to in (TO_JSONL, TO_WEBSOCKET):
            runs = [local_latency(rate, scale.latency_s, to) for _ in range(scale.repeats)]
            note = f"steady state of {scale.latency_s:g} s after {WARMUP_S:g} s; 2 symbols"
            add(section, f"{to}: p50", "ms", [run[0] for run in runs], note)
            add(section, f"{to}: p99", "ms", [run[1] for run in runs], "target at 10k msg/s: 5 ms")
            add(section, f"{to}: max", "ms", [run[2] for run in runs])
            add(section, f"{to}: CPU of runner.py local", "%", [run[3] for run in runs], "% of one core")


def measure(add: Callable, scale: Any, ceilings: dict[int, float]) -> None:
    """The local runtime's figures at ``scale`` (``bench.run.Scale``), beside the simulator's ``ceilings``."""
    window = f"{scale.rate_window_s:g} s after {scale.rate_warmup_s:g} s warm-up"
    for symbols in SYMBOL_COUNTS:
        runs = [local_rate(symbols, scale.rate_warmup_s, scale.rate_window_s) for _ in range(scale.repeats)]
        frames = [run[0] for run in runs]
        add(SECTION, f"{symbols} symbol(s)", "frames/s", frames,
            f"frames taken from the websocket (its progress line), {window}; bus at least "
            f"{min(run[2] for run in runs)}% full; output --jsonl FILE; only the simulator alongside; "
            f"{statistics.median(frames) / ceilings[symbols]:.0%} of the simulator's ceiling")
        add(SECTION, f"{symbols} symbol(s), records written", "records/s", [run[1] for run in runs],
            "JSON lines appended in the same window")
        add(SECTION, f"{symbols} symbol(s), per CPU-second", "frames/CPU-s", [run[0] / run[4] for run in runs],
            f"frames/s over the runtime's CPU share in the window ({statistics.median(run[4] for run in runs):.0%} "
            "of a core): what it takes on a core of its own, however busy the machine is")
        add(SECTION, f"{symbols} symbol(s), CPU per frame", "CPU-µs", [US_PER_S * run[4] / run[0] for run in runs],
            "all its threads: receive, standardise, validate, JSON line (a neighbour's load inflates it too: "
            "shared caches and cores)")
        add(MEMORY_SECTION, f"runner.py local, {symbols} symbol(s)", "MB", [run[3] for run in runs],
            f"the run above (bus of {DEFAULT_BUS_FRAMES:,} frames, the default)")
