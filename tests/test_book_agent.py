"""The processor-side books without a broker: records after an Avro round trip into ``BookStore``, its answers."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from l3_atom.avro.codecs import AvroEncoder, decode_wire, parsed_schema
from l3_atom.off_chain.kraken import Kraken
from l3_atom.sim.orderflow import OrderFlow
from l3_atom.stream_processing.batched_consumer import BatchingApp
from l3_atom.stream_processing.book_agent import (
    HTTP_BAD_REQUEST,
    HTTP_NOT_FOUND,
    HTTP_OK,
    MAX_QUERY_DEPTH,
    BookStore,
    add_books,
)
from l3_atom.stream_processing.standardisers.coinbase import CoinbaseStandardiser
from l3_atom.stream_processing.standardisers.kraken import KrakenStandardiser
from l3_atom.topics import LOB, LOB_L3
from tests.exchanges.test_kraken import SETTINGS, NullSink
from tests.recorded import ws_frames

ATOM = 1_618_678_000_000_000
SCHEMA_IDS = {LOB: 1, LOB_L3: 2}
PARTITION = 3
FLOW_MESSAGES = 3000


def through_avro(topic: str, record: dict[str, Any]) -> dict[str, Any]:
    encoder = AvroEncoder(topic, SCHEMA_IDS[topic])
    return decode_wire(encoder.encode(record), {SCHEMA_IDS[topic]: parsed_schema(topic)})


def coinbase_store() -> tuple[BookStore, list[dict[str, Any]]]:
    std = CoinbaseStandardiser()
    store = BookStore()
    records = []
    for message in OrderFlow(seed=1).take(FLOW_MESSAGES, ATOM):
        for out in std.standardise(orjson.dumps(message), ATOM):
            if out.topic == LOB_L3:
                record = through_avro(LOB_L3, out.record)
                records.append(record)
                store.apply(LOB_L3, PARTITION, record)
    return store, records


def test_kraken_recording_books_after_avro(recordings: Path) -> None:
    std = KrakenStandardiser()
    keys = Kraken([], NullSink(), SETTINGS)
    store = BookStore()
    for index, raw in enumerate(ws_frames(recordings / "kraken")):
        for out in std.standardise(raw, ATOM + index, keys.frame_key(raw)):
            if out.topic == LOB:
                store.apply(LOB, PARTITION, through_avro(LOB, out.record))
    answer = store.book("kraken", "ADA.BTC", {"depth": "3"})
    assert answer.status == HTTP_OK
    body = answer.body
    assert (body["level"], body["in_sync"], body["sequence"], body["gaps"]) == ("l2", True, None, 0)
    assert body["snapshots"] >= 1
    assert len(body["bids"]) == len(body["asks"]) == 3
    best_bid, best_ask = Decimal(body["bids"][0][0]), Decimal(body["asks"][0][0])
    assert best_bid < best_ask
    stats = store.stats()
    assert (stats["books"], stats["in_sync"], stats.get("gaps", 0), stats["unknown_orders"]) == (10, 10, 0, 0)
    assert store.resync_requests == []
    # Kraken's book is kept at its subscribed depth.
    assert max(len(f.book.bids) for f in store.l2.values()) <= 1000
    total = store.volume("kraken", "ADA.BTC", {"side": "ask", "price": body["asks"][2][0], "op": "lte"})
    assert Decimal(total.body["volume"]) == sum(Decimal(size) for _, size in body["asks"])


def test_l3_book_orders_and_queries() -> None:
    store, records = coinbase_store()
    symbol = records[0]["symbol"]
    answer = store.book("coinbase", symbol, {"depth": "5"})
    assert answer.status == HTTP_OK
    body = answer.body
    last = [r for r in records if r["symbol"] == symbol][-1]
    assert body["level"] == "l3" and body["sequence"] == last["sequence"]
    assert body["dropped"] == 0 and body["orders"] > 0
    feed = store.l3[("coinbase", symbol)]
    order_id, order = next(iter(feed.book.orders.items()))
    found = store.order("coinbase", symbol, order_id)
    assert found.status == HTTP_OK
    assert (found.body["side"], Decimal(found.body["price"]), Decimal(found.body["size"])) == (
        order.side, order.price, order.size)
    assert store.order("coinbase", symbol, "no-such-order").status == HTTP_NOT_FOUND
    level_volume = store.volume("coinbase", symbol, {"side": order.side, "price": str(order.price), "op": "eq"})
    assert Decimal(level_volume.body["volume"]) >= order.size


def test_a_replayed_record_is_stale() -> None:
    """An older event arriving again is counted, not applied twice, and the book is no longer trusted."""
    store, records = coinbase_store()
    symbol = records[0]["symbol"]
    before = store.book("coinbase", symbol, {"depth": str(MAX_QUERY_DEPTH)}).body
    assert not store.apply(LOB_L3, PARTITION, records[0])
    after = store.book("coinbase", symbol, {"depth": str(MAX_QUERY_DEPTH)}).body
    assert (after["dropped"], after["out_of_order"]) == (before["dropped"] + 1, before["out_of_order"] + 1)
    assert (after["bids"], after["asks"]) == (before["bids"], before["asks"])
    assert after["in_sync"] is False
    [request] = store.resync_requests
    assert (request["exchange"], request["symbol"], request["reason"]) == ("coinbase", symbol, "out_of_order")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"depth": "0"}, "depth must be a whole number"),
        ({"depth": str(MAX_QUERY_DEPTH + 1)}, "depth must be a whole number"),
        ({"depth": "ten"}, "depth must be a whole number"),
        ({"level": "l4"}, "level must be one of l2, l3"),
    ],
)
def test_bad_book_parameters(query: dict, message: str) -> None:
    store, records = coinbase_store()
    answer = store.book("coinbase", records[0]["symbol"], query)
    assert answer.status == HTTP_BAD_REQUEST and message in answer.body["error"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"price": "1", "op": "eq"}, "side must be one of bid, ask"),
        ({"side": "buy", "price": "1", "op": "eq"}, "side must be one of bid, ask"),
        ({"side": "bid", "price": "x", "op": "eq"}, "price must be a decimal number"),
        ({"side": "bid", "price": "NaN", "op": "eq"}, "price must be a finite"),
        ({"side": "bid", "price": "-1", "op": "eq"}, "price must be a finite"),
        ({"side": "bid", "price": "1", "op": "lt"}, "op must be one of eq, lte, gte"),
    ],
)
def test_bad_volume_parameters(query: dict, message: str) -> None:
    answer = BookStore().volume("coinbase", "BTC.USD", query)
    assert answer.status == HTTP_BAD_REQUEST and message in answer.body["error"]


def test_unknown_symbols_are_404() -> None:
    store = BookStore()
    assert store.book("kraken", "BTC.USD", {}).status == HTTP_NOT_FOUND
    assert store.volume("kraken", "BTC.USD", {"side": "bid", "price": "1", "op": "eq"}).status == HTTP_NOT_FOUND
    assert store.order("kraken", "BTC.USD", "x").status == HTTP_NOT_FOUND


def test_revoked_partitions_drop_their_books() -> None:
    store = BookStore({})
    record = {"exchange": "x", "symbol": "A.B", "side": "bid", "price": Decimal(1), "size": Decimal(1),
              "is_snapshot": True, "sequence": 1, "atom_timestamp": 1}
    store.apply(LOB, 0, record)
    store.apply(LOB, 1, {**record, "symbol": "C.D"})
    store.drop_partitions({1})
    assert list(store.l2) == [("x", "A.B")]


def test_add_books_registers_agent_and_pages() -> None:
    app = BatchingApp("books-test", broker="kafka://127.0.0.1:1", store="memory://")
    add_books(app, SCHEMA_IDS)
    assert list(app.agents) == ["keep_books"]
    assert {route.resource.canonical for route in app.web.web_app.router.routes()} == {
        "/book/{exchange}/{symbol}", "/volume/{exchange}/{symbol}", "/orders/{exchange}/{symbol}/{order_id}"}


def test_add_books_reads_only_the_book_topics_it_is_given() -> None:
    app = BatchingApp("books-test-l2", broker="kafka://127.0.0.1:1", store="memory://")
    service = add_books(app, {LOB: 1})
    assert service.route_topic.get_topic_name() == LOB
    with pytest.raises(ValueError, match="no book topic"):
        add_books(app, {"trades": 3})
