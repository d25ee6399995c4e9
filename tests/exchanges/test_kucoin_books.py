"""KuCoin's level2 book: the REST snapshot, the increments' numbers, and what a gap or a repeat does.

Frames are KuCoin's documented shapes: the example of Get Part OrderBook
(``GET /api/v1/market/orderbook/level2_100?symbol=BTC-USDT``, in KuCoin's
``{"code", "data"}`` envelope; not in ``tests/fixtures/kucoin``, whose REST
bodies the end-to-end replay serves: a snapshot there would change what that
test counts), and the walk-through of "Orderbook - Increment" (snapshot
``sequence`` 16; an increment ``sequenceStart`` 15 .. ``sequenceEnd`` 19 whose
changes 15 and 16 are ignored, 18 sets bid 3988.50 to 44 and 19 removes ask
3988.61).  Other increments are hand-written in the same shape.
"""

from __future__ import annotations

from decimal import Decimal

import fastavro
import orjson
import pytest

from l3_atom.avro.codecs import parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.off_chain.kucoin import Kucoin
from l3_atom.stream_processing.book_checks import DUPLICATE_UPDATE, IN_SNAPSHOT
from l3_atom.stream_processing.standardiser import Output, StandardiseError
from l3_atom.stream_processing.standardisers.kucoin import KucoinStandardiser
from l3_atom.topics import BOOK_RESYNC, LOB
from tests.sinks import NullSink

# Get Part OrderBook's documented example.
DOCUMENTED_SNAPSHOT = (b'{"code":"200000","data":{"sequence":"3262786978","time":1550653727731,'
                       b'"bids":[["6500.12","0.45054140"],["6500.11","0.45054140"]],'
                       b'"asks":[["6500.16","0.57753524"],["6500.15","0.57753524"]]}}')
BOOK_KEY = "kucoin_BTC-USDT_level2"
SYMBOL = "BTC.USDT"
T0 = 1_753_000_000_000_000
SECOND = 1_000_000
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)


def snapshot(sequence: int, bids: list | None = None, asks: list | None = None) -> bytes:
    """A Get Part OrderBook answer (the walk-through's book unless told otherwise)."""
    bids = [["3988.51", "56"], ["3988.50", "15"], ["3988.49", "100"], ["3988.48", "10"]] if bids is None else bids
    asks = [["3988.62", "8"], ["3988.61", "32"], ["3988.60", "47"], ["3988.59", "3"]] if asks is None else asks
    return orjson.dumps({"code": "200000", "data": {"sequence": str(sequence), "time": 1729176273859,
                                                    "bids": bids, "asks": asks}})


def increment(start: int, end: int, asks: list | None = None, bids: list | None = None) -> bytes:
    """A level2 push; by default one ask change numbered ``end``."""
    asks = [["3988.70", "1", str(end)]] if asks is None and bids is None else asks or []
    return orjson.dumps({"topic": "/market/level2:BTC-USDT", "type": "message", "subject": "trade.l2update",
                         "data": {"changes": {"asks": asks, "bids": bids or []}, "sequenceEnd": end,
                                  "sequenceStart": start, "symbol": "BTC-USDT", "time": 1729816425625}})


# The documentation's walk-through increment: changes 16 and 15 are in the snapshot.
WALK_THROUGH = increment(15, 19, asks=[["3988.59", "3", "16"], ["3988.61", "0", "19"], ["3988.62", "8", "15"]],
                         bids=[["3988.50", "44", "18"]])


def run(std: KucoinStandardiser, frame: bytes, atom: int = T0) -> list[Output]:
    """One frame keyed as the connector keys it; every record fits its schema."""
    outputs = std.standardise(frame, atom, BOOK_KEY, SYMBOL)
    for out in outputs:
        assert fastavro.validate(out.record, parsed_schema(out.topic), raise_errors=True)
    return outputs


def book(outputs: list[Output]) -> list[tuple]:
    return [(o.record["side"], o.record["price"], o.record["size"], o.record["is_snapshot"], o.record["sequence"],
             o.record["prev_sequence"]) for o in outputs if o.topic == LOB]


def resyncs(outputs: list[Output]) -> list[tuple[str, str]]:
    return [(o.record["reason"], o.record["detail"]) for o in outputs if o.topic == BOOK_RESYNC]


# -- the connector -------------------------------------------------------------------------------


def test_snapshots_are_fetched_under_the_level2_key() -> None:
    connector = Kucoin([SYMBOL], NullSink(), SETTINGS)
    [poll] = connector.snapshot_polls(["BTC-USDT"])
    assert (poll.path, poll.params, poll.key, poll.interval_s) == (
        "/api/v1/market/orderbook/level2_100", {"symbol": "BTC-USDT"}, BOOK_KEY, 0.0)
    assert connector.frame_key(increment(1, 1)) == poll.key
    assert Kucoin([SYMBOL], NullSink(), SETTINGS, channels=["match"]).snapshot_polls(["BTC-USDT"]) == []


# -- the snapshot ----------------------------------------------------------------------------------


def test_documented_snapshot() -> None:
    std = KucoinStandardiser()
    outputs = run(std, DOCUMENTED_SNAPSHOT)
    assert outputs[0] == Output(LOB, "kucoin_BTC.USDT", {
        "exchange": "kucoin", "symbol": SYMBOL, "side": "bid", "price": Decimal("6500.12"),
        "size": Decimal("0.45054140"), "is_snapshot": True, "sequence": 3262786978, "prev_sequence": None,
        "checksum": None, "event_timestamp": 1550653727731, "atom_timestamp": T0,
    })
    assert [(o.record["side"], o.record["price"]) for o in outputs] == [
        ("bid", Decimal("6500.12")), ("bid", Decimal("6500.11")), ("ask", Decimal("6500.16")),
        ("ask", Decimal("6500.15"))]
    assert std.book_checks.continuity.in_sync(SYMBOL)


def test_the_documented_walk_through() -> None:
    """Changes at or below the snapshot's 16 are left out; 18 and 19 are applied, as KuCoin's example says."""
    std = KucoinStandardiser()
    run(std, snapshot(16))
    assert book(run(std, WALK_THROUGH)) == [
        ("bid", Decimal("3988.50"), Decimal(44), False, 19, 14),
        ("ask", Decimal("3988.61"), Decimal(0), False, 19, 14),
    ]
    assert book(run(std, increment(20, 21))) == [("ask", Decimal("3988.70"), Decimal(1), False, 21, 19)]
    assert std.book_checks.continuity.in_sync(SYMBOL)
    assert std.skipped == {}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"code":"429000","msg":"Too Many Requests"}', "kucoin book snapshot answered code '429000'"),
        (b'{"code":"200000","data":{"sequence":16,"bids":[],"asks":[]}}', "expected a string of digits, got 16"),
        (b'{"code":"200000","data":{"sequence":"16","bids":[["1",1.5]],"asks":[]}}', "expected a decimal string"),
    ],
)
def test_bad_snapshots_raise_precise_errors(body: bytes, error: str) -> None:
    with pytest.raises(StandardiseError, match=error):
        KucoinStandardiser().standardise(body, T0, BOOK_KEY, SYMBOL)


def test_a_snapshot_needs_its_raw_key() -> None:
    with pytest.raises(StandardiseError, match="names no symbol"):
        KucoinStandardiser().standardise(snapshot(16), T0, "kucoin_all_control")


def test_an_empty_book_is_a_named_skip_and_still_a_snapshot() -> None:
    std = KucoinStandardiser()
    assert run(std, snapshot(16, bids=[], asks=[])) == []
    assert std.skipped == {"snapshot of an empty book": 1}
    assert std.book_checks.continuity.in_sync(SYMBOL)


# -- repeats and gaps ------------------------------------------------------------------------------


def test_an_increment_wholly_inside_the_snapshot_is_skipped() -> None:
    std = KucoinStandardiser()
    run(std, snapshot(16))
    assert run(std, increment(14, 15)) == []
    assert run(std, increment(16, 16)) == []
    assert std.skipped == {IN_SNAPSHOT: 2}
    assert std.book_checks.continuity.in_sync(SYMBOL)


def test_a_repeated_increment_is_skipped() -> None:
    std = KucoinStandardiser()
    run(std, snapshot(16))
    assert len(run(std, increment(17, 18))) == 1
    assert run(std, increment(17, 18)) == []
    assert std.skipped == {DUPLICATE_UPDATE: 1}
    assert std.book_checks.stats()["duplicates"] == 1


def test_a_gap_is_published_with_a_resync_request() -> None:
    """sequenceStart 21 after 18: 19 and 20 were missed."""
    std = KucoinStandardiser()
    run(std, snapshot(16))
    run(std, increment(17, 18))
    outputs = run(std, increment(21, 22), T0 + SECOND)
    assert book(outputs) == [("ask", Decimal("3988.70"), Decimal(1), False, 22, 20)]
    assert outputs[-1] == Output(BOOK_RESYNC, "kucoin_BTC.USDT", {
        "exchange": "kucoin", "symbol": SYMBOL, "reason": "gap", "detail": "expected an update after 18, got 20->22",
        "atom_timestamp": T0 + SECOND})
    # The next snapshot puts the book right again.
    run(std, snapshot(30), T0 + 2 * SECOND)
    assert std.book_checks.continuity.in_sync(SYMBOL)


def test_an_empty_increment_still_moves_the_book() -> None:
    """Its numbers count: the increment after it is no gap."""
    std = KucoinStandardiser()
    run(std, snapshot(16))
    assert run(std, increment(17, 17, asks=[], bids=[])) == []
    assert resyncs(run(std, increment(18, 18))) == []
    assert std.skipped == {"level2: no changes": 1}


def test_increments_without_a_snapshot_ask_for_one_after_ten_seconds() -> None:
    std = KucoinStandardiser()
    assert resyncs(run(std, increment(1, 1))) == []
    assert resyncs(run(std, increment(2, 2), T0 + 10 * SECOND)) == [("no_snapshot", "updates before any snapshot")]


# -- a snapshot older than increments already published ---------------------------------------------


def test_increments_newer_than_a_late_snapshot_are_published_again_after_it() -> None:
    """KuCoin: cache the increments, apply those above the snapshot after it.  The REST answer reaches the
    raw topic after increments sent while it was answered: 17..18 and 19..19 came first, the snapshot is 17."""
    std = KucoinStandardiser()
    first = run(std, increment(17, 18, asks=[["3988.59", "0", "17"], ["3988.70", "2", "18"]]), T0)
    second = run(std, increment(19, 19), T0 + 1)
    outputs = run(std, snapshot(17), T0 + 2)
    snapshot_records = [o for o in outputs if o.record["is_snapshot"]]
    assert len(snapshot_records) == 8
    # The same records again, but for the change 17 the snapshot holds.
    assert outputs[8:] == [first[1], second[0]]
    assert book(outputs[8:]) == [("ask", Decimal("3988.70"), Decimal(2), False, 18, 16),
                                 ("ask", Decimal("3988.70"), Decimal(1), False, 19, 18)]
    assert std.book_checks.continuity.in_sync(SYMBOL)
    # What follows continues the replayed increments.
    assert resyncs(run(std, increment(20, 20), T0 + 3)) == []
    assert std.book_checks.continuity.in_sync(SYMBOL)


def test_a_snapshot_older_than_the_kept_increments_is_a_gap() -> None:
    """Increments are kept 5 s of stream time: a snapshot older than those forgotten cannot be completed.

    17..18 is forgotten; the kept 19 is replayed and shows the gap too.
    """
    std = KucoinStandardiser()
    run(std, increment(17, 18), T0)
    run(std, increment(19, 19), T0 + 6 * SECOND)
    outputs = run(std, snapshot(16), T0 + 6 * SECOND + 1)
    assert book(outputs)[-1] == ("ask", Decimal("3988.70"), Decimal(1), False, 19, 18)
    assert resyncs(outputs) == [("gap", "expected an update after 16, got 18->19")]
    assert not std.book_checks.continuity.in_sync(SYMBOL)
