"""Coinbase on its real recording (level2, ticker and matches channels of the former Coinbase Pro ws-feed).

The same standardiser serves today's Coinbase Exchange ``full`` channel (see
tests/test_coinbase_standardiser.py); the recording's channels are a subset
of what it understands.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson

from l3_atom.stream_processing.standardisers.coinbase import CoinbaseStandardiser
from tests.recorded import ws_frames

SOURCE = "coinbase"
RECORDING = "coinbase"
SYMBOLS = ["SKL.USD", "SKL.BTC", "BAND.GBP", "NMR.EUR", "BAND.BTC", "YFI.BTC", "DASH.BTC", "NU.GBP", "CRV.EUR", "SKL.GBP"]
ATOM = 1_618_677_817_000_000


def expected_counts(folder: Path) -> dict[str, int]:
    """Records per topic, counted from the frames themselves."""
    counts: Counter[str] = Counter()
    for raw in ws_frames(folder):
        message = orjson.loads(raw)
        kind = message["type"]
        if kind in ("match", "last_match"):
            counts["trades_l3"] += 1
        elif kind == "ticker":
            counts["ticker"] += 1
        elif kind == "l2update":
            counts["lob"] += len(message["changes"])
        elif kind == "snapshot":
            counts["lob"] += len(message["bids"]) + len(message["asks"])
    return dict(counts)


def test_recording_is_fully_understood(recordings: Path) -> None:
    std = CoinbaseStandardiser()
    produced: Counter[str] = Counter()
    for raw in ws_frames(recordings / RECORDING):
        for out in std.standardise(raw, ATOM):
            produced[out.topic] += 1
    assert dict(produced) == expected_counts(recordings / RECORDING)
    assert produced == {"lob": 18081, "trades_l3": 107, "ticker": 107}
    assert dict(std.skipped) == {"subscription ack": 3}
