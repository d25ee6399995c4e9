"""Local Coinbase Exchange: the websocket feed and the public REST API on one port.

Offline runs and tests point the unchanged Coinbase connector at this server
instead of ``wss://ws-feed.exchange.coinbase.com`` and
``https://api.exchange.coinbase.com``.  Like the real exchange it runs one
global order flow (:class:`~l3_atom.sim.orderflow.OrderFlow`) and every
client sees the same messages for the products and channels it subscribed
to.  The flow only advances while someone is subscribed, so a test never
misses the start, and it runs at a chosen rate of 1 to 100,000 messages/s
(as far as the CPU allows).

Test hooks (not part of Coinbase's API): ``--journal`` records every frame
sent (and every level-3 REST book served, as connection ``rest:<product>``, and
every trade-history page, as ``trades:<product>``);
``POST /_sim/inject`` sends a bad frame, ``POST /_sim/book_fault`` makes a
product's next full-channel message go missing, arrive twice or arrive late
(``{"kind": "gap"|"duplicate"|"reorder", "product_id": ...}``),
``POST /_sim/listing`` takes products off the product list or puts them back
(``{"list": [...], "delist": [...]}``), ``POST /_sim/disconnect`` drops every
connection and ``GET /_sim/stats`` reports counts.

It says no as Coinbase does (:mod:`l3_atom.sim.gate`): a REST budget answered
with 429 + ``Retry-After`` past it and 418 after repeated violations, and a
subscribe rate past which a connection is closed (``--rest-limit``,
``--subscribe-limit`` and friends; ``GET /_sim/stats`` reports the answers under
``limits`` and the level-3 books served per product under ``books_served``).

``GET /products/{id}/trades`` serves every trade the flow made (those sent to
nobody during a disconnect too), newest first, with Coinbase's cursor paging
(https://docs.cdp.coinbase.com/exchange/docs/rest-pagination): ``limit``
(at most 1000), ``after`` (older than this trade id), ``before`` (newer), and
the ``CB-BEFORE``/``CB-AFTER`` headers naming the first and last trade id of the
page.  As Coinbase documents for trades, ``side`` is the maker's.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import signal
import struct
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from l3_atom.sim import gate
from l3_atom.sim.book_faults import SequenceFaults
from l3_atom.sim.orderflow import DEFAULT_PRODUCTS, IsoClock, OrderFlow

DEFAULT_HOST = "127.0.0.1"
DEFAULT_SEED = 1
DEFAULT_RATE = 1000.0
MIN_RATE = 1.0
MAX_RATE = 100_000.0

# The flow is generated in batches: every tick sends what the rate owes since the last one.  Ticks are
# short enough for smooth high rates and, at low rates, about one message apart (no idle spinning).
MIN_TICK_SECONDS = 0.002
MAX_TICK_SECONDS = 0.05
# Debt carried over when sending falls behind (a slow client); beyond this, messages are not owed.
MAX_CATCH_UP_SECONDS = 0.1
HEARTBEAT_SECONDS = 1.0
# The largest frame a client may send us (a subscribe listing many products fits easily).
CLIENT_FRAME_LIMIT = 1 << 20
# Bytes a connection may buffer before sending waits for it: a slow client slows the flow, it loses nothing...
WRITER_LIMIT = 4 << 20
DRAIN_POLL_SECONDS = 0.001
# ...unless it reads nothing for this long: then it is dropped, as Coinbase drops slow consumers.
SLOW_CLIENT_SECONDS = 5.0
CLOSE_TIMEOUT_SECONDS = 2.0
DEFAULT_OVERSIZE_BYTES = 2 << 20
MAX_OVERSIZE_BYTES = 64 << 20
DEFAULT_FAULT_EVERY = 1000
# Flow messages that go to nobody after POST /_sim/disconnect, so reconnecting clients see a gap.
DEFAULT_DISCONNECT_MISSED = 100
# The journal's "connection" for level-3 REST book bodies served: "rest:<product id>"; trade-history pages
# served: "trades:<product id>".
REST_JOURNAL_CONN = "rest"
TRADES_JOURNAL_CONN = "trades"

FULL = "full"
TICKER = "ticker"
HEARTBEAT = "heartbeat"
CHANNELS = (FULL, TICKER, HEARTBEAT)

MALFORMED_JSON = "malformed_json"
UNKNOWN_TYPE = "unknown_type"
MISSING_FIELD = "missing_field"
MISTYPED_FIELD = "mistyped_field"
OVERSIZE = "oversize"
FAULT_KINDS = (MALFORMED_JSON, UNKNOWN_TYPE, MISSING_FIELD, MISTYPED_FIELD, OVERSIZE)
FAULT_DEFAULT_FIELD = "price"
UNKNOWN_MESSAGE_TYPE = "sim_unknown_type"

JSON_CONTENT_TYPE = "application/json"
# Trade history paging, as Coinbase's: default and largest page; the trades kept per product (older ones are gone).
TRADES_PAGE_LIMIT = 1000
TRADES_KEPT = 1_000_000
CB_BEFORE, CB_AFTER = "CB-BEFORE", "CB-AFTER"
# A match's fields that its REST trade-history entry keeps.
TRADE_FIELDS = ("time", "trade_id", "price", "size", "side")


def _now_us() -> int:
    return time.time_ns() // 1000


# RFC 6455 section 5.2: FIN + text opcode, then a 7-bit, 16-bit or 64-bit payload length (servers do not mask).
_FIN_TEXT = 0x81
_MAX_LENGTH_7 = 125
_MAX_LENGTH_16 = 0xFFFF
_LENGTH_16_MARK = 126
_LENGTH_64_MARK = 127
_pack_header_16 = struct.Struct("!BBH").pack
_pack_header_64 = struct.Struct("!BBQ").pack


def encode_text_frames(payloads: Iterable[bytes]) -> bytes:
    """Unmasked websocket text frames for ``payloads`` (UTF-8 JSON), concatenated for one write."""
    parts = []
    for payload in payloads:
        length = len(payload)
        if length <= _MAX_LENGTH_7:
            parts.append(bytes((_FIN_TEXT, length)))
        elif length <= _MAX_LENGTH_16:
            parts.append(_pack_header_16(_FIN_TEXT, _LENGTH_16_MARK, length))
        else:
            parts.append(_pack_header_64(_FIN_TEXT, _LENGTH_64_MARK, length))
        parts.append(payload)
    return b"".join(parts)


def _json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON_CONTENT_TYPE)


class Pacing:
    """What the flow's rate owes, tick by tick: the whole messages due, the fraction carried over.

    Falling behind (a late tick, a slow client) is owed for at most ``MAX_CATCH_UP_SECONDS``: past
    that, the messages are not sent later in a burst (the rate is a ceiling, not a debt).
    """

    def __init__(self, rate: float):
        self.rate = rate
        self.owed = 0.0
        # The fraction under one message is always carried (capped at max(1, ...), a rate of 7.5/s ran at ~6.6/s).
        self.max_owed = 1.0 + rate * MAX_CATCH_UP_SECONDS
        # Short enough for smooth high rates; at low rates about one message apart.
        self.tick = min(MAX_TICK_SECONDS, max(MIN_TICK_SECONDS, 1.0 / rate))

    def due(self, elapsed: float) -> int:
        """The whole messages owed after ``elapsed`` seconds more (:meth:`sent` takes off those sent)."""
        self.owed = min(self.owed + elapsed * self.rate, self.max_owed)
        return int(self.owed)

    def sent(self, count: int) -> None:
        self.owed -= count

    def idle(self) -> None:
        """Nobody listens: nothing is owed for this time."""
        self.owed = 0.0


class SubscribeError(ValueError):
    """A subscribe/unsubscribe request Coinbase would refuse; the text is the error's ``reason``."""


@dataclass
class _Client:
    """One websocket connection and what it subscribed to (channel -> ordered product ids)."""

    conn_id: int
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    subscriptions: dict[str, dict[str, None]] = field(default_factory=dict)

    def products(self, channel: str) -> dict[str, None]:
        return self.subscriptions.get(channel) or {}


class _Journal:
    """Every frame sent, one JSON line per frame, flushed per batch so a reader sees it at once."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("ab")

    def write(self, conn_id: int | str, frames: Iterable[bytes]) -> None:
        self._file.write(b"".join(orjson.dumps({"conn": conn_id, "data": frame.decode()}) + b"\n" for frame in frames))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class CoinbaseSimulator:
    """Coinbase Exchange websocket feed and REST API over one seeded order flow."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        seed: int = DEFAULT_SEED,
        rate: float = DEFAULT_RATE,
        products: Sequence[str] = DEFAULT_PRODUCTS,
        max_messages: int = 0,
        journal_path: str | Path | None = None,
        faults: Sequence[str] = (),
        fault_every: int = DEFAULT_FAULT_EVERY,
        rest_gate: gate.RestGate | None = None,
        subscribe_gate: gate.SubscribeGateFactory | None = None,
    ) -> None:
        """``rest_gate`` and ``subscribe_gate``: the limits past which it says no (default: none)."""
        if not MIN_RATE <= rate <= MAX_RATE:
            raise ValueError(f"rate must be between {MIN_RATE:g} and {MAX_RATE:g} messages/s, not {rate:g}")
        if max_messages < 0:
            raise ValueError("max_messages must be 0 (unlimited) or positive")
        unknown = sorted(set(faults) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
        if faults and fault_every <= 0:
            raise ValueError("fault_every must be positive when faults are given")
        self.host = host
        self.port = port
        self.rate = float(rate)
        self.max_messages = max_messages
        self.flow = OrderFlow(seed, list(products))
        # Products taken off the list (``POST /_sim/listing``): not in /products, refused on subscribe.
        self.delisted: set[str] = set()
        self._journal_path = Path(journal_path) if journal_path else None
        self._faults = list(faults)
        self._fault_every = fault_every
        self._faults_sent = 0
        self.book_faults = SequenceFaults(lambda message: message["type"] != TICKER)
        self._clients: dict[int, _Client] = {}
        self._frames_sent: dict[int, int] = {}
        self._next_conn_id = 1
        # Held while frames go out, so subscription acks, flow batches, heartbeats and faults never interleave.
        self._send_lock = asyncio.Lock()
        self._clock = IsoClock()
        # Per product: the ids and REST bodies of every trade made, oldest first (for /products/{id}/trades).
        self._trade_ids: dict[str, list[int]] = {pid: [] for pid in self.flow.product_ids}
        self._trades: dict[str, list[dict]] = {pid: [] for pid in self.flow.product_ids}
        self._journal: _Journal | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self.rest_gate = rest_gate or gate.RestGate()
        self.subscribe_gate = subscribe_gate or gate.SubscribeGateFactory()
        self.books_served: dict[str, int] = {}

    # ------------------------------------------------------------- lifecycle

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0 picks a free one, then ``port`` holds it) and start the flow."""
        app = web.Application(middlewares=[gate.rest_middleware(self.rest_gate, _not_limited)])
        app.router.add_get("/", self._handle_websocket)
        app.router.add_get("/products", self._handle_products)
        app.router.add_get("/products/{product_id}", self._handle_product)
        app.router.add_get("/products/{product_id}/book", self._handle_book)
        app.router.add_get("/products/{product_id}/ticker", self._handle_ticker)
        app.router.add_get("/products/{product_id}/trades", self._handle_trades)
        app.router.add_post("/_sim/inject", self._handle_inject)
        app.router.add_post("/_sim/book_fault", self._handle_book_fault)
        app.router.add_post("/_sim/disconnect", self._handle_disconnect)
        app.router.add_post("/_sim/listing", self._handle_listing)
        app.router.add_get("/_sim/stats", self._handle_stats)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        try:
            await self._runner.setup()
            await web.TCPSite(self._runner, self.host, self.port).start()
            self.port = self._runner.addresses[0][1]
            if self._journal_path:
                self._journal = _Journal(self._journal_path)
        except BaseException:
            await self.stop()
            raise
        self._tasks = [asyncio.create_task(self._run_flow()), asyncio.create_task(self._run_heartbeats())]

    async def stop(self) -> None:
        """Stop generating, close every connection and the listener; safe to call twice."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.disconnect_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------- test hooks

    def stats(self) -> dict:
        """Counts a test or benchmark checks: flow progress and frames per connection."""
        return {
            "messages_generated": self.flow.generated,
            "rate": self.rate,
            "max_messages": self.max_messages,
            "clients": len(self._clients),
            "connections_total": self._next_conn_id - 1,
            "frames_sent": {str(conn_id): count for conn_id, count in self._frames_sent.items()},
            "faults_sent": self._faults_sent,
            "book_faults": dict(self.book_faults.applied),
            "sequences": {pid: self.flow.sequence(pid) for pid in self.flow.product_ids},
            "limits": self.rest_gate.stats(),
            "books_served": dict(self.books_served),
            "trades": {pid: len(ids) for pid, ids in self._trade_ids.items()},
            "subscribed": sorted({pid for c in self._clients.values() for ps in c.subscriptions.values() for pid in ps}),
        }

    async def inject(self, kind: str, product_id: str, size: int = DEFAULT_OVERSIZE_BYTES, field: str = "") -> dict:
        """Send one bad frame to every ``full`` subscriber of ``product_id``, between flow batches."""
        frame = self._fault_frame(kind, product_id, size, field or FAULT_DEFAULT_FIELD)
        async with self._send_lock:
            conns = await self._send_fault(product_id, frame)
        return {"kind": kind, "product_id": product_id, "bytes": len(frame), "conns": conns}

    async def disconnect_all(self, missed: int = 0) -> int:
        """Close every websocket, as a network drop would; the number closed.

        ``missed`` flow messages are then generated and sent to nobody, as the
        real exchange keeps trading while a client reconnects: after it
        resubscribes, its sequence numbers show the gap.
        """
        async with self._send_lock:
            clients = list(self._clients.values())
            self._clients.clear()
            if self.max_messages:
                missed = min(missed, self.max_messages - self.flow.generated)
            if missed > 0:
                self.advance(missed)
        await asyncio.gather(*(self._close(client) for client in clients))
        return len(clients)

    @staticmethod
    async def _close(client: _Client) -> None:
        """Close handshake, or cut the connection when the client does not read its way to our close frame."""
        try:
            await asyncio.wait_for(
                client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"simulator disconnect"), CLOSE_TIMEOUT_SECONDS
            )
        except (TimeoutError, ConnectionError):
            if client.transport is not None:
                client.transport.abort()

    # ------------------------------------------------------------- the flow

    def _flowing(self) -> bool:
        if self.max_messages and self.flow.generated >= self.max_messages:
            return False
        return any(client.subscriptions for client in self._clients.values())

    async def _run_flow(self) -> None:
        """Every tick, generate what the rate owes and send it; owe nothing while nobody listens."""
        loop = asyncio.get_running_loop()
        pacing = Pacing(self.rate)
        last = loop.time()
        while True:
            await asyncio.sleep(pacing.tick)
            now = loop.time()
            elapsed, last = now - last, now
            if not self._flowing():
                pacing.idle()
                continue
            count = pacing.due(elapsed)
            if self.max_messages:
                count = min(count, self.max_messages - self.flow.generated)
            if count <= 0:
                continue
            pacing.sent(count)
            async with self._send_lock:
                await self._publish(self.advance(count))
                await self._send_scheduled_faults(count)

    def advance(self, count: int) -> list[dict]:
        """The flow's next ``count`` messages; their trades join the REST trade history."""
        messages = self.flow.take(count, _now_us())
        for message in messages:
            if message["type"] == "match":
                product_id = message["product_id"]
                ids, trades = self._trade_ids[product_id], self._trades[product_id]
                ids.append(message["trade_id"])
                trades.append({name: message[name] for name in TRADE_FIELDS})
                if len(ids) > TRADES_KEPT:
                    del ids[: len(ids) - TRADES_KEPT], trades[: len(trades) - TRADES_KEPT]
        return messages

    def trade_ids(self, product_id: str) -> list[int]:
        """Every trade id the flow made for ``product_id`` (test hook: what a consumer must find)."""
        return list(self._trade_ids[product_id])

    def trades_page(self, product_id: str, limit: int, before: int | None, after: int | None) -> list[dict]:
        """A page of ``product_id``'s trades, newest first: the newest older than ``after``, the oldest newer
        than ``before``, else the latest."""
        ids, trades = self._trade_ids[product_id], self._trades[product_id]
        if after is not None:
            end = bisect.bisect_left(ids, after)
            start = max(0, end - limit)
        elif before is not None:
            start = bisect.bisect_right(ids, before)
            end = min(len(ids), start + limit)
        else:
            end = len(ids)
            start = max(0, end - limit)
        return trades[start:end][::-1]

    async def _publish(self, messages: list[dict]) -> None:
        dumps = orjson.dumps
        messages = self.book_faults.apply(messages)
        encoded = [(message["product_id"], message["type"] == TICKER, dumps(message)) for message in messages]
        for client in list(self._clients.values()):
            full = client.products(FULL)
            ticker = client.products(TICKER)
            if not full and not ticker:
                continue
            frames = [frame for pid, is_ticker, frame in encoded if pid in (ticker if is_ticker else full)]
            if frames:
                await self._deliver(client, frames)

    async def _run_heartbeats(self) -> None:
        dumps = orjson.dumps
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            async with self._send_lock:
                now = _now_us()
                for client in list(self._clients.values()):
                    frames = [dumps(self.flow.heartbeat(pid, now)) for pid in client.products(HEARTBEAT)]
                    if frames:
                        await self._deliver(client, frames)

    async def _deliver(self, client: _Client, frames: list[bytes]) -> None:
        """Send frames in order with one transport write; wait while the client's buffer is full.

        aiohttp's ``send_frame`` makes one ``send()`` system call per frame;
        at 100,000 messages/s requested that delivered about 59,000/s on the
        2-CPU development machine, against about 85,000/s when each batch's
        frames go to the connection's transport in one write.  This is safe
        because the connection negotiates no compression and every write is
        whole frames, so aiohttp's own control frames (pong, close) only
        ever land between them.
        """
        transport = client.transport
        if client.ws.closed or transport is None or transport.is_closing():
            self._clients.pop(client.conn_id, None)
            return
        transport.write(encode_text_frames(frames))
        self._frames_sent[client.conn_id] += len(frames)
        if self._journal is not None:
            self._journal.write(client.conn_id, frames)
        stalled_since = time.monotonic()
        while transport.get_write_buffer_size() > WRITER_LIMIT and not transport.is_closing():
            if client.ws.closed or time.monotonic() - stalled_since > SLOW_CLIENT_SECONDS:
                self._clients.pop(client.conn_id, None)
                transport.abort()
                return
            await asyncio.sleep(DRAIN_POLL_SECONDS)

    # ------------------------------------------------------------- faults

    def _fault_frame(self, kind: str, product_id: str, size: int, field: str) -> bytes:
        """A bad frame shaped like a ``match`` of ``product_id``; it takes no sequence number of its own."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if product_id not in self.flow.product_ids:
            raise ValueError(f"{product_id} is not a valid product")
        best = self.flow.book(product_id, level=1)
        price = (best["bids"] or best["asks"] or [["1"]])[0][0]
        message = {
            "type": "match",
            "trade_id": self.flow.last_trade_id(product_id),
            "maker_order_id": str(uuid.uuid4()),
            "taker_order_id": str(uuid.uuid4()),
            "side": "buy",
            "size": "0.00000001",
            "price": price,
            "product_id": product_id,
            "sequence": self.flow.sequence(product_id),
            "time": self._clock(_now_us()),
        }
        if kind in (MISSING_FIELD, MISTYPED_FIELD) and field not in message:
            raise ValueError(f"field must be one of {', '.join(message)}, not {field!r}")
        if kind == MALFORMED_JSON:
            text = orjson.dumps(message)
            return text[: len(text) // 2]
        if kind == UNKNOWN_TYPE:
            message["type"] = UNKNOWN_MESSAGE_TYPE
        elif kind == MISSING_FIELD:
            del message[field]
        elif kind == MISTYPED_FIELD:
            message[field] = [message[field]]
        text = orjson.dumps(message)
        if kind == OVERSIZE:
            if not len(text) <= size <= MAX_OVERSIZE_BYTES:
                raise ValueError(f"oversize size must be between {len(text)} and {MAX_OVERSIZE_BYTES} bytes")
            text += b" " * (size - len(text))  # trailing whitespace keeps it valid JSON
        return text

    async def _send_fault(self, product_id: str, frame: bytes) -> list[int]:
        targets = [client for client in list(self._clients.values()) if product_id in client.products(FULL)]
        for client in targets:
            await self._deliver(client, [frame])
        self._faults_sent += 1
        return [client.conn_id for client in targets]

    async def _send_scheduled_faults(self, count: int) -> None:
        """``--fault``: after every ``fault_every`` flow messages, the next kind, on the next product."""
        if not self._faults:
            return
        generated = self.flow.generated
        for _ in range(generated // self._fault_every - (generated - count) // self._fault_every):
            index = self._faults_sent
            kind = self._faults[index % len(self._faults)]
            product_id = self.flow.product_ids[index % len(self.flow.product_ids)]
            await self._send_fault(product_id, self._fault_frame(kind, product_id, DEFAULT_OVERSIZE_BYTES, "price"))

    # ------------------------------------------------------------- websocket

    async def _handle_websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            max_msg_size=CLIENT_FRAME_LIMIT,
            compress=False,  # frames are written raw by _deliver, which needs them uncompressed
            timeout=CLOSE_TIMEOUT_SECONDS,
        )
        if not ws.can_prepare(request).ok:
            return _json_response({"message": "NotFound"}, status=404)
        refused = self.rest_gate.connections.refusal()
        if refused is not None:
            return refused
        await ws.prepare(request)
        client = _Client(self._next_conn_id, ws, request.transport)
        self._next_conn_id += 1
        self._frames_sent[client.conn_id] = 0
        self._clients[client.conn_id] = client
        pace = self.subscribe_gate()
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    if not pace.allows(time.monotonic()):
                        self.rest_gate.counts.subscribe_closes += 1
                        await ws.close(code=gate.POLICY_VIOLATION, message=b"too many messages")
                        break
                    await self._on_request(client, message.data)
        finally:
            self._clients.pop(client.conn_id, None)
        return ws

    async def _on_request(self, client: _Client, data: str | bytes) -> None:
        """Handle ``subscribe``/``unsubscribe``; answer with the connection's subscriptions or an error."""
        async with self._send_lock:
            try:
                request = orjson.loads(data)
            except orjson.JSONDecodeError:
                await self._deliver(client, [orjson.dumps({"type": "error", "message": "Malformed JSON"})])
                return
            kind = request.get("type") if isinstance(request, dict) else None
            try:
                if kind not in ("subscribe", "unsubscribe"):
                    raise SubscribeError(f"{kind!r} is not a valid message type")
                channels = self._parse_channels(request, require_products=kind == "subscribe")
            except SubscribeError as error:
                verb = "unsubscribe" if kind == "unsubscribe" else "subscribe"
                reply = {"type": "error", "message": f"Failed to {verb}", "reason": str(error)}
                await self._deliver(client, [orjson.dumps(reply)])
                return
            new_tickers = self._apply(client, kind, channels)
            frames = [orjson.dumps(self._subscriptions(client))]
            for product_id in new_tickers:
                ticker = self.flow.last_ticker(product_id)
                if ticker is not None:
                    frames.append(orjson.dumps(ticker))
            await self._deliver(client, frames)

    def _parse_channels(self, request: dict, require_products: bool) -> dict[str, list[str]]:
        """Channels as Coinbase accepts them: names using the top-level ``product_ids``, or objects."""
        top_level = request.get("product_ids") or []
        channels = request.get("channels")
        if not isinstance(channels, list) or not channels:
            raise SubscribeError("channels must be a non-empty list")
        parsed: dict[str, list[str]] = {}
        for channel in channels:
            if isinstance(channel, str):
                name, product_ids = channel, top_level
            elif isinstance(channel, dict):
                name, product_ids = channel.get("name"), channel.get("product_ids", top_level)
            else:
                raise SubscribeError(f"{channel!r} is not a valid channel")
            if name not in CHANNELS:
                raise SubscribeError(f"{name} is not a valid channel")
            if not isinstance(product_ids, list) or not all(isinstance(pid, str) for pid in product_ids):
                raise SubscribeError("product_ids must be a list of strings")
            for product_id in product_ids:
                # A delisted product can be unsubscribed, not subscribed.
                if product_id not in self.flow.product_ids or (require_products and product_id in self.delisted):
                    raise SubscribeError(f"{product_id} is not a valid product")
            if require_products and not product_ids:
                raise SubscribeError(f"{name} requires product_ids")
            parsed.setdefault(name, []).extend(product_ids)
        return parsed

    @staticmethod
    def _apply(client: _Client, kind: str, channels: dict[str, list[str]]) -> list[str]:
        """Update the client's subscriptions; the products newly subscribed to ``ticker``."""
        new_tickers = []
        for name, product_ids in channels.items():
            current = client.subscriptions.setdefault(name, {})
            if kind == "subscribe":
                if name == TICKER:
                    new_tickers.extend(pid for pid in product_ids if pid not in current)
                current.update(dict.fromkeys(product_ids))
            elif product_ids:
                for product_id in product_ids:
                    current.pop(product_id, None)
            else:
                current.clear()
            if not current:
                del client.subscriptions[name]
        return list(dict.fromkeys(new_tickers))

    @staticmethod
    def _subscriptions(client: _Client) -> dict:
        return {
            "type": "subscriptions",
            "channels": [
                {"name": name, "product_ids": list(product_ids), "account_ids": None}
                for name, product_ids in client.subscriptions.items()
            ],
        }

    # ------------------------------------------------------------- REST

    def _product_or_404(self, request: web.Request) -> str:
        product_id = request.match_info["product_id"]
        if product_id not in self.flow.product_ids:
            raise web.HTTPNotFound(text=orjson.dumps({"message": "NotFound"}).decode(), content_type=JSON_CONTENT_TYPE)
        return product_id

    async def _handle_products(self, request: web.Request) -> web.Response:
        return _json_response([p for p in self.flow.products() if p["id"] not in self.delisted])

    def change_listing(self, listed: Sequence[str] = (), delisted: Sequence[str] = ()) -> list[str]:
        """Take products off the list or put them back (of those the flow generates); the list after."""
        unknown = sorted((set(listed) | set(delisted)) - set(self.flow.product_ids))
        if unknown:
            raise ValueError(f"unknown products {unknown}")
        self.delisted = (self.delisted - set(listed)) | set(delisted)
        return [pid for pid in self.flow.product_ids if pid not in self.delisted]

    async def _handle_listing(self, request: web.Request) -> web.Response:
        """``{"list": [...], "delist": [...]}``: a listing change, as a venue's product list changes over time."""
        try:
            body = await request.json(loads=orjson.loads)
            listed = self.change_listing(body.get("list", []), body.get("delist", []))
        except (AttributeError, TypeError, ValueError) as error:
            return _json_response({"message": f"bad listing request: {error}"}, status=400)
        return _json_response({"listed": listed})

    async def _handle_product(self, request: web.Request) -> web.Response:
        product_id = self._product_or_404(request)
        return _json_response(next(p for p in self.flow.products() if p["id"] == product_id))

    async def _handle_book(self, request: web.Request) -> web.Response:
        product_id = self._product_or_404(request)
        level = request.query.get("level", "1")
        if level not in ("1", "2", "3"):
            return _json_response({"message": "Invalid level"}, status=400)
        book = self.flow.book(product_id, int(level))
        if level == "3":
            self.books_served[product_id] = self.books_served.get(product_id, 0) + 1
        book.update({"auction_mode": False, "auction": None, "time": self._clock(_now_us())})
        response = _json_response(book)
        if level == "3" and self._journal is not None:
            self._journal.write(f"{REST_JOURNAL_CONN}:{product_id}", [response.body])
        return response

    async def _handle_ticker(self, request: web.Request) -> web.Response:
        product_id = self._product_or_404(request)
        best = self.flow.book(product_id, level=1)
        ticker = self.flow.last_ticker(product_id) or {}
        return _json_response(
            {
                "ask": best["asks"][0][0] if best["asks"] else "0",
                "bid": best["bids"][0][0] if best["bids"] else "0",
                "volume": ticker.get("volume_24h", "0"),
                "trade_id": self.flow.last_trade_id(product_id),
                "price": ticker.get("price", "0"),
                "size": ticker.get("last_size", "0"),
                "time": ticker.get("time", self._clock(_now_us())),
            }
        )

    async def _handle_trades(self, request: web.Request) -> web.Response:
        product_id = self._product_or_404(request)
        try:
            limit = int(request.query.get("limit", TRADES_PAGE_LIMIT))
            before, after = (int(request.query[name]) if name in request.query else None for name in ("before", "after"))
        except ValueError:
            return _json_response({"message": "limit, before and after must be integers"}, status=400)
        if not 1 <= limit <= TRADES_PAGE_LIMIT:
            return _json_response({"message": f"limit must be 1 to {TRADES_PAGE_LIMIT}"}, status=400)
        page = self.trades_page(product_id, limit, before, after)
        response = _json_response(page)
        if self._journal is not None:
            self._journal.write(f"{TRADES_JOURNAL_CONN}:{product_id}", [response.body])
        if page:
            response.headers[CB_BEFORE] = str(page[0]["trade_id"])
            response.headers[CB_AFTER] = str(page[-1]["trade_id"])
        return response

    async def _handle_inject(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=orjson.loads)
            result = await self.inject(
                body["kind"], body["product_id"], int(body.get("size", DEFAULT_OVERSIZE_BYTES)), body.get("field", "")
            )
        except (KeyError, TypeError, ValueError) as error:
            return _json_response({"message": f"bad inject request: {error}"}, status=400)
        return _json_response(result)

    async def _handle_book_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=orjson.loads)
            if body["product_id"] not in self.flow.product_ids:
                raise ValueError(f"{body['product_id']} is not a valid product")
            self.book_faults.arm(body["kind"], body["product_id"])
        except (KeyError, TypeError, ValueError) as error:
            return _json_response({"message": f"bad book_fault request: {error}"}, status=400)
        return _json_response({"armed": body["kind"], "product_id": body["product_id"]})

    async def _handle_disconnect(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=orjson.loads) if request.can_read_body else {}
            missed = int(body.get("missed", DEFAULT_DISCONNECT_MISSED))
        except (AttributeError, TypeError, ValueError) as error:
            return _json_response({"message": f"bad disconnect request: {error}"}, status=400)
        return _json_response({"disconnected": await self.disconnect_all(missed)})

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return _json_response(self.stats())


def _not_limited(request: web.Request) -> bool:
    """The websocket and the test hooks are outside the REST budget."""
    return gate.is_websocket(request) or request.path.startswith("/_sim/")


# ----------------------------------------------------------------- command line


async def _serve_until_signal(simulator: CoinbaseSimulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await simulator.start()
    try:
        print(f"coinbase simulator listening on {simulator.ws_url} rest {simulator.rest_url}", flush=True)
        await stop.wait()
    finally:
        await simulator.stop()


def serve(**options: Any) -> None:
    """Run the simulator until SIGINT or SIGTERM, announcing its URLs on one stdout line.

    ``options`` are :class:`CoinbaseSimulator`'s keyword arguments.
    """
    asyncio.run(_serve_until_signal(CoinbaseSimulator(**options)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options, for ``runner.py simulate coinbase``."""
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port for websocket and REST; 0 picks a free one")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="same seed, same order flow")
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"flow messages per second, {MIN_RATE:g} to {MAX_RATE:g} (default %(default)s)",
    )
    parser.add_argument(
        "--products", default=",".join(DEFAULT_PRODUCTS), help="comma-separated product ids (default %(default)s)"
    )
    parser.add_argument(
        "--max-messages", type=int, default=0, help="stop generating after this many flow messages; 0 = unlimited"
    )
    parser.add_argument("--journal", metavar="PATH", help="append every frame sent as a JSON line {conn, data}")
    parser.add_argument(
        "--fault",
        action="append",
        choices=FAULT_KINDS,
        default=[],
        help="inject this bad frame kind periodically (repeatable; kinds and products take turns)",
    )
    parser.add_argument(
        "--fault-every",
        type=int,
        default=DEFAULT_FAULT_EVERY,
        help="flow messages between injected faults (default %(default)s)",
    )
    gate.add_arguments(parser)


def main(args: argparse.Namespace) -> None:
    """Run the simulator from parsed :func:`add_arguments` options."""
    rest_gate, subscribe_gate = gate.gates(args)
    serve(
        rest_gate=rest_gate,
        subscribe_gate=subscribe_gate,
        host=args.host,
        port=args.port,
        seed=args.seed,
        rate=args.rate,
        products=[pid.strip() for pid in args.products.split(",") if pid.strip()],
        max_messages=args.max_messages,
        journal_path=args.journal,
        faults=args.fault,
        fault_every=args.fault_every,
    )


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description="Local Coinbase Exchange simulator")
    add_arguments(_parser)
    main(_parser.parse_args())
