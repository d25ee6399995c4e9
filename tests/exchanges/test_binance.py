"""Binance spot on its real recording (2021-10-11: depth@100ms, bookTicker, kline_1m, aggTrade; REST snapshots).

The recording subscribed to ``@aggTrade``; the connector now streams ``@trade``
(every trade, not aggregated) by default, and the standardiser understands both.
The connector also polls ``GET /api/v3/depth`` into the raw topic (the recording's
REST snapshots), so the expected ``lob`` count includes the snapshots' levels.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import fastavro
import orjson
import pytest

from l3_atom.config import ConnectorSettings
from l3_atom.data_source import DataFeed, UnknownSymbol
from l3_atom.feed import RECONNECT
from l3_atom.off_chain.binance import Binance, StreamGroup
from l3_atom.stream_processing.codecs import parsed_schema
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
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)
RECORDED_CHANNELS = ("depth@100ms", "bookTicker", "kline_1m", "aggTrade")
# Stream type (the part after the symbol) -> normalised topic; depth frames count one record per level.
TOPIC_OF_STREAM = {
    "depth": "lob", "trade": "trades", "aggTrade": "trades", "bookTicker": "ticker", "kline": "candle",
    "markPrice": "funding_rate",
}
SNAPSHOT_PATHS = ("/api/v3/depth", "/fapi/v1/depth")


def count_frames(folder: Path) -> Counter[str]:
    """Records per topic, counted from the raw frames and REST snapshot bodies, without any project code."""
    counts: Counter[str] = Counter()
    for raw in ws_frames(folder):
        message = json.loads(raw)
        if "stream" not in message:
            continue
        data = message["data"]
        topic = TOPIC_OF_STREAM[message["stream"].split("@")[1].split("_")[0]]
        if topic == "lob":
            counts[topic] += len(data["b"]) + len(data["a"])
        elif topic != "funding_rate" or data["r"] != "":
            counts[topic] += 1
    for url, body in http_bodies(folder).items():
        if urlsplit(url).path in SNAPSHOT_PATHS:
            snapshot = json.loads(body)
            counts["lob"] += len(snapshot["bids"]) + len(snapshot["asks"])
        elif urlsplit(url).path.endswith("/openInterest"):
            counts["open_interest"] += 1
    return counts


def expected_counts(folder: Path) -> dict[str, int]:
    return dict(count_frames(folder))


def opened_url(folder: Path) -> str:
    with gzip.open(folder / "ws.jsonl.gz", "rt") as lines:
        return next(e["url"] for e in map(json.loads, lines) if e["t"] == "open")


def replay(feed_class: type[DataFeed], std: Standardiser, folder: Path, symbols: list[str]) -> list[Output]:
    """Every recorded frame and REST snapshot through the connector's keys and header, then the standardiser."""
    bodies = http_bodies(folder)
    symbols_url = next(u for u in bodies if urlsplit(u).path == feed_class.symbols_path)
    feed = feed_class(symbols, NullSink(), SETTINGS)
    exchange_symbols = feed.resolve(feed_class.parse_symbols(bodies[symbols_url]))
    normalised_of = dict(zip(exchange_symbols, symbols, strict=True))
    outputs = []
    for raw in ws_frames(folder):
        key = feed.frame_key(raw)
        outputs += std.standardise(raw, ATOM, key, normalised_of.get(split_raw_key(key)[1]))
    recorded = {(urlsplit(u).path, tuple(parse_qsl(urlsplit(u).query))): body for u, body in bodies.items()}
    for poll in feed.rest_polls(exchange_symbols):
        body = recorded.get((poll.path, tuple(poll.params.items())))
        if body is not None:  # like the replay server, which answers only what was recorded
            outputs += std.standardise(body.encode(), ATOM, poll.key, normalised_of[split_raw_key(poll.key)[1]])
    return outputs


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


def test_depth_snapshots_are_polled_under_the_depth_key(recordings: Path) -> None:
    polls = feed("NKN.USDT").rest_polls(["NKNUSDT"])
    assert [(p.path, p.params, p.key) for p in polls] == [
        ("/api/v3/depth", {"symbol": "NKNUSDT", "limit": "1000"}, "binance_NKNUSDT_depth")
    ]
    assert "https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000" in http_bodies(recordings / RECORDING)
    assert feed("NKN.USDT", channels=("trade",)).rest_polls(["NKNUSDT"]) == []


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
        "size": Decimal("6195.00000000"), "is_snapshot": False, "sequence": 499869752,
        "event_timestamp": 1633998512068, "atom_timestamp": ATOM,
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
        "event_timestamp": 1633998523963, "atom_timestamp": ATOM,
    })


def test_trade_from_the_documentation(std: BinanceStandardiser) -> None:
    """The ``@trade`` payload of Binance's web-socket-streams.md: ``m`` true, so the seller took."""
    raw = orjson.dumps({"stream": "bnbbtc@trade", "data": {
        "e": "trade", "E": 1672515782136, "s": "BNBBTC", "t": 12345, "p": "0.001", "q": "100", "b": 88, "a": 50,
        "T": 1672515782136, "m": True, "M": True}})
    [out] = standardise(std, raw, "BNB.BTC")
    assert out.record == {
        "exchange": "binance", "symbol": "BNB.BTC", "trade_id": "12345", "price": Decimal("0.001"),
        "size": Decimal(100), "taker_side": "sell", "sequence": 12345, "event_timestamp": 1672515782136,
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
        "size": Decimal("672.00000000"), "is_snapshot": True, "sequence": 499869752, "event_timestamp": None,
        "atom_timestamp": ATOM,
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
        (b'{"stream":"nknusdt@depth","data":{"e":"depthUpdate","E":1,"s":"NKNUSDT","u":2,"b":[["1"]],"a":[]}}', None,
         "depthUpdate message has a mistyped field: list index out of range"),
        (b'{"lastUpdateId":1,"bids":[["1","1"]],"asks":[]}', "binance_all_depth",
         "a REST depth snapshot names no symbol"),
    ],
)
def test_bad_input_raises_a_precise_error(std: BinanceStandardiser, raw: bytes, key: str | None, error: str) -> None:
    with pytest.raises(StandardiseError, match=error):
        std.standardise(raw, ATOM, key or feed("NKN.USDT").frame_key(raw), "NKN.USDT")


def test_recording_is_fully_understood(recordings: Path) -> None:
    """Every frame and REST snapshot becomes records (no skips, no errors); counts match the raw count."""
    std = BinanceStandardiser()
    outputs = replay(Binance, std, recordings / RECORDING, SYMBOLS)
    produced = Counter(o.topic for o in outputs)
    assert produced == count_frames(recordings / RECORDING)
    assert produced == {"lob": 4648 + 422, "ticker": 84, "trades": 2, "candle": 2}
    assert dict(std.skipped) == {}
    assert {o.record["symbol"] for o in outputs} == set(SYMBOLS)
    assert_fits_schemas(outputs)
