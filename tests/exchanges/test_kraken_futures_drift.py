"""Kraken Futures ``ticker_lite``, the variant Kraken documents beside ``ticker``, maps onto ``ticker``
(issue 15; ``tests/fixtures/kraken-futures/ticker-lite``, see its README for the sources)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from l3_atom.off_chain.kraken_futures import KrakenFutures
from l3_atom.stream_processing.standardiser import Output
from l3_atom.stream_processing.standardisers.kraken_futures import KrakenFuturesStandardiser
from tests.exchanges.doc_fixtures import ws_frames
from tests.exchanges.test_okx import assert_fits_schema

FIXTURE = Path(__file__).parent.parent / "fixtures" / "kraken-futures" / "ticker-lite"
ATOM = 1_620_000_000_300_123


def test_the_documented_ticker_lite_frames_are_understood() -> None:
    feed, std = KrakenFutures([], None, None), KrakenFuturesStandardiser()
    frames = list(ws_frames(FIXTURE))
    keys = [feed.frame_key(raw) for raw in frames]
    assert keys == ["kraken-futures_all_control", "kraken-futures_PI_XBTUSD_ticker"]
    outputs = [out for raw, key in zip(frames, keys, strict=True) for out in std.standardise(raw, ATOM, key)]
    assert outputs == [Output("ticker", "kraken-futures_BTC.USD-PERP", {
        "exchange": "kraken-futures", "symbol": "BTC.USD-PERP", "bid_price": Decimal(34932), "bid_size": None,
        "ask_price": Decimal("34949.5"), "ask_size": None, "last_price": None, "last_size": None, "sequence": None,
        "event_timestamp": ATOM // 1000, "atom_timestamp": ATOM,
    })]
    assert_fits_schema(outputs[0])
    assert dict(std.skipped) == {"subscription ack": 1}


def test_ticker_lite_can_be_subscribed_as_a_channel() -> None:
    feed = KrakenFutures(["BTC.USD-PERP"], None, None, channels=["ticker_lite"])
    assert feed.subscribe_messages(["PF_XBTUSD"])[0] == (
        '{"event":"subscribe","feed":"ticker_lite","product_ids":["PF_XBTUSD"]}'
    )
