"""Connector SIGKILL and restart, a ``bench.faults`` scenario: only the downtime is missing, and it is reported.

The connector is killed (SIGKILL on its process group: no goodbye, no flush), left dead a
moment, and a new one started, ``Scale.worker_kills`` times.  A restarted connector reads
its raw topic's tail to learn when it last archived each symbol's trades, publishes that
outage on ``coverage`` (``stream_up``, reason ``connector restarted``) and backfills the
trades of it from the venue's REST history (Coinbase's ``GET /products/{id}/trades``,
https://docs.cdp.coinbase.com/exchange/reference/exchangerestapi_getproducttrades).

Counted against the simulator's journal (every frame it sent) and an independent read of
the raw topic (every frame archived), without the pipeline's code:
- trades: every trade id the simulator made (a product's ids count up one by one) is in
  ``trades_l3`` exactly once, streamed or backfilled: 0 lost;
- book events and tickers the dead connector received but never archived, or that the
  simulator sent to nobody, are lost; each must lie inside a reported outage, the sequences
  between the last record archived before the outage's start and the book snapshot fetched
  after its end (a ticker shares its match's sequence and comes right after it, on a key and
  partition of its own: the ticker of the last match archived may be lost, inside the outage);
- each outage's start is at or before its kill and its end after its restart.

Each kill comes once the connector has archived its books: one killed before it archived
anything leaves no tail to resume from, and that outage goes unreported.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from bench.faults import (
    OUTPUT_TOPICS,
    POLL_S,
    RAW_TOPIC,
    READ_TIMEOUT_S,
    RECOVER_TIMEOUT_S,
    SETTLE_S,
    SYMBOLS,
    Outcome,
    Scale,
    stop_flow,
)
from l3_atom.data_source import RESTART_REASON
from l3_atom.infra.local_pipeline import LocalPipeline, connector_args

SEED = 31
# The connector stays dead this long before its successor starts.
DEAD_S = 2.0
# The last frame archived before a kill arrived at most this long before it (the flow sends every few ms).
LAST_FRAME_BEFORE_KILL_MS = 5000
# Reading the raw topic ends when nothing new came for this long.
RAW_QUIET_S = 3.0
RAW_PAGE = 1000
FLOW_TYPES = {"received", "open", "done", "match", "change", "activate", "ticker"}
BOOK_KINDS = {"open", "change", "done"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def resynced(records: list, since_ms: int) -> dict[str, int]:
    """Per symbol, when (ms) the first book snapshot archived at or after ``since_ms`` was received: streaming again."""
    first: dict[str, int] = {}
    for r in records:
        if r.topic == "lob_l3" and r.value["is_snapshot"] and r.value["atom_timestamp"] // 1000 >= since_ms:
            first.setdefault(r.value["symbol"], r.value["atom_timestamp"] // 1000)
    return first


def raw_messages(bootstrap: str, busy: Iterable[int] = ()) -> Iterator[Message]:
    """Every message of the raw topic, read by assignment from the beginning until it is quiet.

    While the flow runs it is never quiet: reading also stops once each partition of ``busy``
    has yielded a message appended after the reading began (the end as it was then, or later).
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "faults-raw", "enable.auto.commit": False})
    began_ms = now_ms()
    waiting = set(busy)
    try:
        partitions = consumer.list_topics(RAW_TOPIC, timeout=10).topics[RAW_TOPIC].partitions
        consumer.assign([TopicPartition(RAW_TOPIC, p, OFFSET_BEGINNING) for p in partitions])
        quiet_until = time.monotonic() + RAW_QUIET_S
        while time.monotonic() < quiet_until and (waiting or not busy):
            messages = [m for m in consumer.consume(RAW_PAGE, POLL_S) if not m.error()]
            if messages:
                quiet_until = time.monotonic() + RAW_QUIET_S
            waiting -= {m.partition() for m in messages if m.timestamp()[1] >= began_ms}
            yield from messages
    finally:
        consumer.close()


def archived(bootstrap: str) -> set[tuple[str, int]]:
    """(product, sequence) of every flow message in the raw topic."""
    found: set[tuple[str, int]] = set()
    for message in raw_messages(bootstrap):
        try:
            frame = orjson.loads(message.value())
        except orjson.JSONDecodeError:
            continue
        if type(frame) is dict and frame.get("type") in FLOW_TYPES:
            found.add((frame["product_id"], frame["sequence"]))
    return found


def journal_flow(journal: Path) -> tuple[dict[str, set[int]], dict[str, list[int]]]:
    """Per product: the flow sequences the simulator sent to anyone, and the trade ids it sent."""
    sequences: dict[str, set[int]] = defaultdict(set)
    trades: dict[str, list[int]] = defaultdict(list)
    for line in journal.read_bytes().splitlines():
        entry = orjson.loads(line)
        if ":" in str(entry["conn"]):
            continue  # a REST answer (book or trades page), not the flow
        message = orjson.loads(entry["data"])
        if type(message) is dict and message.get("type") in FLOW_TYPES:
            sequences[message["product_id"]].add(message["sequence"])
            if message["type"] == "match":
                trades[message["product_id"]].append(message["trade_id"])
    return sequences, trades


def outage_windows(records: list, ups: list[dict]) -> dict[str, list[tuple[int, int]]]:
    """Per symbol, each reported outage as sequences: (last archived before its start, snapshot after its end]."""
    streamed: dict[str, list[tuple[int, int]]] = defaultdict(list)  # symbol -> (atom ms, sequence)
    snapshots: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in records:
        v = r.value
        if r.topic in ("lob_l3", "ticker", "trades_l3") and v.get("sequence") is not None:
            into = snapshots if v.get("is_snapshot") else streamed
            into[v["symbol"]].append((v["atom_timestamp"] // 1000, v["sequence"]))
    windows: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for up in ups:
        symbol = up["symbol"]
        before = max((seq for ms, seq in streamed[symbol] if ms <= up["start"]), default=-1)
        after = min((seq for ms, seq in snapshots[symbol] if ms >= up["end"]), default=None)
        if after is not None:
            windows[symbol].append((before, after))
    return windows


def account(journal: Path, records: list, raw: set[tuple[str, int]], ups: list[dict]) -> dict:
    """Expected against delivered, per kind; each loss placed inside a reported outage or not."""
    from tests.test_e2e_coinbase import expected_records, journal_snapshots, published

    sent = expected_records(journal)
    snapshot_orders, last_snapshot = journal_snapshots(journal)
    found = published(records)
    sequences, trade_ids = journal_flow(journal)
    windows = outage_windows(records, ups)

    def in_window(symbol: str, sequence: int, after_its_match: bool = False) -> bool:
        """Inside an outage's sequences; a ticker follows the match it shares its sequence with, on its own key."""
        return any(low < sequence <= high or (after_its_match and sequence == low) for low, high in windows[symbol])

    lost: dict[str, list] = {}
    inside: Counter[str] = Counter()
    duplicated: Counter[str] = Counter()
    delivered = held = 0
    for kind in ("lob_l3", "ticker"):
        lost[kind] = []
        for record, n in sent[kind].items():
            symbol, sequence = record[0], record[-1]
            if record in found[kind]:
                delivered += 1
                duplicated[kind] += max(0, found[kind][record] - n)
            elif (symbol.replace(".", "-"), sequence) in raw and kind == "lob_l3" and sequence <= last_snapshot.get(
                    symbol, -1):
                held += 1  # archived, then skipped: a snapshot archived before it already held it
            else:
                lost[kind].append(record)
                inside[kind] += in_window(symbol, sequence, kind == "ticker")
    # Flow messages the simulator made for a connection already gone: never sent, a hole in its sequences.
    lost["sent to nobody"] = []
    for product, seen in sequences.items():
        symbol = product.replace("-", ".")
        holes = sorted(set(range(min(seen), max(seen) + 1)) - seen)
        lost["sent to nobody"] += [(symbol, s) for s in holes]
        inside["sent to nobody"] += sum(in_window(symbol, s) for s in holes)
    lost["lob_l3_snapshot"] = [o for o in snapshot_orders if o not in found["lob_l3_snapshot"]]
    delivered += sum(1 for o in snapshot_orders if o in found["lob_l3_snapshot"])
    duplicated["lob_l3_snapshot"] = sum(max(0, n - snapshot_orders[o]) for o, n in found["lob_l3_snapshot"].items())
    # A product's trade ids count up one by one: every id between the first and the last sent was made.
    got = Counter({(s, int(t)): n for (s, t, *_), n in found["trades_l3"].items()})
    got.update({(s, int(t)): n for (s, t), n in found["trades_l3_backfill"].items()})
    made = {(p.replace("-", "."), t) for p, ids in trade_ids.items() for t in range(min(ids), max(ids) + 1)}
    lost["trades"] = sorted(made - set(got))
    delivered += len(made & set(got))
    duplicated["trades"] = sum(n - 1 for n in got.values() if n > 1)
    backfilled = sum(1 for key in found["trades_l3_backfill"] if (key[0], int(key[1])) in made)
    return {"lost": lost, "inside": inside, "duplicated": duplicated, "delivered": delivered, "held": held,
            "trades_made": len(made), "trades_backfilled": backfilled, "windows": dict(windows),
            "unexpected_trades": len(set(got) - made)}


def connector_kills(scale: Scale, workdir: Path) -> Outcome:
    """SIGKILL the connector, start a new one after ``DEAD_S``, ``scale.worker_kills`` times; count what landed."""
    from tests.kafka_reader import TopicReader
    from tests.test_e2e_coinbase import expected_records, must_publish

    outcome = Outcome("connector SIGKILL and restart")
    pipeline = LocalPipeline(SYMBOLS, rate=scale.rate, seed=SEED, workers=1, workdir=workdir)
    endpoints = ["--ws-url", pipeline.simulator_ws_url, "--rest-url", pipeline.simulator_rest_url]
    faults: list[tuple[int, int]] = []  # (kill ms, restart ms)
    with pipeline:
        reader = TopicReader(pipeline.broker.bootstrap_servers, pipeline.registry_url, [*OUTPUT_TOPICS, "coverage"])
        try:
            # A connector killed before it archived anything leaves no tail to resume from (nothing reported):
            # the first kill comes once its books are in.
            reader.read_until(lambda records: len(resynced(records, 0)) == len(SYMBOLS), RECOVER_TIMEOUT_S)
            reader.read_until(lambda _: False, scale.between_faults_s)
            name = "connector"
            for kill in range(scale.worker_kills):
                victim = pipeline.processes.pop(name)
                killed = now_ms()
                os.killpg(victim.pid, signal.SIGKILL)
                victim.wait(10)
                outcome.faults_injected += 1
                reader.read_until(lambda _: False, DEAD_S)
                name = f"connector{kill + 1}"
                restarted = now_ms()
                pipeline.start_runner(name, *connector_args(pipeline.symbols), *endpoints,
                                      *pipeline.metrics_args(name))
                faults.append((killed, restarted))

                def back(records: list, since: int = restarted) -> bool:
                    return len(resynced(records, since)) == len(SYMBOLS)

                reader.read_until(back, RECOVER_TIMEOUT_S)
                if back(reader.records):
                    outcome.recoveries += 1
                    outcome.recover_s.append(round((max(resynced(reader.records, restarted).values()) - restarted)
                                                   / 1000, 2))
                reader.read_until(lambda _: False, scale.between_faults_s)
            stop_flow(pipeline)
            trade_ids = journal_flow(pipeline.journal)[1]
            made = sum(max(ids) - min(ids) + 1 for ids in trade_ids.values())
            least = must_publish(expected_records(pipeline.journal), pipeline.journal)

            def complete(records: list) -> bool:
                trades = {(r.value["symbol"], r.value["trade_id"]) for r in records if r.topic == "trades_l3"}
                filled = sum(r.value["kind"] == "trades_backfilled" for r in records if r.topic == "coverage")
                return len(trades) >= made and filled >= len(faults) * len(SYMBOLS) and len(records) >= least

            reader.read_until(complete, READ_TIMEOUT_S)
            reader.read_until(lambda _: False, SETTLE_S)
            raw = archived(pipeline.broker.bootstrap_servers)
        finally:
            reader.close()
        for name in pipeline.processes:
            pipeline.check_alive(name)
        restart_logs = [pipeline.log_path(f"connector{n + 1}").read_text() for n in range(len(faults))]
    coverage = [r.value for r in reader.by_topic("coverage")]
    ups = [c for c in coverage if c["kind"] == "stream_up" and c["reason"] == RESTART_REASON]
    found = account(pipeline.journal, reader.records, raw, ups)
    fill_outcome(outcome, found)
    reported = reported_outages(faults, ups)
    outcome.faults_detected = sum(len(r) == len(SYMBOLS) for r in reported)
    filled = [(c["symbol"], c["start"], c["end"]) for c in coverage if c["kind"] == "trades_backfilled"]
    outcome.details.update({
        "kills_and_restarts_ms": faults,
        "outages_reported": [{s: [u["start"], u["end"]] for s, u in r.items()} for r in reported],
        "trades_backfilled_intervals": filled,
        "restart_logs_resuming": sum("resuming" in log for log in restart_logs),
        "trades_unrecoverable": sum(c["kind"] == "trades_unrecoverable" for c in coverage),
    })
    outcome.invariants["every restart reports its downtime (start <= kill, end >= restart), per symbol"] = (
        outcome.faults_detected == outcome.faults_injected)
    outcome.invariants["every outage's trades backfilled (a trades_backfilled per outage)"] = all(
        (u["symbol"], u["start"], u["end"]) in filled for u in ups)
    outcome.invariants["0 trades lost (streamed or backfilled)"] = not found["lost"]["trades"]
    outcome.invariants["every loss inside a reported outage"] = outcome.lost == outcome.lost_inside_gaps
    outcome.invariants["0 duplicates"] = outcome.duplicated == 0
    outcome.invariants["every restart streams again (a fresh book snapshot per symbol)"] = (
        outcome.recoveries == outcome.faults_injected)
    return outcome


def reported_outages(faults: list[tuple[int, int]], ups: list[dict]) -> list[dict[str, dict]]:
    """Per fault, per symbol, the restart outage that covers it: starts before the kill, ends after the restart."""
    return [{u["symbol"]: u for u in ups
             if killed - LAST_FRAME_BEFORE_KILL_MS <= u["start"] <= killed and u["end"] >= restarted}
            for killed, restarted in faults]


def fill_outcome(outcome: Outcome, found: dict) -> None:
    lost = found["lost"]
    outcome.lost = sum(len(v) for v in lost.values())
    outcome.lost_inside_gaps = sum(found["inside"].values())
    outcome.delivered = found["delivered"]
    outcome.expected = found["delivered"] + outcome.lost
    outcome.duplicated = sum(found["duplicated"].values())
    outcome.details.update({
        "lost_by_kind": {k: len(v) for k, v in lost.items()},
        "lost_inside_outages_by_kind": dict(found["inside"]),
        "lost_examples": {k: [str(e) for e in v[:3]] for k, v in lost.items() if v},
        "duplicated_by_kind": dict(found["duplicated"]),
        "book_events_held_by_a_snapshot": found["held"],
        "trades_made": found["trades_made"],
        "trades_backfilled": found["trades_backfilled"],
        "outage_sequence_windows": {s: [list(w) for w in ws] for s, ws in found["windows"].items()},
    })
    outcome.invariants["nothing published that was not made"] = found["unexpected_trades"] == 0
