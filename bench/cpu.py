"""CPU time of the pipeline's processes, sampled from ``/proc`` while a measurement runs.

Why: on a 2-core machine the broker, the processor, the connector, the
simulator and the measuring consumer share the cores, so a latency figure
means little without knowing how busy they were.  Sampling once a second
also shows a process whose cost grows during the run (Tansu's in-memory
store lists every stored batch of a partition on each fetch).
"""

from __future__ import annotations

import itertools
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
MIN_SAMPLES = 2  # a share is the CPU time between two samples


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
        # (wall-clock time, s since the epoch: comparable with records' timestamps; {name: CPU seconds so far})
        self.samples: list[tuple[float, dict[str, float]]] = []
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

    def shares(self, start: float, end: float) -> list[dict[str, float]]:
        """Per interval between samples inside [``start``, ``end``] (epoch s): % of one core per process."""
        return [self._share(earlier, later) for earlier, later in itertools.pairwise(self._inside(start, end))]

    def mean_share(self, start: float, end: float) -> dict[str, float]:
        """% of one core per process from the first to the last sample inside [``start``, ``end``]."""
        inside = self._inside(start, end)
        return self._share(inside[0], inside[-1])

    def _inside(self, start: float, end: float) -> list[tuple[float, dict[str, float]]]:
        inside = [sample for sample in self.samples if start <= sample[0] <= end]
        if len(inside) < MIN_SAMPLES:
            raise ValueError(f"{len(inside)} CPU samples between {start:.1f} and {end:.1f} s: too few for a share")
        return inside

    def _share(self, earlier: tuple[float, dict[str, float]], later: tuple[float, dict[str, float]]) -> dict[str, float]:
        (t0, before), (t1, after) = earlier, later
        return {name: PERCENT * (after[name] - before[name]) / (t1 - t0) for name in self.pids}
