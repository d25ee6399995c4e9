"""Who publishes coverage: the book checks (book lost, resynced) and the connector (stream down/up, backfill).

The connector test runs the real Coinbase connector against the simulator, which
drops the connection while it keeps trading; the archived frames then go through
the real standardiser, as the processor would take them from the raw topic.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from l3_atom.avro.codecs import AvroEncoder, available_topics, decode_wire, parsed_schema
from l3_atom.books.integrity import Reason
from l3_atom.config import ConnectorSettings
from l3_atom.off_chain.coinbase import Coinbase
from l3_atom.sim.coinbase import CoinbaseSimulator
from l3_atom.stream_processing.book_checks import BookChecks
from l3_atom.stream_processing.raw_messages import RawMessageProcessor
from l3_atom.stream_processing.standardisers.coinbase import CoinbaseStandardiser
from l3_atom.topics import COVERAGE, ORIGIN_BACKFILL, TRADES_L3
from tests.sinks import ListSink

pytestmark = pytest.mark.timeout(120)
T0 = 1_700_000_000_000_000
SETTINGS = ConnectorSettings(0.05, 0.2, 30.0, 1 << 20)
MISSED = 400  # flow messages made while the connector is away
WAIT_S = 60


def test_a_lost_book_and_its_resync_are_coverage_notices() -> None:
    checks = BookChecks("binance")
    checks.snapshot("BTC.USDT", 10, T0)
    checks.update("BTC.USDT", 11, 10, T0 + 1000)
    assert checks.requests("BTC.USDT", T0 + 1000) == [] and checks.notices == []
    checks.update("BTC.USDT", 15, 13, T0 + 2000)
    assert [o.topic for o in checks.requests("BTC.USDT", T0 + 2000)] == ["book_resync"]
    [lost] = checks.notices
    assert (lost.topic, lost.key) == (COVERAGE, "binance_BTC.USDT")
    assert {k: lost.record[k] for k in ("kind", "feed", "start", "sequence_before")} == {
        "kind": "book_lost", "feed": "book", "start": (T0 + 2000) // 1000, "sequence_before": 15}
    assert lost.record["reason"].startswith(Reason.GAP.value)
    checks.notices.clear()
    checks.lost("BTC.USDT", Reason.CHECKSUM, "again", T0 + 3000)
    checks.requests("BTC.USDT", T0 + 3000)
    assert checks.notices == [], "one loss until a snapshot, however often it is seen"
    checks.snapshot("BTC.USDT", 40, T0 + 9_000_000)
    [resynced] = checks.notices
    assert {k: resynced.record[k] for k in ("kind", "start", "end", "sequence_after")} == {
        "kind": "book_resynced", "start": (T0 + 2000) // 1000, "end": (T0 + 9_000_000) // 1000, "sequence_after": 40}


def test_a_book_never_snapshotted_is_not_a_loss() -> None:
    checks = BookChecks("binance")
    checks.update("BTC.USDT", 5, 4, T0)
    checks.requests("BTC.USDT", T0 + 20_000_000)
    checks.snapshot("BTC.USDT", 6, T0 + 21_000_000)
    assert checks.notices == []


def processor() -> RawMessageProcessor:
    encoders = {topic: AvroEncoder(topic, index) for index, topic in enumerate(available_topics(), 1)}
    return RawMessageProcessor("coinbase", CoinbaseStandardiser(), encoders, 1 << 20)


def test_the_processor_publishes_the_notices_after_the_message_that_caused_them() -> None:
    raw = processor()
    headers = [("atom_timestamp", str(T0).encode())]
    snapshot = b'{"bids": [], "asks": [], "sequence": 10}'
    assert raw.process(snapshot, headers, "coinbase_raw", 0, 0, "coinbase_BTC-USD_full") == []
    received = (b'{"type": "received", "product_id": "BTC-USD", "sequence": %d, "order_id": "o", "side": "buy",'
                b' "time": "2023-11-14T22:13:20.000000Z"}')
    assert raw.process(received % 11, headers, "coinbase_raw", 0, 1, "coinbase_BTC-USD_full") == []
    topics = [out.topic for out in raw.process(received % 14, headers, "coinbase_raw", 0, 2, "coinbase_BTC-USD_full")]
    assert topics == ["book_resync", COVERAGE]
    assert raw.records[COVERAGE] == 1


def test_the_connector_publishes_the_outage_and_backfills_every_trade_missed() -> None:
    async def run() -> tuple[ListSink, dict]:
        async with CoinbaseSimulator(rate=2000, products=("BTC-USD",), seed=5) as sim:
            sink = ListSink()
            feed = Coinbase(["BTC.USD"], sink, SETTINGS, ws_url=sim.ws_url, rest_url=sim.rest_url)
            task = asyncio.create_task(feed.run())
            try:
                async with asyncio.timeout(WAIT_S):
                    while sim.stats()["trades"]["BTC-USD"] < 20:
                        await asyncio.sleep(0.05)
                    made_before = sim.stats()["trades"]["BTC-USD"]
                    await sim.disconnect_all(missed=MISSED)
                    assert sim.stats()["trades"]["BTC-USD"] > made_before, "trades were made while away"
                    while not any(r["kind"] == "trades_backfilled" for r in sink.coverage_records):
                        await asyncio.sleep(0.05)
                    made_after = sim.stats()["trades"]["BTC-USD"]
                    while sim.stats()["trades"]["BTC-USD"] < made_after + 10:
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.3)  # the last frames reach the sink
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            return sink, {"ids": sim.trade_ids("BTC-USD")}

    sink, made = asyncio.run(run())
    kinds = [r["kind"] for r in sink.coverage_records]
    assert kinds == ["stream_down", "stream_up", "trades_backfilled"]
    down, up, filled = sink.coverage_records
    assert up["start"] == down["start"] <= up["end"]
    assert (filled["start"], filled["end"], filled["feed"]) == (up["start"], up["end"], "trades")
    assert sink.marked and all(origin == ORIGIN_BACKFILL for _, _, origin in sink.marked)
    assert {key for key, _, _ in sink.marked} == {"coinbase_BTC-USD_full"}

    # The processor's view: every trade once, by id, the missed ones marked backfill.
    raw = processor()
    trades = []
    for key, frame, atom, _, _ in sink.rows:
        for out in raw.process(frame, [("atom_timestamp", str(atom).encode())], "coinbase_raw", 0, 0, key):
            if out.topic == TRADES_L3:
                trades.append(out)
    schemas = {index: parsed_schema(topic) for index, topic in enumerate(available_topics(), 1)}
    records = [decode_wire(out.value, schemas) for out in trades]
    ids = [int(r["trade_id"]) for r in records]
    assert max(Counter(ids).values()) == 1, "no trade twice"
    streamed_first = min(int(r["trade_id"]) for r in records if r["origin"] is None)
    expected = [i for i in made["ids"] if streamed_first <= i <= max(ids)]
    assert sorted(ids) == expected, "every trade the simulator made, from the first streamed on"
    backfilled = [int(r["trade_id"]) for r in records if r["origin"] == ORIGIN_BACKFILL]
    assert len(backfilled) > 0
    assert backfilled == sorted(backfilled), "backfilled trades in id order"
