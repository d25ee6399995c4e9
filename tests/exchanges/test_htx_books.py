"""HTX's MBP book: the ``req`` refresh as snapshot, ``seqNum``/``prevSeqNum`` continuity, repeats and gaps.

Frames are hand-written in the shape of HTX's documented examples ("Market By
Price (incremental update)": ``{"ch", "ts", "tick": {"seqNum", "prevSeqNum",
"bids", "asks"}}``; its refresh: ``{"id", "rep", "status": "ok", "data":
{"seqNum", "bids", "asks"}}``), gzip-compressed as HTX sends them.
"""

from __future__ import annotations

import gzip
import json
from decimal import Decimal

import fastavro

from l3_atom.avro.codecs import parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.off_chain.htx import Htx
from l3_atom.stream_processing.book_checks import DUPLICATE_UPDATE, IN_SNAPSHOT
from l3_atom.stream_processing.standardiser import Output
from l3_atom.stream_processing.standardisers.htx import HtxStandardiser
from l3_atom.topics import BOOK_RESYNC, LOB
from tests.sinks import NullSink

CHANNEL = "market.btcusdt.mbp.150"
SYMBOL = "BTC.USDT"
T0 = 1_700_000_000_000_000
SECOND = 1_000_000
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)


def refresh(seq_num: int) -> bytes:
    return gzip.compress(json.dumps({"id": CHANNEL, "rep": CHANNEL, "status": "ok", "data": {
        "seqNum": seq_num, "bids": [[618.37, 71.594]], "asks": [[6866.77, 24.7]]}}).encode())


def update(seq_num: int, prev_seq_num: int, asks: list | None = None) -> bytes:
    asks = [[645.14, 26.75]] if asks is None else asks
    return gzip.compress(json.dumps({"ch": CHANNEL, "ts": 1573199608679, "tick": {
        "seqNum": seq_num, "prevSeqNum": prev_seq_num, "asks": asks}}).encode())


def run(std: HtxStandardiser, frame: bytes, atom: int = T0) -> list[Output]:
    """Keyed as the connector keys MBP frames; every record fits its schema."""
    outputs = std.standardise(frame, atom, "htx_btcusdt_mbp", SYMBOL)
    for out in outputs:
        assert fastavro.validate(out.record, parsed_schema(out.topic), raise_errors=True)
    return outputs


def numbers(outputs: list[Output]) -> list[tuple]:
    return [(o.record["is_snapshot"], o.record["sequence"], o.record["prev_sequence"]) for o in outputs
            if o.topic == LOB]


def test_refresh_then_updates_that_follow_it() -> None:
    std = HtxStandardiser()
    assert numbers(run(std, refresh(100))) == [(True, 100, None), (True, 100, None)]
    assert numbers(run(std, update(101, 100))) == [(False, 101, 100)]
    assert numbers(run(std, update(102, 101))) == [(False, 102, 101)]
    assert std.book_checks.continuity.in_sync(SYMBOL)
    assert std.skipped == {}


def test_updates_inside_the_refresh_and_repeats_are_skipped() -> None:
    std = HtxStandardiser()
    run(std, refresh(100))
    assert run(std, update(99, 98)) == []
    assert run(std, update(100, 99)) == []
    run(std, update(101, 100))
    assert run(std, update(101, 100)) == []
    assert std.skipped == {IN_SNAPSHOT: 2, DUPLICATE_UPDATE: 1}
    assert std.book_checks.continuity.in_sync(SYMBOL)


def test_a_gap_is_published_with_a_resync_request() -> None:
    """prevSeqNum 103 after 101: update 102..103 was missed."""
    std = HtxStandardiser()
    run(std, refresh(100))
    run(std, update(101, 100))
    outputs = run(std, update(104, 103), T0 + SECOND)
    assert numbers(outputs) == [(False, 104, 103)]
    assert outputs[-1] == Output(BOOK_RESYNC, "htx_BTC.USDT", {
        "exchange": "htx", "symbol": SYMBOL, "reason": "gap", "detail": "expected an update after 101, got 103->104",
        "atom_timestamp": T0 + SECOND})
    run(std, refresh(200), T0 + 2 * SECOND)
    assert std.book_checks.continuity.in_sync(SYMBOL)


def test_an_empty_update_still_moves_the_book() -> None:
    """150-level MBP pushes every 100 ms, empty when nothing changed: its numbers count."""
    std = HtxStandardiser()
    run(std, refresh(100))
    assert run(std, update(101, 100, asks=[])) == []
    assert [o.topic for o in run(std, update(102, 101))] == [LOB]
    assert std.skipped == {"book update without levels": 1}
    assert std.book_checks.continuity.in_sync(SYMBOL)


def test_updates_newer_than_a_late_refresh_are_published_again_after_it() -> None:
    """HTX: cache the updates and line them up with the refresh by seqNum.  101 and 102 came before the
    refresh of 101: 102 is published again after it."""
    std = HtxStandardiser()
    run(std, update(101, 100), T0)
    newer = run(std, update(102, 101, asks=[[645.2, 1.5]]), T0 + 1)
    outputs = run(std, refresh(101), T0 + 2)
    assert numbers(outputs) == [(True, 101, None), (True, 101, None), (False, 102, 101)]
    assert outputs[2:] == newer
    assert outputs[2].record["price"] == Decimal("645.2")
    assert numbers(run(std, update(103, 102), T0 + 3)) == [(False, 103, 102)]
    assert std.book_checks.continuity.in_sync(SYMBOL)


def test_updates_without_a_refresh_ask_for_one_after_ten_seconds() -> None:
    std = HtxStandardiser()
    assert [o.topic for o in run(std, update(101, 100))] == [LOB]
    outputs = run(std, update(102, 101), T0 + 10 * SECOND)
    assert [o.record["reason"] for o in outputs if o.topic == BOOK_RESYNC] == ["no_snapshot"]


def test_depth_step0_pushes_are_each_a_snapshot() -> None:
    std = HtxStandardiser()
    frame = gzip.compress(json.dumps({"ch": "market.btcusdt.depth.step0", "ts": 1, "tick": {
        "bids": [[1.5, 2]], "asks": [[1.6, 3]], "version": 7, "ts": 1}}).encode())
    assert numbers(std.standardise(frame, T0, "htx_btcusdt_depth", SYMBOL)) == [(True, 7, None), (True, 7, None)]
    assert std.book_checks.continuity.in_sync(SYMBOL)


class FakeConnection:
    def __init__(self) -> None:
        self.reconnects = 0

    def reconnect_now(self) -> None:
        self.reconnects += 1


def test_a_resync_reconnects_and_the_new_subscription_asks_for_a_refresh() -> None:
    """No REST snapshot: the reconnect resubscribes, and the subscription ack is answered with the ``req``."""
    feed = Htx([SYMBOL], NullSink(), SETTINGS)
    assert feed.snapshot_polls(["btcusdt"]) == []
    connection = FakeConnection()
    feed.symbol_map = {SYMBOL: "btcusdt"}
    feed.connection_of = {"btcusdt": connection}
    assert feed.resync(SYMBOL, "gap")
    assert connection.reconnects == 1
    ack = gzip.compress(json.dumps({"id": "1", "status": "ok", "subbed": CHANNEL, "ts": 1}).encode())
    assert json.loads(feed.reply(ack)) == {"req": CHANNEL, "id": CHANNEL}
