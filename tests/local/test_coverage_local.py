"""``runner.py local``: coverage records reach the outputs whatever the feeds, and ``/coverage`` answers."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from l3_atom.config import Settings
from l3_atom.connector import feed_factory
from l3_atom.coverage import coverage_record
from l3_atom.local import cli
from l3_atom.local.bus import ConnectorCoverage
from l3_atom.local.outputs import LocalRecord
from l3_atom.local.outputs.queries import QueryOutput
from l3_atom.local.runtime import Runtime, SourceRuntime

T0_MS = 1_700_000_000_000
KEY = "coinbase_BTC.USD"


def outage(start: int, end: int) -> dict:
    return coverage_record(exchange="coinbase", symbol="BTC.USD", kind="stream_up", start=start, end=end,
                           reason="websocket closed", event_timestamp=end, atom_timestamp=end * 1000)


def test_a_connectors_coverage_record_is_output_decoded_whatever_the_feeds() -> None:
    make_feed = feed_factory(Settings(), "coinbase", ["BTC.USD"])
    runtime = SourceRuntime("coinbase", make_feed, ["trades_l3"], 1_000_000, cli.DEFAULT_BUS_FRAMES)
    runtime.sink.coverage(KEY, outage(T0_MS, T0_MS + 2500))
    [item] = asyncio.run(runtime.bus.take(10))
    assert isinstance(item, ConnectorCoverage)
    [record] = runtime.standardise([item])
    assert (record.topic, record.key) == ("coverage", KEY)
    assert record.value == outage(T0_MS, T0_MS + 2500)
    assert Runtime([runtime], ["trades_l3"]).stats()["records"] == {"trades_l3": 0, "coverage": 1}


def test_the_local_coverage_route_answers_the_holes_of_a_range() -> None:
    async def run() -> tuple[dict, int]:
        queries = QueryOutput([], 0)
        app = web.Application()
        queries.register(app)
        await queries.write([LocalRecord("coverage", KEY, outage(T0_MS, T0_MS + 2500))])
        async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
            url = server.make_url("/coverage/coinbase/BTC.USD")
            async with session.get(url, params={"feed": "trades", "start": T0_MS - 1000, "end": T0_MS + 2000}) as r:
                body = await r.json()
            async with session.get(url, params={"feed": "candles"}) as bad:
                return body, bad.status

    body, bad_status = asyncio.run(run())
    assert body["missing"] == [[T0_MS, T0_MS + 2000]] and body["missing_seconds"] == 2.0
    assert bad_status == 400
