"""The Faust side of candles: window state in a changelogged table, closed candles published, a query API.

Trades of one (exchange, symbol) share a key and so a partition; the window
state of that key lives in the ``candle_windows`` table, whose changelog lets
a worker that takes over the partition (after a crash or a rebalance) resume
every open window.  Each state remembers the last trade offset it applied, so
trades replayed after a crash (offsets not yet committed) are not counted
twice, and the ids of its recent trades: a trade the processors published twice
(a raw message replayed after a processor worker's crash, at least once) sits at
two offsets, and the second is skipped by its id.  Recent closed candles are kept in ``candle_history`` for the query API:

    GET /candles/{exchange}/{symbol}/{interval}                 the latest candle
    GET /candles/{exchange}/{symbol}/{interval}?start=MS&end=MS  closed candles starting in [start, end)

answered by whichever worker holds the symbol (others forward the request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Any

import faust
import orjson
from faust.exceptions import SameNode
from faust.web import Request, Response, View

from l3_atom.avro.codecs import AvroEncoder, decode_wire, parsed_schema
from l3_atom.stream_processing.batched_consumer import BatchingApp
from l3_atom.stream_processing.candles import CandleBuilder, Trade, WindowState, candle_output, interval_ms
from l3_atom.stream_processing.publisher import RecordPublisher
from l3_atom.topics import TRADES, TRADES_L3

LOG = logging.getLogger(__name__)
WINDOWS_TABLE = "candle_windows"
HISTORY_TABLE = "candle_history"
# Closed candles kept per (exchange, symbol, interval) for queries.
HISTORY_LENGTH = 1440
DECIMAL_TAG = "$d"
STATS_INTERVAL_S = 10.0
# Trade ids remembered per symbol, to count a trade published twice once: those this close to the
# watermark (a replay after a processor crash repeats the last seconds), and this many at most.
TRADE_ID_HORIZON_MS = 120_000
TRADE_ID_LIMIT = 50_000


def _encode(value: Any) -> bytes:
    return orjson.dumps(value, default=lambda v: {DECIMAL_TAG: str(v)} if isinstance(v, Decimal) else str(v))


def _decode_hook(value: Any) -> Any:
    if isinstance(value, dict):
        if DECIMAL_TAG in value and len(value) == 1:
            return Decimal(value[DECIMAL_TAG])
        return {k: _decode_hook(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_hook(v) for v in value]
    return value


class SymbolCandles:
    """What the table keeps per (exchange, symbol): windows, applied offsets, candles not yet published."""

    def __init__(self, state: WindowState, offsets: dict[str, int], pending: list[dict[str, Any]],
                 trade_ids: dict[str, int] | None = None):
        self.state = state
        self.offsets = offsets
        self.pending = pending
        # Recent trade ids -> their trade times, oldest first.
        self.trade_ids = trade_ids if trade_ids is not None else {}

    def first_time(self, trade_id: str | None, timestamp: int) -> bool:
        """Whether the trade ``trade_id`` is new here (remembered from now on); a trade without an id always is."""
        if trade_id is None:
            return True
        ids = self.trade_ids
        if trade_id in ids:
            return False
        ids[trade_id] = timestamp
        horizon = max(timestamp, self.state.watermark or timestamp) - TRADE_ID_HORIZON_MS
        while ids:
            oldest = next(iter(ids))
            if len(ids) <= TRADE_ID_LIMIT and ids[oldest] >= horizon:
                break
            del ids[oldest]
        return True

    def encode(self) -> bytes:
        windows = {name: {str(start): acc for start, acc in starts.items()} for name, starts in self.state.windows.items()}
        return _encode({"watermark": self.state.watermark, "windows": windows, "offsets": self.offsets,
                        "pending": self.pending, "trade_ids": list(self.trade_ids.items())})

    @classmethod
    def decode(cls, raw: bytes | None) -> SymbolCandles:
        if not raw:
            return cls(WindowState(), {}, [])
        value = _decode_hook(orjson.loads(raw))
        windows = {n: {int(start): acc for start, acc in starts.items()} for n, starts in value["windows"].items()}
        trade_ids = dict(value.get("trade_ids", ()))  # states written before trade ids were kept have none
        return cls(WindowState(value["watermark"], windows), value["offsets"], value["pending"], trade_ids)


def candle_json(record: dict[str, Any]) -> dict[str, Any]:
    return {k: format(v, "f") if isinstance(v, Decimal) else v for k, v in record.items()}


class CandleService:
    """Wires the pure ``CandleBuilder`` into a Faust app."""

    def __init__(
        self,
        app: BatchingApp,
        intervals: list[str],
        grace_ms: int,
        idle_close_ms: int,
        encoder: AvroEncoder,
        publisher: RecordPublisher,
        schemas_by_id: dict[int, dict[str, Any]],
    ):
        self.app = app
        self.intervals = intervals
        self.builder = CandleBuilder(intervals, grace_ms)
        self.idle_close_ms = idle_close_ms
        self.encoder = encoder
        self.publisher = publisher
        self.schemas_by_id = schemas_by_id
        self.published = 0
        self.duplicates_skipped = 0
        self.undecodable = 0
        # bytes keys and values: Faust stores them raw; we encode the state ourselves.
        table_options = {"key_type": bytes, "value_type": bytes, "use_partitioner": True}
        self.windows = app.Table(WINDOWS_TABLE, default=lambda: None, **table_options)
        self.history = app.Table(HISTORY_TABLE, default=lambda: None, **table_options)
        # States changed since the last commit, not yet in the table.
        self.dirty: dict[bytes, SymbolCandles] = {}
        # The agent and the idle timer both change states and await in between: one at a time.
        self.changing = asyncio.Lock()
        topic = app.batched_topic(TRADES, TRADES_L3)

        async def build_candles(stream: faust.StreamT) -> None:
            async for batch in stream:
                async with self.changing:
                    await self.publish_pending(self.apply(batch))

        app.agent(topic, name="build_candles")(build_candles)
        app.timer(max(idle_close_ms / 1000 / 4, 0.5))(self.close_idle)
        app.timer(STATS_INTERVAL_S)(self.log_stats)
        app.page("/candles/{exchange}/{symbol}/{interval}")(self._view())

    def apply(self, records: list[Any]) -> set[bytes]:
        """A batch of trade records: update their symbols' windows; the keys whose windows closed.

        Updated entries stay in memory (``dirty``) and reach the table, whose every write is a
        changelog record, only in :meth:`write_dirty`, which runs in the producer flush Faust makes
        before each offset commit and when partitions are revoked: the changelog then holds every
        trade up to the committed offsets (a new owner reads it there), and replayed trades are
        skipped by their offsets.  Closed candles are written at once (``publish_pending``).
        """
        entries: dict[bytes, SymbolCandles] = {}
        for record in records:
            entry = entries.get(record.key)
            if entry is None:
                entry = entries[record.key] = self._entry(record.key)
            self._apply_trade(entry, record)
        self.dirty.update(entries)
        return {key for key, entry in entries.items() if entry.pending}

    def _entry(self, key: bytes) -> SymbolCandles:
        """A symbol's state: the in-memory one if it changed since the last commit, else the table's."""
        entry = self.dirty.get(key)
        return entry if entry is not None else SymbolCandles.decode(self.windows[key])

    def _write(self, key: bytes, entry: SymbolCandles) -> None:
        self.windows[key] = entry.encode()
        self.dirty.pop(key, None)

    def write_dirty(self) -> None:
        """Write every state changed since the last commit to the table (Faust flushes, then commits)."""
        for key, entry in list(self.dirty.items()):
            self._write(key, entry)

    def _apply_trade(self, entry: SymbolCandles, record: Any) -> None:
        offset_key = f"{record.topic}:{record.partition}"
        if entry.offsets.get(offset_key, -1) >= record.offset:
            self.duplicates_skipped += 1  # replayed after a crash: already counted
            return
        try:
            value = decode_wire(record.value, self.schemas_by_id)
        except (KeyError, ValueError, TypeError):
            self.undecodable += 1  # another schema id or a malformed record: counted, never a stopped stream
            return
        entry.offsets[offset_key] = record.offset
        if not entry.first_time(value.get("trade_id"), value["event_timestamp"]):
            self.duplicates_skipped += 1  # published twice (a processor's replay): counted once
            return
        trade = Trade(value["exchange"], value["symbol"], value["price"], value["size"],
                      value["event_timestamp"], value["atom_timestamp"])
        self.builder.states[(trade.exchange, trade.symbol)] = entry.state
        entry.pending += self.builder.add(trade)

    async def log_stats(self) -> None:
        """Late trades are counted, never dropped silently: say how many, per symbol and interval."""
        LOG.info(
            "candles: %d published, %d replayed trades skipped, %d undecodable, late trades %s",
            self.published, self.duplicates_skipped, self.undecodable, dict(self.builder.late),
        )

    async def close_idle(self) -> None:
        """Close quiet symbols' windows by wall clock (less ``idle_close_ms`` of skew); publish leftovers."""
        async with self.changing:
            await self.publish_pending(self._close_idle(int(time.time() * 1000) - self.idle_close_ms))

    def _close_idle(self, now_ms: int) -> set[bytes]:
        closing = set()
        for key in set(self.windows.keys()) | set(self.dirty):
            entry = self._entry(key)
            exchange, _, symbol = key.decode().partition("_")
            self.builder.states[(exchange, symbol)] = entry.state
            closed = self.builder.advance(exchange, symbol, now_ms) if entry.state.windows else []
            if closed:
                entry.pending += closed
                self.dirty[key] = entry
            if entry.pending:
                closing.add(key)
        return closing

    async def publish_pending(self, keys: set[bytes]) -> None:
        """Make the pending candles durable in the changelog, publish them, then clear them.

        A crash before publishing leaves them pending for the next owner (at least once);
        consumers may see a candle twice only if the crash falls between publishing and
        the next changelog flush.
        """
        if not keys:
            return
        entries = {key: self._entry(key) for key in keys}
        for key, entry in entries.items():
            self._write(key, entry)
        await self.app.producer.flush()
        for key, entry in entries.items():
            history = orjson.loads(self.history[key] or b"{}")
            for record in entry.pending:
                topic, out_key, value = candle_output(record)
                self.publisher.produce(topic, out_key, self.encoder.encode(value))
                kept = history.setdefault(record["interval"], [])
                kept.append(candle_json(record))
                del kept[:-HISTORY_LENGTH]
            self.published += len(entry.pending)
            self.history[key] = orjson.dumps(history)
        await self.publisher.flush()
        for key, entry in entries.items():
            entry.pending = []
            self._write(key, entry)

    def query(self, exchange: str, symbol: str, interval: str, start: int | None, end: int | None) -> Any:
        key = f"{exchange}_{symbol}".encode()
        closed = orjson.loads(self.history[key] or b"{}").get(interval, [])
        if start is None and end is None:
            state = self._entry(key).state
            self.builder.states[(exchange, symbol)] = state
            open_now = [c for c in self.builder.open_candles(exchange, symbol) if c["interval"] == interval]
            latest = candle_json(open_now[-1]) if open_now else (closed[-1] if closed else None)
            return latest
        low = start if start is not None else 0
        high = end if end is not None else 2**63
        return [c for c in closed if low <= c["start"] < high]

    def _view(self) -> type[View]:
        service = self

        class CandleView(View):
            async def get(self, request: Request, exchange: str, symbol: str, interval: str) -> Response:
                if interval not in service.intervals:
                    return self.json({"error": f"interval must be one of {service.intervals}"}, status=400)
                try:
                    start = int(request.query["start"]) if "start" in request.query else None
                    end = int(request.query["end"]) if "end" in request.query else None
                except ValueError:
                    return self.json({"error": "start and end are ms since the epoch"}, status=400)
                try:
                    return await service.app.router.route_req(
                        HISTORY_TABLE, f"{exchange}_{symbol}".encode(), self.web, request
                    )
                except SameNode:
                    pass
                answer = service.query(exchange, symbol, interval, start, end)
                if answer is None:
                    return self.json({"error": f"no candles for {exchange} {symbol} {interval}"}, status=404)
                return self.json(answer)

        return CandleView


def add_candles(
    app: BatchingApp,
    intervals: list[str],
    grace_ms: int,
    idle_close_ms: int,
    encoder: AvroEncoder,
    publisher: RecordPublisher,
    schema_ids: dict[str, int],
) -> CandleService:
    """Add candle building to ``app``; ``schema_ids`` are the registry ids of trades/trades_l3."""
    for name in intervals:
        interval_ms(name)
    schemas_by_id = {schema_id: parsed_schema(topic) for topic, schema_id in schema_ids.items()}
    return CandleService(app, intervals, grace_ms, idle_close_ms, encoder, publisher, schemas_by_id)
