"""The Coinbase simulator: a consistent, deterministic L3 flow, served with Coinbase's protocol.

Pipeline tests trust the simulator as if it were Coinbase, so these tests pin
down what that trust rests on: the flow replays onto a book that equals the
simulator's own level-3 snapshot, message shapes agree with recorded Coinbase
traffic, and the server's subscriptions, errors, faults, REST endpoints and
journal behave as documented.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import AsyncIterator, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import aiohttp
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from l3_atom.infra.processes import free_port, start_process, stop_process, wait_until
from l3_atom.sim.coinbase import (
    FAULT_KINDS,
    MAX_CATCH_UP_SECONDS,
    MAX_RATE,
    MAX_TICK_SECONDS,
    UNKNOWN_MESSAGE_TYPE,
    CoinbaseSimulator,
    Pacing,
)
from l3_atom.sim.orderflow import OrderFlow
from tests.recorded import http_bodies, ws_frames

pytestmark = pytest.mark.timeout(60)
T = TypeVar("T")

T0_US = 1_700_000_000_000_000
PRODUCTS = ("BTC-USD", "ETH-USD")
SEED = 7
FLOW_MESSAGES = 20_000
FAST_RATE = 20_000.0
SLOW_RATE = 2_000.0
RECV_TIMEOUT = 5.0
QUIET_SECONDS = 0.3
POLL_SECONDS = 0.01
BOUNDED_FLOW = 1000  # max_messages for tests that read until the flow falls quiet
OVERSIZE_BYTES = 3 << 20
FULL_TYPES = {"received", "open", "done", "match", "change"}
TIME_PATTERN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
SIZE_PATTERN = re.compile(r"^\d+\.\d{8}$")
PRICE_PATTERN = re.compile(r"^\d+\.\d{2}$")  # the simulated products quote in cents

# Key sets of the full channel as Coinbase documents and sends them.
RECEIVED_LIMIT_KEYS = {
    "type",
    "time",
    "product_id",
    "sequence",
    "order_id",
    "size",
    "price",
    "side",
    "order_type",
    "client_oid",
}
RECEIVED_MARKET_KEYS = RECEIVED_LIMIT_KEYS - {"price"}
OPEN_KEYS = {"type", "time", "product_id", "sequence", "order_id", "price", "remaining_size", "side"}
DONE_LIMIT_KEYS = {"type", "time", "product_id", "sequence", "order_id", "price", "remaining_size", "side", "reason"}
DONE_MARKET_KEYS = DONE_LIMIT_KEYS - {"price", "remaining_size"}
CHANGE_KEYS = {"type", "reason", "time", "sequence", "order_id", "side", "product_id", "new_size", "old_size", "price"}
# Ticker fields Coinbase added after the recording (2021) was made.
TICKER_KEYS_ADDED_SINCE_RECORDING = {"best_bid_size", "best_ask_size"}
# Product fields Coinbase removed on 2022-06-30, after the recording.
PRODUCT_KEYS_REMOVED_SINCE_RECORDING = {"base_min_size", "base_max_size", "max_market_funds"}


def run(coroutine: Coroutine[object, object, T]) -> T:
    """Run an async test body; ``asyncio.run`` cancels whatever it leaves behind, even on failure."""
    return asyncio.run(coroutine)


@contextlib.asynccontextmanager
async def simulator(**options: object) -> AsyncIterator[CoinbaseSimulator]:
    options = {"products": PRODUCTS, "seed": SEED, **options}
    async with CoinbaseSimulator(**options) as sim:
        yield sim


def connect(sim: CoinbaseSimulator) -> ws_connect:
    """A test client: frames of any size, and no flow control, so that closing while the flow runs
    does not wait for the close timeout (websockets stops reading when its unread queue is full)."""
    return ws_connect(sim.ws_url, max_size=None, max_queue=None)


@contextlib.asynccontextmanager
async def subscribed(
    sim: CoinbaseSimulator, channels: list, product_ids: tuple[str, ...] = PRODUCTS
) -> AsyncIterator[ClientConnection]:
    """A client that has subscribed and consumed the subscriptions ack."""
    async with connect(sim) as ws:
        await ws.send(orjson.dumps({"type": "subscribe", "product_ids": list(product_ids), "channels": channels}))
        ack = await recv_json(ws)
        assert ack["type"] == "subscriptions", ack
        yield ws


async def recv_json(ws: ClientConnection) -> dict:
    return orjson.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))


async def recv_until_quiet(ws: ClientConnection) -> list[str]:
    """Every frame that arrives until none has for ``QUIET_SECONDS``."""
    frames = []
    with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
        while True:
            frames.append(await asyncio.wait_for(ws.recv(), QUIET_SECONDS))
    return frames


async def wait_generated(sim: CoinbaseSimulator, count: int) -> None:
    deadline = time.monotonic() + RECV_TIMEOUT
    while sim.stats()["messages_generated"] < count:
        assert time.monotonic() < deadline, sim.stats()
        await asyncio.sleep(POLL_SECONDS)


async def get_json(sim: CoinbaseSimulator, path: str, expect_status: int = 200) -> object:
    async with aiohttp.ClientSession() as session, session.get(sim.rest_url + path) as response:
        assert response.status == expect_status, await response.text()
        return await response.json()


async def post_json(sim: CoinbaseSimulator, path: str, body: dict, expect_status: int = 200) -> dict:
    async with aiohttp.ClientSession() as session, session.post(sim.rest_url + path, json=body) as response:
        assert response.status == expect_status, await response.text()
        return await response.json()


def full_sequences_are_consecutive(messages: list[dict]) -> None:
    last: dict[str, int] = {}
    for message in messages:
        if message["type"] in FULL_TYPES:
            product = message["product_id"]
            assert product not in last or message["sequence"] == last[product] + 1, message
            last[product] = message["sequence"]


class ReferenceBook:
    """The slowest obviously-right L3 book, for checking the generator's own book against."""

    def __init__(self, snapshot: dict) -> None:
        self.orders: dict[str, list] = {}  # order id -> [side, price text, size, arrival]
        self.received: set[str] = set()
        self.arrivals = 0
        self.last_match: dict | None = None
        for side, rows in (("buy", snapshot["bids"]), ("sell", snapshot["asks"])):
            for price, size, order_id in rows:
                self._add(order_id, side, price, size)

    def _add(self, order_id: str, side: str, price: str, size: str) -> None:
        self.arrivals += 1
        self.orders[order_id] = [side, price, Decimal(size), self.arrivals]

    def level(self, side: str) -> tuple[Decimal, Decimal] | None:
        """Best price and the total size there, ignoring orders a match has just emptied."""
        prices = [Decimal(o[1]) for o in self.orders.values() if o[0] == side and o[2] > 0]
        if not prices:
            return None
        best = max(prices) if side == "buy" else min(prices)
        return best, sum(o[2] for o in self.orders.values() if o[0] == side and Decimal(o[1]) == best)

    def apply(self, message: dict) -> None:
        kind = message["type"]
        getattr(self, f"_on_{kind}")(message)

    def _on_received(self, message: dict) -> None:
        self.received.add(message["order_id"])

    def _on_open(self, message: dict) -> None:
        order_id = message["order_id"]
        assert order_id in self.received and order_id not in self.orders, message
        self._add(order_id, message["side"], message["price"], message["remaining_size"])
        bid, ask = self.level("buy"), self.level("sell")
        assert bid is None or ask is None or bid[0] < ask[0], f"crossed book after {message}"

    def _on_match(self, message: dict) -> None:
        maker = self.orders[message["maker_order_id"]]
        side, price, size, arrival = maker
        assert message["taker_order_id"] in self.received
        assert side == message["side"] and price == message["price"], message
        assert self.level(side)[0] == Decimal(price), "maker is not at the best price"
        same_level = [o[3] for o in self.orders.values() if o[0] == side and o[1] == price and o[2] > 0]
        assert arrival == min(same_level), "maker is not first in time priority"
        assert Decimal(message["size"]) <= size
        maker[2] = size - Decimal(message["size"])
        self.last_match = message

    def _on_ticker(self, message: dict) -> None:
        match = self.last_match
        assert match is not None and message["trade_id"] == match["trade_id"]
        assert message["sequence"] == match["sequence"] and message["last_size"] == match["size"]
        assert message["side"] != match["side"], "ticker side is the taker's, match side the maker's"
        assert Decimal(message["price"]) == Decimal(match["price"])
        for side, price_key, size_key in (("buy", "best_bid", "best_bid_size"), ("sell", "best_ask", "best_ask_size")):
            assert self.level(side) == (Decimal(message[price_key]), Decimal(message[size_key])), message

    def _on_done(self, message: dict) -> None:
        order = self.orders.pop(message["order_id"], None)
        if order is None:  # a taker that never rested: Coinbase says to ignore it for the book
            assert message["order_id"] in self.received and message["reason"] == "filled"
            return
        if message["reason"] == "filled":
            assert order[2] == 0 and Decimal(message["remaining_size"]) == 0, message
        else:
            assert message["reason"] == "canceled" and Decimal(message["remaining_size"]) == order[2], message

    def _on_change(self, message: dict) -> None:
        order = self.orders[message["order_id"]]
        assert Decimal(message["old_size"]) == order[2] > Decimal(message["new_size"]) > 0
        assert message["price"] == order[1]
        order[2] = Decimal(message["new_size"])

    def snapshot(self, sequence: int) -> dict:
        def rows(side: str, best_first: int) -> list[list]:
            orders = sorted(
                ((order_id, o) for order_id, o in self.orders.items() if o[0] == side),
                key=lambda item: (best_first * Decimal(item[1][1]), item[1][3]),
            )
            return [[o[1], f"{o[2]:.8f}", order_id] for order_id, o in orders]

        return {"bids": rows("buy", -1), "asks": rows("sell", 1), "sequence": sequence}


# ---------------------------------------------------------------- the order flow


def test_same_seed_gives_the_same_messages_however_they_are_taken() -> None:
    whole = OrderFlow(SEED, PRODUCTS).take(3000, T0_US)
    chunked_flow = OrderFlow(SEED, PRODUCTS)
    chunked = [m for size in (1, 7, 492, 2500) for m in chunked_flow.take(size, T0_US)]
    assert chunked == whole
    assert OrderFlow(SEED + 1, PRODUCTS).take(3000, T0_US) != whole


def test_sequences_and_trade_ids_increase_per_product() -> None:
    messages = OrderFlow(SEED, PRODUCTS).take(FLOW_MESSAGES, T0_US)
    full_sequences_are_consecutive(messages)
    last_ticker: dict[str, int] = {}
    last_trade: dict[str, int] = {}
    for message in messages:
        product = message["product_id"]
        if message["type"] == "ticker":
            assert message["sequence"] > last_ticker.get(product, 0)
            last_ticker[product] = message["sequence"]
        if message["type"] == "match":
            assert product not in last_trade or message["trade_id"] == last_trade[product] + 1
            last_trade[product] = message["trade_id"]
    assert set(last_trade) == set(PRODUCTS), "every product should trade"


def test_flow_replays_onto_a_book_equal_to_the_level3_snapshot() -> None:
    flow = OrderFlow(SEED, PRODUCTS)
    books = {product: ReferenceBook(flow.snapshot(product)) for product in PRODUCTS}
    messages = flow.take(FLOW_MESSAGES, T0_US)
    while flow.pending_count:  # finish the last order event, so the books hold no message not handed out
        messages += flow.take(1, T0_US)
    kinds = defaultdict(int)
    for message in messages:
        books[message["product_id"]].apply(message)
        kinds[(message["type"], message.get("order_type"), message.get("reason"))] += 1
    for product in PRODUCTS:
        snapshot = flow.snapshot(product)
        assert books[product].snapshot(snapshot["sequence"]) == snapshot
        assert snapshot["sequence"] == flow.sequence(product)
    for kind in [("received", "limit", None), ("received", "market", None), ("open", None, None),
                 ("match", None, None), ("change", None, "STP"), ("done", None, "filled"),
                 ("done", None, "canceled"), ("ticker", None, None)]:  # fmt: skip
        assert kinds[kind] > 0, f"no {kind} in the flow"


def test_full_channel_messages_have_coinbase_shapes() -> None:
    flow = OrderFlow(SEED, PRODUCTS)
    for message in flow.take(FLOW_MESSAGES, T0_US):
        kind, keys = message["type"], set(message)
        if kind == "received":
            assert keys == (RECEIVED_LIMIT_KEYS if message["order_type"] == "limit" else RECEIVED_MARKET_KEYS)
            assert message["client_oid"] == "" or UUID_PATTERN.match(message["client_oid"])
        elif kind == "open":
            assert keys == OPEN_KEYS
        elif kind == "done":
            assert keys in (DONE_LIMIT_KEYS, DONE_MARKET_KEYS)
        elif kind == "change":
            assert keys == CHANGE_KEYS
        assert TIME_PATTERN.match(message["time"]) and isinstance(message["sequence"], int)
        for key in ("order_id", "maker_order_id", "taker_order_id"):
            assert key not in message or UUID_PATTERN.match(message[key])
        for key in ("size", "remaining_size", "new_size", "old_size", "last_size", "best_bid_size", "best_ask_size"):
            assert key not in message or SIZE_PATTERN.match(message[key]), (key, message)
        if kind != "ticker":
            assert "price" not in message or PRICE_PATTERN.match(message["price"]), message
    assert flow.heartbeat("BTC-USD", T0_US).keys() == {"type", "last_trade_id", "product_id", "sequence", "time"}


def test_ticker_and_match_shapes_agree_with_recorded_coinbase(recordings: Path) -> None:
    recorded: dict[str, dict] = {}
    for frame in ws_frames(recordings / "coinbase"):
        message = orjson.loads(frame)
        if isinstance(message, dict) and message.get("type") in ("ticker", "match", "last_match"):
            recorded.setdefault(message["type"], message)
    simulated: dict[str, dict] = {}
    for message in OrderFlow(SEED, PRODUCTS).take(FLOW_MESSAGES, T0_US):
        simulated.setdefault(message["type"], message)

    assert set(simulated["match"]) == set(recorded["match"]) == set(recorded["last_match"])
    assert set(simulated["ticker"]) - set(recorded["ticker"]) == TICKER_KEYS_ADDED_SINCE_RECORDING
    assert set(recorded["ticker"]) <= set(simulated["ticker"])
    for kind in ("match", "ticker"):
        for key, value in recorded[kind].items():
            assert type(simulated[kind][key]) is type(value), (kind, key)


def test_products_agree_with_recorded_coinbase(recordings: Path) -> None:
    body = next(body for url, body in http_bodies(recordings / "coinbase").items() if url.endswith("/products"))
    recorded = orjson.loads(body)[0]
    simulated = OrderFlow(SEED, PRODUCTS).products()
    assert [p["id"] for p in simulated] == list(PRODUCTS)
    for product in simulated:
        assert set(recorded) - PRODUCT_KEYS_REMOVED_SINCE_RECORDING <= set(product)
        for key in set(recorded) & set(product):
            assert type(product[key]) is type(recorded[key]), key
        assert product["status"] == "online" and product["trading_disabled"] is False


# ---------------------------------------------------------------- the server


def test_subscribe_is_acknowledged_and_the_flow_starts_at_the_snapshot() -> None:
    async def body() -> None:
        async with simulator(rate=SLOW_RATE) as sim:
            before = await get_json(sim, "/products/BTC-USD/book?level=3")
            async with connect(sim) as ws:
                channels = ["full", {"name": "ticker", "product_ids": ["ETH-USD"]}, {"name": "heartbeat"}]
                await ws.send(orjson.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": channels}))
                assert await recv_json(ws) == {
                    "type": "subscriptions",
                    "channels": [
                        {"name": "full", "product_ids": ["BTC-USD"], "account_ids": None},
                        {"name": "ticker", "product_ids": ["ETH-USD"], "account_ids": None},
                        {"name": "heartbeat", "product_ids": ["BTC-USD"], "account_ids": None},
                    ],
                }
                messages = [await recv_json(ws)]
                while messages[-1]["type"] != "heartbeat":
                    messages.append(await recv_json(ws))
        flow = [m for m in messages if m["type"] != "heartbeat"]
        assert flow[0]["sequence"] == before["sequence"] + 1, "the flow must wait for the first subscriber"
        assert {m["product_id"] for m in flow if m["type"] in FULL_TYPES} == {"BTC-USD"}
        assert {m["product_id"] for m in flow if m["type"] == "ticker"} <= {"ETH-USD"}
        full_sequences_are_consecutive(flow)
        heartbeat = messages[-1]
        btc_full = [m for m in flow if m["type"] in FULL_TYPES]
        btc_matches = [m for m in btc_full if m["type"] == "match"]
        assert heartbeat["product_id"] == "BTC-USD" and heartbeat["sequence"] == btc_full[-1]["sequence"]
        assert not btc_matches or heartbeat["last_trade_id"] == btc_matches[-1]["trade_id"]

    run(body())


def test_same_seed_gives_the_same_frames_over_the_websocket() -> None:
    async def first_frames() -> list[dict]:
        async with simulator(rate=FAST_RATE, max_messages=500) as sim, subscribed(sim, ["full", "ticker"]) as ws:
            messages = [await recv_json(ws) for _ in range(500)]
        return [{k: v for k, v in m.items() if k != "time"} for m in messages]

    async def body() -> None:
        assert await first_frames() == await first_frames()

    run(body())


def test_invalid_requests_get_coinbase_errors_and_start_nothing() -> None:
    async def body() -> None:
        async with simulator() as sim, connect(sim) as ws:
            await ws.send(orjson.dumps({"type": "subscribe", "product_ids": ["FOO-BAR"], "channels": ["full"]}))
            assert await recv_json(ws) == {
                "type": "error",
                "message": "Failed to subscribe",
                "reason": "FOO-BAR is not a valid product",
            }
            await ws.send(orjson.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["level9"]}))
            assert (await recv_json(ws))["reason"] == "level9 is not a valid channel"
            await ws.send("{not json")
            assert await recv_json(ws) == {"type": "error", "message": "Malformed JSON"}
            await asyncio.sleep(QUIET_SECONDS)
            assert sim.stats()["messages_generated"] == 0

    run(body())


def test_unsubscribe_leaves_the_rest_subscribed() -> None:
    async def body() -> None:
        async with (
            simulator(rate=FAST_RATE, max_messages=BOUNDED_FLOW) as sim,
            subscribed(sim, ["full", "ticker"]) as ws,
        ):
            await ws.send(orjson.dumps({"type": "unsubscribe", "product_ids": ["ETH-USD"], "channels": ["full"]}))
            await ws.send(orjson.dumps({"type": "unsubscribe", "channels": ["ticker"]}))
            acks = []
            while len(acks) < 2:
                message = await recv_json(ws)
                if message["type"] == "subscriptions":
                    acks.append(message)
            assert acks[-1]["channels"] == [{"name": "full", "product_ids": ["BTC-USD"], "account_ids": None}]
            after = [orjson.loads(frame) for frame in await recv_until_quiet(ws)]
            assert after and {(m["type"] in FULL_TYPES, m["product_id"]) for m in after} == {(True, "BTC-USD")}

    run(body())


def test_every_fault_kind_reaches_only_full_subscribers_of_its_product() -> None:
    async def body() -> None:
        async with (
            simulator(rate=SLOW_RATE, max_messages=BOUNDED_FLOW) as sim,
            subscribed(sim, ["full"], ("BTC-USD",)) as btc,
            subscribed(sim, ["full", "ticker"], ("ETH-USD",)) as eth,
        ):
            for kind in FAULT_KINDS:
                result = await post_json(
                    sim, "/_sim/inject", {"kind": kind, "product_id": "BTC-USD", "size": OVERSIZE_BYTES}
                )
                assert result["conns"] == [1], result
            await post_json(sim, "/_sim/inject", {"kind": "gremlins", "product_id": "BTC-USD"}, expect_status=400)
            btc_frames = await recv_until_quiet(btc)
            eth_frames = await recv_until_quiet(eth)
        kinds = [fault_kind(frame) for frame in btc_frames]
        assert [kind for kind in kinds if kind] == list(FAULT_KINDS)
        normal = [orjson.loads(frame) for frame, kind in zip(btc_frames, kinds, strict=True) if kind is None]
        full_sequences_are_consecutive(normal)  # faults take no sequence numbers
        assert all(fault_kind(frame) is None for frame in eth_frames)

    run(body())


def fault_kind(frame: str) -> str | None:
    """Which injected fault ``frame`` is, or None for a normal message."""
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return "malformed_json"
    if len(frame) == OVERSIZE_BYTES:
        return "oversize"
    if message["type"] == UNKNOWN_MESSAGE_TYPE:
        return "unknown_type"
    if message["type"] == "match" and "price" not in message:
        return "missing_field"
    if isinstance(message.get("price"), list):
        return "mistyped_field"
    return None


def test_scheduled_faults_come_every_n_messages() -> None:
    async def body() -> None:
        options = {"rate": FAST_RATE, "max_messages": 2000, "faults": ["unknown_type"], "fault_every": 500}
        async with simulator(**options) as sim, subscribed(sim, ["full", "ticker"]) as ws:
            await wait_generated(sim, 2000)
            frames = await recv_until_quiet(ws)
        assert [fault_kind(frame) for frame in frames].count("unknown_type") == 2000 // 500

    run(body())


def test_rest_products_book_and_ticker() -> None:
    async def body() -> None:
        async with simulator() as sim:
            products = await get_json(sim, "/products")
            assert [p["id"] for p in products] == list(PRODUCTS)
            assert await get_json(sim, "/products/ETH-USD") == products[1]
            level3 = await get_json(sim, "/products/BTC-USD/book?level=3")
            level2 = await get_json(sim, "/products/BTC-USD/book?level=2")
            level1 = await get_json(sim, "/products/BTC-USD/book")
            ticker = await get_json(sim, "/products/BTC-USD/ticker")
            assert await get_json(sim, "/products/NOPE-USD/book", 404) == {"message": "NotFound"}
            await get_json(sim, "/products/BTC-USD/book?level=4", 400)
            snapshot = sim.flow.snapshot("BTC-USD")
        assert {k: level3[k] for k in ("bids", "asks", "sequence")} == snapshot
        assert level3["auction_mode"] is False and TIME_PATTERN.match(level3["time"])
        for rows, direction in ((level3["bids"], -1), (level3["asks"], 1)):
            prices = [direction * Decimal(price) for price, _, _ in rows]
            assert prices == sorted(prices) and all(UUID_PATTERN.match(order_id) for _, _, order_id in rows)
        assert Decimal(level3["bids"][0][0]) < Decimal(level3["asks"][0][0])
        for side in ("bids", "asks"):
            totals: dict[str, list] = {}
            for price, size, _ in level3[side]:
                total = totals.setdefault(price, [price, Decimal(0), 0])
                total[1] += Decimal(size)
                total[2] += 1
            assert [[p, Decimal(s), n] for p, s, n in level2[side]] == list(totals.values())
            assert level1[side] == level2[side][:1]
        assert ticker.keys() == {"ask", "bid", "volume", "trade_id", "price", "size", "time"}
        assert ticker["bid"] == level1["bids"][0][0]

    run(body())


def test_journal_holds_exactly_the_frames_each_client_received(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    total = 3000

    async def body() -> dict[int, list[str]]:
        async with (
            simulator(rate=FAST_RATE, max_messages=total, journal_path=journal) as sim,
            connect(sim) as first,
            connect(sim) as second,
        ):
            await first.send(orjson.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["full"]}))
            await wait_generated(sim, 1)
            await second.send(
                orjson.dumps({"type": "subscribe", "product_ids": list(PRODUCTS), "channels": ["ticker"]})
            )
            await post_json(sim, "/_sim/inject", {"kind": "malformed_json", "product_id": "BTC-USD"})
            await wait_generated(sim, total)
            received = {1: await recv_until_quiet(first), 2: await recv_until_quiet(second)}
            assert sim.stats()["frames_sent"] == {"1": len(received[1]), "2": len(received[2])}
        return received

    received = run(body())
    journaled: dict[int, list[str]] = defaultdict(list)
    for line in journal.read_bytes().splitlines():
        entry = orjson.loads(line)
        journaled[entry["conn"]].append(entry["data"])
    assert journaled == received
    assert any(orjson.loads(frame)["type"] == "ticker" for frame in received[2][1:])


def test_disconnect_drops_everyone_and_resubscribers_see_a_gap() -> None:
    async def body() -> None:
        async with simulator(rate=SLOW_RATE) as sim:
            async with subscribed(sim, ["full"], ("BTC-USD",)) as ws:
                before = [await recv_json(ws)]
                assert await post_json(sim, "/_sim/disconnect", {"missed": 200}) == {"disconnected": 1}
                before += [orjson.loads(frame) for frame in await recv_until_quiet(ws)]
                assert ws.close_code == 1001
            async with subscribed(sim, ["full"], ("BTC-USD",)) as ws:
                after = await recv_json(ws)
            assert sim.stats()["connections_total"] == 2
        assert after["sequence"] > before[-1]["sequence"] + 1

    run(body())


@pytest.mark.parametrize("rate", [1.0, 7.5, 5000.0, MAX_RATE])
def test_the_pacing_owes_the_rate_tick_by_tick(rate: float) -> None:
    """Ticks of any length add up to the rate (the fraction carried over); the clock is the test's own."""
    pacing, sent = Pacing(rate), 0
    for elapsed in [pacing.tick, pacing.tick / 3, pacing.tick * 1.7] * 200:
        count = pacing.due(elapsed)
        pacing.sent(count)
        sent += count
    seconds = sum([pacing.tick, pacing.tick / 3, pacing.tick * 1.7]) * 200
    assert rate * seconds - 1 < sent <= rate * seconds


def test_the_pacing_does_not_owe_past_its_catch_up() -> None:
    """A late tick (a stalled loop, a slow client) is owed for at most MAX_CATCH_UP_SECONDS, not sent as a burst."""
    pacing = Pacing(5000.0)
    assert pacing.due(10.0) == 1 + 5000.0 * MAX_CATCH_UP_SECONDS


def test_the_running_flow_is_paced() -> None:
    """The simulator's own loop generates at most what its rate owes over the time it ran (the arithmetic is
    tested above without a clock; a loaded machine only makes it fall behind)."""
    rate, seconds = 5000.0, 1.0

    async def body() -> None:
        async with simulator(rate=rate) as sim, subscribed(sim, ["full", "ticker"]) as ws:
            loop = asyncio.get_running_loop()
            start, started = sim.stats()["messages_generated"], loop.time()
            await asyncio.sleep(seconds)
            generated, ran = sim.stats()["messages_generated"] - start, loop.time() - started
            assert 0 < generated <= rate * (ran + MAX_TICK_SECONDS) + Pacing(rate).max_owed, generated
            assert await recv_json(ws)

    run(body())


def test_command_line_announces_itself_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "simulator.log"
    command = [sys.executable, "-m", "l3_atom.sim.coinbase", "--port", str(port), "--products", "BTC-USD"]
    process = start_process(command, log_path=log)
    try:
        wait_until(lambda: "listening" in log.read_text(), timeout=RECV_TIMEOUT * 2, what="the simulator")
        url = f"http://127.0.0.1:{port}"
        assert log.read_text() == f"coinbase simulator listening on ws://127.0.0.1:{port}/ rest {url}\n"
        with urllib.request.urlopen(f"{url}/products", timeout=RECV_TIMEOUT) as response:
            assert [p["id"] for p in orjson.loads(response.read())] == ["BTC-USD"]
    finally:
        code = stop_process(process)
    assert code == 0
