"""``l3_atom.stream`` (the embedding API) against the Coinbase simulator, a real process.

Records are checked against what the simulator's journal says was sent
(computed without the project's standardiser), typed as the project's
Records with exact Decimals; a slow reader pauses the connection and still
loses nothing; leaving or cancelling leaves no task; mistakes raise at entry.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from l3_atom import FEED_OF, stream
from l3_atom.avro.codecs import parsed_schema
from l3_atom.data_source import UnknownSymbol
from l3_atom.errors import UserError
from l3_atom.infra.processes import LOOPBACK, PROJECT_ROOT
from l3_atom.sources import UnknownSource
from l3_atom.stream_processing.records import RECORDS
from tests.kafka_reader import Received
from tests.local.helpers import ENV, LocalRun
from tests.test_e2e_coinbase import expected_records, published, sim_stats

FLOW_MESSAGES = 3000
RATE = 1000
SMALL_BUS = 16
SLOW_READ_S = 0.5
IDLE_S = 1.0
# Frames a connection held while a book snapshot was fetched go on the bus at once, past its capacity.
BUS_BOUND = 4 * SMALL_BUS
WAIT_S = 90.0
EXAMPLE = PROJECT_ROOT / "examples" / "stream_trades.py"
EXAMPLE_TRADES = 12


def endpoints(run: LocalRun) -> dict:
    return {
        "ws_urls": {"coinbase": f"ws://{LOOPBACK}:{run.source_port}/"},
        "rest_urls": {"coinbase": run.simulator_rest_url},
    }


def as_received(record: object) -> Received:
    value = record.asdict()
    return Received(FEED_OF[type(record)], 0, 0, f"{value['exchange']}_{value['symbol']}", value)


async def read_all(run: LocalRun, journal: Path, **options: object) -> tuple[list[Received], dict]:
    """Every record until the journal's trades are all in; the first reads are slow (a sluggish consumer)."""
    received: list[Received] = []
    async with stream({"coinbase": ["BTC.USD", "ETH.USD"]}, feeds=["trades_l3", "lob_l3"], **endpoints(run),
                      **options) as records:
        paused_while_slow = 0
        while True:
            try:
                record = await asyncio.wait_for(anext(records), IDLE_S)
            except TimeoutError:
                # Quiet: the simulator may have sent everything.
                if await asyncio.to_thread(_complete, run, journal, received):
                    break
                continue
            assert isinstance(record, RECORDS[FEED_OF[type(record)]])
            received.append(as_received(record))
            if len(received) <= 3:
                await asyncio.sleep(SLOW_READ_S)
                paused_while_slow = records.stats()["sources"]["coinbase"]["paused"]
        stats = records.stats()
        stats["paused_while_slow"] = paused_while_slow
    return received, stats


def _complete(run: LocalRun, journal: Path, received: list[Received]) -> bool:
    if sim_stats(run)["messages_generated"] < FLOW_MESSAGES:
        return False
    return published(received)["trades_l3"] == expected_records(journal)["trades_l3"]


@pytest.mark.timeout(180)
def test_stream_yields_the_simulators_trades_exactly_typed_and_slows_the_connection_for_a_slow_reader(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal.jsonl"
    with LocalRun(tmp_path) as run:
        run.start_simulator(
            "--seed", "5", "--rate", str(RATE), "--products", "BTC-USD,ETH-USD", "--journal", str(journal),
            "--max-messages", str(FLOW_MESSAGES),
        )
        received, stats = asyncio.run(
            asyncio.wait_for(read_all(run, journal, bus_frames=SMALL_BUS, queue_batches=1), WAIT_S)
        )
    expected = expected_records(journal)
    found = published(received)
    assert found["trades_l3"] == expected["trades_l3"], "trades differ from what the simulator sent"
    assert sum(found["trades_l3"].values()) > 0
    # The records' fields are the schemas' (the Records are the one typed form of static/schemas).
    for topic in {r.topic for r in received}:
        value = next(r.value for r in received if r.topic == topic)
        assert list(value) == [field["name"] for field in parsed_schema(topic)["fields"]]
    trades = [r.value for r in received if r.topic == "trades_l3"]
    assert all(type(t["price"]) is Decimal and type(t["size"]) is Decimal for t in trades)
    coinbase = stats["sources"]["coinbase"]
    # Backpressure: the small bus filled while the reader slept, and stayed bounded (3000 frames were sent).
    assert stats["paused_while_slow"] > 0, stats
    assert coinbase["bus_high_water"] <= BUS_BOUND, coinbase
    print(f"\nstream: {len(received)} records ({len(trades)} trades) equal the journal; "
          f"bus paused {coinbase['paused']} times, high water {coinbase['bus_high_water']}/{SMALL_BUS}")


async def _cancelled_mid_stream(run: LocalRun) -> set[asyncio.Task]:
    first = asyncio.Event()

    async def reader() -> None:
        async with stream({"coinbase": ["BTC.USD"]}, feeds=["lob_l3"], **endpoints(run)) as records:
            async for _record in records:
                first.set()

    task = asyncio.create_task(reader())
    await asyncio.wait_for(first.wait(), WAIT_S)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return asyncio.all_tasks() - {asyncio.current_task()}


async def _left_early(run: LocalRun) -> tuple[object, set[asyncio.Task]]:
    async with stream({"coinbase": ["BTC.USD"]}, feeds=["lob_l3"], **endpoints(run)) as records:
        async for record in records:
            break
    return record, asyncio.all_tasks() - {asyncio.current_task()}


@pytest.mark.timeout(120)
def test_leaving_or_cancelling_leaves_no_task_and_mistakes_raise_at_entry(tmp_path: Path) -> None:
    with LocalRun(tmp_path) as run:
        run.start_simulator("--seed", "6", "--rate", "200", "--products", "BTC-USD")
        assert asyncio.run(_cancelled_mid_stream(run)) == set()
        record, left = asyncio.run(_left_early(run))
        assert left == set()
        assert FEED_OF[type(record)] == "lob_l3" and record.symbol == "BTC.USD"

        async def enter(sources: dict, feeds: list[str]) -> None:
            async with stream(sources, feeds=feeds, **endpoints(run)):
                raise AssertionError("entered a stream that should have been refused")

        with pytest.raises(UnknownSymbol, match=r"BTC\.USDX \(did you mean: BTC\.USD"):
            asyncio.run(enter({"coinbase": ["BTC.USDX"]}, ["trades_l3"]))
        with pytest.raises(UnknownSource, match="coinbas.*did you mean: coinbase"):
            asyncio.run(enter({"coinbas": ["BTC.USD"]}, ["trades_l3"]))
        with pytest.raises(UserError, match=r"trades \(did you mean trades_l3\?\)"):
            asyncio.run(enter({"coinbase": ["BTC.USD"]}, ["trades"]))


@pytest.mark.timeout(120)
def test_the_example_script_prints_the_simulators_trades(tmp_path: Path) -> None:
    with LocalRun(tmp_path) as run:
        run.start_simulator("--seed", "7", "--rate", "500", "--products", "BTC-USD")
        done = subprocess.run(
            [sys.executable, str(EXAMPLE), "--ws-url", f"ws://{LOOPBACK}:{run.source_port}/",
             "--rest-url", run.simulator_rest_url, "--limit", str(EXAMPLE_TRADES)],
            env={**os.environ, **ENV}, capture_output=True, text=True, timeout=WAIT_S, check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == EXAMPLE_TRADES, done.stdout
    for line in lines:
        feed, symbol, side, size, at, price = line.split()
        assert (feed, symbol, at) == ("trades_l3", "BTC.USD", "@") and side in ("buy", "sell")
        assert Decimal(size) > 0 and Decimal(price) > 0
