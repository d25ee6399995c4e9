"""dYdX v4 on frames quoted from its indexer websocket documentation (there is no dYdX recording).

``tests/fixtures/dydx/ws.jsonl`` holds the examples of dYdX's "Indexer Websocket
Documentation" (github.com/dydxprotocol/v4-documentation,
pages/developers/indexer/indexer_websocket.md), compacted to one line each and
with the docs' trailing commas removed: ``connected``, the ``v4_markets``
initial response (BTC-USD, ETH-USD) and update, the ``v4_orderbook`` initial
book and update, the ``v4_trades`` initial history and update (current shape,
with ``id`` and ``type``).  Those docs print no ``v4_candles`` frame, so the
candle frames (initial response and update, BTC-USD/1MIN, August 2025) are the
live ones ccxt documents in python/ccxt/pro/dydx.py.  The docs' examples come
from different sessions: connection ids and message ids do not continue.

``http.jsonl`` answers ``/v4/perpetualMarkets``: the docs say the markets
channel's initial response "returns everything from v4/perpetualMarkets", so
the body is that example's ``contents``.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from l3_atom.avro.codecs import AvroEncoder, decode_wire, parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.off_chain.dydx import Dydx, SymbolGroup
from l3_atom.stream_processing.standardiser import Output, StandardiseError
from l3_atom.stream_processing.standardisers.dydx import DydxStandardiser
from l3_atom.topics import split_raw_key
from tests.exchanges.book_order import order_events
from tests.exchanges.doc_fixtures import http_bodies, ws_entries, ws_frames

SOURCE = "dydx"
FIXTURE = Path(__file__).parent.parent / "fixtures" / "dydx"
SYMBOLS = ["BTC.USD-PERP"]
ATOM = 1_700_000_000_123_456
ATOM_MS = 1_700_000_000_123
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)
MARKETS_URL = "https://indexer.dydx.trade/v4/perpetualMarkets"
TRADE_HISTORY = "trade history replayed on subscribe"
# A price sent as a JSON number: it has lost its exact digits.
FLOAT_PRICE = (
    b'{"type":"channel_data","channel":"v4_orderbook","id":"BTC-USD","message_id":1,"contents":{"bids":[[1.5,"1"]]}}'
)


def updates(message: dict) -> list:
    """The update contents of a data frame: one, or a batch's list."""
    return message["contents"] if message["type"] == "channel_batch_data" else [message["contents"]]


def expected_counts(folder: Path) -> dict[str, int]:
    """Records per topic from the frames themselves: one per book level, live trade, candle, market field."""
    counts: Counter[str] = Counter()
    for raw in ws_frames(folder):
        message = orjson.loads(raw)
        channel, kind = message.get("channel"), message["type"]
        if channel is None:
            continue
        if channel == "v4_orderbook":
            counts["lob"] += sum(len(c.get("bids", [])) + len(c.get("asks", [])) for c in updates(message))
        elif channel == "v4_trades" and kind != "subscribed":
            counts["trades"] += sum(len(c["trades"]) for c in updates(message))
        elif channel == "v4_candles":
            counts["candle"] += len(message["contents"]["candles"]) if kind == "subscribed" else len(updates(message))
        elif channel == "v4_markets":
            if kind == "subscribed":
                parts = [message["contents"]["markets"]]
            else:
                parts = [c.get("trading", {}) for c in updates(message)]
            for markets in parts:
                counts["funding_rate"] += sum("nextFundingRate" in m for m in markets.values())
                counts["open_interest"] += sum("openInterest" in m for m in markets.values())
    return dict(counts)


def book_messages(folder: Path) -> list[tuple[str, int, bool]]:
    """(market, message_id, is snapshot) of every book frame."""
    return [
        (message["id"], message["message_id"], message["type"] == "subscribed")
        for message in map(orjson.loads, ws_frames(folder)) if message.get("channel") == "v4_orderbook"
    ]


def markets_body() -> str:
    return http_bodies(FIXTURE)[MARKETS_URL]


def streaming_feed() -> Dydx:
    """The connector as ``run`` leaves it (a sink is not needed by its pure parts)."""
    connector = Dydx(SYMBOLS, None, SETTINGS)
    connector.normalised_of = dict(zip(connector.resolve(Dydx.parse_symbols(markets_body())), SYMBOLS, strict=True))
    return connector


def standardise_like_the_pipeline(std: DydxStandardiser, connector: Dydx, raw: bytes) -> list[Output]:
    key = connector.frame_key(raw)
    return std.standardise(raw, ATOM, key, connector.normalised_of.get(split_raw_key(key)[1]))


def frame(**fields: object) -> bytes:
    return orjson.dumps(fields)


@pytest.fixture(scope="module")
def outputs() -> tuple[list[Output], DydxStandardiser]:
    connector = streaming_feed()
    std = DydxStandardiser()
    produced = [out for raw in ws_frames(FIXTURE) for out in standardise_like_the_pipeline(std, connector, raw)]
    return produced, std


def records(produced: list[Output], topic: str) -> list[dict]:
    return [out.record for out in produced if out.topic == topic]


# -- the documented traffic ----------------------------------------------------------------------


def test_every_documented_frame_becomes_records_or_a_named_skip(outputs) -> None:
    produced, std = outputs
    assert dict(Counter(out.topic for out in produced)) == expected_counts(FIXTURE)
    assert expected_counts(FIXTURE) == {"lob": 18, "trades": 4, "candle": 2, "funding_rate": 4, "open_interest": 2}
    assert dict(std.skipped) == {"connection ack": 1, TRADE_HISTORY: 1}
    # The book starts with its snapshot (message_id 2) and the update comes later (484): nothing is skipped and
    # no book_resync is asked for.
    assert order_events(book_messages(FIXTURE)) == Counter()
    assert std.book_checks.stats() == {"snapshots": 1}
    for out in produced:
        schema = parsed_schema(out.topic)
        assert set(out.record) == {field["name"] for field in schema["fields"]}
        assert decode_wire(AvroEncoder(out.topic, 1).encode(out.record), {1: schema}) == out.record


def test_the_standardiser_needs_no_symbol_header() -> None:
    with_headers, without = DydxStandardiser(), DydxStandardiser()
    connector = streaming_feed()
    for raw in ws_frames(FIXTURE):
        assert standardise_like_the_pipeline(with_headers, connector, raw) == without.standardise(raw, ATOM)


def test_book_snapshot_and_update(outputs) -> None:
    produced, _ = outputs
    book = records(produced, "lob")
    # Initial book, first bid {"price": "28194", "size": "4.764826096"}; dYdX books carry no time.
    assert book[0] == {
        "exchange": "dydx", "symbol": "BTC.USD-PERP", "side": "bid", "price": Decimal(28194),
        "size": Decimal("4.764826096"), "is_snapshot": True, "sequence": 2, "prev_sequence": None, "checksum": None,
        "event_timestamp": None,
        "atom_timestamp": ATOM,
    }
    assert [(r["side"], r["price"]) for r in book[12:17]] == [("ask", Decimal(p)) for p in range(28195, 28200)]
    # Update ["27773", "1.986168516"], message_id 484.
    assert (book[-1]["price"], book[-1]["size"], book[-1]["is_snapshot"], book[-1]["sequence"]) == (
        Decimal(27773), Decimal("1.986168516"), False, 484,
    )


def test_trades(outputs) -> None:
    produced, _ = outputs
    trades = records(produced, "trades")
    assert trades[0] == {
        "exchange": "dydx", "symbol": "BTC.USD-PERP", "trade_id": "8ee6d90d-272d-5edd-bf0f-2e4d6ae3d3b7",
        "price": Decimal(27839), "size": Decimal("0.000100431"), "taker_side": "buy", "sequence": 4,
        "origin": None, "event_timestamp": 1_680_568_159_353, "atom_timestamp": ATOM,
    }
    assert [t["taker_side"] for t in trades] == ["buy", "buy", "sell", "sell"]


def test_candles(outputs) -> None:
    produced, _ = outputs
    initial, update = records(produced, "candle")
    assert initial == {
        "exchange": "dydx", "symbol": "BTC.USD-PERP", "origin": "exchange", "interval": "1m",
        "start": 1_754_365_200_000, "end": 1_754_365_260_000, "open": Decimal(114256), "high": Decimal(114256),
        "low": Decimal(114249), "close": Decimal(114249), "volume": Decimal("0.4726"),
        "quote_volume": Decimal("53996.1818"), "trade_count": 7, "vwap": None, "first_trade_timestamp": None,
        "last_trade_timestamp": None, "closed": False, "event_timestamp": 1_754_365_200_000,
        "atom_timestamp": ATOM,
    }
    assert (update["close"], update["high"], update["trade_count"], update["closed"]) == (
        Decimal(114261), Decimal(114262), 9, False,
    )


def test_funding_and_open_interest_from_the_markets_channel(outputs) -> None:
    produced, _ = outputs
    funding = records(produced, "funding_rate")
    assert funding[0] == {
        "exchange": "dydx", "symbol": "BTC.USD-PERP", "rate": Decimal(0), "predicted_rate": None,
        "mark_price": Decimal("27752.92"), "index_price": Decimal("27752.92"), "next_funding_timestamp": None,
        "event_timestamp": ATOM_MS, "atom_timestamp": ATOM,
    }
    # The update names BTC-USD and ETH-USD with a nextFundingRate each and no oracle price.
    assert [(f["symbol"], f["rate"], f["mark_price"]) for f in funding[2:]] == [
        ("BTC.USD-PERP", Decimal("0.00006821875"), None), ("ETH.USD-PERP", Decimal("0.00007478125"), None),
    ]
    assert [(r["symbol"], r["open_interest"]) for r in records(produced, "open_interest")] == [
        ("BTC.USD-PERP", Decimal("1891.473716288")), ("ETH.USD-PERP", Decimal("44027.853711")),
    ]


# -- connector -----------------------------------------------------------------------------------


def test_symbol_map_from_the_perpetual_markets_endpoint() -> None:
    assert Dydx.parse_symbols(markets_body()) == {"BTC.USD-PERP": "BTC-USD", "ETH.USD-PERP": "ETH-USD"}


def test_tickers_outside_the_grammar_are_left_out() -> None:
    body = orjson.dumps({"markets": {"1000PEPE-USD": {}, "BTC-USD": {}, "weird-USD": {}, "NODASH": {}}}).decode()
    assert Dydx.parse_symbols(body) == {"1000PEPE.USD-PERP": "1000PEPE-USD", "BTC.USD-PERP": "BTC-USD"}


def test_subscribe_is_what_the_fixture_sent() -> None:
    connector = streaming_feed()
    [group] = connector.connection_groups(list(connector.normalised_of))
    sent = [entry["data"] for entry in ws_entries(FIXTURE) if entry["t"] == "send"]
    assert connector.subscribe_messages(group) == sent
    assert orjson.loads(sent[0]) == {"type": "subscribe", "channel": "v4_markets"}
    assert orjson.loads(sent[3]) == {"type": "subscribe", "channel": "v4_candles", "id": "BTC-USD/1MIN"}


def test_markets_channel_on_the_first_connection_only() -> None:
    tickers = [f"T{i}-USD" for i in range(70)]
    groups = Dydx([], None, SETTINGS).connection_groups(tickers)
    assert [len(g) for g in groups] == [32, 32, 6]
    assert [isinstance(g, SymbolGroup) and g.carries_markets for g in groups] == [True, False, False]
    second = [orjson.loads(m) for m in Dydx([], None, SETTINGS).subscribe_messages(groups[1])]
    assert all(m["channel"] != "v4_markets" for m in second) and len(second) == 3 * 32
    no_markets = Dydx([], None, SETTINGS, channels=["v4_trades"]).subscribe_messages(["BTC-USD"])
    assert no_markets == ['{"type":"subscribe","channel":"v4_trades","id":"BTC-USD"}']


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"type":"channel_data","channel":"v4_orderbook","id":"BTC-USD","contents":{}}', "dydx_BTC-USD_orderbook"),
        (b'{"type":"subscribed","channel":"v4_trades","id":"ETH-USD","contents":{}}', "dydx_ETH-USD_trades"),
        (b'{"type":"channel_data","channel":"v4_candles","id":"BTC-USD/1MIN"}', "dydx_BTC-USD_candles"),
        (b'{"type":"channel_data","channel":"v4_markets","contents":{}}', "dydx_all_markets"),
        (b'{"type":"channel_data","channel":"v4_markets","id":"v4_markets"}', "dydx_all_markets"),
        (b'{"type":"connected","connection_id":"c","message_id":0}', "dydx_all_control"),
        (b'{"type":"error","message":"Invalid id","connection_id":"c","message_id":1}', "dydx_all_control"),
        (b'{"type":', "dydx_all_unparsed"),
        (b"[1]", "dydx_all_unparsed"),
    ],
)
def test_frame_key(raw: bytes, key: str) -> None:
    assert Dydx([], None, SETTINGS).frame_key(raw) == key


# -- standardiser units --------------------------------------------------------------------------


def test_convert_symbol() -> None:
    std = DydxStandardiser()
    assert std.convert_symbol("BTC-USD") == "BTC.USD-PERP"
    with pytest.raises(ValueError, match="BASE-QUOTE"):
        std.convert_symbol("BTC/USD/1MIN")


def test_batched_book_updates_with_offsets() -> None:
    raw = frame(type="channel_batch_data", channel="v4_orderbook", id="ETH-USD", message_id=17, version="1.0.0",
                contents=[{"bids": [["2396.1", "3.123"]]}, {"asks": [["2397.1", "0", "1234567"]]}])
    bid, ask = DydxStandardiser().standardise(raw, ATOM)
    assert (bid.record["side"], bid.record["price"], bid.record["sequence"]) == ("bid", Decimal("2396.1"), 17)
    assert (ask.record["side"], ask.record["size"], ask.record["is_snapshot"]) == ("ask", Decimal(0), False)


def test_batched_trades_and_candles() -> None:
    std = DydxStandardiser()
    trade = {"id": "t1", "size": "1", "price": "2", "side": "SELL", "createdAt": "2023-04-04T00:29:19.353Z"}
    trades = std.standardise(frame(type="channel_batch_data", channel="v4_trades", id="BTC-USD", message_id=5,
                                   contents=[{"trades": [trade]}, {"trades": [trade, trade]}]), ATOM)
    assert len(trades) == 3
    candle = {"startedAt": "2025-08-05T03:40:00.000Z", "low": "1", "high": "2", "open": "1", "close": "2",
              "baseTokenVolume": "3", "usdVolume": "4", "trades": 1}
    later = dict(candle, startedAt="2025-08-05T03:41:00.000Z")
    outs = std.standardise(frame(type="channel_batch_data", channel="v4_candles", id="BTC-USD/1MIN", message_id=6,
                                 contents=[candle, later]), ATOM)
    # The batch holds the next window: the first is over.
    assert [o.record["closed"] for o in outs] == [True, False]


def test_markets_updates_with_oracle_prices() -> None:
    std = DydxStandardiser()
    oracle = {"BTC-USD": {"oraclePrice": "27800.5", "effectiveAt": "2023-04-04T00:29:19.353Z",
                          "effectiveAtHeight": "49600", "marketId": 0}}
    assert std.standardise(frame(type="channel_data", channel="v4_markets", message_id=9,
                                 contents={"oraclePrices": oracle}), ATOM) == []
    assert std.skipped == {"markets update: oracle prices only (no funding rate or open interest)": 1}
    [funding] = std.standardise(frame(type="channel_data", channel="v4_markets", message_id=10, contents={
        "trading": {"BTC-USD": {"nextFundingRate": "0.0001"}}, "oraclePrices": oracle}), ATOM)
    assert (funding.record["rate"], funding.record["mark_price"]) == (Decimal("0.0001"), Decimal("27800.5"))


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"type":"channel_data",', "malformed JSON"),
        (b"[1, 2]", "message has no type"),
        (frame(type="channel_data", channel="v4_block_height", contents={}),
         "unknown message type 'channel_data:v4_block_height'"),
        (frame(type="error", message="Invalid subscription id for channel: (v4_trades-XYZ-USD)", connection_id="c",
               message_id=3), "dYdX error: 'Invalid subscription id for channel"),
        (frame(type="channel_data", channel="v4_trades", id="BTC-USD", message_id=1,
               contents={"trades": [{"id": "t", "size": "1", "side": "BUY", "createdAt": "2023-04-04T00:29:19.353Z"}]}),
         "channel_data:v4_trades message lacks field 'price'"),
        (FLOAT_PRICE,
         "expected a decimal string, got float"),
        (frame(type="channel_data", channel="v4_trades", id="BTC-USD", message_id=1, contents={"trades": [
            {"id": "t", "size": "1", "price": "1", "side": "LONG", "createdAt": "2023-04-04T00:29:19.353Z"}]}),
         "trade side must be 'BUY' or 'SELL'"),
        (frame(type="channel_data", channel="v4_orderbook", id="BTC-USD", message_id=1, contents={"bids": ["27773"]}),
         "a book level is an object or a list"),
        (frame(type="channel_data", channel="v4_candles", id="BTC-USD/2MINS", message_id=1, contents={}),
         "candle id must be <market>/<resolution>"),
        (frame(type="channel_data", channel="v4_markets", message_id=1, contents={}),
         "channel_data:v4_markets message lacks field 'trading'"),
        (frame(type="channel_batch_data", channel="v4_orderbook", id="BTC-USD", message_id=1, contents={"bids": []}),
         "batched contents must be a list"),
        (frame(type="channel_data", channel="v4_orderbook", id="BTCUSD", message_id=1, contents={"bids": [["1", "1"]]}),
         "market must look like BASE-QUOTE"),
    ],
)
def test_bad_input_raises_a_precise_error(raw: bytes, error: str) -> None:
    with pytest.raises(StandardiseError, match=error.replace("(", r"\(").replace("[", r"\[").replace("{", r"\{")):
        DydxStandardiser().standardise(raw, ATOM)
