"""Replays recorded exchange traffic on loopback, so the unchanged connector meets real frames.

A recording folder (format: ``../shared/recordings/README.md``) holds the
websocket frames an exchange sent, per connection, and the REST bodies it
answered.  This server answers REST GETs whose path and query match a recorded
URL, and hands the k-th websocket connection it accepts the frames of the k-th
recorded connection: after the client's first frame (its subscribe) when the
recording shows one, at recorded speed or as fast as possible.  It never
closes a connection itself once the frames are sent, as a quiet exchange
would not either.

A client that connects after every recorded connection was served is refused
(1013), unless ``replay_reconnects``: then it gets the recorded connection
whose subscribe shares the most words with its own first frame (the channel
name decides: ``book``), from the start, so a connector that reconnects to
resync a book gets its snapshot again.

Faults on demand (:class:`FaultSpec`) make a recording misbehave the way a
network or an exchange can: ``drop`` a frame (a gap), ``duplicate`` it,
``reorder`` it (swap it with the connection's next frame) or
``corrupt_checksum`` (add 1 to a Kraken book checksum: v1 ``"c":"<digits>"``,
v2 ``"checksum":<int>``).  They hit every Nth frame of a connection that
contains ``match``, optionally only on the first N connections served, so a
resync's new connection replays clean and the book can be seen to recover.
``GET /_replay/stats`` counts the faults injected.

``disconnect`` drops a connection mid-stream: the chosen frame is not sent, the connection is
closed (1001), and the ``skip`` frames after it are what the client misses while it is away.
Its reconnect (served whether or not ``replay_reconnects``) gets the recorded connection's
opening frames again (those before its first chosen frame: acks, snapshots, as a venue sends
on subscribe), then the frames after the missed ones.

REST trade histories (:mod:`l3_atom.sim.trade_history`), with ``trade_history``
(``--trade-history``): a request of a venue's trade-history endpoint that the recording has no
body for is answered from the trades the recording streamed, in the venue's shape and paging,
as far as the replay has got (frames sent, and frames a disconnect made the client miss): what
a venue's history holds now.  Off by default, the history answers 404 as before: a connector
backfills after every reconnect, also after the refusals once the recording is spent, and
tests that count a recording's raw topic count only what the recording holds.

It says no as venues do (:mod:`l3_atom.sim.gate`, ``--rest-limit`` and
friends): 429 + ``Retry-After`` past a REST budget, 418 after repeated
violations, and a connection closed when its client sends too fast; the
answers are counted under ``limits`` in ``/_replay/stats``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import enum
import gzip
import json
import re
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Self
from urllib.parse import parse_qsl, urlsplit

from aiohttp import WSMsgType, web

from l3_atom.errors import UserError
from l3_atom.sim import gate
from l3_atom.sim.trade_history import VENUE_HISTORIES, Trade, VenueHistory

DEFAULT_HOST = "127.0.0.1"
MAX_SPEED = "max"
RECORDED_SPEED = "recorded"
# How long to wait for a client's subscribe before sending a connection's frames anyway.
SUBSCRIBE_WAIT_S = 2.0
# Frames larger than aiohttp's default limit exist (big snapshots); accept and send them.
MAX_FRAME_BYTES = 64 << 20
NO_MORE_CONNECTIONS = 1013  # "try again later": the recording has no connection left to serve
GOING_AWAY = 1001  # a disconnect fault: the server drops the connection
# A time parameter no more than this before the replay began is on the replay's clock, not the recording's.
CLOCK_MARGIN_MS = 86_400_000
MS_PER_S = 1000
# Kraken's book checksum in a text frame: v1 ``"c":"<digits>"`` (in the book object), v2 ``"checksum":<int>``.
CHECKSUM = re.compile(r'(?P<head>"c":"|"checksum":\s*)(?P<value>\d+)(?P<tail>"?)')
CRC32_LIMIT = 1 << 32
# Words of a subscribe, to find the recorded connection a reconnecting client asks for again.
WORD = re.compile(r"\w+")


class Fault(enum.StrEnum):
    """What to do to a chosen frame."""

    DROP = "drop"
    DUPLICATE = "duplicate"
    REORDER = "reorder"
    CORRUPT_CHECKSUM = "corrupt_checksum"
    DISCONNECT = "disconnect"


@dataclass(frozen=True)
class FaultSpec:
    """Which frames get a fault: every ``every``-th frame of a connection that contains ``match``.

    ``connections``: only the first N connections served get faults (0: all), so the
    connection a resync opens replays clean.  ``corrupt_checksum`` counts only frames
    that carry a checksum; binary frames are chosen only when ``match`` is empty.
    ``skip``: the frames a ``disconnect`` makes its client miss.
    """

    kind: Fault
    every: int = 1
    match: str = ""
    connections: int = 0
    skip: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Fault(self.kind))
        if self.every < 1:
            raise ValueError(f"fault every must be at least 1, got {self.every}")
        if self.connections < 0:
            raise ValueError(f"fault connections must be 0 (all) or more, got {self.connections}")
        if self.skip < 0 or self.skip and self.kind is not Fault.DISCONNECT:
            raise ValueError(f"fault skip is the frames a disconnect misses (0 or more), got {self.skip} for {self.kind}")

    def __str__(self) -> str:
        frames = f"1 frame in {self.every}" if self.every > 1 else "every frame"
        match = f" containing {self.match!r}" if self.match else ""
        where = f" of the first {self.connections} connection(s)" if self.connections else ""
        missed = f", {self.skip} frames missed" if self.kind is Fault.DISCONNECT else ""
        return f"{self.kind} on {frames}{match}{where}{missed}"

    def on_connection(self, index: int) -> bool:
        """Whether the ``index``-th connection served (from 0) gets faults."""
        return not self.connections or index < self.connections

    def chooses(self, frame: RecordedFrame) -> bool:
        """Whether ``frame`` is one the faults count (every Nth of these gets one)."""
        if frame.text is None:
            return not self.match and self.kind is not Fault.CORRUPT_CHECKSUM
        if self.match not in frame.text:
            return False
        return self.kind is not Fault.CORRUPT_CHECKSUM or CHECKSUM.search(frame.text) is not None


@dataclass
class RecordedFrame:
    """One frame the exchange sent: text (``data``) or binary (``b64``), at ``ts`` seconds."""

    ts: float
    text: str | None = None
    binary: bytes | None = None
    # Its place among its connection's recorded frames.
    index: int = 0


@dataclass
class RecordedConnection:
    url: str
    frames: list[RecordedFrame] = field(default_factory=list)
    # The recorder sent something before the exchange's first frame (a subscribe).
    subscribes_first: bool = False
    # What the recorder sent (its subscribes), text frames only.
    sent: list[str] = field(default_factory=list)


def corrupt_checksum(frame: RecordedFrame) -> RecordedFrame:
    """``frame`` with its first checksum one more (mod 2**32), written as before."""

    def plus_one(found: re.Match[str]) -> str:
        value = (int(found["value"]) + 1) % CRC32_LIMIT
        return f"{found['head']}{value}{found['tail']}"

    return replace(frame, text=CHECKSUM.sub(plus_one, frame.text or "", count=1))


class FaultInjector:
    """Applies one :class:`FaultSpec` to the frames of connections, counting the faults injected."""

    def __init__(self, spec: FaultSpec):
        self.spec = spec
        self.injected = 0

    def apply(self, frames: Iterable[RecordedFrame]) -> Iterator[RecordedFrame]:
        """One connection's frames, with faults.  The frame a reordered one swaps with is never faulted itself."""
        spec = self.spec
        chosen = 0
        held: RecordedFrame | None = None
        for frame in frames:
            if held is not None:
                self.injected += 1
                yield frame
                yield held
                held = None
                continue
            if not spec.chooses(frame):
                yield frame
                continue
            chosen += 1
            if chosen % spec.every:
                yield frame
            elif spec.kind is Fault.REORDER:
                held = frame
            else:
                self.injected += 1
                if spec.kind is Fault.DUPLICATE:
                    yield frame
                    yield frame
                elif spec.kind is Fault.CORRUPT_CHECKSUM:
                    yield corrupt_checksum(frame)
        if held is not None:
            # The connection's last frame: nothing to swap with, sent as it was.
            yield held

    def cut(self, frames: list[RecordedFrame]) -> int | None:
        """Where a ``disconnect`` drops the connection: the position of its ``every``-th chosen frame, if any."""
        chosen = 0
        for position, frame in enumerate(frames):
            if self.spec.chooses(frame):
                chosen += 1
                if chosen == self.spec.every:
                    return position
        return None

    def opening(self, frames: list[RecordedFrame]) -> list[RecordedFrame]:
        """A connection's frames before its first chosen one: what a venue sends again on a new subscribe."""
        for position, frame in enumerate(frames):
            if self.spec.chooses(frame):
                return frames[:position]
        return frames


def words(text: str) -> set[str]:
    return set(WORD.findall(text))


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
            if kind == "send":
                connection.subscribes_first = connection.subscribes_first or not connection.frames
                if "data" in entry:
                    connection.sent.append(entry["data"])
            elif kind == "recv":
                binary = base64.b64decode(entry["b64"]) if "b64" in entry else None
                connection.frames.append(RecordedFrame(entry["ts"], entry.get("data"), binary, len(connection.frames)))
        self.bodies = {_query_key(entry["url"]): entry["body"] for entry in _lines(self.folder, "http")}
        stamps = [frame.ts for connection in self.connections for frame in connection.frames]
        self.first_ms = int(min(stamps, default=0) * MS_PER_S)
        # Venue history -> symbol -> (connection position, frame index, trade), by trade id: built when first asked.
        self._trades: dict[int, dict[str, list[tuple[int, int, Trade]]]] = {}

    @property
    def frame_count(self) -> int:
        return sum(len(c.frames) for c in self.connections)

    def body(self, path: str, query: str) -> str | None:
        return self.bodies.get(_query_key(f"{path}?{query}"))

    def trades(self, venue: VenueHistory, symbol: str) -> list[tuple[int, int, Trade]]:
        """Every trade of ``symbol`` the recording streamed, as ``venue`` names them, by trade id (each id once)."""
        if id(venue) not in self._trades:
            by_symbol: dict[str, dict[int, tuple[int, int, Trade]]] = {}
            for position, connection in enumerate(self.connections):
                for index, trade in venue.trades([frame.text for frame in connection.frames]):
                    by_symbol.setdefault(trade.symbol, {}).setdefault(trade.trade_id, (position, index, trade))
            self._trades[id(venue)] = {name: [found[i] for i in sorted(found)] for name, found in by_symbol.items()}
        return self._trades[id(venue)].get(symbol, [])

    def asked_for(self, first_frame: str | None) -> RecordedConnection:
        """The recorded connection whose subscribes share the most words with ``first_frame`` (ties: the first)."""
        asked = words(first_frame or "")
        return max(self.connections, key=lambda connection: len(asked & words(" ".join(connection.sent))))


class ReplayServer:
    """Serves one recording on a loopback port; websocket and REST share the port."""

    def __init__(
        self,
        folder: Path,
        host: str = DEFAULT_HOST,
        port: int = 0,
        speed: str = MAX_SPEED,
        fault: FaultSpec | None = None,
        replay_reconnects: bool = False,
        rest_gate: gate.RestGate | None = None,
        subscribe_gate: gate.SubscribeGateFactory | None = None,
        trade_history: bool = False,
    ):
        """``rest_gate`` and ``subscribe_gate``: the limits past which it says no (default: none);
        ``trade_history``: serve the venues' trade histories from the recorded trades."""
        if speed not in (MAX_SPEED, RECORDED_SPEED):
            raise ValueError(f"speed must be {MAX_SPEED!r} or {RECORDED_SPEED!r}, not {speed!r}")
        self.recording = Recording(folder)
        self.host = host
        self.port = port
        self.speed = speed
        self.faults = FaultInjector(fault) if fault is not None else None
        self.replay_reconnects = replay_reconnects
        self.trade_history = trade_history
        self.served_connections = 0
        self.reconnects_replayed = 0
        self.frames_sent = 0
        self.rest_gate = rest_gate or gate.RestGate()
        self.subscribe_gate = subscribe_gate or gate.SubscribeGateFactory()
        self._runner: web.AppRunner | None = None
        # Recorded connection position -> how far the replay got in it (frames sent or missed): its trades so far.
        self._reached: dict[int, int] = {}
        # Recorded connection position -> where its next connection resumes, after a disconnect.
        self._resume: dict[int, int] = {}
        self.disconnects: list[dict[str, int]] = []
        self.history_pages = 0
        # When the replay's clock began (the first websocket connection; the server's start until then).
        self.clock_origin_ms = 0

    @property
    def faults_injected(self) -> int:
        return self.faults.injected if self.faults is not None else 0

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Self:
        middleware = gate.rest_middleware(self.rest_gate, _not_limited)
        app = web.Application(client_max_size=MAX_FRAME_BYTES, middlewares=[middleware])
        app.router.add_get("/_replay/stats", self._stats)
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.clock_origin_ms = int(time.time() * MS_PER_S)
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
                "reconnects_replayed": self.reconnects_replayed,
                "fault": asdict(self.faults.spec) if self.faults is not None else None,
                "faults_injected": self.faults_injected,
                "disconnects": self.disconnects,
                "history_pages": self.history_pages,
                "limits": self.rest_gate.stats(),
            }
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if gate.is_websocket(request):
            return await self._replay(request)
        body = self.recording.body(request.path, request.query_string)
        if body is None and self.trade_history:
            body = self._history_page(request.path, request.query)
        if body is None:
            return web.json_response({"error": f"not in the recording: {request.path_qs}"}, status=404)
        return web.Response(text=body, content_type="application/json")

    def _history_page(self, path: str, params: dict[str, str]) -> str | None:
        """A page of a venue's trade history, from the recorded trades the replay has reached; None: not one."""
        for venue in VENUE_HISTORIES:
            symbol = venue.asks_for(path, params)
            if symbol is not None:
                made = [trade for position, index, trade in self.recording.trades(venue, symbol)
                        if index < self._reached.get(position, 0)]
                self.history_pages += 1
                return venue.answer(made, params, self._to_recorded)
        return None

    def _to_recorded(self, time_ms: int) -> int:
        """A time parameter on the recording's clock; one from about when the replay began is on the replay's.

        At ``max`` speed the frames run ahead of that clock, so a time mapped back is at or before the
        frames the client had then: a backfill from it misses nothing.
        """
        if time_ms < self.clock_origin_ms - CLOCK_MARGIN_MS:
            return time_ms
        return time_ms - (self.clock_origin_ms - self.recording.first_ms)

    async def _replay(self, request: web.Request) -> web.StreamResponse:
        refused = self.rest_gate.connections.refusal()
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, compress=False)
        await ws.prepare(request)
        index = self.served_connections
        self.served_connections += 1
        if index == 0:
            self.clock_origin_ms = int(time.time() * MS_PER_S)
        connections = self.recording.connections
        again = index >= len(connections)
        if not connections or again and not (self.replay_reconnects or self._resume):
            await ws.close(code=NO_MORE_CONNECTIONS, message=b"the recording has no more connections")
            return ws
        first_frame: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        reader = asyncio.create_task(self._drain(ws, first_frame, self.subscribe_gate(), self.rest_gate.counts))
        try:
            recorded = connections[index % len(connections)]
            if again or recorded.subscribes_first:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(first_frame), SUBSCRIBE_WAIT_S)
            if again:
                recorded = self.recording.asked_for(first_frame.result() if first_frame.done() else None)
                self.reconnects_replayed += 1
            position = next(i for i, connection in enumerate(connections) if connection is recorded)
            frames: Iterable[RecordedFrame] = self._frames_of(position, recorded)
            if self.faults is not None and self.faults.spec.on_connection(index):
                if self.faults.spec.kind is Fault.DISCONNECT:
                    if await self._send_then_drop(ws, position, list(frames), self.faults):
                        return ws
                    frames = []  # all sent: no frame was chosen for the disconnect
                else:
                    frames = self.faults.apply(frames)
            await self._send(ws, frames, position)
            await reader
        finally:
            reader.cancel()
        return ws

    @staticmethod
    async def _drain(
        ws: web.WebSocketResponse, first_frame: asyncio.Future[str], pace: gate.SubscribeGate, counts: gate.GateCounts
    ) -> None:
        """Read (and ignore) what the client sends until it leaves; its first frame is the subscribe.

        A client that sends faster than ``pace`` allows is closed (1008), as venues do.
        """
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY) and not pace.allows(time.monotonic()):
                counts.subscribe_closes += 1
                await ws.close(code=gate.POLICY_VIOLATION, message=b"too many messages")
                return
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY) and not first_frame.done():
                data = message.data
                first_frame.set_result(data if isinstance(data, str) else data.decode(errors="replace"))

    def _frames_of(self, position: int, recorded: RecordedConnection) -> list[RecordedFrame]:
        """A recorded connection's frames; after a disconnect, its opening frames and then the rest after the miss."""
        resume = self._resume.pop(position, None)
        if resume is None or self.faults is None:
            return recorded.frames
        opening = self.faults.opening(recorded.frames)
        if resume >= len(recorded.frames):
            return opening  # the recording ended while the client was away
        # The opening is sent again now: at ``recorded`` speed no time passes before the frames that follow it.
        now = recorded.frames[resume].ts
        return [replace(frame, ts=now) for frame in opening] + recorded.frames[resume:]

    async def _send_then_drop(
        self, ws: web.WebSocketResponse, position: int, frames: list[RecordedFrame], faults: FaultInjector
    ) -> bool:
        """Send up to the disconnect's frame, close, and count the frames after it as made while the client is away.

        False: no frame was chosen; every frame was sent and the connection stays open.
        """
        cut = faults.cut(frames)
        await self._send(ws, frames if cut is None else frames[:cut], position)
        if cut is None:
            return False
        dropped = frames[cut].index
        resume = dropped + faults.spec.skip
        self._resume[position] = resume
        self._reached[position] = max(self._reached.get(position, 0), resume)
        faults.injected += 1
        self.disconnects.append({"connection": position, "dropped_at": dropped, "resumes_at": resume})
        await ws.close(code=GOING_AWAY, message=b"replay: connection dropped (disconnect fault)")
        return True

    async def _send(self, ws: web.WebSocketResponse, frames: Iterable[RecordedFrame], position: int) -> None:
        previous: float | None = None
        for frame in frames:
            if self.speed == RECORDED_SPEED and previous is not None and frame.ts > previous:
                await asyncio.sleep(frame.ts - previous)
            # A reordered frame is older than the one before it: time never runs backwards.
            previous = frame.ts if previous is None else max(previous, frame.ts)
            if ws.closed:
                return
            if frame.binary is not None:
                await ws.send_bytes(frame.binary)
            else:
                await ws.send_str(frame.text)
            self.frames_sent += 1
            if frame.index >= self._reached.get(position, 0):
                self._reached[position] = frame.index + 1


def _not_limited(request: web.Request) -> bool:
    """The websocket and the server's own stats are outside the REST budget."""
    return gate.is_websocket(request) or request.path.startswith("/_replay/")


async def _serve_until_signal(server: ReplayServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        print(f"replay of {server.recording.folder} listening on {server.ws_url} rest {server.rest_url}", flush=True)
        if server.faults is not None:
            print(f"injecting faults: {server.faults.spec}; counts at {server.rest_url}/_replay/stats", flush=True)
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
    parser.add_argument(
        "--replay-reconnects", action="store_true",
        help="a client connecting after every recorded connection was served gets the one its subscribe asks for"
        " again (default: refused with 1013)",
    )
    parser.add_argument(
        "--trade-history", action="store_true",
        help="answer the venues' REST trade-history endpoints from the recorded trades (for backfills)",
    )
    faults = parser.add_argument_group("faults", "e.g. --fault corrupt_checksum --fault-every 500 --fault-match"
                                       " '\"c\":\"' --fault-connections 3 --replay-reconnects")
    faults.add_argument("--fault", choices=[f.value for f in Fault], help="what to do to the chosen frames")
    faults.add_argument("--fault-every", type=int, default=1, metavar="N",
                        help="every Nth matching frame of a connection (default 1: each)")
    faults.add_argument("--fault-match", default="", metavar="TEXT",
                        help="only frames containing TEXT count (default: every frame)")
    faults.add_argument("--fault-connections", type=int, default=0, metavar="N",
                        help="only the first N connections served get faults (default 0: all)")
    faults.add_argument("--fault-skip", type=int, default=0, metavar="N",
                        help="disconnect: the frames its client misses before it is served again (default 0)")
    gate.add_arguments(parser)


def fault_spec(args: argparse.Namespace) -> FaultSpec | None:
    """The CLI's fault, or None; fault options without ``--fault`` are a mistake, not silence."""
    if args.fault is None:
        if args.fault_every != 1 or args.fault_match or args.fault_connections or args.fault_skip:
            raise UserError("--fault-every, --fault-match, --fault-connections and --fault-skip need --fault")
        return None
    try:
        return FaultSpec(Fault(args.fault), args.fault_every, args.fault_match, args.fault_connections, args.fault_skip)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def main(args: argparse.Namespace) -> None:
    rest_gate, subscribe_gate = gate.gates(args)
    server = ReplayServer(
        args.recording, args.host, args.port, args.speed, fault_spec(args), args.replay_reconnects,
        rest_gate, subscribe_gate, args.trade_history,
    )
    asyncio.run(_serve_until_signal(server))
