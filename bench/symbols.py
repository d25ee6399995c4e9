"""Many symbols through the venue's budget: ``runner.py local`` against a simulator that says no.

The simulator enforces Coinbase's declared public REST budget (10 requests/s,
``l3_atom/off_chain/coinbase.py``) and answers 429 past it; the connector
declares the same budget.  Measured: the time from starting the runtime until
the simulator has served every product's level-3 book (connect time, bound by
the budget: one snapshot per symbol), the REST requests it served, the 429s it
answered (0 when the limiter keeps the budget), and the runtime's peak RSS.
"""

from __future__ import annotations

import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.distributed import MEMORY_SECTION, peak_rss_mb
from l3_atom.infra.processes import LOOPBACK, free_port, port_open, runner_command, start_process, stop_process
from l3_atom.off_chain.coinbase import Coinbase

SECTION = "many symbols (runner.py local, Coinbase's REST budget enforced by the simulator)"
FLOW_RATE = "200"
READY_TIMEOUT_S = 30.0
# Beyond what the budget needs for one snapshot per symbol: the product list, startup, a loaded machine.
CONNECT_SLACK_S = 60.0
POLL_S = 0.5
HTTP_TIMEOUT_S = 5.0


def stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/_sim/stats", timeout=HTTP_TIMEOUT_S) as answer:
        return orjson.loads(answer.read())


def connect(count: int, workdir: Path) -> tuple[float, int, int, float]:
    """Connect time (s), REST requests served, 429s answered and the runtime's peak RSS (MiB) for ``count`` symbols."""
    ids = [f"M{n:04d}-USD" for n in range(1, count + 1)]
    budget = Coinbase.limits.rest[0]
    port = free_port()
    processes = []
    try:
        processes.append(start_process(runner_command(
            "simulate", "coinbase", "--port", str(port), "--rate", FLOW_RATE, "--products", ",".join(ids),
            "--rest-limit", str(budget.limit), "--rest-window", str(budget.window_s),
        ), log_path=workdir / "simulator.log"))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not port_open(LOOPBACK, port) and time.monotonic() < deadline:
            time.sleep(POLL_S / 10)
        started = time.monotonic()
        symbols = [arg for pid in ids for arg in ("--symbol", pid.replace("-", "."))]
        local = start_process(runner_command(
            "local", "--source", "coinbase", *symbols, "--ws-url", f"ws://{LOOPBACK}:{port}/",
            "--rest-url", f"http://{LOOPBACK}:{port}", "--channels", "full", "--feeds", "trades_l3",
            "--jsonl", str(workdir / "records.jsonl"),
        ), log_path=workdir / "local.log")
        processes.append(local)
        deadline = started + count * budget.window_s / budget.limit + CONNECT_SLACK_S
        served = stats(port)
        while len(served["books_served"]) < count:
            if local.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{count} symbols: books served {len(served['books_served'])}; see {workdir}")
            time.sleep(POLL_S)
            served = stats(port)
        connect_s = time.monotonic() - started
        rss = peak_rss_mb(local.pid)
    finally:
        for process in reversed(processes):
            stop_process(process)
    return connect_s, served["limits"]["served"], served["limits"]["throttled"], rss


def measure(add: Callable, scale: Any) -> None:
    count = scale.many_symbols
    with tempfile.TemporaryDirectory() as workdir:
        connect_s, requests, throttled, rss = connect(count, Path(workdir))
    budget = Coinbase.limits.rest[0]
    note = f"{throttled} answers 429 (must be 0); budget {budget.limit}/{budget.window_s:g} s"
    add(SECTION, f"connect, {count} symbols", "s", [connect_s], note)
    add(SECTION, f"REST requests, {count} symbols", "requests", [float(requests)], note)
    add(MEMORY_SECTION, f"runner.py local, {count} symbols connected", "MB", [rss], "peak RSS")
