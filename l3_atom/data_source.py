"""``DataFeed``: the generic connector every source's class fills in.

A source class declares its endpoints and channels as data and implements
three pure methods: ``parse_symbols`` (REST body -> symbol map),
``subscribe_messages`` and ``frame_key``.  This base class does the I/O:
fetch the symbol map, check the requested symbols, open connections (split
to respect per-connection limits), and hand every frame to a ``FrameSink``.

Optional hooks, for protocols that need them:
``key_of`` (keys that depend on the frame's connection), ``connection_url`` (per-connection URL: streams in the query, a fresh token
on every reconnect), ``reply`` (answer application-level pings, or return
``RECONNECT`` when the exchange asks for one), ``ping`` with
``ping_interval_s`` (a ping the client must send), ``connection_groups``
(which symbols share a connection), ``rest_polls`` (REST endpoints polled
into the raw topic, e.g. open interest) and ``snapshot_polls`` (REST book
snapshots).

Book snapshots: sources whose websocket sends a snapshot on subscribe need
nothing; sources with REST snapshots declare ``snapshot_polls``, fetched
after every (re)connect of the connection that carries the symbol.  When the
processor finds a book wrong it asks for a resync (:meth:`DataFeed.resync`):
a fresh REST snapshot, or else a reconnect of the symbol's connection, whose
subscription brings one.
"""

from __future__ import annotations

import asyncio
import copy
import difflib
import logging
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple, TypeVar

from l3_atom.backfill import TradeHistory, fetch_history, id_holes
from l3_atom.bounded_memo import BoundedMemo
from l3_atom.config import ConnectorSettings
from l3_atom.coverage import (
    BOOK_FEED,
    BOOK_LOST,
    STREAM_DOWN,
    STREAM_UP,
    TRADES_BACKFILLED,
    TRADES_FEED,
    TRADES_UNRECOVERABLE,
    book_closed_reason,
    coverage_record,
)
from l3_atom.errors import UserError
from l3_atom.feed import RestClient, RestError, WebsocketConnection, backoff_delay, now_us
from l3_atom.limits import Limits, Pacer, Rate, RestLimiter
from l3_atom.raw_sink import FrameSink
from l3_atom.symbol_selection import AllSymbols
from l3_atom.tokens import Symbol, SymbolError
from l3_atom.topics import ORIGIN_BACKFILL, normalised_key, raw_key, split_raw_key

LOG = logging.getLogger(__name__)
STATS_INTERVAL_S = 10.0
# Resync requests for one book closer together than this are one request (several detectors, one problem).
RESYNC_MIN_INTERVAL_S = 2.0
SINK_POLL_INTERVAL_S = 0.1
NEAR_MATCHES = 5
# Symbols named in the "streaming" log line; the rest are counted.
NAMES_LOGGED = 10
EXPIRY_FORMAT = "%Y%m%d"
# Distinct raw keys whose symbol is remembered; past this (a source inventing keys) it is worked out per frame.
SYMBOL_CACHE_KEYS = 4096


REST_CONNECTION_ID = "rest"
# For a source that declares nothing (each venue declares its own, cited): one request a second, one
# subscribe a second, one connection a second.
CONSERVATIVE_LIMITS = Limits(rest=(Rate(1, 1.0),), subscribes=Rate(1, 1.0), connections=Rate(1, 1.0))
US_PER_MS = 1000
# A backfill the venue refuses (rate limit, error) is tried this many times, waiting longer each time.
BACKFILL_ATTEMPTS = 3
BACKFILL_RETRY_S = 2.0
# Why a stretch at a gap's start is not recoverable where the first page holds the newest trades after a time.
FIRST_PAGE_NEWEST = ("the first page of the venue's history, asked by time, was full and holds the newest trades "
                     "after that time: older ones in this stretch are out of its reach")
RESTART_REASON = "connector restarted"

# What reading one product of a symbol list may raise when the product lacks a field or has a shape the
# parser does not know: that product is skipped and counted, the rest of the list still counts.
PRODUCT_FAULTS = (KeyError, TypeError, ValueError, AttributeError, IndexError, SymbolError)
# Source -> products of its symbol lists skipped as unreadable, since the process started (for metrics).
SKIPPED_PRODUCTS: Counter[str] = Counter()
# (source, fault) pairs already logged: each kind of fault is logged once, however many products share it.
_LOGGED_FAULTS: set[tuple[str, str]] = set()
T = TypeVar("T")


def readable_products(source: str, products: Iterable[Any], read: Callable[[Any], T | None]) -> Iterator[T]:
    """``read`` of every product of ``source``'s symbol list that it can read and does not leave out (None).

    Venues add fields to their product lists and list products of new shapes (Phemex's 2022 spot
    products had no ``priceScale``): one such product must not fail the whole list, so it is
    skipped, counted in :data:`SKIPPED_PRODUCTS` and logged once per kind of fault.
    """
    for product in products:
        try:
            value = read(product)
        except PRODUCT_FAULTS as exc:
            SKIPPED_PRODUCTS[source] += 1
            fault = f"{type(exc).__name__}: {exc}"
            if (source, fault) not in _LOGGED_FAULTS:
                _LOGGED_FAULTS.add((source, fault))
                LOG.warning("%s: skipped a product of the symbol list (%s): %.200s", source, fault, product)
            continue
        if value is not None:
            yield value


class UnknownSymbol(UserError):
    """A requested symbol the source does not list."""


class RestPoll(NamedTuple):
    """A REST endpoint whose every response is archived as a raw frame."""

    path: str
    params: dict[str, str]
    key: str
    interval_s: float


def _expired(name: str, today: str) -> bool:
    """Whether ``name`` is a dated future (or option) whose expiry (YYYYMMDD) is before ``today``."""
    expiry = Symbol.parse(name).expiry
    return expiry is not None and expiry < today


def _names(symbols: Sequence[str]) -> str:
    """Symbols for a log line: all of a few, the first few of many."""
    shown = ", ".join(symbols[:NAMES_LOGGED])
    return shown if len(symbols) <= NAMES_LOGGED else f"{shown}, ... {len(symbols) - NAMES_LOGGED} more"


def chunked(items: list[T], size: int) -> list[list[T]]:
    """``items`` in consecutive groups of ``size`` (0: one group of all)."""
    size = size or len(items) or 1
    return [items[i : i + size] for i in range(0, len(items), size)]


class DataFeed(ABC):
    """One source's connector.  Subclasses are short and declarative."""

    name: ClassVar[str]
    ws_url: ClassVar[str]
    rest_url: ClassVar[str]
    symbols_path: ClassVar[str]
    channels: ClassVar[tuple[str, ...]]
    # Largest number of symbols one connection may carry (0: no limit).
    max_symbols_per_connection: ClassVar[int] = 0
    # Seconds between the client pings of exchanges that require them (see ``ping``).
    ping_interval_s: ClassVar[float] = 20.0
    # The venue's documented public limits (cited in each venue's docstring).
    limits: ClassVar[Limits] = CONSERVATIVE_LIMITS
    # The venue's REST trade history, where it documents one: trades missed in an outage are fetched from it.
    trade_history: ClassVar[TradeHistory | None] = None
    # Fetch ``snapshot_polls`` after every connect; False: only when the processor asks (``resync``), for
    # venues whose websocket may or may not send the snapshot itself.
    snapshot_on_connect: ClassVar[bool] = True

    def __init__(
        self,
        symbols: Sequence[str],
        sink: FrameSink,
        settings: ConnectorSettings,
        ws_url: str | None = None,
        rest_url: str | None = None,
        channels: Sequence[str] | None = None,
        limits: Limits | None = None,
        every: AllSymbols | None = None,
    ):
        """``limits`` replaces the class's (``config.ini`` overrides, ``[limits.<source>]``)."""
        self.requested = [str(Symbol.parse(s)) for s in symbols]
        # ``--all-symbols``: the requested symbols are chosen from the venue's list once it is loaded.
        self.every = every
        self.sink = sink
        self.settings = settings
        self.ws_endpoint = ws_url or self.ws_url
        self.rest_endpoint = rest_url or self.rest_url
        self.active_channels = tuple(channels or self.channels)
        self.symbol_map: dict[str, str] = {}
        self.normalised_of = {}
        self.connections: list[WebsocketConnection] = []
        # Exchange symbol -> the connection that carries it (for resyncs).
        self.connection_of: dict[str, WebsocketConnection] = {}
        self.dead_letters = 0
        self.limits = limits or type(self).limits
        # The one REST budget of this source process: symbol lists, snapshots, polls, backfills.
        self.limiter = RestLimiter(self.name, self.limits)
        # New connections (and reconnects) of every connection of this source share one pace.
        self.connect_pacer = Pacer(self.limits.connections)
        # Per IP when the venue says so: one pacer for all connections; else one per connection.
        self._subscribe_pacer = Pacer(self.limits.subscribes) if self.limits.subscribes_per_ip else None
        # Book snapshots that failed and were asked for again (each is retried until it arrives).
        self.snapshot_retries = 0
        self.resyncs: dict[str, int] = {}
        # For metrics: REST requests by (endpoint kind, status) over every client of this feed; snapshots fetched.
        self.rest_requests: Counter[tuple[str, str]] = Counter()
        self.snapshots = 0
        self._last_resync: dict[str, float] = {}
        self._snapshot_client: RestClient | None = None
        # Listing changes followed by the symbol-list refresh (listed, delisted, expired), for metrics.
        self.listing_changes: Counter[str] = Counter()
        self._chunks: dict[str, list[str]] = {}
        self._tasks: list[asyncio.Task] = []
        # Connections opened for new listings, started by the refresh that found them.
        self._added: list[WebsocketConnection] = []
        # Connections closed because every symbol they carried left the venue's list.
        self._closed: set[str] = set()
        # Raw key of a REST poll -> the task polling it; polls of new listings wait here for the refresh to start them.
        self._polls: dict[str, asyncio.Task] = {}
        # Connection index -> the pace of its client messages (subscribes and unsubscribes share it).
        self._pacers: dict[int, Pacer] = {}
        self._new_polls: list[RestPoll] = []
        self._snapshot_lock = asyncio.Lock()
        # Raw key -> its frames that arrived while its REST snapshot was being fetched.
        self._held: dict[str, list[tuple[bytes, int, str]]] = {}
        # Exchange symbol -> since when (ms) its connection is down, and why.
        self._down_since: dict[str, tuple[int, str]] = {}
        # Raw key of a symbol's trades -> the receive time (ms) of the last frame archived under it before this
        # process started, from the raw topic's tail (``runner.py connector``): the downtime is backfilled.
        self.resume_from: dict[str, int] = {}
        self._history_client: RestClient | None = None
        # Exchange symbol -> since when (ms) its trades await a backfill that has not finished (a connection that
        # drops again cancels it): the next backfill starts there.
        self._unfilled: dict[str, int] = {}
        self.backfilled = 0

    @property
    def normalised_of(self) -> dict[str, str]:
        """Exchange symbol -> normalised, for the symbols this connector streams (set it whole, not in place)."""
        return self._normalised_of

    @normalised_of.setter
    def normalised_of(self, value: dict[str, str]) -> None:
        self._normalised_of = value
        # Raw key -> normalised symbol (the ``symbol`` header), worked out once per key, not per frame.
        self._symbol_of_key = BoundedMemo(lambda key: value.get(split_raw_key(key)[1]), SYMBOL_CACHE_KEYS)

    # -- pure, per source ------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def parse_symbols(cls, body: str) -> dict[str, str]:
        """Map normalised symbol -> exchange symbol from the symbols endpoint's body."""

    @abstractmethod
    def subscribe_messages(self, exchange_symbols: Sequence[str]) -> list[str]:
        """The frames that subscribe one connection to ``exchange_symbols``."""

    @abstractmethod
    def frame_key(self, frame: bytes) -> str:
        """The raw-topic key of a frame; never raises (unparsable frames get a key too)."""

    def key_of(self, frame: bytes, connection_id: str) -> str:
        """The raw key of a frame that arrived on ``connection_id``: ``frame_key`` by default.

        Override where a frame's meaning depends on its connection (channel ids
        assigned per connection; one endpoint per instrument category).
        """
        return self.frame_key(frame)

    async def connection_url(self, exchange_symbols: Sequence[str]) -> str:
        """The websocket URL of the connection carrying ``exchange_symbols``; called on every (re)connect."""
        return self.ws_endpoint

    def reply(self, frame: bytes) -> str | bytes | None:
        """The answer a frame needs (an application-level ping), or None.  Override only if needed."""
        return None

    def ping(self) -> str | bytes | None:
        """The application-level ping to send every ``ping_interval_s``, or None (the default: no ping)."""
        return None

    def rest_polls(self, exchange_symbols: Sequence[str]) -> list[RestPoll]:
        """REST endpoints to poll into the raw topic (none by default)."""
        return []

    def snapshot_polls(self, exchange_symbols: Sequence[str]) -> list[RestPoll]:
        """REST book snapshots of ``exchange_symbols`` (none by default: the websocket sends them).

        Each is fetched once after every connect of the symbols' connection and on
        every resync, and archived under its ``key``: the key of the symbol's book
        frames, so snapshot and updates share a partition and stay in order.
        """
        return []

    # -- I/O -------------------------------------------------------------------------------

    def rest_client(self) -> RestClient:
        """A client of this source's REST API that spends from the source's one budget."""
        if self.settings is None:  # symbols only (``fetch_symbol_map``): the default backoff
            return RestClient(self.rest_endpoint, self.limiter)
        backoff = (self.settings.reconnect_initial_delay_s, self.settings.reconnect_max_delay_s)
        return RestClient(self.rest_endpoint, self.limiter, backoff=backoff)

    def _counted_client(self, kind: str) -> RestClient:
        """A REST client whose requests count in ``rest_requests`` under endpoint ``kind``."""
        client = self.rest_client()
        client.requests = self.rest_requests
        client.kind = kind
        return client

    @classmethod
    async def fetch_symbol_map(cls, rest_url: str | None = None) -> dict[str, str]:
        """The symbol map, without starting a connector (``runner.py symbols``)."""
        return await cls([], None, None, rest_url=rest_url).load_symbol_map()

    async def load_symbol_map(self) -> dict[str, str]:
        client = self._counted_client("symbols")
        try:
            return self.parse_symbols(await client.get_text(self.symbols_path))
        finally:
            await client.close()

    def resolve(self, symbol_map: dict[str, str]) -> list[str]:
        """Exchange symbols of the requested symbols; ``UnknownSymbol`` names near matches."""
        missing = [s for s in self.requested if s not in symbol_map]
        if missing:
            hints = []
            for name in missing:
                near = difflib.get_close_matches(name, symbol_map, n=NEAR_MATCHES, cutoff=0.6)
                hints.append(f"{name} (did you mean: {', '.join(near)}?)" if near else name)
            raise UnknownSymbol(f"{self.name} does not list {'; '.join(hints)}")
        return [symbol_map[s] for s in self.requested]

    def symbols_per_connection(self, channels: int | None = None) -> int:
        """How many symbols one connection carries within the venue's per-connection limits (0: no limit).

        ``max_symbols_per_connection`` bounds symbols; the venue's ``limits.streams_per_connection``
        bounds symbols x ``channels`` (the active channels by default); the tighter one wins, and a
        connection always carries at least one symbol.
        """
        limits = [self.max_symbols_per_connection] if self.max_symbols_per_connection else []
        if self.limits.streams_per_connection:
            per_symbol = max(1, len(self.active_channels) if channels is None else channels)
            limits.append(max(1, self.limits.streams_per_connection // per_symbol))
        return min(limits, default=0)

    def connection_groups(self, exchange_symbols: list[str]) -> list[list[str]]:
        """How symbols are spread over connections: :meth:`symbols_per_connection` each by default.

        Override when an exchange needs other groups (e.g. spot and derivatives on different endpoints).
        """
        return chunked(exchange_symbols, self.symbols_per_connection())

    def _on_frame(self, frame: bytes, atom_timestamp: int, connection_id: str, key: str | None = None) -> None:
        """Archive one frame (``key`` given for REST bodies); oversize frames go to dead_letter instead."""
        limit = self.settings.max_frame_bytes
        if len(frame) > limit:
            self.dead_letters += 1
            error = f"frame of {len(frame)} bytes exceeds max_frame_bytes={limit}"
            self.sink.dead_letter(key or self.key_of(frame[:limit], connection_id), frame, error, atom_timestamp)
            return
        key = key or self.key_of(frame, connection_id)
        if self._held and connection_id != REST_CONNECTION_ID:
            held = self._held.get(key)
            if held is not None:
                held.append((frame, atom_timestamp, connection_id))
                return
        self.sink.write(key, frame, atom_timestamp, connection_id, self._symbol_of_key[key])

    def choose(self, symbol_map: dict[str, str]) -> None:
        """With ``--all-symbols``, request every listed symbol the filters take; none is an error."""
        if self.every is None:
            return
        self.requested = self.every.select(symbol_map)
        if not self.requested:
            raise UnknownSymbol(f"{self.name} lists no symbol for {self.every} (it lists {len(symbol_map)})")

    async def run(self) -> None:
        """Connect and stream until cancelled."""
        self.symbol_map = await self.load_symbol_map()
        self.choose(self.symbol_map)
        exchange_symbols = self.resolve(self.symbol_map)
        self.normalised_of = dict(zip(exchange_symbols, self.requested, strict=True))
        for chunk in self.connection_groups(exchange_symbols):
            self._open(chunk)
        LOG.info(
            "%s: streaming %d symbol(s) (%s) on %d connection(s)", self.name, len(self.requested),
            _names(self.requested), len(self.connections),
        )
        tasks = [asyncio.create_task(c.run()) for c in self.connections]
        self._start_polls(self.rest_polls(exchange_symbols))
        tasks.append(asyncio.create_task(self._housekeeping()))
        if self.settings.symbol_refresh_s:
            tasks.append(asyncio.create_task(self._refresh_listings()))
        self._tasks = tasks
        try:
            await asyncio.gather(*tasks)
        finally:
            running = [*self._tasks, *self._polls.values()]
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            for client in (self._snapshot_client, self._history_client):
                if client is not None:
                    await client.close()

    def _open(self, chunk: list[str]) -> WebsocketConnection:
        """A connection carrying ``chunk`` (a list it reads on every connect: symbols dropped from it stay dropped)."""
        replies = self.reply if type(self).reply is not DataFeed.reply else None
        keepalive = (self.ping_interval_s, self.ping) if self.ping() is not None else None

        pacer = self._pacers[len(self.connections)] = self._subscribe_pacer or Pacer(self.limits.subscribes)

        async def subscribe(connection: WebsocketConnection) -> None:
            for message in self.subscribe_messages(chunk):
                await pacer.wait()
                await connection.send(message)
            if self.snapshot_on_connect and self.snapshot_polls(chunk):
                connection.spawn(self.fetch_snapshots(chunk))
            self._stream_up(connection, chunk)

        def closed(reason: str, last_frame_us: int) -> None:
            self._stream_down(chunk, reason, last_frame_us // US_PER_MS)

        async def url() -> str:
            return await self.connection_url(chunk)

        connection = WebsocketConnection(
            url, f"{self.name}.{len(self.connections)}", self.settings, subscribe, self._on_frame, replies,
            keepalive, room=self.sink.room, connect_slot=self.connect_pacer.slot, on_close=closed,
        )
        self.connections.append(connection)
        self._chunks[connection.name] = chunk
        self.connection_of.update(dict.fromkeys(chunk, connection))
        return connection

    # -- listings that change ----------------------------------------------------------------------

    def unsubscribe_messages(self, exchange_symbols: Sequence[str], connection_id: str = "") -> list[str] | None:
        """The frames that unsubscribe connection ``connection_id`` (its current id) from ``exchange_symbols``.

        ``exchange_symbols`` is a group of the same kind as the connection's own (a venue's group may carry
        its endpoint and channels).  None where the venue documents no per-symbol unsubscribe: then a
        dropped symbol leaves its connection at the next reconnect, and a connection left with no symbol
        is closed.  Each venue's class docstring says which it is and cites the venue's page.
        """
        return None

    def _emptied(self) -> list[WebsocketConnection]:
        """Open connections that delistings left with nothing to carry: they are closed."""
        return [
            connection for connection in self.connections
            if not (chunk := self._chunks[connection.name]) and not self.carries_more(chunk)
            and connection.name not in self._closed
        ]

    def carries_more(self, group: Sequence[str]) -> bool:
        """Whether a connection's group carries a subscription of no symbol (dYdX's ``v4_markets``): such a
        connection stays open when every symbol it carried is delisted."""
        return False

    async def _refresh_listings(self) -> None:
        """Load the symbol list every ``symbol_refresh_s`` and apply what changed; failures are logged, retried."""
        while True:
            await asyncio.sleep(self.settings.symbol_refresh_s)
            try:
                symbol_map = await self.load_symbol_map()
            except (TimeoutError, OSError, ConnectionError, ValueError) as exc:
                LOG.warning("%s: symbol list refresh failed: %s", self.name, exc)
                continue
            for connection, messages in self.apply_listing(symbol_map, datetime.now(UTC).strftime(EXPIRY_FORMAT)):
                pacer = self._pacers[self.connections.index(connection)]
                try:
                    for message in messages:
                        await pacer.wait()
                        await connection.send(message)
                except ConnectionError:
                    pass  # Not connected: the next connect subscribes the connection's symbols as they are now.
            for connection in self._emptied():
                self._closed.add(connection.name)
                await connection.close()
            self._tasks += [asyncio.create_task(connection.run()) for connection in self._added]
            self._added = []
            self._start_polls(self._new_polls)
            self._new_polls = []

    def _start_polls(self, polls: Iterable[RestPoll]) -> None:
        """Start polling each of ``polls`` (one task per raw key; a key already polled is left as it is)."""
        for poll in polls:
            if poll.key not in self._polls:
                self._polls[poll.key] = asyncio.create_task(self._poll(poll))

    def _stop_polls(self, exchange_symbol: str) -> None:
        """Stop the REST polls of a symbol that left the list (open interest of a delisted contract)."""
        for poll in self.rest_polls([exchange_symbol]):
            task = self._polls.pop(poll.key, None)
            if task is not None:
                task.cancel()

    def apply_listing(self, symbol_map: dict[str, str], today: str) -> list[tuple[WebsocketConnection, list[str]]]:
        """Follow a new symbol list: drop what is gone, and with ``--all-symbols`` open connections for new listings.

        A requested symbol that is no longer listed is dropped with one log line and counted
        (``listing_changes``: ``expired`` for a dated future past its expiry ``today``, YYYYMMDD,
        else ``delisted``); it leaves its connection's list, its REST polls stop, its book is closed
        (a ``book_lost`` coverage record whose reason starts ``closed:``, which book queries honour),
        and the unsubscribe frames to send are returned.  New listings get connections of their own
        and their REST polls: other connections are not touched; a connection left with no symbol is
        closed.
        """
        gone = [name for name in self.requested if name not in symbol_map]
        added = [name for name in self.every.select(symbol_map) if name not in self.requested] if self.every else []
        unsubscribes = []
        for name in gone:
            kind = "expired" if _expired(name, today) else "delisted"
            self.listing_changes[kind] += 1
            exchange_symbol = self.symbol_map.get(name, "")
            how = "unsubscribed" if self.every else "requested symbol, unsubscribed"
            LOG.warning("%s: %s is no longer listed (%s): %s, book closed", self.name, name, kind, how)
            if exchange_symbol in self.normalised_of:
                self._coverage(exchange_symbol, BOOK_LOST, feed=BOOK_FEED, start=now_us() // US_PER_MS,
                               reason=book_closed_reason(f"{kind} from the venue's symbol list"))
            self.connection_of.pop(exchange_symbol, None)
            self._stop_polls(exchange_symbol)
            unsubscribes += self._leave_connections(exchange_symbol)
        self.symbol_map = symbol_map
        self.requested = [name for name in self.requested if name not in gone] + added
        self.normalised_of = {symbol_map[name]: name for name in self.requested}
        if added:
            self.listing_changes["listed"] += len(added)
            LOG.info("%s: %d new listing(s) subscribed: %s", self.name, len(added), _names(added))
            new_symbols = [symbol_map[name] for name in added]
            for chunk in self.connection_groups(new_symbols):
                self._added.append(self._open(chunk))
            self._new_polls += self.rest_polls(new_symbols)
        return unsubscribes

    def _leave_connections(self, exchange_symbol: str) -> list[tuple[WebsocketConnection, list[str]]]:
        """Take ``exchange_symbol`` off every connection carrying it (one per endpoint, say): the venue's
        unsubscribe frames for each, where it has them; the other symbols of those connections stay as they are."""
        unsubscribes = []
        for connection in self.connections:
            chunk = self._chunks[connection.name]
            if exchange_symbol not in chunk:
                continue
            chunk.remove(exchange_symbol)
            dropped = copy.copy(chunk)  # the same kind of group (endpoint, channels), holding only the symbol
            dropped[:] = [exchange_symbol]
            messages = self.unsubscribe_messages(dropped, connection.connection_id)
            if messages:
                unsubscribes.append((connection, messages))
        return unsubscribes

    async def fetch_snapshots(self, exchange_symbols: Sequence[str]) -> None:
        """Fetch the REST book snapshots of ``exchange_symbols`` one at a time, each into the raw topic.

        While a snapshot is on its way, the frames of its key are held back and written after it, as
        exchanges document (buffer the stream, fetch the snapshot, then apply what follows it): in the
        raw topic every update the snapshot may lack comes after it, never before.  A snapshot that
        fails is asked for again, with backoff, until it arrives; between tries the frames flow on
        unheld, so the processor keeps the book marked lost (updates with no snapshot), never silent.
        An answer that no retry can change (400, 404) is logged and not asked again here: the
        processor's resync requests ask later.
        """
        async with self._snapshot_lock:
            if self._snapshot_client is None:
                self._snapshot_client = self._counted_client("snapshot")
            for poll in self.snapshot_polls(exchange_symbols):
                tries = 0
                while not await self._fetch_snapshot(self._snapshot_client, poll):
                    tries += 1
                    self.snapshot_retries += 1
                    await asyncio.sleep(
                        backoff_delay(tries, self.settings.reconnect_initial_delay_s, self.settings.reconnect_max_delay_s)
                    )
                wait = self.sink.room()
                if wait is not None:
                    await wait

    async def _fetch_snapshot(self, client: RestClient, poll: RestPoll) -> bool:
        """One try at ``poll``'s snapshot (True: done with it); its key's frames are held only while it is out."""
        body = None
        try:
            body = await client.get_text(
                poll.path, poll.params, attempts=1, before_send=lambda: self._held.setdefault(poll.key, [])
            )
        except RestError as exc:
            if not exc.transient:
                LOG.error("%s: book snapshot GET %s refused, not asked again: %s", self.name, poll.path, exc)
                return True
            LOG.warning("%s: book snapshot GET %s failed (asked again): %s", self.name, poll.path, exc)
        finally:
            held = self._held.pop(poll.key, [])
            if body is not None:
                self.snapshots += 1
                self._on_frame(body.encode(), now_us(), REST_CONNECTION_ID, poll.key)
            for frame, atom_timestamp, connection_id in held:
                self._on_frame(frame, atom_timestamp, connection_id)
        return body is not None
    # -- coverage and backfill ------------------------------------------------------------

    def _coverage(self, exchange_symbol: str, kind: str, **fields: object) -> None:
        symbol = self.normalised_of[exchange_symbol]
        stamp = now_us()
        self.sink.coverage(normalised_key(self.name, symbol), coverage_record(
            exchange=self.name, symbol=symbol, kind=kind, event_timestamp=stamp // US_PER_MS, atom_timestamp=stamp,
            **fields,
        ))

    def _stream_down(self, exchange_symbols: Sequence[str], reason: str, since_ms: int) -> None:
        """A connection that was up ended: its symbols' data is missing from its last frame on."""
        for exchange_symbol in exchange_symbols:
            if exchange_symbol not in self._down_since:
                self._down_since[exchange_symbol] = (since_ms, reason)
                self._coverage(exchange_symbol, STREAM_DOWN, reason=reason, start=since_ms)

    def _stream_up(self, connection: WebsocketConnection, exchange_symbols: Sequence[str]) -> None:
        """Subscribed again: the outage ends now; its trades (or a restart's) are fetched where the venue allows."""
        now_ms = now_us() // US_PER_MS
        for exchange_symbol in exchange_symbols:
            down = self._down_since.pop(exchange_symbol, None)
            if down is None and self.resume_from and self.trade_history is not None:
                archived = self.resume_from.pop(raw_key(self.name, exchange_symbol, self.trade_history.feed), None)
                down = None if archived is None else (archived, RESTART_REASON)
            if down is None:
                continue
            since_ms, reason = down
            self._coverage(exchange_symbol, STREAM_UP, reason=reason, start=since_ms, end=now_ms)
            if self.trade_history is not None:
                since_ms = self._unfilled[exchange_symbol] = min(since_ms, self._unfilled.get(exchange_symbol, now_ms))
                connection.spawn(self.backfill(exchange_symbol, since_ms, now_ms))

    async def backfill(self, exchange_symbol: str, since_ms: int, until_ms: int) -> None:
        """Fetch the trades of ``[since_ms, until_ms]`` into the raw topic (marked backfill) and say what it got."""
        history = self.trade_history
        if self._history_client is None:
            self._history_client = self.rest_client()
        fetched = None
        refusal = ""
        for attempt in range(BACKFILL_ATTEMPTS):
            try:
                fetched = await fetch_history(self._history_client.get_text, history, exchange_symbol, since_ms,
                                              until_ms)
                break
            except (TimeoutError, OSError, ConnectionError) as exc:
                refusal = f"the venue refused the backfill: {exc}"
                LOG.warning("%s: backfill of %s failed (attempt %d): %s", self.name, exchange_symbol, attempt + 1, exc)
                await asyncio.sleep(BACKFILL_RETRY_S * (attempt + 1))
        self._unfilled.pop(exchange_symbol, None)
        if fetched is None:
            self._coverage(exchange_symbol, TRADES_UNRECOVERABLE, feed=TRADES_FEED, reason=refusal, start=since_ms,
                           end=until_ms)
            return
        key = raw_key(self.name, exchange_symbol, history.feed)
        symbol = self.normalised_of[exchange_symbol]
        for body in fetched.pages:
            self.sink.write_marked(key, body.encode(), now_us(), REST_CONNECTION_ID, symbol, ORIGIN_BACKFILL)
        trades = fetched.trades
        self.backfilled += len(trades)
        ids = [trade.trade_id for trade in trades]
        LOG.info("%s: backfilled %d trades of %s in %d pages", self.name, len(trades), exchange_symbol,
                 len(fetched.pages))
        if fetched.problem is not None:
            oldest = trades[0].time_ms if trades and history.newest_first else until_ms
            reached = trades[-1].time_ms if trades and not history.newest_first else since_ms
            self._coverage(exchange_symbol, TRADES_UNRECOVERABLE, feed=TRADES_FEED, reason=fetched.problem,
                           start=since_ms if history.newest_first else reached,
                           end=oldest if history.newest_first else until_ms)
        if fetched.unreached is not None:
            self._coverage(exchange_symbol, TRADES_UNRECOVERABLE, feed=TRADES_FEED, reason=FIRST_PAGE_NEWEST,
                           start=fetched.unreached[0], end=fetched.unreached[1])
        self._coverage(exchange_symbol, TRADES_BACKFILLED, feed=TRADES_FEED, start=since_ms, end=until_ms,
                       count=len(trades), sequence_before=ids[0] if ids else None,
                       sequence_after=ids[-1] if ids else None)
        if history.sequential_ids:
            time_of = {trade.trade_id: trade.time_ms for trade in trades}
            for before, after in id_holes(ids):
                self._coverage(exchange_symbol, TRADES_UNRECOVERABLE, feed=TRADES_FEED,
                               reason="the venue's history lacks these trade ids", start=time_of[before],
                               end=time_of[after], sequence_before=before, sequence_after=after,
                               count=after - before - 1)
        wait = self.sink.room()
        if wait is not None:
            await wait

    def resync(self, symbol: str, reason: str = "") -> bool:
        """Get a fresh snapshot of normalised ``symbol``'s book; False when it is not this feed's or too soon.

        A REST snapshot where the source has one; otherwise the symbol's connection
        reconnects, and its subscription brings a new snapshot (of every book on it).
        """
        exchange_symbol = self.symbol_map.get(symbol)
        connection = self.connection_of.get(exchange_symbol or "")
        if connection is None:
            return False
        now = time.monotonic()
        if now - self._last_resync.get(symbol, -RESYNC_MIN_INTERVAL_S) < RESYNC_MIN_INTERVAL_S:
            return False
        self._last_resync[symbol] = now
        self.resyncs[reason] = self.resyncs.get(reason, 0) + 1
        LOG.info("%s: resync of %s (%s)", self.name, symbol, reason or "asked")
        if self.snapshot_polls([exchange_symbol]):
            connection.spawn(self.fetch_snapshots([exchange_symbol]))
        else:
            connection.reconnect_now()
        return True

    async def _poll(self, poll: RestPoll) -> None:
        """Fetch ``poll`` every interval and write each body as a raw frame; failures are logged and retried."""
        client = self._counted_client("poll")
        try:
            while True:
                try:
                    body = (await client.get_text(poll.path, poll.params)).encode()
                    self._on_frame(body, now_us(), REST_CONNECTION_ID, poll.key)
                    wait = self.sink.room()
                    if wait is not None:
                        await wait
                except RestError as exc:
                    LOG.warning("%s: GET %s failed: %s", self.name, poll.path, exc)
                await asyncio.sleep(poll.interval_s)
        finally:
            await client.close()

    async def _housekeeping(self) -> None:
        """Serve the sink's delivery reports and log a summary now and then (never per frame)."""
        ticks_per_stats = int(STATS_INTERVAL_S / SINK_POLL_INTERVAL_S)
        tick = 0
        while True:
            await asyncio.sleep(SINK_POLL_INTERVAL_S)
            self.sink.poll()
            tick += 1
            if tick % ticks_per_stats == 0:
                frames = sum(c.stats.frames for c in self.connections)
                connects = sum(c.stats.connects for c in self.connections)
                LOG.info("%s: %d frames, %d dead letters, %d connects", self.name, frames, self.dead_letters, connects)
