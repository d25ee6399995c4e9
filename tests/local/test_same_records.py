"""Same input, same records: the Coinbase simulator through the distributed pipeline and through ``runner.py local``.

Both runs use the same simulator options (seed, rate, products, message
count) and the same injected bad frames.  The seeded flow is the same; only
times differ (the simulator stamps messages with its clock, the connector
stamps receive times), so each run's ``event_timestamp`` is checked against
its own journal and ``atom_timestamp`` is left out of the comparison.
Everything else must agree field by field: every normalised record, and the
dead letters' stage, error and key.  One thing depends on timing too: the
moment each run's connector fetched its level-3 book snapshots.  So snapshot
records are checked against each run's own journal, and the book events one
run published and the other did not must all lie inside a snapshot of the
run that left them out; and ``prev_sequence`` (the book's previous event,
which after a snapshot is the snapshot) is checked within each run, not
across them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from l3_atom.infra.processes import wait_until
from tests.kafka_reader import Received
from tests.local.helpers import (
    LocalRun,
    from_json_line,
    ms_of_iso,
    published,
    read_avro_tree,
    read_jsonl,
    written,
)
from tests.test_e2e_coinbase import (
    FAULTS,
    FLOW_MESSAGES,
    assert_book_continuity,
    assert_per_symbol_order,
    check_book,
    expected_records,
    inject,
    journal_snapshots,
    must_publish,
    run_pipeline,
    sim_stats,
)
from tests.test_e2e_coinbase import published as by_contract_fields

TOPIC_OF_TYPE = {
    "open": "lob_l3", "change": "lob_l3", "done": "lob_l3", "match": "trades_l3", "last_match": "trades_l3",
    "ticker": "ticker",
}
NORMALISED = ("lob_l3", "trades_l3", "ticker")
LOB_L3 = "lob_l3"
# Topics a book snapshot's timing cannot change.
BOOKLESS = ("trades_l3", "ticker")
FLOW_TIMEOUT_S = 60.0
RECORDS_TIMEOUT_S = 60.0


def journal_times(journal: Path) -> dict[tuple[str, str, int], int]:
    """(topic, symbol, sequence) -> the message's time in ms, for every record-making message sent."""
    times = {}
    for line in journal.read_text().splitlines():
        try:
            message = json.loads(json.loads(line)["data"])
            topic = TOPIC_OF_TYPE[message["type"]]
            numbered = message["product_id"].replace("-", "."), message["sequence"]
            # Injected bad frames copy the last real message's sequence with a later time: the real one comes first.
            times.setdefault((topic, *numbered), ms_of_iso(message["time"]))
            if message["type"] == "match":  # a partial fill is also a lob_l3 change of the maker order
                times.setdefault(("lob_l3", *numbered), ms_of_iso(message["time"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # heartbeats, acks, received, injected bad frames
    return times


def without_times(records: list[Received], journal: Path) -> dict[str, Counter]:
    """Each topic's records with both timestamps taken out, after checking event_timestamp against the journal."""
    times = journal_times(journal)
    found: dict[str, Counter] = {topic: Counter() for topic in NORMALISED}
    for r in records:
        if r.topic == "dead_letter" or r.value.get("is_snapshot"):
            continue
        value = dict(r.value)
        assert value.pop("event_timestamp") == times[(r.topic, value["symbol"], value["sequence"])], r
        value.pop("prev_sequence", None)
        assert value.pop("atom_timestamp") > 0
        found[r.topic][(r.key, tuple(value.items()))] += 1
    return found


def dead_letter_summary(records: list[Received], journal: Path) -> Counter:
    """(stage, error kind, key) of each dead letter, after checking its original bytes were sent (or cut)."""
    sent = [json.loads(line)["data"].encode() for line in journal.read_text().splitlines()]
    summary: Counter = Counter()
    for r in records:
        if r.topic != "dead_letter":
            continue
        value = r.value
        assert any(frame.startswith(value["original"]) and len(frame) == value["original_size"] for frame in sent)
        summary[(value["stage"], value["error"].split(":")[0], value["key"], value["raw_topic"])] += 1
    return summary


def local_records(avro_dir: Path, jsonl: Path) -> list[Received]:
    """The Avro files' records (with their feed from the path), after checking the JSON lines say the same."""
    records = []
    for path, values in read_avro_tree(avro_dir).items():
        topic = path.split("/")[0]
        for index, value in enumerate(values):
            key = value["key"] or value["source"] if topic == "dead_letter" else f"{value['exchange']}_{value['symbol']}"
            records.append(Received(topic, 0, index, key, value))

    def content(received: list[Received]) -> Counter:
        return Counter((r.topic, r.key, tuple(sorted(r.value.items()))) for r in received)

    assert content([from_json_line(line) for line in read_jsonl(jsonl)]) == content(records)
    return records


def run_local(tmp_path: Path, pipeline: Any) -> tuple[list[Received], Path, dict]:
    """The distributed run's simulator options, through ``runner.py local`` into JSON lines and Avro files."""
    journal = tmp_path / "journal.jsonl"
    avro_dir, jsonl = tmp_path / "avro", tmp_path / "records.jsonl"
    with LocalRun(tmp_path) as run:
        products = ",".join(symbol.replace(".", "-") for symbol in pipeline.symbols)
        run.start_simulator(
            "--seed", str(pipeline.seed), "--rate", str(pipeline.rate), "--products", products,
            "--max-messages", str(pipeline.max_messages), "--journal", str(journal),
        )
        args = ["--source", "coinbase"]
        for symbol in pipeline.symbols:
            args += ["--symbol", symbol]
        run.start_local(*args, *run.endpoint_args(), "--jsonl", str(jsonl), "--avro", str(avro_dir))
        wait_until(lambda: sim_stats(run)["messages_generated"] > FLOW_MESSAGES // 3, FLOW_TIMEOUT_S, "flow")
        for kind in FAULTS:
            assert inject(run, kind)["conns"], f"{kind} was sent to the runtime's connector"
        wait_until(lambda: sim_stats(run)["messages_generated"] >= FLOW_MESSAGES, FLOW_TIMEOUT_S, "flow end")
        total = must_publish(expected_records(journal), journal) + len(FAULTS)
        stats = run.wait_for(
            lambda s: published(s) >= total and written(s, "avro") >= total and written(s, "jsonl") >= total,
            RECORDS_TIMEOUT_S, "every record written",
        )
        run.stop("local")
    return local_records(avro_dir, jsonl), journal, stats


@pytest.mark.timeout(300)
def test_local_and_distributed_runtimes_give_the_same_records(tmp_path: Path) -> None:
    for name in ("distributed", "local"):
        (tmp_path / name).mkdir()
    pipeline, reader, _ = run_pipeline(tmp_path / "distributed", workers=1, faults=FAULTS)
    local, local_journal, stats = run_local(tmp_path / "local", pipeline)

    # Each run is complete and exact against what its simulator sent (the e2e test's independent check) ...
    for records, journal in ((reader.records, pipeline.journal), (local, local_journal)):
        found = by_contract_fields(records)
        expected = expected_records(journal)
        assert {t: found[t] for t in BOOKLESS} == {t: expected[t] for t in BOOKLESS}
        check_book(found, expected, journal)
    assert_per_symbol_order([r for r in local if r.topic != "dead_letter"])
    for records in (reader.records, local):
        assert_book_continuity([r for r in records if r.topic == LOB_L3])

    # ... and the two runtimes agree on every field of every record, and on the dead letters.
    distributed_records = without_times(reader.records, pipeline.journal)
    local_records_ = without_times(local, local_journal)
    for topic in BOOKLESS:
        assert local_records_[topic] == distributed_records[topic], f"{topic} differs between the runtimes"
    for mine, theirs, journal in ((local_records_, distributed_records, pipeline.journal),
                                  (distributed_records, local_records_, local_journal)):
        _, last_snapshot = journal_snapshots(journal)
        # Book events only one run published: the other's snapshot held them.
        for key, items in mine[LOB_L3] - theirs[LOB_L3]:
            fields = dict(items)
            assert fields["sequence"] <= last_snapshot[fields["symbol"]], (key, fields)
    assert dead_letter_summary(local, local_journal) == dead_letter_summary(reader.records, pipeline.journal)
    assert sum(dead_letter_summary(local, local_journal).values()) == len(FAULTS)
    counts = {topic: sum(c.values()) for topic, c in local_records_.items()}
    print(f"\nsame records in both runtimes: {counts}, dead letters {len(FAULTS)}; local stats {stats['sources']}")
