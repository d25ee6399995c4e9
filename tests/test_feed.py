"""The websocket connection: backoff, reconnect with resubscribe, silence watchdog."""

from __future__ import annotations

import asyncio
import random

import pytest
from websockets.asyncio.server import ServerConnection, serve

from l3_atom.config import ConnectorSettings
from l3_atom.feed import RECONNECT, WebsocketConnection, backoff_delay


def test_backoff_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(attempt, 0.5, 30.0, rng) for attempt in range(20) for _ in range(20)]
    assert max(delays) <= 30.0
    assert min(delays) >= 0.0
    assert len(set(delays)) == len(delays), "full jitter: no two delays alike"
    assert all(backoff_delay(0, 0.5, 30.0, rng) <= 0.5 for _ in range(100))


async def _run_against(handler, settings: ConnectorSettings, until) -> tuple[WebsocketConnection, list, list]:
    frames: list[tuple[bytes, str]] = []
    subscribes: list[str] = []

    async def on_open(connection: WebsocketConnection) -> None:
        subscribes.append(connection.connection_id)
        await connection.send('{"type":"subscribe"}')

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        connection = WebsocketConnection(
            f"ws://127.0.0.1:{port}/", "test", settings, on_open, lambda f, ts, cid: frames.append((f, cid))
        )
        task = asyncio.create_task(connection.run())
        try:
            async with asyncio.timeout(10):
                while not until(frames, subscribes):
                    await asyncio.sleep(0.01)
        finally:
            await connection.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return connection, frames, subscribes


@pytest.mark.timeout(20)
def test_reconnects_and_resubscribes_after_the_server_drops() -> None:
    async def drop_after_two(ws: ServerConnection) -> None:
        assert await ws.recv() == '{"type":"subscribe"}'
        await ws.send('{"n":1}')
        await ws.send(b'{"n":2}')
        await ws.close()

    settings = ConnectorSettings(0.01, 0.05, 30.0, 1024)
    connection, frames, subscribes = asyncio.run(
        _run_against(drop_after_two, settings, lambda f, s: len(s) >= 3 and len(f) >= 6)
    )
    assert subscribes[:3] == ["test.1", "test.2", "test.3"]
    # Text and binary frames arrive as the exact bytes sent, tagged with their connection.
    assert frames[:2] == [(b'{"n":1}', "test.1"), (b'{"n":2}', "test.1")]
    assert connection.stats.connects >= 3
    # Each drop counted by its reason (metrics): the peer closed them.
    assert connection.stats.disconnects.get("closed", 0) >= 2
    assert not connection.subscribed


@pytest.mark.timeout(20)
def test_silence_watchdog_reconnects() -> None:
    async def silent(ws: ServerConnection) -> None:
        async for _ in ws:  # reads the subscribe, then sends nothing until the client leaves
            pass

    settings = ConnectorSettings(0.01, 0.05, 0.2, 1024)
    connection, _, subscribes = asyncio.run(_run_against(silent, settings, lambda f, s: len(s) >= 2))
    assert connection.stats.silent_reconnects >= 1
    assert subscribes[:2] == ["test.1", "test.2"]
    assert connection.stats.disconnects.get("silence", 0) >= 1


@pytest.mark.timeout(20)
def test_keepalive_pings_and_exchange_requested_reconnect() -> None:
    received: list[str] = []

    async def pinged_then_asks_to_reconnect(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(message)
            if message == "ping":
                await ws.send('{"event":"please-reconnect"}')

    async def main() -> WebsocketConnection:
        async with serve(pinged_then_asks_to_reconnect, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]

            async def on_open(connection: WebsocketConnection) -> None:
                await connection.send("subscribe")

            def reply(frame: bytes) -> bytes | None:
                return RECONNECT if b"please-reconnect" in frame else None

            connection = WebsocketConnection(
                f"ws://127.0.0.1:{port}/", "test", ConnectorSettings(0.01, 0.05, 30.0, 1024), on_open,
                lambda *_: None, reply, keepalive=(0.05, lambda: "ping"),
            )
            task = asyncio.create_task(connection.run())
            try:
                async with asyncio.timeout(10):
                    while connection.stats.connects < 2:
                        await asyncio.sleep(0.01)
            finally:
                await connection.close()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            return connection

    connection = asyncio.run(main())
    assert received[:2] == ["subscribe", "ping"]
    assert received.count("subscribe") >= 2, "resubscribed after the exchange-requested reconnect"
    assert connection.stats.connects >= 2
    assert connection.stats.disconnects.get("exchange_request", 0) >= 1
