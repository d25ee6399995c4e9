"""Bitstamp's books: REST snapshots for ``diff_order_book`` (lob) and ``live_orders`` (lob_l3), and their order.

Neither channel numbers its messages: a diff's ``sequence`` is its
``microtimestamp`` and only order can be checked; order events carry no number
at all (events share microtimestamps), and the snapshot's ``microtimestamp``
says which events it already holds.  The REST bodies are hand-written in the
documented shape of ``GET /api/v2/order_book/{pair}/`` (``timestamp``,
``microtimestamp``, ``bids``/``asks`` as ``[price, amount]``, or with
``group=2`` as ``[price, amount, order_id]``); the websocket frames in the
shape of ``tests/fixtures/bitstamp``.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import fastavro
import orjson
import pytest

from l3_atom.avro.codecs import parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.off_chain.bitstamp import Bitstamp
from l3_atom.stream_processing.book_checks import IN_SNAPSHOT
from l3_atom.stream_processing.standardiser import Output, StandardiseError
from l3_atom.stream_processing.standardisers.bitstamp import BitstampStandardiser
from l3_atom.topics import BOOK_RESYNC, LOB, LOB_L3
from tests.sinks import ListSink, NullSink

SYMBOL = "BTC.USD"
BOOK_KEY = "bitstamp_btcusd_book"
ORDERS_KEY = "bitstamp_btcusd_orders"
T0 = 1_700_000_000_000_000
SECOND = 1_000_000
# Microtimestamps of the exchange's messages.
M0 = 1_643_643_584_684_047
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)


def book_snapshot(micro: int) -> bytes:
    return orjson.dumps({"timestamp": str(micro // SECOND), "microtimestamp": str(micro),
                         "bids": [["64959.48", "0.68711663"]], "asks": [["64959.49", "0.80924200"]]})


def orders_snapshot(micro: int) -> bytes:
    return orjson.dumps({"timestamp": str(micro // SECOND), "microtimestamp": str(micro),
                         "bids": [["64959.48", "0.68711663", "1458532827766784"]],
                         "asks": [["64959.49", "0.80924200", "1458532827766785"], ["64960", "1", "1458532827766790"]]})


def diff(micro: int, price: str = "64959.50") -> bytes:
    return orjson.dumps({"data": {"timestamp": str(micro // SECOND), "microtimestamp": str(micro),
                                  "bids": [], "asks": [[price, "0.5"]]},
                         "channel": "diff_order_book_btcusd", "event": "data"})


def order_event(micro: int, order_id: int = 1458532827766800, event: str = "order_created") -> bytes:
    return orjson.dumps({"data": {"id": order_id, "id_str": str(order_id), "order_type": 1, "datetime": "1",
                                  "microtimestamp": str(micro), "amount": 0.1, "amount_str": "0.10000000",
                                  "price": 64961, "price_str": "64961"},
                         "channel": "live_orders_btcusd", "event": event})


def run(std: BitstampStandardiser, frame: bytes, key: str, atom: int = T0) -> list[Output]:
    outputs = std.standardise(frame, atom, key, SYMBOL)
    for out in outputs:
        assert fastavro.validate(out.record, parsed_schema(out.topic), raise_errors=True)
    return outputs


def sequences(outputs: list[Output], topic: str = LOB) -> list[tuple]:
    return [(o.record["is_snapshot"], o.record["sequence"], o.record["prev_sequence"]) for o in outputs
            if o.topic == topic]


def resyncs(outputs: list[Output]) -> list[tuple[str, str]]:
    return [(o.record["reason"], o.record["detail"]) for o in outputs if o.topic == BOOK_RESYNC]


# -- the connector -------------------------------------------------------------------------------


def test_snapshots_are_fetched_under_each_book_channels_key() -> None:
    connector = Bitstamp([SYMBOL], NullSink(), SETTINGS)
    polls = connector.snapshot_polls(["btcusd"])
    assert [(p.path, p.params, p.key, p.interval_s) for p in polls] == [
        ("/api/v2/order_book/btcusd/", {}, BOOK_KEY, 0.0),
        ("/api/v2/order_book/btcusd/", {"group": "2"}, ORDERS_KEY, 0.0),
    ]
    assert [connector.frame_key(diff(M0)), connector.frame_key(order_event(M0))] == [BOOK_KEY, ORDERS_KEY]
    assert Bitstamp([SYMBOL], NullSink(), SETTINGS, channels=["live_trades"]).snapshot_polls(["btcusd"]) == []


class FakeRest:
    """Answers the REST book GETs."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict]] = []

    async def get_text(self, path: str, params: dict[str, str] | None = None, **_options: object) -> str:
        self.asked.append((path, params or {}))
        return (orders_snapshot(M0) if params else book_snapshot(M0)).decode()

    async def close(self) -> None:
        """Nothing to close."""


def test_fetched_snapshots_are_archived_under_their_keys_and_understood(monkeypatch: pytest.MonkeyPatch) -> None:
    connector = Bitstamp([SYMBOL], ListSink(), SETTINGS)
    connector.normalised_of = {"btcusd": SYMBOL}
    rest = FakeRest()
    monkeypatch.setattr(connector, "rest_client", lambda: rest)
    asyncio.run(connector.fetch_snapshots(["btcusd"]))
    assert rest.asked == [("/api/v2/order_book/btcusd/", {}), ("/api/v2/order_book/btcusd/", {"group": "2"})]
    assert [(key, symbol) for key, _, symbol in connector.sink.frames] == [(BOOK_KEY, SYMBOL), (ORDERS_KEY, SYMBOL)]
    std = BitstampStandardiser()
    topics = [[o.topic for o in std.standardise(frame, T0, key, symbol)] for key, frame, symbol in connector.sink.frames]
    assert topics == [[LOB, LOB], [LOB_L3, LOB_L3, LOB_L3]]


# -- diff_order_book: lob --------------------------------------------------------------------------


def test_level_snapshot_then_diffs() -> None:
    std = BitstampStandardiser()
    snapshot = run(std, book_snapshot(M0), BOOK_KEY)
    assert snapshot[0] == Output(LOB, "bitstamp_BTC.USD", {
        "exchange": "bitstamp", "symbol": SYMBOL, "side": "bid", "price": Decimal("64959.48"),
        "size": Decimal("0.68711663"), "is_snapshot": True, "sequence": M0, "prev_sequence": None, "checksum": None,
        "event_timestamp": M0 // 1000, "atom_timestamp": T0})
    assert sequences(run(std, diff(M0 + 5), BOOK_KEY)) == [(False, M0 + 5, None)]
    assert std.book_checks.continuity.in_sync(SYMBOL)


def test_diffs_at_or_below_the_snapshot_are_skipped() -> None:
    std = BitstampStandardiser()
    run(std, book_snapshot(M0), BOOK_KEY)
    assert run(std, diff(M0 - 1), BOOK_KEY) == []
    assert run(std, diff(M0), BOOK_KEY) == []
    assert std.skipped == {IN_SNAPSHOT: 2}


def test_two_diffs_of_one_microsecond_are_both_published() -> None:
    """Without numbers, a diff with the last one's microtimestamp may be another change: it is kept."""
    std = BitstampStandardiser()
    run(std, book_snapshot(M0), BOOK_KEY)
    run(std, diff(M0 + 5), BOOK_KEY)
    assert sequences(run(std, diff(M0 + 5, price="64970"), BOOK_KEY)) == [(False, M0 + 5, None)]
    assert std.skipped == {}


def test_an_older_diff_after_a_newer_is_published_with_a_resync_request() -> None:
    std = BitstampStandardiser()
    run(std, book_snapshot(M0), BOOK_KEY)
    run(std, diff(M0 + 9), BOOK_KEY)
    outputs = run(std, diff(M0 + 7), BOOK_KEY, T0 + SECOND)
    assert sequences(outputs) == [(False, M0 + 7, None)]
    assert outputs[-1] == Output(BOOK_RESYNC, "bitstamp_BTC.USD", {
        "exchange": "bitstamp", "symbol": SYMBOL, "reason": "out_of_order", "detail": f"sequence {M0 + 7} after {M0 + 9}",
        "atom_timestamp": T0 + SECOND})


def test_diffs_newer_than_a_late_snapshot_are_published_again_after_it() -> None:
    """The REST answer reaches the raw topic after diffs sent while it was answered."""
    std = BitstampStandardiser()
    run(std, diff(M0 - 3), BOOK_KEY, T0)
    newer = run(std, diff(M0 + 4), BOOK_KEY, T0 + 1)
    outputs = run(std, book_snapshot(M0), BOOK_KEY, T0 + 2)
    assert sequences(outputs) == [(True, M0, None), (True, M0, None), (False, M0 + 4, None)]
    assert outputs[2:] == newer
    assert std.skipped == {}
    assert std.book_checks.continuity.in_sync(SYMBOL)


def test_a_snapshot_older_than_the_kept_diffs_is_a_gap() -> None:
    """Diffs are kept 5 s of stream time; one newer than the snapshot forgotten is a gap nothing else shows."""
    std = BitstampStandardiser()
    run(std, diff(M0 + 1), BOOK_KEY, T0)
    run(std, diff(M0 + 6 * SECOND), BOOK_KEY, T0 + 6 * SECOND)
    outputs = run(std, book_snapshot(M0), BOOK_KEY, T0 + 6 * SECOND + 1)
    assert resyncs(outputs) == [("gap", f"updates after the snapshot's {M0} were no longer kept")]


# -- live_orders: lob_l3 ---------------------------------------------------------------------------


def test_order_snapshot_lists_every_order_open() -> None:
    std = BitstampStandardiser()
    outputs = run(std, orders_snapshot(M0), ORDERS_KEY)
    assert outputs[0] == Output(LOB_L3, "bitstamp_BTC.USD", {
        "exchange": "bitstamp", "symbol": SYMBOL, "event_type": "open", "order_id": "1458532827766784", "side": "bid",
        "price": Decimal("64959.48"), "size": Decimal("0.68711663"), "reason": None, "is_snapshot": True,
        "sequence": None, "prev_sequence": None, "event_timestamp": M0 // 1000, "atom_timestamp": T0})
    assert [(o.record["side"], o.record["order_id"]) for o in outputs] == [
        ("bid", "1458532827766784"), ("ask", "1458532827766785"), ("ask", "1458532827766790")]
    assert std.order_checks.continuity.in_sync(SYMBOL)


def test_order_events_older_than_the_snapshot_are_skipped_its_own_microsecond_kept() -> None:
    std = BitstampStandardiser()
    run(std, orders_snapshot(M0), ORDERS_KEY)
    assert run(std, order_event(M0 - 1), ORDERS_KEY) == []
    assert len(run(std, order_event(M0, event="order_changed"), ORDERS_KEY)) == 1
    assert len(run(std, order_event(M0 + 1, event="order_deleted"), ORDERS_KEY)) == 1
    assert std.skipped == {IN_SNAPSHOT: 1}


def test_order_events_newer_than_a_late_snapshot_are_published_again_after_it() -> None:
    std = BitstampStandardiser()
    run(std, order_event(M0 - 3, order_id=1), ORDERS_KEY, T0)
    same_microsecond = run(std, order_event(M0, order_id=2), ORDERS_KEY, T0 + 1)
    newer = run(std, order_event(M0 + 2, order_id=3), ORDERS_KEY, T0 + 2)
    outputs = run(std, orders_snapshot(M0), ORDERS_KEY, T0 + 3)
    assert outputs[3:] == same_microsecond + newer
    assert std.skipped == {}


def test_book_without_snapshots_ask_for_them_after_ten_seconds() -> None:
    std = BitstampStandardiser()
    run(std, diff(M0), BOOK_KEY, T0)
    run(std, order_event(M0), ORDERS_KEY, T0)
    assert resyncs(run(std, diff(M0 + 1), BOOK_KEY, T0 + 10 * SECOND)) == [
        ("no_snapshot", "updates before any snapshot")]
    assert resyncs(run(std, order_event(M0 + 1), ORDERS_KEY, T0 + 10 * SECOND)) == [
        ("no_snapshot", "updates before any snapshot")]


@pytest.mark.parametrize(
    ("body", "key", "error"),
    [
        (book_snapshot(M0), "bitstamp_btcusd_trades", "no book feed"),
        (book_snapshot(M0), None, "no book feed"),
        (book_snapshot(M0), "bitstamp_all_book", "names no pair"),
        (orjson.dumps({"microtimestamp": 5, "bids": [], "asks": []}), BOOK_KEY, "expected a microtimestamp string"),
        (orjson.dumps({"microtimestamp": "5", "bids": [["1", "2", 3]], "asks": []}), ORDERS_KEY,
         "expected an order id string of digits, got 3"),
        (orjson.dumps({"microtimestamp": "5", "bids": [["1", "2"]], "asks": []}), ORDERS_KEY,
         "list index out of range"),
    ],
)
def test_bad_snapshots_raise_precise_errors(body: bytes, key: str | None, error: str) -> None:
    with pytest.raises(StandardiseError, match=error):
        BitstampStandardiser().standardise(body, T0, key, SYMBOL)
