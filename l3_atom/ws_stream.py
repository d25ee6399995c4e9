"""The websocket stream of normalised records, as JSON, on ``ws://HOST:PORT/ws``.

One protocol for ``runner.py local --serve`` and ``runner.py gateway``; each
feeds :class:`StreamServer` the decoded records it has (``publish``).

Protocol (every message is one JSON object, as text):

- On connect the server sends ``{"type": "info", "feeds": [...], "symbols": [...],
  "queue": N}``: the feeds (``dead_letter`` included) and symbol keys
  (``<source>_<symbol>``, e.g. ``coinbase_BTC.USD``) it streams.  Where symbols
  are learnt from the records (the gateway), every client gets a new info
  message when one appears.
- The client subscribes, and may unsubscribe, any number of times::

      {"op": "subscribe", "feeds": ["trades_l3"], "symbols": ["coinbase_BTC.USD"]}
      {"op": "unsubscribe", "feeds": ["trades_l3"], "symbols": ["coinbase_BTC.USD"]}

  ``subscribe`` adds every pair of a feed and a symbol it names; ``"*"``, or
  leaving the list out, means all.  ``unsubscribe`` removes the
  subscriptions it matches (``{"op": "unsubscribe"}`` removes them all; it
  cannot carve an exception out of a ``"*"`` subscription).  Dead letters
  are keyed by their raw key, so ``dead_letter`` takes symbols ``"*"``.  The
  server answers ``{"type": "subscribed", "subscriptions": [{"feed": ...,
  "symbol": ...}, ...]}`` (all of them, after the change), or
  ``{"type": "error", "error": "..."}`` and changes nothing (an unknown
  exchange, symbol or feed; a malformed request, naming what was expected).
  ``{"op": "info"}`` asks for the info message again.
- Records follow, from the moment of subscribing (there is no history):
  each is the object ``runner.py consume --json`` prints, ``{"topic", "key",
  ...fields}``, decimals as exact strings.  A message with ``topic`` is a
  record; one with ``type`` is from the protocol.
- Book feeds start from the book: right after ``subscribed``, each newly
  subscribed ``lob`` / ``lob_l3`` symbol whose book the server holds comes as
  ``{"type": "snapshot", "feed", "key", "in_sync", "records": [...]}``, the
  book as ``is_snapshot`` records of that feed (``lob_l3``: one ``open`` per
  resting order); the feed's records that follow apply on top of it.
- A client that reads too slowly has a queue of ``N`` messages; records that
  find it full are dropped for that client only and counted.  Below the queue
  the server keeps at most ``UNSENT_BYTES`` unsent in the kernel
  (``TCP_NOTSENT_LOWAT``), so that a client that stops reading fills its queue
  after a bounded number of bytes, not after the socket's autotuned megabytes.  Where they
  were dropped the client receives ``{"type": "dropped", "count": K}``
  before the next record, so it knows exactly where its stream has a gap.
  A slow client never slows the server or other clients; one that keeps
  sending requests while its queue is full is disconnected (1008).
- Requests larger than ``MAX_REQUEST_BYTES``, or more than ``REQUEST_BURST``
  at once (refilled at ``REQUESTS_PER_S``), are refused with an error saying
  so; a message beyond ``MAX_MESSAGE_BYTES`` closes the connection (1009).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from l3_atom.consume import format_json, plain
from l3_atom.topics import DEAD_LETTER, LOB, LOB_L3

if TYPE_CHECKING:
    # The runtime that serves the stream builds the books and hands them over.
    from l3_atom.stream_processing.book_agent import BookStore

LOG = logging.getLogger(__name__)
STREAM_PATH = "/ws"
ALL = "*"
SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
INFO = "info"
# Pings find dead peers; a client that reads nothing at all stops answering them and is closed.
HEARTBEAT_S = 30.0
CLOSE_TIMEOUT_S = 2.0
# A request names a few feeds and symbols; anything larger is refused, anything huge closes the socket.
MAX_REQUEST_BYTES = 8 * 1024
MAX_MESSAGE_BYTES = 64 * 1024
# Requests a client may send at once, and how fast that allowance comes back.
REQUEST_BURST = 20
REQUESTS_PER_S = 5.0
BOOK_FEEDS = (LOB, LOB_L3)
# The books here hold every symbol; the book store still wants a partition.
ONLY_PARTITION = 0
# Unsent bytes the kernel holds per client: Linux otherwise grows a socket's send buffer to tcp_wmem's
# maximum (4 MiB by default) even for a peer that reads nothing, megabytes no queue bound sees.  The
# low-water mark bounds only what is not yet sent, not what is in flight, so a fast client on a long
# link keeps its throughput (Linux Documentation/networking/ip-sysctl.rst, tcp_notsent_lowat).
UNSENT_BYTES = 16 * 1024
# Queued messages written to a client in one go, at most (the frames of a few hundred records).
WRITE_BYTES = 64 * 1024
# RFC 6455 section 5.2 (https://www.rfc-editor.org/rfc/rfc6455#section-5.2): FIN bit and the text opcode,
# then a 7-bit payload length, or 126 and a 16-bit length, or 127 and a 64-bit length (network order).
TEXT_FRAME_START = 0x80 | WSMsgType.TEXT
SHORT_LENGTH_LIMIT, MEDIUM_LENGTH_MARK, MEDIUM_LENGTH_LIMIT, LONG_LENGTH_MARK = 126, 126, 1 << 16, 127
_FRAME_HEADER_SHORT, _FRAME_HEADER_MEDIUM, _FRAME_HEADER_LONG = (
    struct.Struct("!BB"), struct.Struct("!BBH"), struct.Struct("!BBQ"),
)
EXPECTED_REQUEST = 'one JSON object, e.g. {"op": "subscribe", "feeds": ["trades"], "symbols": ["coinbase_BTC.USD"]}'


def bound_unsent_bytes(transport: asyncio.BaseTransport | None) -> None:
    """Keep at most ``UNSENT_BYTES`` of a client's stream unsent in the kernel (TCP on Linux and macOS).

    Without it the client's queue still bounds memory and counts drops, only after the socket's buffer.
    """
    sock = transport.get_extra_info("socket") if transport is not None else None
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if sock is None or option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, UNSENT_BYTES)
    except OSError as exc:
        LOG.warning("cannot bound a client's unsent bytes (%s): a slow client may hold its socket's "
                    "send buffer before its queue drops records", exc)


def split_key(key: str) -> tuple[str, str]:
    """``(exchange, symbol)`` of a normalised key: source names never contain ``_``."""
    exchange, _, symbol = key.partition("_")
    return exchange, symbol


class _Client:
    """One connection: its subscriptions, its bounded queue of messages to send, its request allowance."""

    def __init__(self, ws: web.WebSocketResponse, capacity: int, transport: asyncio.Transport | None = None):
        self.ws = ws
        self.capacity = capacity
        # The connection's transport, where queued messages are written several at a time (None: one by one).
        self.transport = transport
        self.subscriptions: set[tuple[str, str]] = set()
        self.queue: deque[str] = deque()
        self.ready = asyncio.Event()
        # Records dropped since the last one queued: reported where the gap is.
        self.lost = 0
        self.dropped = 0
        self.sent = 0
        self.allowance = float(REQUEST_BURST)
        self.allowance_at = time.monotonic()

    def wants(self, topic: str, key: str) -> bool:
        s = self.subscriptions
        return (topic, key) in s or (topic, ALL) in s or (ALL, key) in s or (ALL, ALL) in s

    def offer(self, text: str) -> bool:
        """Queue a record; False (counted) when the queue is full."""
        queue = self.queue
        if len(queue) >= self.capacity:
            self.lost += 1
            self.dropped += 1
            return False
        if self.lost:
            queue.append(orjson.dumps({"type": "dropped", "count": self.lost}).decode())
            self.lost = 0
        queue.append(text)
        self.ready.set()
        return True

    def control(self, message: dict[str, Any]) -> None:
        """Queue a protocol message (never dropped: one per request the client sent)."""
        self.queue.append(orjson.dumps(message).decode())
        self.ready.set()

    def take_request(self) -> bool:
        """Spend one request of the allowance; False when there is none left."""
        now = time.monotonic()
        self.allowance = min(REQUEST_BURST, self.allowance + (now - self.allowance_at) * REQUESTS_PER_S)
        self.allowance_at = now
        if self.allowance < 1:
            return False
        self.allowance -= 1
        return True

    async def send_forever(self) -> None:
        """Send what is queued: many messages in one write while the client keeps up, else aiohttp's, one each.

        aiohttp writes each message on its own, one system call each: for a stream of small records
        that was most of the cost of sending.  While the transport has nothing left unsent, the queued
        messages go out as frames in one write (at most ``WRITE_BYTES``); once it holds some (a client
        slower than the stream), aiohttp sends them and waits for the transport to drain, as before.
        """
        queue = self.queue
        ws = self.ws
        transport = self.transport
        while True:
            await self.ready.wait()
            self.ready.clear()
            while queue:
                if transport is not None and len(queue) > 1 and not transport.get_write_buffer_size():
                    if ws.closed or transport.is_closing():  # no frame may follow a close frame
                        raise ConnectionResetError("the client's connection is closing")
                    frames, size = [], 0
                    while queue and size < WRITE_BYTES:
                        frame = text_frame(queue.popleft().encode())
                        frames.append(frame)
                        size += len(frame)
                    transport.write(b"".join(frames))
                    self.sent += len(frames)
                else:
                    await ws.send_str(queue.popleft())
                    self.sent += 1


def text_frame(payload: bytes) -> bytes:
    """A server's unfragmented, unmasked text frame (RFC 6455, section 5.2): FIN and opcode, length, payload."""
    length = len(payload)
    if length < SHORT_LENGTH_LIMIT:
        return _FRAME_HEADER_SHORT.pack(TEXT_FRAME_START, length) + payload
    if length < MEDIUM_LENGTH_LIMIT:
        return _FRAME_HEADER_MEDIUM.pack(TEXT_FRAME_START, MEDIUM_LENGTH_MARK, length) + payload
    return _FRAME_HEADER_LONG.pack(TEXT_FRAME_START, LONG_LENGTH_MARK, length) + payload


def _error(message: str) -> dict[str, Any]:
    return {"type": "error", "error": message}


class StreamServer:
    """Serves the stream on an aiohttp app; ``publish`` hands a record to the clients that want it.

    ``books``, when given, is kept from the ``lob`` / ``lob_l3`` records published, so that a new
    subscriber starts from the book (the ``snapshot`` message) rather than from a stream it cannot use.
    The snapshot requests those books make go to ``on_resync``; without it they are dropped.
    """

    def __init__(
        self,
        feeds: Iterable[str],
        symbols: Iterable[str],
        client_queue: int,
        books: BookStore | None = None,
        exchanges: Iterable[str] = (),
        on_resync: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.feeds = sorted({*feeds, DEAD_LETTER})
        self.symbols = sorted(symbols)
        self.exchanges = {*exchanges, *(split_key(key)[0] for key in self.symbols)}
        self.client_queue = client_queue
        self.books = books
        self.on_resync = on_resync
        self.clients: set[_Client] = set()
        self.connections = 0
        self.dropped = 0
        self.refused = 0
        # Messages sent to clients that have left (those still here count their own).
        self._sent_before = 0

    def register(self, app: web.Application) -> None:
        app.router.add_get(STREAM_PATH, self._handle)

    def wanted(self, topic: str, key: str) -> bool:
        """Whether anyone needs this record: a client subscribed to it, or the books."""
        if self.books is not None and topic in BOOK_FEEDS:
            return True
        return any(client.wants(topic, key) for client in self.clients)

    def keep_book(self, topic: str, value: dict[str, Any]) -> None:
        """Apply a book record to the books (``publish`` does; a reader catching up calls this alone)."""
        if self.books is not None and topic in BOOK_FEEDS:
            books = self.books
            books.apply(topic, ONLY_PARTITION, value)
            if books.resync_requests:
                requests, books.resync_requests = books.resync_requests, []
                # Without a connector to ask (the gateway), the processor's own books ask for snapshots.
                if self.on_resync is not None:
                    for request in requests:
                        self.on_resync(request)

    def publish(self, topic: str, key: str, value: dict[str, Any]) -> None:
        """One decoded record: into the books, then to every client subscribed to it."""
        self.keep_book(topic, value)
        text = None
        for client in self.clients:
            if client.subscriptions and client.wants(topic, key):
                if text is None:
                    text = format_json(topic, key, value)
                if not client.offer(text):
                    self.dropped += 1

    def add_symbol(self, key: str) -> None:
        """A symbol key seen for the first time: clients learn of it from a new info message."""
        self.symbols = sorted({*self.symbols, key})
        self.exchanges.add(split_key(key)[0])
        info = self.info()
        for client in self.clients:
            client.control(info)

    async def close(self) -> None:
        for client in list(self.clients):
            # A client that reads nothing cannot take a close frame either: give up after a while.
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(
                    client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping"), CLOSE_TIMEOUT_S
                )

    def stats(self) -> dict[str, Any]:
        return {
            "clients": len(self.clients),
            "connections": self.connections,
            "sent": self._sent_before + sum(client.sent for client in self.clients),
            "dropped": self.dropped,
            "refused_requests": self.refused,
            "largest_client_queue": max((len(client.queue) for client in self.clients), default=0),
        }

    def info(self) -> dict[str, Any]:
        return {"type": INFO, "feeds": self.feeds, "symbols": self.symbols, "queue": self.client_queue}

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES, compress=False)
        await ws.prepare(request)
        bound_unsent_bytes(request.transport)
        client = _Client(ws, self.client_queue, request.transport)
        self.clients.add(client)
        self.connections += 1
        sender = asyncio.create_task(client.send_forever())
        client.control(self.info())
        try:
            async for message in ws:
                if len(client.queue) >= client.capacity:
                    # Requests whose replies it does not read would grow its queue without bound.
                    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"not reading its replies")
                    break
                if message.type == WSMsgType.TEXT:
                    self._request(client, message.data)
                elif message.type == WSMsgType.BINARY:
                    client.control(_error(f"requests are text messages: {EXPECTED_REQUEST}"))
        finally:
            self.clients.discard(client)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
            self._sent_before += client.sent
        return ws

    def _request(self, client: _Client, text: str) -> None:
        """Answer one request, unless it is too large or comes too soon after many others."""
        size = len(text.encode())
        if size > MAX_REQUEST_BYTES:
            self.refused += 1
            client.control(_error(f"request refused: {size} bytes, at most {MAX_REQUEST_BYTES}"))
            return
        if not client.take_request():
            self.refused += 1
            client.control(_error(
                f"request refused: too many requests, at most {REQUEST_BURST} at once and {REQUESTS_PER_S:g} a second"
            ))
            return
        before = set(client.subscriptions)
        client.control(self.answer(client, text))
        for feed, key in self._book_pairs(client.subscriptions - before):
            if not any((f, k) in before for f in (feed, ALL) for k in (key, ALL)):
                snapshot = self.snapshot(feed, key)
                if snapshot is not None:
                    client.control(snapshot)

    def _book_pairs(self, subscriptions: set[tuple[str, str]]) -> list[tuple[str, str]]:
        """The (book feed, symbol key) pairs that subscriptions cover, ``"*"`` spelt out."""
        if self.books is None:
            return []
        pairs = set()
        for feed, key in subscriptions:
            for book_feed in BOOK_FEEDS if feed == ALL else (feed,) if feed in BOOK_FEEDS else ():
                pairs |= {(book_feed, k) for k in (self.symbols if key == ALL else (key,))}
        return sorted(pairs)

    def answer(self, client: _Client, text: str) -> dict[str, Any]:
        """Apply one request; the reply is the new subscription list, the info, or why nothing changed."""
        try:
            request = orjson.loads(text)
            op = request["op"]
            if op == INFO:
                return self.info()
            if op not in (SUBSCRIBE, UNSUBSCRIBE):
                raise ValueError(f"unknown op {op!r}; expected one of: {SUBSCRIBE}, {UNSUBSCRIBE}, {INFO}")
            feeds = self._names(request, "feeds", self.feeds)
            symbols = self._symbols(request)
        except orjson.JSONDecodeError:
            return _error(f"not JSON: expected {EXPECTED_REQUEST}")
        except (KeyError, TypeError):
            return _error(f'a request needs "op": {SUBSCRIBE}, {UNSUBSCRIBE} or {INFO}; expected {EXPECTED_REQUEST}')
        except ValueError as exc:
            return _error(str(exc))
        if op == SUBSCRIBE:
            client.subscriptions |= {(feed, symbol) for feed in feeds for symbol in symbols}
        else:
            client.subscriptions = {
                (feed, symbol)
                for feed, symbol in client.subscriptions
                if not ((ALL in feeds or feed in feeds) and (ALL in symbols or symbol in symbols))
            }
        return {
            "type": "subscribed",
            "subscriptions": [{"feed": feed, "symbol": symbol} for feed, symbol in sorted(client.subscriptions)],
        }

    def snapshot(self, feed: str, key: str) -> dict[str, Any] | None:
        """The ``snapshot`` message of one book feed and symbol, or None where no book is held."""
        if self.books is None or feed not in BOOK_FEEDS:
            return None
        exchange, symbol = split_key(key)
        held = (self.books.l2 if feed == LOB else self.books.l3).get((exchange, symbol))
        if held is None:
            return None
        book = held.book
        common = {"exchange": exchange, "symbol": symbol, "is_snapshot": True, "sequence": book.sequence}
        if feed == LOB:
            records = [
                {**common, "side": side, "price": plain(price), "size": plain(size)}
                for side, levels in (("bid", book.bids.levels), ("ask", book.asks.levels))
                for price, size in levels.items()
            ]
        else:
            records = [
                {**common, "event_type": "open", "order_id": order_id, "side": order.side,
                 "price": plain(order.price), "size": plain(order.size)}
                for order_id, order in book.orders.items()
            ]
        return {"type": "snapshot", "feed": feed, "key": key, "in_sync": held.in_sync, "records": records}

    @staticmethod
    def _names(request: dict[str, Any], field: str, known: Sequence[str]) -> set[str]:
        names = request.get(field, [ALL])
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError(f'"{field}" must be a list of strings, e.g. ["*"]')
        unknown = [name for name in names if name != ALL and name not in known]
        if unknown:
            raise ValueError(f"unknown {field}: {', '.join(unknown)}; streaming: {', '.join(known)}")
        return set(names)

    def _symbols(self, request: dict[str, Any]) -> set[str]:
        """The symbols a request names; an unknown exchange is named as such, before unknown symbols."""
        names = request.get("symbols", [ALL])
        if isinstance(names, list):
            exchanges = {split_key(name)[0] for name in names if isinstance(name, str) and name != ALL}
            unknown = sorted(exchanges - self.exchanges)
            if unknown:
                raise ValueError(
                    f"unknown exchange: {', '.join(unknown)}; streaming: {', '.join(sorted(self.exchanges))}"
                )
        return self._names(request, "symbols", self.symbols)
