"""Kraken spot: the real 2021 recording (websocket API v1) and documented API v2 frames.

The recording predates Kraken's websocket API v2: its frames are v1 arrays
(``[channel id, payload, channel name, pair]``, numbers as strings, ``XBT``
names), on three connections, one per channel (book depth 1000, trade,
ticker).  The connector speaks v2 (``wss://ws.kraken.com/v2``); the
standardiser understands both, so the recording proves v1 and the v2 frames
quoted from Kraken's documentation (tests/fixtures/kraken/ws.jsonl) prove v2.

Books: the standardiser proves every checksum Kraken sends on its own copy of
the book; the counts of checksums and snapshots below are read off the raw
frames.  Hand-written frames show what a lost, repeated or corrupted message
does (Kraken numbers nothing: the checksum is the only witness).
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from l3_atom.books.engine import SUBSCRIBED_DEPTHS
from l3_atom.config import ConnectorSettings
from l3_atom.off_chain.kraken import BOOK_DEPTH, Kraken, normalise_asset, normalised_pair
from l3_atom.stream_processing.standardiser import StandardiseError
from l3_atom.stream_processing.standardisers.kraken import (
    KrakenStandardiser,
    hashing_places,
    interval_name,
    ms_from_epoch_seconds,
)
from tests.exchanges.doc_fixtures import http_bodies, ws_entries, ws_frames
from tests.sinks import NullSink

SOURCE = "kraken"
RECORDING = "kraken"
SYMBOLS = ["WAVES.EUR", "XMR.USD", "KSM.BTC", "GRT.ETH", "SC.EUR", "ETH.CHF", "OCEAN.BTC", "OMG.USD", "BTC.CHF", "ADA.BTC"]
V2_FIXTURE = Path(__file__).parent.parent / "fixtures" / "kraken"
ATOM = 1_618_678_150_123_456
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1024)
# Normalised topic of each Kraken channel (v1 channel names carry a suffix: book-1000, ohlc-5).
TOPIC_OF_CHANNEL = {"book": "lob", "trade": "trades", "ticker": "ticker", "ohlc": "candle"}


def expected_counts(folder: Path) -> dict[str, int]:
    """Records per topic, counted from the frames themselves (v1 arrays and v2 objects)."""
    counts: Counter[str] = Counter()
    for raw in ws_frames(folder):
        message = json.loads(raw)
        if isinstance(message, list):
            channel = message[-2].split("-")[0]
            payload = message[1:-2]
            if channel == "book":
                counts["lob"] += sum(len(v) for part in payload for k, v in part.items() if k != "c")
            elif channel == "trade":
                counts["trades"] += len(payload[0])
            elif channel in TOPIC_OF_CHANNEL:
                counts[TOPIC_OF_CHANNEL[channel]] += 1
        elif message.get("channel") == "book":
            counts["lob"] += sum(len(book["bids"]) + len(book["asks"]) for book in message["data"])
        elif message.get("channel") in TOPIC_OF_CHANNEL:
            counts[TOPIC_OF_CHANNEL[message["channel"]]] += len(message["data"])
    return dict(counts)


def book_counts(folder: Path) -> dict[str, int]:
    """Book snapshots and checksums, counted from the frames themselves (v1 ``as``/``c``, v2 type/checksum)."""
    counts: Counter[str] = Counter()
    for raw in ws_frames(folder):
        message = json.loads(raw)
        if isinstance(message, list) and message[-2].startswith("book"):
            parts = message[1:-2]
            counts["snapshots"] += any("as" in part or "bs" in part for part in parts)
            counts["checksums_verified"] += any("c" in part for part in parts)
        elif isinstance(message, dict) and message.get("channel") == "book":
            counts["snapshots"] += len(message["data"]) if message["type"] == "snapshot" else 0
            counts["checksums_verified"] += sum("checksum" in book for book in message["data"])
    return dict(counts)


def standardise_all(folder: Path) -> tuple[KrakenStandardiser, list]:
    std = KrakenStandardiser()
    feed = Kraken([], NullSink(), SETTINGS)
    return std, [out for raw in ws_frames(folder) for out in std.standardise(raw, ATOM, feed.frame_key(raw))]


def first(outputs: list, topic: str, symbol: str) -> dict:
    return next(o.record for o in outputs if o.topic == topic and o.record["symbol"] == symbol)


def feed(*symbols: str) -> Kraken:
    return Kraken(symbols, NullSink(), SETTINGS)


# -- the recording (API v1) ------------------------------------------------------------------


def test_recording_is_fully_understood(recordings: Path) -> None:
    """Every v1 frame of the 2021 recording becomes records or a counted skip; no errors."""
    std, outputs = standardise_all(recordings / RECORDING)
    produced = Counter(o.topic for o in outputs)
    assert dict(produced) == expected_counts(recordings / RECORDING)
    assert produced == {"lob": 11745, "ticker": 18, "trades": 10}
    assert dict(std.skipped) == {"heartbeat": 92, "subscription ack": 30, "system status": 3}
    assert {o.record["symbol"] for o in outputs} == set(SYMBOLS)
    assert len(std.book_checksums) == len(SYMBOLS)
    # Every checksum proved on the standardiser's own books: none mismatched, so no resync request.
    assert std.book_checks.stats() == book_counts(recordings / RECORDING)
    assert std.book_checks.stats() == {"snapshots": 10, "checksums_verified": 4269}
    print(f"\nkraken recording: {std.book_checks.stats()['checksums_verified']} checksums verified, 0 mismatches")


def test_recorded_records_match_their_frames(recordings: Path) -> None:
    """Values checked by hand against the recorded frames."""
    _, outputs = standardise_all(recordings / RECORDING)
    # [993,[["354.11000000","0.89594024","1618678142.557535","s","l",""]],"trade","XMR/USD"]
    assert first(outputs, "trades", "XMR.USD") == {
        "exchange": "kraken", "symbol": "XMR.USD", "trade_id": None, "price": Decimal("354.11000000"),
        "size": Decimal("0.89594024"), "taker_side": "sell", "sequence": None,
        "origin": None, "event_timestamp": 1_618_678_142_557, "atom_timestamp": ATOM,
    }
    # [1668,{"a":["13.253900",35,"35.72892241"],"b":["13.232900",185,"185.18432037"],
    #        "c":["13.253900","3.71672000"],...},"ticker","WAVES/EUR"]: v1 tickers have no time.
    assert first(outputs, "ticker", "WAVES.EUR") == {
        "exchange": "kraken", "symbol": "WAVES.EUR", "bid_price": Decimal("13.232900"),
        "bid_size": Decimal("185.18432037"), "ask_price": Decimal("13.253900"), "ask_size": Decimal("35.72892241"),
        "last_price": Decimal("13.253900"), "last_size": Decimal("3.71672000"), "sequence": None,
        "event_timestamp": ATOM // 1000, "atom_timestamp": ATOM,
    }
    # The ADA/XBT snapshot starts [1360,{"as":[["0.000022900","13355.87450757","1618678123.481570"],...
    assert first(outputs, "lob", "ADA.BTC") == {
        "exchange": "kraken", "symbol": "ADA.BTC", "side": "ask", "price": Decimal("0.000022900"),
        "size": Decimal("13355.87450757"), "is_snapshot": True, "sequence": None, "prev_sequence": None,
        "checksum": None, "event_timestamp": 1_618_678_123_481, "atom_timestamp": ATOM,
    }
    book = [o.record for o in outputs if o.topic == "lob" and o.record["symbol"] == "ADA.BTC"]
    snapshot = [r for r in book if r["is_snapshot"]]
    assert Counter(r["side"] for r in snapshot) == {"ask": 841, "bid": 707}


def test_recorded_update_with_both_sides() -> None:
    """A recorded v1 update with an ask and a bid object; the checksum rides on the last one."""
    raw = (b'[1920,{"a":[["0.042990","364630.28272081","1618678145.920470"]]},'
           b'{"b":[["0.042990","0.00000000","1618678145.920708"]],"c":"4105471083"},"book-1000","SC/EUR"]')
    std = KrakenStandardiser()
    ask, bid = (o.record for o in std.standardise(raw, ATOM))
    assert (ask["side"], ask["price"], ask["size"], ask["is_snapshot"]) == (
        "ask", Decimal("0.042990"), Decimal("364630.28272081"), False)
    assert (bid["side"], bid["size"], bid["event_timestamp"]) == ("bid", Decimal("0E-8"), 1_618_678_145_920)
    assert (ask["checksum"], bid["checksum"]) == (None, 4105471083)
    assert std.book_checksums == {"SC.EUR": 4105471083}


def test_republished_level_is_an_update() -> None:
    """v1 marks levels republished into the subscribed depth with a fourth element "r"."""
    raw = b'[0,{"b":[["5541.30000","0.10000000","1534614335.345903","r"]],"c":"974942666"},"book-10","XBT/USD"]'
    [out] = KrakenStandardiser().standardise(raw, ATOM)
    assert (out.record["symbol"], out.record["side"], out.record["is_snapshot"]) == ("BTC.USD", "bid", False)


def test_symbol_map_from_the_recorded_asset_pairs(recordings: Path) -> None:
    body = next(b for url, b in http_bodies(recordings / RECORDING).items() if url.endswith("/0/public/AssetPairs"))
    symbol_map = Kraken.parse_symbols(body)
    assert feed(*SYMBOLS).resolve(symbol_map) == [
        "WAVES/EUR", "XMR/USD", "KSM/BTC", "GRT/ETH", "SC/EUR", "ETH/CHF", "OCEAN/BTC", "OMG/USD", "BTC/CHF", "ADA/BTC",
    ]
    assert symbol_map["DOGE.USD"] == "DOGE/USD"
    pairs = orjson.loads(body)["result"]
    # Left out: 11 dark pools without a wsname (XXBTZUSD.d, ...) and ETH2.S/ETH (a dot in an asset code).
    assert len(symbol_map) == len(pairs) - 12
    # The name from the REST asset codes (XXBT, ZUSD) equals the one the standardiser reads off wsname (XBT/USD).
    std = KrakenStandardiser()
    for pair in pairs.values():
        name = f"{normalise_asset(pair['base'])}.{normalise_asset(pair['quote'])}"
        if "wsname" in pair and name in symbol_map:
            assert std.convert_symbol(pair["wsname"]) == name


def test_connections_match_the_recording(recordings: Path) -> None:
    """Three connections, one per recorded channel (ohlc rides with ticker), same pairs once XBT reads BTC."""
    entries = ws_entries(recordings / RECORDING)
    recorded = [json.loads(e["data"]) for e in entries if e["t"] == "send"]
    assert sum(e["t"] == "open" for e in entries) == 3
    kraken = feed(*SYMBOLS)
    groups = kraken.connection_groups(kraken.resolve(Kraken.parse_symbols(
        next(iter(http_bodies(recordings / RECORDING).values())))))
    assert len(groups) == 3
    for subscribe, group in zip(recorded, groups, strict=True):
        assert subscribe["subscription"]["name"] in group.channels
        assert sorted(normalised_pair(p) for p in subscribe["pair"]) == sorted(normalised_pair(s) for s in group)


# -- API v2 (frames from Kraken's documentation) ---------------------------------------------


def test_v2_documented_frames_are_fully_understood() -> None:
    std, outputs = standardise_all(V2_FIXTURE)
    produced = Counter(o.topic for o in outputs)
    assert dict(produced) == expected_counts(V2_FIXTURE)
    assert produced == {"lob": 21, "trades": 3, "ticker": 1, "candle": 3}
    assert dict(std.skipped) == {"system status": 3, "subscription ack": 3, "heartbeat": 3}
    assert std.book_checksums == {"MATIC.USD": 2114181697}
    assert std.book_checks.stats() == book_counts(V2_FIXTURE) == {"snapshots": 1, "checksums_verified": 2}
    # v2 numbers lost their trailing zeros (0.566 for 0.5660): the precision found is AssetPairs' for MATIC/USD.
    assert std.books["MATIC.USD"].places == (4, 8)


def test_v2_records_match_the_documented_frames() -> None:
    _, outputs = standardise_all(V2_FIXTURE)
    book = [o.record for o in outputs if o.topic == "lob"]
    # Snapshot: first bid {"price": 0.5666, "qty": 4831.75496356}, at "2023-10-06T17:35:55.440295Z".
    assert book[0] == {
        "exchange": "kraken", "symbol": "MATIC.USD", "side": "bid", "price": Decimal("0.5666"),
        "size": Decimal("4831.75496356"), "is_snapshot": True, "sequence": None, "prev_sequence": None,
        "checksum": None, "event_timestamp": 1_696_613_755_440, "atom_timestamp": ATOM,
    }
    assert [r["side"] for r in book[:20]] == ["bid"] * 10 + ["ask"] * 10
    # Each message's checksum rides on its last record: "checksum":2439117997, then "checksum":2114181697.
    assert [r["checksum"] for r in book if r["checksum"] is not None] == [2439117997, 2114181697]
    assert (book[19]["checksum"], book[20]["checksum"]) == (2439117997, 2114181697)
    # Update: bids [{"price": 0.5657, "qty": 1098.3947558}].
    assert (book[20]["price"], book[20]["size"], book[20]["is_snapshot"]) == (
        Decimal("0.5657"), Decimal("1098.3947558"), False)
    # {"side": "sell", "price": 0.5117, "qty": 40.0, "trade_id": 4665906, "timestamp": "2023-09-25T07:49:37.708706Z"}
    assert [o.record for o in outputs if o.topic == "trades"][-1] == {
        "exchange": "kraken", "symbol": "MATIC.USD", "trade_id": "4665906", "price": Decimal("0.5117"),
        "size": Decimal("40.0"), "taker_side": "sell", "sequence": 4665906,
        "origin": None, "event_timestamp": 1_695_628_177_708, "atom_timestamp": ATOM,
    }
    assert first(outputs, "ticker", "ALGO.USD") == {
        "exchange": "kraken", "symbol": "ALGO.USD", "bid_price": Decimal("0.10025"), "bid_size": Decimal("740.0"),
        "ask_price": Decimal("0.10036"), "ask_size": Decimal("1361.44813783"), "last_price": Decimal("0.10035"),
        "last_size": None, "sequence": None, "event_timestamp": 1_695_632_671_742, "atom_timestamp": ATOM,
    }
    candles = [o.record for o in outputs if o.topic == "candle"]
    # Snapshot at 16:26:01 of two finished 5-minute ALGO/USD candles; a running MATIC/USD one at 16:26:30.
    assert [(c["symbol"], c["start"], c["end"], c["closed"]) for c in candles] == [
        ("ALGO.USD", 1_696_433_100_000, 1_696_433_400_000, True),
        ("ALGO.USD", 1_696_433_400_000, 1_696_433_700_000, True),
        ("MATIC.USD", 1_696_436_700_000, 1_696_437_000_000, False),
    ]
    assert candles[2] == {
        "exchange": "kraken", "symbol": "MATIC.USD", "origin": "exchange", "interval": "5m",
        "start": 1_696_436_700_000, "end": 1_696_437_000_000, "open": Decimal("0.5624"), "high": Decimal("0.5628"),
        "low": Decimal("0.5622"), "close": Decimal("0.5627"), "volume": Decimal("30927.68066226"),
        "quote_volume": None, "trade_count": 12, "vwap": Decimal("0.5626"), "first_trade_timestamp": None,
        "last_trade_timestamp": None, "closed": False, "event_timestamp": 1_696_436_790_524, "atom_timestamp": ATOM,
    }


def test_v2_numbers_stay_exact() -> None:
    """v2 sends JSON numbers: they become the exact decimals written, never floats."""
    raw = (b'{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":0.10000000000000000555,'
           b'"bid_qty":1e-8,"ask":67000.12345678901234,"ask_qty":3,"last":1,"timestamp":"2024-01-01T00:00:00Z"}]}')
    [out] = KrakenStandardiser().standardise(raw, ATOM)
    assert (out.record["bid_price"], out.record["bid_size"], out.record["ask_price"], out.record["ask_size"]) == (
        Decimal("0.10000000000000000555"), Decimal("1E-8"), Decimal("67000.12345678901234"), Decimal(3))
    assert str(out.record["ask_price"]) == "67000.12345678901234"


def test_v1_ohlc_from_the_documentation() -> None:
    """v1 candles carry their end time; the channel name carries the interval."""
    raw = (b'[42,["1542057314.748456","1542057360.435743","3586.70000","3586.70000","3586.60000",'
           b'"3586.60000","3586.68894","0.03373000",2],"ohlc-5","XBT/USD"]')
    [out] = KrakenStandardiser().standardise(raw, ATOM)
    record = out.record
    assert (record["symbol"], record["interval"], record["end"], record["start"]) == (
        "BTC.USD", "5m", 1_542_057_360_435, 1_542_057_060_435)
    assert (record["close"], record["vwap"], record["volume"], record["trade_count"], record["closed"]) == (
        Decimal("3586.60000"), Decimal("3586.68894"), Decimal("0.03373000"), 2, False)
    assert record["event_timestamp"] == 1_542_057_314_748


def test_header_symbol_is_used_when_the_key_names_the_pair() -> None:
    raw = b'{"channel":"heartbeat"}'
    std = KrakenStandardiser()
    std.standardise(raw, ATOM, "kraken_BTC/USD_book", "BTC.USD")
    assert std.symbol_of("BTC/USD") == "BTC.USD"
    assert std.symbol_of("XBT/EUR") == "BTC.EUR"


# -- book integrity (hand-written frames) -----------------------------------------------------

# The 10 s of stream time Continuity gives a book's own snapshot to arrive.
SNAPSHOT_WAIT_US = 10_000_000


def kraken_crc(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    """Kraken's documented checksum, written out: each price then size, point and leading zeros removed."""
    def digits(value: str) -> str:
        return value.replace(".", "").lstrip("0")

    return zlib.crc32("".join(digits(price) + digits(size) for price, size in asks + bids).encode())


V1_ASKS = [("0.5100", "1.00000000"), ("0.5200", "2.00000000")]
V1_BIDS = [("0.5000", "3.00000000")]
# Ask 0.5100 becomes 4.0: the book after it.
V1_ASKS_AFTER = [("0.5100", "4.00000000"), ("0.5200", "2.00000000")]
# Then bid 0.4900 x 5.0 joins.
V1_BIDS_AFTER = [("0.5000", "3.00000000"), ("0.4900", "5.00000000")]


def v1_book_frame(payload: dict, depth: int = 10) -> bytes:
    return orjson.dumps([7, payload, f"book-{depth}", "XBT/USD"])


def v1_levels(levels: list[tuple[str, str]]) -> list[list[str]]:
    return [[price, size, "1618678123.481570"] for price, size in levels]


V1_SNAPSHOT = v1_book_frame({"as": v1_levels(V1_ASKS), "bs": v1_levels(V1_BIDS)})
V1_FIRST = v1_book_frame({"a": v1_levels(V1_ASKS_AFTER[:1]), "c": str(kraken_crc(V1_ASKS_AFTER, V1_BIDS))})
V1_SECOND = v1_book_frame({"b": v1_levels(V1_BIDS_AFTER[1:]), "c": str(kraken_crc(V1_ASKS_AFTER, V1_BIDS_AFTER))})


def run(std: KrakenStandardiser, *frames: bytes) -> list:
    """Outputs of ``frames`` received 1 µs apart."""
    return [out for index, raw in enumerate(frames) for out in std.standardise(raw, ATOM + index)]


def resyncs(outputs: list) -> list[tuple[str, str]]:
    return [(o.record["reason"], o.record["detail"]) for o in outputs if o.topic == "book_resync"]


def test_book_messages_verify_their_checksums() -> None:
    std = KrakenStandardiser()
    outputs = run(std, V1_SNAPSHOT, V1_FIRST, V1_SECOND)
    assert resyncs(outputs) == []
    assert std.book_checks.stats() == {"snapshots": 1, "checksums_verified": 2}
    assert [o.record["checksum"] for o in outputs] == [None] * 3 + [kraken_crc(V1_ASKS_AFTER, V1_BIDS),
                                                                   kraken_crc(V1_ASKS_AFTER, V1_BIDS_AFTER)]
    assert {(o.record["sequence"], o.record["prev_sequence"]) for o in outputs} == {(None, None)}


def test_corrupted_checksum_asks_for_a_resync() -> None:
    std = KrakenStandardiser()
    good = kraken_crc(V1_ASKS_AFTER, V1_BIDS)
    corrupted = v1_book_frame({"a": v1_levels(V1_ASKS_AFTER[:1]), "c": str(good + 1)})
    outputs = run(std, V1_SNAPSHOT, corrupted)
    assert resyncs(outputs) == [("checksum", f"expected {good + 1}, computed {good}")]
    assert outputs[-1].key == "kraken_BTC.USD"
    assert std.book_checks.stats() == {"snapshots": 1, "checksum_mismatches": 1, "resyncs_requested": 1}
    # The book stays lost (not checked, not asked again within 10 s) until a snapshot; then it is proved again.
    assert resyncs(run(std, V1_SECOND)) == []
    assert resyncs(run(std, V1_SNAPSHOT, V1_FIRST, V1_SECOND)) == []
    assert std.book_checks.stats() == {
        "snapshots": 2, "checksum_mismatches": 1, "resyncs_requested": 1, "checksums_verified": 2}


def test_lost_update_shows_as_a_checksum_mismatch() -> None:
    """Kraken numbers nothing: a lost message (a gap) is seen when the next checksum disagrees."""
    std = KrakenStandardiser()
    outputs = run(std, V1_SNAPSHOT, V1_SECOND)
    detail = f"expected {kraken_crc(V1_ASKS_AFTER, V1_BIDS_AFTER)}, computed {kraken_crc(V1_ASKS, V1_BIDS_AFTER)}"
    assert resyncs(outputs) == [("checksum", detail)]


def test_repeated_update_still_verifies() -> None:
    """Kraken sends sizes, not changes: a repeated message sets the same sizes and is no harm, so nothing is skipped."""
    std = KrakenStandardiser()
    outputs = run(std, V1_SNAPSHOT, V1_FIRST, V1_FIRST, V1_SECOND)
    assert resyncs(outputs) == []
    assert std.book_checks.stats() == {"snapshots": 1, "checksums_verified": 3}
    assert sum(o.topic == "lob" for o in outputs) == 6
    assert dict(std.skipped) == {}


def test_book_is_truncated_to_the_subscribed_depth() -> None:
    """book-2: a better ask pushes the worst out of the book, and Kraken sends no removal for it."""
    std = KrakenStandardiser()
    better = [("0.5050", "1.00000000")]
    snapshot = v1_book_frame({"as": v1_levels(V1_ASKS), "bs": v1_levels(V1_BIDS)}, depth=2)
    update = v1_book_frame({"a": v1_levels(better), "c": str(kraken_crc(better + V1_ASKS[:1], V1_BIDS))}, depth=2)
    assert resyncs(run(std, snapshot, update)) == []
    assert std.book_checks.stats() == {"snapshots": 1, "checksums_verified": 1}


def test_updates_without_a_snapshot_ask_for_one_after_a_wait() -> None:
    """No checksum is checked on a book never snapshotted; after 10 s of stream time a snapshot is requested."""
    std = KrakenStandardiser()
    assert resyncs(std.standardise(V1_FIRST, ATOM)) == []
    assert resyncs(std.standardise(V1_SECOND, ATOM + SNAPSHOT_WAIT_US)) == [
        ("no_snapshot", "updates before any snapshot")]
    assert "checksums_verified" not in std.book_checks.stats()


def v2_book_frames(snapshot_checksum: int | None = None, update_checksum: int | None = None) -> list[bytes]:
    """The documented MATIC/USD snapshot and update, checksums replaced where given."""
    frames = [json.loads(raw) for raw in ws_frames(V2_FIXTURE)]
    snapshot, update = [m for m in frames if m.get("channel") == "book"]
    for message, value in ((snapshot, snapshot_checksum), (update, update_checksum)):
        if value is not None:
            message["data"][0]["checksum"] = value
    return [json.dumps(snapshot).encode(), json.dumps(update).encode()]


def test_v2_corrupted_checksums_ask_for_a_resync() -> None:
    std = KrakenStandardiser()
    assert resyncs(run(std, *v2_book_frames(update_checksum=2114181698))) == [
        ("checksum", "expected 2114181698, computed 2114181697")]
    # A wrong snapshot checksum: no precision hashes the book to it.
    std = KrakenStandardiser()
    [(reason, detail)] = resyncs(run(std, *v2_book_frames(snapshot_checksum=2439117998)))
    assert (reason, detail.partition(",")[0]) == ("checksum", "expected 2439117998")
    assert std.books["MATIC.USD"].places is None


def test_hashing_places_are_the_fewest_that_hash() -> None:
    """0.566 written, 0.5660 hashed: the trailing zero Kraken's v2 numbers drop is found again."""
    asks = [(Decimal("0.566"), Decimal("2.5"))]
    assert hashing_places(asks, [], zlib.crc32(b"566025000")) == (4, 4)
    assert hashing_places(asks, [], zlib.crc32(b"56625")) == (3, 1)
    assert hashing_places(asks, [], 0) is None
    assert hashing_places([], [], 0) is None


# -- connector -------------------------------------------------------------------------------


def test_parse_symbols_maps_legacy_codes_and_aliases() -> None:
    body = orjson.dumps({"error": [], "result": {
        "XXBTZUSD": {"wsname": "XBT/USD", "base": "XXBT", "quote": "ZUSD"},
        "XDGEUR": {"wsname": "XDG/EUR", "base": "XXDG", "quote": "ZEUR"},
        "XTZUSD": {"wsname": "XTZ/USD", "base": "XTZ", "quote": "ZUSD"},
        "XXBTZUSD.d": {"base": "XXBT", "quote": "ZUSD"},
        "ETH2.SETH": {"wsname": "ETH2.S/ETH", "base": "ETH2.S", "quote": "XETH"},
    }}).decode()
    assert Kraken.parse_symbols(body) == {"BTC.USD": "BTC/USD", "DOGE.EUR": "DOGE/EUR", "XTZ.USD": "XTZ/USD"}


def test_parse_symbols_refuses_an_error_answer() -> None:
    with pytest.raises(ValueError, match="EGeneral:Too many requests"):
        Kraken.parse_symbols('{"error":["EGeneral:Too many requests"]}')


def test_subscribed_depth_is_the_books_truncation_depth() -> None:
    """The v2 book carries no depth: the standardiser truncates its books to the depth the connector asks for."""
    assert BOOK_DEPTH == SUBSCRIBED_DEPTHS["kraken"]


def test_subscribe_messages_per_connection() -> None:
    kraken = feed("BTC.USD", "ETH.USD")
    groups = kraken.connection_groups(["BTC/USD", "ETH/USD"])
    assert [g.channels for g in groups] == [("trade",), ("ticker", "ohlc"), ("book",)]
    assert [orjson.loads(m) for m in kraken.subscribe_messages(groups[1])] == [
        {"method": "subscribe", "params": {"channel": "ticker", "symbol": ["BTC/USD", "ETH/USD"],
                                           "event_trigger": "bbo"}},
        {"method": "subscribe", "params": {"channel": "ohlc", "symbol": ["BTC/USD", "ETH/USD"], "interval": 1}},
    ]
    assert [orjson.loads(m) for m in kraken.subscribe_messages(groups[2])] == [
        {"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD", "ETH/USD"], "depth": 1000}},
    ]
    assert [orjson.loads(m) for m in kraken.subscribe_messages(groups[0])] == [
        {"method": "subscribe", "params": {"channel": "trade", "symbol": ["BTC/USD", "ETH/USD"], "snapshot": False}},
    ]


def test_chosen_channels_and_symbol_limit_shape_the_connections() -> None:
    kraken = Kraken(["BTC.USD"], NullSink(), SETTINGS, channels=["ohlc", "book"])
    kraken.max_symbols_per_connection = 1
    groups = kraken.connection_groups(["BTC/USD", "ETH/USD"])
    assert [(list(g), g.channels) for g in groups] == [
        (["BTC/USD"], ("ohlc",)), (["ETH/USD"], ("ohlc",)), (["BTC/USD"], ("book",)), (["ETH/USD"], ("book",)),
    ]


@pytest.mark.parametrize(
    ("frame", "key"),
    [
        (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[]}]}',
         "kraken_BTC/USD_book"),
        (b'{"channel":"ohlc","type":"update","timestamp":"x","data":[{"symbol":"ETH/USD"}]}', "kraken_ETH/USD_ohlc"),
        (b'{"channel":"heartbeat"}', "kraken_all_heartbeat"),
        (b'{"channel":"status","type":"update","data":[{"system":"online"}]}', "kraken_all_status"),
        (b'{"method":"subscribe","result":{"channel":"book","symbol":"BTC/USD"},"success":true}', "kraken_all_control"),
        (b'[993,[["354.11","0.89","1618678142.557535","s","l",""]],"trade","XMR/USD"]', "kraken_XMR/USD_trade"),
        (b'[1360,{"a":[["0.1","1","1618678163.2"]],"c":"1"},"book-1000","ADA/XBT"]', "kraken_ADA/XBT_book"),
        (b'{"event":"heartbeat"}', "kraken_all_heartbeat"),
        (b'{"event":"subscriptionStatus","status":"subscribed","pair":"XBT/USD"}', "kraken_all_control"),
        (b'{"channel":"book","data":[]}', "kraken_all_unparsed"),
        (b"[1,2]", "kraken_all_unparsed"),
        (b'{"channel":', "kraken_all_unparsed"),
        (b"42", "kraken_all_unparsed"),
    ],
)
def test_frame_key(frame: bytes, key: str) -> None:
    assert feed("BTC.USD").frame_key(frame) == key


# -- names and errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pair", "symbol"),
    [("XBT/USD", "BTC.USD"), ("BTC/USD", "BTC.USD"), ("XDG/XBT", "DOGE.BTC"), ("DOGE/USD", "DOGE.USD"),
     ("XTZ/EUR", "XTZ.EUR"), ("ZRX/USD", "ZRX.USD")],
)
def test_convert_symbol(pair: str, symbol: str) -> None:
    assert KrakenStandardiser().convert_symbol(pair) == symbol


def test_legacy_asset_codes() -> None:
    assert [normalise_asset(c) for c in ("XXBT", "ZUSD", "XXDG", "XETH", "XTZ", "ZRX", "USDT")] == [
        "BTC", "USD", "DOGE", "ETH", "XTZ", "ZRX", "USDT"]


def test_interval_names() -> None:
    assert [interval_name(m) for m in (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)] == [
        "1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w", "15d"]


BOOK_UPDATE = {"channel": "book", "type": "update", "data": [{"symbol": "BTC/USD", "bids": [{"price": 1, "qty": 2}],
                                                             "asks": [], "checksum": 1, "timestamp": "2023-10-06T17:35:55Z"}]}
TRADE_UPDATE = {"channel": "trade", "type": "update", "data": [{"symbol": "BTC/USD", "side": "buy", "price": 1, "qty": 1,
                                                               "trade_id": 1, "timestamp": "2023-09-25T07:49:37Z"}]}
V1_REJECTED = {"errorMessage": "Currency pair not in ISO 4217-A3 format foo", "event": "subscriptionStatus",
               "pair": "foo", "status": "error", "subscription": {"name": "ticker"}}


def changed(message: dict, **fields: object) -> bytes:
    """``message`` with fields of its first data item replaced (None: removed)."""
    item = {k: v for k, v in {**message["data"][0], **fields}.items() if v is not None}
    return orjson.dumps({**message, "data": [item]})


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"channel":"book",', "malformed JSON"),
        (b"[1, 2]", "message has no type"),
        (b"{}", "message has no type"),
        (b'{"channel":"instrument","type":"snapshot","data":[]}', "unknown message type 'instrument'"),
        (b'[1,{},"spread","XBT/USD"]', "unknown message type 'v1 spread'"),
        (b'{"method":"subscribe","error":"Currency pair not supported XBT/FOO","success":false}',
         "Kraken rejected a request: Currency pair not supported XBT/FOO"),
        (orjson.dumps(V1_REJECTED), "Kraken rejected a request: Currency pair not in ISO 4217-A3 format foo"),
        (changed(BOOK_UPDATE, checksum="abc"), "book message has a mistyped field: expected an integer"),
        (changed(BOOK_UPDATE, checksum=1 << 32), "checksum must be an unsigned 32-bit integer"),
        (orjson.dumps({**BOOK_UPDATE, "type": "delta"}), "book type must be 'snapshot' or 'update'"),
        (changed(BOOK_UPDATE, timestamp=1696613755), "expected an ISO-8601 time string"),
        (changed(BOOK_UPDATE, timestamp=None), "book message lacks field 'timestamp'"),
        (changed(BOOK_UPDATE, symbol="BTCUSD"), "Kraken pair must look like BASE/QUOTE"),
        (changed(TRADE_UPDATE, side="up"), "side must be 'buy' or 'sell', got 'up'"),
        (changed(TRADE_UPDATE, trade_id=None), "trade message lacks field 'trade_id'"),
        (changed(TRADE_UPDATE, price=True), "expected a decimal string, got bool"),
        (b'{"channel":"ohlc","type":"update","data":[]}', "ohlc message lacks field 'timestamp'"),
        (b'[0,[["5541.2","0.15","1534614057.321597","x","l",""]],"trade","XBT/USD"]',
         "trade side must be 'b' or 's', got 'x'"),
        (b'[0,[["5541.2","0.15"]],"trade","XBT/USD"]', "v1 trade message has a mistyped field: list index out of range"),
        (b'[0,{"b":[[null,"1","1534614335.345903"]]},"book-10","XBT/USD"]', "expected a decimal string, got NoneType"),
        # v1 frames are read with orjson (v1 sends strings): a JSON number there is refused, never rounded.
        (b'[0,{"b":[[5541.3,"1","1534614335.345903"]]},"book-10","XBT/USD"]', "expected a decimal string, got float"),
        (b'[0,{"b":[["5541.3","1","1534614335.345903","x"]]},"book-10","XBT/USD"]',
         "book level must be [price, volume, time] or [..., 'r']"),
        (b'[0,{"q":[["5541.3","1","1534614335.345903"]]},"book-10","XBT/USD"]', "v1 book message lacks field 'q'"),
        (b'[42,["1","2","3","3","3","3","3","1",2],"ohlc-x","XBT/USD"]', "ohlc channel name must be ohlc-<minutes>"),
    ],
)
def test_bad_input_raises_a_precise_error(raw: bytes, error: str) -> None:
    with pytest.raises(StandardiseError, match=error.replace("(", r"\(").replace("[", r"\[").replace("]", r"\]")):
        KrakenStandardiser().standardise(raw, ATOM)


@pytest.mark.parametrize(
    "value", ["1618678142.557535", "1618678142", "1618678142.5", "1618678142.", "0.0009", "1e3", "+1.5", " 1.5", "١٢.٣",
              Decimal("1.2345"), 5],
)
def test_epoch_seconds_to_ms_cut_as_text_as_the_decimal_would(value: object) -> None:
    assert ms_from_epoch_seconds(value) == int(Decimal(value).scaleb(3))
