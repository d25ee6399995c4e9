"""Replays recorded exchange traffic on loopback, so the unchanged connector meets real frames.

A recording folder (format: ``../shared/recordings/README.md``) holds the
websocket frames an exchange sent, per connection, and the REST bodies it
answered.  This server answers REST GETs whose path and query match a recorded
URL, and hands the k-th websocket connection it accepts the frames of the k-th
recorded connection: after the client's first frame (its subscribe) when the
recording shows one, at recorded speed or as fast as possible.  It never
closes a connection itself once the frames are sent, as a quiet exchange
would not either.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gzip
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self
from urllib.parse import parse_qsl, urlsplit

from aiohttp import WSMsgType, web

DEFAULT_HOST = "127.0.0.1"
MAX_SPEED = "max"
RECORDED_SPEED = "recorded"
# How long to wait for a client's subscribe before sending a connection's frames anyway.
SUBSCRIBE_WAIT_S = 2.0
# Frames larger than aiohttp's default limit exist (big snapshots); accept and send them.
MAX_FRAME_BYTES = 64 << 20
NO_MORE_CONNECTIONS = 1013  # "try again later": the recording has no connection left to serve


@dataclass
class RecordedFrame:
    """One frame the exchange sent: text (``data``) or binary (``b64``), at ``ts`` seconds."""

    ts: float
    text: str | None = None
    binary: bytes | None = None


@dataclass
class RecordedConnection:
    url: str
    frames: list[RecordedFrame] = field(default_factory=list)
    # The recorder sent something before the exchange's first frame (a subscribe).
    subscribes_first: bool = False


def _lines(folder: Path, stem: str) -> Iterator[dict]:
    """JSON lines of ``<stem>.jsonl.gz`` (shared recordings) or ``<stem>.jsonl`` (hand-written fixtures)."""
    for path, opener in ((folder / f"{stem}.jsonl.gz", gzip.open), (folder / f"{stem}.jsonl", open)):
        if path.exists():
            with opener(path, "rt") as lines:
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
            return


def _query_key(url: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    parts = urlsplit(url)
    return parts.path.rstrip("/") or "/", tuple(sorted(parse_qsl(parts.query, keep_blank_values=True)))


class Recording:
    """The websocket connections and REST bodies of one recording folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"no recording folder at {self.folder}")
        self.connections: list[RecordedConnection] = []
        by_id: dict[str, RecordedConnection] = {}
        for entry in _lines(self.folder, "ws"):
            kind, conn = entry["t"], entry["conn"]
            if kind == "open":
                by_id[conn] = RecordedConnection(entry["url"])
                self.connections.append(by_id[conn])
                continue
            connection = by_id.setdefault(conn, RecordedConnection(entry.get("url", "")))
            if connection not in self.connections:
                self.connections.append(connection)
            if kind == "send" and not connection.frames:
                connection.subscribes_first = True
            elif kind == "recv":
                binary = base64.b64decode(entry["b64"]) if "b64" in entry else None
                connection.frames.append(RecordedFrame(entry["ts"], entry.get("data"), binary))
        self.bodies = {_query_key(entry["url"]): entry["body"] for entry in _lines(self.folder, "http")}

    @property
    def frame_count(self) -> int:
        return sum(len(c.frames) for c in self.connections)

    def body(self, path: str, query: str) -> str | None:
        return self.bodies.get(_query_key(f"{path}?{query}"))


class ReplayServer:
    """Serves one recording on a loopback port; websocket and REST share the port."""

    def __init__(self, folder: Path, host: str = DEFAULT_HOST, port: int = 0, speed: str = MAX_SPEED):
        if speed not in (MAX_SPEED, RECORDED_SPEED):
            raise ValueError(f"speed must be {MAX_SPEED!r} or {RECORDED_SPEED!r}, not {speed!r}")
        self.recording = Recording(folder)
        self.host = host
        self.port = port
        self.speed = speed
        self.served_connections = 0
        self.frames_sent = 0
        self._runner: web.AppRunner | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Self:
        app = web.Application(client_max_size=MAX_FRAME_BYTES)
        app.router.add_get("/_replay/stats", self._stats)
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "connections_recorded": len(self.recording.connections),
                "connections_served": self.served_connections,
                "frames_recorded": self.recording.frame_count,
                "frames_sent": self.frames_sent,
            }
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._replay(request)
        body = self.recording.body(request.path, request.query_string)
        if body is None:
            return web.json_response({"error": f"not in the recording: {request.path_qs}"}, status=404)
        return web.Response(text=body, content_type="application/json")

    async def _replay(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, compress=False)
        await ws.prepare(request)
        index = self.served_connections
        self.served_connections += 1
        if index >= len(self.recording.connections):
            await ws.close(code=NO_MORE_CONNECTIONS, message=b"the recording has no more connections")
            return ws
        recorded = self.recording.connections[index]
        subscribed = asyncio.Event()
        reader = asyncio.create_task(self._drain(ws, subscribed))
        try:
            if recorded.subscribes_first:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(subscribed.wait(), SUBSCRIBE_WAIT_S)
            await self._send(ws, recorded)
            await reader
        finally:
            reader.cancel()
        return ws

    @staticmethod
    async def _drain(ws: web.WebSocketResponse, subscribed: asyncio.Event) -> None:
        """Read (and ignore) what the client sends until it leaves; its first frame is the subscribe."""
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                subscribed.set()

    async def _send(self, ws: web.WebSocketResponse, recorded: RecordedConnection) -> None:
        previous = recorded.frames[0].ts if recorded.frames else 0.0
        for frame in recorded.frames:
            if self.speed == RECORDED_SPEED and frame.ts > previous:
                await asyncio.sleep(frame.ts - previous)
            previous = frame.ts
            if ws.closed:
                return
            if frame.binary is not None:
                await ws.send_bytes(frame.binary)
            else:
                await ws.send_str(frame.text)
            self.frames_sent += 1


async def _serve_until_signal(server: ReplayServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        print(f"replay of {server.recording.folder} listening on {server.ws_url} rest {server.rest_url}", flush=True)
        await stop.wait()
    finally:
        await server.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recording", required=True, type=Path, help="a recordings folder (ws.jsonl[.gz], http.jsonl[.gz])"
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=0, help="port for websocket and REST; 0 picks a free one")
    parser.add_argument(
        "--speed", choices=[MAX_SPEED, RECORDED_SPEED], default=MAX_SPEED,
        help="send frames as fast as possible, or with their recorded spacing",
    )


def main(args: argparse.Namespace) -> None:
    asyncio.run(_serve_until_signal(ReplayServer(args.recording, args.host, args.port, args.speed)))
