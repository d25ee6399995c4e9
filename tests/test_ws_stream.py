"""The stream's book snapshot for new subscribers and its request limits (pure parts, no network), its
frames against aiohttp's, and on loopback a burst of records reaching a client whole, and how many bytes
a client that reads nothing holds before its records are dropped."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal
from typing import Any

import orjson
import pytest
import websockets
from aiohttp import WSMsgType, web
from aiohttp.http_websocket import WebSocketWriter

from l3_atom.consume import format_json
from l3_atom.http_app import serve_app
from l3_atom.infra.processes import LOOPBACK
from l3_atom.stream_processing.book_agent import BookStore
from l3_atom.ws_stream import REQUEST_BURST, STREAM_PATH, UNSENT_BYTES, StreamServer, _Client, text_frame

KEY = "coinbase_BTC.USD"
SMALL_QUEUE = 50
# Records published between two turns of the event loop (the gateway hands over a fetch at a time).
BATCH = 10
# Linux holds up to tcp_wmem's maximum (4 MiB by default) unsent for a socket left to autotune.
AUTOTUNED_SEND_BUFFER = 4 * 1024 * 1024
RECEIVE_TIMEOUT_S = 30.0


def lob_l3(event: str, order_id: str, side: str, price: str, size: str, sequence: int, snapshot: bool = False,
           atom: int = 1) -> dict[str, Any]:
    return {
        "exchange": "coinbase", "symbol": "BTC.USD", "event_type": event, "order_id": order_id, "side": side,
        "price": Decimal(price), "size": Decimal(size), "reason": None, "is_snapshot": snapshot,
        "sequence": sequence, "prev_sequence": None, "event_timestamp": 1, "atom_timestamp": atom,
    }


class _Quiet:
    """A websocket stand-in: the queue logic only."""


def test_a_new_book_subscriber_gets_the_book_as_snapshot_records_then_its_updates() -> None:
    stream = StreamServer(["lob_l3", "trades_l3"], [KEY], client_queue=100, books=BookStore())
    for record in (
        lob_l3("open", "a", "bid", "100.50", "1.5", 10, snapshot=True),
        lob_l3("open", "b", "ask", "101", "2", 10, snapshot=True),
        lob_l3("open", "c", "bid", "100.50", "0.25", 11, atom=2),
        lob_l3("done", "b", "ask", "101", "0", 12, atom=3),
    ):
        stream.publish("lob_l3", KEY, record)
    client = _Client(_Quiet(), capacity=100)
    stream.clients.add(client)
    stream._request(client, orjson.dumps({"op": "subscribe", "feeds": ["lob_l3"], "symbols": [KEY]}).decode())
    subscribed, snapshot = (orjson.loads(m) for m in client.queue)
    assert subscribed["type"] == "subscribed"
    assert snapshot["type"] == "snapshot" and snapshot["feed"] == "lob_l3" and snapshot["in_sync"]
    orders = {r["order_id"]: (r["side"], r["price"], r["size"], r["is_snapshot"], r["event_type"])
              for r in snapshot["records"]}
    assert orders == {"a": ("bid", "100.5", "1.5", True, "open"), "c": ("bid", "100.5", "0.25", True, "open")}
    assert {r["sequence"] for r in snapshot["records"]} == {12}
    # Subscribing again to what it has brings no second snapshot; the next update is queued as a record.
    stream._request(client, orjson.dumps({"op": "subscribe", "feeds": ["*"], "symbols": [KEY]}).decode())
    stream.publish("lob_l3", KEY, lob_l3("done", "a", "bid", "100.50", "0", 13, atom=4))
    kinds = [orjson.loads(m).get("type") or orjson.loads(m)["topic"] for m in list(client.queue)[2:]]
    assert kinds == ["subscribed", "lob_l3"]


def test_requests_beyond_the_burst_are_refused_until_the_allowance_comes_back() -> None:
    client = _Client(_Quiet(), capacity=100)
    allowed = [client.take_request() for _ in range(REQUEST_BURST + 5)]
    assert allowed == [True] * REQUEST_BURST + [False] * 5
    client.allowance_at -= 1.0  # a second later
    assert client.take_request()


def test_a_client_that_reads_nothing_fills_its_queue_after_a_bounded_number_of_bytes() -> None:
    """The kernel keeps at most ``UNSENT_BYTES`` unsent per client, so drops start long before 4 MiB."""

    async def scenario() -> tuple[int, int, int, dict[str, Any]]:
        stream = StreamServer(["trades_l3"], [KEY], SMALL_QUEUE)
        app = web.Application()
        stream.register(app)
        runner = await serve_app(app, LOOPBACK, 0)
        try:
            port = runner.addresses[0][1]
            # max_queue=1: the client library stops reading its socket as soon as one message waits.
            ws = await websockets.connect(f"ws://{LOOPBACK}:{port}{STREAM_PATH}", max_queue=1)
            try:
                await ws.recv()
                await ws.send('{"op": "subscribe"}')
                while not any(client.subscriptions for client in stream.clients):
                    await asyncio.sleep(0.01)
                (client,) = stream.clients
                unsent = client.ws._req.transport.get_extra_info("socket").getsockopt(
                    socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT
                )
                published = size = 0
                while stream.dropped == 0:
                    for _ in range(BATCH):
                        record = {"exchange": "coinbase", "symbol": "BTC.USD", "price": "100.5", "size": "0.25",
                                  "side": "buy", "trade_id": str(published), "sequence": published}
                        size += len(format_json("trades_l3", KEY, record).encode())
                        stream.publish("trades_l3", KEY, record)
                        published += 1
                    await asyncio.sleep(0.001)
                return unsent, published, size, stream.stats()
            finally:
                ws.transport.abort()
        finally:
            await runner.cleanup()

    unsent, published, size, stats = asyncio.run(scenario())
    assert unsent == UNSENT_BYTES
    assert stats["largest_client_queue"] == SMALL_QUEUE and stats["dropped"] > 0
    assert size < AUTOTUNED_SEND_BUFFER / 4, f"{size} bytes went out before the first drop"
    print(f"\nfirst drop after {published} records ({size} bytes) for a client that reads nothing")


class _CaptureTransport:
    """What aiohttp's websocket writer (or the batched path) writes, kept."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


class _Unpaused:
    """The protocol side of aiohttp's writer: never paused."""

    _paused = False


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65_535, 65_536, 70_000])
def test_a_batched_text_frame_is_the_frame_aiohttp_writes(length: int) -> None:
    payload = bytes(range(256)) * (length // 256) + b"x" * (length % 256)
    transport = _CaptureTransport()
    writer = WebSocketWriter(_Unpaused(), transport)
    asyncio.run(writer.send_frame(payload, WSMsgType.TEXT))
    assert text_frame(payload) == transport.data


def test_a_burst_of_records_reaches_a_client_whole_and_in_order() -> None:
    """Records queued together go out in few writes; a real client reads each as its own text message."""
    records = [{"exchange": "coinbase", "symbol": "BTC.USD", "price": Decimal("100.5"), "size": Decimal(n),
                "side": "buy", "trade_id": "x" * (n % 300), "sequence": n} for n in range(2_000)]

    async def scenario() -> tuple[list[str | bytes], dict[str, Any]]:
        stream = StreamServer(["trades_l3"], [KEY], client_queue=len(records))
        app = web.Application()
        stream.register(app)
        runner = await serve_app(app, LOOPBACK, 0)
        try:
            port = runner.addresses[0][1]
            async with websockets.connect(f"ws://{LOOPBACK}:{port}{STREAM_PATH}") as ws:
                await ws.recv()
                await ws.send('{"op": "subscribe"}')
                await ws.recv()
                for record in records:
                    stream.publish("trades_l3", KEY, record)
                received = [await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT_S) for _ in records]
            return received, stream.stats()
        finally:
            await runner.cleanup()

    received, stats = asyncio.run(scenario())
    assert all(isinstance(message, str) for message in received), "text messages"
    assert received == [format_json("trades_l3", KEY, record) for record in records]
    assert stats["sent"] >= len(records) and stats["dropped"] == 0


class _Closed:
    """A websocket whose close has begun."""

    closed = True


def test_nothing_is_written_after_a_close_began() -> None:
    client = _Client(_Closed(), capacity=10, transport=_CaptureTransport())
    for n in range(3):
        assert client.offer(f"r{n}")

    async def send() -> None:
        await asyncio.wait_for(client.send_forever(), RECEIVE_TIMEOUT_S)

    with pytest.raises(ConnectionResetError):
        asyncio.run(send())
    assert client.transport.data == b"" and client.sent == 0
