"""Kraken futures on frames quoted from Kraken's documentation (no recording exists).

tests/fixtures/kraken-futures holds the documented examples of the ``book``,
``trade``, ``ticker`` and ``heartbeat`` feeds and of ``GET
/derivatives/api/v3/instruments``.  Two mendings, both to the documents' own
slips: the perpetual ticker example misses a comma and has a trailing one
(fixed so that it is JSON), and the instruments example, cut short on the page
after the dated contract's margin levels, ends there.  The trade and ticker
examples name the inverse perpetual ``PI_XBTUSD``: it shares ``BTC.USD-PERP``
with ``PF_XBTUSD``, which the symbol map chooses.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import fastavro
import orjson
import pytest

from l3_atom.avro.codecs import parsed_schema
from l3_atom.config import ConnectorSettings
from l3_atom.off_chain.kraken_futures import KrakenFutures, normalised_product
from l3_atom.stream_processing.standardiser import StandardiseError
from l3_atom.stream_processing.standardisers.kraken_futures import KrakenFuturesStandardiser
from tests.exchanges.book_order import order_events
from tests.exchanges.doc_fixtures import http_bodies, ws_entries, ws_frames
from tests.sinks import NullSink

SOURCE = "kraken-futures"
FIXTURE = Path(__file__).parent.parent / "fixtures" / "kraken-futures"
SYMBOLS = ["BTC.USD-PERP", "BTC.USD-20220930"]
ATOM = 1_676_393_235_700_000
SETTINGS = ConnectorSettings(0.01, 0.1, 30.0, 1024)


def expected_counts(folder: Path) -> dict[str, int]:
    """Records per topic, counted from the frames themselves."""
    counts: Counter[str] = Counter()
    for raw in ws_frames(folder):
        message = json.loads(raw)
        feed = message.get("feed") if "event" not in message else None
        if feed == "book_snapshot":
            counts["lob"] += len(message["bids"]) + len(message["asks"])
        elif feed == "book":
            counts["lob"] += 1
        elif feed == "trade_snapshot":
            counts["trades"] += len(message["trades"])
        elif feed == "trade":
            counts["trades"] += 1
        elif feed == "ticker":
            counts["ticker"] += 1
            counts["open_interest"] += 1
            counts["funding_rate"] += message.get("tag") == "perpetual"
    return dict(counts)


def book_messages(folder: Path) -> list[tuple[str, int, bool]]:
    """(product, seq, is snapshot) of every book frame."""
    return [
        (message["product_id"], message["seq"], message["feed"] == "book_snapshot")
        for message in map(json.loads, ws_frames(folder))
        if "event" not in message and message.get("feed") in ("book", "book_snapshot")
    ]


def standardise_all() -> tuple[KrakenFuturesStandardiser, list]:
    std = KrakenFuturesStandardiser()
    feed = KrakenFutures(SYMBOLS, NullSink(), SETTINGS)
    return std, [out for raw in ws_frames(FIXTURE) for out in std.standardise(raw, ATOM, feed.frame_key(raw))]


def records(outputs: list, topic: str) -> list[dict]:
    return [o.record for o in outputs if o.topic == topic]


def feed(*symbols: str) -> KrakenFutures:
    return KrakenFutures(symbols, NullSink(), SETTINGS)


def test_documented_frames_are_fully_understood() -> None:
    std, outputs = standardise_all()
    produced = Counter(o.topic for o in outputs)
    assert dict(produced) == expected_counts(FIXTURE)
    assert produced == {"lob": 5, "trades": 3, "ticker": 2, "open_interest": 2, "funding_rate": 1}
    assert dict(std.skipped) == {"subscription ack": 2, "heartbeat": 1}
    # The book starts with its snapshot and the delta's seq is higher: nothing is skipped, no book_resync.
    assert order_events(book_messages(FIXTURE)) == Counter()
    assert std.book_checks.stats() == {"snapshots": 1}
    for out in outputs:
        schema = parsed_schema(out.topic)
        assert set(out.record) == {field["name"] for field in schema["fields"]}, out.topic
        assert fastavro.validate(out.record, schema, raise_errors=True)


def test_book_records_match_the_documented_frames() -> None:
    _, outputs = standardise_all()
    book = records(outputs, "lob")
    # Snapshot: seq 326072249 at 1612269825817, first bid {"price": 34892.5, "qty": 6385}.
    assert book[0] == {
        "exchange": "kraken-futures", "symbol": "BTC.USD-PERP", "side": "bid", "price": Decimal("34892.5"),
        "size": Decimal(6385), "is_snapshot": True, "sequence": 326072249, "prev_sequence": None, "checksum": None,
        "event_timestamp": 1_612_269_825_817,
        "atom_timestamp": ATOM,
    }
    assert [(r["side"], r["price"]) for r in book[1:4]] == [
        ("bid", Decimal(34892)), ("ask", Decimal("34911.5")), ("ask", Decimal(34912))]
    # Delta: {"side": "sell", "seq": 326094134, "price": 34981, "qty": 0, "timestamp": 1612269953629}.
    assert book[4] == {
        "exchange": "kraken-futures", "symbol": "BTC.USD-PERP", "side": "ask", "price": Decimal(34981),
        "size": Decimal(0), "is_snapshot": False, "sequence": 326094134, "prev_sequence": None, "checksum": None,
        "event_timestamp": 1_612_269_953_629,
        "atom_timestamp": ATOM,
    }


def test_trade_records_match_the_documented_frames() -> None:
    _, outputs = standardise_all()
    trades = records(outputs, "trades")
    assert [(t["trade_id"], t["sequence"]) for t in trades] == [
        ("caa9c653-420b-4c24-a9f1-462a054d86f1", 655508), ("45ee9737-1877-4682-bc68-e4ef818ef88a", 655507),
        ("05af78ac-a774-478c-a50c-8b9c234e071e", 653355),
    ]
    assert trades[2] == {
        "exchange": "kraken-futures", "symbol": "BTC.USD-PERP", "trade_id": "05af78ac-a774-478c-a50c-8b9c234e071e",
        "price": Decimal("34969.5"), "size": Decimal(15000), "taker_side": "sell", "sequence": 653355,
        "origin": None, "event_timestamp": 1_612_266_317_519, "atom_timestamp": ATOM,
    }


def test_ticker_records_match_the_documented_frames() -> None:
    _, outputs = standardise_all()
    tickers = records(outputs, "ticker")
    assert tickers[0] == {
        "exchange": "kraken-futures", "symbol": "BTC.USD-PERP", "bid_price": Decimal("21978.5"),
        "bid_size": Decimal("2536.0"), "ask_price": Decimal("21987.0"), "ask_size": Decimal("13948.0"),
        "last_price": Decimal("21983.5"), "last_size": None, "sequence": None, "event_timestamp": 1_676_393_235_406,
        "atom_timestamp": ATOM,
    }
    assert tickers[1]["symbol"] == "ETH.USD-20240101-1000-C"
    assert records(outputs, "open_interest") == [
        {"exchange": "kraken-futures", "symbol": symbol, "open_interest": Decimal("30072580.0"),
         "event_timestamp": 1_676_393_235_406, "atom_timestamp": ATOM}
        for symbol in ("BTC.USD-PERP", "ETH.USD-20240101-1000-C")
    ]
    # The rate is the relative one (a fraction), not funding_rate (-6.2604214e-11, quote currency per contract).
    assert records(outputs, "funding_rate") == [{
        "exchange": "kraken-futures", "symbol": "BTC.USD-PERP", "rate": Decimal("-0.000001380384722222"),
        "predicted_rate": Decimal("-0.000008047629166667"), "mark_price": Decimal("21979.68641534714"),
        "index_price": Decimal("21984.54"), "next_funding_timestamp": 1_676_394_000_000,
        "event_timestamp": 1_676_393_235_406, "atom_timestamp": ATOM,
    }]


PERPETUAL_TICKER = {"feed": "ticker", "product_id": "PF_XBTUSD", "time": 1676393235406, "tag": "perpetual",
                    "openInterest": 1, "next_funding_rate_time": 1676394000000}


def test_zero_rates_are_left_out_and_fine_rates_rounded() -> None:
    """Kraken omits rates that are zero; a rate finer than the schema's 18 places is rounded half-even."""
    std = KrakenFuturesStandardiser()
    [funding] = records(std.standardise(orjson.dumps(PERPETUAL_TICKER), ATOM), "funding_rate")
    assert (funding["rate"], funding["predicted_rate"], funding["mark_price"]) == (Decimal(0), Decimal(0), None)
    raw = orjson.dumps(PERPETUAL_TICKER).replace(b'"time"', b'"relative_funding_rate":1.2345678901234565e-9,"time"')
    [funding] = records(std.standardise(raw, ATOM), "funding_rate")
    assert funding["rate"] == Decimal("0.000000001234567890")
    raw = orjson.dumps({**PERPETUAL_TICKER, "next_funding_rate_time": "x"}).replace(b'"x"', b"1676394000000.0")
    [funding] = records(std.standardise(raw, ATOM), "funding_rate")
    assert funding["next_funding_timestamp"] == 1_676_394_000_000


# -- connector -------------------------------------------------------------------------------


def test_symbol_map_from_the_documented_instruments() -> None:
    body = next(iter(http_bodies(FIXTURE).values()))
    symbol_map = KrakenFutures.parse_symbols(body)
    assert symbol_map == {"BTC.USD-PERP": "PF_XBTUSD", "BTC.USD-20220930": "FI_XBTUSD_220930"}
    assert feed(*SYMBOLS).resolve(symbol_map) == ["PF_XBTUSD", "FI_XBTUSD_220930"]
    std = KrakenFuturesStandardiser()
    assert all(std.convert_symbol(product) == name for name, product in symbol_map.items())


def test_parse_symbols_prefers_flexible_contracts_and_skips_indices() -> None:
    body = orjson.dumps({"result": "success", "instruments": [
        {"symbol": "pi_xbtusd", "type": "futures_inverse", "tradeable": True},
        {"symbol": "PF_XBTUSD", "base": "BTC", "quote": "USD", "type": "flexible_futures", "tradeable": True},
        {"symbol": "PI_XBTUSD", "type": "futures_inverse", "tradeable": True},
        {"symbol": "FF_XBTUSD_250926", "base": "BTC", "quote": "USD", "type": "flexible_futures", "tradeable": True},
        {"symbol": "FF_ETHUSD_250926", "type": "flexible_futures", "tradeable": True, "isExpired": True},
        {"symbol": "PF_XDGUSD", "type": "flexible_futures", "tradeable": True},
        {"symbol": "in_xbtusd", "type": "spot index", "tradeable": False},
        {"symbol": "rr_xbtusd", "type": "spot index", "tradeable": True},
    ]}).decode()
    assert KrakenFutures.parse_symbols(body) == {
        "BTC.USD-PERP": "PF_XBTUSD", "BTC.USD-20250926": "FF_XBTUSD_250926", "DOGE.USD-PERP": "PF_XDGUSD",
    }


def test_parse_symbols_refuses_an_error_answer() -> None:
    with pytest.raises(ValueError, match="answered 'error': apiLimitExceeded"):
        KrakenFutures.parse_symbols('{"result":"error","error":"apiLimitExceeded"}')


@pytest.mark.parametrize(
    ("product", "symbol"),
    [("PF_XBTUSD", "BTC.USD-PERP"), ("PI_ETHUSD", "ETH.USD-PERP"), ("FF_XBTUSD_250926", "BTC.USD-20250926"),
     ("FI_XBTUSD_220930", "BTC.USD-20220930"), ("OF_ETHUSD_240101_1000_C", "ETH.USD-20240101-1000-C"),
     ("PF_USDCUSD", "USDC.USD-PERP"), ("PF_XDGUSD", "DOGE.USD-PERP"), ("PF_ETHUSDT", "ETH.USDT-PERP")],
)
def test_normalised_product(product: str, symbol: str) -> None:
    assert normalised_product(product) == symbol


@pytest.mark.parametrize(
    ("product", "error"),
    [("in_xbtusd", "must look like PF_XBTUSD"), ("PF_XBTJPY", "must look like PF_XBTUSD"),
     ("PF_XBTUSD_250926", "mixes its kind and expiry"), ("FF_XBTUSD", "mixes its kind and expiry"),
     ("OF_ETHUSD_240101", "mixes its kind and expiry")],
)
def test_normalised_product_refuses(product: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        normalised_product(product)


def test_subscribe_messages_match_the_fixture() -> None:
    """One connection: a subscribe per feed for all products, and the heartbeat feed."""
    kraken = feed(*SYMBOLS)
    groups = kraken.connection_groups(["PF_XBTUSD", "FI_XBTUSD_220930"])
    assert groups == [["PF_XBTUSD", "FI_XBTUSD_220930"]]
    sent = [e["data"] for e in ws_entries(FIXTURE) if e["t"] == "send"]
    assert kraken.subscribe_messages(groups[0]) == sent
    assert [orjson.loads(m) for m in sent] == [
        {"event": "subscribe", "feed": "book", "product_ids": ["PF_XBTUSD", "FI_XBTUSD_220930"]},
        {"event": "subscribe", "feed": "trade", "product_ids": ["PF_XBTUSD", "FI_XBTUSD_220930"]},
        {"event": "subscribe", "feed": "ticker", "product_ids": ["PF_XBTUSD", "FI_XBTUSD_220930"]},
        {"event": "subscribe", "feed": "heartbeat"},
    ]


@pytest.mark.parametrize(
    ("frame", "key"),
    [
        (b'{"feed":"book_snapshot","product_id":"PF_XBTUSD","seq":1}', "kraken-futures_PF_XBTUSD_book"),
        (b'{"feed":"book","product_id":"PF_XBTUSD","seq":2}', "kraken-futures_PF_XBTUSD_book"),
        (b'{"feed":"trade_snapshot","product_id":"PI_XBTUSD","trades":[]}', "kraken-futures_PI_XBTUSD_trade"),
        (b'{"feed":"ticker","product_id":"FF_XBTUSD_250926"}', "kraken-futures_FF_XBTUSD_250926_ticker"),
        (b'{"feed":"heartbeat","time":1534262350627}', "kraken-futures_all_heartbeat"),
        (b'{"event":"subscribed","feed":"book","product_ids":["PF_XBTUSD"]}', "kraken-futures_all_control"),
        (b'{"event":"info","version":1}', "kraken-futures_all_control"),
        (b'{"feed":"ticker_lite","product_id":7}', "kraken-futures_all_ticker"),
        (b'{"feed":"spread","product_id":"PF_XBTUSD"}', "kraken-futures_PF_XBTUSD_control"),
        (b'{"feed":', "kraken-futures_all_unparsed"),
        (b"[1,2]", "kraken-futures_all_unparsed"),
        (b"42", "kraken-futures_all_unparsed"),
    ],
)
def test_frame_key(frame: bytes, key: str) -> None:
    assert feed("BTC.USD-PERP").frame_key(frame) == key


BOOK_DELTA = {"feed": "book", "product_id": "PF_XBTUSD", "side": "sell", "seq": 1, "price": 1, "qty": 0,
              "timestamp": 1612269953629}
TRADE = {"feed": "trade", "product_id": "PF_XBTUSD", "uid": "u", "side": "buy", "seq": 1, "time": 1, "qty": 1,
         "price": 1}


def without(message: dict, field: str) -> bytes:
    return orjson.dumps({k: v for k, v in message.items() if k != field})


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"feed":"book",', "malformed JSON"),
        (b"[1, 2]", "message has no type"),
        (b"{}", "message has no type"),
        (b'{"feed":"spread","product_id":"PF_XBTUSD"}', "unknown message type 'spread'"),
        (b'{"feed":"ticker_lite","bid":1}', "ticker_lite message lacks field 'product_id'"),
        (b'{"event":"error","message":"Invalid product id"}',
         "Kraken futures rejected a request: error: Invalid product id"),
        (b'{"event":"subscribed_failed","feed":"book","product_ids":["PF_NOPE"]}',
         "Kraken futures rejected a request: subscribed_failed"),
        (without(BOOK_DELTA, "seq"), "book message lacks field 'seq'"),
        (orjson.dumps({**BOOK_DELTA, "side": "bid"}), "side must be 'buy' or 'sell', got 'bid'"),
        (orjson.dumps({**BOOK_DELTA, "timestamp": "1612269953629"}), "expected an integer, got str"),
        (orjson.dumps({**BOOK_DELTA, "product_id": "XBTUSD"}), "product id must look like PF_XBTUSD"),
        (orjson.dumps({**TRADE, "uid": 5}), "uid must be a string"),
        (orjson.dumps({**TRADE, "side": "up"}), "side must be 'buy' or 'sell', got 'up'"),
        (orjson.dumps({**TRADE, "price": None}), "expected a decimal string, got NoneType"),
        (without(PERPETUAL_TICKER, "next_funding_rate_time"), "ticker message lacks field 'next_funding_rate_time'"),
        (without(PERPETUAL_TICKER, "openInterest"), "ticker message lacks field 'openInterest'"),
        (b'{"feed":"trade_snapshot","product_id":"PF_XBTUSD","trades":[{"uid":"u"}]}',
         "trade_snapshot message lacks field 'price'"),
    ],
)
def test_bad_input_raises_a_precise_error(raw: bytes, error: str) -> None:
    with pytest.raises(StandardiseError, match=error):
        KrakenFuturesStandardiser().standardise(raw, ATOM)
