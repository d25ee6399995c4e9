"""Gemini market data v2 on its real recording (2021-06-24: ``l2`` for ten symbols, with its trades).

Protocol notes: the recording subscribed to ``l2`` only; the connector also
subscribes to ``candles_1m``, checked here against Gemini's documented example.
Trades of 2021 carry no ``tid`` (documented today); the standardiser accepts
both.  Gemini has since documented a newer websocket API (``wss://ws.gemini.com``)
and archived the v2 documentation; v2 is what the recording and this connector
speak.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import fastavro
import pytest

from l3_atom.avro.codecs import parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.data_source import UnknownSymbol
from l3_atom.off_chain import gemini as gemini_connector
from l3_atom.off_chain.gemini import Gemini
from l3_atom.sim.replay import Recording, ReplayServer
from l3_atom.stream_processing.standardiser import Output, StandardiseError
from l3_atom.stream_processing.standardisers.gemini import GeminiStandardiser
from l3_atom.topics import split_raw_key
from tests.exchanges.book_order import order_events
from tests.sinks import ListSink

SOURCE = "gemini"
RECORDING = "gemini"
SYMBOLS = ["GRT.USD", "ETH.EUR", "ANKR.USD", "LINK.ETH", "LTC.ETH", "BTC.GBP", "ZEC.LTC", "ALCX.USD", "BAT.BTC",
           "FIL.USD"]
ATOM = 1_624_493_657_000_000
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1 << 20)
RECORDED_FRAMES = 678
US_PER_S = 1_000_000
DETAILS_PREFIX = "/v1/symbols/details/"


def received_messages(folder: Path) -> list[dict]:
    return [json.loads(frame.text) for connection in Recording(folder).connections for frame in connection.frames]


def expected_counts(folder: Path) -> dict[str, int]:
    """Records per topic: a level per book change, a trade per trade (embedded or not), a candle per candle."""
    counts: Counter[str] = Counter()
    for message in received_messages(folder):
        kind = message["type"]
        if kind == "l2_updates":
            counts["lob"] += len(message["changes"])
            counts["trades"] += len(message.get("trades", []))
        elif kind == "trade":
            counts["trades"] += 1
        elif kind.startswith("candles_"):
            counts["candle"] += len(message["changes"])
    return dict(counts)


def book_messages(folder: Path) -> list[tuple[str, None, bool]]:
    """(symbol, no number, is snapshot) of every ``l2_updates``: the subscription's first, the book, has trades."""
    return [(m["symbol"], None, "trades" in m) for m in received_messages(folder) if m["type"] == "l2_updates"]


def recorded_details(folder: Path) -> str:
    """The recorded ``/v1/symbols/details/*`` bodies as one JSON array, what ``parse_symbols`` reads."""
    bodies = Recording(folder).bodies
    return "[" + ",".join(body for (path, _), body in bodies.items() if path.startswith(DETAILS_PREFIX)) + "]"


def feed(*symbols: str, **kwargs: str) -> Gemini:
    return Gemini(symbols, ListSink(), SETTINGS, **kwargs)


def recorded_feed(folder: Path) -> Gemini:
    connector = feed(*SYMBOLS)
    exchange_symbols = connector.resolve(Gemini.parse_symbols(recorded_details(folder)))
    connector.normalised_of = dict(zip(exchange_symbols, SYMBOLS, strict=True))
    return connector


def standardise_like_the_pipeline(
    std: GeminiStandardiser, connector: Gemini, frame: bytes, atom: int = ATOM
) -> list[Output]:
    key = connector.frame_key(frame)
    outputs = std.standardise(frame, atom, key, connector.normalised_of.get(split_raw_key(key)[1]))
    for out in outputs:
        assert fastavro.validate(out.record, parsed_schema(out.topic), raise_errors=True)
    return outputs


# -- the recording ---------------------------------------------------------------------------------------------


def test_recording_is_fully_understood(recordings: Path) -> None:
    folder = recordings / RECORDING
    connector = recorded_feed(folder)
    std = GeminiStandardiser()
    produced: Counter[str] = Counter()
    # Each frame at its recorded time, so the book checks' stream-time waits run as they would live.
    frames = [(f.text.encode(), round(f.ts * US_PER_S)) for c in Recording(folder).connections for f in c.frames]
    assert len(frames) == RECORDED_FRAMES
    for frame, atom in frames:
        produced.update(out.topic for out in standardise_like_the_pipeline(std, connector, frame, atom))
    assert dict(produced) == expected_counts(folder)
    assert produced == {"lob": 4574, "trades": 516}
    assert dict(std.skipped) == {"heartbeat": 7}
    # Gemini v2 books carry no numbers, so nothing can be a repeat or stale: no update is skipped.  Every
    # symbol's first l2_updates is its snapshot (counted from the frames): no book waits for one, so no
    # book_resync (the produced topics above have none).
    assert order_events(book_messages(folder)) == Counter()
    snapshots = sum(snapshot for _, _, snapshot in book_messages(folder))
    assert snapshots == len(SYMBOLS)
    assert std.book_checks.stats() == {"snapshots": snapshots}


def test_recorded_book_snapshot_by_hand(recordings: Path) -> None:
    """Frame 1: ALCXUSD's whole book, first change ["buy","302.75","0.00001"], then its last 50 trades,
    the first {"event_id":45465785975,"timestamp":1624493651491,"price":"302.53","quantity":"0.992143","side":"buy"}."""
    folder = recordings / RECORDING
    frame = Recording(folder).connections[0].frames[0].text.encode()
    outputs = standardise_like_the_pipeline(GeminiStandardiser(), recorded_feed(folder), frame)
    levels = [o for o in outputs if o.topic == "lob"]
    trades = [o for o in outputs if o.topic == "trades"]
    assert len(levels) == 159
    assert len(trades) == 50
    assert levels[0] == Output("lob", "gemini_ALCX.USD", {
        "exchange": "gemini", "symbol": "ALCX.USD", "side": "bid", "price": Decimal("302.75"),
        "size": Decimal("0.00001"), "is_snapshot": True, "sequence": None, "prev_sequence": None, "checksum": None,
        "event_timestamp": None,
        "atom_timestamp": ATOM,
    })
    assert trades[0].record == {
        "exchange": "gemini", "symbol": "ALCX.USD", "trade_id": None, "price": Decimal("302.53"),
        "size": Decimal("0.992143"), "taker_side": "buy", "sequence": 45465785975, "origin": None, "event_timestamp": 1624493651491,
        "atom_timestamp": ATOM,
    }


def test_recorded_update_by_hand(recordings: Path) -> None:
    """Frame 12: {"type":"l2_updates","symbol":"BTCGBP","changes":[["buy","24084.23","0"],["buy","24087.07","0.04"],
    ["sell","24113.49","0"],["sell","24117.80","0.91"]]}."""
    folder = recordings / RECORDING
    frame = Recording(folder).connections[0].frames[11].text.encode()
    outputs = standardise_like_the_pipeline(GeminiStandardiser(), recorded_feed(folder), frame)
    assert [(o.key, o.record["side"], o.record["price"], o.record["size"], o.record["is_snapshot"]) for o in outputs] == [
        ("gemini_BTC.GBP", "bid", Decimal("24084.23"), Decimal(0), False),
        ("gemini_BTC.GBP", "bid", Decimal("24087.07"), Decimal("0.04"), False),
        ("gemini_BTC.GBP", "ask", Decimal("24113.49"), Decimal(0), False),
        ("gemini_BTC.GBP", "ask", Decimal("24117.80"), Decimal("0.91"), False),
    ]


def test_recorded_trade_by_hand(recordings: Path) -> None:
    """{"type":"trade","symbol":"ANKRUSD","event_id":45465818387,"timestamp":1624493670759,"price":"0.07946",
    "quantity":"1020.482111","side":"buy"}."""
    folder = recordings / RECORDING
    frame = next(f.text for f in Recording(folder).connections[0].frames if '"event_id":45465818387' in f.text)
    [trade] = standardise_like_the_pipeline(GeminiStandardiser(), recorded_feed(folder), frame.encode())
    assert trade == Output("trades", "gemini_ANKR.USD", {
        "exchange": "gemini", "symbol": "ANKR.USD", "trade_id": None, "price": Decimal("0.07946"),
        "size": Decimal("1020.482111"), "taker_side": "buy", "sequence": 45465818387,
        "origin": None, "event_timestamp": 1624493670759, "atom_timestamp": ATOM,
    })


def test_symbol_map_from_the_recorded_details(recordings: Path) -> None:
    folder = recordings / RECORDING
    listed = json.loads(Recording(folder).body("/v1/symbols", ""))
    symbols = Gemini.parse_symbols(recorded_details(folder))
    assert len(symbols) == len(listed) == 71
    assert symbols["BTC.GBP"] == "BTCGBP"
    assert symbols["1INCH.USD"] == "1INCHUSD"
    assert symbols["GUSD.USD"] == "GUSDUSD"


@pytest.mark.timeout(30)
def test_connector_on_the_replayed_recording(recordings: Path) -> None:
    """One connection; the symbol map from /v1/symbols and the details of the ten symbols only."""

    async def run() -> tuple[Gemini, ReplayServer]:
        server = await ReplayServer(recordings / RECORDING).start()
        connector = Gemini(SYMBOLS, ListSink(), SETTINGS, ws_url=server.ws_url, rest_url=server.rest_url)
        task = asyncio.create_task(connector.run())
        try:
            async with asyncio.timeout(20):
                while len(connector.sink.frames) < RECORDED_FRAMES:
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await server.stop()
        return connector, server

    connector, server = asyncio.run(run())
    assert server.served_connections == len(server.recording.connections) == 1
    assert len(connector.sink.frames) == RECORDED_FRAMES
    assert connector.symbol_map == {s: s.replace(".", "") for s in SYMBOLS}
    by_key = {key: symbol for key, _, symbol in connector.sink.frames}
    assert by_key["gemini_BTCGBP_l2"] == "BTC.GBP"
    assert by_key["gemini_all_heartbeat"] is None


# -- the connector -----------------------------------------------------------------------------------------------


class FakeRest:
    """Answers GETs from the recorded bodies and remembers the paths."""

    def __init__(self, bodies: dict[str, str]):
        self.bodies = bodies
        self.paths: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def get_text(self, path: str, params: dict[str, str] | None = None) -> str:
        self.paths.append(path)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        return self.bodies[path]

    async def close(self) -> None: ...


def fake_rest(folder: Path) -> FakeRest:
    return FakeRest({path: body for (path, _), body in Recording(folder).bodies.items()})


def test_details_are_fetched_only_for_requested_symbols_concurrently(
    recordings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rest = fake_rest(recordings / RECORDING)
    connector = feed("BTC.GBP", "ETH.EUR", "1INCH.USD")
    monkeypatch.setattr(connector, "rest_client", lambda: rest)
    symbol_map = asyncio.run(connector.load_symbol_map())
    assert symbol_map == {"BTC.GBP": "BTCGBP", "ETH.EUR": "ETHEUR", "1INCH.USD": "1INCHUSD"}
    assert rest.paths[0] == "/v1/symbols"
    assert sorted(rest.paths[1:]) == [f"{DETAILS_PREFIX}{s}" for s in ("1inchusd", "btcgbp", "etheur")]
    assert rest.most_in_flight == 3


def test_listing_every_symbol_fetches_all_details(recordings: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rest = fake_rest(recordings / RECORDING)
    monkeypatch.setattr(gemini_connector, "DETAILS_INTERVAL_S", 0.0)
    connector = feed()
    monkeypatch.setattr(connector, "rest_client", lambda: rest)
    assert len(asyncio.run(connector.load_symbol_map())) == 71
    assert len(rest.paths) == 72


def test_details_requests_stay_under_gemini_public_limit() -> None:
    """120 requests a minute: a burst, then paced; no 60 s window holds more."""
    starts = gemini_connector.details_delays(500)
    assert starts[: gemini_connector.DETAILS_BURST] == [0.0] * gemini_connector.DETAILS_BURST
    assert max(sum(1 for s in starts if t <= s < t + 60) for t in starts) < 120


def test_unlisted_symbol_is_reported(recordings: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rest = fake_rest(recordings / RECORDING)
    connector = feed("BTC.GBP", "BTC.JPY")
    monkeypatch.setattr(connector, "rest_client", lambda: rest)
    with pytest.raises(UnknownSymbol, match="gemini does not list BTC.JPY"):
        connector.resolve(asyncio.run(connector.load_symbol_map()))


def test_perpetuals_are_named_perp() -> None:
    details = [{"symbol": "BTCGUSDPERP", "base_currency": "BTC", "quote_currency": "GUSD", "product_type": "swap",
                "contract_type": "linear", "contract_price_currency": "GUSD"},
               {"symbol": "BTCUSD", "base_currency": "BTC", "quote_currency": "USD", "product_type": "spot"}]
    assert Gemini.parse_symbols(json.dumps(details)) == {"BTC.GUSD-PERP": "BTCGUSDPERP", "BTC.USD": "BTCUSD"}
    assert gemini_connector.exchange_name(gemini_connector.Symbol.parse("BTC.GUSD-PERP")) == "btcgusdperp"


def test_subscribe_message() -> None:
    [message] = feed("BTC.USD").subscribe_messages(["BTCUSD", "ETHUSD"])
    assert json.loads(message) == {"type": "subscribe", "subscriptions": [
        {"name": "l2", "symbols": ["BTCUSD", "ETHUSD"]}, {"name": "candles_1m", "symbols": ["BTCUSD", "ETHUSD"]}]}


@pytest.mark.parametrize(
    ("frame", "key"),
    [
        (b'{"type":"l2_updates","symbol":"BTCUSD","changes":[]}', "gemini_BTCUSD_l2"),
        (b'{"type":"trade","symbol":"BTCUSD"}', "gemini_BTCUSD_l2"),
        (b'{"type":"candles_1m_updates","symbol":"BTCUSD","changes":[]}', "gemini_BTCUSD_candles"),
        (b'{"type":"heartbeat","timestamp":1}', "gemini_all_heartbeat"),
        (b'{"type":"error","reason":"x"}', "gemini_all_control"),
        (b'{"type":"trade","symbol":7}', "gemini_all_l2"),
        (b"[1, 2]", "gemini_all_unparsed"),
        (b'{"type":', "gemini_all_unparsed"),
        # A type that is no string (found by bench.faults' malformed input) once raised "unhashable type".
        (b'{"type":[],"symbol":"BTCUSD"}', "gemini_all_unparsed"),
        (b'{"type":{"a":null}}', "gemini_all_unparsed"),
    ],
)
def test_frame_key(frame: bytes, key: str) -> None:
    assert feed("BTC.USD").frame_key(frame) == key


# -- documented messages -----------------------------------------------------------------------------------------

# Gemini's documented examples (docs.gemini.com, market data v2: "JSON response for trade execution",
# "JSON Candle Response" with its two candles).
TRADE = ('{"type": "trade", "symbol": "BTCUSD", "event_id": 3575573053, "timestamp": 151231241, '
         '"price": "9004.21000000", "quantity": "0.09110000", "side": "buy", "tid": 2840140800042677}')
CANDLES = ('{"type": "candles_15m_updates", "symbol": "BTCUSD", "changes": [[1561054500000, 9350.18, 9358.35, 9350.18, '
           '9355.51, 2.07], [1561053600000, 9357.33, 9357.33, 9350.18, 9350.18, 1.5900161]]}')


@pytest.fixture
def std() -> GeminiStandardiser:
    return GeminiStandardiser()


def test_documented_trade_has_a_trade_id(std: GeminiStandardiser) -> None:
    [trade] = std.standardise(TRADE.encode(), ATOM, "gemini_BTCUSD_l2", "BTC.USD")
    assert trade.record["trade_id"] == "2840140800042677"
    assert trade.record["price"] == Decimal("9004.21000000")
    assert trade.record["sequence"] == 3575573053


def test_documented_candles_exactly(std: GeminiStandardiser) -> None:
    newest, older = std.standardise(CANDLES.encode(), ATOM, "gemini_BTCUSD_candles", "BTC.USD")
    assert newest == Output("candle", "gemini_BTC.USD", {
        "exchange": "gemini", "symbol": "BTC.USD", "origin": "exchange", "interval": "15m", "start": 1561054500000,
        "end": 1561055400000, "open": Decimal("9350.18"), "high": Decimal("9358.35"), "low": Decimal("9350.18"),
        "close": Decimal("9355.51"), "volume": Decimal("2.07"), "quote_volume": None, "trade_count": None,
        "vwap": None, "first_trade_timestamp": None, "last_trade_timestamp": None, "closed": False,
        "event_timestamp": 1561054500000, "atom_timestamp": ATOM,
    })
    assert older.record["closed"] is True
    assert older.record["volume"] == Decimal("1.5900161")
    assert fastavro.validate(newest.record, parsed_schema("candle"), raise_errors=True)


def test_embedded_trades_documented_with_eventid(std: GeminiStandardiser) -> None:
    """The docs' initial l2 response spells the embedded trades' id ``eventid``."""
    frame = json.dumps({"type": "l2_updates", "symbol": "BTCUSD", "changes": [["buy", "9122.04", "0.00121425"]],
                        "trades": [{"type": "trade", "symbol": "BTCUSD", "eventid": 169841458,
                                    "timestamp": 1560976400428, "price": "9122.04", "quantity": "0.0073173",
                                    "side": "sell", "tid": 2840140800042677}]})
    level, trade = std.standardise(frame.encode(), ATOM, "gemini_BTCUSD_l2", "BTC.USD")
    assert level.record["is_snapshot"] is True
    assert (trade.record["sequence"], trade.record["taker_side"]) == (169841458, "sell")


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"type": "trade", ', "malformed JSON"),
        (b'{"type": "candles_1m_updates", ', "malformed JSON"),
        (b"[1, 2]", "message has no type"),
        (b'{"type": "auction_open", "symbol": "BTCUSD"}', "unknown message type 'auction_open'"),
        (b'{"type": "candles_2m_updates", "symbol": "BTCUSD", "changes": []}', "unknown message type 'candles_2m"),
        (b'{"type": "l2_updates", "symbol": "BTCUSD", "changes": [["up", "1", "1"]]}', "side must be 'buy' or 'sell'"),
        (b'{"type": "l2_updates", "symbol": "BTCUSD", "changes": [["buy", "1"]]}',
         "l2_updates message has a mistyped field: list index out of range"),
        (b'{"type": "l2_updates", "symbol": "BTCUSD", "changes": [["buy", 1.5, "1"]]}',
         "expected a decimal string, got float"),
        (TRADE.replace('"quantity": "0.09110000", ', "").encode(), "trade message lacks field 'quantity'"),
        (TRADE.replace('"timestamp": 151231241', '"timestamp": "151231241"').encode(), "expected an integer"),
        (CANDLES.replace("9358.35", '"x"').encode(), "candles_15m_updates message has a mistyped field"),
    ],
)
def test_bad_frames_raise_precise_errors(std: GeminiStandardiser, raw: bytes, error: str) -> None:
    with pytest.raises(StandardiseError, match=error.replace("(", r"\(").replace("[", r"\[")):
        std.standardise(raw, ATOM, "gemini_BTCUSD_l2", "BTC.USD")


def test_symbol_needs_the_connector_header(std: GeminiStandardiser) -> None:
    """``BTCUSD`` does not split into base and quote without Gemini's details: the header names it."""
    with pytest.raises(StandardiseError, match="no normalised symbol known for 'BTCUSD'"):
        std.standardise(TRADE.encode(), ATOM)
