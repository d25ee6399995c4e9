"""Bitstamp websocket v2 on hand-written traffic (``tests/fixtures/bitstamp``; there is no recording).

Where the frames come from: Bitstamp's websocket v2 documentation gives the
subscribe request, ``bts:request_reconnect``
(``{"event": "bts:request_reconnect", "channel": "", "data": ""}``), the
``bts:heartbeat`` answer, and the fields of every channel, but no data frame
in full; its HTTP API documentation gives the ``trading-pairs-info`` example
used as the REST body.  The data frames are frames Bitstamp sent, carrying
exactly the documented fields, as other open-source clients keep them in their
tests: ``order_created`` (gocryptotrader), ``order_changed`` and the newer
``order_deleted`` with ``amount_traded``/``amount_at_create``/``event_id``,
``trade`` and ``diff_order_book`` (crypto-msg-parser).  They span 2020-2026,
all on ``btcusd``.  The books' REST snapshots and sequence checks are tested
in ``test_bitstamp_books.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import fastavro
import orjson
import pytest

from l3_atom.avro.codecs import parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.feed import RECONNECT
from l3_atom.off_chain.bitstamp import Bitstamp
from l3_atom.sim.replay import Recording, ReplayServer
from l3_atom.stream_processing.standardiser import Output, StandardiseError
from l3_atom.stream_processing.standardisers.bitstamp import BitstampStandardiser
from l3_atom.topics import split_raw_key
from tests.sinks import ListSink

SOURCE = "bitstamp"
FIXTURE = Path(__file__).parent.parent / "fixtures" / "bitstamp"
SYMBOLS = ["BTC.USD"]
ATOM = 1_700_000_000_200_000
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)
FIXTURE_FRAMES = 10
ORDER_EVENTS = ("order_created", "order_changed", "order_deleted")


def received_messages(folder: Path) -> list[dict]:
    return [json.loads(frame.text) for connection in Recording(folder).connections for frame in connection.frames]


def expected_counts(folder: Path) -> dict[str, int]:
    """Records per topic: one per order event, one per trade, one per changed book level."""
    counts: Counter[str] = Counter()
    for message in received_messages(folder):
        if message["event"] in ORDER_EVENTS:
            counts["lob_l3"] += 1
        elif message["event"] == "trade":
            counts["trades_l3"] += 1
        elif message["event"] == "data" and message["channel"].startswith("diff_order_book_"):
            counts["lob"] += len(message["data"]["bids"]) + len(message["data"]["asks"])
    return dict(counts)


def feed(*symbols: str, **kwargs: str) -> Bitstamp:
    return Bitstamp(symbols, ListSink(), SETTINGS, **kwargs)


def fixture_feed() -> Bitstamp:
    connector = feed(*SYMBOLS)
    symbol_map = Bitstamp.parse_symbols(Recording(FIXTURE).body("/api/v2/trading-pairs-info/", ""))
    connector.normalised_of = dict(zip(connector.resolve(symbol_map), SYMBOLS, strict=True))
    return connector


def fixture_frames() -> list[bytes]:
    return [frame.text.encode() for connection in Recording(FIXTURE).connections for frame in connection.frames]


def standardise_like_the_pipeline(std: BitstampStandardiser, connector: Bitstamp, frame: bytes) -> list[Output]:
    key = connector.frame_key(frame)
    outputs = std.standardise(frame, ATOM, key, connector.normalised_of.get(split_raw_key(key)[1]))
    for out in outputs:
        assert fastavro.validate(out.record, parsed_schema(out.topic), raise_errors=True)
    return outputs


def frame_with(event: str) -> bytes:
    return next(f for f in fixture_frames() if json.loads(f)["event"] == event)


# -- the fixture -------------------------------------------------------------------------------------------------


def test_fixture_is_fully_understood() -> None:
    connector = fixture_feed()
    std = BitstampStandardiser()
    produced: Counter[str] = Counter()
    frames = fixture_frames()
    assert len(frames) == FIXTURE_FRAMES
    for frame in frames:
        produced.update(out.topic for out in standardise_like_the_pipeline(std, connector, frame))
    assert dict(produced) == expected_counts(FIXTURE) == {"lob_l3": 3, "lob": 3, "trades_l3": 1}
    assert dict(std.skipped) == {
        "subscription ack": 3, "heartbeat": 1, "reconnect request (the connector reconnects)": 1}


def test_order_events_by_hand() -> None:
    """order_created: id 4621332237, order_type 0, price_str "9350.49", amount_str "0.63470860",
    microtimestamp "1580336940972599"; order_deleted leaves size 0 at its price_str "71009"."""
    connector, std = fixture_feed(), BitstampStandardiser()
    [created] = standardise_like_the_pipeline(std, connector, frame_with("order_created"))
    assert created == Output("lob_l3", "bitstamp_BTC.USD", {
        "exchange": "bitstamp", "symbol": "BTC.USD", "event_type": "open", "order_id": "4621332237", "side": "bid",
        "price": Decimal("9350.49"), "size": Decimal("0.63470860"), "reason": None, "is_snapshot": False,
        "sequence": None, "prev_sequence": None, "event_timestamp": 1580336940972, "atom_timestamp": ATOM,
    })
    [changed] = standardise_like_the_pipeline(std, connector, frame_with("order_changed"))
    assert (changed.record["event_type"], changed.record["side"], changed.record["size"]) == (
        "change", "ask", Decimal("1.07512726"))
    [deleted] = standardise_like_the_pipeline(std, connector, frame_with("order_deleted"))
    assert deleted.record == {
        "exchange": "bitstamp", "symbol": "BTC.USD", "event_type": "done", "order_id": "1994262360649728",
        "side": "bid", "price": Decimal(71009), "size": Decimal(0), "reason": None, "is_snapshot": False,
        "sequence": None, "prev_sequence": None, "event_timestamp": 1775715433800, "atom_timestamp": ATOM,
    }


def test_trade_names_maker_and_taker_orders() -> None:
    """type 0: a buy taker, so buy_order_id 1341285759094784 took sell_order_id 1341285698236416's liquidity."""
    [trade] = standardise_like_the_pipeline(BitstampStandardiser(), fixture_feed(), frame_with("trade"))
    assert trade == Output("trades_l3", "bitstamp_BTC.USD", {
        "exchange": "bitstamp", "symbol": "BTC.USD", "trade_id": "158457579", "price": Decimal("57748.80"),
        "size": Decimal("1E-8"), "taker_side": "buy", "maker_order_id": "1341285698236416",
        "taker_order_id": "1341285759094784", "sequence": None, "origin": None, "event_timestamp": 1616297318187,
        "atom_timestamp": ATOM,
    })


def test_sell_taker_swaps_the_orders() -> None:
    message = orjson.loads(frame_with("trade"))
    message["data"]["type"] = 1
    [trade] = BitstampStandardiser().standardise(orjson.dumps(message), ATOM, "bitstamp_btcusd_trades", "BTC.USD")
    assert (trade.record["taker_side"], trade.record["taker_order_id"], trade.record["maker_order_id"]) == (
        "sell", "1341285698236416", "1341285759094784")


def test_book_diff_by_hand() -> None:
    """No sequence number on diff_order_book: its microtimestamp "1622520011989838" stands in, prev unknown."""
    outputs = standardise_like_the_pipeline(BitstampStandardiser(), fixture_feed(), frame_with("data"))
    assert [(o.record["side"], o.record["price"], o.record["size"]) for o in outputs] == [
        ("bid", Decimal("36653.62"), Decimal("0.75")), ("ask", Decimal("36665.20"), Decimal(0)),
        ("ask", Decimal("36669.76"), Decimal("0.75")),
    ]
    assert {(o.record["is_snapshot"], o.record["sequence"], o.record["prev_sequence"], o.record["event_timestamp"])
            for o in outputs} == {(False, 1622520011989838, None, 1622520011989)}


def test_symbol_map_from_the_documented_trading_pairs_info() -> None:
    assert Bitstamp.parse_symbols(Recording(FIXTURE).body("/api/v2/trading-pairs-info/", "")) == {"BTC.USD": "btcusd"}


@pytest.mark.timeout(30)
def test_connector_on_the_replayed_fixture() -> None:
    """Every frame archived with its symbol; ``bts:request_reconnect`` makes the connection reconnect."""

    async def run() -> Bitstamp:
        server = await ReplayServer(FIXTURE).start()
        connector = Bitstamp(SYMBOLS, ListSink(), SETTINGS, ws_url=server.ws_url, rest_url=server.rest_url)
        task = asyncio.create_task(connector.run())
        try:
            async with asyncio.timeout(20):
                # The server counts a connection before the client has finished opening it: wait for both.
                while server.served_connections < 2 or not connector.connections or (
                    connector.connections[0].stats.connects < 2
                ):
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await server.stop()
        return connector

    connector = asyncio.run(run())
    assert len(connector.sink.frames) == FIXTURE_FRAMES
    keys = Counter(key for key, _, _ in connector.sink.frames)
    assert keys == {"bitstamp_btcusd_control": 3, "bitstamp_btcusd_orders": 3, "bitstamp_btcusd_book": 1,
                    "bitstamp_btcusd_trades": 1, "bitstamp_all_heartbeat": 1, "bitstamp_all_control": 1}
    assert {symbol for key, _, symbol in connector.sink.frames if "btcusd" in key} == {"BTC.USD"}
    assert connector.connections[0].stats.connects >= 2


# -- the connector -----------------------------------------------------------------------------------------------


def test_subscribe_messages_one_per_channel_and_pair() -> None:
    messages = [json.loads(m) for m in feed("BTC.USD").subscribe_messages(["btcusd", "etheur"])]
    assert messages[0] == {"event": "bts:subscribe", "data": {"channel": "live_orders_btcusd"}}
    assert [m["data"]["channel"] for m in messages] == [
        "live_orders_btcusd", "live_orders_etheur", "diff_order_book_btcusd", "diff_order_book_etheur",
        "live_trades_btcusd", "live_trades_etheur"]


def test_reply_reconnects_only_on_request() -> None:
    connector = feed("BTC.USD")
    assert connector.reply(b'{"event": "bts:request_reconnect", "channel": "", "data": ""}') is RECONNECT
    assert connector.reply(frame_with("trade")) is None
    assert connector.reply(b'{"event": "trade", "note": "bts:request_reconnect"}') is None
    assert connector.reply(b'bts:request_reconnect {') is None


def test_heartbeat_ping() -> None:
    connector = feed("BTC.USD")
    assert json.loads(connector.ping()) == {"event": "bts:heartbeat"}
    assert connector.ping_interval_s < SETTINGS.silence_timeout_s


def test_perpetual_and_odd_pair_names() -> None:
    body = json.dumps([{"name": "BTC/USD-PERP", "url_symbol": "btcusd-perp"}, {"name": "USDC/EUR", "url_symbol": "usdceur"},
                       {"name": "odd pair", "url_symbol": "odd"}])
    assert Bitstamp.parse_symbols(body) == {"BTC.USD-PERP": "btcusd-perp", "USDC.EUR": "usdceur"}


@pytest.mark.parametrize(
    ("frame", "key"),
    [
        (b'{"event":"order_created","channel":"live_orders_btcusd","data":{}}', "bitstamp_btcusd_orders"),
        (b'{"event":"trade","channel":"live_trades_etheur","data":{}}', "bitstamp_etheur_trades"),
        (b'{"event":"data","channel":"diff_order_book_btcusd","data":{}}', "bitstamp_btcusd_book"),
        (b'{"event":"bts:subscription_succeeded","channel":"live_orders_btcusd","data":{}}', "bitstamp_btcusd_control"),
        (b'{"event":"bts:heartbeat","channel":"","data":{"status":"success"}}', "bitstamp_all_heartbeat"),
        (b'{"event":"bts:error","channel":"","data":{"code":null,"message":"Bad subscription string."}}',
         "bitstamp_all_control"),
        (b'{"event":"data","channel":7}', "bitstamp_all_control"),
        (b"[1]", "bitstamp_all_unparsed"),
        (b'{"event":', "bitstamp_all_unparsed"),
    ],
)
def test_frame_key(frame: bytes, key: str) -> None:
    assert feed("BTC.USD").frame_key(frame) == key


# -- bad frames --------------------------------------------------------------------------------------------------


def replace(event: str, **data: object) -> bytes:
    message = orjson.loads(frame_with(event))
    message["data"].update(data)
    return orjson.dumps(message)


def without(event: str, field: str) -> bytes:
    message = orjson.loads(frame_with(event))
    del message["data"][field]
    return orjson.dumps(message)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"event": "trade", ', "malformed JSON"),
        (b"[1, 2]", "message has no type"),
        (b'{"event": "order_moved", "channel": "live_orders_btcusd", "data": {}}', "unknown message type 'order_moved'"),
        (b'{"event": "data", "channel": "order_book_btcusd", "data": {}}', "unknown message type 'order_book'"),
        (b'{"event":"bts:error","channel":"","data":{"code":null,"message":"Bad subscription string."}}',
         "Bitstamp error: {'code': None, 'message': 'Bad subscription string.'}"),
        (without("order_created", "price_str"), "order_created message lacks field 'price_str'"),
        (replace("order_created", order_type=2), "order_type must be 0 or 1, got 2"),
        (replace("trade", type="0"), "type must be 0 or 1, got '0'"),
        (replace("trade", microtimestamp=1616297318187000), "expected a microtimestamp string, got int"),
        (replace("trade", amount_str="abc"), "trade message has a mistyped field"),
        (replace("order_changed", id="1668902609674242"), "expected an integer, got str"),
    ],
)
def test_bad_frames_raise_precise_errors(raw: bytes, error: str) -> None:
    with pytest.raises(StandardiseError, match=error.replace("(", r"\(").replace("[", r"\[").replace("{", r"\{")):
        BitstampStandardiser().standardise(raw, ATOM, "bitstamp_btcusd_x", "BTC.USD")


def test_symbol_needs_the_connector_header() -> None:
    """``btcusd`` does not split into base and quote without trading-pairs-info: the header names it."""
    with pytest.raises(StandardiseError, match="no normalised symbol known for 'btcusd'"):
        BitstampStandardiser().standardise(frame_with("trade"), ATOM)
