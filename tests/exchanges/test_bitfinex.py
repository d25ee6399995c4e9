"""Bitfinex websocket v2 on its real recording, plus the current protocol from Bitfinex's documentation.

The recording (April 2021) subscribed ``book`` with ``prec: P0`` (aggregated levels -> ``lob``), ``trades``
and ``ticker`` with the ``SEQ_ALL`` conf flag only, so its frames end with a sequence number and carry no
exchange time.  Today's connector subscribes raw books (``prec: R0`` -> ``lob_l3``) and asks for
``SEQ_ALL | TIMESTAMP``; those shapes are tested with frames quoted from docs.bitfinex.com (ws-public-raw-books,
ws-public-trades, ws-public-candles), with the sequence and time the flags append.  The books' sequence
checks are tested in ``test_bitfinex_books.py``.
"""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from l3_atom.config import ConnectorSettings
from l3_atom.data_source import UnknownSymbol
from l3_atom.errors import UserError
from l3_atom.feed import RECONNECT
from l3_atom.off_chain.bitfinex import Bitfinex, normalise_pair
from l3_atom.sim.replay import Recording
from l3_atom.stream_processing.standardiser import StandardiseError, decode_exact
from l3_atom.stream_processing.standardisers.bitfinex import BitfinexStandardiser
from l3_atom.topics import split_raw_key
from tests.recorded import http_bodies
from tests.sinks import ListSink

SOURCE = "bitfinex"
RECORDING = "bitfinex"
SYMBOLS = ["BFT.USD", "IOT.ETH", "DOG.USD", "MNA.BTC", "ODE.USD", "TESTBTC.TESTUSD", "SNG.USD"]
ATOM = 1_618_677_543_951_229
ATOM_MS = ATOM // 1000
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)
CONNECTION = "bitfinex.0.1"


def feed(*symbols: str, channels: list[str] | None = None) -> Bitfinex:
    return Bitfinex(symbols, ListSink(), SETTINGS, channels=channels)


def frame(value: Any) -> bytes:
    return orjson.dumps(value)


# -- independent count ---------------------------------------------------------------------


def is_snapshot_body(body: list) -> bool:
    """Snapshots are lists of entries, updates one entry."""
    return not body or isinstance(body[0], list)


def expected_counts(folder: Path) -> dict[str, int]:
    """Records per topic from the frames: channel ids resolved per connection from its ``subscribed`` events."""
    counts: Counter[str] = Counter()
    for connection in Recording(folder).connections:
        channels: dict[int, dict] = {}
        for recorded in connection.frames:
            message = decode_exact(recorded.text)
            if isinstance(message, dict):
                if message.get("event") == "subscribed":
                    channels[message["chanId"]] = message
                continue
            if isinstance(message[1], str):
                counts["trades"] += message[1] == "te"
                continue
            channel, body = channels[message[0]], message[1]
            # A raw-book snapshot lists every order (open), an update is one order's event; P0 likewise by level.
            size = len(body) if is_snapshot_body(body) else 1
            if channel["channel"] == "book" and channel.get("prec") == "R0":
                counts["lob_l3"] += size
            elif channel["channel"] == "book":
                counts["lob"] += size
            elif channel["channel"] == "trades":
                counts["trades"] += size
            elif channel["channel"] == "ticker":
                counts["ticker"] += 1
            elif channel["channel"] == "candles":
                counts["candle"] += size
    return dict(counts)


# -- the recording -------------------------------------------------------------------------


def replay(folder: Path) -> tuple[BitfinexStandardiser, list, Counter[str], int]:
    """Every recorded frame through the connector's keys and the standardiser, as in production."""
    connector = feed(*SYMBOLS)
    symbol_map = recorded_symbol_map(folder)
    connector.normalised_of = {symbol_map[s]: s for s in SYMBOLS}
    frames = 0
    for index, connection in enumerate(Recording(folder).connections):
        for recorded in connection.frames:
            connector._on_frame(recorded.text.encode(), ATOM, f"bitfinex.{index}.1")
            frames += 1
    std = BitfinexStandardiser()
    outputs = []
    for key, raw, atom, _, symbol in connector.sink.rows:
        outputs += std.standardise(raw, atom, key, symbol)
    return std, outputs, Counter(o.topic for o in outputs), frames


def recorded_symbol_map(folder: Path) -> dict[str, str]:
    symbol_map: dict[str, str] = {}
    for url, body in http_bodies(folder).items():
        if "pub:list:pair:" in url:
            symbol_map.update(Bitfinex.parse_symbols(body))
    return symbol_map


def book_snapshots(folder: Path) -> int:
    """P0 book snapshots among the frames: the first data frame of each book channel (heartbeats aside)."""
    snapshots = 0
    for connection in Recording(folder).connections:
        books: set[int] = set()
        for recorded in connection.frames:
            message = decode_exact(recorded.text)
            if isinstance(message, dict) and message.get("event") == "subscribed" and message["channel"] == "book":
                books.add(message["chanId"])
            elif isinstance(message, list) and message[0] in books and isinstance(message[1], list):
                snapshots += is_snapshot_body(message[1])
    return snapshots


def test_recording_is_fully_understood(recordings: Path) -> None:
    """Every frame gives records or a named skip.  Each book starts with its snapshot and its numbers rise,
    so no update is skipped and no ``book_resync`` is asked for (it would be a topic the count has not)."""
    std, outputs, produced, frames = replay(recordings / RECORDING)
    assert frames == 1693
    assert dict(produced) == expected_counts(recordings / RECORDING)
    assert produced == {"lob": 2926, "trades": 210, "ticker": 21}
    assert dict(std.skipped) == {"info event": 1, "conf ack": 1, "subscription ack": 21, "heartbeat": 42}
    assert std.level_checks.stats() == {"snapshots": book_snapshots(recordings / RECORDING)} == {"snapshots": 7}
    assert std.book_checks.stats() == {}
    assert {o.record["symbol"] for o in outputs} == set(SYMBOLS)


def test_recorded_records_match_their_frames(recordings: Path) -> None:
    """Values checked by hand against the recorded frames."""
    _, outputs, _, _ = replay(recordings / RECORDING)
    # [232949,[0.068965,60157.36709703,0.0774,48578.50804052,0.001969,0.0262,0.076989,...],1] (tBFTUSD ticker)
    ticker = next(o for o in outputs if o.topic == "ticker")
    assert ticker.key == "bitfinex_BFT.USD"
    assert ticker.record == {
        "exchange": "bitfinex", "symbol": "BFT.USD", "bid_price": Decimal("0.068965"), "bid_size": None,
        "ask_price": Decimal("0.0774"), "ask_size": None, "last_price": Decimal("0.076989"), "last_size": None,
        "sequence": 1, "event_timestamp": ATOM_MS, "atom_timestamp": ATOM,
    }
    # [232959,[[669899159,1618665870435,166.391496,0.076989],...,[669898213,1618661110078,-2272.50116833,0.068961],
    #  ...],8] (tBFTUSD trades snapshot)
    trades = {o.record["trade_id"]: o.record for o in outputs if o.topic == "trades"}
    assert trades["669899159"] == {
        "exchange": "bitfinex", "symbol": "BFT.USD", "trade_id": "669899159", "price": Decimal("0.076989"),
        "size": Decimal("166.391496"), "taker_side": "buy", "sequence": 8, "origin": None, "event_timestamp": 1618665870435,
        "atom_timestamp": ATOM,
    }
    assert trades["669898213"]["taker_side"] == "sell"
    assert trades["669898213"]["size"] == Decimal("2272.50116833")
    # [232957,[[60400,1,0.68826974],...],...] (tTESTBTC:TESTUSD P0 snapshot) and [225206,[215350,0,1],18] (tDOGUSD)
    levels = [o.record for o in outputs if o.topic == "lob"]
    first = next(r for r in levels if r["symbol"] == "TESTBTC.TESTUSD")
    assert (first["side"], first["price"], first["size"], first["is_snapshot"]) == (
        "bid", Decimal(60400), Decimal("0.68826974"), True
    )
    removed = next(r for r in levels if r["symbol"] == "DOG.USD" and r["sequence"] == 18)
    assert removed == {
        "exchange": "bitfinex", "symbol": "DOG.USD", "side": "bid", "price": Decimal(215350), "size": Decimal(0),
        "is_snapshot": False, "sequence": 18, "prev_sequence": None, "checksum": None, "event_timestamp": None,
        "atom_timestamp": ATOM,
    }


def test_symbol_map_from_the_recorded_pair_lists(recordings: Path) -> None:
    bodies = http_bodies(recordings / RECORDING)
    symbol_map = recorded_symbol_map(recordings / RECORDING)
    pairs = [pair for url, body in bodies.items() if "pub:list:pair:" in url for pair in orjson.loads(body)[0]]
    assert len(symbol_map) == len(pairs) == 293 + 35
    assert symbol_map["BTC.USD"] == "tBTCUSD"
    assert symbol_map["BTC.USDT"] == "tBTCUST"
    assert symbol_map["AAVE.USDT"] == "tAAVE:UST"
    assert symbol_map["TESTBTC.TESTUSD"] == "tTESTBTC:TESTUSD"
    assert symbol_map["BTC.USDT-PERP"] == "tBTCF0:USTF0"
    assert symbol_map["ETH.BTC-PERP"] == "tETHF0:BTCF0"
    assert symbol_map["TESTBTC.TESTUSDT-PERP"] == "tTESTBTCF0:TESTUSDTF0"
    assert feed(*SYMBOLS).resolve(symbol_map) == [
        "tBFTUSD", "tIOTETH", "tDOGUSD", "tMNABTC", "tODEUSD", "tTESTBTC:TESTUSD", "tSNGUSD"
    ]


def test_the_recorded_symbols_fit_one_connection_as_recorded() -> None:
    connector = feed(*SYMBOLS)
    exchange_symbols = [f"t{s.replace('.', '')}" for s in SYMBOLS]
    [group] = connector.connection_groups(exchange_symbols)
    assert len(connector.subscribe_messages(group)) == 22  # as recorded: conf + 7 symbols x 3 channels


# -- connector ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pair", "normalised"),
    [
        ("BTCUSD", "BTC.USD"),
        ("ETHUST", "ETH.USDT"),
        ("TESTBTC:TESTUSD", "TESTBTC.TESTUSD"),
        ("BTCF0:USTF0", "BTC.USDT-PERP"),
        ("EUROPE50IXF0:USTF0", "EUROPE50IX.USDT-PERP"),
        ("IOTETH", "IOT.ETH"),
    ],
)
def test_pairs_are_normalised(pair: str, normalised: str) -> None:
    assert normalise_pair(pair) == normalised
    assert BitfinexStandardiser().convert_symbol(f"t{pair}") == normalised


@pytest.mark.parametrize("bad", ["BTCUSDT", "fUSD", "A:B:C", "btc:usd"])
def test_pairs_that_are_not_pairs_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        BitfinexStandardiser().convert_symbol(bad if bad.startswith("f") else f"t{bad}")


def test_unknown_symbol_names_near_matches() -> None:
    symbol_map = Bitfinex.parse_symbols('[["BTCUSD","BTCUST","ETHUSD"]]')
    with pytest.raises(UnknownSymbol, match=r"bitfinex does not list BTC.EUR \(did you mean: BTC.USD"):
        feed("BTC.EUR").resolve(symbol_map)


def test_subscribe_asks_for_sequences_and_times_then_each_channel() -> None:
    messages = [orjson.loads(m) for m in feed("BTC.USD").subscribe_messages(["tBTCUSD", "tETHUSD"])]
    assert messages[0] == {"event": "conf", "flags": 65536 + 32768}
    assert messages[1:] == [
        {"event": "subscribe", "channel": "book", "symbol": "tBTCUSD", "prec": "R0", "len": "100"},
        {"event": "subscribe", "channel": "book", "symbol": "tETHUSD", "prec": "R0", "len": "100"},
        {"event": "subscribe", "channel": "trades", "symbol": "tBTCUSD"},
        {"event": "subscribe", "channel": "trades", "symbol": "tETHUSD"},
        {"event": "subscribe", "channel": "ticker", "symbol": "tBTCUSD"},
        {"event": "subscribe", "channel": "ticker", "symbol": "tETHUSD"},
    ]


def test_optional_channels_p0_book_and_candles() -> None:
    connector = feed("BTC.USD", channels=["book", "candles"])
    _, book, candles = (orjson.loads(m) for m in connector.subscribe_messages(["tBTCUSD"]))
    assert book == {"event": "subscribe", "channel": "book", "symbol": "tBTCUSD", "prec": "P0", "freq": "F0",
                    "len": "100"}
    assert candles == {"event": "subscribe", "channel": "candles", "key": "trade:1m:tBTCUSD"}
    with pytest.raises(UserError, match="bitfinex has no channel 'status'"):
        feed("BTC.USD", channels=["status"]).subscribe_messages(["tBTCUSD"])


def test_connections_carry_at_most_25_channels() -> None:
    symbols = [f"t{n}" for n in range(20)]
    assert [len(g) for g in feed("BTC.USD").connection_groups(symbols)] == [8, 8, 4]
    four = feed("BTC.USD", channels=["rawbook", "trades", "ticker", "candles"])
    assert [len(g) for g in four.connection_groups(symbols)] == [6, 6, 6, 2]


def keys_of(connector: Bitfinex, frames: list[bytes], connection: str = CONNECTION) -> list[str]:
    connector.sink.rows.clear()
    for raw in frames:
        connector._on_frame(raw, ATOM, connection)
    return [row[0] for row in connector.sink.rows]


def test_frame_keys_follow_the_subscribed_events_of_each_connection() -> None:
    connector = feed("BTC.USD")
    connector.normalised_of = {"tBTCUSD": "BTC.USD"}
    keys = keys_of(connector, [
        b'[17,"hb",1]',
        b'{"event":"subscribed","channel":"book","chanId":17,"symbol":"tBTCUSD","prec":"R0","len":"100"}',
        b'[17,[34753006045,0,-1],2,1574694475039]',
        b'{"event":"subscribed","channel":"candles","chanId":18,"key":"trade:1m:tTESTBTC:TESTUSD"}',
        b"[18,[1574698260000,7379.785503,7383.8,7388.3,7379.785503,1.68829482],3]",
        b'{"event":"subscribed","channel":"book","chanId":19,"symbol":"tBTCUSD","prec":"P0","len":"100"}',
        b"[19,[7254.5,0,1],4]",
        b'{"event":"subscribed","channel":"trades","chanId":20,"symbol":"tBTCUSD","pair":"BTCUSD"}',
        b'[20,"te",[401597393,1574694475039,0.005,7244.9],5]',
        b'{"event":"info","version":2,"platform":{"status":1}}',
        b'{"event":"subscribed", ',
        b"[oops]",
    ])
    assert keys == [
        "bitfinex_all_unknownchannel",
        "bitfinex_all_control",
        "bitfinex_tBTCUSD_rawbook",
        "bitfinex_all_control",
        "bitfinex_tTESTBTC:TESTUSD_candles1m",
        "bitfinex_all_control",
        "bitfinex_tBTCUSD_book",
        "bitfinex_all_control",
        "bitfinex_tBTCUSD_trades",
        "bitfinex_all_control",
        "bitfinex_all_unparsed",
        "bitfinex_all_unparsed",
    ]
    assert connector.sink.rows[2][4] == "BTC.USD"  # the symbol header of a subscribed symbol
    # Another connection has its own channel ids; a reconnect forgets the old ones.
    assert keys_of(connector, [b"[17,[1,2,3],6]"], "bitfinex.1.1") == ["bitfinex_all_unknownchannel"]
    assert keys_of(connector, [b"[17,[1,2,3],7]"]) == ["bitfinex_tBTCUSD_rawbook"]
    assert keys_of(connector, [b"[17,[1,2,3],1]"], "bitfinex.0.2") == ["bitfinex_all_unknownchannel"]


def test_restart_and_maintenance_end_ask_for_a_reconnect() -> None:
    connector = feed("BTC.USD")
    assert connector.reply(b'{"event":"info","code":20051,"msg":"Stopping. Please try to reconnect"}') is RECONNECT
    assert connector.reply(b'{"event":"info","code":20061,"msg":"Maintenance ended"}') is RECONNECT
    assert connector.reply(b'{"event":"info","code":20060,"msg":"Maintenance started"}') is None
    assert connector.reply(b'{"event":"info","version":2,"platform":{"status":1}}') is None
    assert connector.reply(b'[17,"hb",1]') is None


# -- standardiser: the current protocol ------------------------------------------------------

RAW_KEY = "bitfinex_tBTCUSD_rawbook"
TIME = 1_574_694_475_039


@pytest.fixture
def std() -> BitfinexStandardiser:
    return BitfinexStandardiser()


def records(std: BitfinexStandardiser, value: Any, key: str = RAW_KEY) -> list[dict]:
    return [o.record for o in std.standardise(frame(value) if not isinstance(value, bytes) else value, ATOM, key)]


def test_raw_book_snapshot_then_updates(std: BitfinexStandardiser) -> None:
    """docs.bitfinex.com ws-public-raw-books: [433290,[[34753002978,7294.7,1.54340371],...]] and
    [433290,[34753006045,0,-1]] (price 0: remove), with SEQ_ALL and TIMESTAMP appended."""
    [opened] = std.standardise(b"[433290,[[34753002978,7294.7,1.54340371]],1,1574694475039]", ATOM, RAW_KEY)
    assert opened.topic == "lob_l3"
    assert opened.key == "bitfinex_BTC.USD"
    assert opened.record == {
        "exchange": "bitfinex", "symbol": "BTC.USD", "event_type": "open", "order_id": "34753002978",
        "side": "bid", "price": Decimal("7294.7"), "size": Decimal("1.54340371"), "reason": None,
        "is_snapshot": True, "sequence": 1, "prev_sequence": None, "event_timestamp": TIME, "atom_timestamp": ATOM,
    }
    [new] = records(std, b"[433290,[34753006045,7295.1,-0.5],2,1574694475040]")
    assert (new["event_type"], new["side"], new["size"], new["event_timestamp"]) == (
        "open", "ask", Decimal("0.5"), TIME + 1
    )
    [changed] = records(std, b"[433290,[34753006045,7295.1,-0.25],3,1574694475041]")
    assert (changed["event_type"], changed["size"], changed["sequence"]) == ("change", Decimal("0.25"), 3)
    [done] = records(std, b"[433290,[34753006045,0,-1],4,1574694475042]")
    assert done == {
        "exchange": "bitfinex", "symbol": "BTC.USD", "event_type": "done", "order_id": "34753006045",
        "side": "ask", "price": Decimal("7295.1"), "size": Decimal(0), "reason": None, "is_snapshot": False,
        "sequence": 4, "prev_sequence": None, "event_timestamp": TIME + 3, "atom_timestamp": ATOM,
    }
    # An order removed that this state never saw (e.g. after a processor restart): done, price unknown.
    [unknown] = records(std, b"[433290,[1,0,1],5,1574694475043]")
    assert (unknown["event_type"], unknown["side"], unknown["price"]) == ("done", "bid", None)


def test_a_new_raw_snapshot_replaces_the_book(std: BitfinexStandardiser) -> None:
    """After a resubscribe the snapshot lists every order again, ``open`` with ``is_snapshot``: a consumer
    replaces its book, so orders gone meanwhile are gone; updates then follow the new order ids."""
    records(std, b"[9,[[1,100.5,2],[2,101,-3],[3,99,1]],1,1574694475039]")
    resnapshot = records(std, b"[9,[[1,100.5,2],[2,101,-1],[4,98,5]],50,1574694475100]")
    assert [(r["event_type"], r["order_id"], r["size"], r["is_snapshot"], r["sequence"]) for r in resnapshot] == [
        ("open", "1", Decimal(2), True, 50),
        ("open", "2", Decimal(1), True, 50),
        ("open", "4", Decimal(5), True, 50),
    ]
    [done] = records(std, b"[9,[3,0,1],51,1574694475101]")
    assert (done["event_type"], done["price"]) == ("done", None)
    [changed] = records(std, b"[9,[4,98,2],52,1574694475102]")
    assert (changed["event_type"], changed["size"]) == ("change", Decimal(2))
    assert records(std, b"[9,[],53,1574694475103]") == []
    assert std.skipped == {"raw book snapshot: empty book": 1}


def test_recorded_flags_only_sequence_time_falls_back_to_receipt(std: BitfinexStandardiser) -> None:
    [opened] = records(std, b"[9,[7,100,1],12]")
    assert (opened["sequence"], opened["event_timestamp"]) == (12, ATOM_MS)
    [level] = records(std, b"[9,[7254.5,2,-1.5],13]", "bitfinex_tBTCUSD_book")
    assert (level["side"], level["size"], level["event_timestamp"], level["is_snapshot"]) == (
        "ask", Decimal("1.5"), None, False
    )


def test_trades_te_published_tu_skipped(std: BitfinexStandardiser) -> None:
    """docs.bitfinex.com ws-public-trades: snapshot [17470,[[401597393,1574694475039,0.005,7244.9],...]];
    updates [CHAN_ID,"te"|"tu",[ID,MTS,AMOUNT,PRICE]]."""
    key = "bitfinex_tBTCUSD_trades"
    [snapshot] = records(std, b"[17470,[[401597393,1574694475039,0.005,7244.9]],1,1574694475050]", key)
    assert snapshot == {
        "exchange": "bitfinex", "symbol": "BTC.USD", "trade_id": "401597393", "price": Decimal("7244.9"),
        "size": Decimal("0.005"), "taker_side": "buy", "sequence": 1, "origin": None, "event_timestamp": TIME, "atom_timestamp": ATOM,
    }
    [sold] = records(std, b'[17470,"te",[401597395,1574694478808,-0.0001,7245.3],2,1574694478810]', key)
    assert (sold["trade_id"], sold["taker_side"], sold["size"], sold["sequence"]) == (
        "401597395", "sell", Decimal("0.0001"), 2
    )
    assert records(std, b'[17470,"tu",[401597395,1574694478808,-0.0001,7245.3],3,1574694480000]', key) == []
    assert records(std, b'[17470,"hb",4,1574694480000]', key) == []
    assert records(std, b"[17470,[],5,1574694480001]", key) == []
    assert dict(std.skipped) == {
        "tu: repeats a te trade once it is stored": 1, "heartbeat": 1, "trades: empty snapshot": 1
    }


def test_candles_snapshot_and_update(std: BitfinexStandardiser) -> None:
    """docs.bitfinex.com ws-public-candles: [343351,[[1574698260000,7379.785503,7383.8,7388.3,7379.785503,
    1.68829482],...]] (MTS, OPEN, CLOSE, HIGH, LOW, VOLUME)."""
    key = "bitfinex_tBTCUSD_candles1m"
    snapshot = records(std, b"[343351,[[1574698260000,7379.785503,7383.8,7388.3,7379.785503,1.68829482],"
                            b"[1574698200000,7399.9,7379.7,7399.9,7371.8,41.63633658]],1,1574698275000]", key)
    assert snapshot[0] == {
        "exchange": "bitfinex", "symbol": "BTC.USD", "origin": "exchange", "interval": "1m",
        "start": 1574698260000, "end": 1574698320000, "open": Decimal("7379.785503"), "high": Decimal("7388.3"),
        "low": Decimal("7379.785503"), "close": Decimal("7383.8"), "volume": Decimal("1.68829482"),
        "quote_volume": None, "trade_count": None, "vwap": None, "first_trade_timestamp": None,
        "last_trade_timestamp": None, "closed": False, "event_timestamp": 1574698275000, "atom_timestamp": ATOM,
    }
    assert snapshot[1]["closed"] is True
    [update] = records(std, b"[343351,[1574698320000,7383.8,7390,7390,7383.8,0.5],2,1574698380000]", key)
    assert (update["start"], update["closed"]) == (1574698320000, True)


def test_control_events_are_counted_skips(std: BitfinexStandardiser) -> None:
    for event in (
        b'{"event":"info","version":2,"serverId":"x","platform":{"status":1}}',
        b'{"event":"conf","status":"OK","flags":98304}',
        b'{"event":"subscribed","channel":"ticker","chanId":1,"symbol":"tBTCUSD","pair":"BTCUSD"}',
        b'{"event":"unsubscribed","status":"OK","chanId":1}',
    ):
        assert std.standardise(event, ATOM, "bitfinex_all_control") == []
    assert sum(std.skipped.values()) == 4


@pytest.mark.parametrize(
    ("raw", "key", "error"),
    [
        (b"[17,[1,2,", RAW_KEY, "malformed JSON"),
        (b'"hello"', RAW_KEY, "message has no type"),
        (b'{"event":"error","msg":"subscribe: dup","code":10301}', RAW_KEY, "Bitfinex error event 10301: subscribe"),
        (b'[17,"zz",1]', RAW_KEY, "unknown message type 'zz'"),
        (b"[17,[1,100,1],1]", None, "needs its raw key from the connector"),
        (b"[17,[1,100,1],1]", "bitfinex_all_unknownchannel", "channel 17 whose subscribed event was not seen"),
        (b"[17,[1,100,1],1]", "bitfinex_tBTCUSD_status", "unknown message type 'status'"),
        (b"[17,[1,100],1]", RAW_KEY, "rawbook message has a mistyped field: list index out of range"),
        (b"[17,[1,100,0],1]", RAW_KEY, "amount 0 has no side"),
        (b'[17,[1,"x",1],1]', RAW_KEY, "rawbook message has a mistyped field"),
        (b"[17,[1.5,100,1],1]", RAW_KEY, "expected an integer, got NumberText '1.5'"),
        (b"[17,[1,100,1],1.5]", RAW_KEY, "expected an integer, got NumberText '1.5'"),
        (b"[17,[1,100,1],1]", "bitfinex_BTCUSD_rawbook", "expected a Bitfinex trading symbol"),
        (b"[17,[1,2,3,4,5,6],1]", "bitfinex_tBTCUSD_candles1M", "unsupported candle timeframe '1M'"),
        (b"[17,[1,2,3,4],1]", "bitfinex_tBTCUSD_trades", "untagged trades data must be a snapshot"),
        (b"[17,{},1]", "bitfinex_tBTCUSD_ticker", "ticker message lacks field 0"),
    ],
)
def test_bad_input_raises_a_precise_error(std: BitfinexStandardiser, raw: bytes, key: str | None, error: str) -> None:
    with pytest.raises(StandardiseError, match=re.escape(error)):
        std.standardise(raw, ATOM, key)


def test_key_feed_and_symbol_split_back() -> None:
    assert split_raw_key("bitfinex_tTESTBTC:TESTUSD_candles1m") == ("bitfinex", "tTESTBTC:TESTUSD", "candles1m")
