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
        "price": Decimal("30000.01"), "size": Decimal("1.00000001"), "reason": None, "sequence": 10,
        "event_timestamp": TIME_MS, "atom_timestamp": ATOM,
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
    for kind in ("match", "last_match"):
        [trade] = std.standardise(
            frame(type=kind, trade_id=881613, maker_order_id="mk", taker_order_id="tk", side="sell",
                  size="0.04", price="14.7775", product_id="BAND-GBP", sequence=333938798, time=TIME),
            ATOM,
        )
        assert trade.topic == "trades_l3"
        assert trade.key == "coinbase_BAND.GBP"
        assert trade.record == {
            "exchange": "coinbase", "symbol": "BAND.GBP", "trade_id": "881613", "price": Decimal("14.7775"),
            "size": Decimal("0.04"), "taker_side": "buy", "maker_order_id": "mk", "taker_order_id": "tk",
            "sequence": 333938798, "event_timestamp": TIME_MS, "atom_timestamp": ATOM,
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


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"type": "open", "product_id": ', "malformed JSON"),
        (b"[1, 2]", "message has no type"),
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
