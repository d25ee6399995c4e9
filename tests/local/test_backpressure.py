"""Slow consumers never make ``runner.py local`` grow without bound.

- A websocket client that reads nothing: only that client loses records
  (counted, its queue capped); the file output gets every record.
- A slow output (JSON lines into a pipe the test reads slowly): the runtime
  waits for it, back to the connector, which stops reading; the simulator
  slows down; nothing is lost.

Memory is measured (the process's RSS) and printed; the assertions are on
queue sizes, counts and an RSS growth far below what unbounded queues
would have taken.  No timing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import pytest
import websockets

from l3_atom.infra.processes import wait_until
from tests.local.helpers import LocalRun, from_json_line, published, written
from tests.test_e2e_coinbase import check_book, expected_records, must_publish, sim_stats
from tests.test_e2e_coinbase import published as by_contract_fields

SAMPLE_S = 0.5
KIB = 1024
MIB = KIB * KIB
# Generous: full queues take a few MiB; the rest is the process warming up (its encoders' caches are bounded).
RSS_GROWTH_LIMIT = 40 * MIB
FEEDS = "lob_l3,trades_l3,ticker"
# A small bus, so that what the RSS shows is the websocket client's share, not a full bus.
BUS_FRAMES = 500

CLIENT_QUEUE = 1000
FAST_RATE = 20_000
WARM_UP_S = 1.0
CLOSE_TIMEOUT_S = 0.5
PHASE_S = 4.0

SLOW_RATE = 5000
SLOW_MESSAGES = 30_000
SLOW_READ_BYTES = 4 * KIB
SLOW_READ_PAUSE_S = 0.02
SLOW_PHASE_S = 5.0
DONE_TIMEOUT_S = 60.0


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * KIB
    raise AssertionError(f"no VmRSS for process {pid}")


class Samples:
    """RSS and stats of the runtime over time; printed so the numbers are on record."""

    def __init__(self, run: LocalRun):
        self.run = run
        self.rows: list[tuple[float, int, dict]] = []
        self.start = time.monotonic()

    def take(self) -> dict:
        stats = self.run.stats()
        self.rows.append((time.monotonic() - self.start, rss(self.run.running["local"].pid), stats))
        return stats

    def growth(self) -> int:
        """RSS growth after the first second of streaming (start-up and first allocations excluded)."""
        base = next(memory for elapsed, memory, _ in self.rows if elapsed >= 1.0)
        return max(memory for _, memory, _ in self.rows) - base

    def show(self, title: str, columns: dict) -> None:
        print(f"\n{title}\n  t(s)  RSS(MiB)  " + "  ".join(columns))
        for elapsed, memory, stats in self.rows:
            values = "  ".join(f"{fn(stats):>{len(name)}}" for name, fn in columns.items())
            print(f"  {elapsed:4.1f}  {memory / MIB:8.1f}  {values}")


@pytest.mark.timeout(120)
def test_a_client_that_reads_nothing_loses_only_its_own_records(tmp_path: Path) -> None:
    """Same load twice: the client connected but subscribed to nothing, then subscribed and reading nothing.

    The second phase's extra RSS growth is what the stalled client costs; the process also grows for
    reasons of its own while it warms up (bounded caches), which the first phase measures.
    """
    jsonl = tmp_path / "records.jsonl"
    with LocalRun(tmp_path) as run:
        run.start_simulator("--seed", "5", "--rate", str(FAST_RATE), "--products", "BTC-USD,ETH-USD")
        run.start_local(
            "--source", "coinbase", "--symbol", "BTC.USD", "--symbol", "ETH.USD", *run.endpoint_args(),
            "--feeds", FEEDS, "--jsonl", str(jsonl), "--client-queue", str(CLIENT_QUEUE),
            "--bus-frames", str(BUS_FRAMES),
        )
        samples = Samples(run)

        async def sample_for(seconds: float) -> tuple[int, dict]:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await asyncio.to_thread(samples.take)
                await asyncio.sleep(SAMPLE_S)
            return samples.rows[-1][1], samples.rows[-1][2]

        async def stalled_client() -> tuple[int, int, int, dict]:
            # It cannot take the server's close reply either: do not wait long for it when leaving.
            async with websockets.connect(run.stream_url, close_timeout=CLOSE_TIMEOUT_S) as ws:
                await ws.recv()
                start_rss, _ = await sample_for(WARM_UP_S)
                idle_rss, _ = await sample_for(PHASE_S)
                await ws.send(json.dumps({"op": "subscribe"}))
                await ws.recv()
                # From here on the client reads nothing: its socket fills, then the server's queue for it.
                stalled_rss, stalled = await sample_for(PHASE_S)
                return start_rss, idle_rss, stalled_rss, stalled

        start_rss, idle_rss, stalled_rss, stalled = asyncio.run(stalled_client())
        run.stop("simulator")
        stats = run.wait_for(lambda s: written(s, "jsonl") == published(s), DONE_TIMEOUT_S, "file output complete")
        run.stop("local")

    samples.show("websocket client: connected and idle, then subscribed and reading nothing", {
        "records": published,
        "ws dropped": lambda s: s["outputs"]["websocket"]["dropped"],
        "largest client queue": lambda s: s["outputs"]["websocket"]["largest_client_queue"],
        "bus": lambda s: s["sources"]["coinbase"]["bus"],
    })
    websocket = [s["outputs"]["websocket"] for _, _, s in samples.rows]
    # The client's queue is capped (+1: the notice that tells it where records were dropped).
    assert max(w["largest_client_queue"] for w in websocket) <= CLIENT_QUEUE + 1
    dropped = stalled["outputs"]["websocket"]["dropped"]
    assert dropped > 0 and stalled["outputs"]["websocket"]["largest_client_queue"] >= CLIENT_QUEUE
    lines = jsonl.read_text().splitlines()
    assert len(lines) == published(stats), "the file output lost nothing"
    dropped_bytes = sum(map(len, lines[published(stalled) - dropped : published(stalled)]))
    idle_growth, stalled_growth = idle_rss - start_rss, stalled_rss - idle_rss
    print(
        f"  RSS growth over {PHASE_S:.0f} s: {idle_growth / MIB:.1f} MiB idle, {stalled_growth / MIB:.1f} MiB stalled;"
        f" the stalled client dropped {dropped} records, {dropped_bytes / MIB:.1f} MiB of JSON"
    )
    # Queued, the dropped records would have taken at least their JSON's size.
    assert stalled_growth - idle_growth < dropped_bytes / 2


class SlowReader(threading.Thread):
    """Reads a pipe slowly (a slow output's consumer) until told to hurry, then to its end."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path = path
        self.hurry = threading.Event()
        self.data = bytearray()

    def run(self) -> None:
        with open(self.path, "rb", buffering=0) as pipe:
            while chunk := pipe.read(SLOW_READ_BYTES if not self.hurry.is_set() else MIB):
                self.data += chunk
                if not self.hurry.is_set():
                    time.sleep(SLOW_READ_PAUSE_S)


@pytest.mark.timeout(120)
def test_a_slow_output_slows_the_connector_and_nothing_is_lost(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    pipe = tmp_path / "records.pipe"
    os.mkfifo(pipe)
    reader = SlowReader(pipe)
    with LocalRun(tmp_path) as run:
        run.start_simulator(
            "--seed", "9", "--rate", str(SLOW_RATE), "--products", "BTC-USD,ETH-USD",
            "--max-messages", str(SLOW_MESSAGES), "--journal", str(journal),
        )
        run.start_local(
            "--source", "coinbase", "--symbol", "BTC.USD", "--symbol", "ETH.USD", *run.endpoint_args(),
            "--feeds", FEEDS, "--jsonl", str(pipe), "--bus-frames", str(BUS_FRAMES),
        )
        reader.start()
        samples = Samples(run)
        deadline = time.monotonic() + SLOW_PHASE_S
        while time.monotonic() < deadline:
            samples.take()
            time.sleep(SAMPLE_S)
        slow_phase = samples.take()
        reader.hurry.set()
        wait_until(lambda: sim_stats(run)["messages_generated"] >= SLOW_MESSAGES, DONE_TIMEOUT_S, "flow end")
        total = must_publish(expected_records(journal), journal)
        run.wait_for(lambda s: written(s, "jsonl") >= total, DONE_TIMEOUT_S, "every record written")
        samples.take()
        connects = sim_stats(run)
        run.stop("local")
    reader.join(DONE_TIMEOUT_S)

    samples.show("JSON lines into a pipe read slowly, then fast", {
        "frames": lambda s: s["sources"]["coinbase"]["frames"],
        "bus": lambda s: s["sources"]["coinbase"]["bus"],
        "paused": lambda s: s["sources"]["coinbase"]["paused"],
        "queued batches": lambda s: s["outputs"]["jsonl"]["queued_batches"],
    })
    for _, _, stats in samples.rows:
        assert stats["sources"]["coinbase"]["bus"] <= BUS_FRAMES + 1, "one connection: capacity + 1 at most"
    assert slow_phase["sources"]["coinbase"]["paused"] > 0, "the connector paused reading"
    assert slow_phase["sources"]["coinbase"]["frames"] < SLOW_MESSAGES // 2, "the flow slowed to the reader's pace"
    records = [from_json_line(json.loads(line)) for line in reader.data.decode().splitlines()]
    found = by_contract_fields(records)
    expected = expected_records(journal)
    for topic in ("trades_l3", "ticker"):
        assert found[topic] == expected[topic], f"{topic}: records lost or changed under backpressure"
    check_book(found, expected, journal)
    growth = samples.growth()
    print(f"  {len(records)} records, none lost; RSS growth {growth / MIB:.1f} MiB; simulator: {connects}")
    assert growth < RSS_GROWTH_LIMIT

