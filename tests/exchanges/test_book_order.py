"""Book order checks of the sources whose websocket sends the snapshot and numbers updates without a predecessor.

Bybit (``u``), Phemex (``sequence``), dYdX (``message_id``) and Kraken futures
(``seq``) number each book message but document no "previous" number, so only
order is checked (``prev_sequence`` is null): a jump in the numbers is no gap.
What these checks can see: a repeat of the last number or one inside the snapshot
(skipped, named), an older update after a newer (published, with a
``book_resync`` request, reason ``out_of_order``) and updates with no snapshot
for 10 s of stream time (``no_snapshot``).  Gemini's v2 book has no numbers at
all: only the missing snapshot can be seen.  The frames are hand-written in each
exchange's documented shape.  All five send the snapshot over the websocket on
subscribe, so their connectors answer a resync by reconnecting the book's
connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import fastavro
import orjson
import pytest

from l3_atom.avro.codecs import parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.data_source import DataFeed
from l3_atom.off_chain.bybit import Bybit
from l3_atom.off_chain.dydx import Dydx
from l3_atom.off_chain.gemini import Gemini
from l3_atom.off_chain.kraken_futures import KrakenFutures
from l3_atom.off_chain.phemex import Phemex
from l3_atom.stream_processing.standardiser import Output, Standardiser
from l3_atom.stream_processing.standardisers.bybit import BybitStandardiser
from l3_atom.stream_processing.standardisers.dydx import DydxStandardiser
from l3_atom.stream_processing.standardisers.gemini import GeminiStandardiser
from l3_atom.stream_processing.standardisers.kraken_futures import KrakenFuturesStandardiser
from l3_atom.stream_processing.standardisers.phemex import PhemexStandardiser
from l3_atom.topics import BOOK_RESYNC, LOB
from tests.sinks import NullSink

T0 = 1_700_000_000_000_000
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)
SECOND = 1_000_000
# Stream time a book with updates and no snapshot waits for the connector's own snapshot.
NO_SNAPSHOT_WAIT = 10 * SECOND
DUPLICATE = "duplicate book update"
STALE = "stale: already in the book snapshot"


class Source(NamedTuple):
    """One exchange's book frames: a snapshot and an update numbered ``sequence``, and how they are keyed."""

    make: Callable[[], Standardiser]
    snapshot: Callable[[int], dict]
    update: Callable[[int], dict]
    # (raw key, symbol header) the connector gives the frames.
    key: str | None
    header: str | None
    symbol: str


def bybit_book(kind: str) -> Callable[[int], dict]:
    return lambda u: {"topic": "orderbook.50.BTCUSDT", "type": kind, "ts": 1,
                      "data": {"s": "BTCUSDT", "b": [["30000.5", "1.5"]], "a": [], "u": u, "seq": 7_000_000 + u}}


def phemex_book(kind: str) -> Callable[[int], dict]:
    return lambda sequence: {"depth": 30, "orderbook_p": {"asks": [], "bids": [["20700.5", "1.622"]]},
                             "sequence": sequence, "symbol": "BTCUSDT", "type": kind}


def dydx_snapshot(message_id: int) -> dict:
    return {"type": "subscribed", "connection_id": "c", "message_id": message_id, "channel": "v4_orderbook",
            "id": "BTC-USD", "contents": {"bids": [{"price": "28194", "size": "4.7"}], "asks": []}}


def dydx_update(message_id: int) -> dict:
    return {"type": "channel_data", "connection_id": "c", "message_id": message_id, "channel": "v4_orderbook",
            "id": "BTC-USD", "contents": {"bids": [["27773", "1.9"]]}}


def kraken_futures_snapshot(seq: int) -> dict:
    return {"feed": "book_snapshot", "product_id": "PF_XBTUSD", "timestamp": 1612269825817, "seq": seq,
            "tickSize": None, "bids": [{"price": 34892.5, "qty": 6385}], "asks": []}


def kraken_futures_update(seq: int) -> dict:
    return {"feed": "book", "product_id": "PF_XBTUSD", "side": "sell", "seq": seq, "price": 34981, "qty": 0,
            "timestamp": 1612269953629}


SOURCES = {
    "bybit": Source(BybitStandardiser, bybit_book("snapshot"), bybit_book("delta"),
                    "bybit_linear/BTCUSDT_orderbook50", "BTC.USDT-PERP", "BTC.USDT-PERP"),
    "phemex": Source(PhemexStandardiser, phemex_book("snapshot"), phemex_book("incremental"), None, None,
                     "BTC.USDT-PERP"),
    "dydx": Source(DydxStandardiser, dydx_snapshot, dydx_update, None, None, "BTC.USD-PERP"),
    "kraken-futures": Source(KrakenFuturesStandardiser, kraken_futures_snapshot, kraken_futures_update, None, None,
                             "BTC.USD-PERP"),
}


class Book:
    """One source's standardiser fed hand-written book frames, as the connector keys them."""

    def __init__(self, source: Source):
        self.source = source
        self.std = source.make()

    def send(self, message: dict, atom: int = T0) -> list[Output]:
        outputs = self.std.standardise(orjson.dumps(message), atom, self.source.key, self.source.header)
        for out in outputs:
            assert fastavro.validate(out.record, parsed_schema(out.topic), raise_errors=True)
        return outputs

    def snapshot(self, sequence: int, atom: int = T0) -> list[Output]:
        return self.send(self.source.snapshot(sequence), atom)

    def update(self, sequence: int, atom: int = T0) -> list[Output]:
        return self.send(self.source.update(sequence), atom)


@pytest.fixture(params=sorted(SOURCES))
def book(request: pytest.FixtureRequest) -> Book:
    return Book(SOURCES[request.param])


def lob(outputs: list[Output]) -> list[tuple[bool, int | None, int | None]]:
    return [(o.record["is_snapshot"], o.record["sequence"], o.record["prev_sequence"]) for o in outputs
            if o.topic == LOB]


def resyncs(outputs: list[Output]) -> list[tuple[str, str]]:
    return [(o.record["reason"], o.record["detail"]) for o in outputs if o.topic == BOOK_RESYNC]


def test_updates_in_order_after_the_snapshot_are_published(book: Book) -> None:
    """A jump in the numbers is no gap: these sources document no previous number (prev_sequence is null)."""
    assert lob(book.snapshot(100)) == [(True, 100, None)]
    assert lob(book.update(101)) == [(False, 101, None)]
    outputs = book.update(5000)
    assert lob(outputs) == [(False, 5000, None)]
    assert resyncs(outputs) == []
    assert book.std.book_checks.stats() == {"snapshots": 1}
    assert not book.std.skipped


def test_a_repeated_update_is_skipped(book: Book) -> None:
    book.snapshot(100)
    book.update(101)
    assert book.update(101) == []
    assert dict(book.std.skipped) == {DUPLICATE: 1}
    assert book.std.book_checks.continuity.in_sync(book.source.symbol)


def test_updates_inside_the_snapshot_are_skipped_as_stale(book: Book) -> None:
    book.snapshot(100)
    assert book.update(99) == []
    assert book.update(100) == []
    assert dict(book.std.skipped) == {STALE: 2}
    assert book.std.book_checks.continuity.in_sync(book.source.symbol)


def test_an_older_update_after_a_newer_is_published_and_asks_for_a_snapshot(book: Book) -> None:
    """It may hold a change the book lacks: published, and the book is out of sync until a new snapshot."""
    book.snapshot(100)
    book.update(105)
    outputs = book.update(103)
    assert lob(outputs) == [(False, 103, None)]
    assert resyncs(outputs) == [("out_of_order", "sequence 103 after 105")]
    [request] = [o for o in outputs if o.topic == BOOK_RESYNC]
    assert request.key == f"{book.std.source}_{book.source.symbol}"
    assert request.record["symbol"] == book.source.symbol
    # Rate-limited: no second request before the retry time; the snapshot the reconnect brings ends it.
    assert resyncs(book.update(106, T0 + SECOND)) == []
    assert resyncs(book.snapshot(200, T0 + 2 * SECOND)) == []
    assert resyncs(book.update(201, T0 + 20 * SECOND)) == []
    assert book.std.book_checks.stats() == {"snapshots": 2, "out_of_order": 1, "resyncs_requested": 1}


def test_updates_without_a_snapshot_ask_for_one_after_ten_seconds(book: Book) -> None:
    """The connector's own snapshot gets one wait to come (a new worker joins mid-stream); then a request."""
    assert resyncs(book.update(5)) == []
    assert resyncs(book.update(6, T0 + NO_SNAPSHOT_WAIT - 1)) == []
    assert resyncs(book.update(7, T0 + NO_SNAPSHOT_WAIT)) == [("no_snapshot", "updates before any snapshot")]
    assert resyncs(book.update(8, T0 + 2 * NO_SNAPSHOT_WAIT)) == [("timeout", "updates before any snapshot")]
    assert resyncs(book.snapshot(9, T0 + 3 * NO_SNAPSHOT_WAIT)) == []
    assert lob(book.update(10, T0 + 4 * NO_SNAPSHOT_WAIT)) == [(False, 10, None)]


def test_a_bybit_restart_snapshot_replaces_the_book() -> None:
    """After a Bybit service restart the snapshot has u = 1 and the deltas count on from it: none is stale."""
    book = Book(SOURCES["bybit"])
    book.snapshot(500)
    book.update(501)
    assert lob(book.snapshot(1)) == [(True, 1, None)]
    outputs = book.update(2)
    assert lob(outputs) == [(False, 2, None)]
    assert resyncs(outputs) == []
    assert not book.std.skipped


def test_a_dydx_batch_is_one_step_of_the_order() -> None:
    """Batched updates share the frame's message_id: all their levels are published, and the batch counts once."""
    book = Book(SOURCES["dydx"])
    book.snapshot(2)
    batch = {"type": "channel_batch_data", "connection_id": "c", "message_id": 3, "channel": "v4_orderbook",
             "id": "BTC-USD", "contents": [{"bids": [["27773", "1.9"]]}, {"asks": [["27780", "0", "77"]]}]}
    assert lob(book.send(batch)) == [(False, 3, None), (False, 3, None)]
    assert book.send(batch) == []
    assert dict(book.std.skipped) == {DUPLICATE: 1}


def test_a_malformed_update_leaves_the_order_untouched() -> None:
    """A frame that cannot be read goes to dead_letter before it counts: the next good update is still next."""
    book = Book(SOURCES["kraken-futures"])
    book.snapshot(100)
    with pytest.raises(ValueError, match="side must be 'buy' or 'sell'"):
        book.send({**kraken_futures_update(101), "side": "bid"})
    assert lob(book.update(101)) == [(False, 101, None)]
    assert not book.std.skipped


# -- Gemini: no numbers ------------------------------------------------------------------------------------------


def gemini_update(snapshot: bool) -> dict:
    """An ``l2_updates``; the subscription's first (the snapshot) alone carries ``trades`` and ``auction_events``."""
    message = {"type": "l2_updates", "symbol": "BTCUSD", "changes": [["buy", "9122.04", "0.00121425"]]}
    return {**message, "trades": [], "auction_events": []} if snapshot else message


def gemini(message: dict, atom: int = T0, std: GeminiStandardiser | None = None) -> list[Output]:
    return (std or GeminiStandardiser()).standardise(orjson.dumps(message), atom, "gemini_BTCUSD_l2", "BTC.USD")


def test_gemini_updates_are_never_skipped() -> None:
    std = GeminiStandardiser()
    [snapshot] = gemini(gemini_update(True), std=std)
    assert (snapshot.record["is_snapshot"], snapshot.record["sequence"], snapshot.record["prev_sequence"]) == (
        True, None, None)
    for _ in range(3):
        assert lob(gemini(gemini_update(False), std=std)) == [(False, None, None)]
    assert not std.skipped
    assert std.book_checks.stats() == {"snapshots": 1}


def test_gemini_updates_without_a_snapshot_ask_for_one_after_ten_seconds() -> None:
    std = GeminiStandardiser()
    assert resyncs(gemini(gemini_update(False), std=std)) == []
    outputs = gemini(gemini_update(False), T0 + NO_SNAPSHOT_WAIT, std)
    assert resyncs(outputs) == [("no_snapshot", "updates before any snapshot")]
    assert outputs[-1].key == "gemini_BTC.USD"
    assert fastavro.validate(outputs[-1].record, parsed_schema(BOOK_RESYNC), raise_errors=True)
    assert resyncs(gemini(gemini_update(True), T0 + NO_SNAPSHOT_WAIT + 1, std)) == []
    assert resyncs(gemini(gemini_update(False), T0 + 5 * NO_SNAPSHOT_WAIT, std)) == []


@pytest.mark.parametrize("make", [BybitStandardiser, PhemexStandardiser, DydxStandardiser,
                                  KrakenFuturesStandardiser, GeminiStandardiser])
def test_book_resync_is_a_declared_topic(make: Callable[[], Standardiser]) -> None:
    assert BOOK_RESYNC in make().topics


# -- connectors: the websocket brings the snapshot, so a resync is a reconnect -------------------------------------


class FakeConnection:
    def __init__(self) -> None:
        self.reconnects = 0

    def reconnect_now(self) -> None:
        self.reconnects += 1


@pytest.mark.parametrize(
    ("connector", "symbol", "exchange_symbol"),
    [(Bybit, "BTC.USDT-PERP", "linear/BTCUSDT"), (Phemex, "BTC.USDT-PERP", "BTCUSDT"),
     (Dydx, "BTC.USD-PERP", "BTC-USD"), (KrakenFutures, "BTC.USD-PERP", "PF_XBTUSD"),
     (Gemini, "BTC.USD", "BTCUSD")],
)
def test_a_resync_reconnects_the_books_connection(connector: type[DataFeed], symbol: str, exchange_symbol: str) -> None:
    feed = connector([symbol], NullSink(), SETTINGS)
    assert feed.snapshot_polls([exchange_symbol]) == []
    connection = FakeConnection()
    feed.symbol_map = {symbol: exchange_symbol}
    feed.connection_of = {exchange_symbol: connection}
    assert feed.resync(symbol, "out_of_order")
    assert connection.reconnects == 1
    assert feed.resyncs == {"out_of_order": 1}
