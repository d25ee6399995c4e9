"""Every source, end to end on real (or documented) traffic: replay server -> the unchanged connector ->
``<source>_raw`` -> processor -> normalised topics, read by an independent consumer.

Each ``tests/exchanges/test_<source>.py`` names its source, its recording (in
``../shared/recordings``) or hand-written fixture, the symbols to subscribe,
and an independent count of the records its frames must give.  Here every
recorded frame must reach the raw topic, the normalised record counts must
equal that count, and nothing may end in ``dead_letter``.
"""

from __future__ import annotations

import importlib
import json
import os
import urllib.request
from collections import Counter
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest

from l3_atom.config import Settings
from l3_atom.infra.local_pipeline import LocalStack
from l3_atom.infra.processes import free_port, stop_process
from l3_atom.topic_admin import ensure_topics
from l3_atom.topics import DEAD_LETTER, NORMALISED_TOPICS, raw_topic
from tests.conftest import RECORDINGS_ENV, recordings_dir
from tests.kafka_reader import TopicReader, read_raw

EXCHANGE_TESTS = Path(__file__).parent / "exchanges"
REPLAY_TIMEOUT_S = 60.0
RECORDS_TIMEOUT_S = 90.0
SETTLE_S = 2.0


def exchange_modules() -> list[ModuleType]:
    return [
        importlib.import_module(f"tests.exchanges.{path.stem}")
        for path in sorted(EXCHANGE_TESTS.glob("test_*.py"))
    ]


MODULES = [m for m in exchange_modules() if hasattr(m, "SOURCE")]


def traffic_folder(module: ModuleType) -> Path:
    if hasattr(module, "FIXTURE"):
        return Path(module.FIXTURE)
    found = recordings_dir()
    if found is None:
        pytest.skip(f"no recorded traffic for {module.SOURCE}: set {RECORDINGS_ENV} or put it in ../shared/recordings")
    return found / module.RECORDING


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    sources = sorted({m.SOURCE for m in MODULES})
    with LocalStack(sources, workdir=tmp_path_factory.mktemp("replay_e2e")) as running:
        with mock.patch.dict(os.environ, running.env()):
            ensure_topics(Settings().kafka, [*NORMALISED_TOPICS, DEAD_LETTER])
        reader = TopicReader(running.broker.bootstrap_servers, running.registry_url, [*NORMALISED_TOPICS, DEAD_LETTER])
        running.reader = reader
        try:
            yield running
        finally:
            reader.close()


# Read every raw message there is: as many as arrive within RAW_READ_S.
ALL = 10**9
RAW_READ_S = 1.0


def replay_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_replay/stats", timeout=5) as response:
        return json.loads(response.read())


def published(reader: TopicReader, source: str) -> Counter[str]:
    """Records of ``source`` per topic; candles the processor computes from trades are tested elsewhere."""
    return Counter(
        r.topic
        for r in reader.records
        if r.value.get("exchange", r.value.get("source")) == source and r.value.get("origin") != "computed"
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("module", MODULES, ids=[m.SOURCE for m in MODULES])
def test_replayed_traffic_flows_through_the_pipeline(stack: LocalStack, module: ModuleType) -> None:
    source = module.SOURCE
    folder = traffic_folder(module)
    expected = {topic: n for topic, n in module.expected_counts(folder).items() if n}
    port = free_port()
    stack.start_runner(f"replay_{source}", "replay", "--recording", str(folder), "--port", str(port))
    stack.wait_port(f"replay_{source}", port)
    args = ["connector", "--source", source, "--ws-url", f"ws://127.0.0.1:{port}/",
            "--rest-url", f"http://127.0.0.1:{port}"]
    for symbol in module.SYMBOLS:
        args += ["--symbol", symbol]
    connector = stack.start_runner(f"connector_{source}", *args)
    try:
        stats: dict = {}

        def replayed(_: object) -> bool:
            nonlocal stats
            stack.check_alive(f"connector_{source}")
            stats = replay_stats(port)
            return stats["frames_sent"] >= stats["frames_recorded"]

        stack.reader.read_until(replayed, REPLAY_TIMEOUT_S)
        assert stats["frames_sent"] == stats["frames_recorded"], stats
        # A connector may open more connections than the recording had (an exchange that split its routes
        # since): the extra ones are refused by the replay server, the recorded ones all served.
        assert stats["connections_served"] >= stats["connections_recorded"], stats

        # REST bodies the connector polls (book snapshots) are archived beside the websocket frames.
        expected_raw = stats["frames_recorded"] + getattr(module, "REST_FRAMES", 0)
        raw = read_raw(stack.broker.bootstrap_servers, raw_topic(source), expected_raw, REPLAY_TIMEOUT_S)
        websocket_frames = [m for m in raw if dict(m.headers())["connection_id"] != b"rest"]
        assert len(websocket_frames) == stats["frames_recorded"], "every recorded frame is archived"

        def raw_counts() -> dict[str, int]:
            """Book snapshots: how many (resyncs fetch more) and where they land among the frames is timing;
            the source's own independent count follows the raw topic's actual order, read again each time."""
            raw_now = read_raw(stack.broker.bootstrap_servers, raw_topic(source), ALL, RAW_READ_S)
            return {topic: n for topic, n in module.count_raw(raw_now).items() if n and topic != "book_resync"}

        def complete(_: object) -> bool:
            found = published(stack.reader, source)
            if hasattr(module, "count_raw"):
                expected.clear()
                expected.update(raw_counts())
                return {t: n for t, n in found.items() if t != DEAD_LETTER} == expected or found[DEAD_LETTER] > 0
            return all(found[topic] >= n for topic, n in expected.items()) or found[DEAD_LETTER] > 0

        stack.reader.read_until(complete, RECORDS_TIMEOUT_S)
        stack.reader.read_until(lambda _: False, SETTLE_S)
        if hasattr(module, "count_raw"):
            expected = raw_counts()
        found = published(stack.reader, source)
        dead = [r.value["error"] for r in stack.reader.by_topic(DEAD_LETTER) if r.value["source"] == source]
        assert dead == [], f"{len(dead)} dead letters, e.g. {dead[:3]}"
        assert {t: n for t, n in found.items() if t != DEAD_LETTER} == expected
        print(f"\n{source}: {stats['frames_recorded']} frames in, records {dict(sorted(expected.items()))}")
    finally:
        stop_process(connector)
        stop_process(stack.processes.pop(f"replay_{source}"))
        stack.processes.pop(f"connector_{source}", None)
