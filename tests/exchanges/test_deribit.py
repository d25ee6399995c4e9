"""Deribit JSON-RPC websocket on its real recording (July 2021: BTC and ETH options; book, ticker, trades ``.raw``).

The recording's ``subscription.json`` names instruments the cryptofeed way (``BTC-8000-21U24-put``); the
frames and the subscribe use Deribit's own names (``BTC-24SEP21-8000-P``), which this project maps to
``BTC.USD-20210924-8000-P``.  Since the recording, Deribit serves ``raw`` channels to authorised
connections only: the connector subscribes ``100ms`` channels (same messages) unless credentials are set.
Trades, candles and perpetual tickers (funding) do not occur in the recording: they are tested with the
examples of docs.deribit.com (trades.{instrument}.{interval}, chart.trades, public/ticker).
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
from l3_atom.off_chain.deribit import Deribit, normalise_instrument, subscribe_requests
from l3_atom.sim.replay import Recording
from l3_atom.stream_processing.standardiser import Output, StandardiseError, decode_exact
from l3_atom.stream_processing.standardisers.deribit import DeribitStandardiser
from tests.recorded import http_bodies

SOURCE = "deribit"
RECORDING = "deribit"
SYMBOLS = [
    "BTC.USD-20210924-8000-P",
    "BTC.USD-20210730-24000-P",
    "ETH.USD-20210730-2800-C",
    "BTC.USD-20211231-34000-P",
    "BTC.USD-20210924-34000-P",
    "BTC.USD-20220624-15000-C",
    "BTC.USD-20211231-300000-C",
    "ETH.USD-20210827-4000-P",
    "BTC.USD-20220325-30000-C",
    "ETH.USD-20210723-2300-C",
]
ATOM = 1_626_993_723_846_980
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)


def feed(*symbols: str, channels: list[str] | None = None) -> Deribit:
    return Deribit(symbols, None, SETTINGS, channels=channels)


# -- independent count ---------------------------------------------------------------------


def expected_counts(folder: Path) -> dict[str, int]:
    """Records per topic from the frames; open interest and funding count when they change per instrument."""
    counts: Counter[str] = Counter()
    last: dict[tuple[str, str], Any] = {}
    for connection in Recording(folder).connections:
        for recorded in connection.frames:
            message = decode_exact(recorded.text)
            if message.get("method") != "subscription":
                continue
            channel, data = message["params"]["channel"], message["params"]["data"]
            kind, instrument = channel.split(".")[0], channel.split(".")[-2]
            if kind == "book":
                counts["lob"] += len(data["bids"]) + len(data["asks"])
            elif kind == "trades":
                counts["trades"] += len(data)
            elif kind == "chart":
                counts["candle"] += 1
            elif kind == "ticker":
                counts["ticker"] += 1
                for field, topic in (("open_interest", "open_interest"), ("current_funding", "funding_rate")):
                    value = data.get(field)
                    if value is not None and last.get((instrument, field)) != value:
                        last[instrument, field] = value
                        counts[topic] += 1
    return dict(counts)


def book_breaks(folder: Path) -> int:
    """Book changes whose ``prev_change_id`` is not the instrument's last ``change_id``: each asks for a resync."""
    breaks = 0
    last: dict[str, int] = {}
    for connection in Recording(folder).connections:
        for recorded in connection.frames:
            message = decode_exact(recorded.text)
            channel = message.get("params", {}).get("channel", "")
            if message.get("method") != "subscription" or not channel.startswith("book."):
                continue
            data = message["params"]["data"]
            if data["type"] == "change" and data["prev_change_id"] != last.get(channel, data["prev_change_id"]):
                breaks += 1
            last[channel] = data["change_id"]
    return breaks


# -- the recording -------------------------------------------------------------------------


def recorded_symbol_map(folder: Path) -> dict[str, str]:
    symbol_map: dict[str, str] = {}
    for body in http_bodies(folder).values():
        symbol_map.update(Deribit.parse_symbols(body))
    return symbol_map


def replay(folder: Path) -> tuple[DeribitStandardiser, list[list[Output]]]:
    """The outputs of every recorded frame, through the connector's keys, its symbol header and the standardiser."""
    connector = feed(*SYMBOLS)
    symbol_map = recorded_symbol_map(folder)
    normalised_of = {symbol_map[s]: s for s in SYMBOLS}
    std = DeribitStandardiser()
    per_frame = []
    for connection in Recording(folder).connections:
        for recorded in connection.frames:
            raw = recorded.text.encode()
            key = connector.frame_key(raw)
            per_frame.append(std.standardise(raw, ATOM, key, normalised_of.get(key.split("_")[1])))
    return std, per_frame


def test_recording_is_fully_understood(recordings: Path) -> None:
    """Every frame gives records or a named skip; each book's changes chain on its snapshot: no resync."""
    std, per_frame = replay(recordings / RECORDING)
    outputs = [out for outs in per_frame for out in outs]
    produced = Counter(o.topic for o in outputs)
    assert len(per_frame) == 136 == sum(1 for outs in per_frame if outs) + sum(std.skipped.values())
    assert dict(produced) == expected_counts(recordings / RECORDING)
    assert produced == {"lob": 149, "ticker": 89, "open_interest": 10}
    assert book_breaks(recordings / RECORDING) == produced["book_resync"] == 0
    assert dict(std.skipped) == {"rpc result (subscribe, set_heartbeat, test, auth)": 1,
                                 "book snapshot without levels": 1}
    assert std.book_checks.stats() == {"snapshots": 10}
    assert {o.record["symbol"] for o in outputs} == set(SYMBOLS)


def test_recorded_records_match_their_frames(recordings: Path) -> None:
    """Values checked by hand against the recorded frames."""
    _, per_frame = replay(recordings / RECORDING)
    outputs = [out for outs in per_frame for out in outs]
    # ticker.ETH-30JUL21-2800-C.raw: timestamp 1626993723632, best_bid 0.0015 x 4714.0, best_ask 0.0025 x 873.0,
    # last_price 0.002, open_interest 12685.0
    ticker, open_interest = outputs[0], outputs[1]
    assert ticker.key == "deribit_ETH.USD-20210730-2800-C"
    assert ticker.record == {
        "exchange": "deribit", "symbol": "ETH.USD-20210730-2800-C", "bid_price": Decimal("0.0015"),
        "bid_size": Decimal("4714.0"), "ask_price": Decimal("0.0025"), "ask_size": Decimal("873.0"),
        "last_price": Decimal("0.002"), "last_size": None, "sequence": None, "event_timestamp": 1626993723632,
        "atom_timestamp": ATOM,
    }
    assert open_interest.topic == "open_interest"
    assert open_interest.record == {
        "exchange": "deribit", "symbol": "ETH.USD-20210730-2800-C", "open_interest": Decimal("12685.0"),
        "event_timestamp": 1626993723632, "atom_timestamp": ATOM,
    }
    levels = [o.record for o in outputs if o.topic == "lob"]
    # book.ETH-30JUL21-2800-C.raw snapshot, change_id 13169025645: bids [["new",0.0015,4714.0],...]
    assert levels[0] == {
        "exchange": "deribit", "symbol": "ETH.USD-20210730-2800-C", "side": "bid", "price": Decimal("0.0015"),
        "size": Decimal("4714.0"), "is_snapshot": True, "sequence": 13169025645, "prev_sequence": None,
        "checksum": None, "event_timestamp": 1626993723632, "atom_timestamp": ATOM,
    }
    # book.BTC-24SEP21-8000-P.raw change, change_id 33195894355: asks [["new",0.001,2.6]]
    # (prev_change_id 33195894164, the snapshot's)
    [change] = [r for r in levels if r["sequence"] == 33195894355]
    assert (change["symbol"], change["side"], change["price"], change["size"], change["is_snapshot"]) == (
        "BTC.USD-20210924-8000-P", "ask", Decimal("0.001"), Decimal("2.6"), False
    )
    assert change["prev_sequence"] == 33195894164
    assert any(r["size"] == 0 and not r["is_snapshot"] for r in levels)  # the recorded "delete" actions


def test_symbol_map_from_the_recorded_instruments(recordings: Path) -> None:
    bodies = http_bodies(recordings / RECORDING)
    symbol_map = recorded_symbol_map(recordings / RECORDING)
    instruments = [i for body in bodies.values() for i in orjson.loads(body)["result"]]
    assert len(symbol_map) == len(instruments) == 398 + 426 + 177 + 16
    assert symbol_map["BTC.USD-PERP"] == "BTC-PERPETUAL"
    assert symbol_map["BTC.USD-20220325"] == "BTC-25MAR22"
    assert symbol_map["BTC.USD-20210924-8000-P"] == "BTC-24SEP21-8000-P"
    assert symbol_map["ETH.USD-20210806-2000-C"] == "ETH-6AUG21-2000-C"
    assert symbol_map["SOL.USDC-PERP"] == "SOL_USDC-PERPETUAL"
    for instrument in instruments:  # the names agree with the listed fields
        symbol = normalise_instrument(instrument["instrument_name"])
        assert symbol.startswith(f"{instrument['base_currency']}.")
    connector = feed(*SYMBOLS)
    assert connector.resolve(symbol_map)[:2] == ["BTC-24SEP21-8000-P", "BTC-30JUL21-24000-P"]
    assert len(connector.connection_groups(connector.resolve(symbol_map))) == 1  # one connection, as recorded


# -- connector ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("BTC-PERPETUAL", "BTC.USD-PERP"),
        ("BTC-27DEC24", "BTC.USD-20241227"),
        ("BTC-27DEC24-100000-C", "BTC.USD-20241227-100000-C"),
        ("ETH-3JAN25-3500-P", "ETH.USD-20250103-3500-P"),
        ("BTC_USDC-PERPETUAL", "BTC.USDC-PERP"),
        ("XRP_USDC-30JUN23-0d625-C", "XRP.USDC-20230630-0.625-C"),
        ("BTC_USDC", "BTC.USDC"),
    ],
)
def test_instrument_names_are_normalised(name: str, normalised: str) -> None:
    assert normalise_instrument(name) == normalised
    assert DeribitStandardiser().convert_symbol(name) == normalised


@pytest.mark.parametrize("bad", ["BTC-FS-27DEC24_PERP", "BTC", "BTC-32DEC24", "BTC-27XYZ24", "BTC-27DEC24-1-X"])
def test_names_that_are_no_single_instrument_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_instrument(bad)


def test_unknown_symbol_names_near_matches() -> None:
    body = orjson.dumps({"result": [{"instrument_name": "BTC-PERPETUAL"}, {"instrument_name": "ETH-PERPETUAL"}]})
    with pytest.raises(UnknownSymbol, match=r"deribit does not list BTC.USDT-PERP \(did you mean: BTC.USD-PERP"):
        feed("BTC.USDT-PERP").resolve(Deribit.parse_symbols(body.decode()))


def test_public_subscribe_uses_100ms_channels_after_heartbeats() -> None:
    messages = [orjson.loads(m) for m in subscribe_requests(["BTC-PERPETUAL"], Deribit.channels, {})]
    assert messages == [
        {"jsonrpc": "2.0", "id": 1, "method": "public/set_heartbeat", "params": {"interval": 30}},
        {"jsonrpc": "2.0", "id": 4, "method": "public/subscribe", "params": {"channels": [
            "book.BTC-PERPETUAL.100ms", "trades.BTC-PERPETUAL.100ms", "ticker.BTC-PERPETUAL.100ms",
            "chart.trades.BTC-PERPETUAL.1",
        ]}},
    ]


def test_credentials_authenticate_for_raw_channels() -> None:
    env = {"DERIBIT_CLIENT_ID": "id", "DERIBIT_CLIENT_SECRET": "secret"}
    _, auth, subscribe = (orjson.loads(m) for m in subscribe_requests(["BTC-PERPETUAL"], ["book"], env))
    assert auth == {"jsonrpc": "2.0", "id": 2, "method": "public/auth",
                    "params": {"grant_type": "client_credentials", "client_id": "id", "client_secret": "secret"}}
    assert subscribe["params"]["channels"] == ["book.BTC-PERPETUAL.raw"]


def test_long_channel_lists_are_split_into_requests() -> None:
    instruments = [f"BTC-27DEC24-{strike}-C" for strike in range(60)]
    requests = [orjson.loads(m) for m in subscribe_requests(instruments, ["book", "ticker"], {})][1:]
    assert [(r["id"], len(r["params"]["channels"])) for r in requests] == [(4, 100), (5, 20)]
    with pytest.raises(UserError, match="deribit has no channel 'quote'"):
        subscribe_requests(instruments, ["quote"], {})


@pytest.mark.parametrize(
    ("frame", "key"),
    [
        (b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.raw","data":{}}}',
         "deribit_BTC-PERPETUAL_book"),
        ((b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC_USDC-PERPETUAL.100ms",'
          b'"data":{}}}'), "deribit_BTC_USDC-PERPETUAL_ticker"),
        (b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"chart.trades.BTC-PERPETUAL.1","data":{}}}',
         "deribit_BTC-PERPETUAL_chart1"),
        (b'{"jsonrpc":"2.0","id":4,"result":["book.BTC-PERPETUAL.raw"]}', "deribit_all_control"),
        (b'{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}', "deribit_all_control"),
        (b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book"}}', "deribit_all_unparsed"),
        (b'{"jsonrpc":', "deribit_all_unparsed"),
        (b"[1,2]", "deribit_all_unparsed"),
    ],
)
def test_frame_key(frame: bytes, key: str) -> None:
    assert feed("BTC.USD-PERP").frame_key(frame) == key


def test_test_request_is_answered_with_public_test() -> None:
    connector = feed("BTC.USD-PERP")
    answer = connector.reply(b'{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}')
    assert orjson.loads(answer) == {"jsonrpc": "2.0", "id": 3, "method": "public/test", "params": {}}
    assert connector.reply(b'{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}') is None
    assert connector.reply(b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"x"}}') is None


# -- standardiser: documented messages --------------------------------------------------------


@pytest.fixture
def std() -> DeribitStandardiser:
    return DeribitStandardiser()


def notification(channel: str, data: bytes | Any) -> bytes:
    """A subscription notification around ``data``: JSON text as Deribit wrote it, or a value to encode."""
    text = data if isinstance(data, bytes) else orjson.dumps(data)
    return b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"%s","data":%s}}' % (channel.encode(), text)


def records(std: DeribitStandardiser, raw: bytes) -> list[tuple[str, dict]]:
    return [(o.topic, o.record) for o in std.standardise(raw, ATOM)]


def test_trades_direction_is_the_takers(std: DeribitStandardiser) -> None:
    """docs.deribit.com trades.{instrument_name}.{interval} example."""
    raw = (b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.100ms","data":'
           b'[{"trade_seq":30289442,"trade_id":"48079269","timestamp":1590484512188,"tick_direction":2,'
           b'"price":8950,"mark_price":8948.9,"instrument_name":"BTC-PERPETUAL","index_price":8955.88,'
           b'"direction":"sell","amount":10}]}}')
    [(topic, trade)] = records(std, raw)
    assert topic == "trades"
    assert trade == {
        "exchange": "deribit", "symbol": "BTC.USD-PERP", "trade_id": "48079269", "price": Decimal(8950),
        "size": Decimal(10), "taker_side": "sell", "sequence": 30289442, "origin": None, "event_timestamp": 1590484512188,
        "atom_timestamp": ATOM,
    }
    assert records(std, notification("trades.BTC-PERPETUAL.100ms", [])) == []
    assert std.skipped["trades notification without trades"] == 1


def test_perpetual_ticker_gives_funding_and_open_interest_when_they_change(std: DeribitStandardiser) -> None:
    """docs.deribit.com public/ticker example (the ticker channel sends the same fields)."""
    ticker = (
        b'{"best_ask_amount":53040,"best_ask_price":36290,"best_bid_amount":4600,"best_bid_price":36289.5,'
        b'"current_funding":0,"estimated_delivery_price":36297.02,"funding_8h":0.00002203,"index_price":36297.02,'
        b'"instrument_name":"BTC-PERPETUAL","interest_value":1.7362511643080387,"last_price":36289.5,'
        b'"mark_price":36288.31,"max_price":36833.4,"min_price":35744.73,"open_interest":502231260,'
        b'"settlement_price":36169.49,"state":"open","timestamp":1623059681955}'
    )
    first = records(std, notification("ticker.BTC-PERPETUAL.100ms", ticker))
    assert [topic for topic, _ in first] == ["ticker", "open_interest", "funding_rate"]
    assert first[2][1] == {
        "exchange": "deribit", "symbol": "BTC.USD-PERP", "rate": Decimal(0), "predicted_rate": None,
        "mark_price": Decimal("36288.31"), "index_price": Decimal("36297.02"), "next_funding_timestamp": None,
        "event_timestamp": 1623059681955, "atom_timestamp": ATOM,
    }
    assert first[1][1]["open_interest"] == Decimal(502231260)
    assert [t for t, _ in records(std, notification("ticker.BTC-PERPETUAL.100ms", ticker))] == ["ticker"]
    changed = ticker.replace(b'"current_funding":0,', b'"current_funding":0.00001,')
    assert [t for t, _ in records(std, notification("ticker.BTC-PERPETUAL.100ms", changed))] == [
        "ticker", "funding_rate"
    ]


def test_book_snapshot_and_change(std: DeribitStandardiser) -> None:
    """docs.deribit.com book.{instrument_name}.{interval} examples."""
    snapshot = records(std, notification("book.BTC-PERPETUAL.100ms", (
        b'{"type":"snapshot","timestamp":1554373962454,"instrument_name":"BTC-PERPETUAL","change_id":297217,'
        b'"bids":[["new",5042.34,30],["new",5041.94,20]],"asks":[["new",5042.64,40],["new",5043.3,40]]}'
    )))
    assert [(r["side"], r["price"], r["size"], r["is_snapshot"], r["sequence"]) for _, r in snapshot] == [
        ("bid", Decimal("5042.34"), Decimal(30), True, 297217),
        ("bid", Decimal("5041.94"), Decimal(20), True, 297217),
        ("ask", Decimal("5042.64"), Decimal(40), True, 297217),
        ("ask", Decimal("5043.3"), Decimal(40), True, 297217),
    ]
    change = records(std, notification("book.BTC-PERPETUAL.100ms", (
        b'{"type":"change","timestamp":1554373911330,"prev_change_id":297217,"instrument_name":"BTC-PERPETUAL",'
        b'"change_id":297218,"bids":[["delete",5041.94,0]],"asks":[["change",5042.64,39]]}'
    )))
    assert [(r["side"], r["size"], r["is_snapshot"], r["event_timestamp"]) for _, r in change] == [
        ("bid", Decimal(0), False, 1554373911330),
        ("ask", Decimal(39), False, 1554373911330),
    ]


def book_message(kind: str, change_id: int, prev_change_id: int | None = None, bids: list | None = None) -> bytes:
    data = {"type": kind, "timestamp": 1554373962454, "instrument_name": "BTC-PERPETUAL", "change_id": change_id,
            "bids": [["new", 5042.34, 30]] if bids is None else bids, "asks": []}
    if prev_change_id is not None:
        data["prev_change_id"] = prev_change_id
    return notification("book.BTC-PERPETUAL.100ms", data)


def test_a_change_that_does_not_follow_the_book_asks_for_a_resync(std: DeribitStandardiser) -> None:
    std.standardise(book_message("snapshot", 100), ATOM)
    assert [t for t, _ in records(std, book_message("change", 101, 100))] == ["lob"]
    outputs = records(std, book_message("change", 105, 103))
    assert [t for t, _ in outputs] == ["lob", "book_resync"]
    assert outputs[-1][1] == {"exchange": "deribit", "symbol": "BTC.USD-PERP", "reason": "gap",
                              "detail": "expected an update after 101, got 103->105", "atom_timestamp": ATOM}
    # A new snapshot (the reconnect's) puts the book back in sync.
    std.standardise(book_message("snapshot", 200), ATOM)
    assert [t for t, _ in records(std, book_message("change", 201, 200))] == ["lob"]


def test_repeats_and_changes_inside_the_snapshot_are_skipped(std: DeribitStandardiser) -> None:
    std.standardise(book_message("snapshot", 100), ATOM)
    assert records(std, book_message("change", 100, 99)) == []
    records(std, book_message("change", 101, 100))
    assert records(std, book_message("change", 101, 100)) == []
    assert dict(std.skipped) == {"stale: already in the book snapshot": 1, "duplicate book update": 1}
    # A change without levels still moves the book: the next one follows it.
    assert records(std, book_message("change", 102, 101, bids=[])) == []
    assert [t for t, _ in records(std, book_message("change", 103, 102))] == ["lob"]
    assert std.skipped["book change without levels"] == 1


def test_chart_candles(std: DeribitStandardiser) -> None:
    """docs.deribit.com chart.trades.{instrument_name}.{resolution} example."""
    raw = notification("chart.trades.BTC-PERPETUAL.1", (
        b'{"volume":0.05219351,"tick":1573645080000,"open":8869.79,"low":8788.25,"high":8870.31,"cost":460,'
        b'"close":8791.25}'
    ))
    [(topic, candle)] = [(o.topic, o.record) for o in std.standardise(raw, 1_573_645_100_000_000)]
    assert topic == "candle"
    assert candle == {
        "exchange": "deribit", "symbol": "BTC.USD-PERP", "origin": "exchange", "interval": "1m",
        "start": 1573645080000, "end": 1573645140000, "open": Decimal("8869.79"), "high": Decimal("8870.31"),
        "low": Decimal("8788.25"), "close": Decimal("8791.25"), "volume": Decimal("0.05219351"),
        "quote_volume": Decimal(460), "trade_count": None, "vwap": None, "first_trade_timestamp": None,
        "last_trade_timestamp": None, "closed": False, "event_timestamp": 1573645100000,
        "atom_timestamp": 1_573_645_100_000_000,
    }
    [later] = std.standardise(raw, 1_573_645_140_000_000)
    assert later.record["closed"] is True
    [hourly] = std.standardise(notification("chart.trades.BTC-PERPETUAL.60", (
        b'{"volume":1,"tick":1573642800000,"open":1,"low":1,"high":1,"cost":1,"close":1}')), ATOM)
    assert (hourly.record["interval"], hourly.record["end"]) == ("1h", 1573646400000)


def test_rpc_results_and_heartbeats_are_counted_skips(std: DeribitStandardiser) -> None:
    for raw in (
        b'{"jsonrpc":"2.0","id":1,"result":"ok","usIn":1,"usOut":2,"usDiff":1,"testnet":false}',
        b'{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}',
        b'{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}',
    ):
        assert std.standardise(raw, ATOM) == []
    assert sum(std.skipped.values()) == 3


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"jsonrpc":"2.0","method":', "malformed JSON"),
        (b"[1,2]", "message has no type"),
        (b'{"jsonrpc":"2.0","id":4,"error":{"message":"Invalid params","code":-32602}}',
         "Deribit error -32602: Invalid params (request 4)"),
        (notification("quote.BTC-PERPETUAL", {}), "unexpected channel 'quote.BTC-PERPETUAL'"),
        (notification("perpetual.BTC-PERPETUAL.raw", {}), "unknown message type 'perpetual'"),
        (notification("book.BTC-PERPETUAL.raw", {"type": "snapshot", "timestamp": 1, "bids": [], "asks": []}),
         "book message lacks field 'change_id'"),
        (notification("book.BTC-PERPETUAL.raw", {"type": "reset", "timestamp": 1, "change_id": 1, "bids": [],
                                                 "asks": []}), "book type must be 'snapshot' or 'change'"),
        (notification("book.BTC-PERPETUAL.raw", {"type": "change", "timestamp": 1, "change_id": 1,
                                                 "prev_change_id": 0, "bids": [["move", 1, 1]], "asks": []}),
         "book action must be one of"),
        (notification("book.BTC-PERPETUAL.raw", {"type": "change", "timestamp": 1, "change_id": 1,
                                                 "prev_change_id": 0, "bids": [["new", "x", 1]], "asks": []}),
         "mistyped field"),
        (notification("book.BTC-PERPETUAL.raw", {"type": "change", "timestamp": 1, "change_id": 1, "bids": [],
                                                 "asks": []}), "book message lacks field 'prev_change_id'"),
        (notification("trades.BTC-PERPETUAL.raw", [{"trade_id": "1", "price": 1, "amount": 1, "direction": "up",
                                                    "trade_seq": 1, "timestamp": 1}]), "direction must be"),
        (notification("ticker.BTC-PERPETUAL.raw", {"best_bid_price": 1}), "ticker message lacks field 'timestamp'"),
        (notification("ticker.BTC-FS-27DEC24_PERP.raw", {"timestamp": 1}), "not a Deribit spot, future, perpetual"),
        (notification("chart.trades.BTC-PERPETUAL.0", {"tick": 1}), "chart resolution must be positive"),
    ],
)
def test_bad_input_raises_a_precise_error(std: DeribitStandardiser, raw: bytes, error: str) -> None:
    with pytest.raises(StandardiseError, match=re.escape(error)):
        std.standardise(raw, ATOM)
