"""Binance USD-M futures on its real recording (2021-07-22: depth@100ms, bookTicker, kline_1m, aggTrade, snapshots).

The recording predates two protocol changes, and the connector follows today's:
- since 2026-04-23 ``fstream.binance.com`` serves book streams under ``/public``
  and the others under ``/market`` (the recording used one unrouted
  ``/stream`` connection), so the connector opens two connections for these
  symbols where the recorder opened one;
- it streams ``markPrice`` (funding) and polls open interest, which the
  recording lacks: those are checked on the documentation's examples.

Replayed offline at the recorded times, 11 diffs (41 levels) come after the
snapshot that already holds them (``u`` <= ``lastUpdateId``) and are skipped.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from l3_atom.off_chain.binance_futures import BinanceFutures
from l3_atom.stream_processing.standardiser import Output, StandardiseError
from l3_atom.stream_processing.standardisers.binance_futures import BinanceFuturesStandardiser
from l3_atom.topics import raw_key
from tests.exchanges.test_binance import (
    ATOM,
    IN_SNAPSHOT,
    RECORDED_CHANNELS,
    SETTINGS,
    NullSink,
    assert_fits_schemas,
    count_frames,
    count_raw,  # noqa: F401 - the end-to-end replay counts this source's raw topic with it
    first,
    opened_url,
    replay_checked,
    resyncs,
)
from tests.recorded import http_bodies, ws_frames

SOURCE = "binance-futures"
RECORDING = "binance_futures"
SYMBOLS = ["SUSHI.USDT-PERP", "AKRO.USDT-PERP", "KEEP.USDT-PERP", "CTK.USDT-PERP"]
EXCHANGE_SYMBOLS = ["SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"]
# Today's routed endpoints need two connections (/public, /market) where the recorder opened one.
CONNECTIONS = 2
# One REST depth snapshot per symbol reaches the raw topic (open-interest polls are not in the recording).
REST_FRAMES = len(SYMBOLS)
EXCHANGE_INFO = "https://fapi.binance.com/fapi/v1/exchangeInfo"
# The documentation's examples (Binance USDⓈ-M futures: Mark Price Stream, Open Interest).
MARK_PRICE = {
    "e": "markPriceUpdate", "E": 1562305380000, "s": "BTCUSDT", "p": "11794.15000000", "i": "11784.62659091",
    "P": "11784.25641265", "r": "0.00038167", "T": 1562306400000,
}
OPEN_INTEREST = {"openInterest": "10659.509", "symbol": "BTCUSDT", "time": 1589437530011}


def expected_counts(folder: Path) -> dict[str, int]:
    """What the end-to-end replay publishes (see ``test_binance.expected_counts``: no diff inside a snapshot)."""
    counts, _ = count_frames(folder, snapshots_last=True)
    return {topic: n for topic, n in counts.items() if topic != "book_resync"}


def feed(*symbols: str, channels: tuple[str, ...] | None = None) -> BinanceFutures:
    return BinanceFutures(symbols, NullSink(), SETTINGS, channels=channels)


# -- connector ---------------------------------------------------------------------------------------


def test_symbol_map_from_the_recorded_exchange_info(recordings: Path) -> None:
    """Perpetuals and quarterlies; the pending listing without a contract type is left out."""
    symbol_map = BinanceFutures.parse_symbols(http_bodies(recordings / RECORDING)[EXCHANGE_INFO])
    assert [symbol_map[s] for s in SYMBOLS] == EXCHANGE_SYMBOLS
    assert symbol_map["BTC.USDT-20210924"] == "BTCUSDT_210924"
    assert symbol_map["ETH.USDT-20210924"] == "ETHUSDT_210924"
    assert "BTCST.USDT-PERP" not in symbol_map
    assert len(symbol_map) == 121


def test_parse_symbols_today() -> None:
    body = orjson.dumps({"symbols": [
        {"symbol": "BTCUSDC", "contractType": "PERPETUAL", "deliveryDate": 4133404800000, "baseAsset": "BTC",
         "quoteAsset": "USDC"},
        {"symbol": "XAUUSDT", "contractType": "TRADIFI_PERPETUAL", "deliveryDate": 4133404800000,
         "baseAsset": "XAU", "quoteAsset": "USDT"},
        {"symbol": "BTCUSDT_251226", "contractType": "NEXT_QUARTER", "deliveryDate": 1766736000000,
         "baseAsset": "BTC", "quoteAsset": "USDT"},
        {"symbol": "NEWUSDT", "contractType": "", "deliveryDate": 4133404800000, "baseAsset": "NEW",
         "quoteAsset": "USDT"},
    ]}).decode()
    assert BinanceFutures.parse_symbols(body) == {
        "BTC.USDC-PERP": "BTCUSDC", "XAU.USDT-PERP": "XAUUSDT", "BTC.USDT-20251226": "BTCUSDT_251226",
    }


def test_streams_are_routed_to_public_and_market(recordings: Path) -> None:
    """The recorded streams, on today's two routed endpoints instead of the one unrouted connection."""
    futures = feed(*SYMBOLS, channels=RECORDED_CHANNELS)
    groups = futures.connection_groups(EXCHANGE_SYMBOLS)
    urls = [asyncio.run(futures.connection_url(g)) for g in groups]
    assert [urlsplit(u).path for u in urls] == ["/public/stream", "/market/stream"]
    recorded = parse_qs(urlsplit(opened_url(recordings / RECORDING)).query)["streams"][0].split("/")
    mine = [s for u in urls for s in parse_qs(urlsplit(u).query)["streams"][0].split("/")]
    assert sorted(mine) == sorted(recorded)
    assert all(futures.subscribe_messages(g) == [] for g in groups)


def test_default_urls() -> None:
    futures = feed("BTC.USDT-PERP")
    urls = [asyncio.run(futures.connection_url(g)) for g in futures.connection_groups(["BTCUSDT"])]
    assert urls == [
        "wss://fstream.binance.com/public/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker",
        "wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade/btcusdt@kline_1m/btcusdt@markPrice",
    ]


def test_connections_carry_at_most_200_streams() -> None:
    names = [f"C{i}USDT" for i in range(150)]
    groups = feed("BTC.USDT-PERP").connection_groups(names)
    assert [(g.path, len(g)) for g in groups] == [("/public", 100), ("/public", 50), ("/market", 66),
                                                  ("/market", 66), ("/market", 18)]
    assert all(len(g.streams) <= 200 for g in groups)


def test_snapshots_on_connect_of_the_public_route_and_open_interest_on_a_timer() -> None:
    futures = feed("BTC.USDT-PERP")
    public, market = futures.connection_groups(["BTCUSDT"])
    depth = [("/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": "1000"}, "binance-futures_BTCUSDT_depth")]
    assert [(p.path, p.params, p.key) for p in futures.snapshot_polls(public)] == depth
    assert futures.snapshot_polls(market) == []  # its connects bring no book
    assert [(p.path, p.params, p.key) for p in futures.snapshot_polls(["BTCUSDT"])] == depth  # a resync
    assert [(p.path, p.params, p.key, p.interval_s) for p in futures.rest_polls(["BTCUSDT"])] == [
        ("/fapi/v1/openInterest", {"symbol": "BTCUSDT"}, "binance-futures_BTCUSDT_openinterest", 30.0),
    ]
    assert feed("BTC.USDT-PERP", channels=("aggTrade",)).rest_polls(["BTCUSDT"]) == []
    assert feed("BTC.USDT-PERP", channels=("aggTrade",)).snapshot_polls(["BTCUSDT"]) == []


def test_frame_key() -> None:
    futures = feed("BTC.USDT-PERP")
    assert futures.frame_key(orjson.dumps({"stream": "btcusdt@markPrice", "data": MARK_PRICE})) == (
        "binance-futures_BTCUSDT_markprice"
    )
    assert futures.frame_key(b'{"stream":"btcusdt_250926@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT_250926"}}') \
        == "binance-futures_BTCUSDT_250926_aggtrade"


# -- standardiser ------------------------------------------------------------------------------------


@pytest.fixture
def std() -> BinanceFuturesStandardiser:
    return BinanceFuturesStandardiser()


def standardise(std: BinanceFuturesStandardiser, raw: bytes, symbol: str) -> list[Output]:
    return std.standardise(raw, ATOM, feed(symbol).frame_key(raw), symbol)


def test_depth_update_uses_the_transaction_time(recordings: Path, std: BinanceFuturesStandardiser) -> None:
    # {"e":"depthUpdate","E":1626992741037,"T":1626992741024,"s":"SUSHIUSDT","U":600859599090,"u":600859600917,
    #  "pu":600859598061,"b":[["7.5040","813"],["7.6090","0"],["7.6110","2"]],"a":[["7.6150","1563"],["7.6220","3284"]]}
    outputs = standardise(std, first(recordings / RECORDING, "sushiusdt@depth@100ms"), "SUSHI.USDT-PERP")
    assert [(o.record["side"], o.record["price"], o.record["size"]) for o in outputs] == [
        ("bid", Decimal("7.5040"), Decimal(813)), ("bid", Decimal("7.6090"), Decimal(0)),
        ("bid", Decimal("7.6110"), Decimal(2)), ("ask", Decimal("7.6150"), Decimal(1563)),
        ("ask", Decimal("7.6220"), Decimal(3284)),
    ]
    assert outputs[1] == Output("lob", "binance-futures_SUSHI.USDT-PERP", {
        "exchange": "binance-futures", "symbol": "SUSHI.USDT-PERP", "side": "bid", "price": Decimal("7.6090"),
        "size": Decimal(0), "is_snapshot": False, "sequence": 600859600917, "prev_sequence": 600859598061,
        "checksum": None, "event_timestamp": 1626992741024, "atom_timestamp": ATOM,
    })


def test_book_ticker_field_by_field(recordings: Path, std: BinanceFuturesStandardiser) -> None:
    # {"e":"bookTicker","u":600859600576,"s":"SUSHIUSDT","b":"7.6110","B":"2","a":"7.6120","A":"297",
    #  "T":1626992741012,"E":1626992741017}
    [out] = standardise(std, first(recordings / RECORDING, "sushiusdt@bookTicker"), "SUSHI.USDT-PERP")
    assert out.record == {
        "exchange": "binance-futures", "symbol": "SUSHI.USDT-PERP", "bid_price": Decimal("7.6110"),
        "bid_size": Decimal(2), "ask_price": Decimal("7.6120"), "ask_size": Decimal(297), "last_price": None,
        "last_size": None, "sequence": 600859600576, "event_timestamp": 1626992741012, "atom_timestamp": ATOM,
    }


def test_agg_trade_field_by_field(recordings: Path, std: BinanceFuturesStandardiser) -> None:
    # {"e":"aggTrade","E":1626992741575,"a":16599292,"s":"CTKUSDT","p":"1.01100","q":"10","f":23961322,
    #  "l":23961322,"T":1626992741421,"m":false}
    [out] = standardise(std, first(recordings / RECORDING, "ctkusdt@aggTrade"), "CTK.USDT-PERP")
    assert out == Output("trades", "binance-futures_CTK.USDT-PERP", {
        "exchange": "binance-futures", "symbol": "CTK.USDT-PERP", "trade_id": "16599292", "price": Decimal("1.01100"),
        "size": Decimal(10), "taker_side": "buy", "sequence": 16599292, "origin": None, "event_timestamp": 1626992741421,
        "atom_timestamp": ATOM,
    })


def test_closed_kline(recordings: Path, std: BinanceFuturesStandardiser) -> None:
    # {"e":"kline","E":1626992760203,"s":"SUSHIUSDT","k":{"t":1626992700000,"T":1626992759999,"i":"1m",
    #  "o":"7.6080","c":"7.6170","h":"7.6180","l":"7.6070","v":"3005","n":113,"x":true,"q":"22875.8590",...}}
    raw = next(r for r in ws_frames(recordings / RECORDING) if r.startswith(b'{"stream":"sushiusdt@kline_1m"')
               and orjson.loads(r)["data"]["k"]["x"])
    [out] = standardise(std, raw, "SUSHI.USDT-PERP")
    assert out.record == {
        "exchange": "binance-futures", "symbol": "SUSHI.USDT-PERP", "origin": "exchange", "interval": "1m",
        "start": 1626992700000, "end": 1626992760000, "open": Decimal("7.6080"), "high": Decimal("7.6180"),
        "low": Decimal("7.6070"), "close": Decimal("7.6170"), "volume": Decimal(3005),
        "quote_volume": Decimal("22875.8590"), "trade_count": 113, "vwap": None, "first_trade_timestamp": None,
        "last_trade_timestamp": None, "closed": True, "event_timestamp": 1626992760203, "atom_timestamp": ATOM,
    }


def test_rest_snapshot_has_a_time(recordings: Path, std: BinanceFuturesStandardiser) -> None:
    # {"lastUpdateId":600859605926,"E":1626992741264,"T":1626992741261,"bids":[["7.6110","6"],...],...}
    body = http_bodies(recordings / RECORDING)["https://fapi.binance.com/fapi/v1/depth?symbol=SUSHIUSDT&limit=1000"]
    outputs = std.standardise(body.encode(), ATOM, raw_key(SOURCE, "SUSHIUSDT", "depth"), "SUSHI.USDT-PERP")
    assert outputs[0].record == {
        "exchange": "binance-futures", "symbol": "SUSHI.USDT-PERP", "side": "bid", "price": Decimal("7.6110"),
        "size": Decimal(6), "is_snapshot": True, "sequence": 600859605926, "prev_sequence": None, "checksum": None,
        "event_timestamp": 1626992741261, "atom_timestamp": ATOM,
    }


def test_mark_price_is_a_funding_rate(std: BinanceFuturesStandardiser) -> None:
    [out] = standardise(std, orjson.dumps({"stream": "btcusdt@markPrice", "data": MARK_PRICE}), "BTC.USDT-PERP")
    assert out == Output("funding_rate", "binance-futures_BTC.USDT-PERP", {
        "exchange": "binance-futures", "symbol": "BTC.USDT-PERP", "rate": Decimal("0.00038167"),
        "predicted_rate": None, "mark_price": Decimal("11794.15000000"), "index_price": Decimal("11784.62659091"),
        "next_funding_timestamp": 1562306400000, "event_timestamp": 1562305380000, "atom_timestamp": ATOM,
    })
    assert_fits_schemas([out])


def test_mark_price_of_a_dated_future_is_skipped(std: BinanceFuturesStandardiser) -> None:
    dated = {**MARK_PRICE, "s": "BTCUSDT_250926", "r": "", "T": 0}
    raw = orjson.dumps({"stream": "btcusdt_250926@markPrice", "data": dated})
    assert standardise(std, raw, "BTC.USDT-20250926") == []
    assert dict(std.skipped) == {"markPriceUpdate of a dated future: no funding": 1}


def test_open_interest_poll(std: BinanceFuturesStandardiser) -> None:
    [out] = std.standardise(orjson.dumps(OPEN_INTEREST), ATOM, "binance-futures_BTCUSDT_openinterest", "BTC.USDT-PERP")
    assert out == Output("open_interest", "binance-futures_BTC.USDT-PERP", {
        "exchange": "binance-futures", "symbol": "BTC.USDT-PERP", "open_interest": Decimal("10659.509"),
        "event_timestamp": 1589437530011, "atom_timestamp": ATOM,
    })
    assert_fits_schemas([out])


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"stream": "btcusdt@markPrice", "data": {**MARK_PRICE, "r": None}}, "expected a decimal string, got NoneType"),
        ({"stream": "btcusdt@markPrice", "data": {k: v for k, v in MARK_PRICE.items() if k != "i"}},
         "markPriceUpdate message lacks field 'i'"),
        ({"openInterest": 10659.5, "symbol": "BTCUSDT", "time": 1}, "expected a decimal string, got float"),
        ({"openInterest": "1", "symbol": "BTCUSDT"}, "openInterest message lacks field 'time'"),
    ],
)
def test_bad_input_raises_a_precise_error(std: BinanceFuturesStandardiser, message: dict, error: str) -> None:
    raw = orjson.dumps(message)
    key = feed("BTC.USDT-PERP").frame_key(raw) if "stream" in message else "binance-futures_BTCUSDT_openinterest"
    with pytest.raises(StandardiseError, match=error):
        std.standardise(raw, ATOM, key, "BTC.USDT-PERP")


def diff(previous: int, first: int, final: int) -> bytes:
    data = {"e": "depthUpdate", "E": 1, "T": 1, "s": "BTCUSDT", "U": first, "u": final, "pu": previous,
            "b": [["1.5", "2"]], "a": []}
    return orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data})


def test_pu_chains_the_diffs() -> None:
    """``pu`` is the previous diff's ``u``: the prev_sequence; a diff that does not chain on is a gap."""
    std = BinanceFuturesStandardiser()
    snapshot = orjson.dumps({"lastUpdateId": 100, "E": 1, "T": 1, "bids": [["1", "1"]], "asks": []})
    std.standardise(snapshot, ATOM, raw_key(SOURCE, "BTCUSDT", "depth"), "BTC.USDT-PERP")
    assert standardise(std, diff(80, 85, 95), "BTC.USDT-PERP") == []  # inside the snapshot
    [applied] = standardise(std, diff(95, 96, 110), "BTC.USDT-PERP")  # U <= lastUpdateId <= u
    assert (applied.record["prev_sequence"], applied.record["sequence"]) == (95, 110)
    assert resyncs(standardise(std, diff(110, 111, 120), "BTC.USDT-PERP")) == []
    gap = standardise(std, diff(125, 126, 130), "BTC.USDT-PERP")
    assert [o.topic for o in gap] == ["lob", "book_resync"]
    assert resyncs(gap) == [("gap", "expected an update after 120, got 125->130")]
    assert dict(std.skipped) == {IN_SNAPSHOT: 1}


def test_recording_is_fully_understood(recordings: Path) -> None:
    """Every frame and REST snapshot becomes records or a named skip; counts match the independent count.

    At their recorded times, 11 diffs (41 levels) come after the snapshot that holds them, 3 of them with
    ``u`` equal to ``lastUpdateId``: skipped.  No diff breaks the ``pu`` chain and every snapshot comes
    within a second of its symbol's first diff, so no resync is requested.
    """
    std = BinanceFuturesStandardiser()
    produced, per_frame = replay_checked(BinanceFutures, std, recordings / RECORDING, SYMBOLS)
    assert produced == {"lob": 6297 + 5613 - 41, "ticker": 613, "trades": 91, "candle": 67}
    assert dict(std.skipped) == {IN_SNAPSHOT: 11}
    assert len(per_frame) == 1535 + REST_FRAMES
    assert std.book_checks.stats() == {"snapshots": 4, "duplicates": 3}


def test_snapshots_after_every_frame_as_in_the_end_to_end_replay(recordings: Path) -> None:
    """The end-to-end count: every diff published (at recorded times the books ask 8 times for a snapshot)."""
    std = BinanceFuturesStandardiser()
    produced, _ = replay_checked(BinanceFutures, std, recordings / RECORDING, SYMBOLS, snapshots_last=True)
    assert dict(std.skipped) == {}
    assert produced["book_resync"] == 8
    assert expected_counts(recordings / RECORDING) == {"lob": 6297 + 5613, "ticker": 613, "trades": 91, "candle": 67}
