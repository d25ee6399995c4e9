"""``runner.py reprocess`` and ``l3_atom.kafka_records`` on a real local pipeline.

A recording is replayed (replay server) into the unchanged connector, so
``coinbase_raw`` holds real traffic; the live processor standardises it into
the normalised topics.  Reprocessing the raw topic into JSON lines and into
prefixed topics must give exactly what the live processor published (every
record, as a multiset per topic), and must not add a record to the live topics.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from unittest import mock

import orjson
import pytest

from l3_atom import FEED_OF, kafka_records
from l3_atom.config import Settings
from l3_atom.consume import format_json
from l3_atom.infra.local_pipeline import LocalStack
from l3_atom.infra.processes import PROJECT_ROOT, free_port, runner_command
from l3_atom.topic_admin import ensure_topics
from l3_atom.topics import DEAD_LETTER, NORMALISED_TOPICS
from tests.exchanges import test_coinbase as coinbase
from tests.kafka_reader import TopicReader, read_raw
from tests.local.test_local_e2e import read_parquet_tree
from tests.test_replay_e2e import replay_stats, traffic_folder

PREFIX = "re_"
RECORDS_TIMEOUT_S = 120.0
SETTLE_S = 3.0
COMMAND_TIMEOUT_S = 180.0
KAFKA_RECORDS = 20
ALL = 10**9
KAFKA_EXAMPLE = PROJECT_ROOT / "examples" / "kafka_trades.py"
RAW_READ_S = 3.0


def multiset(records: list[tuple[str, str | None, dict]]) -> dict[str, Counter[str]]:
    """Records per topic as exact JSON lines (decimals as strings), counted; computed candles left out."""
    found: dict[str, Counter[str]] = {}
    for topic, key, value in records:
        if value.get("origin") == "computed":
            continue
        found.setdefault(topic, Counter())[format_json(topic, key, value)] += 1
    return found


def differences(got: dict[str, Counter[str]], want: dict[str, Counter[str]]) -> str:
    """Counts per topic and a few records only one side has."""
    lines = []
    for topic in sorted(set(got) | set(want)):
        extra, lacking = got.get(topic, Counter()) - want.get(topic, Counter()), want.get(topic, Counter()) - got.get(
            topic, Counter())
        lines.append(f"{topic}: {sum(got.get(topic, {}).values())} vs {sum(want.get(topic, {}).values())}; "
                     f"only reprocessed {list(extra)[:2]}; only live {list(lacking)[:2]}")
    return "\n".join(lines)


def run(stack: LocalStack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        runner_command(*args), env={**os.environ, **stack.env()}, capture_output=True, text=True,
        timeout=COMMAND_TIMEOUT_S, check=False,
    )


@pytest.mark.timeout(600)
def test_reprocessed_records_equal_what_the_live_processor_published(tmp_path: Path) -> None:
    folder = traffic_folder(coinbase)
    expected = {topic: n for topic, n in coinbase.expected_counts(folder).items() if n}
    with LocalStack(["coinbase"], workdir=tmp_path) as stack:
        with mock.patch.dict(os.environ, stack.env()):
            ensure_topics(Settings().kafka, [*NORMALISED_TOPICS, DEAD_LETTER])
        live = TopicReader(stack.broker.bootstrap_servers, stack.registry_url, [*NORMALISED_TOPICS, DEAD_LETTER])
        try:
            port = free_port()
            stack.start_runner("replay", "replay", "--recording", str(folder), "--port", str(port))
            stack.wait_port("replay", port)
            args = ["connector", "--source", "coinbase", "--ws-url", f"ws://127.0.0.1:{port}/",
                    "--rest-url", f"http://127.0.0.1:{port}"]
            for symbol in coinbase.SYMBOLS:
                args += ["--symbol", symbol]
            stack.start_runner("connector", *args)

            def complete(records: list) -> bool:
                found = Counter(r.topic for r in records if r.value.get("origin") != "computed")
                return all(found[topic] >= n for topic, n in expected.items())

            live.read_until(complete, RECORDS_TIMEOUT_S)
            live.read_until(lambda _: False, SETTLE_S)
            stats = replay_stats(port)
            assert stats["frames_sent"] == stats["frames_recorded"], stats
            published = multiset([(r.topic, r.key, r.value) for r in live.records])
            assert {t: sum(c.values()) for t, c in published.items()} == expected, "the live run is incomplete"

            # The Python helper for the distributed pipeline: typed records through the registry, in a group.
            started = time.monotonic()
            typed = []
            for record in kafka_records(["trades_l3"], stack.broker.bootstrap_servers, stack.registry_url,
                                        group_id="test-kafka-records", from_beginning=True):
                typed.append(record)
                if len(typed) == KAFKA_RECORDS:
                    break
            print(f"\nkafka_records: {KAFKA_RECORDS} trades in {time.monotonic() - started:.1f} s")
            assert all(FEED_OF[type(r)] == "trades_l3" for r in typed)
            live_trades = published["trades_l3"]
            assert all(live_trades[format_json("trades_l3", f"coinbase_{r.symbol}", r.asdict())] for r in typed)

            example = subprocess.run(
                [sys.executable, str(KAFKA_EXAMPLE), "--bootstrap", stack.broker.bootstrap_servers, "--registry",
                 stack.registry_url, "--from-beginning", "--limit", str(KAFKA_RECORDS)],
                env={**os.environ, **stack.env(), "PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True, text=True,
                timeout=COMMAND_TIMEOUT_S, check=False,
            )
            assert example.returncode == 0, example.stderr[-2000:]
            assert len(example.stdout.splitlines()) == KAFKA_RECORDS, example.stdout
            assert all(line.startswith("trades_l3 ") for line in example.stdout.splitlines())

            jsonl = tmp_path / "reprocessed.jsonl"
            done = run(stack, "reprocess", "--source", "coinbase", "--jsonl", str(jsonl), "--progress")
            assert done.returncode == 0, done.stderr[-3000:]
            reprocessed: dict[str, Counter[str]] = {}
            for line in jsonl.read_text().splitlines():
                reprocessed.setdefault(orjson.loads(line)["topic"], Counter())[line] += 1
            assert reprocessed == published, differences(reprocessed, published)
            assert "frames" in done.stderr and "ETA" in done.stderr, done.stderr[-2000:]
            print("reprocess --jsonl:", {t: sum(c.values()) for t, c in reprocessed.items()})
            print(done.stderr.strip().splitlines()[-3:])

            # Into local mode's Parquet files: the same records, row for row.
            done = run(stack, "reprocess", "--source", "coinbase", "--parquet", str(tmp_path / "parquet"))
            assert done.returncode == 0, done.stderr[-3000:]
            rows = multiset([(r.topic, r.key, r.value) for r in read_parquet_tree(tmp_path / "parquet")])
            assert rows == published, differences(rows, published)

            done = run(stack, "reprocess", "--source", "coinbase", "--topic-prefix", PREFIX)
            assert done.returncode == 0, done.stderr[-3000:]
            again = TopicReader(stack.broker.bootstrap_servers, stack.registry_url,
                                [PREFIX + topic for topic in expected])
            try:
                again.read_until(lambda records: len(records) >= sum(expected.values()), RECORDS_TIMEOUT_S)
                again.read_until(lambda _: False, SETTLE_S)
                prefixed = multiset([(r.topic.removeprefix(PREFIX), r.key, r.value) for r in again.records])
            finally:
                again.close()
            assert prefixed == published
            # Nothing new in the live topics.
            live.read_until(lambda _: False, SETTLE_S)
            assert multiset([(r.topic, r.key, r.value) for r in live.records]) == published

            # A range: exactly the raw frames stamped at or after --from (the broker's own timestamps).
            stamps = sorted(m.timestamp()[1] for m in read_raw(stack.broker.bootstrap_servers, "coinbase_raw", ALL,
                                                               RAW_READ_S))
            middle = stamps[len(stamps) // 2]
            part = run(stack, "reprocess", "--source", "coinbase", "--from", str(middle), "--jsonl",
                       str(tmp_path / "part.jsonl"))
            in_range = sum(stamp >= middle for stamp in stamps)
            assert part.returncode == 0 and f"frames {in_range};" in part.stderr, (in_range, part.stderr[-2000:])
            # The level2 snapshots came first: books updated after the middle never got one in this range.
            assert "books that never got a snapshot in the range: coinbase_" in part.stderr, part.stderr[-2000:]
            print(f"reprocess --from {middle}: {in_range} of {len(stamps)} raw frames;", part.stderr.splitlines()[-1])

            before = run(stack, "reprocess", "--source", "coinbase", "--to", "1000", "--jsonl", str(tmp_path / "x"))
            assert before.returncode == 0 and "frames 0; records: none" in before.stderr, before.stderr
            missing = run(stack, "reprocess", "--source", "binance", "--jsonl", str(tmp_path / "y"))
            assert missing.returncode == 2
            assert missing.stderr.strip() == (
                "error: raw topic binance_raw does not exist on the broker (has its connector run?)"
            )
        finally:
            live.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "yesterday"], "error: --from 'yesterday' is not a time: use ISO-8601"),
        (["--to", "12:00"], "error: --to '12:00' is not a time: use ISO-8601"),
        (["--from", "2024-05-02", "--to", "2024-05-01T00:00:00Z"], "error: --from 2024-05-02 is not before --to"),
        (["--topic-prefix", " "], "error: --topic-prefix must not be empty"),
    ],
)
def test_bad_input_is_one_line_naming_the_option(args: list[str], message: str, tmp_path: Path) -> None:
    extra = [] if "--topic-prefix" in args else ["--jsonl", str(tmp_path / "out.jsonl")]
    done = subprocess.run(runner_command("reprocess", "--source", "coinbase", *args, *extra),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
