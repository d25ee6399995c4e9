"""CPU time of the pipeline's processes, sampled from ``/proc`` while a measurement runs.

Why: on a 2-core machine the broker, the processor, the connector, the
simulator and the measuring consumer share the cores, so a latency figure
means little without knowing how busy they were.  Sampling once a second
also shows a process whose cost grows during the run (Tansu's in-memory
store lists every stored batch of a partition on each fetch).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Self

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# /proc/<pid>/stat after the ")" that ends the command name: utime and stime are fields 14 and 15
# of the whole line, so 12 and 13 of what follows the name, counting from 1 at the state field.
UTIME_FIELD = 11
STIME_FIELD = 12
PERCENT = 100
US_PER_S = 1_000_000
MIDDLE_FROM, MIDDLE_TO = 10, 90  # the middle 80% of a run's items, as bench.distributed's rates
MIN_SAMPLES = 2  # a share is the CPU time between two samples
# (wall-clock time in s since the epoch, comparable with records' timestamps; {process name: CPU seconds so far})
Sample = tuple[float, dict[str, float]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (s); 0 once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[UTIME_FIELD]) + int(fields[STIME_FIELD])) / CLOCK_TICKS_PER_S


class CpuSampler:
    """Samples the CPU time of named processes every ``interval_s`` in a background thread."""

    def __init__(self, pids: dict[str, int], interval_s: float = 1.0):
        self.pids = pids
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _sample(self) -> None:
        self.samples.append((time.time(), {name: cpu_seconds(pid) for name, pid in self.pids.items()}))

    def _run(self) -> None:
        self._sample()
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def window(self, start: float, end: float) -> list[Sample]:
        """The samples taken between ``start`` and ``end`` (s since the epoch); at least two."""
        inside = [sample for sample in self.samples if start <= sample[0] <= end]
        if len(inside) < MIN_SAMPLES:
            raise ValueError(f"{len(inside)} CPU samples between {start:.1f} and {end:.1f} s: too few for a share")
        return inside

    def share(self, earlier: Sample, later: Sample) -> dict[str, float]:
        """% of one core each process took between two samples."""
        (t0, before), (t1, after) = earlier, later
        return {name: PERCENT * (after[name] - before[name]) / (t1 - t0) for name in self.pids}


    def per_item_us(self, times_s: list[float]) -> float:
        """CPU µs per item of all the sampled processes while the middle 80% of the items happened.

        ``times_s`` are the items' times (s since the epoch, any order: e.g. records' produce
        timestamps); the CPU is that between the samples just around the middle 80% of them, shared
        by the items whose times lie between those samples.  Why: on a loaded machine one role's
        wall-clock rate depends on what else runs, its CPU time per message much less.
        """
        ordered = sorted(times_s)
        start, end = ordered[len(ordered) * MIDDLE_FROM // PERCENT], ordered[len(ordered) * MIDDLE_TO // PERCENT]
        earlier = max((s for s in self.samples if s[0] <= start), default=self.samples[0], key=_when)
        later = min((s for s in self.samples if s[0] >= end), default=self.samples[-1], key=_when)
        items = sum(1 for t in ordered if earlier[0] <= t <= later[0])
        spent = sum(later[1].values()) - sum(earlier[1].values())
        return spent * US_PER_S / max(items, 1)


def _when(sample: Sample) -> float:
    return sample[0]
