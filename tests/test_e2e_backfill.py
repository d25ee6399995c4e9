"""End to end, gaps as data: the simulator drops the connector twice and the connector is SIGKILLed and
restarted; every trade the simulator made is in ``trades_l3`` exactly once, the missed ones marked backfill,
and ``coverage`` (read by an independent consumer, and asked through the processor's ``/coverage``) holds
the outages beside the faults' times.

Real processes throughout: Tansu, the schema registry, the Coinbase simulator, ``runner.py connector``
and ``runner.py processor``; the consumer is confluent-kafka with the registry's deserializer.  What the
simulator made comes from its own REST trade history, paged here without the pipeline's code.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from l3_atom.infra.local_pipeline import LocalPipeline, connector_args
from tests.kafka_reader import TopicReader

SYMBOL, PRODUCT = "BTC.USD", "BTC-USD"
RATE = 1000.0
FLOW_MESSAGES = 16_000
MISSED = 300  # flow messages made while the connector is away, per drop
FAULT_AT = (2500, 5500)  # messages generated when each drop is made
KILL_AT = 8500
KILLED_S = 2.0
READ_TIMEOUT_S = 120.0
SETTLE_S = 5.0
# config.ini [connector]: a reconnect waits at most reconnect_max_delay_s; the loaded machine adds a little.
RECONNECT_SLACK_MS = 10_000
PAGE = 1000


def sim_get(pipeline: LocalPipeline, path: str) -> object:
    with urllib.request.urlopen(f"{pipeline.simulator_rest_url}{path}", timeout=10) as response:
        return json.loads(response.read())


def sim_post(pipeline: LocalPipeline, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{pipeline.simulator_rest_url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def generated(pipeline: LocalPipeline) -> int:
    return sim_get(pipeline, "/_sim/stats")["messages_generated"]


def every_trade_made(pipeline: LocalPipeline) -> list[int]:
    """The simulator's whole trade history, newest first pages followed with ``after`` (Coinbase's cursor)."""
    ids: list[int] = []
    cursor = ""
    while True:
        page = sim_get(pipeline, f"/products/{PRODUCT}/trades?limit={PAGE}{cursor}")
        if not page:
            return sorted(ids)
        ids += [trade["trade_id"] for trade in page]
        cursor = f"&after={page[-1]['trade_id']}"


def wait_generated(pipeline: LocalPipeline, reader: TopicReader, count: int) -> None:
    reader.read_until(lambda _: generated(pipeline) >= count, READ_TIMEOUT_S)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.mark.timeout(420)
def test_every_trade_once_across_drops_and_a_killed_connector(tmp_path: Path) -> None:
    pipeline = LocalPipeline((SYMBOL,), rate=RATE, seed=11, workers=1, max_messages=FLOW_MESSAGES, workdir=tmp_path)
    with pipeline:
        reader = TopicReader(pipeline.broker.bootstrap_servers, pipeline.registry_url, ["trades_l3", "coverage"])
        try:
            drops = []
            for at in FAULT_AT:
                wait_generated(pipeline, reader, at)
                drops.append(now_ms())
                assert sim_post(pipeline, "/_sim/disconnect", {"missed": MISSED}) == {"disconnected": 1}
            wait_generated(pipeline, reader, KILL_AT)
            killed = now_ms()
            os.killpg(pipeline.processes["connector"].pid, signal.SIGKILL)
            time.sleep(KILLED_S)
            endpoints = ["--ws-url", pipeline.simulator_ws_url, "--rest-url", pipeline.simulator_rest_url]
            pipeline.start_runner("connector2", *connector_args([SYMBOL]), *endpoints)
            restarted = now_ms()
            wait_generated(pipeline, reader, FLOW_MESSAGES)
            made = every_trade_made(pipeline)

            def complete(records: list) -> bool:
                ids = {r.value["trade_id"] for r in records if r.topic == "trades_l3"}
                kinds = Counter(r.value["kind"] for r in records if r.topic == "coverage")
                return len(ids) >= len(made) and kinds["trades_backfilled"] >= len(FAULT_AT) + 1

            reader.read_until(complete, READ_TIMEOUT_S)
            reader.read_until(lambda _: False, SETTLE_S)  # anything published twice arrives now
            web = f"http://127.0.0.1:{pipeline.web_ports[0]}/coverage/coinbase/{SYMBOL}"
            start, end = drops[0] - 60_000, now_ms()
            answers = {feed: json.loads(urllib.request.urlopen(f"{web}?feed={feed}&start={start}&end={end}",
                                                               timeout=30).read()) for feed in ("trades", "book")}
        finally:
            reader.close()
        pipeline.check_alive("connector2")
        pipeline.check_alive("processor0")
        restart_log = pipeline.log_path("connector2").read_text()

    trades = [r.value for r in reader.by_topic("trades_l3")]
    ids = Counter(int(t["trade_id"]) for t in trades)
    duplicates = sum(n - 1 for n in ids.values())
    backfilled = [int(t["trade_id"]) for t in trades if t["origin"] == "backfill"]
    streamed = [int(t["trade_id"]) for t in trades if t["origin"] is None]
    missing = sorted(set(made) - set(ids))
    coverage = [r.value for r in reader.by_topic("coverage")]
    print(f"\ntrades made {len(made)}, published {len(trades)}: streamed {len(streamed)}, backfilled "
          f"{len(backfilled)}, duplicates {duplicates}, missing {len(missing)}")
    for record in coverage:
        print(f"coverage {record['kind']}: {record['start']} -> {record['end']} count={record['count']} "
              f"({record['reason']})")
    print(f"faults: drops at {drops}, killed at {killed}, restarted at {restarted}")
    print(f"/coverage trades: {answers['trades']['missing']}; book: {answers['book']['missing']}")

    assert duplicates == 0, "a trade was published twice"
    assert not missing, f"trades the simulator made that never reached trades_l3: {missing[:10]}"
    assert set(ids) == set(made), "trades_l3 holds a trade the simulator never made"
    assert len(backfilled) >= len(FAULT_AT), "the trades made during the drops were backfilled"
    assert all(t["maker_order_id"] is None for t in trades if t["origin"] == "backfill")

    ups = [r for r in coverage if r["kind"] == "stream_up"]
    downs = [r for r in coverage if r["kind"] == "stream_down"]
    assert len(downs) == len(FAULT_AT), "one stream_down per drop (a SIGKILLed connector says nothing)"
    assert len(ups) == len(FAULT_AT) + 1, "one stream_up per drop, and one after the restart"
    for drop, down, up in zip(drops, downs, ups, strict=False):
        assert down["start"] == up["start"]
        assert abs(down["start"] - drop) < RECONNECT_SLACK_MS, (drop, down)
        assert 0 <= up["end"] - drop < RECONNECT_SLACK_MS, (drop, up)
    resumed = ups[-1]
    assert resumed["reason"] == "connector restarted"
    assert resumed["start"] <= killed + 1000 and restarted <= resumed["end"] < restarted + READ_TIMEOUT_S * 1000
    assert "resuming 1 symbols' trades from the raw topic's tail" in restart_log
    filled = [r for r in coverage if r["kind"] == "trades_backfilled"]
    assert [(r["start"], r["end"]) for r in filled] == [(r["start"], r["end"]) for r in ups]

    # The processor answers: the book missed every outage (and was lost until its snapshot after each);
    # the trades missed none, all were recovered.
    book_holes = answers["book"]["missing"]
    for up in ups:
        assert any(low <= up["start"] and up["end"] <= high for low, high in book_holes), (up, book_holes)
    assert answers["trades"]["missing"] == []
