"""Bitfinex's books: the subscription's snapshot, ``SEQ_ALL`` order, repeats, and what asks for a resync.

``SEQ_ALL`` numbers every frame of a connection, all channels together, so a
book's numbers rise with jumps that lose nothing: only their order can be
checked (``prev_sequence`` null), never a gap.  Frames are hand-written in the
shape of docs.bitfinex.com (ws-public-raw-books ``[CHAN_ID, [ORDER_ID, PRICE,
AMOUNT]]``, ws-public-books ``[CHAN_ID, [PRICE, COUNT, AMOUNT]]``) with the
``SEQ`` and ``TIME`` the connector's conf flags append.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import NamedTuple

import fastavro
import orjson
import pytest

from l3_atom.avro.codecs import parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.off_chain.bitfinex import Bitfinex
from l3_atom.stream_processing.book_checks import DUPLICATE_UPDATE, IN_SNAPSHOT, BookChecks
from l3_atom.stream_processing.standardiser import Output
from l3_atom.stream_processing.standardisers.bitfinex import BitfinexStandardiser
from l3_atom.topics import BOOK_RESYNC
from tests.sinks import NullSink

SYMBOL = "BTC.USD"
T0 = 1_700_000_000_000_000
SECOND = 1_000_000
TIME = 1_574_694_475_039
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)
RAW_KEY = "bitfinex_tBTCUSD_rawbook"
P0_KEY = "bitfinex_tBTCUSD_book"


def raw_snapshot(seq: int) -> list:
    return [17, [[34753002978, 7294.7, 1.5], [34753002979, 7295.1, -0.5]], seq, TIME]


def raw_update(seq: int, order_id: int = 34753006045) -> list:
    return [17, [order_id, 7296, -0.25], seq, TIME]


def p0_snapshot(seq: int) -> list:
    return [18, [[7254.5, 2, 1.5], [7255, 1, -0.5]], seq, TIME]


def p0_update(seq: int) -> list:
    return [18, [7254.5, 0, 1], seq, TIME]


class Book(NamedTuple):
    """One kind of Bitfinex book: its raw key, its frames numbered ``SEQ``, and the checks that follow it."""

    key: str
    snapshot: Callable[[int], list]
    update: Callable[[int], list]
    checks: Callable[[BitfinexStandardiser], BookChecks]


RAW = Book(RAW_KEY, raw_snapshot, raw_update, lambda std: std.book_checks)
P0 = Book(P0_KEY, p0_snapshot, p0_update, lambda std: std.level_checks)
BOOKS = pytest.mark.parametrize("kind", [RAW, P0], ids=["raw book", "P0 book"])


def run(std: BitfinexStandardiser, kind: Book, message: list, atom: int = T0) -> list[Output]:
    outputs = std.standardise(orjson.dumps(message), atom, kind.key, SYMBOL)
    for out in outputs:
        assert fastavro.validate(out.record, parsed_schema(out.topic), raise_errors=True)
    return outputs


def resyncs(outputs: list[Output]) -> list[tuple[str, str]]:
    return [(o.record["reason"], o.record["detail"]) for o in outputs if o.topic == BOOK_RESYNC]


@BOOKS
def test_snapshot_then_rising_numbers(kind: Book) -> None:
    std = BitfinexStandardiser()
    snapshot = run(std, kind, kind.snapshot(5))
    assert {(o.record["is_snapshot"], o.record["sequence"], o.record["prev_sequence"]) for o in snapshot} == {
        (True, 5, None)}
    # Numbers jump (other channels' frames take some): no gap, only order is checked.
    [update] = run(std, kind, kind.update(9))
    assert (update.record["is_snapshot"], update.record["sequence"], update.record["prev_sequence"]) == (False, 9, None)
    assert resyncs(run(std, kind, kind.update(40), T0 + 60 * SECOND)) == []
    assert kind.checks(std).continuity.in_sync(SYMBOL)
    assert std.skipped == {}


@BOOKS
def test_repeats_and_updates_inside_the_snapshot_are_skipped(kind: Book) -> None:
    std = BitfinexStandardiser()
    run(std, kind, kind.snapshot(5))
    assert run(std, kind, kind.update(4)) == []
    run(std, kind, kind.update(9))
    assert run(std, kind, kind.update(9)) == []
    assert std.skipped == {IN_SNAPSHOT: 1, DUPLICATE_UPDATE: 1}
    assert kind.checks(std).continuity.in_sync(SYMBOL)


def test_a_repeated_order_update_changes_no_order() -> None:
    """Skipped before it touches the known orders: the order opened once stays an open, not a change."""
    std = BitfinexStandardiser()
    run(std, RAW, raw_snapshot(5))
    [opened] = run(std, RAW, raw_update(6))
    assert opened.record["event_type"] == "open"
    assert run(std, RAW, raw_update(6)) == []
    [changed] = run(std, RAW, [17, [34753006045, 7296, -0.1], 7, TIME])
    assert (changed.record["event_type"], changed.record["size"]) == ("change", Decimal("0.1"))


@BOOKS
def test_an_older_update_after_a_newer_is_published_with_a_resync_request(kind: Book) -> None:
    std = BitfinexStandardiser()
    run(std, kind, kind.snapshot(5))
    run(std, kind, kind.update(9))
    outputs = run(std, kind, kind.update(7), T0 + SECOND)
    assert [o.topic for o in outputs] == [outputs[0].topic, BOOK_RESYNC]
    assert outputs[-1] == Output(BOOK_RESYNC, "bitfinex_BTC.USD", {
        "exchange": "bitfinex", "symbol": SYMBOL, "reason": "out_of_order", "detail": "sequence 7 after 9",
        "atom_timestamp": T0 + SECOND})
    # The resubscribed channel's snapshot puts it right (a new connection numbers from 1 again).
    run(std, kind, kind.snapshot(2), T0 + 2 * SECOND)
    assert kind.checks(std).continuity.in_sync(SYMBOL)


@BOOKS
def test_updates_without_a_snapshot_ask_for_one_after_ten_seconds(kind: Book) -> None:
    std = BitfinexStandardiser()
    assert resyncs(run(std, kind, kind.update(3))) == []
    assert resyncs(run(std, kind, kind.update(4), T0 + 10 * SECOND)) == [
        ("no_snapshot", "updates before any snapshot")]


def test_raw_and_p0_books_of_one_symbol_are_checked_apart() -> None:
    std = BitfinexStandardiser()
    run(std, RAW, raw_snapshot(5))
    run(std, P0, p0_update(6))
    assert std.book_checks.continuity.in_sync(SYMBOL)
    assert not std.level_checks.continuity.in_sync(SYMBOL)


class FakeConnection:
    def __init__(self) -> None:
        self.reconnects = 0

    def reconnect_now(self) -> None:
        self.reconnects += 1


def test_a_resync_reconnects_the_books_connection() -> None:
    """The websocket sends the snapshot on subscribe: no REST snapshot, a reconnect resubscribes."""
    feed = Bitfinex([SYMBOL], NullSink(), SETTINGS)
    assert feed.snapshot_polls(["tBTCUSD"]) == []
    connection = FakeConnection()
    feed.symbol_map = {SYMBOL: "tBTCUSD"}
    feed.connection_of = {"tBTCUSD": connection}
    assert feed.resync(SYMBOL, "out_of_order")
    assert connection.reconnects == 1
