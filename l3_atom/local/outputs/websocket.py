"""A websocket stream of normalised records, as JSON, for any client on ``ws://HOST:PORT/ws``.

Protocol (every message is one JSON object, as text):

- On connect the server sends ``{"type": "info", "feeds": [...], "symbols": [...],
  "queue": N}``: the feeds (``dead_letter`` included) and symbol keys
  (``<source>_<symbol>``, e.g. ``coinbase_BTC.USD``) this runtime streams.
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
  ``{"type": "error", "error": "..."}`` and changes nothing.
  ``{"op": "info"}`` asks for the info message again.
- Records follow, from the moment of subscribing (there is no history):
  each is the object ``runner.py consume --json`` prints, ``{"topic", "key",
  ...fields}``, decimals as exact strings.  A message with ``topic`` is a
  record; one with ``type`` is from the protocol.
- A client that reads too slowly has a queue of ``N`` messages; records that
  find it full are dropped for that client only and counted.  Where they
  were dropped the client receives ``{"type": "dropped", "count": K}``
  before the next record, so it knows exactly where its stream has a gap.
  A slow client never slows the runtime or other clients; one that keeps
  sending requests while its queue is full is disconnected (1008).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from l3_atom.consume import format_json
from l3_atom.local.outputs import LocalRecord
from l3_atom.topics import DEAD_LETTER

STREAM_PATH = "/ws"
ALL = "*"
SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
INFO = "info"
# Pings find dead peers; a client that reads nothing at all stops answering them and is closed.
HEARTBEAT_S = 30.0
CLOSE_TIMEOUT_S = 2.0
MAX_REQUEST_BYTES = 64 * 1024


class _Client:
    """One connection: its subscriptions and its bounded queue of messages to send."""

    def __init__(self, ws: web.WebSocketResponse, capacity: int):
        self.ws = ws
        self.capacity = capacity
        self.subscriptions: set[tuple[str, str]] = set()
        self.queue: deque[str] = deque()
        self.ready = asyncio.Event()
        # Records dropped since the last one queued: reported where the gap is.
        self.lost = 0
        self.dropped = 0
        self.sent = 0

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

    async def send_forever(self) -> None:
        queue = self.queue
        ws = self.ws
        while True:
            await self.ready.wait()
            self.ready.clear()
            while queue:
                await ws.send_str(queue.popleft())
                self.sent += 1


class WebsocketOutput:
    """Serves the stream on an aiohttp app; ``write`` hands records to the clients that want them."""

    name = "websocket"

    def __init__(self, feeds: Iterable[str], symbols: Iterable[str], client_queue: int):
        self.feeds = sorted({*feeds, DEAD_LETTER})
        self.symbols = sorted(symbols)
        self.client_queue = client_queue
        self.clients: set[_Client] = set()
        self.connections = 0
        self.dropped = 0
        # Messages sent to clients that have left (those still here count their own).
        self._sent_before = 0

    def register(self, app: web.Application) -> None:
        app.router.add_get(STREAM_PATH, self._handle)

    async def start(self) -> None:
        """Nothing to open: the runtime serves the app."""

    async def write(self, records: list[LocalRecord]) -> None:
        clients = [client for client in self.clients if client.subscriptions]
        if not clients:
            return
        for record in records:
            text = None
            for client in clients:
                if client.wants(record.topic, record.key):
                    if text is None:
                        text = format_json(record.topic, record.key, record.value)
                    if not client.offer(text):
                        self.dropped += 1

    async def close(self) -> None:
        for client in list(self.clients):
            # A client that reads nothing cannot take a close frame either: give up after a while.
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(
                    client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"runtime stopping"), CLOSE_TIMEOUT_S
                )

    def stats(self) -> dict[str, Any]:
        return {
            "clients": len(self.clients),
            "connections": self.connections,
            "sent": self._sent_before + sum(client.sent for client in self.clients),
            "dropped": self.dropped,
            "largest_client_queue": max((len(client.queue) for client in self.clients), default=0),
        }

    def info(self) -> dict[str, Any]:
        return {"type": INFO, "feeds": self.feeds, "symbols": self.symbols, "queue": self.client_queue}

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_REQUEST_BYTES, compress=False)
        await ws.prepare(request)
        client = _Client(ws, self.client_queue)
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
                    client.control(self.answer(client, message.data))
                elif message.type == WSMsgType.BINARY:
                    client.control({"type": "error", "error": "requests are JSON text messages"})
        finally:
            self.clients.discard(client)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
            self._sent_before += client.sent
        return ws

    def answer(self, client: _Client, text: str) -> dict[str, Any]:
        """Apply one request; the reply is the new subscription list, the info, or why nothing changed."""
        try:
            request = orjson.loads(text)
            op = request["op"]
            if op == INFO:
                return self.info()
            if op not in (SUBSCRIBE, UNSUBSCRIBE):
                raise ValueError(f"unknown op {op!r}; known: {SUBSCRIBE}, {UNSUBSCRIBE}, {INFO}")
            feeds = self._names(request, "feeds", self.feeds)
            symbols = self._names(request, "symbols", self.symbols)
        except orjson.JSONDecodeError:
            return {"type": "error", "error": "a request is one JSON object"}
        except (KeyError, TypeError):
            return {"type": "error", "error": 'a request needs "op": subscribe, unsubscribe or info'}
        except ValueError as exc:
            return {"type": "error", "error": str(exc)}
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

    @staticmethod
    def _names(request: dict[str, Any], field: str, known: Sequence[str]) -> set[str]:
        names = request.get(field, [ALL])
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError(f'"{field}" must be a list of strings')
        unknown = [name for name in names if name != ALL and name not in known]
        if unknown:
            raise ValueError(f"unknown {field}: {', '.join(unknown)}; streaming: {', '.join(known)}")
        return set(names)
