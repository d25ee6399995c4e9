"""The replay server: recorded REST bodies by path and query, recorded frames per connection."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from l3_atom.sim.replay import Recording, ReplayServer


def write_fixture(folder: Path) -> Path:
    ws = [
        {"t": "open", "conn": "a", "url": "wss://x/ws", "ts": 1.0},
        {"t": "send", "conn": "a", "url": "wss://x/ws", "ts": 1.1, "data": "sub"},
        {"t": "recv", "conn": "a", "url": "wss://x/ws", "ts": 1.2, "data": '{"n":1}'},
        {"t": "recv", "conn": "a", "url": "wss://x/ws", "ts": 1.3, "b64": "AAEC"},
        {"t": "open", "conn": "b", "url": "wss://x/ws", "ts": 1.0},
        {"t": "recv", "conn": "b", "url": "wss://x/ws", "ts": 1.4, "data": '{"n":2}'},
    ]
    http = [{"url": "https://x/api/depth?symbol=BTC&limit=10", "ts": 1.0, "body": '{"depth":1}'}]
    (folder / "ws.jsonl").write_text("\n".join(json.dumps(line) for line in ws) + "\n")
    (folder / "http.jsonl").write_text("\n".join(json.dumps(line) for line in http) + "\n")
    return folder


def test_recording_groups_frames_by_connection(tmp_path: Path) -> None:
    recording = Recording(write_fixture(tmp_path))
    assert [len(c.frames) for c in recording.connections] == [2, 1]
    assert recording.connections[0].subscribes_first and not recording.connections[1].subscribes_first
    assert recording.connections[0].frames[1].binary == b"\x00\x01\x02"
    # Query parameters match in any order.
    assert recording.body("/api/depth", "limit=10&symbol=BTC") == '{"depth":1}'
    assert recording.body("/api/depth", "symbol=ETH&limit=10") is None


def test_real_recording_loads(recordings: Path) -> None:
    recording = Recording(recordings / "kraken")
    assert len(recording.connections) == 3
    assert recording.frame_count == 4430


@pytest.mark.timeout(20)
def test_serves_rest_and_each_connection_its_frames(tmp_path: Path) -> None:
    async def main() -> tuple[list, list, bytes, int]:
        server = await ReplayServer(write_fixture(tmp_path)).start()
        try:
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(
                None, lambda: urllib.request.urlopen(f"{server.rest_url}/api/depth?limit=10&symbol=BTC").read()
            )
            async with connect(server.ws_url) as first:
                await first.send("subscribe")
                first_frames = [await first.recv(), await first.recv()]
                async with connect(server.ws_url + "any/path?x=1") as second:
                    second_frames = [await second.recv()]
                    async with connect(server.ws_url) as third:
                        await third.wait_closed()
                        code = third.close_code
            return first_frames, second_frames, body, code
        finally:
            await server.stop()

    first, second, body, code = asyncio.run(main())
    assert first == ['{"n":1}', b"\x00\x01\x02"]
    assert second == ['{"n":2}']
    assert body == b'{"depth":1}'
    assert code == 1013, "no recorded connection left"
