"""HTX (formerly Huobi) spot on its real recording (2021-04-17: ``depth.step0`` and ``trade.detail``).

Protocol change since the recording: the 2021 recorder subscribed to
``market.$symbol.depth.step0`` (a full 150-level snapshot every second) on
``/ws``.  The connector now streams the incremental ``market.$symbol.mbp.150``
(``seqNum``/``prevSeqNum``, with a ``req`` refresh as the snapshot), which HTX
serves on ``/feed``, plus ``bbo`` and ``kline.1min`` on ``/ws``.  The
standardiser understands both book shapes: the recorded ``depth.step0`` frames
are checked here, the ``mbp.150`` update and refresh against HTX's documented
examples (and the book's sequence checks in ``test_htx_books.py``).  Frames
are gzip-compressed JSON with prices as JSON numbers.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections import Counter
from decimal import Decimal
from pathlib import Path

import fastavro
import orjson
import pytest

from l3_atom.avro.codecs import parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.off_chain import htx as htx_connector
from l3_atom.off_chain.htx import Htx
from l3_atom.sim.replay import Recording, ReplayServer
from l3_atom.stream_processing.standardiser import Output, StandardiseError
from l3_atom.stream_processing.standardisers.htx import HtxStandardiser
from l3_atom.topics import split_raw_key
from tests.sinks import ListSink

SOURCE = "htx"
RECORDING = "huobi"
SYMBOLS = ["PROPY.ETH", "ZEN.ETH", "TRIO.ETH", "XVG.ETH", "YFI.HUSD", "OMG.BTC", "NEST.ETH", "BOR.USDT", "FIL3S.USDT",
           "DOGE.ETH"]
ATOM = 1_618_678_070_000_000
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)
RECORDED_FRAMES = 362
# Kind of a channel (market.<symbol>.<kind>...) -> normalised topic.
TOPIC_OF_KIND = {"depth": "lob", "mbp": "lob", "trade": "trades", "bbo": "ticker", "kline": "candle"}


def received_messages(folder: Path) -> list[dict]:
    """Every frame HTX sent, gunzipped and parsed, without any project code but the recording reader."""
    return [
        json.loads(gzip.decompress(frame.binary))
        for connection in Recording(folder).connections
        for frame in connection.frames
    ]


def expected_counts(folder: Path) -> dict[str, int]:
    """Records per topic: one per book level, one per trade, one per bbo or kline message."""
    counts: Counter[str] = Counter()
    for message in received_messages(folder):
        channel = message.get("ch") or (message.get("rep") if message.get("status") == "ok" else None)
        if channel is None:
            continue
        topic = TOPIC_OF_KIND[channel.split(".")[2]]
        body = message.get("tick") or message.get("data")
        if topic == "lob":
            counts[topic] += len(body.get("bids", [])) + len(body.get("asks", []))
        elif topic == "trades":
            counts[topic] += len(body["data"])
        else:
            counts[topic] += 1
    return dict(counts)


def book_snapshots(folder: Path) -> int:
    """Full books among the frames: every depth.step0 push and MBP refresh is one."""
    return sum(
        1 for message in received_messages(folder)
        if ".depth." in message.get("ch", "") or (message.get("status") == "ok" and ".mbp." in message.get("rep", ""))
    )


def gz(message: dict | str) -> bytes:
    return gzip.compress((message if isinstance(message, str) else json.dumps(message)).encode())


def feed(*symbols: str, **kwargs: str) -> Htx:
    return Htx(symbols, ListSink(), SETTINGS, **kwargs)


def recorded_feed(folder: Path) -> Htx:
    """The connector as it runs on the recording: symbol map from the recorded REST body."""
    connector = feed(*SYMBOLS)
    connector.normalised_of = dict(zip(connector.resolve(symbol_map(folder)), SYMBOLS, strict=True))
    return connector


def symbol_map(folder: Path) -> dict[str, str]:
    return Htx.parse_symbols(Recording(folder).body("/v1/common/symbols", ""))


def standardise_like_the_pipeline(std: HtxStandardiser, connector: Htx, frame: bytes) -> list[Output]:
    """Key and symbol header as the connector sets them."""
    key = connector.frame_key(frame)
    return std.standardise(frame, ATOM, key, connector.normalised_of.get(split_raw_key(key)[1]))


def assert_fits_schema(outputs: list[Output]) -> None:
    for out in outputs:
        assert fastavro.validate(out.record, parsed_schema(out.topic), raise_errors=True)


# -- the recording ---------------------------------------------------------------------------------------------


def test_recording_is_fully_understood(recordings: Path) -> None:
    folder = recordings / RECORDING
    connector = recorded_feed(folder)
    std = HtxStandardiser()
    produced: Counter[str] = Counter()
    frames = [f.binary for c in Recording(folder).connections for f in c.frames]
    assert len(frames) == RECORDED_FRAMES
    for frame in frames:
        outputs = standardise_like_the_pipeline(std, connector, frame)
        assert_fits_schema(outputs)
        produced.update(out.topic for out in outputs)
    # A book_resync output would be a topic that the independent count has not: every book is a snapshot.
    assert dict(produced) == expected_counts(folder)
    assert produced == {"lob": 58996, "trades": 73}
    assert dict(std.skipped) == {"subscription ack": 20, "heartbeat": 6}
    assert std.book_checks.stats() == {"snapshots": book_snapshots(folder)} == {"snapshots": 292}


def test_recorded_depth_snapshot_by_hand(recordings: Path) -> None:
    """Frame 2: {"ch":"market.trioeth.depth.step0","ts":1618678069870,"tick":{"bids":[[9.121E-7,92730.24],...],
    "asks":[[9.28E-7,4342.25],...],"version":100182534697,"ts":1618678069868}}."""
    folder = recordings / RECORDING
    frame = Recording(folder).connections[0].frames[1].binary
    outputs = standardise_like_the_pipeline(HtxStandardiser(), recorded_feed(folder), frame)
    first_bid = next(o for o in outputs if o.record["side"] == "bid")
    first_ask = next(o for o in outputs if o.record["side"] == "ask")
    common = {"exchange": "htx", "symbol": "TRIO.ETH", "is_snapshot": True, "sequence": 100182534697,
              "prev_sequence": None, "checksum": None, "event_timestamp": 1618678069868, "atom_timestamp": ATOM}
    assert first_bid == Output("lob", "htx_TRIO.ETH", {
        **common, "side": "bid", "price": Decimal("9.121E-7"), "size": Decimal("92730.24")})
    assert first_ask.record == {**common, "side": "ask", "price": Decimal("9.28E-7"), "size": Decimal("4342.25")}
    assert outputs[-1].record["price"] == Decimal("0.000043")


def test_recorded_trades_by_hand(recordings: Path) -> None:
    """Frame 120: seven fil3susdt sells at once; the first is tradeId 5957217, 2680830.0 @ 1.3262E-4."""
    folder = recordings / RECORDING
    frame = Recording(folder).connections[0].frames[119].binary
    outputs = standardise_like_the_pipeline(HtxStandardiser(), recorded_feed(folder), frame)
    assert len(outputs) == 7
    assert outputs[0] == Output("trades", "htx_FIL3S.USDT", {
        "exchange": "htx", "symbol": "FIL3S.USDT", "trade_id": "5957217", "price": Decimal("1.3262E-4"),
        "size": Decimal("2680830.0"), "taker_side": "sell", "sequence": None, "origin": None, "event_timestamp": 1618678078119,
        "atom_timestamp": ATOM,
    })
    assert [o.record["trade_id"] for o in outputs] == [str(n) for n in range(5957217, 5957210, -1)]


def test_symbol_map_from_the_recorded_symbols_endpoint(recordings: Path) -> None:
    body = json.loads(Recording(recordings / RECORDING).body("/v1/common/symbols", ""))
    symbols = symbol_map(recordings / RECORDING)
    assert len(symbols) == len(body["data"]) == 938
    assert symbols["FIL3S.USDT"] == "fil3susdt"
    assert symbols["YFI.HUSD"] == "yfihusd"
    assert feed(*SYMBOLS).resolve(symbols)[:3] == ["propyeth", "zeneth", "trioeth"]


def test_pongs_match_the_recorded_ones(recordings: Path) -> None:
    """The recorder answered each ping; the connector's answers are byte for byte the same."""
    folder = recordings / RECORDING
    with gzip.open(folder / "ws.jsonl.gz", "rt") as lines:
        sent = [e["data"] for e in map(json.loads, lines) if e["t"] == "send" and "pong" in e["data"]]
    connector = recorded_feed(folder)
    answers = [a for c in Recording(folder).connections for f in c.frames if (a := connector.reply(f.binary))]
    assert answers == sent
    assert len(answers) == 6


def test_recorded_frame_keys(recordings: Path) -> None:
    frames = Recording(recordings / RECORDING).connections[0].frames
    connector = recorded_feed(recordings / RECORDING)
    keys = Counter(connector.frame_key(f.binary) for f in frames)
    assert keys["htx_all_control"] == 20
    assert keys["htx_all_heartbeat"] == 6
    assert keys["htx_trioeth_depth"] > 0
    assert keys["htx_fil3susdt_trade"] > 0
    assert sum(keys.values()) == RECORDED_FRAMES


@pytest.mark.timeout(30)
def test_connector_on_the_replayed_recording(recordings: Path) -> None:
    """The unchanged connector against the replay server: one connection, every frame archived with its symbol."""

    async def run() -> tuple[ListSink, dict]:
        server = await ReplayServer(recordings / RECORDING).start()
        connector = Htx(SYMBOLS, ListSink(), SETTINGS, ws_url=server.ws_url, rest_url=server.rest_url)
        task = asyncio.create_task(connector.run())
        try:
            async with asyncio.timeout(20):
                while server.frames_sent < RECORDED_FRAMES or len(connector.sink.frames) < RECORDED_FRAMES:
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await server.stop()
        return connector.sink, {"served": server.served_connections, "recorded": len(server.recording.connections)}

    sink, connections = asyncio.run(run())
    assert connections == {"served": 1, "recorded": 1}
    assert len(sink.frames) == RECORDED_FRAMES
    by_key = {key: symbol for key, _, symbol in sink.frames}
    assert by_key["htx_trioeth_depth"] == "TRIO.ETH"
    assert by_key["htx_all_heartbeat"] is None


# -- documented messages of the current protocol -----------------------------------------------------------------

# HTX's documented examples (huobiapi.github.io/docs/spot/v1/en/, "Market By Price (incremental update)",
# "Best Bid/Offer", "Market Candlestick"); the MBP refresh is the announcement's "Sample A", cut to two levels.
MBP_UPDATE = {"ch": "market.btcusdt.mbp.150", "ts": 1573199608679,
              "tick": {"seqNum": 100020146795, "prevSeqNum": 100020146794, "asks": [[645.14, 26.75597395914065]]}}
MBP_REFRESH = ('{"id": "id21", "rep": "market.btcusdt.mbp.150", "status": "ok", "data": {"seqNum": 100020142010, '
               '"bids": [[618.37, 71.594], [423.33, 77.726]], "asks": [[6866.77, 24.7], [6881.04, 0]]}}')
BBO = ('{"ch": "market.btcusdt.bbo", "ts": 1630994555540, "tick": {"seqId": 137005210233, "ask": 52665.02, '
       '"askSize": 1.502181, "bid": 52665.01, "bidSize": 0.178567, "quoteTime": 1630994555539, "symbol": "btcusdt"}}')
KLINE = ('{"ch": "market.ethbtc.kline.1min", "ts": 1630981694370, "tick": {"id": 1630981680, "open": 0.074849, '
         '"close": 0.074848, "low": 0.074848, "high": 0.074849, "amount": 2.4448, "vol": 0.1829884187, "count": 3}}')


@pytest.fixture
def std() -> HtxStandardiser:
    return HtxStandardiser()


def standardise(std: HtxStandardiser, message: dict | str, exchange_symbol: str, symbol: str) -> list[Output]:
    outputs = std.standardise(gz(message), ATOM, f"htx_{exchange_symbol}_x", symbol)
    assert_fits_schema(outputs)
    return outputs


def test_mbp_update_carries_seq_num(std: HtxStandardiser) -> None:
    [ask] = standardise(std, MBP_UPDATE, "btcusdt", "BTC.USDT")
    assert ask == Output("lob", "htx_BTC.USDT", {
        "exchange": "htx", "symbol": "BTC.USDT", "side": "ask", "price": Decimal("645.14"),
        "size": Decimal("26.75597395914065"), "is_snapshot": False, "sequence": 100020146795,
        "prev_sequence": 100020146794, "checksum": None, "event_timestamp": 1573199608679, "atom_timestamp": ATOM,
    })


def test_mbp_refresh_is_the_snapshot(std: HtxStandardiser) -> None:
    outputs = standardise(std, MBP_REFRESH, "btcusdt", "BTC.USDT")
    assert [(o.record["side"], o.record["price"], o.record["size"]) for o in outputs] == [
        ("bid", Decimal("618.37"), Decimal("71.594")), ("bid", Decimal("423.33"), Decimal("77.726")),
        ("ask", Decimal("6866.77"), Decimal("24.7")), ("ask", Decimal("6881.04"), Decimal(0)),
    ]
    assert {(o.record["is_snapshot"], o.record["sequence"], o.record["event_timestamp"]) for o in outputs} == {
        (True, 100020142010, None)}


def test_empty_mbp_update_is_a_counted_skip(std: HtxStandardiser) -> None:
    """150-level MBP pushes every 100 ms, with empty sides when nothing changed."""
    empty = {"ch": "market.btcusdt.mbp.150", "ts": 1, "tick": {"seqNum": 2, "prevSeqNum": 1, "bids": [], "asks": []}}
    assert standardise(std, empty, "btcusdt", "BTC.USDT") == []
    assert std.skipped == {"book update without levels": 1}


def test_bbo(std: HtxStandardiser) -> None:
    [tick] = standardise(std, BBO, "btcusdt", "BTC.USDT")
    assert tick == Output("ticker", "htx_BTC.USDT", {
        "exchange": "htx", "symbol": "BTC.USDT", "bid_price": Decimal("52665.01"), "bid_size": Decimal("0.178567"),
        "ask_price": Decimal("52665.02"), "ask_size": Decimal("1.502181"), "last_price": None, "last_size": None,
        "sequence": 137005210233, "event_timestamp": 1630994555539, "atom_timestamp": ATOM,
    })


def test_kline(std: HtxStandardiser) -> None:
    [candle] = standardise(std, KLINE, "ethbtc", "ETH.BTC")
    assert candle == Output("candle", "htx_ETH.BTC", {
        "exchange": "htx", "symbol": "ETH.BTC", "origin": "exchange", "interval": "1m", "start": 1630981680000,
        "end": 1630981740000, "open": Decimal("0.074849"), "high": Decimal("0.074849"), "low": Decimal("0.074848"),
        "close": Decimal("0.074848"), "volume": Decimal("2.4448"), "quote_volume": Decimal("0.1829884187"),
        "trade_count": 3, "vwap": None, "first_trade_timestamp": None, "last_trade_timestamp": None,
        "closed": False, "event_timestamp": 1630981694370, "atom_timestamp": ATOM,
    })


def test_acks_and_pings_are_counted_skips(std: HtxStandardiser) -> None:
    assert std.standardise(gz({"ping": 1492420473027}), ATOM) == []
    assert std.standardise(gz({"id": "id1", "status": "ok", "subbed": "market.btcusdt.bbo", "ts": 1}), ATOM) == []
    assert std.standardise(gz({"id": "id4", "status": "ok", "unsubbed": "market.btcusdt.bbo", "ts": 1}), ATOM) == []
    assert std.skipped == {"heartbeat": 1, "subscription ack": 1, "unsubscription ack": 1}


TRADE = {"ch": "market.btcusdt.trade.detail", "ts": 1, "tick": {"id": 1, "ts": 1, "data": [
    {"id": 146507451359183894799, "ts": 1533265950234, "tradeId": 102043495674, "amount": 0.0099, "price": 401.74,
     "direction": "buy"}]}}


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"ping": 1}', "not a gzip-compressed frame"),
        (gzip.compress(b'{"ch": "market.btcusdt.bbo", '), "malformed JSON"),
        (gz("[1, 2]"), "message has no type"),
        (gz({"ch": "btcusdt"}), "channel 'btcusdt' is not market.<symbol>.<kind>"),
        (gz({"ch": "market.btcusdt.depth.step1", "tick": {}}), "unknown message type 'depth.step1'"),
        (gz({"ch": "market.btcusdt.kline.1mon", "tick": {}}), "unknown message type 'kline.1mon'"),
        (gz({"status": "error", "err-code": "bad-request", "err-msg": "invalid topic", "id": "1"}),
         "HTX error reply 'bad-request': 'invalid topic'"),
        (gz({**TRADE, "tick": {"data": [{**TRADE["tick"]["data"][0], "direction": "up"}]}}),
         "direction must be 'buy' or 'sell'"),
        (gz({**TRADE, "tick": {"data": [{k: v for k, v in TRADE["tick"]["data"][0].items() if k != "amount"}]}}),
         "trade.detail message lacks field 'amount'"),
        (gz({**MBP_UPDATE, "ts": "1573199608679"}), "mbp.150 message has a mistyped field: expected an integer"),
        (gz(BBO.replace("52665.02", '"NaN"')), "expected a finite decimal"),
    ],
)
def test_bad_frames_raise_precise_errors(std: HtxStandardiser, raw: bytes, error: str) -> None:
    with pytest.raises(StandardiseError, match=error.replace("(", r"\(").replace("[", r"\[")):
        std.standardise(raw, ATOM, "htx_btcusdt_x", "BTC.USDT")


def test_symbol_needs_the_connector_header(std: HtxStandardiser) -> None:
    """``btcusdt`` does not split into base and quote without HTX's symbol list: the header names it."""
    with pytest.raises(StandardiseError, match="no normalised symbol known for 'btcusdt'"):
        std.standardise(gz(TRADE), ATOM)
    assert std.standardise(gz(TRADE), ATOM, "htx_btcusdt_trade", "BTC.USDT")[0].record["trade_id"] == "102043495674"


# -- the connector -----------------------------------------------------------------------------------------------


def test_htx_hosts_split_mbp_onto_feed() -> None:
    connector = feed("BTC.USDT", "ETH.USDT")
    groups = connector.connection_groups(["btcusdt", "ethusdt"])
    urls = [asyncio.run(connector.connection_url(g)) for g in groups]
    assert urls == ["wss://api.huobi.pro/ws", "wss://api.huobi.pro/feed"]
    assert [json.loads(m) for m in connector.subscribe_messages(groups[1])] == [
        {"sub": "market.btcusdt.mbp.150", "id": "1"}, {"sub": "market.ethusdt.mbp.150", "id": "2"}]
    assert [json.loads(m)["sub"] for m in connector.subscribe_messages(groups[0])] == [
        "market.btcusdt.trade.detail", "market.ethusdt.trade.detail", "market.btcusdt.bbo", "market.ethusdt.bbo",
        "market.btcusdt.kline.1min", "market.ethusdt.kline.1min"]


def test_custom_endpoint_carries_everything_on_one_connection() -> None:
    connector = feed("BTC.USDT", ws_url="ws://127.0.0.1:9000/")
    [group] = connector.connection_groups(["btcusdt"])
    assert asyncio.run(connector.connection_url(group)) == "ws://127.0.0.1:9000/"
    assert [json.loads(m)["sub"] for m in connector.subscribe_messages(group)] == [
        "market.btcusdt.mbp.150", "market.btcusdt.trade.detail", "market.btcusdt.bbo", "market.btcusdt.kline.1min"]


def test_reply_pongs_and_requests_the_mbp_refresh_after_the_ack() -> None:
    connector = feed("BTC.USDT")
    assert connector.reply(gz('{"ping": 1492420473027}')) == '{"pong":1492420473027}'
    ack = gz({"id": "1", "status": "ok", "subbed": "market.btcusdt.mbp.150", "ts": 1489474081631})
    assert json.loads(connector.reply(ack)) == {"req": "market.btcusdt.mbp.150", "id": "market.btcusdt.mbp.150"}
    assert connector.reply(gz({"id": "2", "status": "ok", "subbed": "market.btcusdt.bbo", "ts": 1})) is None
    assert connector.reply(gz({"id": "3", "status": "ok", "subbed": "market.btcusdt.mbp.refresh.20"})) is None
    assert connector.reply(gz(BBO)) is None
    assert connector.reply(b"not gzip") is None


@pytest.mark.parametrize(
    ("frame", "key"),
    [
        (gz(MBP_UPDATE), "htx_btcusdt_mbp"),
        (gz(MBP_REFRESH), "htx_btcusdt_mbp"),
        (gz(BBO), "htx_btcusdt_bbo"),
        (gz(KLINE), "htx_ethbtc_kline"),
        (gz({"ping": 1}), "htx_all_heartbeat"),
        (gz({"status": "error", "err-code": "bad-request"}), "htx_all_control"),
        (gz({"ch": "market"}), "htx_all_control"),
        (gz("[1]"), "htx_all_unparsed"),
        (gzip.compress(b"{"), "htx_all_unparsed"),
        (b"plain", "htx_all_unparsed"),
    ],
)
def test_frame_key(frame: bytes, key: str) -> None:
    assert feed("BTC.USDT").frame_key(frame) == key


def test_symbols_endpoint_error_is_reported() -> None:
    with pytest.raises(ValueError, match="HTX symbols endpoint answered 'error': 'maintenance'"):
        Htx.parse_symbols(orjson.dumps({"status": "error", "err-msg": "maintenance"}).decode())


def test_reply_gunzips_only_small_frames(recordings: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data frame is told from a ping or ack by its size: ``reply`` gunzips none of the recorded book frames."""
    gunzipped: list[bytes] = []
    monkeypatch.setattr(htx_connector, "gunzip", lambda frame: gunzipped.append(frame) or zlib.decompress(frame, 31))
    frames = [f.binary for f in Recording(recordings / RECORDING).connections[0].frames]
    connector = feed("BTC.USDT")
    for frame in frames:
        connector.reply(frame)
    small = [f for f in frames if len(f) <= htx_connector.CONTROL_FRAME_MAX_BYTES]
    assert gunzipped == small
    assert len(small) < len(frames) / 4
