"""``runner.py local`` as a process, against the Coinbase simulator and against a real recording (replay server).

Records are read back the way a user would: a plain ``websockets`` client
on the stream, fastavro and pyarrow on the files.  They are checked against
what the simulator's journal or the recording says was sent, computed here
without the project's standardiser.  The stream has no history: a client
sees records from the moment it subscribed, so what it received must be
exactly the end of each feed and symbol's records in the files.
"""

from __future__ import annotations

import asyncio
import glob
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
import websockets

from l3_atom.consume import format_json
from tests.book_rebuild import Rebuild
from tests.conftest import recordings_dir
from tests.exchanges import test_coinbase as coinbase_recording
from tests.kafka_reader import Received
from tests.local.helpers import LocalRun, http_json, ms_of_iso, published, read_avro_tree
from tests.recorded import ws_frames
from tests.test_e2e_coinbase import BOOK_SIDE, OTHER_SIDE, check_book, expected_records, must_publish, sim_stats
from tests.test_e2e_coinbase import published as by_contract_fields

SYMBOLS = ("BTC.USD", "ETH.USD")
FLOW_MESSAGES = 4000
RATE = 2000
FAULT_EVERY = 1500
IDLE_S = 1.0
EVERYTHING = {"op": "subscribe"}
BTC_TRADES = {"op": "subscribe", "feeds": ["trades_l3"], "symbols": ["coinbase_BTC.USD"]}
TRADES_AND_TICKERS = {"op": "subscribe", "feeds": ["trades_l3", "ticker"]}


def read_parquet_tree(directory: Path) -> list[Received]:
    """Every Parquet file's rows (feed from the path), each file in its row order."""
    records = []
    for path in sorted(glob.glob(f"{directory}/**/*.parquet", recursive=True)):
        topic = Path(path).relative_to(directory).parts[0]
        for index, value in enumerate(pq.read_table(path).to_pylist()):
            key = value["key"] if topic == "dead_letter" else f"{value['exchange']}_{value['symbol']}"
            records.append(Received(topic, 0, index, key, value))
    return records


async def stream(url: str, requests: list[dict], done: Callable[[], bool]) -> list[list[dict]]:
    """One client per request; each reads until ``done()`` and then a second of silence.  Returns their records."""

    async def client(request: dict) -> list[dict]:
        async with websockets.connect(url, max_size=None) as ws:
            assert json.loads(await ws.recv())["type"] == "info"
            await ws.send(json.dumps(request))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            messages = []
            while True:
                try:
                    messages.append(json.loads(await asyncio.wait_for(ws.recv(), IDLE_S)))
                except TimeoutError:
                    if await asyncio.to_thread(done):
                        return messages

    return await asyncio.gather(*(client(request) for request in requests))


def assert_tail_of(messages: list[dict], records: list[Received], wanted: Callable[[Received], bool]) -> int:
    """The client's records, per feed and symbol, are the files' last ones for that feed and symbol, exactly."""
    # A book subscriber first gets the book as it stands (a "snapshot" message), then records.
    snapshots = [m for m in messages if m.get("type") == "snapshot"]
    assert all(s["feed"] in ("lob", "lob_l3") and s["records"] is not None for s in snapshots), snapshots[:3]
    messages = [m for m in messages if m.get("type") != "snapshot"]
    assert all("topic" in m for m in messages), [m for m in messages if "topic" not in m][:3]
    received: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for message in messages:
        received[(message["topic"], message["key"])].append(message)
    written: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        if wanted(r):
            written[(r.topic, r.key)].append(orjson.loads(format_json(r.topic, r.key, r.value)))
    assert set(received) <= set(written)
    for stream_key, got in received.items():
        assert got == written[stream_key][-len(got):], f"{stream_key}: not the files' last {len(got)} records"
    return len(messages)


@pytest.mark.timeout(120)
def test_simulated_exchange_to_websocket_clients_and_parquet(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    parquet_dir = tmp_path / "parquet"
    with LocalRun(tmp_path) as run:
        run.start_simulator(
            "--seed", "11", "--rate", str(RATE), "--products", "BTC-USD,ETH-USD", "--journal", str(journal),
            "--max-messages", str(FLOW_MESSAGES), "--fault", "malformed_json", "--fault-every", str(FAULT_EVERY),
        )
        run.start_local(
            "--source", "coinbase", "--symbol", SYMBOLS[0], "--symbol", SYMBOLS[1], *run.endpoint_args(),
            "--feeds", "lob_l3,trades_l3,ticker", "--parquet", str(parquet_dir),
        )
        faults = FLOW_MESSAGES // FAULT_EVERY

        def finished() -> bool:
            if sim_stats(run)["messages_generated"] < FLOW_MESSAGES:
                return False
            expected = must_publish(expected_records(journal), journal) + faults
            return published(run.stats()) >= expected

        everything, btc_trades = asyncio.run(stream(run.stream_url, [EVERYTHING, BTC_TRADES], finished))
        stats = run.stats()
        api = f"http://127.0.0.1:{run.serve_port}"
        book = http_json(f"{api}/book/coinbase/BTC.USD?depth=3&level=l3")
        candle = http_json(f"{api}/candles/coinbase/BTC.USD/1m")
        run.stop("local")

    records = read_parquet_tree(parquet_dir)
    found = by_contract_fields(records)
    expected = expected_records(journal)
    for topic in ("trades_l3", "ticker"):
        assert found[topic] == expected[topic], f"{topic}: Parquet records differ from what the simulator sent"
    check_book(found, expected, journal)
    dead = [r.value for r in records if r.topic == "dead_letter"]
    assert len(dead) == faults and all(d["error"].startswith("malformed JSON") for d in dead)

    total = assert_tail_of(everything, records, lambda r: True)
    trades = assert_tail_of(btc_trades, records, lambda r: r.topic == "trades_l3" and r.key == "coinbase_BTC.USD")
    assert total > len(records) // 2 and trades > 0, (total, trades, len(records))
    assert stats["outputs"]["websocket"]["dropped"] == 0
    print(f"\nsimulator -> local: {len(records)} records in Parquet; websocket clients got {total} and {trades}")
    check_query_apis(book, candle, records)


def check_query_apis(book: dict, candle: dict, records: list[Received]) -> None:
    """The book and candle APIs of ``runner.py local`` agree with a rebuild from the records it wrote."""
    rebuilt = Rebuild()
    # Files keep each book's records in order; a snapshot sorts after the events its sequence covers.
    for r in sorted((r.value for r in records if r.topic == "lob_l3" and r.key == "coinbase_BTC.USD"),
                    key=lambda v: (v["sequence"], v["is_snapshot"])):
        rebuilt.apply(r)
    assert book["orders"] == len(rebuilt.orders)
    assert Decimal(book["bids"][0][0]) == rebuilt.levels("bid", 1)[0][0]
    window = [r.value for r in records if r.topic == "trades_l3" and r.key == "coinbase_BTC.USD"
              and candle["start"] <= r.value["event_timestamp"] < candle["end"]]
    assert candle["trade_count"] == len(window)
    assert Decimal(candle["volume"]) == sum(v["size"] for v in window)


def recording_records(folder: Path) -> dict[str, Counter]:
    """What the recording's frames must give, read here from the frames (level2, ticker and matches channels)."""

    expected: dict[str, Counter] = defaultdict(Counter)
    for frame in ws_frames(folder):
        m = json.loads(frame)
        kind, symbol = m["type"], m.get("product_id", "").replace("-", ".")
        if kind in ("match", "last_match"):
            expected["trades_l3"][(
                symbol, str(m["trade_id"]), Decimal(m["price"]), Decimal(m["size"]), OTHER_SIDE[m["side"]],
                m["maker_order_id"], m["taker_order_id"], m["sequence"], ms_of_iso(m["time"]),
            )] += 1
        elif kind == "ticker" and "time" in m:
            expected["ticker"][(
                symbol, Decimal(m["best_bid"]), Decimal(m["best_ask"]), Decimal(m["price"]), Decimal(m["last_size"]),
                m["sequence"], ms_of_iso(m["time"]),
            )] += 1
        elif kind == "snapshot":
            for side, levels in (("bid", m["bids"]), ("ask", m["asks"])):
                for price, size in levels:
                    expected["lob"][(symbol, side, Decimal(price), Decimal(size), True, None)] += 1
        elif kind == "l2update":
            for side, price, size in m["changes"]:
                expected["lob"][(symbol, BOOK_SIDE[side], Decimal(price), Decimal(size), False, ms_of_iso(m["time"]))] += 1
    return expected


def as_expected(records: list[Received]) -> dict[str, Counter]:
    found: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        v: dict[str, Any] = r.value
        assert r.key == f"coinbase_{v.get('symbol')}", r
        if r.topic == "trades_l3":
            found[r.topic][(v["symbol"], v["trade_id"], v["price"], v["size"], v["taker_side"], v["maker_order_id"],
                            v["taker_order_id"], v["sequence"], v["event_timestamp"])] += 1
        elif r.topic == "ticker":
            found[r.topic][(v["symbol"], v["bid_price"], v["ask_price"], v["last_price"], v["last_size"],
                            v["sequence"], v["event_timestamp"])] += 1
        elif r.topic == "lob":
            found[r.topic][(v["symbol"], v["side"], v["price"], v["size"], v["is_snapshot"],
                            v["event_timestamp"])] += 1
        else:
            raise AssertionError(f"unexpected {r.topic} record: {v}")
    return found


@pytest.mark.timeout(120)
def test_recorded_coinbase_traffic_to_avro_parquet_and_websocket(tmp_path: Path) -> None:
    recordings = recordings_dir()
    if recordings is None:
        pytest.skip("no recorded traffic: set L3_ATOM_RECORDINGS or put it in ../shared/recordings")
    folder = recordings / coinbase_recording.RECORDING
    expected = recording_records(folder)
    counts = {topic: sum(c.values()) for topic, c in expected.items()}
    assert counts == coinbase_recording.expected_counts(folder)
    avro_dir, parquet_dir = tmp_path / "avro", tmp_path / "parquet"
    with LocalRun(tmp_path) as run:
        run.start_replay(folder)
        symbols = [arg for symbol in coinbase_recording.SYMBOLS for arg in ("--symbol", symbol)]
        run.start_local(
            "--source", "coinbase", *symbols, *run.endpoint_args(), "--avro", str(avro_dir),
            "--parquet", str(parquet_dir),
        )

        def replayed() -> bool:
            replay = http_json(f"{run.simulator_rest_url}/_replay/stats")
            return replay["frames_sent"] >= replay["frames_recorded"] and published(run.stats()) >= sum(counts.values())

        [trades_and_tickers] = asyncio.run(stream(run.stream_url, [TRADES_AND_TICKERS], replayed))
        stats = run.stats()
        run.stop("local")

    assert stats["dead_letters"] == 0, stats["sources"]
    avro = [
        Received(path.split("/")[0], 0, index, f"coinbase_{value['symbol']}", value)
        for path, values in read_avro_tree(avro_dir).items()
        for index, value in enumerate(values)
    ]
    assert as_expected(avro) == expected
    parquet = read_parquet_tree(parquet_dir)
    assert sorted(map(repr, (r.value for r in parquet))) == sorted(map(repr, (r.value for r in avro)))
    streamed = assert_tail_of(trades_and_tickers, avro, lambda r: r.topic in ("trades_l3", "ticker"))
    print(f"\nrecording -> local: {counts}; websocket client got {streamed} trades and tickers")
