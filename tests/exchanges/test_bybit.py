"""Bybit v5 on frames from Bybit's current API documentation (there is no Bybit recording).

``tests/fixtures/bybit/ws.jsonl`` has a spot and a linear connection, each
subscribing as the connector does.  Quoted from the docs, compacted to one line:
the subscription acks (Public Spot, Linear) and the public-channel pong
(docs/v5/ws/connect); the ``orderbook.50`` snapshot (its ``...`` elisions
removed) and delta; the ``publicTrade`` push; the Linear (LinearPerpetual)
``tickers`` snapshot.  Following the docs where they print no example: the
spot book snapshot puts ``ts`` before ``type`` (the orderbook page's reminder);
the spot trade lacks ``L`` (a futures-only field); the ``orderbook.1`` frame is
the snapshot's best levels in the documented format; the two ``tickers`` deltas
hold only changed fields (the ticker page's note); the kline push is the
documented one on the 1-minute interval the connector subscribes, its window
moved around the push's timestamp.  ``http.jsonl`` holds the documented Spot
and Linear instruments-info responses.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from pathlib import Path

import fastavro
import orjson
import pytest

from l3_atom.avro.codecs import parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.off_chain.bybit import ARGS_CHARS_PER_CONNECTION, Bybit
from l3_atom.stream_processing.standardiser import Output, StandardiseError
from l3_atom.stream_processing.standardisers.bybit import BybitStandardiser, candle_interval
from tests.exchanges.book_order import order_events
from tests.exchanges.doc_fixtures import http_bodies, ws_entries, ws_frames
from tests.sinks import ListSink

SOURCE = "bybit"
FIXTURE = Path(__file__).parent.parent / "fixtures" / "bybit"
SYMBOLS = ["BTC.USDT", "BTC.USDT-PERP"]
ATOM = 1_760_325_052_999_000
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)
SPOT_INFO = "https://api.bybit.com/v5/market/instruments-info?category=spot"
LINEAR_INFO = "https://api.bybit.com/v5/market/instruments-info?category=linear&limit=1000"
# docs/v5/websocket/public/ticker: the LinearFutures and Spot examples.
FUTURES_TICKER = {
    "topic": "tickers.BTC-26DEC25", "type": "snapshot",
    "data": {"symbol": "BTC-26DEC25", "tickDirection": "ZeroMinusTick", "price24hPcnt": "0", "lastPrice": "109401.50",
             "prevPrice24h": "109401.50", "highPrice24h": "109401.50", "lowPrice24h": "109401.50",
             "prevPrice1h": "109401.50", "markPrice": "121144.63", "indexPrice": "114132.51", "openInterest": "6.622",
             "openInterestValue": "802219.74", "turnover24h": "0.0000", "volume24h": "0.0000",
             "deliveryTime": "2025-12-26T08:00:00Z", "basisRate": "0.06129209", "deliveryFeeRate": "0",
             "predictedDeliveryPrice": "0.00", "basis": "-4730.84", "basisRateYear": "0.30655351",
             "nextFundingTime": "", "fundingRate": "", "bid1Price": "111254.50", "bid1Size": "0.176",
             "ask1Price": "131001.00", "ask1Size": "0.580"},
    "cs": 31337927919, "ts": 1760409119857,
}
SPOT_TICKER = {
    "topic": "tickers.BTCUSDT", "ts": 1673853746003, "type": "snapshot", "cs": 2588407389,
    "data": {"symbol": "BTCUSDT", "lastPrice": "21109.77", "highPrice24h": "21426.99", "lowPrice24h": "20575",
             "prevPrice24h": "20704.93", "volume24h": "6780.866843", "turnover24h": "141946527.22907118",
             "price24hPcnt": "0.0196", "usdIndexPrice": "21120.2400136"},
}
# nextFundingTime must be a digit string, as Bybit sends it.
NUMERIC_FUNDING_TIME = orjson.dumps({"topic": "tickers.BTCUSDT", "type": "snapshot", "ts": 1,
                                     "data": {"symbol": "BTCUSDT", "fundingRate": "0.1", "nextFundingTime": 1}})
TICKER_FIELDS = ("bid1Price", "bid1Size", "ask1Price", "ask1Size", "lastPrice")
FUNDING_FIELDS = ("fundingRate", "nextFundingTime", "markPrice", "indexPrice")


def expected_counts(folder: Path) -> dict[str, int]:
    """Records per topic, counted from the frames: a record per level, trade and candle; per tickers message, one
    per kind of change (funding only once a rate is known and not empty)."""
    counts: Counter[str] = Counter()
    funding_rate: dict[tuple[str, str], str] = {}
    for entry in ws_entries(folder):
        if entry["t"] != "recv":
            continue
        message = orjson.loads(entry["data"])
        topic = message.get("topic", "")
        if topic.startswith("orderbook.1."):
            counts["ticker"] += 1
        elif topic.startswith("orderbook."):
            counts["lob"] += len(message["data"]["b"]) + len(message["data"]["a"])
        elif topic.startswith("publicTrade."):
            counts["trades"] += len(message["data"])
        elif topic.startswith("kline."):
            counts["candle"] += len(message["data"])
        elif topic.startswith("tickers."):
            data = message["data"]
            key = (entry["conn"], data["symbol"])
            funding_rate[key] = data.get("fundingRate", funding_rate.get(key, ""))
            counts["ticker"] += any(f in data for f in TICKER_FIELDS)
            counts["funding_rate"] += bool(funding_rate[key]) and any(f in data for f in FUNDING_FIELDS)
            counts["open_interest"] += "openInterest" in data
    return dict(counts)


def book_messages(folder: Path) -> list[tuple[str, int, bool]]:
    """(connection and symbol, ``u``, is snapshot) of every book frame; spot and linear share symbol names."""
    return [
        (f"{entry['conn']}/{message['data']['s']}", message["data"]["u"], message["type"] == "snapshot")
        for entry in ws_entries(folder) if entry["t"] == "recv"
        for message in [orjson.loads(entry["data"])]
        if message.get("topic", "").startswith("orderbook.") and not message["topic"].startswith("orderbook.1.")
    ]


class FakeConnection:
    def __init__(self, connection_id: str):
        self.connection_id = connection_id


def feed(*symbols: str, channels: tuple[str, ...] | None = None) -> Bybit:
    return Bybit(symbols, ListSink(strict=False), SETTINGS, channels=channels)


def symbol_map() -> dict[str, str]:
    bodies = http_bodies(FIXTURE)
    return {**Bybit.parse_symbols(bodies[SPOT_INFO]), **Bybit.parse_symbols(bodies[LINEAR_INFO])}


def connected(symbols: list[str]) -> Bybit:
    """A connector with its symbol map, groups and (fake) connections as ``run`` sets them up, one per group."""
    bybit = feed(*symbols)
    exchange_symbols = bybit.resolve(symbol_map())
    bybit.normalised_of = dict(zip(exchange_symbols, symbols, strict=True))
    groups = bybit.connection_groups(exchange_symbols)
    bybit.connections = [FakeConnection(f"bybit.{i}.1") for i in range(len(groups))]
    return bybit


def replay(std: BybitStandardiser) -> list[Output]:
    """The fixture through the connector's keys and header (k-th recorded connection -> k-th group), then the
    standardiser."""
    bybit = connected(SYMBOLS)
    connection_of: dict[str, str] = {}
    for entry in ws_entries(FIXTURE):
        connection_id = connection_of.setdefault(entry["conn"], f"bybit.{len(connection_of)}.1")
        if entry["t"] == "recv":
            bybit._on_frame(entry["data"].encode(), ATOM, connection_id)
    return [out for key, frame, symbol in bybit.sink.frames for out in std.standardise(frame, ATOM, key, symbol)]


def assert_fits_schemas(outputs: list[Output]) -> None:
    for out in outputs:
        schema = parsed_schema(out.topic)
        assert set(out.record) == {f["name"] for f in schema["fields"]}, out.topic
        assert fastavro.validate(out.record, schema, raise_errors=True)


# -- connector ---------------------------------------------------------------------------------------


def test_symbol_map_from_the_documented_instruments() -> None:
    """Spot and linear both list BTCUSDT: the exchange symbols are category-qualified."""
    assert symbol_map() == {"BTC.USDT": "spot/BTCUSDT", "BTC.USDT-PERP": "linear/BTCUSDT"}


def test_parse_symbols_of_futures_and_usdc_perpetuals() -> None:
    body = orjson.dumps({"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "nextPageCursor": "", "list": [
        {"symbol": "BTCPERP", "contractType": "LinearPerpetual", "baseCoin": "BTC", "quoteCoin": "USDC",
         "deliveryTime": "0"},
        {"symbol": "BTC-26DEC25", "contractType": "LinearFutures", "baseCoin": "BTC", "quoteCoin": "USDC",
         "deliveryTime": "1766736000000"},
        {"symbol": "BTCUSD", "contractType": "InversePerpetual", "baseCoin": "BTC", "quoteCoin": "USD",
         "deliveryTime": "0"},
    ]}}).decode()
    assert Bybit.parse_symbols(body) == {"BTC.USDC-PERP": "linear/BTCPERP", "BTC.USDC-20251226": "linear/BTC-26DEC25"}


def test_parse_symbols_refuses_an_error_answer() -> None:
    with pytest.raises(ValueError, match="retCode 10001: 'params error'"):
        Bybit.parse_symbols('{"retCode":10001,"retMsg":"params error","result":{}}')


def test_load_symbol_map_follows_the_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    pages = {
        ("spot", None): {"category": "spot", "list": [{"symbol": "BTCUSDT", "baseCoin": "BTC", "quoteCoin": "USDT"}]},
        ("linear", None): {"category": "linear", "nextPageCursor": "next", "list": [
            {"symbol": "BTCUSDT", "contractType": "LinearPerpetual", "baseCoin": "BTC", "quoteCoin": "USDT"}]},
        ("linear", "next"): {"category": "linear", "nextPageCursor": "", "list": [
            {"symbol": "ETHUSDT", "contractType": "LinearPerpetual", "baseCoin": "ETH", "quoteCoin": "USDT"}]},
    }
    requests = []

    class Client:
        async def get_text(self, path: str, params: dict[str, str]) -> str:
            requests.append((path, params))
            return orjson.dumps({"retCode": 0, "result": pages[params["category"], params.get("cursor")]}).decode()

        async def close(self) -> None: ...

    bybit = feed()
    monkeypatch.setattr(bybit, "rest_client", Client)
    assert asyncio.run(bybit.load_symbol_map()) == {
        "BTC.USDT": "spot/BTCUSDT", "BTC.USDT-PERP": "linear/BTCUSDT", "ETH.USDT-PERP": "linear/ETHUSDT",
    }
    assert requests == [
        ("/v5/market/instruments-info", {"category": "spot"}),
        ("/v5/market/instruments-info", {"category": "linear", "limit": "1000"}),
        ("/v5/market/instruments-info", {"category": "linear", "limit": "1000", "cursor": "next"}),
    ]


def test_spot_and_linear_connections_subscribe_as_recorded_in_the_fixture() -> None:
    bybit = connected(SYMBOLS)
    groups = bybit.connection_groups(["spot/BTCUSDT", "linear/BTCUSDT"])
    assert groups == [["spot/BTCUSDT"], ["linear/BTCUSDT"]]
    urls = [asyncio.run(bybit.connection_url(g)) for g in groups]
    assert urls == [e["url"] for e in ws_entries(FIXTURE) if e["t"] == "open"]
    sent = [e["data"] for e in ws_entries(FIXTURE) if e["t"] == "send" and "subscribe" in e["data"]]
    assert [m for g in groups for m in bybit.subscribe_messages(g)] == sent
    assert bybit.ping() == '{"op":"ping"}'


def test_subscribe_requests_carry_at_most_10_topics() -> None:
    bybit = feed("BTC.USDT")
    messages = [orjson.loads(m) for m in bybit.subscribe_messages(["spot/BTCUSDT", "spot/ETHUSDT", "spot/SOLUSDT"])]
    assert [len(m["args"]) for m in messages] == [10, 2]
    assert messages[1]["args"] == ["publicTrade.SOLUSDT", "kline.1.SOLUSDT"]


def test_connections_keep_their_args_under_21000_characters() -> None:
    names = [f"linear/C{i:04d}USDT" for i in range(400)]
    bybit = feed("BTC.USDT")
    groups = bybit.connection_groups(names)
    assert len(groups) == 2
    assert [s for g in groups for s in g] == names
    for group in groups:
        args = [t for message in bybit.subscribe_messages(group) for t in orjson.loads(message)["args"]]
        assert len(orjson.dumps(args)) <= ARGS_CHARS_PER_CONNECTION


def test_spot_channels_exclude_tickers_and_linear_exclude_level_one() -> None:
    bybit = feed("BTC.USDT", channels=("tickers", "orderbook.1"))
    assert bybit.topics("spot/BTCUSDT") == ["orderbook.1.BTCUSDT"]
    assert bybit.topics("linear/BTCUSDT") == ["tickers.BTCUSDT"]


@pytest.mark.parametrize(
    ("frame", "category", "key"),
    [
        (b'{"topic":"orderbook.50.BTCUSDT","type":"delta","data":{}}', "linear", "bybit_linear/BTCUSDT_orderbook50"),
        (b'{"topic":"orderbook.1.BTCUSDT","ts":1,"data":{}}', "spot", "bybit_spot/BTCUSDT_orderbook1"),
        (b'{"topic":"publicTrade.BTC-26DEC25","data":[]}', "linear", "bybit_linear/BTC-26DEC25_publictrade"),
        (b'{"topic":"kline.1.BTCUSDT","data":[]}', "spot", "bybit_spot/BTCUSDT_kline1"),
        (b'{"topic":"tickers.BTCUSDT","data":{}}', None, "bybit_BTCUSDT_tickers"),
        (b'{"success":true,"ret_msg":"pong","op":"ping"}', "spot", "bybit_all_control"),
        (b'{"topic":', "spot", "bybit_all_unparsed"),
        (b'"pong"', "spot", "bybit_all_unparsed"),
    ],
)
def test_frame_key(frame: bytes, category: str | None, key: str) -> None:
    assert feed("BTC.USDT").frame_key(frame, category) == key


def test_frames_are_keyed_by_their_connection_category() -> None:
    """The same topic on the spot and the linear connection names two instruments, with their header."""
    bybit = connected(SYMBOLS)
    frame = b'{"topic":"publicTrade.BTCUSDT","data":[]}'
    bybit._on_frame(frame, ATOM, "bybit.0.1")
    bybit._on_frame(frame, ATOM, "bybit.1.1")
    assert [(k, s) for k, _, s in bybit.sink.frames] == [
        ("bybit_spot/BTCUSDT_publictrade", "BTC.USDT"), ("bybit_linear/BTCUSDT_publictrade", "BTC.USDT-PERP"),
    ]


# -- standardiser ------------------------------------------------------------------------------------


@pytest.fixture
def std() -> BybitStandardiser:
    return BybitStandardiser()


def standardise(std: BybitStandardiser, message: dict, exchange_symbol: str, symbol: str) -> list[Output]:
    """As the connector keys a frame of ``exchange_symbol``'s connection."""
    raw = orjson.dumps(message)
    return std.standardise(raw, ATOM, feed(symbol).frame_key(raw, exchange_symbol.partition("/")[0]), symbol)


def fixture_frame(topic: str, conn: str, kind: str | None = None) -> dict:
    return next(
        m for e in ws_entries(FIXTURE) if e["t"] == "recv" and e["conn"] == conn
        for m in [orjson.loads(e["data"])] if m.get("topic") == topic and (kind is None or m.get("type") == kind)
    )


def test_orderbook_snapshot_and_delta(std: BybitStandardiser) -> None:
    snapshot = standardise(std, fixture_frame("orderbook.50.BTCUSDT", "ws.2.0", "snapshot"), "linear/BTCUSDT",
                           "BTC.USDT-PERP")
    assert [(o.record["side"], o.record["price"], o.record["size"]) for o in snapshot] == [
        ("bid", Decimal("16493.50"), Decimal("0.006")), ("bid", Decimal("16493.00"), Decimal("0.100")),
        ("ask", Decimal("16611.00"), Decimal("0.029")), ("ask", Decimal("16612.00"), Decimal("0.213")),
    ]
    assert snapshot[0] == Output("lob", "bybit_BTC.USDT-PERP", {
        "exchange": "bybit", "symbol": "BTC.USDT-PERP", "side": "bid", "price": Decimal("16493.50"),
        "size": Decimal("0.006"), "is_snapshot": True, "sequence": 18521288, "prev_sequence": None, "checksum": None,
        "event_timestamp": 1672304484976,
        "atom_timestamp": ATOM,
    })
    delta = standardise(std, fixture_frame("orderbook.50.BTCUSDT", "ws.2.0", "delta"), "linear/BTCUSDT",
                        "BTC.USDT-PERP")
    assert len(delta) == 12
    assert delta[4].record == {
        "exchange": "bybit", "symbol": "BTC.USDT-PERP", "side": "bid", "price": Decimal("30240.00"),
        "size": Decimal(0), "is_snapshot": False, "sequence": 177400507, "prev_sequence": None, "checksum": None,
        "event_timestamp": 1687940967464,
        "atom_timestamp": ATOM,
    }


def test_level_one_book_is_the_spot_ticker(std: BybitStandardiser) -> None:
    [out] = standardise(std, fixture_frame("orderbook.1.BTCUSDT", "ws.1.0"), "spot/BTCUSDT", "BTC.USDT")
    assert out == Output("ticker", "bybit_BTC.USDT", {
        "exchange": "bybit", "symbol": "BTC.USDT", "bid_price": Decimal("16493.50"), "bid_size": Decimal("0.006"),
        "ask_price": Decimal("16611.00"), "ask_size": Decimal("0.029"), "last_price": None, "last_size": None,
        "sequence": 18521288, "event_timestamp": 1672304484976, "atom_timestamp": ATOM,
    })


def test_public_trade_side_is_the_takers(std: BybitStandardiser) -> None:
    [out] = standardise(std, fixture_frame("publicTrade.BTCUSDT", "ws.2.0"), "linear/BTCUSDT", "BTC.USDT-PERP")
    assert out == Output("trades", "bybit_BTC.USDT-PERP", {
        "exchange": "bybit", "symbol": "BTC.USDT-PERP", "trade_id": "20f43950-d8dd-5b31-9112-a178eb6023af",
        "price": Decimal("16578.50"), "size": Decimal("0.001"), "taker_side": "buy", "sequence": 1783284617,
        "origin": None, "event_timestamp": 1672304486865, "atom_timestamp": ATOM,
    })


def test_linear_tickers_snapshot_and_deltas(std: BybitStandardiser) -> None:
    outputs = standardise(std, fixture_frame("tickers.BTCUSDT", "ws.2.0", "snapshot"), "linear/BTCUSDT",
                          "BTC.USDT-PERP")
    assert [o.topic for o in outputs] == ["ticker", "funding_rate", "open_interest"]
    ticker, funding, open_interest = (o.record for o in outputs)
    assert ticker == {
        "exchange": "bybit", "symbol": "BTC.USDT-PERP", "bid_price": Decimal("66666.60"),
        "bid_size": Decimal("23789.165"), "ask_price": Decimal("66666.70"), "ask_size": Decimal("23775.469"),
        "last_price": Decimal("66666.60"), "last_size": None, "sequence": 9532239429,
        "event_timestamp": 1760325052630, "atom_timestamp": ATOM,
    }
    assert funding == {
        "exchange": "bybit", "symbol": "BTC.USDT-PERP", "rate": Decimal("-0.005"), "predicted_rate": None,
        "mark_price": Decimal("66666.60"), "index_price": Decimal("115418.19"),
        "next_funding_timestamp": 1760342400000, "event_timestamp": 1760325052630, "atom_timestamp": ATOM,
    }
    assert open_interest == {
        "exchange": "bybit", "symbol": "BTC.USDT-PERP", "open_interest": Decimal("492373.72"),
        "event_timestamp": 1760325052630, "atom_timestamp": ATOM,
    }
    # The delta changes the book top, mark and index: complete records, the rest carried over from the snapshot.
    ticker, funding = (o.record for o in standardise(
        std, fixture_frame("tickers.BTCUSDT", "ws.2.0", "delta"), "linear/BTCUSDT", "BTC.USDT-PERP"))
    assert (ticker["bid_price"], ticker["ask_size"], ticker["last_price"], ticker["sequence"]) == (
        Decimal("66666.70"), Decimal("8.020"), Decimal("66666.60"), 9532239430)
    assert (funding["rate"], funding["mark_price"], funding["next_funding_timestamp"]) == (
        Decimal("-0.005"), Decimal("66666.70"), 1760342400000)


def test_a_delta_before_any_snapshot_gives_no_funding(std: BybitStandardiser) -> None:
    delta = fixture_frame("tickers.BTCUSDT", "ws.2.0", "delta")
    [ticker] = standardise(std, delta, "linear/BTCUSDT", "BTC.USDT-PERP")
    assert ticker.record["bid_price"] == Decimal("66666.70")
    assert ticker.record["last_price"] is None


def test_dated_future_tickers_have_no_funding(std: BybitStandardiser) -> None:
    outputs = standardise(std, FUTURES_TICKER, "linear/BTC-26DEC25", "BTC.USDC-20251226")
    assert [o.topic for o in outputs] == ["ticker", "open_interest"]
    assert outputs[1].record["open_interest"] == Decimal("6.622")


def test_spot_tickers_give_the_last_price_only(std: BybitStandardiser) -> None:
    [out] = standardise(std, SPOT_TICKER, "spot/BTCUSDT", "BTC.USDT")
    assert out.record == {
        "exchange": "bybit", "symbol": "BTC.USDT", "bid_price": None, "bid_size": None, "ask_price": None,
        "ask_size": None, "last_price": Decimal("21109.77"), "last_size": None, "sequence": 2588407389,
        "event_timestamp": 1673853746003, "atom_timestamp": ATOM,
    }


def test_kline(std: BybitStandardiser) -> None:
    [out] = standardise(std, fixture_frame("kline.1.BTCUSDT", "ws.1.0"), "spot/BTCUSDT", "BTC.USDT")
    assert out == Output("candle", "bybit_BTC.USDT", {
        "exchange": "bybit", "symbol": "BTC.USDT", "origin": "exchange", "interval": "1m", "start": 1672324980000,
        "end": 1672325040000, "open": Decimal("16649.5"), "high": Decimal(16677), "low": Decimal(16608),
        "close": Decimal(16677), "volume": Decimal("2.081"), "quote_volume": Decimal("34666.4005"),
        "trade_count": None, "vwap": None, "first_trade_timestamp": None, "last_trade_timestamp": 1672324988882,
        "closed": False, "event_timestamp": 1672324988882, "atom_timestamp": ATOM,
    })


@pytest.mark.parametrize(("bybit", "normalised"), [("1", "1m"), ("15", "15m"), ("60", "1h"), ("720", "12h"),
                                                   ("D", "1d"), ("W", "1w"), ("M", "1M")])
def test_candle_intervals(bybit: str, normalised: str) -> None:
    assert candle_interval(bybit) == normalised


def test_acks_and_pongs_are_counted_skips(std: BybitStandardiser) -> None:
    for entry in ws_entries(FIXTURE):
        if entry["t"] == "recv" and '"op"' in entry["data"]:
            assert std.standardise(entry["data"].encode(), ATOM) == []
    assert std.standardise(b'{"req_id":"test","op":"pong","args":["1675418560633"],"conn_id":"x"}', ATOM) == []
    assert dict(std.skipped) == {"subscription ack": 2, "pong": 3}


def test_symbols_need_the_connector_header(std: BybitStandardiser) -> None:
    """``BTCUSDT`` is spot and linear: without the qualified key and header there is no name."""
    raw = orjson.dumps(fixture_frame("publicTrade.BTCUSDT", "ws.2.0"))
    with pytest.raises(StandardiseError, match="no normalised symbol known for 'BTCUSDT'"):
        std.standardise(raw, ATOM)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"topic":"publicTrade.BTCUSDT","data":[', "malformed JSON"),
        (b'{"ret_msg":"","conn_id":"x"}', "message has no type"),
        (b'{"success":false,"ret_msg":"Invalid symbol :[orderbook.50.NOPE]","op":"subscribe"}',
         r"bybit refused subscribe: Invalid symbol :\[orderbook.50.NOPE\]"),
        (b'{"topic":"liquidation.BTCUSDT","data":{}}', "unknown message type 'liquidation'"),
        (b'{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","i":"x"}]}',
         "publicTrade message lacks field 'p'"),
        (b'{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"s":"BTCUSDT","S":"Up","v":"1","p":"1","i":"x"}]}',
         r"S \(taker side\) must be Buy or Sell"),
        (b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[[1.5,"1"]],"a":[],"u":2}}',
         "expected a decimal string, got float"),
        (b'{"topic":"orderbook.50.BTCUSDT","type":"partial","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":2}}',
         "orderbook type must be snapshot or delta"),
        (NUMERIC_FUNDING_TIME, "expected milliseconds as a digit string"),
    ],
)
def test_bad_input_raises_a_precise_error(std: BybitStandardiser, raw: bytes, error: str) -> None:
    with pytest.raises(StandardiseError, match=error):
        std.standardise(raw, ATOM, feed("BTC.USDT-PERP").frame_key(raw, "linear"), "BTC.USDT-PERP")


def test_fixture_is_fully_understood() -> None:
    """Every documented frame becomes records or a named skip; counts match the independent count."""
    std = BybitStandardiser()
    outputs = replay(std)
    produced = Counter(o.topic for o in outputs)
    assert produced == expected_counts(FIXTURE)
    assert produced == {"lob": 20, "ticker": 3, "trades": 2, "candle": 2, "funding_rate": 2, "open_interest": 1}
    # Each book starts with its snapshot and its u rise: no update is skipped and no book_resync is asked for.
    assert order_events(book_messages(FIXTURE)) == Counter()
    assert std.book_checks.stats() == {"snapshots": 2}
    assert dict(std.skipped) == {
        "subscription ack": 2, "pong": 2, "tickers update without ticker, funding or open-interest changes": 1,
    }
    assert {o.record["symbol"] for o in outputs} == set(SYMBOLS)
    assert {o.record["symbol"] for o in outputs if o.topic == "funding_rate"} == {"BTC.USDT-PERP"}
    assert sum(1 for _ in ws_frames(FIXTURE)) == 15
    assert_fits_schemas(outputs)
