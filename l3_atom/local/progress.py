"""What the local runtime tells the person at the terminal: a refreshing progress line and a final summary.

The progress line lives on stderr and only when stderr is a terminal (a log
file or a pipe gets the summary only).  Log records and stdout lines clear
it first, so nothing is written over it; it is redrawn at the next tick.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

CLEAR_LINE = "\r\x1b[K"
THOUSAND = 1000.0


class StatusLine:
    """One line at the bottom of a terminal that is rewritten in place."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self._shown = False
        # Output threads (stdout) and the event loop (progress, logs) both write to the terminal.
        self._lock = threading.Lock()

    def show(self, text: str) -> None:
        with self._lock:
            self.stream.write(f"{CLEAR_LINE}{text}")
            self.stream.flush()
            self._shown = True

    def clear(self) -> None:
        """Remove the line, if shown, before something else is written to the terminal."""
        if not self._shown:
            return
        with self._lock:
            if self._shown:
                self.stream.write(CLEAR_LINE)
                self.stream.flush()
                self._shown = False


class _ClearingStream:
    """A log handler's stream that clears the status line before each log record."""

    def __init__(self, status: StatusLine, stream: TextIO):
        self.status = status
        self.stream = stream

    def write(self, text: str) -> int:
        self.status.clear()
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def guard_logging(status: StatusLine) -> list[tuple[logging.StreamHandler, TextIO]]:
    """Make the root logger's handlers on the status line's stream clear it first; returns what to restore."""
    swapped = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is status.stream:
            swapped.append((handler, handler.setStream(_ClearingStream(status, status.stream))))
    return swapped


def restore_logging(swapped: list[tuple[logging.StreamHandler, TextIO]]) -> None:
    for handler, stream in swapped:
        handler.setStream(stream)


def _count(value: float) -> str:
    return f"{value / THOUSAND:.1f}k" if value >= THOUSAND else f"{value:.0f}"


class Progress:
    """Turns two snapshots of the runtime's stats into a one-line rate report."""

    def __init__(self) -> None:
        self._previous: dict[str, Any] | None = None

    def line(self, stats: dict[str, Any], elapsed_s: float) -> str:
        previous, self._previous = self._previous, stats
        if previous is None or elapsed_s <= 0:
            return "starting..."

        def rate(now: int, before: int) -> str:
            return _count((now - before) / elapsed_s)

        parts = []
        for source, state in stats["sources"].items():
            before = previous["sources"][source]
            fill = 100 * state["bus"] // state["bus_capacity"]
            parts.append(f"{source} {rate(state['frames'], before['frames'])} frames/s, bus {fill}%")
        parts.append(
            " ".join(f"{topic} {rate(n, previous['records'].get(topic, 0))}/s" for topic, n in stats["records"].items())
            or "no records yet"
        )
        parts.append(f"dead letters {stats['dead_letters']}")
        paused = sum(state["paused"] for state in stats["sources"].values())
        if paused:
            parts.append(f"paused reading {paused}x")
        websocket = stats["outputs"].get("websocket")
        if websocket:
            parts.append(f"ws {websocket['clients']} clients, {websocket['dropped']} dropped")
        return " | ".join(parts)


def summary(stats: dict[str, Any]) -> str:
    """The end-of-run report: what came in, what went out, what was skipped or dead-lettered, and why."""
    lines = []
    for source, state in stats["sources"].items():
        skipped = ", ".join(f"{reason} {n}" for reason, n in state["skipped"].items()) or "none"
        dead = ", ".join(f"{error} {n}" for error, n in state["dead_letters"].items()) or "none"
        lines.append(
            f"{source}: {state['frames']} frames; skipped: {skipped}; dead letters: {dead}; "
            f"bus high water {state['bus_high_water']}/{state['bus_capacity']}, paused reading {state['paused']}x"
        )
    records = ", ".join(f"{topic} {n}" for topic, n in stats["records"].items()) or "none"
    lines.append(f"records: {records}; dead letters: {stats['dead_letters']}")
    outputs = "; ".join(
        f"{name} " + ", ".join(f"{key} {value}" for key, value in state.items())
        for name, state in stats["outputs"].items()
    )
    lines.append(f"outputs: {outputs}")
    return "\n".join(lines)
