"""The bus between connector and standardiser: bounded, lossless, and a full bus pauses the connection's reading."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.server import ServerConnection, serve

from l3_atom.config import ConnectorSettings
from l3_atom.dead_letter import CONNECTOR
from l3_atom.feed import WebsocketConnection
from l3_atom.local.bus import BusSink, ConnectorDeadLetter, FrameBus, RawFrame

FRAMES = 50
CAPACITY = 4
# Shorter than the pause below: a watchdog that took a pause for silence would reconnect.
SILENCE_TIMEOUT_S = 0.2
PAUSE_S = 0.6


def frame(n: int) -> RawFrame:
    return RawFrame(f"k{n}", str(n).encode(), [])


def test_a_full_bus_asks_writers_to_wait_and_loses_nothing() -> None:
    async def scenario() -> None:
        bus = FrameBus(CAPACITY)
        waits = []
        for n in range(CAPACITY + 2):
            bus.put(frame(n))
            waits.append(bus.room())
        assert waits[: CAPACITY - 1] == [None] * (CAPACITY - 1)
        assert all(w is not None for w in waits[CAPACITY - 1 :]), "full: writers must wait"
        assert len(bus) == CAPACITY + 2 and bus.high_water == CAPACITY + 2 and bus.pauses == 3
        waiter = asyncio.ensure_future(waits[-1])
        await asyncio.sleep(0)
        assert not waiter.done()
        assert [f.key for f in await bus.take(3)] == ["k0", "k1", "k2"]
        await asyncio.wait_for(waiter, 1)
        for w in waits:
            if w is not None and w is not waits[-1]:
                await asyncio.wait_for(w, 1)
        bus.close()
        assert [f.key for f in await bus.take(100)] == ["k3", "k4", "k5"]
        assert await bus.take(100) == []

    asyncio.run(scenario())


def test_the_sink_keeps_the_connectors_dead_letter_in_stream_order() -> None:
    async def scenario() -> None:
        bus = FrameBus(CAPACITY)
        sink = BusSink("coinbase", bus, max_message_bytes=10_000)
        sink.write("coinbase_BTC-USD_full", b"{}", 7, "coinbase.0.1", "BTC.USD")
        sink.dead_letter(None, b"x" * 20_000, "too large", 8)
        first, second = await bus.take(10)
        assert first == RawFrame(
            "coinbase_BTC-USD_full", b"{}",
            [("atom_timestamp", b"7"), ("connection_id", b"coinbase.0.1"), ("symbol", b"BTC.USD")],
        )
        assert isinstance(second, ConnectorDeadLetter) and second.key == "coinbase"
        assert second.record["stage"] == CONNECTOR and second.record["original_size"] == 20_000
        assert len(second.record["original"]) < 10_000, "cut to the broker's limit, as KafkaRawSink does"
        assert sink.dead_letters == 1

    asyncio.run(scenario())


@pytest.mark.timeout(20)
def test_a_paused_connection_resumes_in_order_and_is_not_taken_for_silent() -> None:
    """The sink is full for longer than the silence timeout: no reconnect, every frame once, in order."""

    async def scenario() -> None:
        async def burst(ws: ServerConnection) -> None:
            await ws.recv()
            for n in range(FRAMES):
                await ws.send(str(n))
            await ws.wait_closed()

        bus = FrameBus(CAPACITY)
        received: list[bytes] = []

        async def on_open(connection: WebsocketConnection) -> None:
            await connection.send("subscribe")

        settings = ConnectorSettings(0.01, 0.05, SILENCE_TIMEOUT_S, 1024)
        async with serve(burst, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            connection = WebsocketConnection(
                f"ws://127.0.0.1:{port}/", "test", settings, on_open,
                lambda f, ts, cid: bus.put(RawFrame("k", f, [])), room=bus.room,
            )
            task = asyncio.create_task(connection.run())
            try:
                async with asyncio.timeout(10):
                    while len(bus) < CAPACITY:
                        await asyncio.sleep(0.01)
                    await asyncio.sleep(PAUSE_S)
                    assert len(bus) == CAPACITY, "reading stopped at the bus's capacity"
                    while len(received) < FRAMES:
                        received += [item.frame for item in await bus.take(CAPACITY)]
            finally:
                await connection.close()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        assert received == [str(n).encode() for n in range(FRAMES)]
        assert connection.stats.connects == 1 and connection.stats.silent_reconnects == 0
        assert bus.pauses > 0

    asyncio.run(scenario())
