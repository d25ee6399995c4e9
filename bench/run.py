"""L3 Atom benchmark: how fast, side by side, in one run.

    .venv/bin/python -m bench.run                  # full run: several minutes, 3 repeats
    .venv/bin/python -m bench.run --scale quick    # smaller inputs, 1 repeat
    .venv/bin/python -m bench.run --scale smoke    # tiny inputs: checks that everything runs (the tests use it)

Prints a markdown table and writes JSON (``bench/results/latest.json``).
Every figure is the median of its repeats with the min–max spread; ratios
to the floor costs measured in the same run make the numbers comparable
across noisy machines.  Nothing here is asserted: tests only check that the
benchmark runs and its output is well-formed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from bench import books, distributed, local_mode, peers, pure, symbols

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Ratios print with two decimals, every other figure with one.
RATIO_DIGITS = 2


@dataclass
class Figure:
    """One measured quantity: the median of its repeats and their spread."""

    section: str
    name: str
    unit: str
    samples: list[float]
    note: str = ""
    median: float = field(init=False)
    low: float = field(init=False)
    high: float = field(init=False)

    def __post_init__(self) -> None:
        self.median = statistics.median(self.samples)
        self.low, self.high = min(self.samples), max(self.samples)


def repeat(times: int, measure: Callable[[], float]) -> list[float]:
    return [measure() for _ in range(times)]


def render(figures: list[Figure]) -> str:
    lines = ["| section | measurement | median | min–max | unit | note |", "|---|---|---:|---:|---|---|"]
    for f in figures:
        digits = RATIO_DIGITS if f.unit == peers.RATIO else 1
        lines.append(
            f"| {f.section} | {f.name} | {f.median:,.{digits}f} | {f.low:,.{digits}f}–{f.high:,.{digits}f} | {f.unit} "
            f"| {f.note} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Scale:
    """How much work each measurement does."""

    repeats: int
    messages: int  # Coinbase full-channel messages standardised in pure code
    broker_messages: int  # ... and through the broker (a sustained rate needs seconds of work)
    latency_s: float  # how long the simulator runs for each latency figure
    connector_frames: int  # frames the simulator sends the connector (its rate is over the middle 80%)
    rate_warmup_s: float  # runner.py local: time to settle (connect-time backlog drained) before measuring...
    rate_window_s: float  # ... and the window its rates (and the simulator's ceiling) are measured over
    peer_rounds: int  # rounds of cryptofeed against ours per recording (bench/peers.py)
    recordings: frozenset[str] | None  # recording folders the peers and broker sections use (None: all)
    many_symbols: int = 1000  # symbols connected through the venue's REST budget (one snapshot each)


SCALES = {
    "full": Scale(repeats=3, messages=100_000, broker_messages=200_000, latency_s=15.0, connector_frames=200_000,
                  rate_warmup_s=8.0, rate_window_s=10.0, peer_rounds=7, recordings=None),
    "quick": Scale(repeats=1, messages=20_000, broker_messages=60_000, latency_s=5.0, connector_frames=100_000,
                   rate_warmup_s=8.0, rate_window_s=5.0, many_symbols=200, peer_rounds=5, recordings=None),
    "smoke": Scale(repeats=1, messages=2_000, broker_messages=2_000, latency_s=1.0, connector_frames=5_000,
                   rate_warmup_s=1.0, rate_window_s=1.0, many_symbols=20, peer_rounds=1,
                   recordings=frozenset({"kraken"})),
}


def run(scale: Scale) -> list[Figure]:
    repeats = scale.repeats
    figures: list[Figure] = []

    def add(section: str, name: str, unit: str, samples: list[float], note: str = "") -> None:
        figures.append(Figure(section, name, unit, samples, note))
        print(f"  {section}: {name}: {statistics.median(samples):,.1f} {unit}", file=sys.stderr, flush=True)

    pure.measure_coinbase(add, repeat, repeats, messages=scale.messages)
    pure.measure_recordings(add, repeat, repeats)
    pure.measure_metrics(add, repeat, repeats, messages=scale.messages)
    peers.measure_apart(add, scale.peer_rounds, scale.recordings)
    books.measure(add, repeat, repeats)
    ceilings = asyncio.run(distributed.measure_all(add, scale))
    local_mode.measure(add, scale, ceilings)
    symbols.measure(add, scale)
    local_mode.measure_latency(add, scale)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="full", help="how much work (default: full)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json", help="where to write JSON")
    args = parser.parse_args(argv)
    started = time.monotonic()
    figures = run(SCALES[args.scale])
    table = render(figures)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(
        orjson.dumps(
            {
                "scale": args.scale,
                "cpus": os.cpu_count(),
                "seconds": round(time.monotonic() - started, 1),
                "figures": [asdict(f) for f in figures],
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    print(f"\nwritten to {args.out} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
