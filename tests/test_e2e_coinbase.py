"""End to end with real processes: Tansu broker, schema registry, Coinbase simulator,
connector and processor worker(s); an independent confluent-kafka consumer checks the topics.

Expected records are computed here from the simulator's journal (every frame it
actually sent, and every level-3 REST book it served), without the pipeline's
code: every match/ticker must appear exactly once, with exact values, in
per-symbol sequence order; every REST book's orders appear as snapshot
records; every open/change/done appears once, and so does the change a partial fill
makes to its resting maker order, except those a snapshot already held when
they reached the processor (their sequence at or below it).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections import Counter, defaultdict
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from l3_atom.config import Settings
from l3_atom.infra.local_pipeline import LocalPipeline
from tests.kafka_reader import Received, TopicReader, read_raw

BOOK_SIDE = {"buy": "bid", "sell": "ask"}
OTHER_SIDE = {"buy": "sell", "sell": "buy"}
SYMBOLS = ("BTC.USD", "ETH.USD")
FLOW_MESSAGES = 6000
RATE = 3000.0
MAX_FRAME_BYTES = 524288  # config.ini [connector] max_frame_bytes
FAULTS = ("malformed_json", "unknown_type", "missing_field", "mistyped_field", "oversize")
READ_TIMEOUT_S = 90.0
SETTLE_S = 3.0
# Faust commits every 2.8 s; a few rounds are plenty.
COMMIT_TIMEOUT_S = 20.0
POLL_S = 0.5
# Flow messages nobody receives while the connector reconnects (a visible sequence gap).
DISCONNECT_MISSED = 100


def _dec(value: object) -> Decimal:
    if not isinstance(value, str):
        raise TypeError(value)
    return Decimal(value)


def expected_records(journal: Path) -> dict[str, Counter]:
    """What the pipeline must publish for the frames the simulator sent; bad frames expect nothing.

    Resting orders are followed from the REST books served and the messages, so that a match that
    fills its maker order partly expects a ``change`` of that order (reason ``match``); messages a
    book already held (numbered at or below it) do not move them.  ``expected["book"]`` is the
    exchange's book at the end, (symbol, side, price) -> size, from the simulator's side alone.
    """
    expected: dict[str, Counter] = defaultdict(Counter)
    resting: dict[str, dict[str, list]] = defaultdict(dict)
    held_up_to: dict[str, int] = {}
    for line in journal.read_text().splitlines():
        entry = json.loads(line)
        data = entry["data"]
        if len(data.encode()) > MAX_FRAME_BYTES:
            continue
        if str(entry["conn"]).startswith("rest:"):
            book = json.loads(data)
            symbol = entry["conn"].removeprefix("rest:").replace("-", ".")
            resting[symbol] = {order_id: [side, _dec(price), _dec(size)]
                               for side, levels in (("bid", book["bids"]), ("ask", book["asks"]))
                               for price, size, order_id in levels}
            held_up_to[symbol] = book["sequence"]
            continue
        try:
            message = json.loads(data)
            kind = message["type"]
            symbol = message["product_id"].replace("-", ".")
            if kind in ("open", "change", "done"):
                size = {"open": "remaining_size", "change": "new_size"}.get(kind)
                if kind == "change" and "new_size" not in message:
                    continue
                price = message.get("price")
                remaining = _dec(message[size]) if size else Decimal(0)
                expected["lob_l3"][(
                    symbol, kind, message["order_id"], BOOK_SIDE[message["side"]],
                    None if price is None else _dec(price), remaining, message.get("reason"), message["sequence"],
                )] += 1
                if message["sequence"] <= held_up_to.get(symbol, -1):
                    continue
                if kind == "done":
                    resting[symbol].pop(message["order_id"], None)
                elif kind == "open":
                    resting[symbol][message["order_id"]] = [BOOK_SIDE[message["side"]], _dec(price), remaining]
                elif message["order_id"] in resting[symbol]:
                    resting[symbol][message["order_id"]][2] = remaining
            elif kind in ("match", "last_match"):
                expected["trades_l3"][(
                    symbol, str(message["trade_id"]), _dec(message["price"]), _dec(message["size"]),
                    OTHER_SIDE[message["side"]], message["maker_order_id"], message["taker_order_id"],
                    message["sequence"],
                )] += 1
                maker = message["maker_order_id"]
                if kind == "match" and maker in resting[symbol] and message["sequence"] > held_up_to.get(symbol, -1):
                    left = resting[symbol][maker][2] - _dec(message["size"])
                    if left > 0:
                        resting[symbol][maker][2] = left
                        expected["lob_l3"][(symbol, "change", maker, BOOK_SIDE[message["side"]],
                                            _dec(message["price"]), left, "match", message["sequence"])] += 1
                elif kind == "match" and symbol not in held_up_to:
                    # Before the symbol's first book: a worker may size the fill from later messages (or not).
                    expected["fills_before_book"][(symbol, maker, message["sequence"])] += 1
            elif kind == "ticker":
                expected["ticker"][(
                    symbol, _dec(message["best_bid"]), _dec(message["best_ask"]), _dec(message["price"]),
                    message["sequence"],
                )] += 1
        except (ValueError, KeyError, TypeError, InvalidOperation):
            continue  # an injected bad frame: it must end in dead_letter, checked separately
    for symbol, orders in resting.items():
        for side, price, size in orders.values():
            expected["book"][(symbol, side, price)] += size
    return expected


def journal_snapshots(journal: Path) -> tuple[Counter, dict[str, int]]:
    """The orders of every level-3 REST book the simulator served, and each symbol's last book sequence."""
    orders: Counter = Counter()
    last: dict[str, int] = {}
    for line in journal.read_text().splitlines():
        entry = json.loads(line)
        if not str(entry["conn"]).startswith("rest:"):
            continue
        symbol = entry["conn"].removeprefix("rest:").replace("-", ".")
        book = json.loads(entry["data"])
        for side, levels in (("bid", book["bids"]), ("ask", book["asks"])):
            for price, size, order_id in levels:
                orders[(symbol, order_id, side, _dec(price), _dec(size), book["sequence"])] += 1
        last[symbol] = max(last.get(symbol, 0), book["sequence"])
    return orders, last


def fill_before_book(event: tuple, expected: dict[str, Counter]) -> bool:
    """A maker's ``change`` for a fill before its symbol's first book (sized by the worker from later messages:
    ``tests/test_coinbase_takeover.py`` checks those sizes)."""
    symbol, kind, order_id, *_, reason, sequence = event
    return kind == "change" and reason == "match" and (symbol, order_id, sequence) in expected["fills_before_book"]


def check_book(found: dict[str, Counter], expected: dict[str, Counter], journal: Path) -> None:
    """Snapshots exactly as served; book events once each, missing only where a snapshot held them."""
    snapshot_orders, last_snapshot = journal_snapshots(journal)
    assert last_snapshot, "the connector fetched level-3 book snapshots"
    assert found["lob_l3_snapshot"] == snapshot_orders, "snapshot records differ from the REST books served"
    events, sent = found["lob_l3"], expected["lob_l3"]
    unsent = [event for event in events - sent if not fill_before_book(event, expected)]
    assert not unsent, f"book events nobody sent: {unsent[:3]}"
    assert max(events.values()) == 1, "a book event was published twice"
    missing = sent - events
    unexplained = [event for event in missing if event[-1] > last_snapshot.get(event[0], -1)]
    assert not unexplained, f"book events lost, not inside any snapshot: {unexplained[:3]}"
    print(f"\nbook: {len(snapshot_orders)} snapshot orders, {sum(events.values())} events, "
          f"{sum(missing.values())} already inside a snapshot")


def must_publish(expected: dict[str, Counter], journal: Path) -> int:
    """The least number of records the pipeline publishes for ``expected`` (book events a snapshot held may go)."""
    snapshot_orders, last_snapshot = journal_snapshots(journal)
    certain_events = sum(n for event, n in expected["lob_l3"].items() if event[-1] > last_snapshot.get(event[0], -1))
    return certain_events + sum(snapshot_orders.values()) + sum(expected["trades_l3"].values()) + sum(
        expected["ticker"].values())


def published(records: list[Received]) -> dict[str, Counter]:
    found: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        if r.topic == "dead_letter":
            continue
        v = r.value
        assert r.key == f"coinbase_{v['symbol']}"
        if r.topic == "lob_l3" and v["is_snapshot"]:
            found["lob_l3_snapshot"][(v["symbol"], v["order_id"], v["side"], v["price"], v["size"],
                                      v["sequence"])] += 1
        elif r.topic == "lob_l3":
            found["lob_l3"][(v["symbol"], v["event_type"], v["order_id"], v["side"], v["price"], v["size"],
                             v["reason"], v["sequence"])] += 1
        elif r.topic == "trades_l3" and v["origin"] == "backfill":
            # Trades made while the connector reconnected, fetched from the REST history: checked by id.
            found["trades_l3_backfill"][(v["symbol"], v["trade_id"])] += 1
        elif r.topic == "trades_l3":
            found["trades_l3"][(v["symbol"], v["trade_id"], v["price"], v["size"], v["taker_side"],
                                v["maker_order_id"], v["taker_order_id"], v["sequence"])] += 1
        elif r.topic == "ticker":
            found["ticker"][(v["symbol"], v["bid_price"], v["ask_price"], v["last_price"], v["sequence"])] += 1
    return found


def assert_per_symbol_order(records: list[Received]) -> None:
    """Within a topic, each symbol's records arrive in the exchange's sequence order.

    A snapshot's records share its sequence, which is at least that of the events before it: the
    connector holds the stream back while it fetches the snapshot.
    """
    last: dict[tuple[str, str], int] = {}
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        if r.value.get("origin") == "backfill":
            continue  # a backfilled trade has no sequence: it was not streamed
        marker = (r.topic, r.key)
        if r.value.get("is_snapshot"):
            assert r.value["sequence"] >= last.get(marker, -1), f"{marker} snapshot out of order at {r.offset}"
        else:
            assert r.value["sequence"] > last.get(marker, -1), f"{marker} out of order at offset {r.offset}"
        last[marker] = r.value["sequence"]


def assert_book_continuity(records: list[Received], repaired_gaps: bool = False) -> int:
    """Each book event's prev_sequence is the book's last sequence in the topic: a consumer sees no gap.

    With ``repaired_gaps`` (a reconnect lost messages), a gap may show, but a snapshot must follow it.
    Returns the number of gaps seen.
    """
    last: dict[str, int] = {}
    open_gaps: dict[str, int] = {}
    checked = gaps = 0
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        value = r.value
        if value["is_snapshot"]:
            open_gaps.pop(r.key, None)
        elif value["prev_sequence"] is not None and r.key in last:
            checked += 1
            if value["prev_sequence"] != last[r.key]:
                assert repaired_gaps, f"{r.key}: gap before offset {r.offset}: {value}"
                gaps += 1
                open_gaps.setdefault(r.key, r.offset)
        last[r.key] = value["sequence"]
    assert checked > 0, "book events carry prev_sequence"
    assert not open_gaps, f"gaps no snapshot repaired (key: offset): {open_gaps}"
    return gaps


def raw_partitions(worker_log: str) -> set[int]:
    """The coinbase_raw partitions Faust last assigned to a worker (from its assignment table)."""
    tables = re.findall(r"\| coinbase_raw +\| \{([0-9, ]*)\}", worker_log)
    return {int(p) for p in tables[-1].split(",")} if tables else set()


def inject(pipeline: LocalPipeline, kind: str) -> dict:
    return sim_post(pipeline, "/_sim/inject", {"kind": kind, "product_id": "BTC-USD"})


def sim_stats(pipeline: LocalPipeline) -> dict:
    with urllib.request.urlopen(f"{pipeline.simulator_rest_url}/_sim/stats", timeout=10) as response:
        return json.loads(response.read())


def sim_post(pipeline: LocalPipeline, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{pipeline.simulator_rest_url}{path}", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def check_raw_topic(pipeline: LocalPipeline) -> dict[int, int]:
    """coinbase_raw holds every frame the simulator sent, byte for byte, keyed and stamped; its end offsets."""
    sent = Counter(json.loads(line)["data"].encode() for line in pipeline.journal.read_text().splitlines())
    sent = Counter({frame: n for frame, n in sent.items() if len(frame) <= MAX_FRAME_BYTES})
    raw = read_raw(pipeline.broker.bootstrap_servers, "coinbase_raw", sum(sent.values()), READ_TIMEOUT_S)
    assert Counter(m.value() for m in raw) == sent
    for message in raw:
        headers = dict(message.headers())
        assert int(headers["atom_timestamp"]) > 1_600_000_000_000_000  # µs since the epoch
        # Websocket frames name their connection; REST book snapshots come from "rest".
        assert headers["connection_id"].startswith(b"coinbase.0.") or headers["connection_id"] == b"rest"
        assert re.fullmatch(r"coinbase_(BTC-USD|ETH-USD|all)_(full|ticker|control|unparsed)", message.key().decode())
    ends: dict[int, int] = {}
    for message in raw:
        ends[message.partition()] = max(ends.get(message.partition(), 0), message.offset() + 1)
    return ends


def wait_all_committed(bootstrap: str, topic: str, ends: dict[int, int]) -> None:
    """The processors' consumer group commits every raw record's offset (batches are acked whole, once processed).

    ``ends`` come from reading the topic: Tansu's ListOffsets may report less (ARCHITECTURE.md).
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": Settings().processor.app_id})
    try:
        partitions = [TopicPartition(topic, p) for p in ends]
        committed: dict[int, int] = {}
        deadline = time.monotonic() + COMMIT_TIMEOUT_S
        while time.monotonic() < deadline:
            committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
            if committed == ends:
                return
            time.sleep(POLL_S)
        raise AssertionError(f"committed offsets {committed} never reached the end offsets {ends}")
    finally:
        consumer.close()


def run_pipeline(
    tmp_path: Path, workers: int, faults: tuple[str, ...], disconnect: bool = False
) -> tuple[LocalPipeline, TopicReader, dict]:
    """Run the flow to its end through the pipeline; return what the reader saw and what was expected."""
    pipeline = LocalPipeline(SYMBOLS, rate=RATE, seed=7, workers=workers, max_messages=FLOW_MESSAGES,
                             workdir=tmp_path)
    with pipeline:
        reader = TopicReader(pipeline.broker.bootstrap_servers, pipeline.registry_url,
                             ["lob_l3", "trades_l3", "ticker", "dead_letter"])
        try:
            reader.read_until(lambda records: sim_stats(pipeline)["messages_generated"] > FLOW_MESSAGES // 3, 60)
            for kind in faults:
                assert inject(pipeline, kind)["conns"], f"{kind} was sent to the connector"
            if disconnect:
                # A network drop: the connector must reconnect and resubscribe by itself.
                assert sim_post(pipeline, "/_sim/disconnect", {"missed": DISCONNECT_MISSED}) == {"disconnected": 1}
            reader.read_until(lambda _: sim_stats(pipeline)["messages_generated"] >= FLOW_MESSAGES, 60)
            expected = expected_records(pipeline.journal)
            total = must_publish(expected, pipeline.journal) + len(faults)
            reader.read_until(lambda records: len(records) >= total, READ_TIMEOUT_S)
            # Anything published twice would arrive now.
            reader.read_until(lambda _: False, SETTLE_S)
            raw_ends = check_raw_topic(pipeline)
            print(f"\nraw frames archived byte for byte: {sum(raw_ends.values())}")
            wait_all_committed(pipeline.broker.bootstrap_servers, "coinbase_raw", raw_ends)
        finally:
            reader.close()
        for name in pipeline.processes:
            pipeline.check_alive(name)
    return pipeline, reader, expected


@pytest.mark.timeout(300)
def test_every_event_once_exact_and_in_order_with_bad_frames_dead_lettered(tmp_path: Path) -> None:
    pipeline, reader, expected = run_pipeline(tmp_path, workers=1, faults=FAULTS)
    found = published(reader.records)
    for topic in ("trades_l3", "ticker"):
        assert found[topic] == expected[topic], f"{topic}: published records differ from what was sent"
        assert max(found[topic].values()) == 1, f"{topic}: a record was published twice"
    check_book(found, expected, pipeline.journal)
    assert_book_continuity(reader.by_topic("lob_l3"))
    counts = {topic: sum(c.values()) for topic, c in found.items()}
    assert counts["lob_l3"] > 1000 and counts["trades_l3"] > 100 and counts["ticker"] > 100, counts
    assert_per_symbol_order(reader.by_topic("lob_l3") + reader.by_topic("trades_l3"))

    dead = [r.value for r in reader.by_topic("dead_letter")]
    assert len(dead) == len(FAULTS), [d["error"] for d in dead]
    errors = sorted(d["error"] for d in dead)
    assert any(e.startswith("malformed JSON") for e in errors), errors
    assert any(e == "unknown message type 'sim_unknown_type'" for e in errors), errors
    assert any(e == "match message lacks field 'price'" for e in errors), errors
    assert any(e.startswith("match message has a mistyped field") for e in errors), errors
    oversize = [d for d in dead if d["stage"] == "connector"]
    assert len(oversize) == 1 and oversize[0]["original_size"] > MAX_FRAME_BYTES
    assert "exceeds max_frame_bytes" in oversize[0]["error"]
    for d in dead:
        if d["stage"] == "processor":
            # The original bytes travel with the error.
            assert d["original_size"] == len(d["original"]) and d["original"].startswith(b'{"type":')
    print(f"\ne2e, 1 worker: {counts}, dead letters {len(dead)}")


@pytest.mark.timeout(300)
def test_two_workers_share_partitions_and_publish_each_record_once_across_a_reconnect(tmp_path: Path) -> None:
    pipeline, reader, expected = run_pipeline(tmp_path, workers=2, faults=(), disconnect=True)
    found = published(reader.records)
    assert found["ticker"] == expected["ticker"], "ticker: published records differ from what was sent"
    # A streamed trade the backfill already published is not published again: it is among the backfilled.
    streamed, sent = found["trades_l3"], expected["trades_l3"]
    assert not streamed - sent and max(streamed.values()) == 1, "trades_l3: a streamed trade wrong or twice"
    backfilled = found["trades_l3_backfill"]
    assert backfilled and max(backfilled.values()) == 1, "the trades missed while reconnecting were backfilled once"
    assert {(t[0], t[1]) for t in sent - streamed} <= set(backfilled)
    assert not {(t[0], t[1]) for t in streamed} & set(backfilled), "a trade both streamed and backfilled"
    check_book(found, expected, pipeline.journal)
    assert_book_continuity(reader.by_topic("lob_l3"), repaired_gaps=True)
    assert_per_symbol_order(reader.by_topic("lob_l3") + reader.by_topic("trades_l3"))
    connections = {json.loads(line)["conn"] for line in pipeline.journal.read_text().splitlines()}
    assert len({c for c in connections if isinstance(c, int)}) == 2, "the connector reconnected and resubscribed"
    assert "connected to ws://127.0.0.1" in pipeline.log_path("connector").read_text()
    assigned = [raw_partitions(pipeline.log_path(f"processor{i}").read_text()) for i in range(2)]
    assert all(assigned), f"each worker holds raw partitions: {assigned}"
    assert not assigned[0] & assigned[1] and assigned[0] | assigned[1] == {0, 1, 2, 3}, assigned
    counts = {topic: sum(c.values()) for topic, c in found.items()}
    print(f"\ne2e, 2 workers: {counts}")
