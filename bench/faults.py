"""Fault scenarios with figures: what is lost, duplicated and recovered under each fault we can make here.

``python -m bench.faults [--scale full|quick|smoke] [--only NAME ...]`` runs named
scenarios against the real local stack (Tansu, the schema registry, the Coinbase
simulator, a connector, processor workers) and reads what lands with an
independent confluent-kafka consumer (``tests/kafka_reader.py``).  What was
expected comes from the simulator's journal (every frame it actually sent),
computed without the pipeline's code (``tests/test_e2e_coinbase.py``), never
from the broker's reported end offsets (unreliable on Tansu, ARCHITECTURE.md).
Each scenario prints one table row and the run writes ``bench/results/faults.json``.
``tests/test_faults.py`` runs each at the smoke scale and asserts its invariants.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from importlib import import_module
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench.fault_broker_restart import broker_restarts
from bench.fault_full_disk import full_disk
from l3_atom.books.integrity import DEFAULT_RETRY_US
from l3_atom.infra.local_pipeline import LocalPipeline
from l3_atom.infra.processes import stop_process
from l3_atom.stream_processing.standardiser import NOTHING_IN_IT
from l3_atom.topics import raw_topic

RESULTS = Path(__file__).resolve().parent / "results" / "faults.json"
SYMBOLS = ("BTC.USD", "ETH.USD")
OUTPUT_TOPICS = ["lob_l3", "trades_l3", "ticker", "dead_letter"]
RAW_TOPIC = raw_topic("coinbase")
# Faust's default broker_commit_interval: a killed worker's successor replays at most this much.
COMMIT_INTERVAL_S = 2.8
# A worker's death and its replacement's join each rebalance the group.
REBALANCES_PER_KILL = 2
READ_TIMEOUT_S = 120.0
RECOVER_TIMEOUT_S = 90.0
# A paused flow's backlog is worked off and committed within this (a loaded machine lags).
SETTLE_TIMEOUT_S = 240.0
# How long a book without a snapshot waits before asking for one (a worker asks at once when it must).
RESYNC_RETRY_S = DEFAULT_RETRY_US / 1_000_000
REST_MARK = '"conn":"rest:'
# Reading goes on this long after everything expected arrived: a duplicate would arrive now.
SETTLE_S = 3.0
POLL_S = 0.5
PAGE_SIZE = 1000
# Raw partitions that have held no message this long after the flow started are taken as idle.
BUSY_WAIT_S = 10.0
KB_PER_MB = 1024


@dataclass(frozen=True)
class Scale:
    rate: float  # simulator flow messages per second
    worker_kills: int
    between_faults_s: float  # flow between two faults
    malformed_frames: int  # mutated frames per recording
    stalls: int
    stall_s: float
    disconnects: int


SCALES = {
    "full": Scale(rate=200.0, worker_kills=5, between_faults_s=8.0, malformed_frames=100_000, stalls=3,
                  stall_s=10.0, disconnects=50),
    "quick": Scale(rate=200.0, worker_kills=2, between_faults_s=5.0, malformed_frames=20_000, stalls=2,
                   stall_s=5.0, disconnects=10),
    "smoke": Scale(rate=100.0, worker_kills=2, between_faults_s=3.0, malformed_frames=3_000, stalls=1,
                   stall_s=2.5, disconnects=3),
}


@dataclass
class Outcome:
    """One scenario's figures; ``invariants`` names each guarantee checked and whether it held."""

    scenario: str
    faults_injected: int = 0
    faults_detected: int = 0
    recoveries: int = 0
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    lost_inside_gaps: int = 0
    duplicated: int = 0
    recover_s: list[float] = field(default_factory=list)
    invariants: dict[str, bool] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    @property
    def held(self) -> bool:
        return all(self.invariants.values())


# ------------------------------------------------------------------ what landed against what was sent


def delivery(journal: Path, records: list) -> dict:
    """Records expected from the journal against those read: delivered, lost, duplicated, unexpected.

    Book events a snapshot already held may be absent (the processor skips them), as may a
    trade's maker change whose order a snapshot held; everything else must be there.  A maker
    change for a fill before its symbol's first book may be there too (sized from later messages).
    """
    from tests.test_e2e_coinbase import expected_records, fill_before_book, journal_snapshots, published

    expected = expected_records(journal)
    snapshot_orders, last_snapshot = journal_snapshots(journal)
    found = published(records)
    certain = Counter({event: n for event, n in expected["lob_l3"].items()
                       if event[-1] > last_snapshot.get(event[0], -1)})
    wanted = {"lob_l3": certain, "trades_l3": expected["trades_l3"], "ticker": expected["ticker"],
              "lob_l3_snapshot": snapshot_orders}
    lost: dict[str, list] = {}
    duplicated: Counter[str] = Counter()
    frames: set[tuple] = set()  # (symbol, sequence): the exchange message a duplicated record came from
    unexpected: list[tuple] = []
    delivered = 0
    for kind, sent in wanted.items():
        got = found[kind]
        # A message the exchange sent twice (a ticker repeated on resubscribe) may land once or twice.
        lost[kind] = [k for k in sent if k not in got]
        duplicated[kind] = sum(n - max(sent.get(k, 1), 1) for k, n in got.items() if n > max(sent.get(k, 1), 1))
        frames |= {(k[0], k[-1]) for k, n in got.items() if n > max(sent.get(k, 1), 1)}
        delivered += sum(1 for k in got if k in sent)
        everything_sent = expected["lob_l3"] if kind == "lob_l3" else sent
        unexpected += [(kind, *k) for k in got if k not in everything_sent
                       and not (kind == "lob_l3" and fill_before_book(k, expected))]
    return {"expected": sum(len(c) for c in wanted.values()), "delivered": delivered,
            "lost": lost, "duplicated": duplicated, "duplicated_frames": len(frames), "unexpected": unexpected}


def finish(pipeline: LocalPipeline, reader: object) -> dict:
    """Stop the flow, read until every record the journal asks for is there (or the timeout), settle, count."""
    from tests.test_e2e_coinbase import expected_records, must_publish

    stop_flow(pipeline)
    total = must_publish(expected_records(pipeline.journal), pipeline.journal)
    reader.read_until(lambda records: len(records) >= total, READ_TIMEOUT_S)
    reader.read_until(lambda _: False, SETTLE_S)
    return delivery(pipeline.journal, reader.records)


def resync_requests(pipeline: LocalPipeline) -> Counter[str]:
    """Book resync requests the processors published, per symbol (read from ``book_resync``)."""
    from tests.kafka_reader import TopicReader

    reader = TopicReader(pipeline.broker.bootstrap_servers, pipeline.registry_url, ["book_resync"])
    try:
        reader.read_until(lambda _: False, SETTLE_S)
        return Counter(r.value["symbol"] for r in reader.records)
    finally:
        reader.close()


def rest_books(journal: Path) -> Counter[str]:
    """Level-3 REST books the simulator served, per symbol (``BTC.USD``)."""
    books: Counter[str] = Counter()
    for line in journal.read_text().splitlines():
        if REST_MARK in line:
            books[json.loads(line)["conn"].removeprefix("rest:").replace("-", ".")] += 1
    return books


def await_resyncs(pipeline: LocalPipeline, reader: object, asked_before: Counter[str], served_before: Counter[str]
                  ) -> set[str]:
    """Keep the flow running until each book that asked for a snapshot since the counts given was served one.

    A worker that took a book over holds its ``lob_l3`` records back from the first fill of an
    order older than it until the order's size is known, at the latest from the snapshot it asks
    for at once (or one retry interval after its first message).  Stopping the flow before that
    snapshot would leave them unpublished.
    """
    reader.read_until(lambda _: False, RESYNC_RETRY_S + COMMIT_INTERVAL_S)
    deadline = time.monotonic() + RECOVER_TIMEOUT_S
    while True:
        asked = {symbol for symbol, n in resync_requests(pipeline).items() if n > asked_before[symbol]}
        served = rest_books(pipeline.journal)
        if all(served[symbol] > served_before[symbol] for symbol in asked):
            return asked
        if time.monotonic() > deadline:
            raise TimeoutError(f"books asked for a snapshot after the last kill: {asked}; served {served}")
        reader.read_until(lambda _: False, POLL_S)


def stop_flow(pipeline: LocalPipeline) -> None:
    """Stop the simulator: its journal is then complete and the connector has every frame it sent."""
    stop_process(pipeline.processes.pop("simulator"))


def fill(outcome: Outcome, found: dict) -> None:
    outcome.expected = found["expected"]
    outcome.delivered = found["delivered"]
    outcome.lost = sum(len(v) for v in found["lost"].values())
    outcome.duplicated = sum(found["duplicated"].values())
    outcome.details["duplicated_by_kind"] = dict(found["duplicated"])
    outcome.details["duplicated_frames"] = found["duplicated_frames"]
    outcome.details["lost_examples"] = {k: [str(e) for e in v[:3]] for k, v in found["lost"].items() if v}
    outcome.details["unexpected"] = len(found["unexpected"])
    outcome.details["unexpected_examples"] = [str(e) for e in found["unexpected"][:3]]
    outcome.invariants["nothing published that was not sent"] = not found["unexpected"]


class CommitProbe:
    """The processors' committed raw offsets, read as the group's own consumer would see them."""

    def __init__(self, pipeline: LocalPipeline):
        from l3_atom.config import Settings

        self.bootstrap = pipeline.broker.bootstrap_servers
        self.consumer = Consumer({"bootstrap.servers": self.bootstrap,
                                  "group.id": Settings().processor.app_id, "enable.auto.commit": False})
        partitions = self.consumer.list_topics(RAW_TOPIC, timeout=10).topics[RAW_TOPIC].partitions
        self.partitions = [TopicPartition(RAW_TOPIC, p) for p in partitions]

    def busy(self, timeout_s: float) -> set[int]:
        """The raw partitions that hold messages (read from the beginning, not the group's view)."""
        reader = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "faults-busy", "enable.auto.commit": False})
        try:
            reader.assign([TopicPartition(RAW_TOPIC, tp.partition, OFFSET_BEGINNING) for tp in self.partitions])
            found: set[int] = set()
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and len(found) < len(self.partitions):
                found |= {m.partition() for m in reader.consume(PAGE_SIZE, POLL_S) if not m.error()}
            return found
        finally:
            reader.close()

    def settled(self, partitions: set[int]) -> dict[int, int]:
        """Offsets once every partition is committed and none moved for two commit intervals (flow paused)."""
        last = self.committed()
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            time.sleep(2 * COMMIT_INTERVAL_S)
            now = self.committed()
            if now == last and all(now.get(p, -1) >= 0 for p in partitions):
                return now
            last = now
        raise TimeoutError(f"committed offsets never settled: {last}")

    def committed(self) -> dict[int, int]:
        return {tp.partition: tp.offset for tp in self.consumer.committed(self.partitions, timeout=10)}

    def wait(self, done: Callable[[dict[int, int]], bool], timeout_s: float, what: str) -> dict[int, int]:
        deadline = time.monotonic() + timeout_s
        offsets = self.committed()
        while not done(offsets):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: committed offsets stayed at {offsets}")
            time.sleep(POLL_S)
            offsets = self.committed()
        return offsets

    def close(self) -> None:
        self.consumer.close()


def advanced(base: dict[int, int], partitions: set[int]) -> Callable[[dict[int, int]], bool]:
    """True once every partition of ``partitions`` has a commit past its offset in ``base``."""
    return lambda now: all(now.get(p, -1) > base.get(p, -1) for p in partitions)


# ------------------------------------------------------------------ processor worker SIGKILL

# A one-minute window, its grace and the idle close (config.ini [candles]), with room for a loaded machine.
CANDLE_CLOSE_WAIT_S = 120.0
# Far past every trade of a run: a trade here makes every real window closed in the brute force.
FAR_FUTURE_MS = 10 * 365 * 86_400_000


def candle_check(pipeline: LocalPipeline, records: list) -> dict:
    """Closed candles published against a brute-force computation from the trades published (each once).

    A candle closed by the idle timer (wall clock) may not be closed by the trades' own watermark
    yet: every closed candle must equal the brute force's candle of its window, and every window
    the watermark closes must have been published.
    """
    from l3_atom.config import Settings
    from l3_atom.stream_processing.candles import Trade
    from tests.kafka_reader import TopicReader
    from tests.test_candles import brute_force

    reader = TopicReader(pipeline.broker.bootstrap_servers, pipeline.registry_url, ["candle"])
    try:
        # A short run may end inside its first whole minute: its windows then close by the idle timer.
        reader.read_until(lambda candles: any(r.value["closed"] for r in candles), CANDLE_CLOSE_WAIT_S)
        reader.read_until(lambda _: False, SETTLE_S)
        closed = [r.value for r in reader.records if r.value["closed"]]
    finally:
        reader.close()
    trades: dict[str, list[Trade]] = {}
    seen: set[tuple[str, str]] = set()
    for r in records:
        v = r.value
        if r.topic == "trades_l3" and (v["symbol"], v["trade_id"]) not in seen:
            seen.add((v["symbol"], v["trade_id"]))
            trades.setdefault(v["symbol"], []).append(
                Trade(v["exchange"], v["symbol"], v["price"], v["size"], v["event_timestamp"], v["atom_timestamp"]))
    candles = Settings().candles
    by_watermark, every_window = {}, {}
    for symbol, flow in trades.items():
        end = Trade("coinbase", symbol, Decimal(1), Decimal(1), FAR_FUTURE_MS, 0)
        for found, given in ((by_watermark, flow), (every_window, [*flow, end])):
            for candle in brute_force(given, candles.intervals, candles.grace_ms)[0]:
                found[(symbol, candle["interval"], candle["start"])] = candle | {"symbol": symbol}
    published = {(c["symbol"], c["interval"], c["start"]) for c in closed}
    differ = []
    for candle in closed:
        window = (candle["symbol"], candle["interval"], candle["start"])
        brute = every_window.get(window, {})
        if brute != candle:
            differ.append(f"{window}: " + ", ".join(
                f"{name} {candle.get(name)} (brute force {brute.get(name)})"
                for name in sorted(candle.keys() | brute.keys()) if candle.get(name) != brute.get(name)))
    missing = [k for k in by_watermark if k not in published]
    return {"closed_candles": len(published), "closed_candles_published": len(closed),
            "candles_differing": differ[:3], "candles_differing_count": len(differ),
            "candles_missing": [str(k) for k in missing[:3]], "candles_missing_count": len(missing)}



def worker_kills(scale: Scale, workdir: Path) -> Outcome:
    """Two workers; SIGKILL one, start a replacement, repeat; then count against the journal.

    Odd kills come while the flow is paused (the simulator SIGSTOPped) and every offset is
    committed: the successor then starts exactly at a committed offset with nothing of it
    processed before, the case where a takeover once dropped the record at that offset (commit
    cd9f587; with the flow running the victim had mostly processed that record already, which
    hid the loss).  Even kills come mid-flow right after a commit: they measure duplicates.
    """
    from tests.kafka_reader import TopicReader

    outcome = Outcome("processor worker SIGKILL (2 workers)")
    pipeline = LocalPipeline(SYMBOLS, rate=scale.rate, seed=19, workers=2, workdir=workdir)
    with pipeline:
        reader = TopicReader(pipeline.broker.bootstrap_servers, pipeline.registry_url, OUTPUT_TOPICS)
        probe = CommitProbe(pipeline)
        simulator = pipeline.processes["simulator"]
        try:
            reader.read_until(lambda _: False, scale.between_faults_s)
            busy = probe.busy(BUSY_WAIT_S)
            live, next_index = [0, 1], 2
            for kill in range(scale.worker_kills):
                paused = kill % 2 == 0
                if kill:
                    reader.read_until(lambda _: False, scale.between_faults_s)
                if kill == scale.worker_kills - 1:
                    asked_before, served_before = resync_requests(pipeline), rest_books(pipeline.journal)
                if paused:
                    simulator.send_signal(signal.SIGSTOP)
                    at_kill = probe.settled(busy)
                else:
                    seen = probe.committed()
                    # A fresh commit on every busy partition, then the kill at once.
                    at_kill = probe.wait(advanced(seen, busy), RECOVER_TIMEOUT_S, "a commit before the kill")
                victim = live.pop(0)
                killed = pipeline.processes.pop(f"processor{victim}")
                killed.send_signal(signal.SIGKILL)
                killed.wait(10)
                started = time.monotonic()
                outcome.faults_injected += 1
                pipeline.start_worker(next_index, wait=False)
                live.append(next_index)
                next_index += 1
                if paused:
                    simulator.send_signal(signal.SIGCONT)
                probe.wait(advanced(at_kill, busy), RECOVER_TIMEOUT_S, "recovery after a worker SIGKILL")
                outcome.recover_s.append(round(time.monotonic() - started, 2))
                outcome.faults_detected += 1  # the group reassigned the dead worker's partitions
                outcome.recoveries += 1
                pipeline.wait_worker(f"processor{live[-1]}")
            outcome.details["books_resynced_after_the_last_kill"] = sorted(
                await_resyncs(pipeline, reader, asked_before, served_before))
            found = finish(pipeline, reader)
            resynced = resync_requests(pipeline)
            outcome.details |= candle_check(pipeline, reader.records)
        finally:
            if simulator.poll() is None:
                simulator.send_signal(signal.SIGCONT)
            probe.close()
            reader.close()
        for name in pipeline.processes:
            pipeline.check_alive(name)
    fill(outcome, found)
    outcome.details["resync_requests"] = dict(resynced)
    # Each kill makes two rebalances (the death, the replacement's join); each replays at most the
    # frames of one commit interval.  Counted in exchange messages: a replayed REST book is one.
    bound = int(outcome.faults_injected * REBALANCES_PER_KILL * scale.rate * COMMIT_INTERVAL_S)
    outcome.details["duplicate_frames_bound"] = bound
    outcome.details["kills_at_a_pause"] = outcome.faults_injected - outcome.faults_injected // 2
    outcome.details["raw_partitions_busy"] = sorted(busy)
    outcome.invariants["every raw message's records present (0 lost)"] = outcome.lost == 0
    outcome.invariants["closed candles identical to a brute-force computation"] = (
        outcome.details["closed_candles"] > 0 and not outcome.details["candles_differing_count"]
        and not outcome.details["candles_missing_count"])
    outcome.invariants["duplicated messages within one commit interval per rebalance"] = (
        outcome.details["duplicated_frames"] <= bound)
    outcome.invariants["every kill recovered"] = outcome.recoveries == outcome.faults_injected
    return outcome


# ------------------------------------------------------------------ broker stalls

# What a stalled broker makes the clients say (librdkafka, aiokafka, Faust): a stall they noticed.
STALL_WORDS = re.compile(rb"timed out|timeout|disconnect|rebalanc|not available|connection", re.IGNORECASE)
RSS_SAMPLE_S = 0.5
# A stall of seconds at these rates buffers a few MB at most: more growth than this is not "bounded".
RSS_GROWTH_BOUND_MB = 150.0
ROLES = ("connector", "processor0")


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` from /proc (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / KB_PER_MB
    except OSError:
        pass
    return 0.0


def broker_stalls(scale: Scale, workdir: Path) -> Outcome:
    """SIGSTOP the broker for a while, SIGCONT, repeat: the connector buffers, everything lands once."""
    from tests.kafka_reader import TopicReader

    outcome = Outcome("broker stall (SIGSTOP/SIGCONT)")
    pipeline = LocalPipeline(SYMBOLS, rate=scale.rate, seed=23, workers=1, workdir=workdir)
    with pipeline:
        reader = TopicReader(pipeline.broker.bootstrap_servers, pipeline.registry_url, OUTPUT_TOPICS)
        probe = CommitProbe(pipeline)
        broker = pipeline.broker.process
        try:
            reader.read_until(lambda _: False, scale.between_faults_s)
            busy = probe.busy(BUSY_WAIT_S)
            pids = {role: pipeline.processes[role].pid for role in ROLES}
            before = {role: rss_mb(pid) for role, pid in pids.items()}
            peak = dict(before)
            for _ in range(scale.stalls):
                at_stall = probe.wait(lambda o: all(o.get(p, -1) >= 0 for p in busy), RECOVER_TIMEOUT_S,
                                      "a commit before the stall")
                logs = {role: pipeline.log_path(role).stat().st_size for role in ROLES}
                broker.send_signal(signal.SIGSTOP)
                outcome.faults_injected += 1
                try:
                    stop_at = time.monotonic() + scale.stall_s
                    while time.monotonic() < stop_at:
                        for role, pid in pids.items():
                            peak[role] = max(peak[role], rss_mb(pid))
                        time.sleep(RSS_SAMPLE_S)
                finally:
                    broker.send_signal(signal.SIGCONT)
                resumed = time.monotonic()
                probe.wait(advanced(at_stall, busy), RECOVER_TIMEOUT_S, "recovery after a broker stall")
                outcome.recover_s.append(round(time.monotonic() - resumed, 2))
                outcome.recoveries += 1
                said = [role for role in ROLES if STALL_WORDS.search(read_from(pipeline.log_path(role), logs[role]))]
                outcome.faults_detected += bool(said)
                reader.read_until(lambda _: False, scale.between_faults_s)
            found = finish(pipeline, reader)
        finally:
            if broker.poll() is None:
                broker.send_signal(signal.SIGCONT)
            probe.close()
            reader.close()
        for name in pipeline.processes:
            pipeline.check_alive(name)
    fill(outcome, found)
    growth = {role: round(peak[role] - before[role], 1) for role in ROLES}
    outcome.details["rss_before_mb"] = {role: round(v, 1) for role, v in before.items()}
    outcome.details["rss_growth_mb"] = growth
    outcome.invariants["0 lost across the stalls"] = outcome.lost == 0
    outcome.invariants["every stall recovered"] = outcome.recoveries == outcome.faults_injected
    outcome.invariants[f"connector and processor memory grew < {RSS_GROWTH_BOUND_MB:.0f} MB"] = all(
        g < RSS_GROWTH_BOUND_MB for g in growth.values())
    return outcome


def read_from(path: Path, offset: int) -> bytes:
    with path.open("rb") as log:
        log.seek(offset)
        return log.read()


# ------------------------------------------------------------------ exchange disconnects

# Flow messages the simulator generates for nobody while the connector reconnects (a visible gap).
MISSED_PER_DISCONNECT = 20
FLOW_TYPES = {"received", "open", "done", "match", "change", "activate"}


def journal_gaps(journal: Path) -> tuple[int, int, int, int]:
    """(connections, exchange messages never received, of those inside a gap a later REST book covers,
    REST books served).

    Per product, the ``full`` channel's sequence numbers run without holes on the exchange's side:
    a hole in the journal is a message sent to nobody.  It is reported when a snapshot fetched
    after it has a sequence at or past the hole's end (the book resync that follows a reconnect).
    """
    seen: dict[str, set[int]] = {}
    books: dict[str, list[int]] = {}
    connections = set()
    for line in journal.read_text().splitlines():
        entry = json.loads(line)
        if str(entry["conn"]).startswith("rest:"):
            books.setdefault(entry["conn"].removeprefix("rest:"), []).append(json.loads(entry["data"])["sequence"])
            continue
        connections.add(entry["conn"])
        message = json.loads(entry["data"])
        # Only the flow's objects carry sequences (a batch or a control frame may be a JSON list).
        if type(message) is dict and message.get("type") in FLOW_TYPES:
            seen.setdefault(message["product_id"], set()).add(message["sequence"])
    missing = covered = 0
    for product, sequences in seen.items():
        ordered = sorted(sequences)
        for before, after in itertools.pairwise(ordered):
            if after - before > 1:
                missing += after - before - 1
                if any(book >= after - 1 for book in books.get(product, [])):
                    covered += after - before - 1
    return len(connections), missing, covered, sum(len(b) for b in books.values())


def disconnects(scale: Scale, workdir: Path) -> Outcome:
    """The exchange drops the connection N times: N reconnects, a book resync after each, 0 duplicates."""
    from tests.kafka_reader import TopicReader
    from tests.test_e2e_coinbase import sim_post

    outcome = Outcome("exchange drops the connection")
    pipeline = LocalPipeline(SYMBOLS, rate=scale.rate, seed=29, workers=1, workdir=workdir)
    with pipeline:
        reader = TopicReader(pipeline.broker.bootstrap_servers, pipeline.registry_url, OUTPUT_TOPICS)
        try:
            reader.read_until(lambda _: False, scale.between_faults_s)
            for _ in range(scale.disconnects):
                connections, _, _, books = journal_gaps(pipeline.journal)
                started = time.monotonic()
                dropped = sim_post(pipeline, "/_sim/disconnect", {"missed": MISSED_PER_DISCONNECT})["disconnected"]
                outcome.faults_injected += 1
                outcome.details.setdefault("connections_dropped", 0)
                outcome.details["connections_dropped"] += dropped

                # Recovered: reconnected, and every symbol's book fetched again (a drop that came before the
                # previous resync's snapshots would leave one snapshot standing for two drops).
                def resynced(_: object, n: int = connections, served: int = books) -> bool:
                    now = journal_gaps(pipeline.journal)
                    return now[0] > n and now[3] >= served + len(SYMBOLS)

                reader.read_until(resynced, RECOVER_TIMEOUT_S)
                if resynced(None):
                    outcome.recover_s.append(round(time.monotonic() - started, 2))
                    outcome.recoveries += 1
                reader.read_until(lambda _: False, scale.between_faults_s / 2)
            found = finish(pipeline, reader)
        finally:
            reader.close()
        for name in pipeline.processes:
            pipeline.check_alive(name)
        log = pipeline.log_path("connector").read_text()
    fill(outcome, found)
    connections, missing, covered, books = journal_gaps(pipeline.journal)
    outcome.faults_detected = connections - 1  # each a reconnect after a drop the connector noticed
    outcome.details["book_snapshots_after_reconnects"] = books - len(SYMBOLS)
    outcome.details["connector_log_reconnects"] = log.count("connected to ")
    outcome.details["messages_sent_to_nobody"] = missing
    outcome.details["of_which_inside_a_resynced_gap"] = covered
    # What the pipeline lost of what reached it is ``lost``; what the exchange sent while nobody
    # listened is lost upstream, and must lie inside a gap a fresh snapshot closed.
    outcome.invariants["everything received delivered"] = outcome.lost == 0
    outcome.lost += missing
    outcome.lost_inside_gaps = covered
    outcome.invariants["a reconnect after every drop"] = outcome.recoveries == outcome.faults_injected
    outcome.invariants["every message missed lies inside a resynced gap"] = covered == missing
    outcome.invariants["a book resync (REST snapshot) per symbol after every drop"] = (
        books - len(SYMBOLS) >= outcome.faults_injected * len(SYMBOLS))
    outcome.invariants["0 duplicates"] = outcome.duplicated == 0
    return outcome


# ------------------------------------------------------------------ malformed input

# Topics whose records depend on no state a mutated frame could move (a book can: an accepted,
# mutated book update changes the book every later record is made from).
STATELESS_TOPICS = {"trades", "trades_l3", "ticker", "candle", "funding_rate", "open_interest"}


def recordings() -> list[tuple[str, list[str], Path]]:
    """(source, symbols, folder) of every recording an exchange test replays."""
    import importlib

    from bench.pure import EXCHANGE_TESTS, traffic

    found = []
    for path in sorted(EXCHANGE_TESTS.glob("test_*.py")):
        module = importlib.import_module(f"tests.exchanges.{path.stem}")
        if hasattr(module, "RECORDING") and (folder := traffic(module)) is not None and folder.exists():
            found.append((module.SOURCE, list(module.SYMBOLS), folder))
    return found


class Feeder:
    """One processor over a recording's frames, classifying what each frame became."""

    def __init__(self, source: str):
        from bench.pure import encoders
        from l3_atom.sources import standardiser_class
        from l3_atom.stream_processing.raw_messages import RawMessageProcessor

        self.processor = RawMessageProcessor(source, standardiser_class(source)(), encoders(), 1_000_000)
        self.outcomes: Counter[str] = Counter()
        self.crashes: list[str] = []

    def feed(self, key: str, frame: bytes, symbol: str | None, what: str = "") -> list | None:
        """The encoded records, or None when an exception escaped (a crash: counted, named)."""
        from bench.pure import ATOM
        from l3_atom.topics import ATOM_TIMESTAMP_HEADER, DEAD_LETTER, SYMBOL_HEADER

        headers = [(ATOM_TIMESTAMP_HEADER, str(ATOM).encode())]
        if symbol:
            headers.append((SYMBOL_HEADER, symbol.encode()))
        counts = self.processor.standardiser.skipped
        skipped, deferred = sum(counts.values()), counts.deferred
        try:
            out = self.processor.process(frame, headers, "raw", 0, 0, key)
        except Exception as exc:  # noqa: BLE001 - what the scenario looks for
            self.outcomes["crash"] += 1
            self.crashes.append(f"{what}: {exc!r}"[:300])
            return None
        if out and out[0].topic == DEAD_LETTER:
            self.outcomes["dead letter"] += 1
        elif out:
            self.outcomes["records"] += 1
        elif sum(counts.values()) > skipped:
            self.outcomes["counted skip"] += 1
        elif counts.deferred > deferred:
            self.outcomes["records held back (published later)"] += 1
        else:
            self.outcomes["nothing, uncounted"] += 1
        return out

    def nothing_in_it(self) -> int:
        """Frames a handler read and found nothing in (an emptied change list): the skips under that reason."""
        suffix = NOTHING_IN_IT.format("")
        return sum(n for reason, n in self.processor.standardiser.skipped.items() if reason.endswith(suffix))


def malformed_input(scale: Scale, workdir: Path) -> Outcome:
    """Mutated copies of recorded frames, interleaved with the originals, through keying and processing.

    The originals alone are the reference: with the mutations in between, each original must
    give the same records on the topics no state ties to earlier frames.
    """
    import asyncio
    import random

    from bench.mutations import mutate
    from bench.pure import capture_feed

    outcome = Outcome("malformed input (mutated recordings)")
    rng = random.Random(19)
    per_source = {}
    key_crashes: list[str] = []
    for source, symbols, folder in recordings():
        feed, sink = asyncio.run(capture_feed(source, symbols, folder))
        frames = sink.frames
        reference = Feeder(source)
        expected = [reference.feed(key, frame, symbol) for key, frame, symbol in frames]
        inserts: dict[int, int] = Counter(rng.randrange(len(frames)) for _ in range(scale.malformed_frames))
        mutated, original = Feeder(source), Feeder(source)
        changed: Counter[str] = Counter()
        for index, (key, frame, symbol) in enumerate(frames):
            for _ in range(inserts.get(index, 0)):
                bad, what = mutate(frame, rng)
                try:
                    bad_key = feed.key_of(bad, sink.connections[index])
                except Exception as exc:  # noqa: BLE001 - the connector's keying must never raise
                    key_crashes.append(f"{source} {what}: {exc!r}"[:300])
                    continue
                mutated.feed(bad_key, bad, symbol, f"{source} {what}")
            out = original.feed(key, frame, symbol, f"{source} original")
            if out != expected[index]:
                for topic in {o.topic for o in (out or []) + (expected[index] or [])}:
                    changed[topic if topic in STATELESS_TOPICS else "book (stateful)"] += 1
        per_source[source] = {"frames": len(frames), "mutated": scale.malformed_frames,
                              "mutated_outcomes": dict(mutated.outcomes), "reference_outcomes": dict(reference.outcomes),
                              "originals_changed": dict(changed), "crashes": mutated.crashes[:5],
                              "skips_nothing_in_it": mutated.nothing_in_it()}
        outcome.faults_injected += scale.malformed_frames
        outcome.faults_detected += mutated.outcomes["dead letter"] + mutated.outcomes["counted skip"]
        outcome.expected += sum(len(e or ()) for e in expected)
        outcome.delivered += sum(len(e or ()) for e in expected) - sum(changed.values())
        outcome.lost += sum(n for topic, n in changed.items() if topic in STATELESS_TOPICS)
        outcome.details.setdefault("crashes", []).extend(mutated.crashes[:5] + original.crashes[:5])
        outcome.details.setdefault("uncounted", 0)
        outcome.details["uncounted"] += mutated.outcomes["nothing, uncounted"]
    outcome.details["per_source"] = per_source
    outcome.details["key_crashes"] = key_crashes[:10]
    crashes = sum(s["mutated_outcomes"].get("crash", 0) for s in per_source.values()) + len(key_crashes)
    outcome.details["crash_count"] = crashes
    outcome.details["skips_nothing_in_it"] = sum(s["skips_nothing_in_it"] for s in per_source.values())
    outcome.invariants["every mutated frame is records, a dead letter or a counted skip"] = (
        outcome.details["uncounted"] == 0)
    outcome.invariants["no exception escapes (0 crashes)"] = crashes == 0
    outcome.invariants["originals around the mutations give the same stateless records"] = outcome.lost == 0
    return outcome


# ------------------------------------------------------------------ the run

SCENARIOS: dict[str, Callable[[Scale, Path], Outcome]] = {
    "worker_kill": worker_kills,
    "malformed": malformed_input,
    "broker_stall": broker_stalls,
    "disconnect": disconnects,
    # Scenarios in modules of their own, which import this one: looked up when they run.
    "connector_kill": lambda scale, workdir: import_module("bench.fault_connector_kill").connector_kills(scale, workdir),
    "slow_client": lambda scale, workdir: import_module("bench.fault_slow_readers").slow_client(scale, workdir),
    "lagging_processor": lambda scale, workdir: import_module("bench.fault_slow_readers").lagging_processor(
        scale, workdir),
    "full_disk": full_disk,
    "broker_restart": broker_restarts,
}

COLUMNS = ("scenario", "injected", "detected", "recovered", "expected", "delivered", "lost", "in gaps",
           "dup", "recover s (max)", "invariants")


def row(outcome: Outcome) -> list[str]:
    worst = f"{max(outcome.recover_s):.1f}" if outcome.recover_s else "-"
    return [outcome.scenario, str(outcome.faults_injected), str(outcome.faults_detected), str(outcome.recoveries),
            str(outcome.expected), str(outcome.delivered), str(outcome.lost), str(outcome.lost_inside_gaps),
            str(outcome.duplicated), worst, "hold" if outcome.held else "BROKEN"]


def table(outcomes: list[Outcome]) -> str:
    rows = [list(COLUMNS)] + [row(o) for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    for outcome in outcomes:
        lines += [f"  {outcome.scenario}: {name}: {'yes' if ok else 'NO'}" for name, ok in outcome.invariants.items()]
        if "error" in outcome.details:
            lines.append(f"  {outcome.scenario}: {outcome.details['error']}")
    return "\n".join(lines)


def run(scale_name: str, names: list[str], out: Path) -> list[Outcome]:
    scale = SCALES[scale_name]
    outcomes = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"l3_atom_faults_{name}_") as workdir:
            started = time.monotonic()
            try:
                outcome = SCENARIOS[name](scale, Path(workdir))
            except Exception as exc:  # noqa: BLE001 - one scenario's failure is its row, the others still run
                outcome = Outcome(name, invariants={"ran to the end": False}, details={"error": repr(exc)[:500]})
            outcome.details["seconds"] = round(time.monotonic() - started, 1)
        print(table([outcome]), flush=True)
        outcomes.append(outcome)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"scale": scale_name, "scale_settings": asdict(scale), "cpus": os.cpu_count(),
                               "scenarios": [asdict(o) | {"held": o.held} for o in outcomes]}, indent=2) + "\n")
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="quick")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    outcomes = run(args.scale, args.only or list(SCENARIOS), args.out)
    print(f"\n{table(outcomes)}\nwritten to {args.out}")
    return 0 if all(o.held for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
