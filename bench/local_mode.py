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
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.distributed import MEMORY_SECTION, SYMBOL_COUNTS, SimulatorOnly, peak_rss_mb, symbol_names, window_rates
from l3_atom.infra.processes import wait_until
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


def local_rate(symbols: int, warmup_s: float, window_s: float) -> tuple[float, float, int, float]:
    """``runner.py local`` with the simulator at its top rate: frames/s, records/s, lowest bus fill (%), peak RSS."""
    with tempfile.TemporaryDirectory() as workdir, LocalModeRun(symbol_names(symbols), Path(workdir)) as run:
        run.wait_flowing()
        time.sleep(warmup_s)
        progress = NewBytes(run.log_path(LOCAL))
        progress()  # the window starts here
        lines = LineCounter(run.jsonl)
        [records] = window_rates([lambda: run.lines_written(lines)], window_s)
        ticks: list[tuple[float, int]] = []

        def ticked() -> bool:  # a short window may end before the first refresh
            ticks.extend(progress_ticks(progress().decode(errors="replace")))
            return bool(ticks)

        wait_until(ticked, PROGRESS_TIMEOUT_S, "runner.py local's progress line")
        rss = peak_rss_mb(run.processes[LOCAL].pid)
    return statistics.mean(rate for rate, _ in ticks), records, min(fill for _, fill in ticks), rss


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
        add(MEMORY_SECTION, f"runner.py local, {symbols} symbol(s)", "MB", [run[3] for run in runs],
            f"the run above (bus of {DEFAULT_BUS_FRAMES:,} frames, the default)")
