"""KuCoin spot on frames quoted from KuCoin's current API documentation (there is no KuCoin recording).

``tests/fixtures/kucoin/ws.jsonl`` holds the documentation's examples exactly
(without their ``//`` comments, compacted to one line as KuCoin sends them):
the ``welcome``, ``ack`` and ``pong`` of the websocket introduction, and the
push examples of Orderbook - Increment (``/market/level2``), Trade
(``/market/match``), Ticker (``/market/ticker``; the example spells its time
``Time`` where the schema says ``time``: both are read) and Klines
(``/market/candles``, a 1-hour candle).  ``http.jsonl`` holds the examples of
Get All Symbols (``/api/v2/symbols``), Get Public Token
(``POST /api/v1/bullet-public``; recorded under its URL although the replay
server answers GETs only: with ``--ws-url`` given, the connector skips the
handshake and connects there).  The book's REST snapshot and sequence checks
are tested in ``test_kucoin_books.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from l3_atom.avro.codecs import AvroEncoder, decode_wire, parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.off_chain.kucoin import TOKEN_PATH, Bullet, Kucoin, split_topic
from l3_atom.stream_processing.standardiser import Output, StandardiseError
from l3_atom.stream_processing.standardisers.kucoin import KucoinStandardiser
from l3_atom.topics import split_raw_key
from tests.exchanges.doc_fixtures import http_bodies, ws_entries, ws_frames
from tests.sinks import NullSink

SOURCE = "kucoin"
FIXTURE = Path(__file__).parent.parent / "fixtures" / "kucoin"
SYMBOLS = ["BTC.USDT"]
ATOM = 1_753_000_000_123_456
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)
SYMBOLS_URL = "https://api.kucoin.com/api/v2/symbols"
TOKEN_URL = "https://api.kucoin.com/api/v1/bullet-public"

TOPIC_OF_CHANNEL = {"match": "trades", "ticker": "ticker", "candles": "candle"}


def expected_counts(folder: Path) -> dict[str, int]:
    """Records per topic, counted from the frames themselves: one per level2 change, match, ticker, candle."""
    counts: Counter[str] = Counter()
    for raw in ws_frames(folder):
        message = orjson.loads(raw)
        if message["type"] != "message":
            continue
        channel = message["topic"].split(":")[0].split("/")[-1]
        if channel == "level2":
            counts["lob"] += sum(len(levels) for levels in message["data"]["changes"].values())
        else:
            counts[TOPIC_OF_CHANNEL[channel]] += 1
    return dict(counts)


def feed(*symbols: str, **kwargs: object) -> Kucoin:
    return Kucoin(symbols, NullSink(), SETTINGS, **kwargs)


def assert_fits_schema(out: Output) -> None:
    """Exactly the schema's fields, and an Avro round trip gives the record back unchanged."""
    schema = parsed_schema(out.topic)
    assert set(out.record) == {field["name"] for field in schema["fields"]}
    assert decode_wire(AvroEncoder(out.topic, 1).encode(out.record), {1: schema}) == out.record


# -- the documented traffic ----------------------------------------------------------------------


def test_fixture_is_fully_understood() -> None:
    connector = feed(*SYMBOLS)
    connector.normalised_of = dict(zip(connector.resolve(Kucoin.parse_symbols(http_bodies(FIXTURE)[SYMBOLS_URL])),
                                       SYMBOLS, strict=True))
    with_headers, without_headers = KucoinStandardiser(), KucoinStandardiser()
    produced: Counter[str] = Counter()
    frames = 0
    for raw in ws_frames(FIXTURE):
        frames += 1
        key = connector.frame_key(raw)
        outputs = with_headers.standardise(raw, ATOM, key, connector.normalised_of.get(split_raw_key(key)[1]))
        assert outputs == without_headers.standardise(raw, ATOM)
        for out in outputs:
            assert_fits_schema(out)
            produced[out.topic] += 1
    assert frames == 7
    assert dict(produced) == expected_counts(FIXTURE)
    assert produced == {"lob": 1, "trades": 1, "ticker": 1, "candle": 1}
    assert dict(with_headers.skipped) == {"welcome": 1, "subscription ack": 1, "pong": 1}


def test_records_match_the_documented_frames() -> None:
    std = KucoinStandardiser()
    by_topic = {out.topic: out for raw in ws_frames(FIXTURE) for out in std.standardise(raw, ATOM)}
    assert by_topic["lob"] == Output("lob", "kucoin_BTC.USDT", {
        "exchange": "kucoin", "symbol": "BTC.USDT", "side": "ask", "price": Decimal("67993.3"),
        "size": Decimal("1.21427407"), "is_snapshot": False, "sequence": 14701689783,
        "prev_sequence": 14701689782, "checksum": None, "event_timestamp": 1729816425625, "atom_timestamp": ATOM,
    })
    assert by_topic["trades"].record == {
        "exchange": "kucoin", "symbol": "BTC.USDT", "trade_id": "11067996711960577", "price": Decimal(67523),
        "size": Decimal("0.003"), "taker_side": "buy", "sequence": 11067996711960577,
        "origin": None, "event_timestamp": 1729843222921, "atom_timestamp": ATOM,
    }
    assert by_topic["ticker"].record == {
        "exchange": "kucoin", "symbol": "BTC.USDT", "bid_price": Decimal("0.049"), "bid_size": Decimal("0.036"),
        "ask_price": Decimal("0.08"), "ask_size": Decimal("0.18"), "last_price": Decimal("0.08"),
        "last_size": Decimal("0.011"), "sequence": 1545896668986, "event_timestamp": 1704873323416,
        "atom_timestamp": ATOM,
    }
    assert by_topic["candle"].record == {
        "exchange": "kucoin", "symbol": "BTC.USDT", "origin": "exchange", "interval": "1h",
        "start": 1729839600000, "end": 1729843200000, "open": Decimal("67644.9"), "high": Decimal("67724.8"),
        "low": Decimal("67243.8"), "close": Decimal("67437.6"), "volume": Decimal("44.88321441"),
        "quote_volume": Decimal("3027558.991928447"), "trade_count": None, "vwap": None,
        "first_trade_timestamp": None, "last_trade_timestamp": None, "closed": False,
        "event_timestamp": 1729842192785, "atom_timestamp": ATOM,
    }


# -- symbols and the token handshake --------------------------------------------------------------


def test_symbol_map_from_the_symbols_body() -> None:
    assert Kucoin.parse_symbols(http_bodies(FIXTURE)[SYMBOLS_URL]) == {"BTC.USDT": "BTC-USDT"}


def test_parse_symbols_uses_currencies_and_keeps_the_symbol_code() -> None:
    """A renamed asset keeps its old symbol code; names that do not fit the grammar are left out."""
    body = orjson.dumps({"code": "200000", "data": [
        {"symbol": "BSV-USDT", "baseCurrency": "BCHSV", "quoteCurrency": "USDT"},
        {"symbol": "x-y", "baseCurrency": "x", "quoteCurrency": "y"},
    ]}).decode()
    assert Kucoin.parse_symbols(body) == {"BCHSV.USDT": "BSV-USDT"}
    with pytest.raises(ValueError, match="kucoin symbols answered code '400100'"):
        Kucoin.parse_symbols('{"code":"400100","msg":"bad"}')


def test_token_answer_of_the_documentation() -> None:
    bullet = Kucoin.parse_token(http_bodies(FIXTURE)[TOKEN_URL])
    assert bullet.endpoint == "wss://ws-api-spot.kucoin.com/"
    assert bullet.token.startswith("2neAiuYvAU61ZDXANAGAsiL4")
    assert bullet.ping_interval_s == 18.0


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ('{"code":"429000","msg":"Too Many Requests"}', "answered code '429000'"),
        ('{"code":"200000","data":{"token":"t","instanceServers":[]}}', "unreadable"),
        ("<html>", "unreadable"),
    ],
)
def test_a_bad_token_answer_is_a_connection_error(body: str, error: str) -> None:
    """A ConnectionError makes the connection retry with backoff instead of stopping the connector."""
    with pytest.raises(ConnectionError, match=error):
        Kucoin.parse_token(body)


def test_every_connect_gets_a_fresh_token(monkeypatch: pytest.MonkeyPatch) -> None:
    connector = feed(*SYMBOLS)
    tokens = iter(["first", "second"])

    async def fetch_token() -> Bullet:
        return Bullet("wss://ws-api-spot.kucoin.com/", next(tokens), 20.0)

    monkeypatch.setattr(connector, "fetch_token", fetch_token)
    urls = [asyncio.run(connector.connection_url(["BTC-USDT"])) for _ in range(2)]
    queries = [parse_qs(urlsplit(url).query) for url in urls]
    assert [url.split("?")[0] for url in urls] == ["wss://ws-api-spot.kucoin.com/"] * 2
    assert [q["token"] for q in queries] == [["first"], ["second"]]
    assert queries[0]["connectId"] != queries[1]["connectId"]


def test_fetch_token_posts_to_the_rest_endpoint() -> None:
    """Against a local server answering the documented token body to a POST only."""
    from aiohttp import web

    body = http_bodies(FIXTURE)[TOKEN_URL]

    async def token(_request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json")

    async def scenario() -> Bullet:
        app = web.Application()
        app.router.add_post(TOKEN_PATH, token)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            connector = feed(*SYMBOLS, rest_url=f"http://127.0.0.1:{port}")
            bullet = await connector.fetch_token()
            with pytest.raises(ConnectionError, match="answered 404"):
                await feed(*SYMBOLS, rest_url=f"http://127.0.0.1:{port}/nowhere").fetch_token()
            return bullet
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario()) == Kucoin.parse_token(body)


def test_an_explicit_ws_url_skips_the_handshake() -> None:
    """How the replay server and the simulator are used: ``--ws-url`` is connected to as it is."""
    connector = feed(*SYMBOLS, ws_url="ws://127.0.0.1:9999/")
    assert asyncio.run(connector.connection_url(["BTC-USDT"])) == "ws://127.0.0.1:9999/"


# -- subscriptions, keys, keepalive ----------------------------------------------------------------


def test_subscribe_messages_are_the_fixture_sends() -> None:
    connector = feed(*SYMBOLS)
    [group] = connector.connection_groups(["BTC-USDT"])
    sends = [e["data"] for e in ws_entries(FIXTURE) if e["t"] == "send"]
    assert connector.subscribe_messages(group) == sends
    assert [orjson.loads(m)["topic"] for m in sends] == [
        "/market/level2:BTC-USDT", "/market/match:BTC-USDT", "/market/ticker:BTC-USDT",
        "/market/candles:BTC-USDT_1min",
    ]
    assert len({orjson.loads(m)["id"] for m in sends}) == 4


def test_limits_100_topics_per_message_and_400_per_connection() -> None:
    symbols = [f"C{i}-USDT" for i in range(250)]
    connector = feed()
    groups = connector.connection_groups(symbols)
    assert [len(g) for g in groups] == [100, 100, 50]
    topics = [orjson.loads(m)["topic"] for m in connector.subscribe_messages(groups[0])]
    assert [t.count(",") + 1 for t in topics] == [100] * 4
    assert len(feed(channels=["match"]).connection_groups(symbols)) == 1


def test_the_connector_pings_every_ping_interval() -> None:
    connector = feed()
    first, second = orjson.loads(connector.ping()), orjson.loads(connector.ping())
    assert first["type"] == second["type"] == "ping" and first["id"] != second["id"]
    assert connector.ping_interval_s == 18.0


@pytest.mark.parametrize(
    ("frame", "key"),
    [
        (b'{"topic":"/market/level2:BTC-USDT","type":"message","data":{}}', "kucoin_BTC-USDT_level2"),
        (b'{"topic":"/market/candles:BTC-USDT_1min","type":"message"}', "kucoin_BTC-USDT_candles"),
        (b'{"type":"message","topic":"/market/ticker:ETH-BTC","subject":"trade.ticker"}', "kucoin_ETH-BTC_ticker"),
        (b'{"id":"hQvf8jkno","type":"welcome"}', "kucoin_all_control"),
        (b'{"id":"1","type":"ack"}', "kucoin_all_control"),
        (b'{"id":"1","type":"error","code":404,"data":"topic not found"}', "kucoin_all_control"),
        (b'{"topic":"/market/bad_name:BTC-USDT","type":"message"}', "kucoin_BTC-USDT_unparsed"),
        (b'{"topic":5,"type":"message"}', "kucoin_all_control"),
        (b'{"type":', "kucoin_all_unparsed"),
        (b"[1]", "kucoin_all_unparsed"),
        (b"{}", "kucoin_all_unparsed"),
    ],
)
def test_frame_key(frame: bytes, key: str) -> None:
    assert feed(*SYMBOLS).frame_key(frame) == key


@pytest.mark.parametrize(
    ("topic", "parts"),
    [
        ("/market/level2:BTC-USDT", ("level2", "BTC-USDT", "")),
        ("/market/candles:BTC-USDT_1hour", ("candles", "BTC-USDT", "1hour")),
        ("/market/match:BTC-USDT,ETH-USDT", ("match", "BTC-USDT,ETH-USDT", "")),
    ],
)
def test_split_topic(topic: str, parts: tuple[str, str, str]) -> None:
    assert split_topic(topic) == parts


# -- messages beyond the fixture and bad input -------------------------------------------------------


def message(topic: str, data: object) -> bytes:
    return orjson.dumps({"topic": topic, "type": "message", "subject": "s", "data": data})


LEVEL2 = {"changes": {"asks": [["18906", "0.00331", "14103845"], ["18907.3", "0", "14103844"]],
                      "bids": [["18891.9", "0.15688", "14103847"]]},
          "sequenceEnd": 14103847, "sequenceStart": 14103844, "symbol": "BTC-USDT", "time": 1663747970273}
MATCH = {"price": "1", "sequence": "5", "side": "sell", "size": "2", "symbol": "BTC-USDT", "time": "1729843222921000000",
         "tradeId": "5", "type": "match", "makerOrderId": "m", "takerOrderId": "t"}
TICKER = {"sequence": "1", "price": "1", "size": "1", "bestAsk": "2", "bestAskSize": "1", "bestBid": "1",
          "bestBidSize": "1", "time": 1704873323416}
CANDLE = {"symbol": "BTC-USDT", "candles": ["1729839600", "1", "2", "3", "0.5", "10", "20"], "time": 1729842192785164840}


def test_level2_records_carry_the_message_numbers() -> None:
    """sequence = sequenceEnd and prev_sequence = sequenceStart - 1 on every record of the message."""
    outputs = KucoinStandardiser().standardise(message("/market/level2:BTC-USDT", LEVEL2), ATOM)
    assert [(o.record["side"], o.record["size"], o.record["sequence"], o.record["prev_sequence"]) for o in outputs] == [
        ("bid", Decimal("0.15688"), 14103847, 14103843),
        ("ask", Decimal("0.00331"), 14103847, 14103843),
        ("ask", Decimal(0), 14103847, 14103843),
    ]


def test_level2_without_changes_is_a_named_skip() -> None:
    std = KucoinStandardiser()
    empty = {**LEVEL2, "changes": {"asks": [], "bids": []}}
    assert std.standardise(message("/market/level2:BTC-USDT", empty), ATOM) == []
    assert dict(std.skipped) == {"level2: no changes": 1}


def test_ticker_reads_the_schema_spelling_of_time() -> None:
    [out] = KucoinStandardiser().standardise(message("/market/ticker:BTC-USDT", TICKER), ATOM)
    assert out.record["event_timestamp"] == 1704873323416


def test_candle_intervals() -> None:
    [out] = KucoinStandardiser().standardise(message("/market/candles:ETH-BTC_1min", CANDLE), ATOM)
    assert (out.record["symbol"], out.record["interval"], out.record["end"] - out.record["start"]) == (
        "ETH.BTC", "1m", 60_000)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"type":', "malformed JSON"),
        (b"[1]", "message has no type"),
        (b'{"type":"message","topic":5}', "message has no type"),
        (b'{"id":"1","type":"notice"}', "unknown message type 'notice'"),
        (message("/spotMarket/level2Depth5:BTC-USDT", {}), "unknown message type 'message:level2Depth5'"),
        (b'{"id":"hQvf8jkno","type":"error","code":401,"data":"token is invalid"}',
         "kucoin error frame, code 401: 'token is invalid'"),
        (message("/market/level2:BTC-USDT", [1]), "data must be an object"),
        (message("/market/level2:BTC-USDT", {"time": 1}), "level2 message lacks field 'changes'"),
        (message("/market/level2:BTC-USDT", {**LEVEL2, "changes": {"asks": [["1", "2", 3]], "bids": []}}),
         "expected a string of digits, got 3"),
        (message("/market/level2:BTC-USDT", {**LEVEL2, "changes": {"asks": [["1", 2.5, "3"]], "bids": []}}),
         "expected a decimal string, got float"),
        (message("/market/match:BTC-USDT", {**MATCH, "side": "up"}), "side must be 'buy' or 'sell'"),
        (message("/market/match:BTC-USDT", {**MATCH, "tradeId": 5}), "tradeId must be a string"),
        (message("/market/match:BTC-USDT", {**MATCH, "time": "soon"}), "expected a string of digits, got 'soon'"),
        (message("/market/match:BTCUSDT", MATCH), "symbol 'BTCUSDT' is not BASE-QUOTE"),
        (message("/market/ticker:BTC-USDT", {k: v for k, v in TICKER.items() if k != "time"}),
         "ticker message lacks field 'time'"),
        (message("/market/ticker:BTC-USDT", {**TICKER, "sequence": 1}), "expected a string of digits, got 1"),
        (message("/market/candles:BTC-USDT_1month", CANDLE), "unknown candle type '1month'"),
        (message("/market/candles:BTC-USDT_1min", {**CANDLE, "candles": CANDLE["candles"][:6]}),
         "a candle has 7 fields, got 6"),
        (message("/market/candles:BTC-USDT_1min", {**CANDLE, "time": 1.5}), "expected a string of digits"),
    ],
)
def test_bad_input_raises_a_precise_error(raw: bytes, error: str) -> None:
    with pytest.raises(StandardiseError, match=error.replace("(", r"\(").replace("[", r"\[")):
        KucoinStandardiser().standardise(raw, ATOM)
