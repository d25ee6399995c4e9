"""Connections to sources: a websocket that stays up, and REST requests.

A ``WebsocketConnection`` connects, lets its owner subscribe, and hands every
frame (exact bytes, receive time in µs) to a callback.  When the connection
drops, or is silent for longer than the watchdog allows, it reconnects with
capped, fully jittered exponential backoff and subscribes again.

The websocket client is aiohttp's: its frame parser is compiled, and it hands
text frames over undecoded (``decode_text=False``), so receiving a frame costs
about 1.6 µs of CPU against about 6 µs with the ``websockets`` library's
pure-Python parser (Coinbase frames, on the 2-core development machine).

A ``RestClient`` spends from its source's one ``RestLimiter`` (``l3_atom/limits.py``)
and obeys the answers: 429 ``Retry-After``, 418/403 bans, 5xx and timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import ClientWebSocketResponse, ClientWSTimeout, WSMsgType

from l3_atom.config import ConnectorSettings
from l3_atom.limits import BAN_STATUSES, THROTTLED, RestLimiter, retry_after_s

LOG = logging.getLogger(__name__)

# Frames above max_frame_bytes are dead-lettered by the connector; this hard
# cap only protects memory from a peer that sends something absurd.
HARD_FRAME_LIMIT_FACTOR = 32
# A connection that stayed up this long resets the backoff to its start.
STABLE_CONNECTION_S = 30.0
# A connection this young already brought fresh snapshots: a resync does not reconnect it again.
RESYNC_GRACE_S = 2.0
WATCHDOG_CHECKS_PER_TIMEOUT = 4
# The opening handshake and the closing one each get this long (as the websockets library's defaults).
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 10.0
WS_TIMEOUT = ClientWSTimeout(ws_close=CLOSE_TIMEOUT_S)
# Protocol-level pings, sent whatever the traffic: some exchanges drop a client that sends nothing for a
# minute (Kraken futures).  A dead link is the silence watchdog's to notice.
PROTOCOL_PING_INTERVAL_S = 20.0
NORMAL_CLOSURE = 1000
# What ``receive`` hands over as frames; anything else (close, closing, closed, error) ends the connection.
DATA_MESSAGES = (WSMsgType.TEXT, WSMsgType.BINARY)
NS_PER_US = 1000
US_PER_S = 1_000_000
REST_TIMEOUT_S = 30.0
# Tries of one REST request (answers 429/418/5xx, timeouts) before its failure is raised.
REST_ATTEMPTS = 5
REST_BACKOFF_INITIAL_S = 0.5
REST_BACKOFF_MAX_S = 30.0
HTTP_OK = 200
HTTP_SERVER_ERROR = 500
# Why a connection ended, for metrics: we closed it (silence, a resync, the exchange asked, shutdown) or the peer did.
SILENCE, RESYNC, EXCHANGE_REQUEST, STOPPED, PEER_CLOSED = "silence", "resync", "exchange_request", "stopped", "closed"
# A REST request that got no HTTP status (timeout, refused connection): its ``status`` label.
NO_RESPONSE = "no_response"

FrameHandler = Callable[[bytes, int, str], None]
OpenHandler = Callable[["WebsocketConnection"], Awaitable[None]]
# Answers a frame that needs an application-level reply (e.g. {"ping": n} -> {"pong": n}), else None;
# RECONNECT asks the connection to reconnect (an exchange's "please reconnect" notice).
ReplyHandler = Callable[[bytes], "str | bytes | None"]
RECONNECT = b"\x00reconnect"
# Makes the application-level ping some exchanges require from the client.
PingFactory = Callable[[], "str | bytes"]
UrlFactory = Callable[[], Awaitable[str]]
# Backpressure from the frame sink: None while it has room, else an awaitable that completes when it has.
RoomCheck = Callable[[], "Awaitable[None] | None"]
# Told when a connection that was up ended: why, and the receive time (µs) of its last frame.
CloseHandler = Callable[[str, int], None]


def now_us() -> int:
    """Wall-clock time in µs since the epoch (the ``atom_timestamp`` clock)."""
    return time.time_ns() // NS_PER_US


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random = random._inst) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(maximum, initial * 2**attempt)]."""
    return rng.uniform(0, min(maximum, initial * (2**attempt)))


@dataclass
class ConnectionStats:
    connects: int = 0
    frames: int = 0
    bytes: int = 0
    silent_reconnects: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    # Why each established connection ended: SILENCE, RESYNC, EXCHANGE_REQUEST, STOPPED, PEER_CLOSED or an error class.
    disconnects: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def disconnected(self, reason: str) -> None:
        self.disconnects[reason] = self.disconnects.get(reason, 0) + 1


class ConnectionClosed(ConnectionError):
    """The websocket ended: the peer closed it, we did (watchdog, resync), or it failed."""


def _closed(ws: ClientWebSocketResponse, message: aiohttp.WSMessage) -> ConnectionClosed:
    """The ``ConnectionClosed`` that a non-data message from ``receive`` stands for."""
    if message.type is WSMsgType.ERROR:
        return ConnectionClosed(f"websocket error: {message.data}")
    return ConnectionClosed(f"websocket closed (code {ws.close_code}, {message.type.name.lower()})")


class WebsocketConnection:
    """One websocket to a source, kept up until :meth:`close`."""

    def __init__(
        self,
        url: str | UrlFactory,
        name: str,
        settings: ConnectorSettings,
        on_open: OpenHandler,
        on_frame: FrameHandler,
        reply: ReplyHandler | None = None,
        keepalive: tuple[float, PingFactory] | None = None,
        room: RoomCheck | None = None,
        connect_slot: Callable[[], AbstractAsyncContextManager[None]] | None = None,
        on_close: CloseHandler | None = None,
    ):
        """``url`` may be a coroutine function, called on every (re)connect (e.g. for a fresh token).

        ``keepalive`` is (interval in s, ping factory) for exchanges that drop clients that do not ping.
        ``room`` is asked after every frame: while the sink is full the connection stops reading, so the
        socket's buffers fill and TCP slows the sender instead of memory growing.
        ``connect_slot`` is entered around every (re)connect's handshake: the venue's connection rate,
        shared by a source's connections, so that all of them reconnecting at once stay inside it.
        ``on_close`` hears of every connection that was up and ended (not of failed attempts, nor of :meth:`close`).
        """
        self.connect_slot = connect_slot
        self.url = url
        self.reply = reply
        self.keepalive = keepalive
        self.room = room
        self.name = name
        self.settings = settings
        self.on_open = on_open
        self.on_frame = on_frame
        self.on_close = on_close
        self.stats = ConnectionStats()
        self.connection_id = ""
        self._ws: ClientWebSocketResponse | None = None
        self._last_frame = time.monotonic()
        self._closing = False
        # Reading is paused for backpressure: a quiet socket then is not a silent source.
        self._paused = False
        self._connected_at = 0.0
        self._skip_backoff = False
        # True from a finished subscribe until the connection ends (readiness, the ``connection_up`` gauge).
        self.subscribed = False
        self._end_reason: str | None = None
        # Work started for this connection (book snapshots after a subscribe), cancelled when it ends.
        self._tasks: set[asyncio.Task] = set()

    async def send(self, message: str | bytes) -> None:
        """Send a text frame (``str``) or a binary one (``bytes``)."""
        if self._ws is None:
            raise ConnectionError(f"{self.name}: not connected")
        await _send(self._ws, message)

    async def run(self) -> None:
        """Connect, subscribe and read until closed, reconnecting on any failure."""
        # One session for every (re)connect; trust_env: proxies from the environment, as websockets did.
        session = aiohttp.ClientSession(trust_env=True)
        try:
            await self._keep_connected(session)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await session.close()

    async def _keep_connected(self, session: aiohttp.ClientSession) -> None:
        attempt = 0
        while not self._closing:
            started = time.monotonic()
            connects = self.stats.connects
            reason = "closed"
            try:
                await self._run_once(session)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, OSError, aiohttp.ClientError) as exc:
                self.stats.error(type(exc).__name__)
                reason = str(exc) or type(exc).__name__
                LOG.warning("%s: connection %s lost: %s", self.name, self.connection_id, exc)
            if self._closing:
                break
            if self.on_close is not None and self.stats.connects > connects:
                last_frame_us = now_us() - int((time.monotonic() - self._last_frame) * US_PER_S)
                self.on_close(reason, last_frame_us)
            if self._skip_backoff:
                self._skip_backoff = False
                continue
            attempt = 0 if time.monotonic() - started > STABLE_CONNECTION_S else attempt + 1
            delay = backoff_delay(
                attempt, self.settings.reconnect_initial_delay_s, self.settings.reconnect_max_delay_s
            )
            LOG.info("%s: reconnecting in %.2f s (attempt %d)", self.name, delay, attempt)
            await asyncio.sleep(delay)

    async def _run_once(self, session: aiohttp.ClientSession) -> None:
        url = self.url if isinstance(self.url, str) else await self.url()
        slot = self.connect_slot() if self.connect_slot is not None else contextlib.nullcontext()
        async with slot, asyncio.timeout(OPEN_TIMEOUT_S):
            ws = await session.ws_connect(
                url,
                max_msg_size=self.settings.max_frame_bytes * HARD_FRAME_LIMIT_FACTOR,
                compress=0,
                decode_text=False,
                timeout=WS_TIMEOUT,
            )
        async with ws:
            self._ws = ws
            self._connected_at = time.monotonic()
            self.stats.connects += 1
            self.connection_id = f"{self.name}.{self.stats.connects}"
            self._last_frame = time.monotonic()
            LOG.info("%s: connected to %s as %s", self.name, url.split("?")[0], self.connection_id)
            helpers = [asyncio.create_task(self._watchdog(ws)), asyncio.create_task(self._protocol_ping(ws))]
            if self.keepalive is not None:
                helpers.append(asyncio.create_task(self._ping(ws, *self.keepalive)))
            try:
                await self.on_open(self)
                self.subscribed = True
                await self._read(ws)
            except BaseException as exc:
                self._end_reason = self._end_reason or _end_reason(exc)
                raise
            finally:
                for task in helpers:
                    task.cancel()
                self._ws = None
                self.subscribed = False
                self.stats.disconnected(self._end_reason or PEER_CLOSED)
                self._end_reason = None

    async def _read(self, ws: ClientWebSocketResponse) -> None:
        """The hot path: per frame, a receive that returns at once while frames are buffered, then plain calls.

        Loop invariants are bound to locals once per connection.
        """
        receive = ws.receive
        on_frame = self.on_frame
        reply = self.reply
        room = self.room
        stats = self.stats
        connection_id = self.connection_id
        time_ns = time.time_ns
        monotonic = time.monotonic
        while True:
            message = await receive()
            if message.type not in DATA_MESSAGES:
                raise _closed(ws, message)
            frame = message.data
            received = time_ns() // NS_PER_US
            self._last_frame = monotonic()
            stats.frames += 1
            stats.bytes += len(frame)
            on_frame(frame, received, connection_id)
            if reply is not None:
                answer = reply(frame)
                if answer is RECONNECT:
                    LOG.info("%s: the exchange asked for a reconnect", self.name)
                    self._end_reason = EXCHANGE_REQUEST
                    await ws.close(code=NORMAL_CLOSURE, message=b"exchange asked for a reconnect")
                    return
                if answer is not None:
                    await _send(ws, answer)
            if room is not None:
                wait = room()
                if wait is not None:
                    await self._pause(wait)

    async def _pause(self, wait: Awaitable[None]) -> None:
        """Stop reading until the sink has room; the watchdog does not count this as silence."""
        self._paused = True
        try:
            await wait
        finally:
            self._paused = False
            self._last_frame = time.monotonic()

    @staticmethod
    async def _ping(ws: ClientWebSocketResponse, interval_s: float, make_ping: PingFactory) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await _send(ws, make_ping())

    @staticmethod
    async def _protocol_ping(ws: ClientWebSocketResponse) -> None:
        while True:
            await asyncio.sleep(PROTOCOL_PING_INTERVAL_S)
            await ws.ping()

    async def _watchdog(self, ws: ClientWebSocketResponse) -> None:
        timeout = self.settings.silence_timeout_s
        while True:
            await asyncio.sleep(timeout / WATCHDOG_CHECKS_PER_TIMEOUT)
            if not self._paused and time.monotonic() - self._last_frame > timeout:
                self.stats.silent_reconnects += 1
                self._end_reason = SILENCE
                LOG.warning("%s: silent for %.0f s, reconnecting", self.name, timeout)
                await ws.close(code=NORMAL_CLOSURE, message=b"silence watchdog")
                return

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` beside the connection (e.g. a REST snapshot after subscribing); cancelled by :meth:`close`."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def reconnect_now(self) -> bool:
        """Reconnect at once, without backoff, so the subscription brings fresh snapshots.

        A connection younger than ``RESYNC_GRACE_S`` just brought them: nothing is done, False.
        """
        ws = self._ws
        if ws is None or time.monotonic() - self._connected_at < RESYNC_GRACE_S:
            return False
        self._skip_backoff = True
        self._end_reason = RESYNC
        self.spawn(ws.close(code=NORMAL_CLOSURE, message=b"book resync"))
        return True

    def silent_for(self) -> float:
        """Seconds since the last frame (or since the connection object was made, before any)."""
        return time.monotonic() - self._last_frame

    async def close(self) -> None:
        self._closing = True
        self._end_reason = STOPPED
        for task in list(self._tasks):
            task.cancel()
        if self._ws is not None:
            await self._ws.close()


def _end_reason(exc: BaseException) -> str:
    """The ``reason`` label of a connection ended by ``exc``: a few fixed words or the exception's class."""
    if isinstance(exc, asyncio.CancelledError):
        return STOPPED
    if isinstance(exc, ConnectionClosed):
        return PEER_CLOSED
    return type(exc).__name__


async def _send(ws: ClientWebSocketResponse, message: str | bytes) -> None:
    """``str`` goes as a text frame, ``bytes`` as a binary one."""
    if isinstance(message, str):
        await ws.send_str(message)
    else:
        await ws.send_bytes(message)


class RestError(ConnectionError):
    """A REST request that failed; ``status`` is the HTTP answer (None: no answer, a timeout or a lost link)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status

    @property
    def transient(self) -> bool:
        """Whether asking again can succeed: no answer, 429, a ban, 5xx (not 400 or 404)."""
        status = self.status
        return status is None or status == THROTTLED or status in BAN_STATUSES or status >= HTTP_SERVER_ERROR


class RestClient:
    """Requests to a source's REST API, on the event loop, inside the source's budget, obeying its answers.

    Every attempt first takes its weight from the source's one :class:`RestLimiter`.  A 429 pauses
    all of the source's REST for the answer's ``Retry-After`` plus jittered exponential backoff; a
    418/403 (a ban) stops it for the ban's duration; 5xx answers and timeouts back off and retry;
    other answers (404, 400) fail at once.  After ``attempts`` tries the last failure is raised.
    """

    def __init__(
        self,
        base_url: str,
        limiter: RestLimiter,
        headers: dict[str, str] | None = None,
        backoff: tuple[float, float] = (REST_BACKOFF_INITIAL_S, REST_BACKOFF_MAX_S),
    ):
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.headers = headers or {}
        self.backoff = backoff
        self._session: aiohttp.ClientSession | None = None
        # (endpoint kind, HTTP status or NO_RESPONSE) -> requests; a feed shares one counter among its clients.
        self.requests: Counter[tuple[str, str]] = Counter()
        self.kind = "other"

    async def get_text(
        self,
        path: str,
        params: dict[str, str] | None = None,
        *,
        attempts: int = REST_ATTEMPTS,
        before_send: Callable[[], None] | None = None,
    ) -> str:
        """The body of a 200 answer to ``GET path``; ``before_send`` runs when the request is let out."""
        return await self._request("GET", path, params, None, attempts, before_send)

    async def post_text(self, path: str, json_body: object = None) -> str:
        """A POST (token handshakes such as KuCoin's bullet-public)."""
        return await self._request("POST", path, None, json_body, REST_ATTEMPTS, None)

    async def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        json_body: object,
        attempts: int,
        before_send: Callable[[], None] | None,
    ) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REST_TIMEOUT_S), headers=self.headers
            )
        url = f"{self.base_url}{path}"
        limiter = self.limiter
        counts = limiter.counts
        weight = limiter.limits.weight(path, params)
        for attempt in range(1, attempts + 1):
            status: int | None = None
            async with limiter.slot(weight):
                if before_send is not None:
                    before_send()
                try:
                    async with self._session.request(method, url, params=params, json=json_body) as response:
                        status = response.status
                        body = await response.text()
                        headers = response.headers
                except TimeoutError:
                    counts.timeouts += 1
                    error = RestError(f"{method} {url} timed out after {REST_TIMEOUT_S:.0f} s")
                except (OSError, aiohttp.ClientError) as exc:
                    error = RestError(f"{method} {url} failed: {exc}")
            self.requests[self.kind, NO_RESPONSE if status is None else str(status)] += 1
            if status is not None:
                counts.by_status[status] = counts.by_status.get(status, 0) + 1
                error = RestError(f"{method} {url} answered {status}: {body[:200]}", status)
                used = headers.get(limiter.limits.used_weight_header) if limiter.limits.used_weight_header else None
                if used is not None and used.isdigit():
                    limiter.observe_used(int(used))
                if status == HTTP_OK:
                    limiter.streak = 0
                    return body
                if status == THROTTLED:
                    limiter.streak += 1
                    limiter.throttled(retry_after_s(headers.get("Retry-After")), self._backoff(limiter.streak))
                    continue
                if status in BAN_STATUSES:
                    limiter.banned(status, retry_after_s(headers.get("Retry-After")))
                    continue
                if status < HTTP_SERVER_ERROR:
                    raise error
                counts.server_errors += 1
            if attempt < attempts:
                await asyncio.sleep(self._backoff(attempt))
        raise error

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, *self.backoff)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
