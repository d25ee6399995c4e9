"""The book API of a real processor worker, fed by the Coinbase simulator through Kafka.

The worker rebuilds the L3 book of each symbol from ``lob_l3``; an independent
consumer rebuilds it from the same topic, and the API's answer must equal that
rebuild at the sequence the API reports.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from l3_atom.infra.local_pipeline import LocalPipeline
from tests.kafka_reader import TopicReader

FLOW_MESSAGES = 3000
DEPTH = 5


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def rebuild(records: list[dict], until_sequence: int) -> dict[str, tuple[str, Decimal, Decimal]]:
    """Resting orders from lob_l3 records up to a sequence, the slow obvious way."""
    orders: dict[str, tuple[str, Decimal, Decimal]] = {}
    for r in records:
        if r["sequence"] > until_sequence:
            break
        if r["event_type"] == "done":
            orders.pop(r["order_id"], None)
        elif r["event_type"] == "open" or r["order_id"] in orders:
            orders[r["order_id"]] = (r["side"], r["price"], r["size"])
    return orders


@pytest.mark.timeout(240)
def test_book_and_order_queries_equal_an_independent_rebuild(tmp_path: Path) -> None:
    with LocalPipeline(("BTC.USD",), rate=2000, max_messages=FLOW_MESSAGES, workdir=tmp_path) as pipeline:
        reader = TopicReader(pipeline.broker.bootstrap_servers, pipeline.registry_url, ["lob_l3"])
        base = f"http://127.0.0.1:{pipeline.web_ports[0]}"
        try:
            # Wait until the flow has ended and the worker's book holds the last record.
            last: dict = {}

            def settled(records: list) -> bool:
                if not records:
                    return False
                status, body = get(f"{base}/book/coinbase/BTC.USD?depth={DEPTH}&level=l3")
                last.update(body)
                return status == 200 and body["sequence"] == records[-1].value["sequence"]

            reader.read_until(lambda records: len(records) > 100 and settled(records), 120)
            records = [r.value for r in reader.by_topic("lob_l3")]
            assert last["sequence"] == records[-1]["sequence"], last
            orders = rebuild(records, last["sequence"])
            assert last["orders"] == len(orders)
            best_bid = max(price for side, price, _ in orders.values() if side == "bid")
            assert Decimal(last["bids"][0][0]) == best_bid

            order_id, (side, price, size) = next(iter(orders.items()))
            status, body = get(f"{base}/orders/coinbase/BTC.USD/{order_id}")
            assert status == 200 and (body["side"], Decimal(body["price"]), Decimal(body["size"])) == (side, price, size)

            status, body = get(f"{base}/volume/coinbase/BTC.USD?side=bid&price={best_bid}&op=gte&level=l3")
            expected = sum(s for sd, p, s in orders.values() if sd == "bid" and p >= best_bid)
            assert status == 200 and Decimal(body["volume"]) == expected

            assert get(f"{base}/book/coinbase/NOPE.USD?depth=5")[0] == 404
            assert get(f"{base}/orders/coinbase/BTC.USD/no-such-order")[0] == 404
            assert get(f"{base}/book/coinbase/BTC.USD?depth=-1")[0] == 400
            assert get(f"{base}/volume/coinbase/BTC.USD?side=up&price=1&op=eq")[0] == 400
            print(f"\nbook API: {len(orders)} resting orders at sequence {last['sequence']}, best bid {best_bid}")
        finally:
            reader.close()
