"""Slow readers, two ``bench.faults`` scenarios: memory stays bounded, the others are unaffected, the laggard catches up.

``slow_client``: ``runner.py local --serve`` with two websocket clients subscribed to
everything, one reading normally and one reading nothing (its receive buffer set small
before it connects, as a client on a slow link has) for ``LAG_PER_STALL * Scale.stall_s``.
The server bounds what it holds for a client (``--client-queue`` messages, and
``TCP_NOTSENT_LOWAT`` below it, ``l3_atom/ws_stream.py``) and drops the rest for that client
only, counted, telling it ``{"type": "dropped", "count": K}`` before its next record.  The
normal client's records must be exactly the JSON-lines output's from its first on; the file
must hold what the simulator's journal asks for; the process's RSS must stay bounded.

``lagging_processor``: the only processor worker is stopped (SIGSTOP) for as long while the
connector keeps producing, then continued: its committed raw offsets reach the raw topic's
true end (read here, message by message: Tansu's reported end offsets lag, ARCHITECTURE.md),
nothing is lost or duplicated (the simulator's journal against an independent reader), and
connector and worker memory stay bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import websockets
from prometheus_client.parser import text_string_to_metric_families

from bench.fault_connector_kill import raw_messages
from bench.faults import (
    BUSY_WAIT_S,
    OUTPUT_TOPICS,
    POLL_S,
    RSS_SAMPLE_S,
    SETTLE_TIMEOUT_S,
    SYMBOLS,
    CommitProbe,
    Outcome,
    Scale,
    fill,
    finish,
    rss_mb,
)
from l3_atom.infra.local_pipeline import LocalPipeline
from l3_atom.observability.metrics import CONSUMER_LAG

# The slow reader lags this many times a broker stall of the scale (full: 60 s, smoke: 15 s).
LAG_PER_STALL = 6
MEMORY_BOUND_MB = 64.0

# ------------------------------------------------------------------ a websocket client that reads nothing

CLIENT_RATE = 1000.0  # simulator flow messages per second for the local run (a reading client keeps up on a loaded machine)
CLIENT_QUEUE = 1000
FEEDS = "lob_l3,trades_l3,ticker"
# A client that stops reading for this long is taken to have read everything sent to it.
IDLE_S = 3.0
DONE_TIMEOUT_S = 120.0
CLOSE_TIMEOUT_S = 0.5
SUBSCRIBE_ALL = '{"op": "subscribe"}'


class Client:
    """One websocket client: what it read, the drops it was told of, whether the server closed it."""

    def __init__(self, ws: websockets.ClientConnection):
        self.ws = ws
        self.records: list[dict] = []
        self.told_dropped = 0
        self.notices = 0
        self.closed = ""

    @classmethod
    async def subscribed(cls, url: str, **options: Any) -> Client:
        ws = await websockets.connect(url, max_size=None, close_timeout=CLOSE_TIMEOUT_S, **options)
        await ws.recv()  # info
        await ws.send(SUBSCRIBE_ALL)
        client = cls(ws)
        while (await client.read_one(IDLE_S * 10)).get("type") != "subscribed":
            pass
        return client

    async def read_one(self, timeout_s: float) -> dict:
        message = orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout_s))
        if "topic" in message:
            self.records.append(message)
        elif message.get("type") == "dropped":
            self.told_dropped += message["count"]
            self.notices += 1
        return message

    async def read_until(self, done: Callable[[], bool], timeout_s: float) -> None:
        """Read until ``done()`` (asked after each message), the timeout, or the server closed the connection."""
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(TimeoutError):
            while not done() and time.monotonic() < deadline:
                try:
                    await self.read_one(deadline - time.monotonic())
                except websockets.ConnectionClosed as exc:
                    self.closed = f"connection closed: {exc}"
                    return

    async def read_until_idle(self, done: Callable[[], bool] | None = None) -> None:
        """Read until nothing came for ``IDLE_S`` (and ``done()`` holds, when given), or the server closed."""
        while True:
            try:
                await self.read_one(IDLE_S)
            except TimeoutError:
                if done is None or await asyncio.to_thread(done):
                    return
            except websockets.ConnectionClosed as exc:
                self.closed = f"connection closed: {exc}"
                return


def tail_match(got: list[dict], written: list[dict]) -> tuple[int, int, int]:
    """(delivered, lost, duplicated) of a client's records against the file's, per feed and symbol, from its first."""
    streams: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in written:
        streams[(record["topic"], record["key"])].append(record)
    received: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in got:
        received[(record["topic"], record["key"])].append(record)
    delivered = lost = duplicated = 0
    for key, records in received.items():
        stream = streams.get(key, [])
        start = next((i for i, r in enumerate(stream) if r == records[0]), len(stream))
        tail = stream[start:]
        same = sum(1 for a, b in zip(records, tail, strict=False) if a == b)
        delivered += same
        lost += len(tail) - same
        duplicated += max(0, len(records) - len(tail))
    return delivered, lost, duplicated


def slow_client(scale: Scale, workdir: Path) -> Outcome:
    """``runner.py local --serve``: one client reads, one reads nothing for a while; then both read to the end."""
    from tests.local.helpers import LocalRun, from_json_line, published, written
    from tests.test_e2e_coinbase import expected_records
    from tests.test_e2e_coinbase import published as by_contract_fields

    # Its receive buffer set small before it connects: a slow link's window, not autotuned megabytes.
    from tests.test_gateway import _small_window_socket as small_window_socket

    outcome = Outcome("websocket client reads nothing (local mode)")
    journal, jsonl = workdir / "journal.jsonl", workdir / "records.jsonl"
    lag_s = LAG_PER_STALL * scale.stall_s
    samples: list[tuple[float, dict]] = []
    with LocalRun(workdir) as run:
        run.start_simulator("--seed", "41", "--rate", str(CLIENT_RATE), "--products", "BTC-USD,ETH-USD",
                            "--journal", str(journal))
        run.start_local("--source", "coinbase", *(a for s in SYMBOLS for a in ("--symbol", s)), *run.endpoint_args(),
                        "--feeds", FEEDS, "--jsonl", str(jsonl), "--client-queue", str(CLIENT_QUEUE),
                        "--metrics-port", "0")  # a free port: other runs on this host may hold the default
        pid = run.running["local"].pid

        def sample() -> dict:
            stats = run.stats()
            samples.append((rss_mb(pid), stats))
            return stats

        async def clients() -> tuple[Client, Client, float]:
            normal = await Client.subscribed(run.stream_url)
            # It reads nothing, pings included: only the server may give up on it (its heartbeat).
            slow = await Client.subscribed(run.stream_url, sock=small_window_socket(run.serve_port),
                                           ping_interval=None)
            reading = asyncio.create_task(normal.read_until_idle(lambda: "simulator" not in run.running))
            await asyncio.to_thread(sample)
            outcome.faults_injected += 1
            deadline = time.monotonic() + lag_s
            while time.monotonic() < deadline:  # the slow client reads nothing meanwhile
                await asyncio.sleep(RSS_SAMPLE_S)
                await asyncio.to_thread(sample)
            resumed = time.monotonic()
            await slow.read_until(lambda: slow.notices > 0, DONE_TIMEOUT_S)
            caught_up = time.monotonic() - resumed
            run.stop("simulator")
            await asyncio.to_thread(
                run.wait_for, lambda s: written(s, "jsonl") == published(s), DONE_TIMEOUT_S, "file output complete")
            await slow.read_until_idle()
            await reading
            for client in (normal, slow):
                with contextlib.suppress(Exception):
                    await client.ws.close()
            return normal, slow, caught_up

        normal, slow, caught_up = asyncio.run(clients())
        final = sample()
        run.stop("local")
    lines = [orjson.loads(line) for line in jsonl.read_bytes().splitlines()]
    delivered, lost, duplicated = tail_match(normal.records, lines)
    records = [from_json_line(line) for line in lines]
    found, sent = by_contract_fields(records), expected_records(journal)
    file_lost = sum(len(sent[topic] - found[topic]) for topic in ("trades_l3", "ticker"))
    websocket = final["outputs"]["websocket"]
    base = samples[0][0]
    growth = round(max(memory for memory, _ in samples) - base, 1)
    outcome.expected = delivered + lost
    outcome.delivered = delivered
    outcome.duplicated = duplicated
    outcome.faults_detected = int(websocket["dropped"] > 0 or bool(slow.closed))
    outcome.recoveries = int(slow.told_dropped > 0 or bool(slow.closed))
    outcome.recover_s.append(round(caught_up, 2))
    # The slow client's drops are its losses; each is inside a gap it was told of (or its connection closed).
    outcome.lost = lost + websocket["dropped"]
    outcome.lost_inside_gaps = slow.told_dropped if not slow.closed else websocket["dropped"]
    outcome.details.update({
        "lag_s": lag_s, "rate": CLIENT_RATE, "client_queue": CLIENT_QUEUE, "file_records": len(lines),
        "normal_client": {"records": len(normal.records), "lost": lost, "told_dropped": normal.told_dropped},
        "slow_client": {"records": len(slow.records), "told_dropped": slow.told_dropped, "notices": slow.notices,
                        "closed": slow.closed},
        "server_dropped": websocket["dropped"],
        "largest_client_queue": max(s["outputs"]["websocket"]["largest_client_queue"] for _, s in samples),
        "rss_mb": {"start": round(base, 1), "peak": round(base + growth, 1), "growth": growth},
        "file_records_lost_against_the_journal": file_lost,
    })
    outcome.invariants["the reading client lost nothing (its records = the file's from its first)"] = (
        lost == 0 and duplicated == 0 and normal.told_dropped == 0 and delivered > 0)
    outcome.invariants["the file output has every trade and ticker the simulator sent"] = file_lost == 0
    outcome.invariants["the slow client's drops counted and told to it (or it was closed)"] = (
        websocket["dropped"] > 0 and (slow.told_dropped == websocket["dropped"] or bool(slow.closed)))
    outcome.invariants[f"its queue capped ({CLIENT_QUEUE} + the notice)"] = (
        outcome.details["largest_client_queue"] <= CLIENT_QUEUE + 1)
    outcome.invariants[f"local process RSS grew < {MEMORY_BOUND_MB:.0f} MB"] = growth < MEMORY_BOUND_MB
    return outcome


# ------------------------------------------------------------------ a processor that falls behind

ROLES = ("connector", "processor0")


def raw_ends(bootstrap: str, busy: Iterable[int] = ()) -> dict[int, int]:
    """Per raw partition, one past its last message read (not asked of the broker); see ``raw_messages``."""
    ends: dict[int, int] = {}
    for message in raw_messages(bootstrap, busy):
        ends[message.partition()] = max(ends.get(message.partition(), 0), message.offset() + 1)
    return ends


def reported_lag(pipeline: LocalPipeline) -> float:
    """The worker's own consumer lag gauge, summed over its raw partitions (``/metrics``)."""
    with urllib.request.urlopen(f"{pipeline.metrics_url('processor0')}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) if family.name == CONSUMER_LAG
               for sample in family.samples)


def lagging_processor(scale: Scale, workdir: Path) -> Outcome:
    """SIGSTOP the one worker while the flow goes on, SIGCONT: it works the backlog off, loses nothing."""
    import signal

    from tests.kafka_reader import TopicReader

    outcome = Outcome("processor falls behind (SIGSTOP), catches up")
    lag_s = LAG_PER_STALL * scale.stall_s
    pipeline = LocalPipeline(SYMBOLS, rate=scale.rate, seed=37, workers=1, workdir=workdir)
    with pipeline, contextlib.ExitStack() as cleanup:
        reader = cleanup.enter_context(contextlib.closing(
            TopicReader(pipeline.broker.bootstrap_servers, pipeline.registry_url, OUTPUT_TOPICS)))
        probe = cleanup.enter_context(contextlib.closing(CommitProbe(pipeline)))
        worker = pipeline.processes["processor0"]
        cleanup.callback(lambda: worker.poll() is None and worker.send_signal(signal.SIGCONT))
        pids = {role: pipeline.processes[role].pid for role in ROLES}
        peak: dict[str, float] = {}

        def sample() -> None:
            for role, pid in pids.items():
                peak[role] = max(peak.get(role, 0.0), rss_mb(pid))

        reader.read_until(lambda _: False, scale.between_faults_s)
        busy = probe.busy(BUSY_WAIT_S)
        probe.wait(lambda o: all(o.get(p, -1) >= 0 for p in busy), SETTLE_TIMEOUT_S, "a commit before the pause")
        before = {role: rss_mb(pid) for role, pid in pids.items()}
        worker.send_signal(signal.SIGSTOP)
        outcome.faults_injected += 1
        deadline = time.monotonic() + lag_s
        while time.monotonic() < deadline:
            sample()
            reader.read_until(lambda _: False, RSS_SAMPLE_S)
        backlog_ends = raw_ends(pipeline.broker.bootstrap_servers, busy)
        paused_at = probe.committed()
        worker.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        backlog = sum(end - max(paused_at.get(p, 0), 0) for p, end in backlog_ends.items())
        reported = 0.0
        caught_up = False
        while time.monotonic() - resumed < SETTLE_TIMEOUT_S and not caught_up:
            sample()
            reported = max(reported, reported_lag(pipeline))
            caught_up = all(probe.committed().get(p, -1) >= end for p, end in backlog_ends.items())
            time.sleep(POLL_S)
        if caught_up:
            outcome.recoveries += 1
            outcome.recover_s.append(round(time.monotonic() - resumed, 2))
        outcome.faults_detected = int(reported > 0)
        found = finish(pipeline, reader)
        ends = raw_ends(pipeline.broker.bootstrap_servers)
        final = probe.wait(lambda now: all(now.get(p, -1) >= end for p, end in ends.items()), SETTLE_TIMEOUT_S,
                           "every raw message committed")
        final_reported = reported_lag(pipeline)
        for name in pipeline.processes:
            pipeline.check_alive(name)
    fill(outcome, found)
    growth = {role: round(peak[role] - before[role], 1) for role in ROLES}
    outcome.details.update({
        "lag_s": lag_s, "backlog_messages_at_resume": backlog, "max_lag_reported_by_the_worker": reported,
        "final_lag": {p: end - final.get(p, -1) for p, end in ends.items()},
        "final_lag_reported_by_the_worker": final_reported,
        "rss_before_mb": {role: round(v, 1) for role, v in before.items()}, "rss_growth_mb": growth,
    })
    outcome.invariants["the backlog worked off (committed offsets reach the raw topic's end)"] = caught_up
    outcome.invariants["consumer lag back to 0 (every raw message committed; the worker's gauge 0)"] = (
        all(v <= 0 for v in outcome.details["final_lag"].values()) and final_reported == 0)
    outcome.invariants["0 lost"] = outcome.lost == 0
    outcome.invariants["0 duplicates"] = outcome.duplicated == 0
    outcome.invariants[f"connector and worker memory grew < {MEMORY_BOUND_MB:.0f} MB"] = all(
        g < MEMORY_BOUND_MB for g in growth.values())
    return outcome
