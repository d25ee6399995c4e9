"""The pure Coinbase standardiser: exact records, counted skips, precise errors."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from l3_atom.stream_processing.standardiser import StandardiseError, ms_from_iso
from l3_atom.stream_processing.standardisers.coinbase import CoinbaseStandardiser

ATOM = 1_618_677_817_123_456
TIME = "2021-04-17T16:43:30.244075Z"
TIME_MS = 1_618_677_810_244


def frame(**fields: object) -> bytes:
    return json.dumps(fields).encode()


@pytest.fixture
def std() -> CoinbaseStandardiser:
    return CoinbaseStandardiser()


def test_time_is_parsed_to_exact_milliseconds() -> None:
    assert ms_from_iso(TIME) == TIME_MS
    # A whole millisecond must not be rounded down by float arithmetic.
    assert ms_from_iso("2021-04-17T16:43:37.077000Z") == 1_618_677_817_077


def test_open(std: CoinbaseStandardiser) -> None:
    [out] = std.standardise(
        frame(type="open", time=TIME, product_id="BTC-USD", sequence=10, order_id="o-1",
              price="30000.01", remaining_size="1.00000001", side="sell"),
        ATOM,
    )
    assert out.topic == "lob_l3"
    assert out.key == "coinbase_BTC.USD"
    assert out.record == {
        "exchange": "coinbase", "symbol": "BTC.USD", "event_type": "open", "order_id": "o-1", "side": "ask",
        "price": Decimal("30000.01"), "size": Decimal("1.00000001"), "reason": None, "is_snapshot": False,
        "sequence": 10, "prev_sequence": None, "event_timestamp": TIME_MS, "atom_timestamp": ATOM,
    }


def test_change_and_done(std: CoinbaseStandardiser) -> None:
    [change] = std.standardise(
        frame(type="change", time=TIME, sequence=11, order_id="o-2", product_id="ETH-USD",
              new_size="5.57", old_size="12.2", price="400.23", side="buy", reason="STP"),
        ATOM,
    )
    assert change.record["event_type"] == "change"
    assert change.record["side"] == "bid"
    assert change.record["size"] == Decimal("5.57")
    assert change.record["price"] == Decimal("400.23")
    assert change.record["reason"] == "STP"

    [done] = std.standardise(
        frame(type="done", time=TIME, product_id="ETH-USD", sequence=12, price="400.23", order_id="o-2",
              reason="canceled", side="buy", remaining_size="5.57"),
        ATOM,
    )
    assert done.record["event_type"] == "done"
    assert done.record["size"] == Decimal(0)
    assert done.record["reason"] == "canceled"
    assert done.record["sequence"] == 12


def test_done_of_market_order_has_null_price(std: CoinbaseStandardiser) -> None:
    [done] = std.standardise(
        frame(type="done", time=TIME, product_id="BTC-USD", sequence=13, order_id="m-1", reason="filled",
              side="buy"),
        ATOM,
    )
    assert done.record["price"] is None


def test_match_taker_is_opposite_of_maker_side(std: CoinbaseStandardiser) -> None:
    for offset, kind in enumerate(("match", "last_match")):
        [trade] = std.standardise(
            frame(type=kind, trade_id=881613 + offset, maker_order_id="mk", taker_order_id="tk", side="sell",
                  size="0.04", price="14.7775", product_id="BAND-GBP", sequence=333938798, time=TIME),
            ATOM,
        )
        assert trade.topic == "trades_l3"
        assert trade.key == "coinbase_BAND.GBP"
        assert trade.record == {
            "exchange": "coinbase", "symbol": "BAND.GBP", "trade_id": str(881613 + offset), "price": Decimal("14.7775"),
            "size": Decimal("0.04"), "taker_side": "buy", "maker_order_id": "mk", "taker_order_id": "tk",
            "sequence": 333938798, "origin": None, "event_timestamp": TIME_MS, "atom_timestamp": ATOM,
        }


def test_ticker(std: CoinbaseStandardiser) -> None:
    [tick] = std.standardise(
        frame(type="ticker", sequence=5, product_id="BTC-USD", price="30001.5", best_bid="30001.4",
              best_bid_size="0.5", best_ask="30001.6", best_ask_size="1.25", side="buy", time=TIME,
              trade_id=3, last_size="0.001"),
        ATOM,
    )
    assert tick.record == {
        "exchange": "coinbase", "symbol": "BTC.USD", "bid_price": Decimal("30001.4"), "bid_size": Decimal("0.5"),
        "ask_price": Decimal("30001.6"), "ask_size": Decimal("1.25"), "last_price": Decimal("30001.5"),
        "last_size": Decimal("0.001"), "sequence": 5, "event_timestamp": TIME_MS, "atom_timestamp": ATOM,
    }


def test_level2_snapshot_and_update(std: CoinbaseStandardiser) -> None:
    snapshot = std.standardise(
        frame(type="snapshot", product_id="SKL-BTC", bids=[["0.00001300", "100"]], asks=[["0.00001306", "660.5"]]),
        ATOM,
    )
    assert [(o.record["side"], o.record["price"], o.record["is_snapshot"]) for o in snapshot] == [
        ("bid", Decimal("0.00001300"), True),
        ("ask", Decimal("0.00001306"), True),
    ]
    assert snapshot[0].record["event_timestamp"] is None
    [update] = std.standardise(
        frame(type="l2update", product_id="SKL-BTC", changes=[["sell", "0.00001306", "0"]], time=TIME), ATOM
    )
    assert update.record["side"] == "ask"
    assert update.record["size"] == Decimal(0)
    assert update.record["is_snapshot"] is False


def test_skips_are_counted_by_reason(std: CoinbaseStandardiser) -> None:
    assert std.standardise(frame(type="received", product_id="BTC-USD", sequence=1), ATOM) == []
    assert std.standardise(frame(type="subscriptions", channels=[]), ATOM) == []
    assert std.standardise(frame(type="heartbeat", product_id="BTC-USD", sequence=1), ATOM) == []
    assert std.standardise(
        frame(type="change", time=TIME, sequence=2, order_id="m", product_id="BTC-USD", new_funds="5",
              old_funds="6", side="buy"),
        ATOM,
    ) == []
    assert sum(std.skipped.values()) == 4
    assert std.skipped["subscription ack"] == 1


def test_a_message_with_nothing_in_it_is_a_counted_skip_once(std: CoinbaseStandardiser) -> None:
    """An l2update whose change list is empty publishes nothing: it is counted, never silently gone."""
    empty = frame(type="l2update", product_id="BTC-USD", changes=[], time=TIME)
    assert std.standardise(empty, ATOM) == []
    assert std.standardise(frame(type="l2update", product_id="BTC-USD", changes={}, time=TIME), ATOM) == []
    assert dict(std.skipped) == {"l2update: nothing in it": 2}
    # A handler that counts its own reason is not counted twice.
    assert std.standardise(frame(type="received", product_id="BTC-USD", sequence=1), ATOM) == []
    assert dict(std.skipped) == {"l2update: nothing in it": 2, "received: order not on the book yet": 1}
    assert std.skipped.counted == 3 and std.skipped.deferred == 0


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"type": "open", "product_id": ', "malformed JSON"),
        (b"[1, 2]", "trade_history message has a mistyped field"),
        (b'{"no": "type"}', "message has no type"),
        (frame(type="teleport", product_id="BTC-USD"), "unknown message type 'teleport'"),
        (frame(type="open", time=TIME, product_id="BTC-USD", sequence=1, order_id="o", side="buy",
               remaining_size="1"), "open message lacks field 'price'"),
        (frame(type="open", time=TIME, product_id="BTC-USD", sequence=1, order_id="o", side="buy", price=1.5,
               remaining_size="1"), "expected a decimal string, got float"),
        (frame(type="open", time=TIME, product_id="BTC-USD", sequence="1", order_id="o", side="buy",
               price="1.5", remaining_size="1"), "expected an integer, got str"),
        (frame(type="open", time=TIME, product_id="BTC-USD", sequence=1, order_id="o", side="up", price="1",
               remaining_size="1"), "side must be 'buy' or 'sell'"),
        (frame(type="match", trade_id=1, maker_order_id="a", taker_order_id="b", side="buy", size="abc",
               price="1", product_id="BTC-USD", sequence=1, time=TIME), "match message has a mistyped field"),
        (frame(type="ticker", product_id="BTCUSD", time=TIME), "product_id must look like BASE-QUOTE"),
    ],
)
def test_bad_input_raises_a_precise_error(std: CoinbaseStandardiser, raw: bytes, error: str) -> None:
    with pytest.raises(StandardiseError, match=error.replace("(", r"\(").replace("[", r"\[")):
        std.standardise(raw, ATOM)


# ---------------------------------------------------------------- level-3 book integrity

SECOND = 1_000_000
FULL_KEY = "coinbase_BTC-USD_full"


def received(sequence: int) -> bytes:
    return frame(type="received", time=TIME, product_id="BTC-USD", sequence=sequence, order_id=f"r-{sequence}",
                 order_type="limit", size="1", price="1", side="buy")


def opened(sequence: int) -> bytes:
    return frame(type="open", time=TIME, product_id="BTC-USD", sequence=sequence, order_id=f"o-{sequence}",
                 price="100.5", remaining_size="2", side="buy")


def match(sequence: int) -> bytes:
    return frame(type="match", time=TIME, product_id="BTC-USD", sequence=sequence, trade_id=sequence,
                 maker_order_id="m", taker_order_id="t", side="sell", size="1", price="100.5")


def l3_snapshot(sequence: int) -> bytes:
    return json.dumps({
        "bids": [["100.50", "1.5", "b-1"], ["100.40", "2", "b-2"]], "asks": [["101", "0.25", "a-1"]],
        "sequence": sequence, "auction_mode": False, "auction": None, "time": TIME,
    }).encode()


def topics(outputs: list) -> list[str]:
    return [out.topic for out in outputs]


def test_the_rest_level3_snapshot_replaces_the_book(std: CoinbaseStandardiser) -> None:
    outputs = std.standardise(l3_snapshot(50), ATOM, FULL_KEY)
    assert [(o.record["order_id"], o.record["side"], o.record["price"], o.record["size"]) for o in outputs] == [
        ("b-1", "bid", Decimal("100.50"), Decimal("1.5")), ("b-2", "bid", Decimal("100.40"), Decimal(2)),
        ("a-1", "ask", Decimal(101), Decimal("0.25")),
    ]
    assert {(o.topic, o.key, o.record["event_type"], o.record["is_snapshot"], o.record["sequence"],
             o.record["event_timestamp"]) for o in outputs} == {("lob_l3", "coinbase_BTC.USD", "open", True, 50, TIME_MS)}
    # Book events the snapshot already holds are skipped; trades are news whatever the book holds.
    assert std.standardise(received(49), ATOM) == []
    assert std.standardise(opened(50), ATOM) == []
    assert topics(std.standardise(match(51), ATOM)) == ["trades_l3"]
    [after] = std.standardise(opened(52), ATOM)
    assert (after.record["sequence"], after.record["prev_sequence"]) == (52, 50)
    assert std.skipped["book event already in the book snapshot"] == 1
    assert std.book_checks.stats()["snapshots"] == 1


def test_a_gap_asks_for_a_snapshot_and_shows_in_prev_sequence(std: CoinbaseStandardiser) -> None:
    std.standardise(l3_snapshot(10), ATOM, FULL_KEY)
    [first] = std.standardise(opened(11), ATOM)
    assert first.record["prev_sequence"] == 10
    std.standardise(received(12), ATOM)
    record, request = std.standardise(opened(15), ATOM + 1)
    # The consumer's book is at 11; prev_sequence 14 says messages are missing.
    assert (record.topic, record.record["prev_sequence"]) == ("lob_l3", 14)
    assert request.topic == "book_resync"
    assert request.record == {
        "exchange": "coinbase", "symbol": "BTC.USD", "reason": "gap",
        "detail": "expected an update after 12, got 14->15", "atom_timestamp": ATOM + 1,
    }
    # Asked once; asked again only when no snapshot came within the retry interval.
    assert topics(std.standardise(opened(16), ATOM + 2)) == ["lob_l3"]
    assert topics(std.standardise(opened(17), ATOM + 11 * SECOND)) == ["lob_l3", "book_resync"]
    std.standardise(l3_snapshot(30), ATOM + 12 * SECOND, FULL_KEY)
    assert topics(std.standardise(opened(31), ATOM + 30 * SECOND)) == ["lob_l3"]


def test_repeated_and_late_messages_are_skipped_never_published_twice(std: CoinbaseStandardiser) -> None:
    std.standardise(l3_snapshot(10), ATOM, FULL_KEY)
    assert topics(std.standardise(match(11), ATOM)) == ["trades_l3"]
    assert std.standardise(match(11), ATOM) == []
    assert std.skipped["repeated full-channel message"] == 1
    # 13 before 12: a gap at once (12 is missing), then 12 is late and skipped.
    assert topics(std.standardise(opened(13), ATOM)) == ["lob_l3", "book_resync"]
    assert std.standardise(opened(12), ATOM) == []
    assert std.skipped["full-channel message older than one already seen"] == 1


def test_updates_without_a_snapshot_ask_for_one_after_the_retry_interval(std: CoinbaseStandardiser) -> None:
    assert topics(std.standardise(opened(1), ATOM)) == ["lob_l3"]
    assert topics(std.standardise(opened(2), ATOM + 9 * SECOND)) == ["lob_l3"]
    outputs = std.standardise(opened(3), ATOM + 10 * SECOND)
    assert topics(outputs) == ["lob_l3", "book_resync"]
    assert outputs[1].record["reason"] == "no_snapshot"


def test_the_matches_channel_skips_numbers_without_gaps(std: CoinbaseStandardiser) -> None:
    # Only the full channel numbers every message; a matches-only product has no book to lose.
    assert topics(std.standardise(match(5), ATOM)) == ["trades_l3"]
    assert topics(std.standardise(match(9), ATOM)) == ["trades_l3"]
    assert std.book_checks.stats() == {}


def test_a_snapshot_older_than_published_events_is_not_trusted(std: CoinbaseStandardiser) -> None:
    std.standardise(l3_snapshot(10), ATOM, FULL_KEY)
    std.standardise(opened(11), ATOM)
    std.standardise(opened(12), ATOM)
    # Events 11 and 12 reached the processor before a snapshot taken at 11: it wiped 12.
    outputs = std.standardise(l3_snapshot(11), ATOM + 1, FULL_KEY)
    assert topics(outputs)[-1] == "book_resync"
    assert outputs[-1].record["detail"] == "snapshot 11 is older than book event 12"
    [after] = std.standardise(opened(13), ATOM + 2)
    assert after.record["prev_sequence"] == 12  # a consumer at 11 sees the hole too
