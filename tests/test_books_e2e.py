"""The book API of a real processor worker, fed by the Coinbase simulator through Kafka.

The worker rebuilds the L3 book of each symbol from ``lob_l3``; an independent
consumer rebuilds it from the same topic (the slow obvious way, here), and the
API's answer must equal that rebuild at the point of the topic it reflects.
The second test makes the simulator lose, repeat and reorder messages: each
is detected, the connector fetches a fresh snapshot, and at every checkpoint
the worker's book equals the consumer's rebuild; at the end both equal the
exchange's book as the simulator's journal tells it (its last REST book and
the messages it sent after).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from l3_atom.infra.local_pipeline import LocalPipeline
from tests.book_rebuild import rebuild
from tests.kafka_reader import Received, TopicReader
from tests.test_e2e_coinbase import expected_records

FLOW_MESSAGES = 3000
DEPTH = 5
FULL_DEPTH = 1000
FAULT_FLOW_MESSAGES = 9000
FAULT_RATE = 1000.0
# Faults, in the order injected, and the flow's progress (messages generated) before each.
FAULTS = (("gap", 2000), ("duplicate", 4000), ("reorder", 6000))
CHECKPOINT_INTERVAL_S = 0.3
SETTLE_TIMEOUT_S = 120.0

def flow_ended(pipeline: LocalPipeline) -> bool:
    """Whether the simulator has generated every message of its flow (its ``--max-messages``)."""
    status, stats = get(f"{pipeline.simulator_rest_url}/_sim/stats")
    return status == 200 and stats["messages_generated"] >= pipeline.max_messages


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def numbers(levels: list[list[str]]) -> list[list[Decimal]]:
    return [[Decimal(price), Decimal(size)] for price, size in levels]


@pytest.mark.timeout(240)
def test_book_and_order_queries_equal_an_independent_rebuild(tmp_path: Path) -> None:
    with LocalPipeline(("BTC.USD",), rate=2000, max_messages=FLOW_MESSAGES, workdir=tmp_path) as pipeline:
        reader = TopicReader(pipeline.broker.bootstrap_servers, pipeline.registry_url, ["lob_l3"])
        base = f"http://127.0.0.1:{pipeline.web_ports[0]}"
        try:
            last: dict = {}

            def settled(records: list) -> bool:
                # Queried only once the flow has ended: a book still moving can change between queries.
                if not records or not flow_ended(pipeline):
                    return False
                status, body = get(f"{base}/book/coinbase/BTC.USD?depth={DEPTH}&level=l3")
                last.update(body)
                return status == 200 and body["updates"] + body["dropped"] == len(records)

            reader.read_until(lambda records: len(records) > 100 and settled(records), SETTLE_TIMEOUT_S)
            records = [r.value for r in reader.by_topic("lob_l3")]
            book = rebuild(records, len(records))
            assert last["in_sync"] is True and last["snapshots"] >= 1, last
            assert last["orders"] == len(book.orders)
            assert numbers(last["bids"]) == book.levels("bid", DEPTH)
            best_bid = book.levels("bid", 1)[0][0]

            order_id, (side, price, size) = next(iter(book.orders.items()))
            status, body = get(f"{base}/orders/coinbase/BTC.USD/{order_id}")
            assert status == 200 and (body["side"], Decimal(body["price"]), Decimal(body["size"])) == (side, price, size)

            status, body = get(f"{base}/volume/coinbase/BTC.USD?side=bid&price={best_bid}&op=gte&level=l3")
            expected = sum(s for sd, p, s in book.orders.values() if sd == "bid" and p >= best_bid)
            assert status == 200 and Decimal(body["volume"]) == expected

            assert get(f"{base}/book/coinbase/NOPE.USD?depth=5")[0] == 404
            assert get(f"{base}/orders/coinbase/BTC.USD/no-such-order")[0] == 404
            assert get(f"{base}/book/coinbase/BTC.USD?depth=-1")[0] == 400
            assert get(f"{base}/volume/coinbase/BTC.USD?side=up&price=1&op=eq")[0] == 400
            print(f"\nbook API: {len(book.orders)} resting orders at sequence {last['sequence']}, best bid {best_bid}")
        finally:
            reader.close()


def sim_stats(pipeline: LocalPipeline) -> dict[str, Any]:
    return get(f"{pipeline.simulator_rest_url}/_sim/stats")[1]


def take_checkpoints(base: str, pipeline: LocalPipeline) -> list[dict]:
    """Inject each fault when the flow reaches its point, and meanwhile keep the worker's answers."""
    checkpoints = []
    faults = list(FAULTS)
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        generated = sim_stats(pipeline)["messages_generated"]
        if faults and generated >= faults[0][1]:
            kind, _ = faults.pop(0)
            post(f"{pipeline.simulator_rest_url}/_sim/book_fault", {"kind": kind, "product_id": "BTC-USD"})
        status, body = get(f"{base}/book/coinbase/BTC.USD?depth={FULL_DEPTH}&level=l3")
        if status == 200:
            checkpoints.append(body)
        if not faults and generated >= FAULT_FLOW_MESSAGES:
            return checkpoints
        time.sleep(CHECKPOINT_INTERVAL_S)
    raise AssertionError(f"the flow did not reach its end: {sim_stats(pipeline)}")


def assert_equals_rebuild(answer: dict, records: list[dict]) -> None:
    book = rebuild(records, answer["updates"] + answer["dropped"])
    where = f"after {answer['updates'] + answer['dropped']} records (sequence {answer['sequence']})"
    assert answer["orders"] == len(book.orders), where
    assert numbers(answer["bids"]) == book.levels("bid", FULL_DEPTH), where
    assert numbers(answer["asks"]) == book.levels("ask", FULL_DEPTH), where


@pytest.mark.timeout(300)
def test_gaps_repeats_and_reordering_are_detected_and_repaired_by_a_fresh_snapshot(tmp_path: Path) -> None:
    with LocalPipeline(("BTC.USD",), rate=FAULT_RATE, max_messages=FAULT_FLOW_MESSAGES, workdir=tmp_path) as pipeline:
        reader = TopicReader(pipeline.broker.bootstrap_servers, pipeline.registry_url, ["lob_l3", "book_resync"])
        base = f"http://127.0.0.1:{pipeline.web_ports[0]}"
        try:
            checkpoints = take_checkpoints(base, pipeline)
            final: dict = {}

            def settled(received: list[Received]) -> bool:
                status, body = get(f"{base}/book/coinbase/BTC.USD?depth={FULL_DEPTH}&level=l3")
                final.update(body)
                book = [r for r in received if r.topic == "lob_l3"]
                return status == 200 and body["in_sync"] and body["updates"] + body["dropped"] == len(book)

            reader.read_until(settled, SETTLE_TIMEOUT_S)
            records = [r.value for r in reader.by_topic("lob_l3")]
            requests = [r.value for r in reader.by_topic("book_resync")]
        finally:
            reader.close()
        stats = sim_stats(pipeline)
        served = [line for line in pipeline.journal.read_text().splitlines() if '"conn":"rest:BTC-USD"' in line]
        # The exchange's book from its own side: the last REST book served and the messages sent after it.
        truth = expected_records(pipeline.journal)["book"]
        connector_log = pipeline.log_path("connector").read_text()

    # Every fault went out, and was seen: a gap (dropped or late message) asks for a snapshot ...
    assert stats["book_faults"] == {"gap": 1, "duplicate": 1, "reorder": 1}
    reasons = Counter(request["reason"] for request in requests)
    assert reasons["gap"] >= 2, requests  # the lost message, and the overtaken one
    assert "resync of BTC.USD (gap)" in connector_log
    # ... which the connector fetched (one snapshot after connecting, then per resync).
    assert len(served) >= 1 + 2, f"{len(served)} REST snapshots served"
    # The repeated and the late message were never published twice.
    events = Counter(r["sequence"] for r in records if not r["is_snapshot"])
    assert max(events.values()) == 1

    # At every checkpoint the worker's book equals the consumer's rebuild from the topic alone.
    for answer in [*checkpoints, final]:
        assert_equals_rebuild(answer, records)
    lost = [c for c in checkpoints if not c["in_sync"]]
    assert final["in_sync"] and final["gaps"] >= 1

    # And the repaired book is the exchange's book.
    for side, key in (("bid", "bids"), ("ask", "asks")):
        levels = sorted(((price, size) for (symbol, s, price), size in truth.items() if s == side and size),
                        reverse=side == "bid")
        assert numbers(final[key]) == [[price, size] for price, size in levels[:FULL_DEPTH]], side
    print(f"\nbook faults {stats['book_faults']}: resync requests {dict(reasons)}, {len(served)} snapshots served, "
          f"{len(checkpoints)} checkpoints equal to the rebuild ({len(lost)} while out of sync), final book "
          f"{final['orders']} orders = the simulator's")
