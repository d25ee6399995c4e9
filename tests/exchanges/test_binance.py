"""Binance spot on its real recording (2021-10-11: depth@100ms, bookTicker, kline_1m, aggTrade; REST snapshots).

The recording subscribed to ``@aggTrade``; the connector now streams ``@trade``
(every trade, not aggregated) by default, and the standardiser understands both.
The connector also fetches ``GET /api/v3/depth`` into the raw topic after it
connects (the recording's REST snapshots, fetched by the recorder just after each
symbol's first diff), so the expected ``lob`` count includes the snapshots' levels.

Replayed offline, every frame and snapshot comes at its recorded time (its
``atom_timestamp``), so diffs that the snapshot already holds are skipped, as
Binance documents; the independent count applies that rule to the raw frames.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit

import fastavro
import orjson
import pytest

from l3_atom.avro.codecs import parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.data_source import DataFeed, UnknownSymbol
from l3_atom.feed import RECONNECT
from l3_atom.off_chain.binance import Binance, StreamGroup
from l3_atom.stream_processing.standardiser import Output, StandardiseError, Standardiser
from l3_atom.stream_processing.standardisers.binance import BinanceStandardiser
from l3_atom.topics import raw_key, split_raw_key
from tests.recorded import http_bodies, ws_frames
from tests.sinks import NullSink

SOURCE = "binance"
RECORDING = "binance"
SYMBOLS = ["NKN.USDT", "BLZ.ETH", "LRC.BTC", "RUNE.EUR"]
# Besides the recorded websocket frames, the raw topic gets one REST depth snapshot per symbol (connection "rest").
REST_FRAMES = len(SYMBOLS)
ATOM = 1_633_998_512_100_000
US_PER_S = 1_000_000
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)
RECORDED_CHANNELS = ("depth@100ms", "bookTicker", "kline_1m", "aggTrade")
# Stream type (the part after the symbol) -> normalised topic; depth frames count one record per level.
TOPIC_OF_STREAM = {
    "depth": "lob", "trade": "trades", "aggTrade": "trades", "bookTicker": "ticker", "kline": "candle",
    "markPrice": "funding_rate",
}
SNAPSHOT_PATHS = ("/api/v3/depth", "/fapi/v1/depth")
# Binance: a diff whose final update id u is at or below the snapshot's lastUpdateId is already in it.
IN_SNAPSHOT = "stale: already in the book snapshot"
# A book that has seen diffs but no snapshot for this long (stream time) asks for one.
NO_SNAPSHOT_WAIT_S = 10.0


def entries(folder: Path, stem: str) -> Iterator[dict]:
    """The recorded entries of ``<stem>.jsonl.gz`` (format: the recordings' README), in recorded order."""
    with gzip.open(folder / f"{stem}.jsonl.gz", "rt") as lines:
        yield from map(json.loads, lines)


def received(folder: Path) -> Iterator[dict]:
    return (entry for entry in entries(folder, "ws") if entry["t"] == "recv")


def count_frames(folder: Path, snapshots_last: bool = False) -> tuple[Counter[str], Counter[str]]:
    """(records per topic, skips per reason), from the raw frames and REST bodies, without any project code.

    Frames and snapshots are taken in recorded time order (``snapshots_last``: every REST body after every
    frame).
    """
    events = [(e["ts"], None, json.loads(e["data"])) for e in received(folder)]
    for e in entries(folder, "http"):
        url = urlsplit(e["url"])
        symbol = parse_qs(url.query)["symbol"][0] if url.path in SNAPSHOT_PATHS else None
        events.append((math.inf if snapshots_last else e["ts"], (url.path, symbol), json.loads(e["body"])))
    return count_events(sorted(events, key=lambda event: event[0]))


def count_raw(raw: list) -> Counter[str]:
    """Records per topic for the raw topic's messages in their order (the end-to-end replay), as ``count_events``."""
    events = []
    for message in sorted(raw, key=lambda m: (m.partition(), m.offset())):
        headers = dict(message.headers())
        ts = int(headers["atom_timestamp"]) / US_PER_S
        _, symbol, feed = message.key().decode().split("_", 2)
        rest = (SNAPSHOT_PATHS[0] if feed == "depth" else "/openInterest", symbol) if headers["connection_id"] == b"rest" \
            else None
        events.append((ts, rest, json.loads(message.value())))
    return count_events(events)[0]


def count_events(events: list[tuple[float, tuple[str, str | None] | None, dict]]) -> tuple[Counter[str], Counter[str]]:
    """(records per topic, skips per reason) of (time, REST (path, symbol) or None, message) in processing order.

    Binance's documented rule decides which diffs are dropped: ``u`` <= the last snapshot's
    ``lastUpdateId``.  A diff whose first update (spot ``U``, futures ``pu`` + 1) is beyond the book's last
    ``u`` is a gap, and a book with diffs but no snapshot asks for one every 10 s: each is a ``book_resync``
    (further requests of a book already out of sync are not modelled).
    """
    counts: Counter[str] = Counter()
    skips: Counter[str] = Counter()
    snapshot_id: dict[str, int] = {}
    last: dict[str, int] = {}
    # When a book without a snapshot started waiting for one (its first diff, then its last request).
    waiting_since: dict[str, float] = {}
    for ts, rest, message in events:
        if rest is not None and rest[0] in SNAPSHOT_PATHS:
            symbol = rest[1]
            snapshot_id[symbol] = last[symbol] = message["lastUpdateId"]
            counts["lob"] += len(message["bids"]) + len(message["asks"])
        elif rest is not None and rest[0].endswith("/openInterest"):
            counts["open_interest"] += 1
        elif rest is None and "stream" in message:
            topic, data = TOPIC_OF_STREAM[message["stream"].split("@")[1].split("_")[0]], message["data"]
            if topic != "lob":
                if topic != "funding_rate" or data["r"] != "":  # a dated future's markPrice has no funding
                    counts[topic] += 1
                continue
            symbol, final = data["s"], data["u"]
            if symbol in snapshot_id and final <= snapshot_id[symbol]:
                skips[IN_SNAPSHOT] += 1
                continue
            first = data["pu"] + 1 if "pu" in data else data["U"]
            if symbol in last and first > last[symbol] + 1:
                counts["book_resync"] += 1
            if symbol not in snapshot_id and ts - waiting_since.setdefault(symbol, ts) >= NO_SNAPSHOT_WAIT_S:
                waiting_since[symbol] = ts
                counts["book_resync"] += 1
            last[symbol] = final
            counts["lob"] += len(data["b"]) + len(data["a"])
    return counts, skips


def expected_counts(folder: Path) -> dict[str, int]:
    """What the end-to-end replay publishes: its server sends the whole recording within milliseconds, before
    the connector's snapshots (fetched once it has connected) come back, so no diff is inside a snapshot."""
    counts, _ = count_frames(folder, snapshots_last=True)
    return {topic: n for topic, n in counts.items() if topic != "book_resync"}


def opened_url(folder: Path) -> str:
    return next(e["url"] for e in entries(folder, "ws") if e["t"] == "open")


def replay_frames(
    feed_class: type[DataFeed], std: Standardiser, folder: Path, symbols: list[str], snapshots_last: bool = False
) -> list[list[Output]]:
    """The outputs of every recorded frame and REST snapshot, through the connector's keys and header.

    Each comes at its recorded time, which is its ``atom_timestamp``: the snapshots the connector fetches
    (``snapshot_polls`` of its connections) land between the diffs where the recorder received them
    (``snapshots_last``: after every frame, as in the end-to-end replay).
    """
    bodies = http_bodies(folder)
    symbols_url = next(u for u in bodies if urlsplit(u).path == feed_class.symbols_path)
    feed = feed_class(symbols, NullSink(), SETTINGS)
    exchange_symbols = feed.resolve(feed_class.parse_symbols(bodies[symbols_url]))
    normalised_of = dict(zip(exchange_symbols, symbols, strict=True))
    frames = [(e["ts"], e["data"].encode()) for e in received(folder)]
    keyed = [(ts, raw, feed.frame_key(raw)) for ts, raw in frames]
    recorded = {
        (urlsplit(e["url"]).path, tuple(parse_qsl(urlsplit(e["url"]).query))): e for e in entries(folder, "http")
    }
    last = max(ts for ts, _ in frames)
    for group in feed.connection_groups(exchange_symbols):
        for poll in feed.snapshot_polls(group):
            found = recorded.get((poll.path, tuple(poll.params.items())))
            if found is not None:  # like the replay server, which answers only what was recorded
                keyed.append((last if snapshots_last else found["ts"], found["body"].encode(), poll.key))
    return [
        std.standardise(raw, round(ts * US_PER_S), key, normalised_of.get(split_raw_key(key)[1]))
        for ts, raw, key in sorted(keyed, key=lambda frame: frame[0])
    ]


def replay(feed_class: type[DataFeed], std: Standardiser, folder: Path, symbols: list[str]) -> list[Output]:
    """:func:`replay_frames`, flat."""
    return [out for outputs in replay_frames(feed_class, std, folder, symbols) for out in outputs]


def replay_checked(
    feed_class: type[DataFeed], std: Standardiser, folder: Path, symbols: list[str], snapshots_last: bool = False
) -> tuple[Counter[str], list[list[Output]]]:
    """:func:`replay_frames`, checked against the independent count (records per topic, skips per reason),
    with each frame giving records or a named skip, never both (a skip may carry a resync request), and every
    record of a requested symbol and fit for its schema."""
    per_frame = replay_frames(feed_class, std, folder, symbols, snapshots_last)
    outputs = [out for outs in per_frame for out in outs]
    assert {o.record["symbol"] for o in outputs} == set(symbols)
    assert_fits_schemas(outputs)
    produced = Counter(o.topic for o in outputs)
    counts, skips = count_frames(folder, snapshots_last)
    assert produced == counts
    assert std.skipped == skips
    with_records = [outputs for outputs in per_frame if any(o.topic != "book_resync" for o in outputs)]
    assert len(with_records) + sum(std.skipped.values()) == len(per_frame)
    return produced, per_frame


def assert_fits_schemas(outputs: list[Output]) -> None:
    """Exactly the schema's fields, and fastavro accepts every record."""
    for out in outputs:
        schema = parsed_schema(out.topic)
        assert set(out.record) == {f["name"] for f in schema["fields"]}, out.topic
        assert fastavro.validate(out.record, schema, raise_errors=True)


def feed(*symbols: str, channels: tuple[str, ...] | None = None) -> Binance:
    return Binance(symbols, NullSink(), SETTINGS, channels=channels)


def first(folder: Path, stream: str) -> bytes:
    return next(raw for raw in ws_frames(folder) if orjson.loads(raw).get("stream") == stream)


# -- connector ---------------------------------------------------------------------------------------


def test_symbol_map_from_the_recorded_exchange_info(recordings: Path) -> None:
    body = http_bodies(recordings / RECORDING)["https://api.binance.com/api/v3/exchangeInfo"]
    symbol_map = Binance.parse_symbols(body)
    assert symbol_map["NKN.USDT"] == "NKNUSDT"
    assert symbol_map["RUNE.EUR"] == "RUNEEUR"
    assert symbol_map["ETH.BTC"] == "ETHBTC"
    assert len(symbol_map) == len(orjson.loads(body)["symbols"]) == 1695


def test_parse_symbols_skips_assets_outside_the_grammar() -> None:
    body = orjson.dumps({"symbols": [
        {"symbol": "BTCUSDT", "baseAsset": "BTC", "quoteAsset": "USDT"},
        {"symbol": "WEIRD-USDT", "baseAsset": "WEIRD-", "quoteAsset": "USDT"},
    ]}).decode()
    assert Binance.parse_symbols(body) == {"BTC.USDT": "BTCUSDT"}


def test_unknown_symbol_names_near_matches() -> None:
    body = orjson.dumps({"symbols": [{"symbol": "BTCUSDT", "baseAsset": "BTC", "quoteAsset": "USDT"}]}).decode()
    with pytest.raises(UnknownSymbol, match=r"binance does not list BTC.USD \(did you mean: BTC.USDT"):
        feed("BTC.USD").resolve(Binance.parse_symbols(body))


def test_connection_url_is_the_recorded_one(recordings: Path) -> None:
    """With the recording's channels, the connector opens exactly the URL the recorder opened."""
    binance = feed(*SYMBOLS, channels=RECORDED_CHANNELS)
    [group] = binance.connection_groups(["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"])
    assert asyncio.run(binance.connection_url(group)) == opened_url(recordings / RECORDING)
    assert binance.subscribe_messages(group) == []


def test_default_channels_and_url() -> None:
    binance = feed("BTC.USDT")
    [group] = binance.connection_groups(["BTCUSDT"])
    assert asyncio.run(binance.connection_url(group)) == (
        "wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker/"
        "btcusdt@kline_1m"
    )


def test_connections_carry_at_most_1024_streams() -> None:
    names = [f"C{i}USDT" for i in range(300)]
    groups = feed("BTC.USDT").connection_groups(names)
    assert [len(g) for g in groups] == [256, 44]
    assert all(isinstance(g, StreamGroup) and len(g.streams) <= 1024 for g in groups)
    assert [s for g in groups for s in g] == names


def test_connection_url_needs_a_group() -> None:
    with pytest.raises(TypeError, match="expected a StreamGroup"):
        asyncio.run(feed("BTC.USDT").connection_url(["BTCUSDT"]))


@pytest.mark.parametrize(
    ("frame", "key"),
    [
        (b'{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","s":"NKNUSDT"}}', "binance_NKNUSDT_depth"),
        (b'{"stream":"nknusdt@kline_1m","data":{"e":"kline","s":"NKNUSDT"}}', "binance_NKNUSDT_kline"),
        (b'{"stream":"nknusdt@bookTicker","data":{"u":1,"s":"NKNUSDT"}}', "binance_NKNUSDT_bookticker"),
        (b'{"stream":"nknusdt@aggTrade","data":{"e":"aggTrade","s":"NKNUSDT"}}', "binance_NKNUSDT_aggtrade"),
        (b'{"stream":"nknusdt@trade","data":{"e":"trade","s":"NKNUSDT"}}', "binance_NKNUSDT_trade"),
        (b'{"stream":"nknusdt@trade","data":{"e":"trade"}}', "binance_all_trade"),
        (b'{"result":null,"id":1}', "binance_all_control"),
        (b'{"stream":"nknusdt@trade"', "binance_all_unparsed"),
        (b"[1,2]", "binance_all_unparsed"),
    ],
)
def test_frame_key(frame: bytes, key: str) -> None:
    assert feed("NKN.USDT").frame_key(frame) == key


def test_server_shutdown_asks_for_a_reconnect() -> None:
    binance = feed("NKN.USDT")
    assert binance.reply(b'{"stream":"x","data":{"e":"serverShutdown","E":1}}') is RECONNECT
    assert binance.reply(b'{"stream":"nknusdt@trade","data":{"e":"trade"}}') is None


def test_depth_snapshots_are_fetched_on_connect_under_the_depth_key(recordings: Path) -> None:
    """Snapshots are fetched when a connection connects and on resync (``snapshot_polls``), not on a timer."""
    binance = feed("NKN.USDT")
    [group] = binance.connection_groups(["NKNUSDT"])
    for symbols in (group, ["NKNUSDT"]):
        assert [(p.path, p.params, p.key) for p in binance.snapshot_polls(symbols)] == [
            ("/api/v3/depth", {"symbol": "NKNUSDT", "limit": "1000"}, "binance_NKNUSDT_depth")
        ]
    assert binance.rest_polls(["NKNUSDT"]) == []
    assert "https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000" in http_bodies(recordings / RECORDING)
    assert feed("NKN.USDT", channels=("trade",)).snapshot_polls(["NKNUSDT"]) == []


# -- standardiser ------------------------------------------------------------------------------------


@pytest.fixture
def std() -> BinanceStandardiser:
    return BinanceStandardiser()


def standardise(std: BinanceStandardiser, raw: bytes, symbol: str = "NKN.USDT") -> list[Output]:
    return std.standardise(raw, ATOM, feed(symbol).frame_key(raw), symbol)


def test_depth_update_field_by_field(recordings: Path, std: BinanceStandardiser) -> None:
    # {"e":"depthUpdate","E":1633998512068,"s":"NKNUSDT","U":499869750,"u":499869752,
    #  "b":[["0.35130000","6195.00000000"],["0.34750000","5548.00000000"],["0.34640000","6222.00000000"]],"a":[]}
    outputs = standardise(std, first(recordings / RECORDING, "nknusdt@depth@100ms"))
    assert [o.record["price"] for o in outputs] == [Decimal("0.35130000"), Decimal("0.34750000"), Decimal("0.34640000")]
    assert outputs[0] == Output("lob", "binance_NKN.USDT", {
        "exchange": "binance", "symbol": "NKN.USDT", "side": "bid", "price": Decimal("0.35130000"),
        "size": Decimal("6195.00000000"), "is_snapshot": False, "sequence": 499869752, "prev_sequence": 499869749,
        "checksum": None, "event_timestamp": 1633998512068, "atom_timestamp": ATOM,
    })


def test_book_ticker_has_no_exchange_time(recordings: Path, std: BinanceStandardiser) -> None:
    # {"u":499869768,"s":"NKNUSDT","b":"0.35210000","B":"672.00000000","a":"0.35260000","A":"3199.00000000"}
    [out] = standardise(std, first(recordings / RECORDING, "nknusdt@bookTicker"))
    assert out == Output("ticker", "binance_NKN.USDT", {
        "exchange": "binance", "symbol": "NKN.USDT", "bid_price": Decimal("0.35210000"),
        "bid_size": Decimal("672.00000000"), "ask_price": Decimal("0.35260000"), "ask_size": Decimal("3199.00000000"),
        "last_price": None, "last_size": None, "sequence": 499869768, "event_timestamp": ATOM // 1000,
        "atom_timestamp": ATOM,
    })


def test_agg_trade_field_by_field(recordings: Path, std: BinanceStandardiser) -> None:
    # {"e":"aggTrade","E":1633998523963,"s":"NKNUSDT","a":15683430,"p":"0.35280000","q":"58.00000000",
    #  "f":19862790,"l":19862790,"T":1633998523963,"m":false,"M":true}: the buyer took.
    [out] = standardise(std, first(recordings / RECORDING, "nknusdt@aggTrade"))
    assert out == Output("trades", "binance_NKN.USDT", {
        "exchange": "binance", "symbol": "NKN.USDT", "trade_id": "15683430", "price": Decimal("0.35280000"),
        "size": Decimal("58.00000000"), "taker_side": "buy", "sequence": 15683430,
        "origin": None, "event_timestamp": 1633998523963, "atom_timestamp": ATOM,
    })


def test_trade_from_the_documentation(std: BinanceStandardiser) -> None:
    """The ``@trade`` payload of Binance's web-socket-streams.md: ``m`` true, so the seller took."""
    raw = orjson.dumps({"stream": "bnbbtc@trade", "data": {
        "e": "trade", "E": 1672515782136, "s": "BNBBTC", "t": 12345, "p": "0.001", "q": "100", "b": 88, "a": 50,
        "T": 1672515782136, "m": True, "M": True}})
    [out] = standardise(std, raw, "BNB.BTC")
    assert out.record == {
        "exchange": "binance", "symbol": "BNB.BTC", "trade_id": "12345", "price": Decimal("0.001"),
        "size": Decimal(100), "taker_side": "sell", "sequence": 12345, "origin": None, "event_timestamp": 1672515782136,
        "atom_timestamp": ATOM,
    }


def test_kline_field_by_field(recordings: Path, std: BinanceStandardiser) -> None:
    # "k":{"t":1633998480000,"T":1633998539999,"s":"NKNUSDT","i":"1m","f":19862761,"L":19862790,"o":"0.35270000",
    #  "c":"0.35280000","h":"0.35280000","l":"0.35220000","v":"25877.00000000","n":30,"x":false,"q":"9116.04600000"}
    [out] = standardise(std, first(recordings / RECORDING, "nknusdt@kline_1m"))
    assert out == Output("candle", "binance_NKN.USDT", {
        "exchange": "binance", "symbol": "NKN.USDT", "origin": "exchange", "interval": "1m",
        "start": 1633998480000, "end": 1633998540000, "open": Decimal("0.35270000"), "high": Decimal("0.35280000"),
        "low": Decimal("0.35220000"), "close": Decimal("0.35280000"), "volume": Decimal("25877.00000000"),
        "quote_volume": Decimal("9116.04600000"), "trade_count": 30, "vwap": None, "first_trade_timestamp": None,
        "last_trade_timestamp": None, "closed": False, "event_timestamp": 1633998523963, "atom_timestamp": ATOM,
    })


def test_rest_snapshot_field_by_field(recordings: Path, std: BinanceStandardiser) -> None:
    # {"lastUpdateId":499869752,"bids":[["0.35210000","672.00000000"],...],"asks":[...]}: no time, no symbol.
    body = http_bodies(recordings / RECORDING)["https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000"]
    outputs = std.standardise(body.encode(), ATOM, raw_key("binance", "NKNUSDT", "depth"), "NKN.USDT")
    snapshot = orjson.loads(body)
    assert len(outputs) == len(snapshot["bids"]) + len(snapshot["asks"])
    assert outputs[0].record == {
        "exchange": "binance", "symbol": "NKN.USDT", "side": "bid", "price": Decimal("0.35210000"),
        "size": Decimal("672.00000000"), "is_snapshot": True, "sequence": 499869752, "prev_sequence": None,
        "checksum": None, "event_timestamp": None, "atom_timestamp": ATOM,
    }
    assert {o.record["side"] for o in outputs[len(snapshot["bids"]):]} == {"ask"}


def test_acks_and_empty_updates_are_counted_skips(std: BinanceStandardiser) -> None:
    assert std.standardise(b'{"result":null,"id":1}', ATOM) == []
    empty = b'{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"NKNUSDT","U":1,"u":2,"b":[],"a":[]}}'
    assert standardise(std, empty) == []
    assert standardise(std, b'{"stream":"x","data":{"e":"serverShutdown","E":1}}') == []
    assert dict(std.skipped) == {
        "subscription ack": 1, "depthUpdate without level changes": 1,
        "server shutdown notice (the connector reconnects)": 1,
    }


def test_names_need_the_connector_symbol_header(std: BinanceStandardiser) -> None:
    """``NKNUSDT`` cannot be split without the symbol list: there is no pure conversion."""
    raw = b'{"stream":"nknusdt@bookTicker","data":{"u":1,"s":"NKNUSDT","b":"1","B":"1","a":"2","A":"1"}}'
    with pytest.raises(StandardiseError, match="no normalised symbol known for 'NKNUSDT'"):
        std.standardise(raw, ATOM)
    [out] = std.standardise(raw, ATOM, "binance_NKNUSDT_bookticker", "NKN.USDT")
    assert out.key == "binance_NKN.USDT"


@pytest.mark.parametrize(
    ("raw", "key", "error"),
    [
        (b'{"stream":"nknusdt@trade","data":', None, "malformed JSON"),
        (b'{"stream":"nknusdt@trade"}', None, "message has no type"),
        (b'{"code":2,"msg":"Invalid request: unknown variant"}', None,
         "binance error 2: Invalid request: unknown variant"),
        (b'{"stream":"nknusdt@ticker","data":{"e":"24hrTicker","s":"NKNUSDT"}}', None,
         "unknown message type '24hrTicker'"),
        (b'{"stream":"nknusdt@trade","data":{"e":"trade","E":1,"s":"NKNUSDT","t":1,"p":"1","q":"1","T":1}}', None,
         "trade message lacks field 'm'"),
        (b'{"stream":"nknusdt@trade","data":{"e":"trade","E":1,"s":"NKNUSDT","t":1,"p":1.5,"q":"1","T":1,"m":true}}',
         None, "expected a decimal string, got float"),
        (b'{"stream":"nknusdt@trade","data":{"e":"trade","E":1,"s":"NKNUSDT","t":1,"p":"1","q":"1","T":1,"m":1}}',
         None, r"m \(buyer is maker\) must be a boolean"),
        (b'{"stream":"nknusdt@depth","data":{"e":"depthUpdate","E":1,"s":"NKNUSDT","u":"2","b":[],"a":[]}}', None,
         "expected an integer, got str"),
        (b'{"stream":"nknusdt@depth","data":{"e":"depthUpdate","E":1,"s":"NKNUSDT","U":1,"u":2,"b":[["1"]],"a":[]}}',
         None, "depthUpdate message has a mistyped field: list index out of range"),
        (b'{"stream":"nknusdt@depth","data":{"e":"depthUpdate","E":1,"s":"NKNUSDT","u":2,"b":[],"a":[]}}', None,
         "depthUpdate message lacks field 'U'"),
        (b'{"lastUpdateId":1,"bids":[["1","1"]],"asks":[]}', "binance_all_depth",
         "a REST depth snapshot names no symbol"),
    ],
)
def test_bad_input_raises_a_precise_error(std: BinanceStandardiser, raw: bytes, key: str | None, error: str) -> None:
    with pytest.raises(StandardiseError, match=error):
        std.standardise(raw, ATOM, key or feed("NKN.USDT").frame_key(raw), "NKN.USDT")


# -- book integrity (hand-written frames) ---------------------------------------------------------------

SECOND_US = 1_000_000
DEPTH_KEY = raw_key(SOURCE, "NKNUSDT", "depth")


def diff(first: int, final: int, bids: list | None = None) -> bytes:
    data = {"e": "depthUpdate", "E": 1, "s": "NKNUSDT", "U": first, "u": final, "b": bids or [["1.5", "2"]], "a": []}
    return orjson.dumps({"stream": "nknusdt@depth@100ms", "data": data})


def snapshot(last_update_id: int) -> bytes:
    return orjson.dumps({"lastUpdateId": last_update_id, "bids": [["1.0", "5"]], "asks": [["2.0", "5"]]})


def book_std(last_update_id: int | None = 100) -> BinanceStandardiser:
    """A standardiser whose NKN.USDT book starts from a snapshot at ``last_update_id`` (None: no snapshot)."""
    std = BinanceStandardiser()
    if last_update_id is not None:
        std.standardise(snapshot(last_update_id), ATOM, DEPTH_KEY, "NKN.USDT")
    return std


def resyncs(outputs: list[Output]) -> list[tuple[str, str]]:
    return [(o.record["reason"], o.record["detail"]) for o in outputs if o.topic == "book_resync"]


def test_diffs_inside_the_snapshot_are_skipped_and_the_overlapping_one_applied() -> None:
    """Binance: drop diffs with u <= lastUpdateId; the first applied has U <= lastUpdateId + 1 <= u."""
    std = book_std(100)
    assert standardise(std, diff(95, 99)) == []
    assert standardise(std, diff(98, 100)) == []
    [first] = standardise(std, diff(99, 103))
    assert (first.record["sequence"], first.record["prev_sequence"]) == (103, 98)
    assert [o.topic for o in standardise(std, diff(104, 105))] == ["lob"]
    assert standardise(std, diff(104, 105)) == []
    assert dict(std.skipped) == {IN_SNAPSHOT: 2, "duplicate book update": 1}
    assert std.book_checks.continuity.in_sync("NKN.USDT")


def test_a_gap_is_published_and_asks_for_a_resync_until_a_snapshot_comes() -> None:
    std = book_std(100)
    standardise(std, diff(101, 102))
    outputs = standardise(std, diff(105, 106))
    assert [o.topic for o in outputs] == ["lob", "book_resync"]
    assert resyncs(outputs) == [("gap", "expected an update after 102, got 104->106")]
    assert outputs[-1] == Output("book_resync", "binance_NKN.USDT", {
        "exchange": "binance", "symbol": "NKN.USDT", "reason": "gap",
        "detail": "expected an update after 102, got 104->106", "atom_timestamp": ATOM,
    })
    assert_fits_schemas(outputs)
    # Rate-limited while no snapshot comes; the snapshot that comes puts the book back in sync.
    assert resyncs(standardise(std, diff(107, 108))) == []
    std.standardise(snapshot(200), ATOM, DEPTH_KEY, "NKN.USDT")
    assert resyncs(std.standardise(diff(150, 201), ATOM + 20 * SECOND_US, "binance_NKNUSDT_depth", "NKN.USDT")) == []
    assert std.book_checks.stats()["gaps"] == 1


def test_an_older_diff_after_the_snapshot_is_published_and_asks_for_a_resync() -> None:
    """Out of order is new to the book (not inside the snapshot): published, and the book asks for a snapshot."""
    std = book_std(100)
    standardise(std, diff(101, 105))
    outputs = standardise(std, diff(102, 103))
    assert [o.topic for o in outputs] == ["lob", "book_resync"]
    assert resyncs(outputs) == [("out_of_order", "sequence 103 after 105")]


def test_diffs_without_a_snapshot_ask_for_one_after_10_s_of_stream_time() -> None:
    std = book_std(None)
    assert resyncs(std.standardise(diff(1, 2), ATOM, "binance_NKNUSDT_depth", "NKN.USDT")) == []
    later = std.standardise(diff(3, 4), ATOM + 10 * SECOND_US, "binance_NKNUSDT_depth", "NKN.USDT")
    assert resyncs(later) == [("no_snapshot", "updates before any snapshot")]


def test_a_diff_without_levels_still_moves_the_book() -> None:
    """Otherwise the next diff, which starts after it, would look like a gap."""
    std = book_std(100)
    empty = orjson.loads(diff(101, 102))
    empty["data"]["b"] = []
    assert standardise(std, orjson.dumps(empty)) == []
    assert resyncs(standardise(std, diff(103, 104))) == []
    assert dict(std.skipped) == {"depthUpdate without level changes": 1}


def test_recording_is_fully_understood(recordings: Path) -> None:
    """Every frame and REST snapshot becomes records or a named skip; counts match the independent count.

    At their recorded times, one LRCBTC diff (``u`` 259345543, 4 levels) comes after the snapshot that
    already holds it (``lastUpdateId`` 259345543): Binance says drop it, and it is skipped.  No diff leaves
    a gap and each snapshot comes within a second of its symbol's first diff, so no resync is requested.
    """
    std = BinanceStandardiser()
    produced, per_frame = replay_checked(Binance, std, recordings / RECORDING, SYMBOLS)
    assert produced == {"lob": 4648 + 422 - 4, "ticker": 84, "trades": 2, "candle": 2}
    assert dict(std.skipped) == {IN_SNAPSHOT: 1}
    assert len(per_frame) == 265 + REST_FRAMES
    assert std.book_checks.stats() == {"snapshots": 4, "duplicates": 1}


def test_snapshots_after_every_frame_as_in_the_end_to_end_replay(recordings: Path) -> None:
    """The end-to-end replay's count: its snapshots come back after the frames, so every diff is published.

    At the recorded times the books then wait up to 30 s for a snapshot and ask for one every 10 s (7
    requests); end to end the frames come within milliseconds, and ``book_resync`` is no normalised topic.
    """
    std = BinanceStandardiser()
    produced, _ = replay_checked(Binance, std, recordings / RECORDING, SYMBOLS, snapshots_last=True)
    assert dict(std.skipped) == {}
    assert produced["book_resync"] == 7
    assert expected_counts(recordings / RECORDING) == {"lob": 4648 + 422, "ticker": 84, "trades": 2, "candle": 2}
